//! Resumable uploads: start (with known-chunk negotiation), chunk PUTs in any
//! order, progress, complete into a file or a new version, abort.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use scaidrive_domain::access::Permission;
use scaidrive_domain::drive::chunking::{total_chunks, DEFAULT_CHUNK_SIZE};
use scaidrive_domain::drive::file::Content;
use scaidrive_domain::drive::upload::{UploadCommand, UploadPlan, UploadSession, UploadStatus};
use scaidrive_domain::id::{FileId, FolderId, ShareId, UploadId, VersionId};
use scaidrive_domain::{Aggregate, DomainError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::drive::{live_file, live_folder, live_share, path_id, require_perm, require_write, On};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Validate, Violations};
use super::files::max_file_size;
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use super::Positioned;
use crate::blob::content::checksum;
use crate::command::uploads::{self as cmd, Chunk, Completion};
use crate::command::{quota, Loaded};

/// Largest accepted chunk body (SPEC: `max_upload_chunk_size_bytes`).
pub const MAX_CHUNK_BODY: usize = 5 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/uploads", post(start))
        .route("/uploads/{id}", get(progress).delete(abort))
        .route(
            "/uploads/{id}/chunks/{index}",
            put(chunk).layer(DefaultBodyLimit::max(MAX_CHUNK_BODY + 1024)),
        )
        .route("/uploads/{id}/complete", post(complete))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct StartUpload {
    #[schema(value_type = doc::ShareId)]
    share_id: ShareId,
    /// 1–255 characters, no `/` or NUL, not `.` or `..`.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^/\\u0000]+$")]
    file_name: String,
    /// The exact size in bytes.
    file_size: u64,
    #[schema(value_type = Option<doc::FolderId>)]
    folder_id: Option<FolderId>,
    /// A power of two, 64 KiB–4 MiB; default 4 MiB.
    #[schema(minimum = 65536, maximum = 4194304)]
    chunk_size: Option<u64>,
    /// A media type (`type/subtype`, parameters after `;`), printable ASCII.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^ *[-!#$%&'*+.^_`|~0-9A-Za-z]+/[-!#$%&'*+.^_`|~0-9A-Za-z]+ *(;[ -~]*)?$"
    )]
    mime_type: Option<String>,
    /// Hex SHA-256 of the whole file, checked on complete.
    #[schema(pattern = "^[0-9A-Fa-f]{64}$")]
    checksum_sha256: Option<String>,
    /// Complete into a new version of this file.
    #[schema(value_type = Option<doc::FileId>)]
    replace_file_id: Option<FileId>,
    /// The version the client edited (409 on complete if it is no longer current).
    #[schema(value_type = Option<doc::VersionId>)]
    base_version_id: Option<VersionId>,
    /// Hex SHA-256 per chunk: the answer lists only the chunks the server lacks.
    chunk_hashes: Option<Vec<String>>,
}

impl Validate for StartUpload {
    const REQUIRED: &'static [&'static str] = &["share_id", "file_name", "file_size"];
    fn validate(&self, v: &mut Violations) {
        v.item_name("file_name", &self.file_name);
        if let Some(m) = &self.mime_type {
            v.length("mime_type", m, 1, 255);
            if !m.is_empty() && m.chars().count() <= 255 && !super::drive::is_media_type(m) {
                v.push(
                    "value_error",
                    "mime_type",
                    "Value error, not a media type (such as text/plain or application/pdf)",
                    serde_json::Value::from(m.as_str()),
                );
            }
        }
    }
}

