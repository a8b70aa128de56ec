//! Sync (SPEC §4.6): the change feed paged by an opaque cursor, devices and
//! their cursors, applying a device's changes with conflict detection,
//! conflicts, and downloads with ranges.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use scaidrive_domain::access::Permission;
use scaidrive_domain::drive::file::{Content, File};
use scaidrive_domain::drive::upload::{UploadSession, UploadStatus};
use scaidrive_domain::id::{ConflictId, FileId, FolderId, ShareId, UploadId, VersionId};
use scaidrive_domain::sync::{
    validate_device_id, ChangeType, ClientChange, ConflictStrategy, DeviceInfo, ResourceType,
};
use scaidrive_domain::{DomainError, LogPosition};
use scaidrive_projections::drive_queries::ShareRow;
use scaidrive_projections::sync::NAME as FEED;
use scaidrive_projections::sync_queries as sq;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::drive::{
    live_file, live_folder, live_share, path_id, require_perm, require_read, require_write,
    visible_share, On,
};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use super::{ts, Positioned};
use crate::blob::content::checksum;
use crate::command::drive::{self as cmd, Target};
use crate::command::sync::{
    self as sync_cmd, Applier, ConflictRecord, ContentTarget, ContentWrite, FileChange, Outcome,
    Settled, Upload,
};
use crate::command::CommandContext;

/// Largest page of the change feed.
pub const MAX_CHANGES: i64 = 5000;
/// Most changes one apply request may carry.
pub const MAX_APPLY: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sync/changes", get(changes))
        .route("/sync/devices", get(devices).post(register))
        .route("/sync/status", get(status))
        .route("/sync/cursor", post(move_cursor))
        .route("/sync/apply", post(apply))
        .route("/sync/conflicts", get(conflicts))
        .route("/sync/conflicts/{id}/resolve", post(resolve))
        .route("/sync/download/{file_id}", get(download))
}

/// The end of the feed: every change at or before it is already stored.
pub async fn feed_end(state: &AppState) -> ApiResult<LogPosition> {
    let here = state.projector.position_of(FEED).unwrap_or_default();
    let stored = scaidrive_projections::checkpoint::read(&state.db, FEED)
        .await?
        .map(|c| c.position)
        .unwrap_or_default();
    Ok(here.max(stored))
}

/// A live share the caller may read (404, 410, 403 in SPEC order).
pub async fn readable_share(state: &AppState, p: &Principal, id: &str) -> ApiResult<ShareRow> {
    let _: ShareId = path_id(id, "share")?;
    let share = live_share(state, p, id).await?;
    require_read(p)?;
    require_perm(state, p, On::Share(&share), Permission::Read).await?;
    Ok(share)
}

