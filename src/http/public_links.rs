//! External links, recipient side (no account): landing, email code, unlock
//! into a short-lived link access token, download, preview, folder listing,
//! upload drop zone, short-code resolution.
//!
//! Every attempt is decided by the Link aggregate and recorded on its stream,
//! refusals included; the answer's status is the recorded outcome's. A
//! counted download is appended before the first byte is streamed.

use std::net::IpAddr;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration, Utc};
use futures::TryStreamExt;
use rand::rngs::OsRng;
use rand::Rng;
use scaidrive_domain::drive::chunking::DEFAULT_CHUNK_SIZE;
use scaidrive_domain::drive::file::{Content, File};
use scaidrive_domain::id::{FileId, FolderId, LinkId, ShareId, TenantId, VersionId};
use scaidrive_domain::link::{
    extension_of, looks_like_email, AccessAction, AccessOutcome, AccessRequest, Credential,
    IssuedCode, Link, LinkResource, PasswordCheck, EMAIL_CODE_MINUTES,
};
use scaidrive_domain::tenancy::Tenant;
use scaidrive_domain::{Actor, DomainError};
use scaidrive_projections::drive_queries::{self as q, FileRow, FolderRow};
use scaidrive_projections::outbox;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::drive::{listing, Page};
use super::dto::{self, Linked};
use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{
    parse_json_body, ApiJson, ApiMultipart, ApiPath, ApiQuery, Validate, Violations,
};
use super::files::content_response;
use super::schema as doc;
use super::state::AppState;
use super::{Positioned, RequestContext};
use crate::blob::content::{store_stream, StoreContentError};
use crate::command::drive::Target;
use crate::command::links::{self as cmd, CODE_SCOPE, TOKEN_SCOPE};
use crate::command::CommandContext;
use crate::link_access::{self, email_code_digest, ACCESS_TOKEN_SECS};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/public/links/{token}", get(landing))
        .route("/public/links/{token}/email-code", post(email_code))
        .route("/public/links/{token}/unlock", post(unlock))
        .route("/public/links/{token}/content", get(download))
        .route("/public/links/{token}/preview", get(preview))
        .route("/public/links/{token}/children", get(children))
        .route(
            "/public/links/{token}/upload",
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/public/s/{short_code}", get(short_code))
}

/// The key link access tokens are signed with (see [`link_access::signing_key`]).
fn signing_key(state: &AppState) -> ApiResult<[u8; 32]> {
    link_access::signing_key(state.config.link_secret.as_deref(), &state.config.data_dir)
        .map_err(ApiError::internal)
}

// ------------------------------------------------------------- resolution

#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// The link access token from `unlock` (or send it as a bearer token).
    access_token: Option<String>,
}

/// A link found by its token or short code, with the attempt's context.
struct Visit {
    id: LinkId,
    link: Link,
    tenant: TenantId,
    ip: Option<IpAddr>,
    ctx: CommandContext,
    credential: Credential,
}

impl Visit {
    fn request(&self, action: AccessAction) -> AccessRequest {
        AccessRequest {
            action,
            ip: self.ip,
            email: None,
            credential: self.credential.clone(),
            at: self.ctx.now,
        }
    }

    /// Records the attempt; a refusal becomes its error.
    async fn record(&self, state: &AppState, request: AccessRequest) -> ApiResult<cmd::Attempt> {
        let action = request.action;
        let attempt = cmd::record_access(&state.bus, &self.ctx, self.id, request, None).await?;
        match attempt.outcome.to_error(action) {
            None => Ok(attempt),
            Some(e) => Err(e.into()),
        }
    }
}