/// Starts a resumable upload and reserves its bytes on every quota level.
#[utoipa::path(post, path = "/uploads", request_body = StartUpload, responses(
    (status = 201, description = "The session, with the chunks to send", body = dto::UploadSession),
    (status = 404, description = "No such share, folder or file"),
    (status = 410, description = "The share, folder or file is in the trash"),
    (status = 413, description = "Larger than the tenant's max_file_size_bytes (PAYLOAD_TOO_LARGE)"),
    (status = 502, description = "The blob store is unreachable"),
    (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
))]
async fn start(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<StartUpload>,
) -> ApiResult<Positioned<(StatusCode, Json<dto::UploadSession>)>> {
    let mut folder_row = None;
    if let Some(f) = body.folder_id {
        let (row, _) = live_folder(&state, &p, &f.to_string()).await?;
        if row.share_id != body.share_id.to_string() {
            return Err(
                DomainError::invalid("folder_id", "the folder is not in that share").into(),
            );
        }
        folder_row = Some(row);
    }
    let mut file_row = None;
    if let Some(f) = body.replace_file_id {
        let (row, _) = live_file(&state, &p, &f.to_string()).await?;
        if row.share_id != body.share_id.to_string() {
            return Err(
                DomainError::invalid("replace_file_id", "the file is not in that share").into(),
            );
        }
        file_row = Some(row);
    }
    require_write(&p)?;
    match (&file_row, &folder_row) {
        (Some(f), _) => require_perm(&state, &p, On::File(f), Permission::Write).await?,
        (None, Some(f)) => require_perm(&state, &p, On::Folder(f), Permission::Create).await?,
        (None, None) => {
            let share = live_share(&state, &p, &body.share_id.to_string()).await?;
            require_perm(&state, &p, On::Share(&share), Permission::Create).await?
        }
    }
    let tenant = p.tenant_id.to_string();
    let chunk_size = body.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    // Which announced chunks the tenant already stores (delta sync).
    let mut known = Vec::new();
    if let Some(hashes) = &body.chunk_hashes {
        if hashes.len() as u64 == total_chunks(body.file_size, chunk_size)
            && hashes
                .iter()
                .all(|h| crate::blob::is_sha256_hex(&h.to_ascii_lowercase()))
        {
            let checks = hashes.iter().map(|h| {
                let h = h.to_ascii_lowercase();
                let (state, tenant) = (state.clone(), tenant.clone());
                async move {
                    // Only chunks that live versions reference count as known:
                    // an unreferenced one may be collected any time.
                    let referenced = scaidrive_projections::drive_queries::chunk_referenced(
                        &state.db, &tenant, &h,
                    )
                    .await?;
                    Ok::<bool, ApiError>(referenced && state.blob.has_chunk(&tenant, &h).await?)
                }
            });
            known = futures::future::try_join_all(checks).await?;
        }
    }
    let upload_id = UploadId::from_uuid(Uuid::now_v7());
    let upload_stream = upload_id.to_string();
    let file_size = body.file_size;
    let accounts = quota::enforcing_for_share(&state.bus, body.share_id).await?;
    let ctx = p.context();
    let cmd = UploadCommand::Start {
        upload_id,
        plan: UploadPlan {
            tenant_id: p.tenant_id,
            share_id: body.share_id,
            folder_id: body.folder_id,
            file_name: body.file_name,
            file_size: body.file_size,
            chunk_size,
            mime_type: body
                .mime_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            checksum_sha256: body.checksum_sha256,
            replace_file_id: body.replace_file_id,
            base_version_id: body.base_version_id,
            chunk_hashes: body.chunk_hashes,
            quota_accounts: accounts.iter().map(|a| a.stream_id()).collect(),
        },
        known_chunks: known,
        max_file_size: max_file_size(&state, &p).await?,
        by: p.user_id,
        at: ctx.now,
    };
    // The session and its reservation on every limited level are one append
    // (batched with other writes queued behind the same accounts).
    let job = quota::Job {
        ctx: ctx.clone(),
        write: quota::Write::StartUpload {
            upload_id,
            command: cmd,
        },
        accounts,
        reservation_id: upload_stream,
        bytes: file_size,
    };
    let (committed, session) = quota::submit(&state.bus, &state.db, job).await?;
    let session = session.unwrap_or_default();
    // The session is the command's own state: no read model to wait for.
    let answer = dto::UploadSession::at(&upload_id.to_string(), &session, Utc::now());
    Ok(Positioned(
        committed.position,
        (StatusCode::CREATED, Json(answer)),
    ))
}