fn parse_position(raw: &str, what: &str) -> ApiResult<LogPosition> {
    LogPosition::parse_token(raw.trim())
        .ok_or_else(|| ApiError::BadRequest(format!("'{raw}' is not a valid {what}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    #[param(value_type = doc::ShareId, inline)]
    share_id: String,
    /// Opaque; absent = the end of the feed (only newer changes), `0` = the
    /// beginning of the share's history.
    #[param(pattern = "^(0|[0-9]{1,18}\\.[0-9]{1,18})?$")]
    cursor: Option<String>,
    /// Default 1000.
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// A share's change feed after a cursor.
#[utoipa::path(get, path = "/sync/changes", params(ChangesQuery), responses(
    (status = 200, description = "A page of changes and the next cursor", body = dto::ChangePage),
    (status = 404, description = "No such share, or not visible"),
))]
async fn changes(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult<Json<dto::ChangePage>> {
    let limit = q.limit.unwrap_or(1000);
    if !(1..=MAX_CHANGES).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_CHANGES}"
        )));
    }
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| parse_position(c, "cursor"))
        .transpose()?;
    // A trashed share's feed stays readable: its last change says so.
    let _: ShareId = path_id(&q.share_id, "share")?;
    let share = visible_share(&state, &p, &q.share_id).await?;
    require_read(&p)?;
    require_perm(&state, &p, On::Share(&share), Permission::Read).await?;
    // Read the end first: every change at or before it is in the table now,
    // so a cursor moved up to it skips nothing.
    let end = feed_end(&state).await?;
    let after = cursor.unwrap_or(end);
    let mut rows = sq::changes(
        &state.db,
        &p.tenant_id.to_string(),
        &q.share_id,
        after,
        limit + 1,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let last = rows.last().map(|r| r.log()).unwrap_or(after);
    let next = if has_more { last } else { last.max(end) };
    Ok(Json(dto::ChangePage {
        changes: rows.iter().map(dto::Change::from).collect(),
        cursor: next.to_token(),
        has_more,
        share_id: q.share_id,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RegisterDevice {
    /// Client-generated, 1–128 characters without control characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    device_id: String,
    #[schema(max_length = 255)]
    device_name: Option<String>,
    #[schema(max_length = 255)]
    platform: Option<String>,
    #[schema(max_length = 255)]
    client_version: Option<String>,
}

impl Validate for RegisterDevice {
    const REQUIRED: &'static [&'static str] = &["device_id"];
    fn validate(&self, v: &mut Violations) {
        v.length("device_id", &self.device_id, 1, 128);
        for (f, val) in [
            ("device_name", &self.device_name),
            ("platform", &self.platform),
            ("client_version", &self.client_version),
        ] {
            if let Some(s) = val {
                v.length(f, s, 0, 255);
            }
        }
    }
}

/// A device of the caller with its cursors, as stored.
async fn device_dto(state: &AppState, p: &Principal, device_id: &str) -> ApiResult<dto::Device> {
    let row = own_device(state, p, device_id).await?;
    let cursors = sq::cursors(&state.db, &p.user_id.to_string(), device_id).await?;
    Ok(dto::Device::from((&row, cursors.as_slice())))
}

/// Registers a device of the caller (again: updates it).
#[utoipa::path(post, path = "/sync/devices", request_body = RegisterDevice, responses(
    (status = 201, description = "Registered", body = dto::Device),
    (status = 200, description = "Already registered; updated", body = dto::Device),
))]
async fn register(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<RegisterDevice>,
) -> ApiResult<Response> {
    require_read(&p)?;
    let info = DeviceInfo {
        device_name: body
            .device_name
            .clone()
            .unwrap_or_else(|| body.device_id.clone()),
        platform: body.platform.clone().unwrap_or_default(),
        client_version: body.client_version.clone().unwrap_or_default(),
    };
    let (created, committed) = sync_cmd::register_device(
        &state.bus,
        &p.context(),
        p.user_id,
        p.tenant_id,
        &body.device_id,
        info,
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    respond
        .full()
        .item(&state, &committed, status, &body.device_id, || {
            device_dto(&state, &p, &body.device_id)
        })
        .await
}

/// The caller's devices with their cursors.
#[utoipa::path(get, path = "/sync/devices", responses(
    (status = 200, description = "Every device", body = dto::DeviceList),
))]
async fn devices(State(state): State<AppState>, p: Principal) -> ApiResult<Json<dto::DeviceList>> {
    require_read(&p)?;
    let rows = sq::devices(&state.db, &p.user_id.to_string()).await?;
    let mut devices = Vec::with_capacity(rows.len());
    for d in &rows {
        let cursors = sq::cursors(&state.db, &d.user_id, &d.device_id).await?;
        devices.push(dto::Device::from((d, cursors.as_slice())));
    }
    Ok(Json(dto::DeviceList {
        devices,
        total: rows.len(),
    }))
}

/// The caller's registered device (404 otherwise, also for malformed ids).
async fn own_device(state: &AppState, p: &Principal, device_id: &str) -> ApiResult<sq::DeviceRow> {
    if validate_device_id(device_id).is_err() {
        return Err(ApiError::BadRequest(
            "device_id must be 1 to 128 characters without control characters".into(),
        ));
    }
    sq::device(&state.db, &p.user_id.to_string(), device_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound("device not found; register it with POST /sync/devices".into())
        })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    #[param(value_type = doc::ShareId, inline)]
    share_id: String,
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    device_id: String,
}

