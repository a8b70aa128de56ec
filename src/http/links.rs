//! External links, owner side (SPEC §4.7): create, list, read, change,
//! revoke, regenerate, and every recipient attempt (`sessions`). Creating a
//! link needs the SHARE permission on its resource.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use scaidrive_domain::access::Permission;
use scaidrive_domain::id::{FileId, FolderId, LinkId, ShareId};
use scaidrive_domain::link::{
    looks_like_email, parse_cidr, Link, LinkCommand, LinkEvent, LinkOptions, LinkResource, LinkType,
};
use scaidrive_domain::tenancy::{SharingPolicy, Tenant};
use scaidrive_domain::{DomainError, DomainEvent};
use scaidrive_projections::links::{self as rm, LinkFilter};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use uuid::Uuid;

use super::drive::{
    live_file, live_folder, live_share, require_perm, require_read, require_write, visible_file,
    visible_folder, visible_share, On, Page,
};
use super::dto::{self, Opened};
use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{ApiJson, ApiPath, ApiQuery, Found, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use super::ts;
use crate::command::links as cmd;
use crate::link_access::hash_password;
use crate::secrets::SecretKey;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/external/links", post(create).get(list))
        .route(
            "/external/links/{id}",
            get(read).patch(update).delete(revoke),
        )
        .route("/external/links/{id}/regenerate", post(regenerate))
        .route("/external/links/{id}/sessions", get(sessions))
}

/// Longest accepted password (argon2 copes with more; people do not need it).
const MAX_PASSWORD: usize = 256;

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A failing list entry, located Pydantic-style with its numeric index.
fn item_error(field: &str, index: usize, msg: String, input: &str) -> FieldError {
    FieldError {
        kind: "value_error",
        loc: vec![Value::from("body"), Value::from(field), Value::from(index)],
        msg,
        input: Value::from(input),
        ctx: None,
    }
}

/// The option fields shared by create and patch bodies (`null` clears one).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct OptionFields {
    /// Stored only as an argon2id hash.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 256, write_only)]
    password: Option<Option<String>>,
    /// Expiry in days from now (not with `expires_at`).
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<doc::DateTimeInput>)]
    expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 1)]
    max_downloads: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 1)]
    max_views: Option<Option<u64>>,
    /// CIDRs or addresses recipients must come from.
    allowed_ips: Option<Vec<String>>,
    /// With `require_email`: the addresses allowed in.
    allowed_emails: Option<Vec<String>>,
    require_email: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    custom_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    custom_message: Option<Option<String>>,
    show_download_button: Option<bool>,
    allow_preview: Option<bool>,
    notify_on_access: Option<bool>,
    notify_on_download: Option<bool>,
    notify_on_upload: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Email)]
    notification_email: Option<Option<String>>,
    /// Where an UPLOAD link's files go (required for UPLOAD links).
    #[schema(value_type = Option<doc::FolderId>)]
    upload_folder_id: Option<FolderId>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 1)]
    max_file_size: Option<Option<u64>>,
    /// UPLOAD links: the extensions accepted (1–32 characters each).
    allowed_extensions: Option<Vec<String>>,
}

