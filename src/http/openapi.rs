//! The OpenAPI 3.1 document, `GET /api/v1/openapi.json`: assembled from the
//! handlers' `#[utoipa::path]` annotations, with the shapes of the answers the
//! handlers build with `json!` described here (schema-only types).
//!
//! [`Finish`] adds what every operation shares instead of repeating it on
//! each: the `/api/v1` prefix, operation ids (`{module}_{handler}`), bearer
//! security, the `{"detail"}` error body on every 4xx/5xx answer, and the
//! errors any request can meet (SPEC §2: 401/403/429 once authenticated, 400
//! for malformed path, query or `X-ScaiDrive-Position`, 404 for a path that
//! names something, 415/422/413 for JSON bodies, 503/504).

#![allow(dead_code)] // schema-only types: described, never built

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{
    AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The link view of a resource's history.
pub use super::dto::Link;
pub use super::dto::{
    Entry, File, FileEntry, FileKind, Folder, FolderEntry, FolderKind, Listing, TrashListing,
    Version, VersionList,
};
pub use super::dto::{Share, ShareList};
use super::error::FieldError;
use super::state::AppState;
use super::{
    admin, audit, connectors, events, files, folders, history, links, permissions, principals,
    public_links, quotas, realtime, shares, sharing, sync, system, uploads, users, webhooks_in,
    webhooks_out,
};

/// Every route is served under this prefix.
pub const BASE: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ScaiDrive API",
        description = "Enterprise file sync-and-share: tenants, shares, folders, files, \
            resumable uploads, ACLs, sync, external links, quotas, events and audit. \
            Errors answer `{\"detail\": ...}` (an array of field errors for 422) with an optional \
            stable `code`. Send `X-ScaiDrive-Position` (from a write's response) to read your \
            own writes. Single-item folder and file writes take `Prefer: return=minimal`: \
            they then answer only `{\"id\": ...}` and the position, without waiting for \
            the read models (`Preference-Applied: return=minimal`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        document,
        system::health, system::ready, system::config, system::metrics,
        users::me, users::my_quota,
        admin::get_tenant, admin::patch_tenant, admin::list_users, admin::get_user,
        admin::patch_user, admin::activate_user, admin::list_groups, admin::create_group,
        admin::get_group, admin::patch_group, admin::delete_group, admin::list_members,
        admin::add_member, admin::remove_member, admin::list_partner_tenants,
        admin::create_partner_tenant,
        shares::list, shares::create, shares::read, shares::update, shares::remove,
        shares::restore, shares::children, shares::trash,
        sharing::list_members, sharing::add_member, sharing::read_member,
        sharing::update_member, sharing::remove_member, sharing::list_invitations,
        sharing::invite, sharing::revoke, sharing::my_shares, sharing::my_invitations,
        sharing::accept, sharing::decline,
        principals::search,
        permissions::check_query, permissions::check_body, permissions::check_batch,
        permissions::effective_permissions, permissions::read_acl, permissions::add_entry,
        permissions::remove_entry, permissions::set_inheritance, permissions::transfer,
        folders::create, folders::read, folders::update, folders::remove, folders::children,
        folders::move_to,
        files::upload, files::read, files::update, files::remove, files::download, files::copy,
        files::move_to, files::versions, files::restore_version,
        uploads::start, uploads::progress, uploads::abort, uploads::chunk, uploads::complete,
        quotas::get_own_tenant, quotas::put_own_tenant, quotas::get_own_partner,
        quotas::put_own_partner, quotas::get_partner, quotas::put_partner, quotas::get_tenant,
        quotas::put_tenant, quotas::list_users, quotas::get_user, quotas::put_user,
        quotas::delete_user, quotas::exempt_user, quotas::list_groups, quotas::get_group,
        quotas::put_group, quotas::delete_group, quotas::exempt_group, quotas::get_share,
        quotas::put_share, quotas::usage_tenant, quotas::usage_users, quotas::usage_user,
        quotas::usage_share,
        events::list, events::stream,
        audit::list, audit::export, audit::verify,
        history::history,
        links::create, links::list, links::read, links::update, links::revoke,
        links::regenerate, links::sessions,
        public_links::landing, public_links::email_code, public_links::unlock,
        public_links::download, public_links::preview, public_links::children,
        public_links::upload, public_links::short_code,
        realtime::device_socket, realtime::realtime_socket,
        sync::changes, sync::devices, sync::register, sync::status, sync::move_cursor,
        sync::apply, sync::conflicts, sync::resolve, sync::download,
        webhooks_in::receive,
        webhooks_out::list, webhooks_out::create, webhooks_out::read, webhooks_out::patch,
        webhooks_out::remove, webhooks_out::deliveries, webhooks_out::delivery,
        connectors::list, connectors::create, connectors::read, connectors::patch, connectors::remove, connectors::test, connectors::sync, connectors::runs,
    ),
    nest(
        (path = ROOT, api = super::catalogue::CatalogueDoc),
        (path = ROOT, api = super::search::SearchApi),
        (path = ROOT, api = super::proofs::ProofsApi)
    ),
    modifiers(&Finish),
)]
pub struct ApiDoc;