/// A device's sync state on a share (its first look creates the cursor at the end).
#[utoipa::path(get, path = "/sync/status", params(StatusQuery), responses(
    (status = 200, description = "Cursor, pending changes and conflicts", body = dto::SyncStatus),
    (status = 404, description = "No such share or device"),
    (status = 410, description = "The share is in the trash"),
))]
async fn status(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> ApiResult<Positioned<Json<dto::SyncStatus>>> {
    let share = readable_share(&state, &p, &q.share_id).await?;
    own_device(&state, &p, &q.device_id).await?;
    let user = p.user_id.to_string();
    let mut position = None;
    let cursor = match sq::cursor(&state.db, &user, &q.device_id, &share.id).await? {
        Some(c) => c,
        None => {
            // A device's first look at a share starts at the end of the feed:
            // it lists the share, then follows changes from here.
            let end = feed_end(&state).await?;
            let committed = sync_cmd::move_cursor(
                &state.bus,
                &p.context(),
                p.user_id,
                &q.device_id,
                path_id(&share.id, "share")?,
                end,
                end,
            )
            .await?;
            state.caught_up_to(&committed).await;
            position = committed.position;
            sq::cursor(&state.db, &user, &q.device_id, &share.id)
                .await?
                .ok_or_else(|| ApiError::internal("cursor was not stored"))?
        }
    };
    let tenant = p.tenant_id.to_string();
    let pending = sq::pending(&state.db, &tenant, &share.id, cursor.log()).await?;
    let open = sq::conflicts(
        &state.db,
        &tenant,
        Some(&user),
        Some(&q.device_id),
        Some(&share.id),
        false,
    )
    .await?;
    Ok(Positioned(
        position,
        Json(dto::SyncStatus {
            share_id: share.id,
            device_id: q.device_id,
            cursor_position: cursor.log().to_token(),
            last_sync_at: ts(cursor.last_sync_at),
            pending_changes: pending,
            has_conflicts: !open.is_empty(),
            open_conflicts: open.len(),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CursorQuery {
    #[param(value_type = doc::ShareId, inline)]
    share_id: String,
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    device_id: String,
    /// A cursor from the feed.
    #[param(pattern = "^(0|[0-9]{1,18}\\.[0-9]{1,18})$")]
    position: String,
}

/// Moves a device's cursor on a share (never past the end of the feed).
#[utoipa::path(post, path = "/sync/cursor", params(CursorQuery), responses(
    (status = 200, description = "The cursor as moved", body = dto::CursorMoved),
    (status = 404, description = "No such share or device"),
    (status = 410, description = "The share is in the trash"),
))]
async fn move_cursor(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiQuery(q): ApiQuery<CursorQuery>,
) -> ApiResult<Response> {
    let to = parse_position(&q.position, "position")?;
    let share = readable_share(&state, &p, &q.share_id).await?;
    own_device(&state, &p, &q.device_id).await?;
    let end = feed_end(&state).await?;
    let committed = sync_cmd::move_cursor(
        &state.bus,
        &p.context(),
        p.user_id,
        &q.device_id,
        path_id(&share.id, "share")?,
        to,
        end,
    )
    .await?;
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &share.id, || {
            cursor_moved(&state, &p, &q.device_id, &share.id)
        })
        .await
}

/// A device's cursor on a share, as stored.
async fn cursor_moved(
    state: &AppState,
    p: &Principal,
    device_id: &str,
    share_id: &str,
) -> ApiResult<dto::CursorMoved> {
    let cursor = sq::cursor(&state.db, &p.user_id.to_string(), device_id, share_id)
        .await?
        .ok_or_else(|| ApiError::internal("cursor was not stored"))?;
    Ok(dto::CursorMoved {
        share_id: share_id.to_owned(),
        device_id: device_id.to_owned(),
        cursor_position: cursor.log().to_token(),
        last_sync_at: ts(cursor.last_sync_at),
    })
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
struct ApplyChange {
    #[schema(value_type = doc::ChangeTypeDoc)]
    change_type: ChangeType,
    /// `file` or `folder`.
    #[schema(value_type = doc::SyncResourceType)]
    resource_type: ResourceType,
    /// Required except for `created`.
    resource_id: Option<String>,
    /// Where the item is created or moved to; absent = the share root.
    #[schema(value_type = Option<doc::FolderId>)]
    parent_id: Option<FolderId>,
    /// Required for `renamed` and created folders.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^/\\u0000]+$")]
    name: Option<String>,
    /// The version the device changed; another current one is a conflict.
    #[schema(value_type = Option<doc::VersionId>)]
    base_version_id: Option<VersionId>,
    /// The uploaded content of a created or updated file.
    #[schema(value_type = Option<doc::UploadId>)]
    upload_session_id: Option<UploadId>,
    /// When the device made the change (LAST_WRITER_WINS compares it).
    #[schema(value_type = Option<doc::DateTimeInput>)]
    modified_at: Option<DateTime<Utc>>,
}

impl ApplyChange {
    fn client(&self) -> ClientChange {
        ClientChange {
            change_type: self.change_type,
            resource_type: self.resource_type,
            resource_id: self.resource_id.clone(),
            parent_id: self.parent_id.map(|p| p.to_string()),
            name: self.name.clone(),
            base_version_id: self.base_version_id.map(|b| b.to_string()),
            upload_session_id: self.upload_session_id.map(|u| u.to_string()),
            modified_at: self.modified_at,
        }
    }

    fn from_client(c: &ClientChange) -> ApiResult<Self> {
        let bad = |f: &str| ApiError::internal(format!("stored conflict has a malformed {f}"));
        Ok(Self {
            change_type: c.change_type,
            resource_type: c.resource_type,
            resource_id: c.resource_id.clone(),
            parent_id: c
                .parent_id
                .as_deref()
                .map(|s| s.parse().map_err(|_| bad("parent_id")))
                .transpose()?,
            name: c.name.clone(),
            base_version_id: c
                .base_version_id
                .as_deref()
                .map(|s| s.parse().map_err(|_| bad("base_version_id")))
                .transpose()?,
            upload_session_id: c
                .upload_session_id
                .as_deref()
                .map(|s| s.parse().map_err(|_| bad("upload_session_id")))
                .transpose()?,
            modified_at: c.modified_at,
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ApplyBody {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    device_id: String,
    #[schema(value_type = doc::ShareId)]
    share_id: ShareId,
    /// Default `MANUAL`: a conflict answers 409 and is stored.
    #[schema(value_type = Option<doc::ConflictStrategyDoc>)]
    conflict_resolution: Option<ConflictStrategy>,
    #[schema(min_items = 1, max_items = 1000)]
    changes: Vec<ApplyChange>,
}

impl Validate for ApplyBody {
    const REQUIRED: &'static [&'static str] = &["device_id", "share_id", "changes"];
    fn validate(&self, v: &mut Violations) {
        v.length("device_id", &self.device_id, 1, 128);
        if self.changes.is_empty() || self.changes.len() > MAX_APPLY {
            v.push(
                "value_error",
                "changes",
                format!("Value error, between 1 and {MAX_APPLY} changes are accepted"),
                Value::from(self.changes.len()),
            );
        }
        for (i, c) in self.changes.iter().enumerate() {
            let at = |f: &str| format!("changes.{i}.{f}");
            let missing = |v: &mut Violations, f: &str| {
                v.push("missing", &at(f), "Field required", Value::Null)
            };
            if c.resource_type == ResourceType::Share {
                v.push(
                    "value_error",
                    &at("resource_type"),
                    "Value error, sync applies changes to files and folders",
                    Value::from("share"),
                );
                continue;
            }
            let file = c.resource_type == ResourceType::File;
            match c.change_type {
                ChangeType::Created => {
                    if !file && c.name.is_none() {
                        missing(v, "name");
                    }
                    if file && c.upload_session_id.is_none() {
                        missing(v, "upload_session_id");
                    }
                }
                ChangeType::Updated => {
                    if !file {
                        v.push(
                            "value_error",
                            &at("change_type"),
                            "Value error, folders have no content to update; rename or move them",
                            Value::from("updated"),
                        );
                    }
                    if c.upload_session_id.is_none() {
                        missing(v, "upload_session_id");
                    }
                }
                ChangeType::Renamed => {
                    if c.name.is_none() {
                        missing(v, "name");
                    }
                }
                ChangeType::Moved | ChangeType::Deleted => {}
            }
            if c.change_type != ChangeType::Created && c.resource_id.is_none() {
                missing(v, "resource_id");
            }
            if let Some(n) = &c.name {
                v.item_name(&at("name"), n);
            }
        }
    }
}

/// Why applying stopped before the end of the batch.
enum Stop {
    /// MANUAL: the conflict is stored for a person to resolve.
    Manual(Outcome),
    Failed(ApiError),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::Failed(e)
    }
}

impl From<crate::command::CommandError> for Stop {
    fn from(e: crate::command::CommandError) -> Self {
        Stop::Failed(e.into())
    }
}

/// What every change of one apply request shares.
struct Cx<'a> {
    state: &'a AppState,
    p: &'a Principal,
    ctx: CommandContext,
    share: ShareRow,
    share_id: ShareId,
    device: sq::DeviceRow,
    strategy: ConflictStrategy,
}

/// Content a device uploaded for a change.
struct Uploaded {
    id: UploadId,
    content: Content,
    /// `Some(checksum)` while the session still has to be completed.
    complete_with: Option<String>,
    /// The file and version a session completed earlier produced.
    completed_into: Option<(FileId, VersionId)>,
    file_name: String,
}

async fn uploaded(cx: &Cx<'_>, id: UploadId) -> ApiResult<Uploaded> {
    let loaded = cx.state.bus.load::<UploadSession>(&id.to_string()).await?;
    let s = loaded.state;
    let plan = s
        .plan
        .clone()
        .filter(|plan| {
            plan.tenant_id == cx.p.tenant_id
                && (s.created_by == Some(cx.p.user_id) || cx.p.is_tenant_admin)
        })
        .ok_or_else(|| ApiError::not_found("upload session"))?;
    if plan.share_id != cx.share_id {
        return Err(DomainError::invalid(
            "upload_session_id",
            "the upload session belongs to another share",
        )
        .into());
    }
    match s.status_at(Utc::now()) {
        UploadStatus::Aborted => Err(DomainError::Gone("upload session was aborted".into()).into()),
        UploadStatus::Expired => Err(DomainError::Gone("upload session expired".into()).into()),
        UploadStatus::Completed => {
            let (file_id, version_id) = s
                .result
                .ok_or_else(|| ApiError::internal("completed session without a result"))?;
            let f = cx.state.bus.load::<File>(&file_id.to_string()).await?;
            let v = f
                .state
                .versions
                .iter()
                .find(|v| v.content.version_id == version_id)
                .ok_or_else(|| ApiError::not_found("version"))?;
            let mut content = v.content.clone();
            content.version_id = VersionId::from_uuid(Uuid::now_v7());
            Ok(Uploaded {
                id,
                content,
                complete_with: None,
                completed_into: Some((file_id, version_id)),
                file_name: plan.file_name,
            })
        }
        UploadStatus::Active => {
            let chunks = s.chunk_list().ok_or_else(|| {
                DomainError::InvalidTransition(format!(
                    "upload session {id} is missing chunks {:?}",
                    s.missing()
                ))
            })?;
            let computed = checksum(&cx.state.blob, &cx.p.tenant_id.to_string(), &chunks).await?;
            Ok(Uploaded {
                id,
                content: Content {
                    version_id: VersionId::from_uuid(Uuid::now_v7()),
                    size: plan.file_size,
                    checksum_sha256: computed.clone(),
                    mime_type: plan.mime_type.clone(),
                    chunk_size: plan.chunk_size,
                    chunks,
                },
                complete_with: Some(computed),
                completed_into: None,
                file_name: plan.file_name,
            })
        }
    }
}

/// Where a created or moved item goes, with CREATE checked there.
async fn target_in(cx: &Cx<'_>, parent: Option<FolderId>) -> ApiResult<Target> {
    match parent {
        Some(f) => {
            let (row, _) = live_folder(cx.state, cx.p, &f.to_string()).await?;
            if row.share_id != cx.share.id {
                return Err(
                    DomainError::invalid("parent_id", "the folder is not in this share").into(),
                );
            }
            require_perm(cx.state, cx.p, On::Folder(&row), Permission::Create).await?;
            Ok(Target {
                share_id: cx.share_id,
                folder_id: Some(f),
                parent_path: row.path,
            })
        }
        None => {
            require_perm(cx.state, cx.p, On::Share(&cx.share), Permission::Create).await?;
            Ok(Target {
                share_id: cx.share_id,
                folder_id: None,
                parent_path: "/".into(),
            })
        }
    }
}

fn resource_id(ch: &ApplyChange) -> ApiResult<&str> {
    ch.resource_id
        .as_deref()
        .ok_or_else(|| DomainError::invalid("resource_id", "Field required").into())
}

/// 404 unless the item lives in the request's share (an id from elsewhere
/// must not be reachable through this share's apply).
fn in_share(cx: &Cx<'_>, share_id: &str, what: &str) -> ApiResult<()> {
    if share_id == cx.share.id {
        Ok(())
    } else {
        Err(ApiError::not_found(what))
    }
}

/// Who applies the request's changes, for the command layer.
fn applier(cx: &Cx<'_>) -> Applier {
    let label = if cx.device.device_name.trim().is_empty() {
        cx.p.name
            .clone()
            .unwrap_or_else(|| cx.p.user_id.to_string())
    } else {
        cx.device.device_name.clone()
    };
    Applier {
        tenant_id: cx.p.tenant_id,
        share_id: cx.share_id,
        device_id: cx.device.device_id.clone(),
        label,
        user_id: cx.p.user_id,
        strategy: cx.strategy,
    }
}

/// Applies one change. `existing` is set when a stored conflict is being
/// resolved: the change then skips its base check and carries the resolution.
async fn apply_one(
    cx: &Cx<'_>,
    ch: &ApplyChange,
    existing: Option<(ConflictId, ConflictStrategy)>,
) -> Result<Outcome, Stop> {
    match ch.resource_type {
        ResourceType::Share => {
            Err(ApiError::BadRequest("sync applies to files and folders".into()).into())
        }
        ResourceType::Folder => {
            let out = apply_folder(cx, ch).await?;
            if let Some((id, r)) = existing {
                let record = ConflictRecord::Existing { id, resolution: r };
                sync_cmd::record_outcome(&cx.state.bus, &cx.ctx, record, &out, cx.p.user_id, None)
                    .await?;
                return Ok(Outcome {
                    conflict_id: Some(id.to_string()),
                    resolution: Some(r),
                    ..out
                });
            }
            Ok(out)
        }
        ResourceType::File => apply_file(cx, ch, existing).await,
    }
}

async fn apply_folder(cx: &Cx<'_>, ch: &ApplyChange) -> Result<Outcome, Stop> {
    let (bus, ctx) = (&cx.state.bus, &cx.ctx);
    if ch.change_type == ChangeType::Created {
        let name = ch.name.clone().unwrap_or_default();
        let target = target_in(cx, ch.parent_id).await?;
        let (id, committed) =
            cmd::create_folder(bus, ctx, cx.p.tenant_id, target, &name, cx.p.user_id).await?;
        return Ok(Outcome::applied(id.to_string(), None, committed.position));
    }
    let raw = resource_id(ch)?;
    let id: FolderId = path_id(raw, "folder")?;
    let (row, _) = live_folder(cx.state, cx.p, raw).await?;
    in_share(cx, &row.share_id, "folder")?;
    let committed = match ch.change_type {
        ChangeType::Renamed => {
            require_perm(cx.state, cx.p, On::Folder(&row), Permission::Write).await?;
            let name = ch.name.clone().unwrap_or_default();
            cmd::rename_folder(bus, ctx, id, &name, &row.path).await?
        }
        ChangeType::Moved => {
            require_perm(cx.state, cx.p, On::Folder(&row), Permission::Delete).await?;
            let target = target_in(cx, ch.parent_id).await?;
            // Sync moves stay inside the share: no quota moves with them.
            cmd::move_folder(bus, ctx, id, target, &row.path, &[], &[]).await?
        }
        ChangeType::Deleted => {
            require_perm(cx.state, cx.p, On::Folder(&row), Permission::Delete).await?;
            cmd::trash_folder(bus, ctx, id, false, &row.path).await?
        }
        ChangeType::Created | ChangeType::Updated => {
            return Err(ApiError::BadRequest("folders have no content to update".into()).into())
        }
    };
    Ok(Outcome::applied(id.to_string(), None, committed.position))
}

async fn apply_file(
    cx: &Cx<'_>,
    ch: &ApplyChange,
    existing: Option<(ConflictId, ConflictStrategy)>,
) -> Result<Outcome, Stop> {
    let (bus, ctx) = (&cx.state.bus, &cx.ctx);
    if ch.change_type == ChangeType::Created {
        let upload = ch.upload_session_id.ok_or_else(|| {
            ApiError::from(DomainError::invalid("upload_session_id", "Field required"))
        })?;
        let target = target_in(cx, ch.parent_id).await?;
        let up = uploaded(cx, upload).await?;
        if let Some((file_id, version_id)) = up.completed_into {
            // The session was completed on its own: the file exists already.
            return Ok(Outcome::applied(
                file_id.to_string(),
                Some(version_id.to_string()),
                None,
            ));
        }
        let name = ch.name.clone().unwrap_or_else(|| up.file_name.clone());
        let write = ContentWrite {
            upload: up.complete_with.clone().map(|c| (up.id, c)),
            content: up.content.clone(),
            target: ContentTarget::NewFile {
                tenant: cx.p.tenant_id,
                target,
                name,
                file_id: FileId::from_uuid(Uuid::now_v7()),
            },
            device_id: cx.device.device_id.clone(),
            share_id: cx.share_id,
            change_type: ChangeType::Created,
            by: cx.p.user_id,
            conflict: None,
        };
        let (file_id, committed) = sync_cmd::write_content(bus, ctx, &write).await?;
        return Ok(Outcome::applied(
            file_id.to_string(),
            Some(up.content.version_id.to_string()),
            committed.position,
        ));
    }
    let raw = resource_id(ch)?;
    let id: FileId = path_id(raw, "file")?;
    let (row, _) = live_file(cx.state, cx.p, raw).await?;
    in_share(cx, &row.share_id, "file")?;
    let need = match ch.change_type {
        ChangeType::Updated | ChangeType::Renamed => Permission::Write,
        _ => Permission::Delete,
    };
    require_perm(cx.state, cx.p, On::File(&row), need).await?;
    let move_target = if ch.change_type == ChangeType::Moved {
        Some(target_in(cx, ch.parent_id).await?)
    } else {
        None
    };
    let up = match ch.upload_session_id {
        Some(u) if ch.change_type == ChangeType::Updated => Some(uploaded(cx, u).await?),
        _ => None,
    };
    if let Some((done_file, done_version)) = up.as_ref().and_then(|u| u.completed_into) {
        if done_file == id {
            // Completed on its own as a version of this very file.
            return Ok(Outcome::applied(
                id.to_string(),
                Some(done_version.to_string()),
                None,
            ));
        }
    }
    let folder_id = row
        .folder_id
        .as_deref()
        .map(|f| path_id::<FolderId>(f, "folder"))
        .transpose()?;
    let change = FileChange {
        change: ch.client(),
        change_type: ch.change_type,
        base_version_id: ch.base_version_id,
        modified_at: ch.modified_at,
        new_name: ch.name.clone(),
        file_id: id,
        name: row.name,
        path: row.path,
        folder_id,
        move_target,
        upload: up.map(|u| Upload {
            id: u.id,
            content: u.content,
            complete_with: u.complete_with,
        }),
    };
    match sync_cmd::settle_file(bus, ctx, &applier(cx), &change, existing).await? {
        Settled::Done(out) => Ok(out),
        Settled::Manual(out) => Err(Stop::Manual(out)),
        // A version landed between the checks and the append: check again.
        Settled::Raced => Box::pin(apply_file(cx, ch, None)).await,
    }
}

/// A partial batch: the changes applied before the one that stopped it.
fn stopped(
    status: StatusCode,
    mut body: Value,
    index: usize,
    results: &[dto::ApplyOutcome],
) -> Response {
    body["index"] = Value::from(index);
    body["results"] = serde_json::to_value(results).unwrap_or_default();
    (status, Json(body)).into_response()
}

/// Applies a device's changes in order, detecting conflicts.
#[utoipa::path(post, path = "/sync/apply", request_body = ApplyBody, responses(
    (status = 200, description = "One outcome per change", body = dto::ApplyResult),
    (status = 404, description = "No such share, device or resource"),
    (status = 409, description = "A change conflicts (MANUAL: SYNC_CONFLICT with conflict_id and the results so far) or a name is taken"),
    (status = 410, description = "The share or a resource is in the trash"),
    (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
))]
async fn apply(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<ApplyBody>,
) -> ApiResult<Response> {
    if validate_device_id(&body.device_id).is_err() {
        return Err(DomainError::invalid(
            "device_id",
            "must be 1 to 128 characters without control characters",
        )
        .into());
    }
    let share = readable_share(&state, &p, &body.share_id.to_string()).await?;
    require_write(&p)?;
    let device = own_device(&state, &p, &body.device_id).await?;
    let mut ctx = p.context();
    ctx.actor.device_id = Some(body.device_id.clone());
    let cx = Cx {
        state: &state,
        p: &p,
        ctx,
        share,
        share_id: body.share_id,
        device,
        strategy: body.conflict_resolution.unwrap_or_default(),
    };
    let mut results = Vec::with_capacity(body.changes.len());
    let mut last = None;
    for (i, ch) in body.changes.iter().enumerate() {
        match apply_one(&cx, ch, None).await {
            Ok(out) => {
                last = out.position.max(last);
                results.push(dto::ApplyOutcome::from((i, &out)));
            }
            Err(Stop::Manual(out)) => {
                state.caught_up(out.position.max(last)).await;
                // A documented outcome of apply rather than a failure: the
                // conflict is stored and named, with what was applied before it.
                let body = json!({
                    "detail": format!("change {i} conflicts with a newer version on the server; resolve conflict {}", out.conflict_id.clone().unwrap_or_default()),
                    "code": "SYNC_CONFLICT",
                    "conflict_id": out.conflict_id,
                    "result": dto::ApplyOutcome::from((i, &out)),
                });
                return Ok(Positioned(
                    out.position.max(last),
                    stopped(StatusCode::CONFLICT, body, i, &results),
                )
                .into_response());
            }
            Err(Stop::Failed(e)) => {
                if results.is_empty() {
                    return Err(e);
                }
                state.caught_up(last).await;
                let status = e.status();
                let mut resp = e.into_response();
                // A refused permission stays recorded (the middleware finds it
                // on the answer).
                let refusal = resp.extensions_mut().remove::<super::error::Refusal>();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .map_err(ApiError::internal)?;
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(json!({}));
                let mut resp = Positioned(last, stopped(status, body, i, &results)).into_response();
                if let Some(r) = refusal {
                    resp.extensions_mut().insert(r);
                }
                return Ok(resp);
            }
        }
    }
    respond
        .after(&state, last, StatusCode::OK, || {
            applied(&state, &cx, results, last)
        })
        .await
}

/// What a whole batch did, with the device's cursor as it stands.
async fn applied(
    state: &AppState,
    cx: &Cx<'_>,
    results: Vec<dto::ApplyOutcome>,
    last: Option<LogPosition>,
) -> ApiResult<dto::ApplyResult> {
    let cursor = sq::cursor(
        &state.db,
        &cx.p.user_id.to_string(),
        &cx.device.device_id,
        &cx.share.id,
    )
    .await?
    .map(|c| c.log().to_token());
    Ok(dto::ApplyResult {
        results,
        cursor,
        position: last.map(|l| l.to_token()),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConflictsQuery {
    device_id: Option<String>,
    #[param(value_type = Option<doc::ShareId>, inline)]
    share_id: Option<String>,
    include_resolved: Option<bool>,
}

/// The caller's conflicts (every user's for tenant admins).
#[utoipa::path(get, path = "/sync/conflicts", params(ConflictsQuery), responses(
    (status = 200, description = "Conflicts", body = dto::ConflictList),
    (status = 404, description = "No such share, or not visible"),
    (status = 410, description = "The share is in the trash"),
))]
async fn conflicts(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ConflictsQuery>,
) -> ApiResult<Json<dto::ConflictList>> {
    require_read(&p)?;
    if let Some(s) = &q.share_id {
        readable_share(&state, &p, s).await?;
    }
    // Tenant admins see every user's conflicts; others their own.
    let user = (!p.is_tenant_admin).then(|| p.user_id.to_string());
    let rows = sq::conflicts(
        &state.db,
        &p.tenant_id.to_string(),
        user.as_deref(),
        q.device_id.as_deref(),
        q.share_id.as_deref(),
        q.include_resolved.unwrap_or(false),
    )
    .await?;
    Ok(Json(dto::ConflictList {
        total: rows.len(),
        conflicts: rows.iter().map(dto::Conflict::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ResolveQuery {
    #[param(value_type = doc::Resolution, inline)]
    resolution: String,
}

/// Resolves a stored conflict.
#[utoipa::path(post, path = "/sync/conflicts/{id}/resolve",
    params(("id" = inline(doc::ConflictId), Path), ResolveQuery),
    responses(
        (status = 200, description = "The conflict, resolved, with what resolving did", body = dto::Conflict),
        (status = 409, description = "Already resolved, or the resolution conflicts again"),
        (status = 410, description = "The share or the resource is in the trash"),
        (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
    ),
)]
async fn resolve(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ResolveQuery>,
) -> ApiResult<Response> {
    let conflict_id: ConflictId = path_id(&id, "conflict")?;
    let resolution = ConflictStrategy::parse(&q.resolution)
        .filter(|r| *r != ConflictStrategy::Manual)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "resolution must be one of LAST_WRITER_WINS, KEEP_BOTH, SERVER_WINS, CLIENT_WINS"
                    .into(),
            )
        })?;
    let tenant = p.tenant_id.to_string();
    let row = sq::conflict(&state.db, &tenant, &id)
        .await?
        .filter(|r| p.is_tenant_admin || r.user_id == p.user_id.to_string())
        .ok_or_else(|| ApiError::not_found("conflict"))?;
    let share = readable_share(&state, &p, &row.share_id).await?;
    require_write(&p)?;
    if row.status == "resolved" {
        return Err(DomainError::InvalidTransition("conflict is already resolved".into()).into());
    }
    let change: ClientChange = serde_json::from_str(&row.client_change)
        .map_err(|e| ApiError::internal(format!("stored conflict change: {e}")))?;
    let ch = ApplyChange::from_client(&change)?;
    let device = match sq::device(&state.db, &row.user_id, &row.device_id).await? {
        Some(d) => d,
        None => own_device(&state, &p, &row.device_id).await?,
    };
    let mut ctx = p.context();
    ctx.actor.device_id = Some(row.device_id.clone());
    let cx = Cx {
        state: &state,
        p: &p,
        ctx,
        share_id: path_id(&share.id, "share")?,
        share,
        device,
        strategy: resolution,
    };
    let out = match apply_one(&cx, &ch, Some((conflict_id, resolution))).await {
        Ok(out) => out,
        Err(Stop::Manual(out)) => out,
        Err(Stop::Failed(e)) => return Err(e),
    };
    respond
        .after(&state, out.position, StatusCode::OK, || {
            resolved(&state, &tenant, &id, &out)
        })
        .await
}

/// A conflict as stored, with what resolving it did.
async fn resolved(
    state: &AppState,
    tenant: &str,
    id: &str,
    out: &Outcome,
) -> ApiResult<dto::Conflict> {
    let row = sq::conflict(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conflict"))?;
    Ok(dto::Conflict {
        result: Some(dto::ApplyOutcome::from((0, out))),
        ..dto::Conflict::from(&row)
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SyncDownloadQuery {
    /// A version number; default the current one.
    #[param(minimum = 1)]
    version: Option<u64>,
    /// The first byte to send (inclusive, from 0), as `Range: bytes=a-`
    /// would; answers 206 with `Content-Range`. Not with a `Range` header.
    #[param(minimum = 0)]
    range_start: Option<u64>,
    /// The last byte to send (inclusive, clamped to the end); needs
    /// `range_start`.
    #[param(minimum = 0)]
    range_end: Option<u64>,
}

/// The byte range a sync download asks for, as the `Range` header the
/// content response honours: the header itself, or the query's
/// `range_start`/`range_end` written as one.
fn requested_range(q: &SyncDownloadQuery, mut headers: HeaderMap) -> ApiResult<HeaderMap> {
    let Some(start) = q.range_start else {
        if q.range_end.is_some() {
            return Err(ApiError::BadRequest(
                "range_end needs range_start (both are inclusive byte offsets)".into(),
            ));
        }
        return Ok(headers);
    };
    if headers.contains_key(header::RANGE) {
        return Err(ApiError::BadRequest(
            "give the range either as a Range header or as range_start/range_end, not both".into(),
        ));
    }
    let end = q.range_end.map(|e| e.to_string()).unwrap_or_default();
    // Digits and a dash always make a valid header value; an end before the
    // start is left for the range check to refuse with 416, as a header's is.
    let value = HeaderValue::from_str(&format!("bytes={start}-{end}"))
        .map_err(|_| ApiError::BadRequest("unusable byte range".into()))?;
    headers.insert(header::RANGE, value);
    Ok(headers)
}

/// Streams a file's content for a sync client: the current version or
/// `version`, whole or one byte range (`Range` header, or `range_start` and
/// `range_end` in the query).
#[utoipa::path(get, path = "/sync/download/{file_id}",
    params(("file_id" = inline(doc::FileId), Path), SyncDownloadQuery,
        ("Range" = Option<String>, Header, pattern = "^bytes=[0-9]*-[0-9]*$",
            description = "One byte range, `bytes=a-b`")),
    responses(
        (status = 200, description = "The content", body = doc::Binary, content_type = "*/*"),
        (status = 206, description = "The requested range", body = doc::Binary, content_type = "*/*"),
        (status = 400, description = "Malformed id or query, version 0, range_end without range_start, or both a Range header and range_start"),
        (status = 404, description = "No such file or version, or not visible"),
        (status = 410, description = "The file is in the trash"),
        (status = 416, description = "The range is not satisfiable"),
        (status = 502, description = "The blob store is unreachable"),
    ),
)]
async fn download(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SyncDownloadQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let _: FileId = path_id(&id, "file")?;
    if q.version == Some(0) {
        return Err(ApiError::BadRequest("version numbers start at 1".into()));
    }
    let headers = requested_range(&q, headers)?;
    let (row, share) = live_file(&state, &p, &id).await?;
    require_read(&p)?;
    require_perm(&state, &p, On::File(&row), Permission::Read).await?;
    drop(share);
    super::files::stream_file(
        &state,
        &p,
        &id,
        q.version,
        &headers,
        super::access_log::ReadKind::Download,
        scaidrive_domain::access_log::ReadVia::Sync,
    )
    .await
}
