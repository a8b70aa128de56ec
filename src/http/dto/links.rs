//! External links as the API shows them: to their owner (a link, a list,
//! every recipient attempt) and to a recipient (landing, email code,
//! access token, folder listing, a dropped file).

use chrono::{DateTime, Utc};
use scaidrive_domain::link::{Credential, Link as LinkState};
use scaidrive_domain::secret::REDACTED;
use scaidrive_projections::links::LinkRow;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::drive::Entry;
use crate::http::schema::{LinkStatus, LinkTypeDoc, ResourceTypeDoc, Timestamp};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    #[schema(value_type = ResourceTypeDoc)]
    pub resource_type: String,
    pub resource_id: String,
    #[schema(value_type = LinkTypeDoc)]
    pub link_type: String,
    pub token: String,
    pub short_code: String,
    pub url: String,
    pub short_url: String,
    #[schema(value_type = LinkStatus)]
    pub status: String,
    pub is_active: bool,
    pub password_required: bool,
    pub max_downloads: Option<u64>,
    pub download_count: i64,
    pub max_views: Option<u64>,
    pub view_count: i64,
    /// CIDRs.
    pub allowed_ips: Option<Vec<String>>,
    pub allowed_emails: Option<Vec<String>>,
    pub require_email: Option<bool>,
    pub custom_name: Option<String>,
    pub custom_message: Option<String>,
    pub show_download_button: Option<bool>,
    pub allow_preview: Option<bool>,
    pub notify_on_access: Option<bool>,
    pub notify_on_download: Option<bool>,
    pub notify_on_upload: Option<bool>,
    pub notification_email: Option<String>,
    pub upload_folder_id: Option<String>,
    pub max_file_size: Option<u64>,
    pub allowed_extensions: Option<Vec<String>>,
    pub created_by: String,
    #[schema(value_type = Option<Timestamp>)]
    pub created_at: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub expires_at: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub last_access_at: Option<String>,
}

/// A link's options as stored (the aggregate's `LinkOptions` serialized, or
/// the read model's copy of it): a field missing there is shown as `null`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShownOptions {
    max_downloads: Option<u64>,
    max_views: Option<u64>,
    allowed_ips: Option<Vec<String>>,
    allowed_emails: Option<Vec<String>>,
    require_email: Option<bool>,
    custom_name: Option<String>,
    custom_message: Option<String>,
    show_download_button: Option<bool>,
    allow_preview: Option<bool>,
    notify_on_access: Option<bool>,
    notify_on_download: Option<bool>,
    notify_on_upload: Option<bool>,
    notification_email: Option<String>,
    upload_folder_id: Option<String>,
    max_file_size: Option<u64>,
    allowed_extensions: Option<Vec<String>>,
    expires_at: Option<String>,
}

impl ShownOptions {
    fn of(options: Value) -> Self {
        serde_json::from_value(options).unwrap_or_default()
    }
}

/// A link's token and short code in the clear; outward views (history) go
/// without and show them redacted.
#[derive(Debug, Clone)]
pub struct Opened {
    pub token: String,
    pub short_code: String,
}

/// What differs between the aggregate and the read-model row.
struct Facts {
    id: String,
    tenant_id: String,
    share_id: String,
    resource_type: String,
    resource_id: String,
    link_type: String,
    status: &'static str,
    password_required: bool,
    download_count: i64,
    view_count: i64,
    created_by: String,
    created_at: Option<DateTime<Utc>>,
    last_access_at: Option<DateTime<Utc>>,
}