/// Where a module's own OpenAPI part is nested: at the root, its paths are
/// already whole.
const ROOT: &str = "";

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_default());

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

// ------------------------------------------------------------ finishing

/// Properties of answer schemas that are left out when they do not apply
/// (every other property of an answer schema is always present, possibly
/// `null`, and is marked required).
const OPTIONAL: &[(&str, &str)] = &[
    ("ErrorBody", "code"),
    ("FieldError", "ctx"),
    ("Actor", "*"),
    ("FolderEntry", "is_deleted"),
    ("FolderEntry", "deleted_at"),
    ("FileEntry", "is_deleted"),
    ("FileEntry", "deleted_at"),
    ("Invitation", "share_name"),
    ("InvitationAnswer", "role"),
    ("AclEntry", "inherited_from"),
    ("Landing", "token"),
    ("Conflict", "result"),
    ("Delivery", "attempt_log"),
];

/// The finishing pass over the generated document (see the module docs).
struct Finish;

impl Modify for Finish {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A ScaiKey token (or one minted by `scaidrive token` without ScaiKey); \
                         for `/public/links/...` the link access token from `unlock`.",
                    ))
                    .build(),
            ),
        );
        let (name, schema) = (ErrorBody::name().to_string(), ErrorBody::schema());
        components.schemas.entry(name).or_insert(schema);
        let mut more = Vec::new();
        ErrorBody::schemas(&mut more);
        for (name, schema) in more {
            components.schemas.entry(name).or_insert(schema);
        }

        let paths = std::mem::take(&mut doc.paths.paths);
        for (path, mut item) in paths {
            let has_path_params = path.contains('{');
            for (method, op) in operations(&mut item) {
                finish_operation(&path, method, op, has_path_params);
            }
            doc.paths.paths.insert(format!("{BASE}{path}"), item);
        }
        let answers = answer_schemas(doc);
        if let Some(components) = doc.components.as_mut() {
            for (name, schema) in components.schemas.iter_mut() {
                if answers.contains(name) {
                    require_all(name, schema);
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

fn finish_operation(path: &str, method: &str, op: &mut Operation, has_path_params: bool) {
    // utoipa tags each operation with its module; ids are module_handler.
    let module = op
        .tags
        .as_ref()
        .and_then(|t| t.first())
        .cloned()
        .unwrap_or_else(|| "api".into());
    let handler = op.operation_id.clone().unwrap_or_else(|| method.to_owned());
    op.operation_id = Some(format!("{module}_{handler}"));

    // `security(())` marks a public operation, `security((), ("bearer" = []))`
    // one where the bearer token is optional (a link's access token);
    // everything else is bearer.
    let requirements = op.security.as_deref().unwrap_or_default();
    let public = !requirements.is_empty() && requirements.iter().all(is_empty_requirement);
    let optional = !public && requirements.iter().any(is_empty_requirement);
    let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
    op.security = if public {
        None
    } else if optional {
        Some(vec![SecurityRequirement::default(), bearer])
    } else {
        Some(vec![bearer])
    };

    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    let any_body = op.request_body.is_some();
    let mut defaults: Vec<(&str, &str)> =
        vec![("400", "Malformed path, query or X-ScaiDrive-Position")];
    if !public {
        defaults.push(("401", "Token missing, expired or not valid"));
        defaults.push((
            "403",
            "User suspended or inactive, insufficient scope, or the permission is lacking",
        ));
        defaults.push(("429", "Rate limit exceeded (see Retry-After)"));
    }
    if has_path_params {
        defaults.push(("404", "Not found, or not visible to the caller"));
    }
    if json_body {
        defaults.push(("415", "The body is not application/json"));
        defaults.push(("422", "The body fails validation (detail is an array)"));
    }
    if any_body {
        defaults.push(("413", "The body is too large"));
    }
    if !matches!(path, "/health" | "/config" | "/openapi.json") {
        defaults.push(("503", "A dependency is down or the server is draining"));
    }
    defaults.push(("504", "The request timed out"));
    let responses = &mut op.responses.responses;
    for (status, description) in defaults {
        responses.entry(status.to_owned()).or_insert_with(|| {
            RefOr::T(
                utoipa::openapi::ResponseBuilder::new()
                    .description(description)
                    .build(),
            )
        });
    }
    for (status, response) in responses.iter_mut() {
        let failing = status.starts_with('4') || status.starts_with('5');
        if let RefOr::T(r) = response {
            if failing && r.content.is_empty() {
                r.content.insert(
                    "application/json".into(),
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                );
            }
        }
    }
    // Path parameters are always required.
    for p in op.parameters.iter_mut().flatten() {
        if p.parameter_in == ParameterIn::Path {
            p.required = utoipa::openapi::Required::True;
        }
    }
}

fn is_empty_requirement(r: &SecurityRequirement) -> bool {
    serde_json::to_value(r).is_ok_and(|v| v.as_object().is_some_and(|m| m.is_empty()))
}

/// Component schemas reached from responses and never from a request.
fn answer_schemas(doc: &Doc) -> BTreeSet<String> {
    let Ok(v) = serde_json::to_value(doc) else {
        return BTreeSet::new();
    };
    let schemas = v["components"]["schemas"].clone();
    let mut answers = BTreeSet::new();
    let mut requests = BTreeSet::new();
    if let Some(paths) = v["paths"].as_object() {
        for item in paths.values() {
            for op in item.as_object().into_iter().flat_map(|m| m.values()) {
                collect_refs(&op["responses"], &schemas, &mut answers);
                collect_refs(&op["requestBody"], &schemas, &mut requests);
                collect_refs(&op["parameters"], &schemas, &mut requests);
            }
        }
    }
    answers.difference(&requests).cloned().collect()
}

fn collect_refs(v: &Value, schemas: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    if out.insert(name.to_owned()) {
                        collect_refs(&schemas[name], schemas, out);
                    }
                }
            }
            for child in m.values() {
                collect_refs(child, schemas, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                collect_refs(child, schemas, out);
            }
        }
        _ => {}
    }
}