async fn find(state: &AppState, scope: &str, key: &str) -> ApiResult<(LinkId, Link)> {
    let not_found = || ApiError::not_found("link");
    if key.is_empty() || key.len() > 128 {
        return Err(not_found());
    }
    let holder = state
        .store
        .claim_holder(scope, key)
        .await?
        .ok_or_else(not_found)?;
    let id: LinkId = holder.parse().map_err(|_| not_found())?;
    let link = state.bus.load::<Link>(&holder).await?.state;
    let current = if scope == TOKEN_SCOPE {
        &link.token
    } else {
        &link.short_code
    };
    if link.id.is_none() || state.secrets.open(current).map_err(ApiError::internal)? != key {
        return Err(not_found());
    }
    Ok((id, link))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn visit(
    state: &AppState,
    rc: &RequestContext,
    headers: &HeaderMap,
    scope: &str,
    key: &str,
    access_token: Option<&str>,
) -> ApiResult<Visit> {
    let (id, link) = find(state, scope, key).await?;
    let tenant = link.tenant_id.ok_or_else(|| ApiError::not_found("link"))?;
    let presented = bearer(headers).or_else(|| access_token.map(str::to_owned));
    let verified = presented.and_then(|t| {
        let key = signing_key(state).ok()?;
        link_access::verify(&key, &link, &t, Utc::now())
    });
    let credential = match verified {
        Some(email) => Credential::AccessToken { email },
        None => Credential::None,
    };
    let ctx = CommandContext {
        tenant_id: Some(tenant.to_string()),
        actor: Actor {
            user_id: None,
            service_account: None,
            ip: rc.ip.clone(),
            user_agent: rc.user_agent.clone(),
            device_id: None,
        },
        correlation_id: rc.request_id.clone(),
        causation_id: None,
        now: Utc::now(),
    };
    Ok(Visit {
        id,
        ip: rc.ip.as_deref().and_then(|i| i.parse().ok()),
        link,
        tenant,
        ctx,
        credential,
    })
}

fn gone(what: &str) -> ApiError {
    DomainError::Gone(format!("the linked {what} is in the trash or was deleted")).into()
}

/// The linked folder (folder links) or `None` for a share root, checked live.
async fn link_root(state: &AppState, v: &Visit) -> ApiResult<Option<FolderRow>> {
    let tenant = v.tenant.to_string();
    let share_id = v.link.share_id.map(|s| s.to_string()).unwrap_or_default();
    let share = state
        .share_row(&tenant, &share_id)
        .await?
        .ok_or_else(|| gone("share"))?;
    if share.is_deleted {
        return Err(gone("share"));
    }
    match v.link.resource_type {
        Some(LinkResource::Folder) => {
            let row = q::folder(&state.db, &tenant, &v.link.resource_id)
                .await?
                .ok_or_else(|| gone("folder"))?;
            if row.is_deleted || row.trashed_via.is_some() || row.share_id != share_id {
                return Err(gone("folder"));
            }
            Ok(Some(row))
        }
        _ => Ok(None),
    }
}

fn inside(path: &str, root: Option<&FolderRow>) -> bool {
    match root {
        None => true,
        Some(r) => path.starts_with(&format!("{}/", r.path)),
    }
}

/// The file a download or preview serves: the linked file, or `file_id`
/// inside the linked folder or share.
async fn target_file(state: &AppState, v: &Visit, file_id: Option<&str>) -> ApiResult<FileRow> {
    let tenant = v.tenant.to_string();
    let share_id = v.link.share_id.map(|s| s.to_string()).unwrap_or_default();
    if v.link.resource_type == Some(LinkResource::File) {
        if file_id.is_some_and(|f| f != v.link.resource_id) {
            return Err(ApiError::not_found("file"));
        }
        let row = q::file(&state.db, &tenant, &v.link.resource_id)
            .await?
            .ok_or_else(|| gone("file"))?;
        let share = state.share_row(&tenant, &row.share_id).await?;
        if row.is_deleted || row.trashed_via.is_some() || share.is_none_or(|s| s.is_deleted) {
            return Err(gone("file"));
        }
        return Ok(row);
    }
    let Some(fid) = file_id else {
        return Err(ApiError::BadRequest(
            "file_id is required for folder and share links".into(),
        ));
    };
    let _: FileId = fid
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("'{fid}' is not a valid file id")))?;
    let root = link_root(state, v).await?;
    let row = q::file(&state.db, &tenant, fid)
        .await?
        .filter(|r| r.share_id == share_id && inside(&r.path, root.as_ref()))
        .filter(|r| !r.is_deleted && r.trashed_via.is_none())
        .ok_or_else(|| ApiError::not_found("file"))?;
    Ok(row)
}

// ---------------------------------------------------------------- handlers

