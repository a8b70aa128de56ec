//! SMB connectors' API: CRUD, a connection test, on-demand syncs and the
//! run history. Whoever may manage permissions on the target share (tenant
//! admins too) manages its connectors; to anyone else a connector does not
//! exist (404). The password is write-only: sealed under the server key in
//! the connector's events, never answered, never logged.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use scaidrive_domain::access::Permission;
use scaidrive_domain::connector::{
    self as model, ConflictResolution, Connector, ConnectorCommand, ConnectorSettings,
    SettingsPatch, SyncDirection,
};
use scaidrive_domain::id::{ConnectorId, ShareId};
use scaidrive_domain::Aggregate;
use scaidrive_projections::connectors::{self as rm, ConnectorRow, RunRow};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::drive::{live_share, path_id, require_perm, visible_share, On, Page};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::state::AppState;
use super::{ts, Positioned};
use crate::connector::engine;
use crate::connector::smb::Smb;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/smb-connectors", get(list).post(create))
        .route(
            "/smb-connectors/{connector_id}",
            get(read).patch(patch).delete(remove),
        )
        .route("/smb-connectors/{connector_id}/test", post(test))
        .route("/smb-connectors/{connector_id}/sync", post(sync))
        .route("/smb-connectors/{connector_id}/runs", get(runs))
}

fn connector_json(r: &ConnectorRow) -> Value {
    let s = r.settings();
    json!({
        "id": r.id,
        "tenant_id": r.tenant_id,
        "name": s.name,
        "description": s.description,
        "server_host": s.server_host,
        "server_port": s.server_port,
        "share_name": s.share_name,
        "base_path": s.base_path,
        "domain": s.domain,
        "username": s.username,
        "has_password": true,
        "target_share_id": r.share_id,
        "target_path": s.target_path,
        "sync_direction": s.sync_direction.as_str(),
        "include_patterns": s.include_patterns,
        "exclude_patterns": s.exclude_patterns,
        "conflict_resolution": s.conflict_resolution.as_str(),
        "sync_interval_minutes": s.sync_interval_minutes,
        "enabled": s.enabled,
        "status": r.status,
        "last_sync_at": r.last_sync_at.map(ts),
        "last_error": r.last_error,
        "created_at": ts(r.created_at),
        "modified_at": ts(r.modified_at),
    })
}

fn run_json(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "status": r.status,
        "trigger": r.trigger_kind,
        "started_at": ts(r.started_at),
        "finished_at": r.finished_at.map(ts),
        "files_created": r.files_created,
        "files_updated": r.files_updated,
        "files_deleted": r.files_deleted,
        "bytes_transferred": r.bytes_transferred,
        "conflicts": r.conflicts,
        "error": r.error,
        "error_status": r.error_status,
    })
}

fn check_enum(v: &mut Violations, field: &str, value: &str, ok: bool, allowed: &str) {
    if !ok {
        v.push(
            "enum",
            field,
            format!("Input should be {allowed}"),
            Value::from(value),
        );
    }
}

const DIRECTIONS: &str = "'bidirectional', 'smb_to_scaidrive' or 'scaidrive_to_smb'";
const RESOLUTIONS: &str =
    "'LAST_WRITER_WINS', 'KEEP_BOTH', 'SERVER_WINS', 'CLIENT_WINS' or 'MANUAL'";

