//! Files: simple upload, metadata, streamed download with ranges, rename,
//! restore, move, copy, trash or purge, versions.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{StreamExt, TryStreamExt};
use scaidrive_domain::access::Permission;
use scaidrive_domain::access_log::{ByteRange, FileRead, ReadVia};
use scaidrive_domain::drive::chunking::DEFAULT_CHUNK_SIZE;
use scaidrive_domain::drive::file::{Content, File, FileCommand, FileEvent};
use scaidrive_domain::id::{FileId, FolderId, ShareId, VersionId};
use scaidrive_domain::{Aggregate, DomainError};
use scaidrive_projections::drive_queries as q;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::access_log::{self, ReadKind};
use super::drive::{
    self, creation_target, file_dto, live_file, path_id, require_read, resolve_target, Need,
    RenameOrRestore, TargetBody,
};
use super::dto;
use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{ApiJson, ApiMultipart, ApiPath, ApiQuery, Found, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::blob::content::{read_range, store_stream, StoreContentError};
use crate::command::drive as cmd;
use crate::command::quota;

pub fn router() -> Router<AppState> {
    Router::new()
        // The tenant's per-file cap applies while streaming, not a fixed body limit.
        .route(
            "/files",
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/files/{id}", get(read).patch(update).delete(remove))
        .route("/files/{id}/content", get(download))
        .route("/files/{id}/copy", post(copy))
        .route("/files/{id}/move", post(move_to))
        .route("/files/{id}/versions", get(versions))
        .route("/files/{id}/versions/{n}/restore", post(restore_version))
}

/// The tenant's per-file cap.
pub(crate) async fn max_file_size(state: &AppState, p: &Principal) -> ApiResult<u64> {
    Ok(
        scaidrive_projections::tenancy::tenant(&state.db, &p.tenant_id.to_string())
            .await?
            .map(|t| t.settings.0.max_file_size_bytes)
            .unwrap_or(5_368_709_120),
    )
}

fn missing(field: &str) -> ApiError {
    ApiError::validation(FieldError::body(
        "missing",
        &[field],
        "Field required",
        Value::Null,
    ))
}

fn bad_field(field: &str, msg: &str, input: &str) -> ApiError {
    ApiError::validation(FieldError::body(
        "value_error",
        &[field],
        format!("Value error, {msg}"),
        Value::from(input),
    ))
}

/// Simple upload (multipart: `share_id`, `folder_id`?, `name`?, `file`). The file part
/// is cut into chunks and stored as it streams in; nothing is held whole.
#[utoipa::path(post, path = "/files",
    request_body(content = doc::SimpleUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The new file", body = dto::File),
        (status = 404, description = "No such share or folder, or not visible"),
        (status = 409, description = "A live sibling has this name (NAME_CONFLICT)"),
        (status = 410, description = "The share or folder is in the trash"),
        (status = 413, description = "Larger than the tenant's max_file_size_bytes (PAYLOAD_TOO_LARGE)"),
        (status = 422, description = "A field is missing or invalid"),
        (status = 502, description = "The blob store is unreachable"),
        (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
    ),
)]
async fn upload(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<Response> {
    let max = max_file_size(&state, &p).await?;
    let tenant = p.tenant_id.to_string();
    let (mut share_id, mut folder_id, mut name, mut stored, mut mime) =
        (None, None, None, None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        let field_name = field.name().unwrap_or_default().to_owned();
        match field_name.as_str() {
            "file" => {
                if name.is_none() {
                    name = field.file_name().map(str::to_owned);
                }
                mime = field.content_type().map(str::to_owned);
                let stream = field.map_err(|e| e.to_string());
                let result = store_stream(
                    &state.blob,
                    &tenant,
                    Box::pin(stream),
                    DEFAULT_CHUNK_SIZE,
                    max,
                )
                .await;
                stored = Some(result.map_err(|e| match e {
                    StoreContentError::TooLarge(limit) => ApiError::PayloadTooLarge(format!(
                        "file exceeds the tenant limit of {limit} bytes"
                    )),
                    StoreContentError::Body(m) => {
                        ApiError::BadRequest(format!("reading the upload failed: {m}"))
                    }
                    StoreContentError::Blob(b) => b.into(),
                })?);
            }
            "share_id" | "folder_id" | "name" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| ApiError::BadRequest(format!("malformed multipart field: {e}")))?;
                match field_name.as_str() {
                    "share_id" => share_id = Some(text),
                    "folder_id" => folder_id = Some(text).filter(|t| !t.is_empty()),
                    _ => name = Some(text),
                }
            }
            _ => {}
        }
    }
    let share_raw = share_id.ok_or_else(|| missing("share_id"))?;
    let share: ShareId = share_raw
        .parse()
        .map_err(|_| bad_field("share_id", "not a share id", &share_raw))?;
    let folder: Option<FolderId> = match &folder_id {
        Some(f) => Some(
            f.parse()
                .map_err(|_| bad_field("folder_id", "not a folder id", f))?,
        ),
        None => None,
    };
    let stored = stored.ok_or_else(|| missing("file"))?;
    state.bus.metrics().upload_bytes(stored.size);
    state.bus.metrics().chunks_deduplicated(stored.deduplicated);
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| missing("name"))?;
    if let Err(m) = scaidrive_domain::name::validate_item_name(&name) {
        return Err(bad_field("name", &m, &name));
    }
    let target = creation_target(&state, &p, share, folder, "folder_id").await?;
    let content = Content {
        version_id: VersionId::from_uuid(Uuid::now_v7()),
        size: stored.size,
        checksum_sha256: stored.sha256,
        mime_type: super::drive::media_type_or_default(mime),
        chunk_size: DEFAULT_CHUNK_SIZE,
        chunks: stored.chunks,
    };
    let ctx = p.context();
    let file_id = FileId::from_uuid(Uuid::now_v7());
    // The file and its quota charge on every limited level are one append
    // (batched with other writes queued behind the same accounts).
    let accounts = quota::enforcing_for_share(&state.bus, share).await?;
    let job = quota::Job {
        ctx: ctx.clone(),
        reservation_id: content.version_id.to_string(),
        bytes: content.size,
        write: quota::Write::CreateFile {
            tenant_id: p.tenant_id,
            target,
            name: scaidrive_domain::name::normalize(&name),
            content,
            by: p.user_id,
            file_id,
        },
        accounts,
    };
    let (committed, _) = quota::submit(&state.bus, &state.db, job).await?;
    let id = file_id.to_string();
    respond
        .item(&state, &committed, StatusCode::CREATED, &id, || {
            file_dto(&state, &p, &id)
        })
        .await
}

