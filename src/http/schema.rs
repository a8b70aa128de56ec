//! The API's schema vocabulary: what the typed answers in `dto` refer to
//! but JSON cannot say by itself. Prefixed ids, timestamps, the string enums
//! the domain spells as text, the error body, request forms, and the shapes
//! built outside `http` (the event envelope, audit entries) that webhooks
//! and the relay send too. Handlers do not build these: each exists to be
//! described (and the settings patch to check a request's shape against).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

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

// ------------------------------------------------------------ sync

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyStatus {
    Applied,
    Conflict,
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