impl OptionFields {
    fn validate(&self, v: &mut Violations) {
        if let Some(Some(p)) = &self.password {
            v.length("password", p, 1, MAX_PASSWORD);
        }
        if let Some(d) = self.expires_in_days {
            v.range("expires_in_days", d, 1, 3650);
        }
        if self.expires_in_days.is_some() && matches!(self.expires_at, Some(Some(_))) {
            v.push(
                "value_error",
                "expires_at",
                "Value error, give expires_in_days or expires_at, not both",
                Value::Null,
            );
        }
        for (field, n) in [
            ("max_downloads", self.max_downloads),
            ("max_views", self.max_views),
            ("max_file_size", self.max_file_size),
        ] {
            if let Some(Some(n)) = n {
                v.range(field, n.min(i64::MAX as u64) as i64, 1, i64::MAX);
            }
        }
        for (i, ip) in self.allowed_ips.iter().flatten().enumerate() {
            if let Err(m) = parse_cidr(ip) {
                v.0.push(item_error(
                    "allowed_ips",
                    i,
                    format!("Value error, {m}"),
                    ip,
                ));
            }
        }
        for (i, e) in self.allowed_emails.iter().flatten().enumerate() {
            if !looks_like_email(e) {
                v.0.push(item_error(
                    "allowed_emails",
                    i,
                    "Value error, not an email address".into(),
                    e,
                ));
            }
        }
        if let Some(Some(e)) = &self.notification_email {
            if !looks_like_email(e) {
                v.push(
                    "value_error",
                    "notification_email",
                    "Value error, not an email address",
                    Value::from(e.as_str()),
                );
            }
        }
        if let Some(Some(n)) = &self.custom_name {
            v.length("custom_name", n, 1, 255);
        }
        if let Some(Some(m)) = &self.custom_message {
            v.length("custom_message", m, 0, 2000);
        }
        for (i, e) in self.allowed_extensions.iter().flatten().enumerate() {
            let n = e.trim().trim_start_matches('.').chars().count();
            if n == 0 || n > 32 {
                v.0.push(item_error(
                    "allowed_extensions",
                    i,
                    "Value error, an extension has 1 to 32 characters".into(),
                    e,
                ));
            }
        }
    }

    /// Applies the fields to `o` (a password arrives already hashed).
    fn apply(
        &self,
        o: &mut LinkOptions,
        password_hash: Option<Option<String>>,
        now: DateTime<Utc>,
    ) {
        if let Some(h) = password_hash {
            o.password_hash = h;
        }
        if let Some(d) = self.expires_in_days {
            o.expires_at = Some(now + Duration::days(d));
        } else if let Some(e) = self.expires_at {
            o.expires_at = e;
        }
        if let Some(m) = self.max_downloads {
            o.max_downloads = m;
        }
        if let Some(m) = self.max_views {
            o.max_views = m;
        }
        if let Some(ips) = &self.allowed_ips {
            o.allowed_ips = ips.iter().filter_map(|s| parse_cidr(s).ok()).collect();
        }
        if let Some(e) = &self.allowed_emails {
            o.allowed_emails = e.iter().map(|e| e.trim().to_lowercase()).collect();
        }
        if let Some(b) = self.require_email {
            o.require_email = b;
        }
        if let Some(n) = &self.custom_name {
            o.custom_name = n.clone();
        }
        if let Some(m) = &self.custom_message {
            o.custom_message = m.clone();
        }
        if let Some(b) = self.show_download_button {
            o.show_download_button = b;
        }
        if let Some(b) = self.allow_preview {
            o.allow_preview = b;
        }
        if let Some(b) = self.notify_on_access {
            o.notify_on_access = b;
        }
        if let Some(b) = self.notify_on_download {
            o.notify_on_download = b;
        }
        if let Some(b) = self.notify_on_upload {
            o.notify_on_upload = b;
        }
        if let Some(e) = &self.notification_email {
            o.notification_email = e.as_ref().map(|e| e.trim().to_lowercase());
        }
        if let Some(f) = self.upload_folder_id {
            o.upload_folder_id = Some(f);
        }
        if let Some(m) = self.max_file_size {
            o.max_file_size = m;
        }
        if let Some(x) = &self.allowed_extensions {
            o.allowed_extensions = x.clone();
        }
    }

