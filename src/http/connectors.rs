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
use scaidrive_projections::connectors::{self as rm, ConnectorRow};
use serde::Deserialize;
use serde_json::Value;

use axum::response::Response;

use super::drive::{live_share, path_id, require_perm, visible_share, On, Page};
use super::dto::connectors as dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::command::connectors;
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

async fn fresh(state: &AppState, p: &Principal, id: ConnectorId) -> ApiResult<dto::Connector> {
    let row = rm::connector(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("connector"))?;
    Ok(dto::Connector::from(&row))
}

/// Creates an SMB connector on a share (MANAGE_PERMISSIONS on it).
#[utoipa::path(post, path = "/smb-connectors", request_body = CreateConnector, responses(
    (status = 201, description = "The new connector", body = dto::Connector),
    (status = 403, description = "The caller may not manage permissions on the target share"),
    (status = 404, description = "No such share, or not visible"),
    (status = 422, description = "A field is missing or invalid"),
))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<CreateConnector>,
) -> ApiResult<Response> {
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
    let id = connectors::new_id();
    let cmd = ConnectorCommand::Create {
        connector_id: id,
        tenant_id: p.tenant_id,
        share_id,
        by: p.user_id,
        settings,
        credentials: state.secrets.seal(&body.password),
        at: ctx.now,
    };
    let committed = connectors::execute(&state.bus, &ctx, id, &cmd).await?;
    respond
        .item(
            &state,
            &committed,
            StatusCode::CREATED,
            &id.to_string(),
            || fresh(&state, &p, id),
        )
        .await
}

/// The connectors the caller may manage.
#[utoipa::path(get, path = "/smb-connectors", params(Page), responses(
    (status = 200, description = "The connectors the caller may manage", body = dto::ConnectorList),
))]
async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<dto::ConnectorList>> {
    let (limit, offset) = page.resolve()?;
    let mut out = Vec::new();
    for row in rm::connectors(&state.db, &p.tenant_id.to_string()).await? {
        if may_manage(&state, &p, &row).await? {
            out.push(row);
        }
    }
    let total = out.len();
    let connectors = out
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(dto::Connector::from)
        .collect();
    Ok(Json(dto::ConnectorList { connectors, total }))
}

/// One connector.
#[utoipa::path(get, path = "/smb-connectors/{connector_id}", params(("connector_id" = inline(doc::ConnectorId), Path)), responses(
    (status = 200, description = "The connector", body = dto::Connector),
    (status = 404, description = "No such connector, or not manageable by the caller"),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<Json<dto::Connector>> {
    let (_, row) = manageable(&state, &p, &connector_id).await?;
    Ok(Json(dto::Connector::from(&row)))
}

/// Changes any field but `target_share_id`; a new password replaces the old.
#[utoipa::path(patch, path = "/smb-connectors/{connector_id}", request_body = PatchConnector,
    params(("connector_id" = inline(doc::ConnectorId), Path)),
    responses(
        (status = 200, description = "The connector as changed", body = dto::Connector),
        (status = 422, description = "A field is invalid, or target_share_id was sent"),
    ),
)]
async fn patch(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(connector_id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchConnector>,
) -> ApiResult<Response> {
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
    let committed = connectors::execute(&state.bus, &ctx, id, &cmd).await?;
    respond
        .item(&state, &committed, StatusCode::OK, &id.to_string(), || {
            fresh(&state, &p, id)
        })
        .await
}

/// Deletes a connector (files already synced stay where they are).
#[utoipa::path(delete, path = "/smb-connectors/{connector_id}", params(("connector_id" = inline(doc::ConnectorId), Path)), responses(
    (status = 204, description = "Deleted"),
))]
async fn remove(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<Response> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let ctx = p.context();
    let cmd = ConnectorCommand::Delete { at: ctx.now };
    let committed = connectors::execute(&state.bus, &ctx, id, &cmd).await?;
    engine::forget_all(&state.db, &id.to_string()).await?;
    Ok(respond.empty(&state, &committed).await)
}

/// Tries to reach the source and list its base folder: `{success, message,
/// error?}`, 200 either way.
#[utoipa::path(post, path = "/smb-connectors/{connector_id}/test", params(("connector_id" = inline(doc::ConnectorId), Path)), responses(
    (status = 200, description = "Whether the source could be reached and listed", body = dto::TestResult),
))]
async fn test(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<Json<dto::TestResult>> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let c = state.bus.load::<Connector>(&id.to_string()).await?.state;
    let ep = engine::endpoint(&state, &c).map_err(|f| ApiError::Unavailable(f.message))?;
    Ok(Json(match Smb::connect(&ep).await {
        Ok(_) => dto::TestResult {
            success: true,
            message: format!("connected to //{}/{} as {}", ep.host, ep.share, ep.username),
            error: None,
            status: None,
        },
        Err(f) => dto::TestResult {
            success: false,
            message: match f.status {
                401 => "the SMB server rejected the credentials",
                504 => "the SMB server did not answer in time",
                _ => "the SMB server could not be reached",
            }
            .to_owned(),
            error: Some(f.message),
            status: Some(f.status),
        },
    }))
}

/// Starts a sync now: 202 `{run_id}`; 409 while a run is going.
#[utoipa::path(post, path = "/smb-connectors/{connector_id}/sync", params(("connector_id" = inline(doc::ConnectorId), Path)), responses(
    (status = 202, description = "The run started", body = dto::RunStarted),
    (status = 409, description = "A sync of this connector is already running"),
))]
async fn sync(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
) -> ApiResult<Response> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let ctx = p.context();
    let (run_id, committed) = connectors::start_run(&state.bus, &ctx, id, "manual").await?;
    Respond::default()
        .after(&state, committed.position, StatusCode::ACCEPTED, || async {
            Ok(dto::RunStarted { run_id })
        })
        .await
}

/// A connector's runs, newest first.
#[utoipa::path(get, path = "/smb-connectors/{connector_id}/runs", params(("connector_id" = inline(doc::ConnectorId), Path), Page), responses(
    (status = 200, description = "A page of the connector's runs, newest first", body = dto::RunList),
))]
async fn runs(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(connector_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<dto::RunList>> {
    let (id, _) = manageable(&state, &p, &connector_id).await?;
    let (limit, offset) = page.resolve()?;
    let (rows, total) = rm::runs(&state.db, &id.to_string(), limit, offset).await?;
    Ok(Json(dto::RunList {
        runs: rows.iter().map(dto::Run::from).collect(),
        total,
    }))
}