/// A file's metadata.
#[utoipa::path(get, path = "/files/{id}", params(("id" = inline(doc::FileId), Path)), responses(
    (status = 200, description = "The file", body = dto::File),
    (status = 410, description = "The file is in the trash"),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<FileId>,
) -> ApiResult<Json<dto::File>> {
    let (row, _) = drive::file(&state, &p, id, Need::Read).await?;
    Ok(Json((&row).into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DownloadQuery {
    /// A version number; default the current one.
    #[param(minimum = 1)]
    pub version: Option<u64>,
    /// `true` asks for display in the browser (a preview):
    /// `Content-Disposition: inline`, recorded as `file.previewed` instead
    /// of `file.downloaded`.
    pub inline: Option<bool>,
}

/// A parsed `Range: bytes=…` header against a length.
pub(crate) fn parse_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let spec = raw.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len)
        }
        (s, "") => (s.parse().map_err(|_| ())?, len),
        (s, e) => {
            let s: u64 = s.parse().map_err(|_| ())?;
            let e: u64 = e.parse().map_err(|_| ())?;
            if e < s {
                return Err(());
            }
            (s, (e + 1).min(len))
        }
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Streams a file's content (any version), honouring a single byte range,
/// and records the read in the caller's access log (`via` the endpoint).
pub(crate) async fn stream_file(
    state: &AppState,
    p: &Principal,
    id: &str,
    version: Option<u64>,
    headers: &HeaderMap,
    kind: ReadKind,
    via: ReadVia,
) -> ApiResult<Response> {
    let (row, _) = live_file(state, p, id).await?;
    require_read(p)?;
    let loaded = state.bus.load::<File>(id).await?;
    let v = match version {
        Some(n) => loaded
            .state
            .version(n)
            .ok_or_else(|| ApiError::not_found("version"))?,
        None => loaded
            .state
            .current()
            .ok_or_else(|| ApiError::not_found("file"))?,
    };
    let disposition = match kind {
        ReadKind::Download => "attachment",
        ReadKind::Preview => "inline",
    };
    let resp = content_response(
        state,
        &p.tenant_id.to_string(),
        &row.name,
        &v.content,
        headers,
        disposition,
    )
    .await?;
    if resp.status().is_success() {
        let (file_id, share_id) = (path_id(id, "file")?, path_id(&row.share_id, "share")?);
        let range = match resp.status() {
            StatusCode::PARTIAL_CONTENT => parse_range(headers, v.content.size)
                .ok()
                .flatten()
                .map(|(start, end)| ByteRange { start, end }),
            _ => None,
        };
        access_log::read(
            state,
            p,
            kind,
            FileRead {
                file_id,
                share_id,
                version: v.number,
                range,
                via,
                suppressed: 0,
            },
        );
    }
    Ok(resp)
}

/// Streams stored content as a response (single byte range honoured) with
/// the name in `Content-Disposition` (`attachment` or `inline`). The first
/// piece is read before the status is sent, so a blob store that is down or
/// too slow answers 502/504 instead of a truncated 200.
pub(crate) async fn content_response(
    state: &AppState,
    tenant: &str,
    name: &str,
    content: &Content,
    headers: &HeaderMap,
    disposition: &str,
) -> ApiResult<Response> {
    let len = content.size;
    let range = match parse_range(headers, len) {
        Ok(r) => r,
        Err(()) => {
            let mut resp = (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Json(json!({"detail": "Range not satisfiable"})),
            )
                .into_response();
            if let Ok(h) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, h);
            }
            return Ok(resp);
        }
    };
    let (start, end) = range.unwrap_or((0, len));
    let mut stream = Box::pin(read_range(
        state.blob.clone(),
        tenant.to_owned(),
        content.chunks.clone(),
        start,
        end,
    ));
    let body = match stream.next().await {
        Some(Err(e)) => return Err(ApiError::from_content_io(e)),
        Some(Ok(first)) => Body::from_stream(
            futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(stream),
        ),
        None => Body::empty(),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    // Content stored before media types were checked may hold anything.
    let ct = if super::drive::is_media_type(&content.mime_type) {
        content.mime_type.as_str()
    } else {
        "application/octet-stream"
    };
    if let Ok(ct) = HeaderValue::from_str(ct) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(cd) = HeaderValue::from_str(&format!(
        "{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, cd);
    }
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", content.checksum_sha256)) {
        h.insert(header::ETAG, etag);
    }
    if range.is_some() {
        if let Ok(cr) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end.saturating_sub(1)))
        {
            h.insert(header::CONTENT_RANGE, cr);
        }
    }
    Ok(resp)
}