    /// Hashes a new password off the async threads (argon2 is slow on
    /// purpose) and seals the hash: the log never holds it in the clear.
    async fn password_hash(&self, secrets: &SecretKey) -> ApiResult<Option<Option<String>>> {
        match &self.password {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(p)) => {
                let hash = hash_password(p.clone()).await.map_err(ApiError::internal)?;
                Ok(Some(Some(secrets.seal(&hash))))
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateBody {
    #[schema(value_type = doc::ResourceTypeDoc)]
    resource_type: LinkResource,
    /// The file, folder or share (for a share link: its share_id).
    #[schema(value_type = doc::ResourceId)]
    resource_id: String,
    #[schema(value_type = doc::ShareId)]
    share_id: ShareId,
    #[schema(value_type = doc::LinkTypeDoc)]
    link_type: LinkType,
    #[serde(flatten)]
    options: OptionFields,
}

impl Validate for CreateBody {
    fn check_json(body: &mut Value, found: &mut Found) {
        // serde cannot place a failure inside a flattened struct.
        found.check_as::<OptionFields>(body, &[]);
    }

    const REQUIRED: &'static [&'static str] =
        &["resource_type", "resource_id", "share_id", "link_type"];

    fn validate(&self, v: &mut Violations) {
        self.options.validate(v);
        let id_ok = match self.resource_type {
            LinkResource::File => FileId::parse(&self.resource_id).is_ok(),
            LinkResource::Folder => FolderId::parse(&self.resource_id).is_ok(),
            LinkResource::Share => ShareId::parse(&self.resource_id).is_ok(),
        };
        if !id_ok {
            v.push(
                "value_error",
                "resource_id",
                format!("Value error, not a {} id", self.resource_type.as_str()),
                Value::from(self.resource_id.as_str()),
            );
        }
        if self.link_type == LinkType::Upload {
            if self.options.upload_folder_id.is_none() {
                v.push(
                    "missing",
                    "upload_folder_id",
                    "Field required for UPLOAD links",
                    Value::Null,
                );
            }
            if self.resource_type == LinkResource::File {
                v.push(
                    "value_error",
                    "resource_type",
                    "Value error, UPLOAD links point at a folder or share",
                    Value::from("file"),
                );
            }
        }
    }
}

/// The base URL recipients reach the API at.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.config.public_url {
        return u.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// A link as its owner sees it, token and short code opened (never the
/// password hash).
async fn link_dto(state: &AppState, l: &Link, base: &str) -> ApiResult<dto::Link> {
    let opened = Opened {
        token: opened(&state.secrets, &l.token)?,
        short_code: opened(&state.secrets, &l.short_code)?,
    };
    Ok(dto::Link::of(l, Some(opened), base, Utc::now()))
}

/// The link as it now is, read back after a write of the caller's.
async fn link_read_back(state: &AppState, id: LinkId, base: &str) -> ApiResult<dto::Link> {
    let link = state.bus.load::<Link>(&id.to_string()).await?.state;
    link_dto(state, &link, base).await
}

/// The plaintext of a sealed token or short code.
fn opened(secrets: &SecretKey, stored: &str) -> ApiResult<String> {
    secrets.open(stored).map_err(ApiError::internal)
}

/// The tenant's sharing policy, from its own stream (exact).
async fn policy(state: &AppState, p: &Principal) -> ApiResult<SharingPolicy> {
    Ok(state
        .bus
        .load::<Tenant>(&p.tenant_id.to_string())
        .await?
        .state
        .settings
        .sharing)
}

/// 404 unless the upload folder is live, in the link's share and inside the
/// linked folder; 403 without CREATE on it.
async fn check_upload_folder(
    state: &AppState,
    p: &Principal,
    share_id: &str,
    resource: LinkResource,
    resource_path: Option<&str>,
    folder: FolderId,
) -> ApiResult<()> {
    let (row, _) = live_folder(state, p, &folder.to_string()).await?;
    let inside = row.share_id == share_id
        && match (resource, resource_path) {
            (LinkResource::Folder, Some(base)) => {
                row.path == base || row.path.starts_with(&format!("{base}/"))
            }
            _ => true,
        };
    if !inside {
        return Err(DomainError::invalid(
            "upload_folder_id",
            "the folder must be inside the linked folder or share",
        )
        .into());
    }
    require_perm(state, p, On::Folder(&row), Permission::Create).await
}

/// Creates an external link (SHARE on the resource).
#[utoipa::path(post, path = "/external/links", request_body = CreateBody, responses(
    (status = 201, description = "The new link, with its token and URLs", body = dto::Link),
    (status = 404, description = "No such resource, or not visible"),
    (status = 410, description = "The resource is in the trash"),
))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<Response> {
    require_write(&p)?;
    let share = body.share_id.to_string();
    let mut folder_path = None;
    match body.resource_type {
        LinkResource::File => {
            let (row, _) = live_file(&state, &p, &body.resource_id).await?;
            if row.share_id != share {
                return Err(
                    DomainError::invalid("resource_id", "the file is not in share_id").into(),
                );
            }
            require_perm(&state, &p, On::File(&row), Permission::Share).await?;
        }
        LinkResource::Folder => {
            let (row, _) = live_folder(&state, &p, &body.resource_id).await?;
            if row.share_id != share {
                return Err(
                    DomainError::invalid("resource_id", "the folder is not in share_id").into(),
                );
            }
            require_perm(&state, &p, On::Folder(&row), Permission::Share).await?;
            folder_path = Some(row.path);
        }
        LinkResource::Share => {
            if body.resource_id != share {
                return Err(DomainError::invalid(
                    "resource_id",
                    "a share link's resource_id is its share_id",
                )
                .into());
            }
            let row = live_share(&state, &p, &share).await?;
            require_perm(&state, &p, On::Share(&row), Permission::Share).await?;
        }
    }
    if let Some(f) = body.options.upload_folder_id {
        check_upload_folder(
            &state,
            &p,
            &share,
            body.resource_type,
            folder_path.as_deref(),
            f,
        )
        .await?;
    }
    let policy = policy(&state, &p).await?;
    let ctx = p.context();
    let mut options = LinkOptions {
        show_download_button: true,
        allow_preview: true,
        ..LinkOptions::default()
    };
    let hash = body.options.password_hash(&state.secrets).await?;
    body.options.apply(&mut options, hash, ctx.now);
    let link_id = LinkId::from_uuid(Uuid::now_v7());
    let committed = cmd::create_link(
        &state.bus,
        &ctx,
        link_id,
        &state.secrets,
        |token, short_code| LinkCommand::Create {
            link_id,
            tenant_id: p.tenant_id,
            share_id: body.share_id,
            resource_type: body.resource_type,
            resource_id: body.resource_id.clone(),
            link_type: body.link_type,
            token,
            short_code,
            options: options.clone(),
            policy: policy.clone(),
            by: p.user_id,
            at: ctx.now,
        },
    )
    .await?;
    let base = public_base(&state, &headers);
    let (id, read) = (link_id.to_string(), || {
        link_read_back(&state, link_id, &base)
    });
    respond
        .full()
        .item(&state, &committed, StatusCode::CREATED, &id, read)
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    share_id: Option<String>,
    resource_id: Option<String>,
    #[param(value_type = Option<doc::LinkStatus>, inline)]
    status: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// External links: the caller's (all of the tenant's for tenant admins).
#[utoipa::path(get, path = "/external/links", params(ListQuery), responses(
    (status = 200, description = "A page of links", body = dto::LinkList),
))]
async fn list(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<dto::LinkList>> {
    require_read(&p)?;
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .resolve()?;
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "active" | "expired" | "revoked" | "disabled") {
            return Err(ApiError::BadRequest(
                "status must be active, expired, revoked or disabled".into(),
            ));
        }
    }
    // Tenant admins see every link of the tenant; others the ones they made.
    let filter = LinkFilter {
        share_id: q.share_id.clone(),
        resource_id: q.resource_id.clone(),
        status: q.status.clone(),
        created_by: (!p.is_tenant_admin).then(|| p.user_id.to_string()),
    };
    let now = Utc::now();
    let (rows, total) = rm::list(
        &state.db,
        &p.tenant_id.to_string(),
        &filter,
        now,
        limit,
        offset,
    )
    .await?;
    let base = public_base(&state, &headers);
    let links = rows
        .iter()
        .map(|r| {
            let opened = Opened {
                token: opened(&state.secrets, &r.token)?,
                short_code: opened(&state.secrets, &r.short_code)?,
            };
            Ok(dto::Link::of_row(r, opened, &base, now))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(dto::LinkList { links, total }))
}