/// The session, if it belongs to the caller (404 otherwise).
async fn own_session(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> ApiResult<Loaded<UploadSession>> {
    let _: UploadId = path_id(id, "upload session")?;
    let loaded = state.bus.load::<UploadSession>(id).await?;
    let mine = loaded
        .state
        .plan
        .as_ref()
        .is_some_and(|plan| plan.tenant_id == p.tenant_id)
        && (loaded.state.created_by == Some(p.user_id) || p.is_tenant_admin);
    if !mine {
        return Err(ApiError::not_found("upload session"));
    }
    Ok(loaded)
}

/// An upload session's progress.
#[utoipa::path(get, path = "/uploads/{id}", params(("id" = inline(doc::UploadId), Path)), responses(
    (status = 200, description = "The session", body = dto::UploadSession),
))]
async fn progress(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::UploadSession>> {
    let s = own_session(&state, &p, &id).await?;
    Ok(Json(dto::UploadSession::at(&id, &s.state, Utc::now())))
}

/// Sends one chunk (any order, in parallel).
#[utoipa::path(put, path = "/uploads/{id}/chunks/{index}",
    request_body(content = doc::Binary, content_type = "application/octet-stream"),
    params(("id" = inline(doc::UploadId), Path), ("index" = u64, Path, description = "The chunk's index, from 0"),
        ("X-Chunk-SHA256" = Option<String>, Header, description = "Hex SHA-256 of the body; a mismatch answers 400")),
    responses(
        (status = 200, description = "Stored", body = dto::ChunkReceipt),
        (status = 400, description = "The body does not match X-Chunk-SHA256, or the index or size is wrong"),
        (status = 409, description = "The session is completed"),
        (status = 410, description = "The session expired or was aborted"),
        (status = 413, description = "Larger than max_upload_chunk_size_bytes"),
        (status = 502, description = "The blob store is unreachable"),
    ),
)]
async fn chunk(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((id, index)): ApiPath<(String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<dto::ChunkReceipt>> {
    let session = own_session(&state, &p, &id).await?;
    require_write(&p)?;
    // Refuse early what the session would refuse anyway, before storing bytes.
    let now = Utc::now();
    match session.state.status_at(now) {
        UploadStatus::Active => {}
        UploadStatus::Completed => {
            return Err(DomainError::InvalidTransition(
                "upload session is already completed".into(),
            )
            .into())
        }
        UploadStatus::Aborted => {
            return Err(DomainError::Gone("upload session was aborted".into()).into())
        }
        UploadStatus::Expired => {
            return Err(DomainError::Gone("upload session expired".into()).into())
        }
    }
    let sha = hex::encode(Sha256::digest(&body));
    if let Some(claimed) = headers.get("x-chunk-sha256").and_then(|v| v.to_str().ok()) {
        if !claimed.trim().eq_ignore_ascii_case(&sha) {
            return Err(DomainError::ChecksumMismatch(
                "chunk body does not match X-Chunk-SHA256".into(),
            )
            .into());
        }
    }
    let size = body.len() as u64;
    let probe = session.state.decide(&UploadCommand::ReceiveChunk {
        index,
        sha256: sha.clone(),
        size,
        deduplicated: false,
        at: now,
    })?;
    drop(probe);
    let tenant = p.tenant_id.to_string();
    let deduplicated = state.blob.put_chunk(&tenant, &sha, body).await?;
    state.bus.metrics().upload_bytes(size);
    state
        .bus
        .metrics()
        .chunks_deduplicated(u64::from(deduplicated));
    let chunk = Chunk {
        index,
        sha256: sha.clone(),
        size,
        deduplicated,
    };
    cmd::receive_chunk(&state.bus, &p.context(), &id, chunk).await?;
    Ok(Json(dto::ChunkReceipt {
        index,
        size,
        sha256: sha,
        deduplicated,
    }))
}

/// Completes an upload into a new file, or a new version of `replace_file_id`.
#[utoipa::path(post, path = "/uploads/{id}/complete", params(("id" = inline(doc::UploadId), Path)), responses(
    (status = 201, description = "The file", body = super::dto::File),
    (status = 400, description = "The content does not match checksum_sha256 (CHECKSUM_MISMATCH)"),
    (status = 409, description = "Chunks are missing, a sibling has the name, or base_version_id is no longer current"),
    (status = 410, description = "The session expired or was aborted"),
    (status = 502, description = "The blob store is unreachable"),
    (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
))]
async fn complete(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let session = own_session(&state, &p, &id).await?;
    require_write(&p)?;
    let upload_id: UploadId = path_id(&id, "upload session")?;
    let now = Utc::now();
    // Check the state first (410/409) so a bad session never costs a read-back.
    session.state.decide(&UploadCommand::Complete {
        computed_checksum: session
            .state
            .plan
            .as_ref()
            .and_then(|p| p.checksum_sha256.clone())
            .unwrap_or_default(),
        file_id: FileId::from_uuid(Uuid::nil()),
        version_id: VersionId::from_uuid(Uuid::nil()),
        at: now,
    })?;
    let plan = session
        .state
        .plan
        .clone()
        .ok_or_else(|| ApiError::not_found("upload session"))?;
    let chunks = session
        .state
        .chunk_list()
        .ok_or_else(|| DomainError::InvalidTransition("chunks are missing".into()))?;
    let tenant = p.tenant_id.to_string();
    let computed = checksum(&state.blob, &tenant, &chunks).await?;
    let version_id = VersionId::from_uuid(Uuid::now_v7());
    let file_id = plan
        .replace_file_id
        .unwrap_or_else(|| FileId::from_uuid(Uuid::now_v7()));
    let content = Content {
        version_id,
        size: plan.file_size,
        checksum_sha256: computed,
        mime_type: plan.mime_type.clone(),
        chunk_size: plan.chunk_size,
        chunks,
    };
    // Access may have been withdrawn since the session began.
    let parent_path = match plan.folder_id {
        Some(f) => {
            let (row, _) = live_folder(&state, &p, &f.to_string()).await?;
            if plan.replace_file_id.is_none() {
                require_perm(&state, &p, On::Folder(&row), Permission::Create).await?;
            }
            row.path
        }
        None => {
            let share = live_share(&state, &p, &plan.share_id.to_string()).await?;
            if plan.replace_file_id.is_none() {
                require_perm(&state, &p, On::Share(&share), Permission::Create).await?;
            }
            "/".to_owned()
        }
    };
    if let Some(f) = plan.replace_file_id {
        let (row, _) = live_file(&state, &p, &f.to_string()).await?;
        require_perm(&state, &p, On::File(&row), Permission::Write).await?;
    }
    // Levels limited since the session started have no reservation: charge them now.
    let late: Vec<_> = quota::enforcing_for_share(&state.bus, plan.share_id)
        .await?
        .into_iter()
        .filter(|a| !plan.quota_accounts.contains(&a.stream_id()))
        .collect();
    let completion = Completion {
        upload_id,
        plan: &plan,
        content,
        file_id,
        parent_path,
        late,
        by: p.user_id,
    };
    let committed = cmd::complete(&state.bus, &state.db, &p.context(), &completion).await?;
    let file_id = file_id.to_string();
    respond
        .item(&state, &committed, StatusCode::CREATED, &file_id, || {
            super::drive::file_dto(&state, &p, &file_id)
        })
        .await
}

/// Aborts an upload and releases its reservation.
#[utoipa::path(delete, path = "/uploads/{id}", params(("id" = inline(doc::UploadId), Path)), responses(
    (status = 204, description = "Aborted"),
    (status = 409, description = "The session is completed"),
    (status = 410, description = "The session expired or was aborted"),
))]
async fn abort(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    own_session(&state, &p, &id).await?;
    require_write(&p)?;
    let ctx = p.context();
    let committed = quota::end_upload(&state.bus, &ctx, &id, false).await?;
    Ok(respond.full().empty(&state, &committed).await)
}