impl Link {
    fn build(f: Facts, options: Value, opened: Option<Opened>, base: &str) -> Self {
        let o = ShownOptions::of(options);
        let (token, short_code, url, short_url) = match opened {
            Some(Opened { token, short_code }) => {
                let url = format!("{base}/api/v1/public/links/{token}");
                let short_url = format!("{base}/api/v1/public/s/{short_code}");
                (token, short_code, url, short_url)
            }
            None => {
                let r = || REDACTED.to_owned();
                (r(), r(), r(), r())
            }
        };
        Self {
            id: f.id,
            tenant_id: f.tenant_id,
            share_id: f.share_id,
            resource_type: f.resource_type,
            resource_id: f.resource_id,
            link_type: f.link_type,
            token,
            short_code,
            url,
            short_url,
            status: f.status.to_owned(),
            is_active: f.status == "active",
            password_required: f.password_required,
            max_downloads: o.max_downloads,
            download_count: f.download_count,
            max_views: o.max_views,
            view_count: f.view_count,
            allowed_ips: o.allowed_ips,
            allowed_emails: o.allowed_emails,
            require_email: o.require_email,
            custom_name: o.custom_name,
            custom_message: o.custom_message,
            show_download_button: o.show_download_button,
            allow_preview: o.allow_preview,
            notify_on_access: o.notify_on_access,
            notify_on_download: o.notify_on_download,
            notify_on_upload: o.notify_on_upload,
            notification_email: o.notification_email,
            upload_folder_id: o.upload_folder_id,
            max_file_size: o.max_file_size,
            allowed_extensions: o.allowed_extensions,
            created_by: f.created_by,
            created_at: f.created_at.map(ts),
            expires_at: o
                .expires_at
                .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| ts(t.with_timezone(&Utc))),
            last_access_at: f.last_access_at.map(ts),
        }
    }

    /// A link from its aggregate, its status as of `now` (history shows past
    /// states), never its password hash; URLs start at `base`.
    pub fn of(l: &LinkState, opened: Option<Opened>, base: &str, now: DateTime<Utc>) -> Self {
        let mut options = serde_json::to_value(&l.options).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut options {
            m.remove("password_hash");
        }
        let facts = Facts {
            id: l.id.map(|i| i.to_string()).unwrap_or_default(),
            tenant_id: l.tenant_id.map(|i| i.to_string()).unwrap_or_default(),
            share_id: l.share_id.map(|i| i.to_string()).unwrap_or_default(),
            resource_type: l
                .resource_type
                .map(|r| r.as_str())
                .unwrap_or_default()
                .to_owned(),
            resource_id: l.resource_id.clone(),
            link_type: l
                .link_type
                .map(|t| t.as_str())
                .unwrap_or_default()
                .to_owned(),
            status: l.status(now),
            password_required: l.password_required(),
            download_count: l.download_count as i64,
            view_count: l.view_count as i64,
            created_by: l.created_by.map(|u| u.to_string()).unwrap_or_default(),
            created_at: l.created_at,
            last_access_at: None,
        };
        Self::build(facts, options, opened, base)
    }

    /// A link from its read-model row, its status as of `now`.
    pub fn of_row(r: &LinkRow, opened: Opened, base: &str, now: DateTime<Utc>) -> Self {
        let status = if r.revoked {
            "revoked"
        } else if r.disabled {
            "disabled"
        } else if r.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        let facts = Facts {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            share_id: r.share_id.clone(),
            resource_type: r.resource_type.clone(),
            resource_id: r.resource_id.clone(),
            link_type: r.link_type.clone(),
            status,
            password_required: r.options.0["password_required"].as_bool().unwrap_or(false),
            download_count: r.download_count,
            view_count: r.view_count,
            created_by: r.created_by.clone(),
            created_at: Some(r.created_at),
            last_access_at: r.last_access_at,
        };
        Self::build(facts, r.options.0.clone(), Some(opened), base)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    pub links: Vec<Link>,
    pub total: i64,
}

/// One recipient attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkSession {
    pub id: String,
    pub action: String,
    pub outcome: String,
    pub allowed: bool,
    /// The HTTP status the attempt was answered with.
    pub status: u16,
    pub ip: Option<String>,
    pub email: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Timestamp)]
    pub at: String,
    pub position: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkSessionList {
    pub sessions: Vec<LinkSession>,
    pub total: usize,
}

// ------------------------------------------------------------ recipients

/// What a recipient sees before unlocking.
#[derive(Debug, Serialize, ToSchema)]
pub struct Landing {
    pub id: String,
    pub name: String,
    #[schema(value_type = Option<LinkTypeDoc>)]
    pub link_type: Option<&'static str>,
    #[serde(rename = "type")]
    #[schema(value_type = Option<LinkTypeDoc>)]
    pub kind: Option<&'static str>,
    #[schema(value_type = Option<ResourceTypeDoc>)]
    pub resource_type: Option<&'static str>,
    pub size: Option<i64>,
    pub mime_type: Option<String>,
    pub password_required: bool,
    pub require_email: bool,
    pub custom_message: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub expires_at: Option<String>,
    pub allow_preview: bool,
    pub show_download_button: bool,
    pub max_file_size: Option<u64>,
    pub allowed_extensions: Vec<String>,
    pub unlocked: bool,
    #[schema(value_type = LinkStatus)]
    pub status: &'static str,
    /// The link's token (short-code resolution only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub token: Option<String>,
}

/// What the linked item is called and holds, for its landing.
#[derive(Debug, Default)]
pub struct Linked {
    pub name: String,
    pub size: Option<i64>,
    pub mime_type: Option<String>,
}

impl Landing {
    /// The landing of `l` (id `id`), as a caller presenting `credential`
    /// sees it at `now`; the token is added for short-code resolution.
    pub fn of(
        id: String,
        l: &LinkState,
        credential: &Credential,
        item: Linked,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            name: l.options.custom_name.clone().unwrap_or(item.name),
            link_type: l.link_type.map(|t| t.as_str()),
            kind: l.link_type.map(|t| t.as_str()),
            resource_type: l.resource_type.map(|r| r.as_str()),
            size: item.size,
            mime_type: item.mime_type,
            password_required: l.password_required(),
            require_email: l.options.require_email,
            custom_message: l.options.custom_message.clone(),
            expires_at: l.options.expires_at.map(ts),
            allow_preview: l.options.allow_preview,
            show_download_button: l.options.show_download_button,
            max_file_size: l.options.max_file_size,
            allowed_extensions: l.options.allowed_extensions.clone(),
            unlocked: matches!(credential, Credential::AccessToken { .. }) || !l.needs_unlock(),
            status: l.status(now),
            token: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmailCodeSent {
    pub sent: bool,
    pub email: String,
    /// Seconds the code stays valid.
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkAccess {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicListing {
    pub items: Vec<Entry>,
    pub total: i64,
    pub folder_id: Option<String>,
    /// Relative to the linked folder.
    pub path: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DroppedFile {
    pub id: String,
    pub name: String,
    /// The name was taken; a free one was chosen.
    pub renamed: bool,
    pub size: u64,
    pub checksum_sha256: String,
}