/// The link if the caller may manage it: its creator, a tenant admin, or
/// whoever holds SHARE on its resource; 404 when the resource is invisible.
async fn manageable(state: &AppState, p: &Principal, link_id: LinkId) -> ApiResult<Link> {
    let link = state.bus.load::<Link>(&link_id.to_string()).await?.state;
    if link.id.is_none() || link.tenant_id != Some(p.tenant_id) {
        return Err(ApiError::not_found("link"));
    }
    if p.is_tenant_admin || link.created_by == Some(p.user_id) {
        return Ok(link);
    }
    let hidden = |_| ApiError::not_found("link");
    match link.resource_type {
        Some(LinkResource::File) => {
            let (row, _) = visible_file(state, p, &link.resource_id)
                .await
                .map_err(hidden)?;
            require_perm(state, p, On::File(&row), Permission::Share).await?;
        }
        Some(LinkResource::Folder) => {
            let (row, _) = visible_folder(state, p, &link.resource_id)
                .await
                .map_err(hidden)?;
            require_perm(state, p, On::Folder(&row), Permission::Share).await?;
        }
        _ => {
            let row = visible_share(state, p, &link.resource_id)
                .await
                .map_err(hidden)?;
            require_perm(state, p, On::Share(&row), Permission::Share).await?;
        }
    }
    Ok(link)
}