fn default_port() -> i64 {
    445
}
fn default_interval() -> i64 {
    15
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateConnector {
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    #[serde(default)]
    description: String,
    #[schema(min_length = 1, max_length = 253)]
    server_host: String,
    /// Default 445.
    #[serde(default = "default_port")]
    #[schema(minimum = 1, maximum = 65535)]
    server_port: i64,
    #[schema(min_length = 1, max_length = 80)]
    share_name: String,
    #[serde(default)]
    base_path: String,
    #[serde(default)]
    domain: String,
    #[schema(min_length = 1, max_length = 255)]
    username: String,
    /// Write-only; sealed under the server key.
    #[schema(min_length = 1, max_length = 1024, write_only)]
    password: String,
    target_share_id: String,
    #[serde(default)]
    target_path: String,
    /// `bidirectional` (default), `smb_to_scaidrive` or `scaidrive_to_smb`.
    #[serde(default)]
    sync_direction: Option<String>,
    #[serde(default)]
    include_patterns: Vec<String>,
    #[serde(default)]
    exclude_patterns: Vec<String>,
    /// Default `LAST_WRITER_WINS`.
    #[serde(default)]
    conflict_resolution: Option<String>,
    /// Default 15; 0 = on demand only.
    #[serde(default = "default_interval")]
    #[schema(minimum = 0, maximum = 10080)]
    sync_interval_minutes: i64,
    #[serde(default = "yes")]
    enabled: bool,
}

impl Validate for CreateConnector {
    const REQUIRED: &'static [&'static str] = &[
        "name",
        "server_host",
        "share_name",
        "username",
        "password",
        "target_share_id",
    ];

    fn validate(&self, v: &mut Violations) {
        v.length("name", self.name.trim(), 1, model::MAX_NAME);
        v.length("description", &self.description, 0, model::MAX_TEXT);
        v.length("server_host", self.server_host.trim(), 1, 253);
        v.range("server_port", self.server_port, 1, 65_535);
        v.length("share_name", self.share_name.trim(), 1, 80);
        v.length("username", self.username.trim(), 1, 255);
        v.length("password", &self.password, 1, 1024);
        v.range(
            "sync_interval_minutes",
            self.sync_interval_minutes,
            0,
            model::MAX_INTERVAL_MINUTES,
        );
        if let Some(d) = &self.sync_direction {
            check_enum(
                v,
                "sync_direction",
                d,
                SyncDirection::parse(d).is_some(),
                DIRECTIONS,
            );
        }
        if let Some(c) = &self.conflict_resolution {
            check_enum(
                v,
                "conflict_resolution",
                c,
                ConflictResolution::parse(c).is_some(),
                RESOLUTIONS,
            );
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PatchConnector {
    name: Option<String>,
    description: Option<String>,
    server_host: Option<String>,
    server_port: Option<i64>,
    share_name: Option<String>,
    base_path: Option<String>,
    domain: Option<String>,
    username: Option<String>,
    #[schema(write_only)]
    password: Option<String>,
    /// Cannot be changed (422).
    #[schema(value_type = Option<String>)]
    target_share_id: Option<Value>,
    target_path: Option<String>,
    sync_direction: Option<String>,
    include_patterns: Option<Vec<String>>,
    exclude_patterns: Option<Vec<String>>,
    conflict_resolution: Option<String>,
    sync_interval_minutes: Option<i64>,
    enabled: Option<bool>,
}

impl Validate for PatchConnector {
    fn validate(&self, v: &mut Violations) {
        if let Some(t) = &self.target_share_id {
            v.push(
                "value_error",
                "target_share_id",
                "Value error, the target share of a connector cannot be changed",
                t.clone(),
            );
        }
        if let Some(n) = &self.name {
            v.length("name", n.trim(), 1, model::MAX_NAME);
        }
        if let Some(p) = self.server_port {
            v.range("server_port", p, 1, 65_535);
        }
        if let Some(p) = &self.password {
            v.length("password", p, 1, 1024);
        }
        if let Some(i) = self.sync_interval_minutes {
            v.range("sync_interval_minutes", i, 0, model::MAX_INTERVAL_MINUTES);
        }
        if let Some(d) = &self.sync_direction {
            check_enum(
                v,
                "sync_direction",
                d,
                SyncDirection::parse(d).is_some(),
                DIRECTIONS,
            );
        }
        if let Some(c) = &self.conflict_resolution {
            check_enum(
                v,
                "conflict_resolution",
                c,
                ConflictResolution::parse(c).is_some(),
                RESOLUTIONS,
            );
        }
    }
}

/// 404 unless the caller may manage permissions on the connector's share.
async fn manageable(
    state: &AppState,
    p: &Principal,
    raw: &str,
) -> ApiResult<(ConnectorId, ConnectorRow)> {
    let id: ConnectorId = path_id(raw, "connector")?;
    let row = rm::connector(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("connector"))?;
    if !may_manage(state, p, &row).await? {
        return Err(ApiError::not_found("connector"));
    }
    Ok((id, row))
}

async fn may_manage(state: &AppState, p: &Principal, row: &ConnectorRow) -> ApiResult<bool> {
    if p.is_tenant_admin {
        return Ok(true);
    }
    let Ok(share) = visible_share(state, p, &row.share_id).await else {
        return Ok(false);
    };
    Ok(
        require_perm(state, p, On::Share(&share), Permission::ManagePermissions)
            .await
            .is_ok(),
    )
}

async fn fresh(state: &AppState, p: &Principal, id: ConnectorId) -> ApiResult<Value> {
    let row = rm::connector(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("connector"))?;
    Ok(connector_json(&row))
}

/// Creates an SMB connector on a share (MANAGE_PERMISSIONS on it).
#[utoipa::path(post, path = "/smb-connectors", request_body = CreateConnector, responses(
    (status = 201, description = "The new connector"),
    (status = 403, description = "The caller may not manage permissions on the target share"),
    (status = 404, description = "No such share, or not visible"),
    (status = 422, description = "A field is missing or invalid"),
))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<CreateConnector>,
) -> ApiResult<(StatusCode, Positioned<Json<Value>>)> {
    let share_id: ShareId = body.target_share_id.parse().map_err(|_| {
        ApiError::validation(super::error::FieldError::body(
            "value_error",
            &["target_share_id"],
            "Value error, not a share id",
            Value::from(body.target_share_id.clone()),
        ))
    })?;
    let share = live_share(&state, &p, &share_id.to_string()).await?;
    require_perm(&state, &p, On::Share(&share), Permission::ManagePermissions).await?;
    let settings = ConnectorSettings {
        name: body.name,
        description: body.description,
        server_host: body.server_host,
        server_port: body.server_port,
        share_name: body.share_name,
        base_path: body.base_path,
        domain: body.domain,
        username: body.username,
        target_path: body.target_path,
        sync_direction: body
            .sync_direction
            .as_deref()
            .and_then(SyncDirection::parse)
            .unwrap_or_default(),
        include_patterns: body.include_patterns,
        exclude_patterns: body.exclude_patterns,
        conflict_resolution: body
            .conflict_resolution
            .as_deref()
            .and_then(ConflictResolution::parse)
            .unwrap_or_default(),
        sync_interval_minutes: body.sync_interval_minutes,
        enabled: body.enabled,
    };
    let ctx = p.context();
    let id = ConnectorId::from_uuid(Uuid::now_v7());
    let cmd = ConnectorCommand::Create {
        connector_id: id,
        tenant_id: p.tenant_id,
        share_id,
        by: p.user_id,
        settings,
        credentials: state.secrets.seal(&body.password),
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Connector, _>(&id.to_string(), &ctx, |c| c.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    let answer = fresh(&state, &p, id).await?;
    Ok((
        StatusCode::CREATED,
        Positioned(committed.position, Json(answer)),
    ))
}

/// The connectors the caller may manage.
#[utoipa::path(get, path = "/smb-connectors", params(Page), responses(
    (status = 200, description = "`{connectors, total}`"),
))]
async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = page.resolve()?;
    let mut out = Vec::new();
    for row in rm::connectors(&state.db, &p.tenant_id.to_string()).await? {
        if may_manage(&state, &p, &row).await? {
            out.push(row);
        }
    }
    let total = out.len();
    let items: Vec<Value> = out
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(connector_json)
        .collect();
    Ok(Json(json!({ "connectors": items, "total": total })))
}