async fn show_landing(
    state: &AppState,
    v: Visit,
    with_token: bool,
) -> ApiResult<Json<dto::Landing>> {
    v.record(state, v.request(AccessAction::Landing)).await?;
    let tenant = v.tenant.to_string();
    let item = match v.link.resource_type {
        Some(LinkResource::File) => match q::file(&state.db, &tenant, &v.link.resource_id).await? {
            Some(f) => Linked {
                name: f.name,
                size: Some(f.size),
                mime_type: Some(f.mime_type),
            },
            None => Linked::default(),
        },
        Some(LinkResource::Folder) => Linked {
            name: q::folder(&state.db, &tenant, &v.link.resource_id)
                .await?
                .map(|f| f.name)
                .unwrap_or_default(),
            ..Linked::default()
        },
        _ => Linked {
            name: state
                .share_row(&tenant, &v.link.resource_id)
                .await?
                .map(|s| s.name)
                .unwrap_or_default(),
            ..Linked::default()
        },
    };
    let mut body = dto::Landing::of(v.id.to_string(), &v.link, &v.credential, item, v.ctx.now);
    if with_token {
        let token = state
            .secrets
            .open(&v.link.token)
            .map_err(ApiError::internal)?;
        body.token = Some(token);
    }
    Ok(Json(body))
}

/// What the link shows before it is unlocked.
#[utoipa::path(get, path = "/public/links/{token}", security((), ("bearer" = [])), params(("token" = String, Path, max_length = 128, description = "The link's token"), TokenQuery),
    responses(
        (status = 200, description = "The landing information", body = dto::Landing),
        (status = 403, description = "The caller's IP is not allowed"),
        (status = 410, description = "The link expired, was revoked or disabled"),
        (status = 429, description = "Too many attempts"),
    ),
)]
async fn landing(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    ApiQuery(tq): ApiQuery<TokenQuery>,
) -> ApiResult<Json<dto::Landing>> {
    let v = visit(
        &state,
        &rc,
        &headers,
        TOKEN_SCOPE,
        &token,
        tq.access_token.as_deref(),
    )
    .await?;
    show_landing(&state, v, false).await
}