/// One link (its creator, a tenant admin, or SHARE on its resource).
#[utoipa::path(get, path = "/external/links/{id}", params(("id" = inline(doc::LinkId), Path)), responses(
    (status = 200, description = "The link", body = dto::Link),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<LinkId>,
) -> ApiResult<Json<dto::Link>> {
    require_read(&p)?;
    let link = manageable(&state, &p, id).await?;
    Ok(Json(
        link_dto(&state, &link, &public_base(&state, &headers)).await?,
    ))
}

/// A link's options; its resource and type cannot change (422).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PatchBody {
    #[serde(flatten)]
    options: OptionFields,
    /// `active` or `disabled`.
    #[schema(value_type = Option<doc::LinkSwitch>)]
    status: Option<String>,
    is_active: Option<bool>,
    #[schema(ignore)]
    resource_type: Option<Value>,
    #[schema(ignore)]
    resource_id: Option<Value>,
    #[schema(ignore)]
    share_id: Option<Value>,
    #[schema(ignore)]
    link_type: Option<Value>,
}

impl Validate for PatchBody {
    fn check_json(body: &mut Value, found: &mut Found) {
        // serde cannot place a failure inside a flattened struct.
        found.check_as::<OptionFields>(body, &[]);
    }

    fn validate(&self, v: &mut Violations) {
        self.options.validate(v);
        for (field, given) in [
            ("resource_type", &self.resource_type),
            ("resource_id", &self.resource_id),
            ("share_id", &self.share_id),
            ("link_type", &self.link_type),
        ] {
            if let Some(val) = given {
                v.push(
                    "value_error",
                    field,
                    "Value error, a link's resource and type cannot be changed; create a new link",
                    val.clone(),
                );
            }
        }
        if let Some(s) = &self.status {
            if !matches!(s.as_str(), "active" | "disabled") {
                v.push(
                    "enum",
                    "status",
                    "Input should be 'active' or 'disabled'",
                    Value::from(s.as_str()),
                );
            }
        }
    }
}