fn require_all(name: &str, schema: &mut RefOr<Schema>) {
    let RefOr::T(Schema::Object(obj)) = schema else {
        return;
    };
    let optional: Vec<&str> = OPTIONAL
        .iter()
        .filter(|(s, _)| *s == name)
        .map(|(_, p)| *p)
        .collect();
    if optional.contains(&"*") {
        obj.required.clear();
        return;
    }
    obj.required = obj
        .properties
        .keys()
        .filter(|p| !optional.contains(&p.as_str()))
        .cloned()
        .collect();
}

// ------------------------------------------------------------ ids

/// Builds the schema of a prefixed id: the prefix and 26 Crockford base32
/// characters (case-insensitive; I/L read as 1, O as 0; the first carries 3 bits).
fn id_schema(prefixes: &[&str], what: &str) -> RefOr<Schema> {
    let alternatives = prefixes.join("|");
    let example = format!("{}01J3KXQ0N6R8V2T4Y6W8Z0B2C4", prefixes[0]);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "{what} id: `{}` followed by 26 Crockford base32 characters",
            prefixes.join("` or `")
        )))
        .pattern(Some(format!(
            "^({alternatives})[0-7OoIiLl][0-9A-TV-Za-tv-z]{{25}}$"
        )))
        .examples([Value::from(example)])
        .into()
}

macro_rules! id_types {
    ($($name:ident => [$($prefix:literal),+], $what:literal;)+) => {$(
        #[doc = concat!("A ", $what, " id.")]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                id_schema(&[$($prefix),+], $what)
            }
        }

        impl ToSchema for $name {}
    )+};
}