/// Streams a file's content; `Range: bytes=a-b` answers 206; `inline=true`
/// serves it for display (a preview). Recorded in the audit view as
/// `file.downloaded` or `file.previewed` (FILE_ACCESS), at most once per
/// caller, file version and minute.
#[utoipa::path(get, path = "/files/{id}/content",
    params(("id" = inline(doc::FileId), Path), DownloadQuery,
        ("Range" = Option<String>, Header, pattern = "^bytes=[0-9]*-[0-9]*$",
            description = "One byte range, `bytes=a-b`")),
    responses(
        (status = 200, description = "The content (Content-Type is the file's)", body = doc::Binary,
            content_type = "*/*"),
        (status = 206, description = "The requested range", body = doc::Binary, content_type = "*/*"),
        (status = 404, description = "No such file or version"),
        (status = 410, description = "The file is in the trash"),
        (status = 416, description = "The range is not satisfiable"),
        (status = 502, description = "The blob store is unreachable"),
    ),
)]
async fn download(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<FileId>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = id.to_string();
    let kind = if q.inline.unwrap_or(false) {
        ReadKind::Preview
    } else {
        ReadKind::Download
    };
    stream_file(&state, &p, &id, q.version, &headers, kind, ReadVia::Files).await
}

/// Renames a file, restores it from the trash, or both (WRITE).
#[utoipa::path(patch, path = "/files/{id}", request_body = super::drive::RenameOrRestore,
    params(("id" = inline(doc::FileId), Path)),
    responses(
        (status = 200, description = "The file as changed", body = dto::File),
        (status = 409, description = "A live sibling has this name (NAME_CONFLICT)"),
        (status = 410, description = "The file (or a folder above it, or its share) is in the trash"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<FileId>,
    ApiJson(body): ApiJson<RenameOrRestore>,
) -> ApiResult<Response> {
    let ctx = p.context();
    let mut position = None;
    let write = Need::Perm(Permission::Write);
    if body.restore == Some(true) {
        let (row, share) = drive::file_any(&state, &p, id, write).await?;
        if share.is_deleted {
            return Err(DomainError::Gone("share is in the trash".into()).into());
        }
        if row.trashed_via.is_some() && !row.is_deleted {
            return Err(DomainError::Gone(
                "a folder above this file is in the trash; restore that one".into(),
            )
            .into());
        }
        let edit = cmd::FileEdit {
            id,
            by: p.user_id,
            current_path: &row.path,
            base: None,
        };
        position = cmd::trash_file(&state.bus, &ctx, edit, true)
            .await?
            .position
            .or(position);
        // The rename below reads the restored file.
        state.caught_up(position).await;
    }
    if let Some(name) = &body.name {
        let (row, _) = drive::file(&state, &p, id, write).await?;
        let edit = cmd::FileEdit {
            id,
            by: p.user_id,
            current_path: &row.path,
            base: None,
        };
        position = cmd::rename_file(&state.bus, &ctx, edit, name)
            .await?
            .position
            .or(position);
    }
    if body.name.is_none() && body.restore != Some(true) {
        live_file(&state, &p, &id.to_string()).await?;
    }
    let id = id.to_string();
    respond
        .after(&state, position, StatusCode::OK, || {
            file_dto(&state, &p, &id)
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Purge instead of moving to the trash.
    permanent: Option<bool>,
}

/// Moves a file to the trash, or purges it (DELETE).
#[utoipa::path(delete, path = "/files/{id}", params(("id" = inline(doc::FileId), Path), DeleteQuery), responses(
    (status = 204, description = "Trashed or purged"),
    (status = 410, description = "Already in the trash (purge it with permanent=true)"),
))]
async fn remove(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<FileId>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<Response> {
    let ctx = p.context();
    let need = Need::Perm(Permission::Delete);
    let committed = if q.permanent.unwrap_or(false) {
        drive::file_any(&state, &p, id, need).await?;
        cmd::purge_file(&state.bus, &ctx, id, p.user_id).await?
    } else {
        let (row, _) = drive::file(&state, &p, id, need).await?;
        let edit = cmd::FileEdit {
            id,
            by: p.user_id,
            current_path: &row.path,
            base: None,
        };
        cmd::trash_file(&state.bus, &ctx, edit, false).await?
    };
    Ok(respond.empty(&state, &committed).await)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct MoveBody {
    #[serde(flatten)]
    target: TargetBody,
    /// A new name at the target.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^/\\u0000]+$")]
    new_name: Option<String>,
}

impl Validate for MoveBody {
    fn check_json(body: &mut Value, found: &mut Found) {
        // serde cannot place a failure inside a flattened struct.
        found.check_as::<TargetBody>(body, &[]);
    }

    fn validate(&self, v: &mut Violations) {
        if let Some(n) = &self.new_name {
            v.item_name("new_name", n);
        }
    }
}

/// Copies a file (READ here, CREATE at the target).
#[utoipa::path(post, path = "/files/{id}/copy", request_body = MoveBody, params(("id" = inline(doc::FileId), Path)),
    responses(
        (status = 201, description = "The copy", body = dto::File),
        (status = 409, description = "Name taken at the target (NAME_CONFLICT)"),
        (status = 410, description = "The file or the target is in the trash"),
        (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
    ),
)]
async fn copy(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(file_id): ApiPath<FileId>,
    ApiJson(body): ApiJson<MoveBody>,
) -> ApiResult<Response> {
    drive::file(&state, &p, file_id, Need::Write).await?;
    let target = resolve_target(&state, &p, &body.target).await?;
    let ctx = p.context();
    let (new_id, committed) = cmd::copy_file(
        &state.bus,
        &ctx,
        file_id,
        target,
        body.new_name.as_deref(),
        p.user_id,
    )
    .await?;
    let new_id = new_id.to_string();
    respond
        .item(&state, &committed, StatusCode::CREATED, &new_id, || {
            file_dto(&state, &p, &new_id)
        })
        .await
}

/// Moves a file (DELETE here, CREATE at the target).
#[utoipa::path(post, path = "/files/{id}/move", request_body = MoveBody, params(("id" = inline(doc::FileId), Path)),
    responses(
        (status = 200, description = "The file at its new place", body = dto::File),
        (status = 409, description = "Name taken at the target (NAME_CONFLICT)"),
        (status = 410, description = "The file or the target is in the trash"),
        (status = 507, description = "The target share's quota would be exceeded"),
    ),
)]
async fn move_to(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(file_id): ApiPath<FileId>,
    ApiJson(body): ApiJson<MoveBody>,
) -> ApiResult<Response> {
    let (row, _) = drive::file(&state, &p, file_id, Need::Perm(Permission::Delete)).await?;
    let target = resolve_target(&state, &p, &body.target).await?;
    let ctx = p.context();
    let edit = cmd::FileEdit {
        id: file_id,
        by: p.user_id,
        current_path: &row.path,
        base: None,
    };
    let committed =
        cmd::move_file(&state.bus, &ctx, edit, target, body.new_name.as_deref()).await?;
    respond
        .item(&state, &committed, StatusCode::OK, &row.id, || {
            file_dto(&state, &p, &row.id)
        })
        .await
}