/// Changes a link's options or enables/disables it.
#[utoipa::path(patch, path = "/external/links/{id}", request_body = PatchBody, params(("id" = inline(doc::LinkId), Path)),
    responses(
        (status = 200, description = "The link as changed", body = dto::Link),
        (status = 410, description = "The link is revoked"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    headers: HeaderMap,
    ApiPath(id): ApiPath<LinkId>,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<Response> {
    require_write(&p)?;
    let link = manageable(&state, &p, id).await?;
    if let Some(f) = body.options.upload_folder_id {
        if link.link_type != Some(LinkType::Upload) {
            return Err(DomainError::invalid(
                "upload_folder_id",
                "only UPLOAD links have an upload folder",
            )
            .into());
        }
        let base_path = match link.resource_type {
            Some(LinkResource::Folder) => {
                let (row, _) = live_folder(&state, &p, &link.resource_id).await?;
                Some(row.path)
            }
            _ => None,
        };
        let share = link.share_id.map(|s| s.to_string()).unwrap_or_default();
        let resource = link.resource_type.unwrap_or(LinkResource::Share);
        check_upload_folder(&state, &p, &share, resource, base_path.as_deref(), f).await?;
    }
    let policy = policy(&state, &p).await?;
    let ctx = p.context();
    let hash = body.options.password_hash(&state.secrets).await?;
    let enabled = match (body.status.as_deref(), body.is_active) {
        (Some("disabled"), _) => Some(false),
        (Some(_), _) => Some(true),
        (None, b) => b,
    };
    let fields = &body.options;
    let (_, committed) = cmd::update_link(
        &state.bus,
        &ctx,
        id,
        &state.secrets,
        |options| fields.apply(options, hash.clone(), ctx.now),
        enabled,
        policy,
        p.user_id,
    )
    .await?;
    let base = public_base(&state, &headers);
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &id.to_string(), || {
            link_read_back(&state, id, &base)
        })
        .await
}

/// Revokes a link for good.
#[utoipa::path(delete, path = "/external/links/{id}", params(("id" = inline(doc::LinkId), Path)), responses(
    (status = 204, description = "Revoked"),
    (status = 410, description = "Already revoked"),
))]
async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<LinkId>,
) -> ApiResult<Response> {
    require_write(&p)?;
    manageable(&state, &p, id).await?;
    let ctx = p.context();
    let (_, committed) = cmd::change_link(
        &state.bus,
        &ctx,
        id,
        &LinkCommand::Revoke {
            by: p.user_id,
            at: ctx.now,
        },
    )
    .await?;
    Ok(respond.full().empty(&state, &committed).await)
}

/// Gives a link a new token and short code (old ones and sessions stop working).
#[utoipa::path(post, path = "/external/links/{id}/regenerate", params(("id" = inline(doc::LinkId), Path)), responses(
    (status = 200, description = "The link with its new token", body = dto::Link),
    (status = 410, description = "The link is revoked"),
))]
async fn regenerate(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    headers: HeaderMap,
    ApiPath(id): ApiPath<LinkId>,
) -> ApiResult<Response> {
    require_write(&p)?;
    manageable(&state, &p, id).await?;
    let ctx = p.context();
    let (link, committed) =
        cmd::regenerate_link(&state.bus, &ctx, id, p.user_id, &state.secrets).await?;
    let base = public_base(&state, &headers);
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &id.to_string(), || {
            link_dto(&state, &link, &base)
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SessionsQuery {
    /// Only attempts with this outcome.
    outcome: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// Every recipient attempt on the link, newest first, read from its stream.
#[utoipa::path(get, path = "/external/links/{id}/sessions", params(("id" = inline(doc::LinkId), Path), SessionsQuery),
    responses((status = 200, description = "A page of attempts", body = dto::LinkSessionList)),
)]
async fn sessions(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(link_id): ApiPath<LinkId>,
    ApiQuery(q): ApiQuery<SessionsQuery>,
) -> ApiResult<Json<dto::LinkSessionList>> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .resolve()?;
    require_read(&p)?;
    manageable(&state, &p, link_id).await?;
    let id = link_id.to_string();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let batch = state.store.read_stream(&id, after, 1000).await?;
        let n = batch.len();
        for e in batch {
            after = e.stream_version;
            if e.event_type != "link-accessed" {
                continue;
            }
            let Ok(LinkEvent::LinkAccessed {
                action,
                outcome,
                status,
                ip,
                email,
                at,
                ..
            }) = LinkEvent::decode(&e.event_type, e.schema_version, e.data.clone())
            else {
                continue;
            };
            if q.outcome.as_deref().is_some_and(|o| o != outcome.as_str()) {
                continue;
            }
            all.push(dto::LinkSession {
                id: scaidrive_domain::id::EventId::from_uuid(e.event_id).to_string(),
                action: action.as_str().to_owned(),
                outcome: outcome.as_str().to_owned(),
                allowed: status == 200,
                status,
                ip,
                email,
                user_agent: e.metadata.actor.user_agent,
                at: ts(at),
                position: e.log.to_token(),
            });
        }
        if n < 1000 {
            break;
        }
    }
    let total = all.len();
    all.reverse();
    let sessions = all
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok(Json(dto::LinkSessionList { sessions, total }))
}