/// The landing of the link a short code names, with its token.
#[utoipa::path(get, path = "/public/s/{short_code}", security(()),
    params(("short_code" = String, Path, max_length = 128)),
    responses(
        (status = 200, description = "The landing information and token", body = dto::Landing),
        (status = 403, description = "The caller's IP is not allowed"),
        (status = 410, description = "The link expired, was revoked or disabled"),
        (status = 429, description = "Too many attempts"),
    ),
)]
async fn short_code(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<Json<dto::Landing>> {
    if !cmd::is_short_code(&code) {
        return Err(ApiError::not_found("link"));
    }
    let v = visit(&state, &rc, &headers, CODE_SCOPE, &code, None).await?;
    show_landing(&state, v, true).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct EmailCodeBody {
    #[schema(format = Email)]
    email: String,
}

impl Validate for EmailCodeBody {
    const REQUIRED: &'static [&'static str] = &["email"];
    fn validate(&self, v: &mut Violations) {
        if !looks_like_email(&self.email) {
            v.push(
                "value_error",
                "email",
                "Value error, not an email address",
                Value::from(self.email.as_str()),
            );
        }
    }
}

/// Issues a one-time code: its hash goes into the log, the code itself only
/// into the outbox message (queued right after the append; see ARCHITECTURE).
#[utoipa::path(post, path = "/public/links/{token}/email-code", security(()),
    request_body = EmailCodeBody, params(("token" = String, Path, max_length = 128, description = "The link's token")),
    responses(
        (status = 202, description = "The code is on its way", body = dto::EmailCodeSent),
        (status = 403, description = "The email or the caller's IP is not allowed"),
        (status = 410, description = "The link expired, was revoked or disabled"),
        (status = 429, description = "Too many attempts"),
    ),
)]
async fn email_code(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    ApiJson(body): ApiJson<EmailCodeBody>,
) -> ApiResult<impl IntoResponse> {
    let v = visit(&state, &rc, &headers, TOKEN_SCOPE, &token, None).await?;
    let email = body.email.trim().to_lowercase();
    let code = format!("{:06}", OsRng.gen_range(0..1_000_000u32));
    let issued = IssuedCode {
        code_hash: email_code_digest(&state.secrets, v.id, &email, &code),
        expires_at: v.ctx.now + Duration::minutes(EMAIL_CODE_MINUTES),
    };
    let mut request = v.request(AccessAction::EmailCode);
    request.email = Some(email.clone());
    let attempt = cmd::record_access(&state.bus, &v.ctx, v.id, request, Some(issued)).await?;
    if let Some(e) = attempt.outcome.to_error(AccessAction::EmailCode) {
        return Err(e.into());
    }
    let event_id = attempt
        .committed
        .events
        .iter()
        .find(|e| e.event_type == "link-email-code-issued")
        .map(|e| scaidrive_domain::id::EventId::from_uuid(e.event_id).to_string())
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let name = v
        .link
        .options
        .custom_name
        .clone()
        .unwrap_or_else(|| "a shared item".into());
    let subject = format!("Your access code for {name}");
    let text = format!(
        "Your one-time code is {code}. It is valid for {EMAIL_CODE_MINUTES} minutes and only for this link."
    );
    let tenant = v.tenant.to_string();
    let link_path = format!("/api/v1/public/links/{token}");
    let mut tx = state.db.begin().await?;
    outbox::enqueue(
        &mut tx,
        &outbox::Message {
            id: format!("{event_id}:{email}"),
            tenant_id: Some(&tenant),
            kind: "link-email-code",
            recipient: &email,
            subject: &subject,
            body: &text,
            link_path: Some(&link_path),
            source_event_id: Some(&event_id),
            at: v.ctx.now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Positioned(
        attempt.committed.position,
        (
            StatusCode::ACCEPTED,
            Json(dto::EmailCodeSent {
                sent: true,
                email,
                expires_in: EMAIL_CODE_MINUTES * 60,
            }),
        ),
    ))
}

/// What unlocking needs: the password and/or the verified email and its code.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
struct UnlockBody {
    #[schema(max_length = 256, write_only)]
    password: Option<String>,
    #[schema(max_length = 320)]
    email: Option<String>,
    /// The code from `email-code`.
    #[schema(max_length = 32)]
    code: Option<String>,
}

impl Validate for UnlockBody {
    fn validate(&self, v: &mut Violations) {
        if let Some(p) = &self.password {
            v.length("password", p, 0, 256);
        }
        if let Some(c) = &self.code {
            v.length("code", c, 0, 32);
        }
        if let Some(e) = &self.email {
            v.length("email", e, 0, 320);
        }
    }
}

/// Trades the link's credentials for a short-lived link access token (an
/// empty body unlocks a link that needs none).
#[utoipa::path(post, path = "/public/links/{token}/unlock", security(()),
    request_body(content = Option<UnlockBody>, content_type = "application/json"), params(("token" = String, Path, max_length = 128, description = "The link's token")),
    responses(
        (status = 200, description = "The access token", body = dto::LinkAccess),
        (status = 401, description = "Password missing or wrong, or the email code is wrong"),
        (status = 403, description = "The email or the caller's IP is not allowed"),
        (status = 410, description = "The link expired, was revoked or disabled"),
        (status = 429, description = "Too many failed unlocks"),
    ),
)]
async fn unlock(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    raw: axum::body::Bytes,
) -> ApiResult<Json<dto::LinkAccess>> {
    // An empty (or `null`) body is a plain unlock (links without password or email).
    let body: UnlockBody = if raw.iter().all(u8::is_ascii_whitespace) || raw.trim_ascii() == b"null"
    {
        UnlockBody::default()
    } else {
        parse_json_body(&raw)?
    };
    let v = visit(&state, &rc, &headers, TOKEN_SCOPE, &token, None).await?;
    let email = body
        .email
        .as_deref()
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty());
    let code_hash = match (&email, &body.code) {
        (Some(e), Some(c)) => Some(email_code_digest(&state.secrets, v.id, e, c)),
        _ => None,
    };
    let mut request = AccessRequest {
        action: AccessAction::Unlock,
        ip: v.ip,
        email: None,
        credential: Credential::Unlock {
            password: PasswordCheck::Absent,
            email: email.clone(),
            code_hash: code_hash.clone(),
        },
        at: v.ctx.now,
    };
    // The slow hash runs only when the password is the question left, so a
    // throttled or refused caller cannot make the server hash for free.
    if let (Some(hash), Some(pw)) = (&v.link.options.password_hash, &body.password) {
        if v.link.evaluate(&request) == AccessOutcome::PasswordRequired {
            let hash = state.secrets.open(hash).map_err(ApiError::internal)?;
            let ok = link_access::verify_password(hash, pw.clone())
                .await
                .map_err(ApiError::internal)?;
            request.credential = Credential::Unlock {
                password: if ok {
                    PasswordCheck::Correct
                } else {
                    PasswordCheck::Wrong
                },
                email: email.clone(),
                code_hash,
            };
        }
    }
    let attempt = v.record(&state, request).await?;
    let verified = if attempt.link.options.require_email {
        email
    } else {
        None
    };
    let key = signing_key(&state)?;
    let access_token = link_access::mint(&key, &attempt.link, verified, Utc::now());
    Ok(Json(dto::LinkAccess {
        access_token,
        token_type: "bearer".into(),
        expires_in: ACCESS_TOKEN_SECS,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FileQuery {
    /// The file inside a folder or share link (required for those).
    #[param(value_type = Option<doc::FileId>, inline)]
    file_id: Option<String>,
    /// The link access token from `unlock` (or send it as a bearer token).
    access_token: Option<String>,
}

async fn serve(
    state: AppState,
    rc: RequestContext,
    headers: HeaderMap,
    token: String,
    fq: FileQuery,
    action: AccessAction,
) -> ApiResult<Response> {
    let v = visit(
        &state,
        &rc,
        &headers,
        TOKEN_SCOPE,
        &token,
        fq.access_token.as_deref(),
    )
    .await?;
    let request = v.request(action);
    // Resolve the item first when the link would serve it, so a missing item
    // answers 404/410 without using up a download.
    let mut target = None;
    if v.link.evaluate(&request) == AccessOutcome::Allowed {
        target = Some(target_file(&state, &v, fq.file_id.as_deref()).await?);
    }
    v.record(&state, request).await?;
    let row = match target {
        Some(t) => t,
        None => target_file(&state, &v, fq.file_id.as_deref()).await?,
    };
    let file = state.bus.load::<File>(&row.id).await?.state;
    let current = file.current().ok_or_else(|| ApiError::not_found("file"))?;
    let disposition = if action == AccessAction::Download {
        "attachment"
    } else {
        "inline"
    };
    content_response(
        &state,
        &v.tenant.to_string(),
        &row.name,
        &current.content,
        &headers,
        disposition,
    )
    .await
}

/// Downloads the linked file (or one inside the linked folder); counts.
#[utoipa::path(get, path = "/public/links/{token}/content", security((), ("bearer" = [])),
    params(("token" = String, Path, max_length = 128, description = "The link's token"), FileQuery, ("Range" = Option<String>, Header, pattern = "^bytes=[0-9]*-[0-9]*$", description = "One byte range")),
    responses(
        (status = 200, description = "The content", body = doc::Binary, content_type = "*/*"),
        (status = 206, description = "The requested range", body = doc::Binary, content_type = "*/*"),
        (status = 401, description = "The link needs unlocking"),
        (status = 403, description = "A VIEW link, or the caller's IP or email is not allowed"),
        (status = 410, description = "The link or the item is gone"),
        (status = 416, description = "The range is not satisfiable"),
        (status = 429, description = "The download cap is reached"),
    ),
)]
async fn download(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    ApiQuery(fq): ApiQuery<FileQuery>,
) -> ApiResult<Response> {
    serve(state, rc, headers, token, fq, AccessAction::Download).await
}

/// Shows the linked file inline; counts as a view.
#[utoipa::path(get, path = "/public/links/{token}/preview", security((), ("bearer" = [])),
    params(("token" = String, Path, max_length = 128, description = "The link's token"), FileQuery, ("Range" = Option<String>, Header, pattern = "^bytes=[0-9]*-[0-9]*$", description = "One byte range")),
    responses(
        (status = 200, description = "The content", body = doc::Binary, content_type = "*/*"),
        (status = 206, description = "The requested range", body = doc::Binary, content_type = "*/*"),
        (status = 401, description = "The link needs unlocking"),
        (status = 403, description = "Previews are off, or the caller's IP or email is not allowed"),
        (status = 410, description = "The link or the item is gone"),
        (status = 416, description = "The range is not satisfiable"),
        (status = 429, description = "The view cap is reached"),
    ),
)]
async fn preview(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    ApiQuery(fq): ApiQuery<FileQuery>,
) -> ApiResult<Response> {
    serve(state, rc, headers, token, fq, AccessAction::Preview).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ChildrenQuery {
    /// A folder inside the linked folder or share; default its root.
    #[param(value_type = Option<doc::FolderId>, inline)]
    folder_id: Option<String>,
    /// The link access token from `unlock` (or send it as a bearer token).
    access_token: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// Lists a folder or share link's contents (paths relative to the link).
#[utoipa::path(get, path = "/public/links/{token}/children", security((), ("bearer" = [])), params(("token" = String, Path, max_length = 128, description = "The link's token"), ChildrenQuery),
    responses(
        (status = 200, description = "A page of children", body = dto::PublicListing),
        (status = 401, description = "The link needs unlocking"),
        (status = 403, description = "A file link, or the caller's IP or email is not allowed"),
        (status = 410, description = "The link or the folder is gone"),
        (status = 429, description = "Too many attempts"),
    ),
)]
async fn children(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    ApiQuery(cq): ApiQuery<ChildrenQuery>,
) -> ApiResult<Json<dto::PublicListing>> {
    let page = Page {
        limit: cq.limit,
        offset: cq.offset,
    };
    page.resolve()?;
    if let Some(f) = &cq.folder_id {
        let _: FolderId = f
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("'{f}' is not a valid folder id")))?;
    }
    let v = visit(
        &state,
        &rc,
        &headers,
        TOKEN_SCOPE,
        &token,
        cq.access_token.as_deref(),
    )
    .await?;
    v.record(&state, v.request(AccessAction::List)).await?;
    let root = link_root(&state, &v).await?;
    let tenant = v.tenant.to_string();
    let share_id = v.link.share_id.map(|s| s.to_string()).unwrap_or_default();
    let folder = match &cq.folder_id {
        None => root.clone(),
        Some(f) if root.as_ref().is_some_and(|r| &r.id == f) => root.clone(),
        Some(f) => {
            let row = q::folder(&state.db, &tenant, f)
                .await?
                .filter(|r| r.share_id == share_id && inside(&r.path, root.as_ref()))
                .filter(|r| !r.is_deleted && r.trashed_via.is_none())
                .ok_or_else(|| ApiError::not_found("folder"))?;
            Some(row)
        }
    };
    let (items, total) = listing(
        &state,
        None,
        &share_id,
        folder.as_ref().map(|f| f.id.as_str()),
        false,
        &page,
    )
    .await?;
    // Paths are shown relative to the link, never the owner's tree above it.
    let base = root.as_ref().map(|r| r.path.clone()).unwrap_or_default();
    let relative = |p: &str| {
        let rest = p.strip_prefix(&base).unwrap_or(p);
        if rest.is_empty() {
            "/".to_owned()
        } else {
            rest.to_owned()
        }
    };
    let items: Vec<_> = items
        .into_iter()
        .map(|mut item| {
            let path = item.path_mut();
            *path = relative(path);
            item.without_deleted_flag()
        })
        .collect();
    Ok(Json(dto::PublicListing {
        items,
        total,
        folder_id: folder.as_ref().map(|f| f.id.clone()),
        path: folder
            .as_ref()
            .map(|f| relative(&f.path))
            .unwrap_or_else(|| "/".into()),
    }))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the file exceeds this link's limit of {limit} bytes"
    ))
}