id_types! {
    PartnerId => ["prt_"], "partner";
    TenantId => ["tnt_"], "tenant";
    UserId => ["usr_"], "user";
    GroupId => ["grp_"], "group";
    ShareId => ["shr_"], "share";
    FolderId => ["fld_"], "folder";
    FileId => ["fil_"], "file";
    VersionId => ["ver_"], "version";
    LinkId => ["lnk_"], "link";
    UploadId => ["upl_"], "upload session";
    ConflictId => ["cfl_"], "conflict";
    WebhookId => ["whk_"], "webhook";
    InvitationId => ["inv_"], "invitation";
    ConnectorId => ["cnn_"], "connector";
    OwnerId => ["usr_", "grp_"], "user or group";
    ResourceId => ["shr_", "fld_", "fil_"], "share, folder or file";
    HistoryId => ["shr_", "fld_", "fil_", "lnk_"], "share, folder, file or link";
}

/// A timestamp, ISO-8601 UTC (`2026-04-23T10:15:02Z`).
pub struct Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("ISO-8601 UTC, e.g. `2026-04-23T10:15:02Z`"))
            .into()
    }
}

impl ToSchema for Timestamp {}

/// A timestamp a client sends: RFC 3339 with a `Z` or an offset.
pub struct DateTimeInput;

impl PartialSchema for DateTimeInput {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(
                "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$",
            ))
            .description(Some("RFC 3339, e.g. `2026-04-23T10:15:02Z`"))
            .into()
    }
}

impl ToSchema for DateTimeInput {}

// ------------------------------------------------------------ errors

/// The error body of every 4xx/5xx answer (SPEC §2). 429 adds
/// `retry_after` and `dimension`; a sync conflict adds `conflict_id`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: Detail,
    /// Stable machine-readable code, e.g. `NAME_CONFLICT`, `RATE_LIMITED`.
    pub code: Option<String>,
}

/// A message, or (422) one entry per failing field.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Detail {
    Message(String),
    Fields(Vec<FieldError>),
}

/// One step of a field error's location (`body`, a field name, a list index).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocStep {
    Name(String),
    Index(u64),
}

// ------------------------------------------------------------ enums

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShareTypeDoc {
    Central,
    Personal,
    Project,
}

/// A role a member holds (`owner` only through ownership).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleDoc {
    Owner,
    Admin,
    Contributor,
    Reader,
}