/// A file's versions, newest first.
#[utoipa::path(get, path = "/files/{id}/versions", params(("id" = inline(doc::FileId), Path)), responses(
    (status = 200, description = "Every version", body = dto::VersionList),
    (status = 410, description = "The file is in the trash"),
))]
async fn versions(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<FileId>,
) -> ApiResult<Json<dto::VersionList>> {
    let (row, _) = drive::file(&state, &p, id, Need::Read).await?;
    let rows = q::versions(&state.db, &row.id).await?;
    let versions: Vec<dto::Version> = rows
        .iter()
        .map(|v| dto::Version::of(v, row.version))
        .collect();
    let total = versions.len() as i64;
    Ok(Json(dto::VersionList { versions, total }))
}

/// Adds a new version with version `n`'s content (WRITE).
#[utoipa::path(post, path = "/files/{id}/versions/{n}/restore",
    params(("id" = inline(doc::FileId), Path), ("n" = u64, Path, minimum = 1, description = "The version number to restore")),
    responses(
        (status = 201, description = "The file at its new version", body = dto::File),
        (status = 410, description = "The file is in the trash"),
        (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
    ),
)]
async fn restore_version(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((file_id, n)): ApiPath<(FileId, u64)>,
) -> ApiResult<Response> {
    let (row, _) = drive::file(&state, &p, file_id, Need::Perm(Permission::Write)).await?;
    let id = row.id.clone();
    let ctx = p.context();
    let cmd = FileCommand::RestoreVersion {
        number: n,
        new_version_id: VersionId::from_uuid(Uuid::now_v7()),
        by: p.user_id,
        at: ctx.now,
    };
    // The new version's bytes are charged on the limited levels in the same append.
    let share: ShareId = path_id(&row.share_id, "share")?;
    let accounts = quota::enforcing_for_share(&state.bus, share).await?;
    let committed = state
        .bus
        .retrying(|| async {
            let mut uow = state.bus.begin(&ctx);
            let f = uow.load::<File>(&id).await?;
            let events = f.state.decide(&cmd)?;
            let added: u64 = events
                .iter()
                .map(|e| match e {
                    FileEvent::FileVersionAdded { version, .. } => version.content.size,
                    _ => 0,
                })
                .sum();
            uow.emit::<File>(&id, &events)?;
            if let FileCommand::RestoreVersion { new_version_id, .. } = &cmd {
                let reservation = new_version_id.to_string();
                quota::charge_in(&mut uow, &state.db, &accounts, &reservation, added).await?;
            }
            uow.commit().await
        })
        .await?;
    respond
        .item(&state, &committed, StatusCode::CREATED, &id, || {
            file_dto(&state, &p, &id)
        })
        .await
}

impl Validate for TargetBody {}