/// Drops a file into an UPLOAD link's folder (multipart: `file`, `name`?).
#[utoipa::path(post, path = "/public/links/{token}/upload", security((), ("bearer" = [])),
    request_body(content = doc::DropUpload, content_type = "multipart/form-data"),
    params(("token" = String, Path, max_length = 128, description = "The link's token"), TokenQuery),
    responses(
        (status = 201, description = "Stored (renamed if the name was taken)", body = dto::DroppedFile),
        (status = 401, description = "The link needs unlocking"),
        (status = 403, description = "Not an UPLOAD link, or the caller's IP or email is not allowed"),
        (status = 410, description = "The link or its folder is gone"),
        (status = 413, description = "Larger than the link's or the tenant's limit"),
        (status = 422, description = "No file, or a name or extension the link refuses"),
        (status = 429, description = "Too many attempts"),
        (status = 502, description = "The blob store is unreachable"),
        (status = 507, description = "A quota would be exceeded (QUOTA_EXCEEDED)"),
    ),
)]
async fn upload(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    ApiPath(token): ApiPath<String>,
    ApiQuery(tq): ApiQuery<TokenQuery>,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<impl IntoResponse> {
    let v = visit(
        &state,
        &rc,
        &headers,
        TOKEN_SCOPE,
        &token,
        tq.access_token.as_deref(),
    )
    .await?;
    let request = v.request(AccessAction::Upload);
    if v.link.evaluate(&request) != AccessOutcome::Allowed {
        // Recorded and refused before a byte of the body is read (should
        // the recorded decision differ and allow, the upload goes on).
        v.record(&state, request).await?;
    }
    let share_id: ShareId = v.link.share_id.ok_or_else(|| gone("share"))?;
    let folder_id = v
        .link
        .options
        .upload_folder_id
        .ok_or_else(|| gone("folder"))?;
    let tenant = v.tenant.to_string();
    let folder = q::folder(&state.db, &tenant, &folder_id.to_string())
        .await?
        .filter(|f| !f.is_deleted && f.trashed_via.is_none() && f.share_id == share_id.to_string())
        .ok_or_else(|| gone("upload folder"))?;
    let tenant_max = state
        .bus
        .load::<Tenant>(&tenant)
        .await?
        .state
        .settings
        .max_file_size_bytes;
    let max = v
        .link
        .options
        .max_file_size
        .map_or(tenant_max, |m| m.min(tenant_max));
    let (mut name, mut stored, mut mime) = (None::<String>, None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        match field.name().unwrap_or_default() {
            "file" => {
                if name.is_none() {
                    name = field.file_name().map(str::to_owned);
                }
                let file_name = name.clone().unwrap_or_default();
                check_name(&file_name, &v.link.options.allowed_extensions)?;
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
                    StoreContentError::TooLarge(limit) => too_large(limit),
                    StoreContentError::Body(m) => {
                        ApiError::BadRequest(format!("reading the upload failed: {m}"))
                    }
                    StoreContentError::Blob(b) => b.into(),
                })?);
            }
            "name" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| ApiError::BadRequest(format!("malformed multipart field: {e}")))?;
                if !text.is_empty() {
                    name = Some(text);
                }
            }
            _ => {}
        }
    }
    let stored = stored.ok_or_else(|| {
        ApiError::validation(FieldError::body(
            "missing",
            &["file"],
            "Field required",
            Value::Null,
        ))
    })?;
    let name = scaidrive_domain::name::normalize(&name.unwrap_or_default());
    check_name(&name, &v.link.options.allowed_extensions)?;
    state.bus.metrics().upload_bytes(stored.size);
    state.bus.metrics().chunks_deduplicated(stored.deduplicated);
    let content = Content {
        version_id: VersionId::from_uuid(Uuid::now_v7()),
        size: stored.size,
        checksum_sha256: stored.sha256.clone(),
        mime_type: super::drive::media_type_or_default(mime),
        chunk_size: DEFAULT_CHUNK_SIZE,
        chunks: stored.chunks,
    };
    let target = Target {
        share_id,
        folder_id: Some(folder_id),
        parent_path: folder.path.clone(),
    };
    let dropped = cmd::upload_via_link(
        &state.bus,
        &v.ctx,
        v.id,
        v.request(AccessAction::Upload),
        v.tenant,
        target,
        &name,
        content,
    )
    .await?;
    if let Some(e) = dropped.outcome.to_error(AccessAction::Upload) {
        return Err(e.into());
    }
    let (file_id, stored_name) = dropped
        .file
        .ok_or_else(|| ApiError::internal("an allowed upload created no file"))?;
    state.caught_up(dropped.committed.position).await;
    Ok((
        StatusCode::CREATED,
        Json(dto::DroppedFile {
            id: file_id.to_string(),
            renamed: stored_name != name,
            name: stored_name,
            size: stored.size,
            checksum_sha256: stored.sha256,
        }),
    ))
}

/// 422 for a name the drive would refuse or an extension the link refuses.
fn check_name(name: &str, allowed: &[String]) -> ApiResult<()> {
    if let Err(m) = scaidrive_domain::name::validate_item_name(name) {
        return Err(ApiError::validation(FieldError::body(
            "value_error",
            &["file"],
            format!("Value error, {m}"),
            Value::from(name),
        )));
    }
    if !allowed.is_empty() {
        let ext = extension_of(name).unwrap_or_default();
        if !allowed.contains(&ext) {
            return Err(ApiError::validation(FieldError::body(
                "value_error",
                &["file"],
                format!(
                    "Value error, this link accepts only {} files",
                    allowed.join(", ")
                ),
                Value::from(name),
            )));
        }
    }
    Ok(())
}