/// A role that can be granted.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantableRole {
    Admin,
    Contributor,
    Reader,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberPrincipalType {
    User,
    Group,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AclPrincipalType {
    User,
    Group,
    Everyone,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AceTypeDoc {
    Allow,
    Deny,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PermissionDoc {
    Read,
    Write,
    Delete,
    Create,
    Share,
    ManagePermissions,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourceTypeDoc {
    Share,
    Folder,
    File,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncResourceType {
    File,
    Folder,
    Share,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeTypeDoc {
    Created,
    Updated,
    Deleted,
    Moved,
    Renamed,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictStrategyDoc {
    Manual,
    LastWriterWins,
    KeepBoth,
    ServerWins,
    ClientWins,
}

/// How a stored conflict is resolved.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    LastWriterWins,
    KeepBoth,
    ServerWins,
    ClientWins,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LinkTypeDoc {
    View,
    Download,
    Upload,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    Active,
    Expired,
    Revoked,
    Disabled,
}

/// What a link owner may set its status to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkSwitch {
    Active,
    Disabled,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatusDoc {
    Active,
    Inactive,
    Suspended,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminRoleDoc {
    TenantAdmin,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitTypeDoc {
    Hard,
    Soft,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaLevelDoc {
    Partner,
    Tenant,
    Group,
    User,
    Share,
}

/// An audit category (case-insensitive).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditCategory {
    Authentication,
    Authorization,
    FileAccess,
    FileModification,
    Sharing,
    Admin,
    Security,
    Compliance,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatusDoc {
    Active,
    Paused,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    Expired,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatusDoc {
    Active,
    Completed,
    Aborted,
    Expired,
}

// ------------------------------------------------------------ operations

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `healthy`.
    pub status: String,
    pub version: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    Draining,
    NotReady,
}

/// Readiness: each dependency's check (`redis`, `kafka` appear when configured).
#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub status: ReadyStatus,
    pub checks: BTreeMap<String, bool>,
}

/// `GET /config`: what this process has on, and limits.
#[derive(Serialize, ToSchema)]
pub struct ClientConfig {
    pub version: String,
    /// The tenant whose settings `limits` (and `external_sharing`) show:
    /// the caller's, when a valid bearer token was sent; null = the server
    /// defaults.
    #[schema(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
    pub features: ClientFeatures,
    pub limits: ClientLimits,
}

/// Each flag is true only when the thing is on in this process.
#[derive(Serialize, ToSchema)]
pub struct ClientFeatures {
    /// Semantic search (not built yet: false).
    pub semantic_search: bool,
    /// External links: built; with a token, the tenant's sharing policy.
    pub external_sharing: bool,
    /// SMB connectors (not built yet: false).
    pub smb_connector: bool,
    /// SharePoint connectors (not built yet: false).
    pub sharepoint_connector: bool,
    /// Keyword search (not built yet: false).
    pub search: bool,
    /// The Kafka relay is compiled in and brokers are configured.
    pub kafka: bool,
    /// A Redis URL is configured (shared rate-limit windows).
    pub redis: bool,
    /// An SMTP URL is configured (`SCAIDRIVE_SMTP_URL`).
    pub smtp: bool,
    /// Any connector (not built yet: false).
    pub connectors: bool,
}

/// Upload limits and rate limits: the caller's tenant's, else the defaults.
#[derive(Serialize, ToSchema)]
pub struct ClientLimits {
    /// The tenant's per-file cap (`settings.max_file_size_bytes`).
    pub max_file_size_bytes: u64,
    pub max_upload_chunk_size_bytes: u64,
    pub rate_limits: ClientRateLimits,
}

/// Units per window (SPEC §4.11): the tenant's own settings where set,
/// else the server's defaults.
#[derive(Serialize, ToSchema)]
pub struct ClientRateLimits {
    pub per_token: u64,
    pub per_user: u64,
    pub per_tenant: u64,
    pub window_seconds: u64,
}

// ------------------------------------------------------------ users, admin

#[derive(Serialize, ToSchema)]
pub struct TenantSettings {
    pub max_file_size_bytes: u64,
    pub default_share_quota_bytes: Option<u64>,
    pub trash_retention_days: u32,
    pub version_retention_days: u32,
    pub vectorization_enabled: bool,
    pub require_mfa: bool,
    pub sharing: SharingPolicy,
    pub rate_limits: RateLimits,
}

#[derive(Serialize, ToSchema)]
pub struct SharingPolicy {
    pub external_sharing_enabled: bool,
    pub require_password: bool,
    pub require_expiry: bool,
    pub max_expiry_days: Option<u32>,
    pub allowed_link_types: Vec<LinkTypeDoc>,
    pub max_downloads_ceiling: Option<u64>,
}

/// Units per 60 s window; `null` = the server default.
#[derive(Serialize, ToSchema)]
pub struct RateLimits {
    pub per_token: Option<u64>,
    pub per_user: Option<u64>,
    pub per_tenant: Option<u64>,
}

/// A partial `settings` object: only the keys given change (`null` only
/// where a key is nullable); unknown keys are refused (422). The request
/// edge checks a patch's shape against this type, key by key.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettingsPatch {
    /// At most 4 TiB.
    #[schema(minimum = 1, maximum = 4398046511104.0)]
    pub max_file_size_bytes: u64,
    /// `null`: no default share limit.
    pub default_share_quota_bytes: Option<u64>,
    #[schema(minimum = 1, maximum = 3650)]
    pub trash_retention_days: u32,
    #[schema(minimum = 1, maximum = 36500)]
    pub version_retention_days: u32,
    pub vectorization_enabled: bool,
    pub require_mfa: bool,
    pub sharing: SharingPolicyPatch,
    pub rate_limits: RateLimitsPatch,
}

impl Default for TenantSettingsPatch {
    fn default() -> Self {
        Self {
            max_file_size_bytes: 5_368_709_120,
            default_share_quota_bytes: None,
            trash_retention_days: 30,
            version_retention_days: 365,
            vectorization_enabled: false,
            require_mfa: false,
            sharing: SharingPolicyPatch::default(),
            rate_limits: RateLimitsPatch::default(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SharingPolicyPatch {
    pub external_sharing_enabled: bool,
    pub require_password: bool,
    pub require_expiry: bool,
    /// `null`: no ceiling.
    #[schema(minimum = 1)]
    pub max_expiry_days: Option<u32>,
    pub allowed_link_types: Vec<LinkTypeDoc>,
    /// `null`: no ceiling.
    pub max_downloads_ceiling: Option<u64>,
}

/// `null` for a key: the server default.
#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsPatch {
    #[schema(minimum = 1)]
    pub per_token: Option<u64>,
    #[schema(minimum = 1)]
    pub per_user: Option<u64>,
    #[schema(minimum = 1)]
    pub per_tenant: Option<u64>,
}

// ------------------------------------------------------------ shares

/// A free-form JSON object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Object {}

#[derive(Serialize, ToSchema)]
pub struct PrincipalUser {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub display_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct PrincipalGroup {
    pub id: String,
    pub name: String,
    pub member_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PrincipalSearch {
    pub users: Vec<PrincipalUser>,
    pub groups: Vec<PrincipalGroup>,
}

// ------------------------------------------------------------ folders, files

/// `POST /files` form fields.
#[derive(Serialize, ToSchema)]
pub struct SimpleUpload {
    #[schema(value_type = ShareId)]
    pub share_id: String,
    /// The folder; absent or empty for the share root.
    #[schema(pattern = "^((fld_)[0-7OoIiLl][0-9A-TV-Za-tv-z]{25})?$")]
    pub folder_id: Option<String>,
    /// Default: the file part's file name.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^/\\u0000]+$")]
    pub name: Option<String>,
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /public/links/{token}/upload` form fields.
#[derive(Serialize, ToSchema)]
pub struct DropUpload {
    /// Default: the file part's file name.
    pub name: Option<String>,
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Raw bytes.
#[derive(Serialize, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(Vec<u8>);

// ------------------------------------------------------------ quotas

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitSource {
    Explicit,
    Default,
    None,
}

// ------------------------------------------------------------ events, audit, history

/// Who caused an event (each field only when known).
#[derive(Serialize, ToSchema)]
pub struct Actor {
    pub user_id: Option<String>,
    pub service_account: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub device_id: Option<String>,
}

/// The event envelope (SPEC §4.10).
#[derive(Serialize, ToSchema)]
pub struct Event {
    pub event_id: String,
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    /// kebab-case, e.g. `link-revoked`.
    pub event_type: String,
    pub schema_version: i64,
    pub tenant_id: Option<String>,
    #[schema(value_type = Timestamp)]
    pub occurred_at: String,
    pub actor: Actor,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub data: Object,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `after` for the next page.
    pub next_after: String,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub event_id: String,
    pub position: i64,
    #[schema(value_type = Timestamp)]
    pub timestamp: String,
    pub category: String,
    /// `share.member_added` style.
    pub action: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub event_type: String,
    pub user_id: Option<String>,
    pub service_account: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: String,
    pub details: Object,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEntry>,
    pub next_after: String,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct BrokenLink {
    pub stream_id: String,
    pub stream_version: i64,
    pub position: i64,
    pub expected_hash: String,
    pub stored_hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    pub events_checked: u64,
    pub streams_checked: u64,
    pub first_broken: Option<BrokenLink>,
    pub range: VerifiedRange,
}

/// The range a verification checked: events whose `occurred_at` lies in
/// `[from, to]` (null = open end), and the earliest and latest `occurred_at`
/// among the events it checked (null when none).
#[derive(Serialize, ToSchema)]
pub struct VerifiedRange {
    #[schema(value_type = Option<Timestamp>)]
    pub from: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub to: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub first_occurred_at: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub last_occurred_at: Option<String>,
}

/// The last event a historical view includes.
#[derive(Serialize, ToSchema)]
pub struct AsOf {
    pub position: String,
    #[schema(value_type = Timestamp)]
    pub recorded_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct FileVersionThen {
    pub number: u64,
    pub version_id: String,
    pub size: u64,
    pub checksum_sha256: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct FileThen {
    /// `file`.
    pub resource_type: String,
    pub id: String,
    pub as_of: AsOf,
    pub name: String,
    pub path: String,
    pub share_id: Option<String>,
    pub folder_id: Option<String>,
    pub is_deleted: bool,
    pub size: Option<u64>,
    pub version: Option<u64>,
    pub version_id: Option<String>,
    pub checksum_sha256: Option<String>,
    pub versions: Vec<FileVersionThen>,
}

#[derive(Serialize, ToSchema)]
pub struct ShareThen {
    /// `share`.
    pub resource_type: String,
    pub id: String,
    pub as_of: AsOf,
    pub name: String,
    pub description: Option<String>,
    pub share_type: Option<ShareTypeDoc>,
    pub owner_id: Option<String>,
    pub members: Vec<Object>,
    pub is_deleted: bool,
}

#[derive(Serialize, ToSchema)]
pub struct FolderThen {
    /// `folder`.
    pub resource_type: String,
    pub id: String,
    pub as_of: AsOf,
    pub name: String,
    pub path: String,
    pub share_id: Option<String>,
    pub parent_id: Option<String>,
    pub is_deleted: bool,
    pub items: Vec<Object>,
    pub total: usize,
}

#[derive(Serialize, ToSchema)]
pub struct AclThen {
    /// `acl`.
    pub resource_type: String,
    pub id: String,
    pub as_of: AsOf,
    pub inherit_from_parent: bool,
    pub entries: Vec<Object>,
}

/// A resource as it was: the shape of its `resource_type` (a link: the
/// link object with `as_of`).
pub struct History;

impl PartialSchema for History {
    fn schema() -> RefOr<Schema> {
        let mut any = AnyOfBuilder::new();
        for name in ["FileThen", "ShareThen", "FolderThen", "AclThen", "Link"] {
            any = any.item(Ref::from_schema_name(name));
        }
        any.into()
    }
}

impl ToSchema for History {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        fn add<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
            out.push((T::name().into(), T::schema()));
            T::schemas(out);
        }
        add::<FileThen>(out);
        add::<ShareThen>(out);
        add::<FolderThen>(out);
        add::<AclThen>(out);
        add::<Link>(out);
    }
}

// ------------------------------------------------------------ sync

#[derive(Serialize, ToSchema)]
pub struct ChangeMetadata {
    pub size: Option<i64>,
    pub mime_type: Option<String>,
    pub permanent: bool,
}

/// One entry of the change feed.
#[derive(Serialize, ToSchema)]
pub struct Change {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub old_share_id: Option<String>,
    pub resource_type: SyncResourceType,
    pub resource_id: String,
    pub change_type: ChangeTypeDoc,
    pub changed_by: Option<String>,
    pub device_id: Option<String>,
    #[schema(value_type = Timestamp)]
    pub changed_at: String,
    pub name: Option<String>,
    pub parent_id: Option<String>,
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub version_id: Option<String>,
    pub metadata: ChangeMetadata,
    /// The feed position just after this change.
    pub cursor: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    pub cursor: String,
    pub has_more: bool,
    pub share_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyStatus {
    Applied,
    Conflict,
}

#[derive(Serialize, ToSchema)]
pub struct Conflict {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub device_id: String,
    pub user_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub name: String,
    pub change_type: String,
    /// The change as the device sent it.
    pub client_change: Option<Object>,
    pub base_version_id: Option<String>,
    pub server_version_id: Option<String>,
    pub strategy: String,
    /// `open` or `resolved`.
    pub status: String,
    pub is_resolved: bool,
    pub resolution: Option<String>,
    pub result_resource_id: Option<String>,
    pub result_version_id: Option<String>,
    pub resolved_by: Option<String>,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Option<Timestamp>)]
    pub resolved_at: Option<String>,
    /// What resolving did (resolve only).
    pub result: super::dto::ApplyOutcome,
}

#[derive(Serialize, ToSchema)]
pub struct ConflictList {
    pub conflicts: Vec<Conflict>,
    pub total: usize,
}

// ------------------------------------------------------------ webhooks

/// A ScaiKey directory delivery.
#[derive(Serialize, ToSchema)]
pub struct ScaiKeyDelivery {
    /// `user.created|updated|deleted`, `group.created|updated|deleted`,
    /// `group.member_added|member_removed` (alias `type`).
    #[schema(
        pattern = "^(user\\.(created|updated|deleted)|group\\.(created|updated|deleted|member_added|member_removed))$"
    )]
    pub event: String,
    #[schema(min_length = 1, max_length = 255)]
    pub tenant_id: String,
    pub partner_id: Option<String>,
    /// The user, group or membership the event is about.
    pub data: Option<Object>,
}