/// One connector.
#[utoipa::path(get, path = "/smb-connectors/{connector_id}", params(("connector_id" = String, Path)), responses(
    (status = 200, description = "The connector"),
    (status = 404, description = "No such connector, or not manageable by the caller"),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let (_, row) = manageable(&state, &p, &connector_id).await?;
    Ok(Json(connector_json(&row)))
}

/// Changes any field but `target_share_id`; a new password replaces the old.
#[utoipa::path(patch, path = "/smb-connectors/{connector_id}", request_body = PatchConnector,
    params(("connector_id" = String, Path)),
    responses(
        (status = 200, description = "The connector as changed"),
        (status = 422, description = "A field is invalid, or target_share_id was sent"),
    ),
)]
async fn patch(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchConnector>,
) -> ApiResult<Positioned<Json<Value>>> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let ctx = p.context();
    let patch = SettingsPatch {
        name: body.name,
        description: body.description,
        server_host: body.server_host,
        server_port: body.server_port,
        share_name: body.share_name,
        base_path: body.base_path,
        domain: body.domain,
        username: body.username,
        target_path: body.target_path,
        sync_direction: body
            .sync_direction
            .as_deref()
            .and_then(SyncDirection::parse),
        include_patterns: body.include_patterns,
        exclude_patterns: body.exclude_patterns,
        conflict_resolution: body
            .conflict_resolution
            .as_deref()
            .and_then(ConflictResolution::parse),
        sync_interval_minutes: body.sync_interval_minutes,
        enabled: body.enabled,
    };
    let cmd = ConnectorCommand::Update {
        patch,
        credentials: body.password.map(|pw| state.secrets.seal(&pw)),
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Connector, _>(&id.to_string(), &ctx, |c| c.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    let answer = fresh(&state, &p, id).await?;
    Ok(Positioned(committed.position, Json(answer)))
}

/// Deletes a connector (files already synced stay where they are).
#[utoipa::path(delete, path = "/smb-connectors/{connector_id}", params(("connector_id" = String, Path)), responses(
    (status = 204, description = "Deleted"),
))]
async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<Positioned<StatusCode>> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let ctx = p.context();
    let (_, committed) = state
        .bus
        .execute::<Connector, _>(&id.to_string(), &ctx, |c| {
            c.state.decide(&ConnectorCommand::Delete { at: ctx.now })
        })
        .await?;
    engine::forget_all(&state.db, &id.to_string()).await?;
    state.caught_up_to(&committed).await;
    Ok(Positioned(committed.position, StatusCode::NO_CONTENT))
}

/// Tries to reach the source and list its base folder: `{success, message,
/// error?}`, 200 either way.
#[utoipa::path(post, path = "/smb-connectors/{connector_id}/test", params(("connector_id" = String, Path)), responses(
    (status = 200, description = "`{success, message, error?}`"),
))]
async fn test(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let c = state.bus.load::<Connector>(&id.to_string()).await?.state;
    let ep = engine::endpoint(&state, &c).map_err(|f| ApiError::Unavailable(f.message))?;
    Ok(Json(match Smb::connect(&ep).await {
        Ok(_) => json!({
            "success": true,
            "message": format!("connected to //{}/{} as {}", ep.host, ep.share, ep.username),
        }),
        Err(f) => json!({
            "success": false,
            "message": match f.status {
                401 => "the SMB server rejected the credentials",
                504 => "the SMB server did not answer in time",
                _ => "the SMB server could not be reached",
            },
            "error": f.message,
            "status": f.status,
        }),
    }))
}

/// Starts a sync now: 202 `{run_id}`; 409 while a run is going.
#[utoipa::path(post, path = "/smb-connectors/{connector_id}/sync", params(("connector_id" = String, Path)), responses(
    (status = 202, description = "`{run_id}`"),
    (status = 409, description = "A sync of this connector is already running"),
))]
async fn sync(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<(StatusCode, Positioned<Json<Value>>)> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let ctx = p.context();
    let (run_id, committed) = crate::connector::start_run(&state, &ctx, id, "manual").await?;
    state.caught_up_to(&committed).await;
    Ok((
        StatusCode::ACCEPTED,
        Positioned(committed.position, Json(json!({ "run_id": run_id }))),
    ))
}

/// A connector's runs, newest first.
#[utoipa::path(get, path = "/smb-connectors/{connector_id}/runs", params(("connector_id" = String, Path), Page), responses(
    (status = 200, description = "`{runs, total}`"),
))]
async fn runs(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Value>> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let (limit, offset) = page.resolve()?;
    let (rows, total) = rm::runs(&state.db, &id.to_string(), limit, offset).await?;
    Ok(Json(json!({
        "runs": rows.iter().map(run_json).collect::<Vec<_>>(),
        "total": total,
    })))
}
