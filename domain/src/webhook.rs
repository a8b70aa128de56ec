//! The Webhook aggregate: a tenant's outbound subscription to its audit
//! events (SPEC §4.10). Deliveries themselves are not events; only a dropped
//! delivery is, because losing one is a security-relevant fact.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{TenantId, WebhookId};

/// Longest name (characters), URL and secret (bytes).
pub const MAX_NAME: usize = 255;
pub const MAX_URL: usize = 2048;
pub const MIN_SECRET: usize = 8;
pub const MAX_SECRET: usize = 512;
/// Most custom headers one webhook may send.
pub const MAX_HEADERS: usize = 20;

/// The audit categories a webhook may subscribe to.
pub const CATEGORIES: [&str; 8] = [
    "AUTHENTICATION",
    "AUTHORIZATION",
    "FILE_ACCESS",
    "FILE_MODIFICATION",
    "SHARING",
    "ADMIN",
    "SECURITY",
    "COMPLIANCE",
];

/// Delays before the retries of a failed delivery; after the last one fails
/// the delivery is dropped.
pub const RETRY_SCHEDULE_SECS: [u64; 7] = [30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600];

/// Headers the service sets itself; a webhook may not override them.
const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "x-scaidrive-event",
    "x-scaidrive-delivery-id",
    "x-scaidrive-signature",
];

/// Whether a webhook delivers or holds its queue.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    #[default]
    Active,
    Paused,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Paused => "paused",
        }
    }
}

/// A name after trimming: 1–255 characters, no control characters.
pub fn checked_name(name: &str) -> Result<String, DomainError> {
    let t = name.trim();
    let n = t.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(DomainError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

/// An absolute `http://` or `https://` URL with a host.
pub fn checked_url(url: &str) -> Result<String, DomainError> {
    let u = url.trim();
    let bad = |m: &str| Err(DomainError::invalid("url", m.to_owned()));
    if u.is_empty() || u.len() > MAX_URL {
        return bad(&format!("must be 1 to {MAX_URL} characters"));
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    let lower = u.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if let Some(r) = lower.strip_prefix("http://") {
        r
    } else {
        return bad("must be an http:// or https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return bad("must name a host");
    }
    Ok(u.to_owned())
}

/// Known categories, upper-cased, without duplicates (empty = every category).
pub fn checked_categories(categories: &[String]) -> Result<Vec<String>, DomainError> {
    let mut out: Vec<String> = Vec::new();
    for c in categories {
        let c = c.trim().to_ascii_uppercase();
        if !CATEGORIES.contains(&c.as_str()) {
            return Err(DomainError::invalid(
                "categories",
                format!("unknown category '{c}' (one of {})", CATEGORIES.join(", ")),
            ));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// A secret of 8–512 bytes. A sealed secret passes: its plaintext was
/// checked with this function before it was sealed.
pub fn checked_secret(secret: &str) -> Result<(), DomainError> {
    if crate::secret::is_protected(secret) {
        return Ok(());
    }
    if secret.len() < MIN_SECRET || secret.len() > MAX_SECRET {
        return Err(DomainError::invalid(
            "secret",
            format!("must be {MIN_SECRET} to {MAX_SECRET} bytes"),
        ));
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Custom headers: valid names that are not the service's own, printable values.
pub fn checked_headers(
    headers: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, DomainError> {
    if headers.len() > MAX_HEADERS {
        return Err(DomainError::invalid(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    for (k, v) in headers {
        if k.is_empty() || k.len() > 128 || !k.chars().all(is_token_char) {
            return Err(DomainError::invalid(
                "headers",
                format!("'{k}' is not a valid header name"),
            ));
        }
        if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(DomainError::invalid(
                "headers",
                format!("'{k}' is set by the service and cannot be overridden"),
            ));
        }
        if v.len() > 4096 || v.chars().any(|c| c.is_control() || !c.is_ascii()) {
            return Err(DomainError::invalid(
                "headers",
                format!("the value of '{k}' must be printable ASCII (at most 4096 bytes)"),
            ));
        }
    }
    Ok(headers.clone())
}

#[derive(Debug, Clone, Default)]
pub struct Webhook {
    pub id: Option<WebhookId>,
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub url: String,
    pub categories: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub status: WebhookStatus,
    pub deleted: bool,
}

impl Webhook {
    /// Exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }

    fn live(&self) -> Result<(), DomainError> {
        if self.is_live() {
            Ok(())
        } else {
            Err(DomainError::NotFound("webhook"))
        }
    }
}

#[derive(Debug, Clone)]
pub enum WebhookCommand {
    Create {
        webhook_id: WebhookId,
        tenant_id: TenantId,
        name: String,
        url: String,
        categories: Vec<String>,
        secret: String,
        headers: BTreeMap<String, String>,
        status: WebhookStatus,
        at: DateTime<Utc>,
    },
    /// `None` leaves a field as it is.
    Update {
        name: Option<String>,
        url: Option<String>,
        categories: Option<Vec<String>>,
        secret: Option<String>,
        headers: Option<BTreeMap<String, String>>,
        status: Option<WebhookStatus>,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
    /// Records that a delivery was given up (also after the webhook is gone:
    /// the fact stays true).
    RecordDrop {
        delivery_id: String,
        event_id: String,
        action: String,
        attempts: i64,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum WebhookEvent {
    /// `secret` is sealed under the server key (see `secret`).
    WebhookCreated {
        webhook_id: WebhookId,
        tenant_id: TenantId,
        name: String,
        url: String,
        categories: Vec<String>,
        secret: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        status: WebhookStatus,
        at: DateTime<Utc>,
    },
    /// Carries the new values of the fields that changed; absent = unchanged.
    WebhookUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        categories: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        headers: Option<BTreeMap<String, String>>,
        at: DateTime<Utc>,
    },
    WebhookPaused {
        at: DateTime<Utc>,
    },
    WebhookResumed {
        at: DateTime<Utc>,
    },
    WebhookDeleted {
        at: DateTime<Utc>,
    },
    WebhookDeliveryDropped {
        delivery_id: String,
        event_id: String,
        action: String,
        attempts: i64,
        reason: String,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for WebhookEvent {}

impl Aggregate for Webhook {
    type Command = WebhookCommand;
    type Event = WebhookEvent;

    fn decide(&self, command: &WebhookCommand) -> Result<Vec<WebhookEvent>, DomainError> {
        match command {
            WebhookCommand::Create {
                webhook_id,
                tenant_id,
                name,
                url,
                categories,
                secret,
                headers,
                status,
                at,
            } => {
                if self.id.is_some() {
                    return Err(DomainError::AlreadyExists(
                        "the webhook already exists".into(),
                    ));
                }
                let name = checked_name(name)?;
                let url = checked_url(url)?;
                let categories = checked_categories(categories)?;
                checked_secret(secret)?;
                let headers = checked_headers(headers)?;
                Ok(vec![WebhookEvent::WebhookCreated {
                    webhook_id: *webhook_id,
                    tenant_id: *tenant_id,
                    name,
                    url,
                    categories,
                    secret: secret.clone(),
                    headers,
                    status: *status,
                    at: *at,
                }])
            }
            WebhookCommand::Update {
                name,
                url,
                categories,
                secret,
                headers,
                status,
                at,
            } => {
                self.live()?;
                let name = name
                    .as_deref()
                    .map(checked_name)
                    .transpose()?
                    .filter(|n| *n != self.name);
                let url = url
                    .as_deref()
                    .map(checked_url)
                    .transpose()?
                    .filter(|u| *u != self.url);
                let categories = categories
                    .as_deref()
                    .map(checked_categories)
                    .transpose()?
                    .filter(|c| *c != self.categories);
                if let Some(s) = secret {
                    checked_secret(s)?;
                }
                let headers = headers
                    .as_ref()
                    .map(checked_headers)
                    .transpose()?
                    .filter(|h| *h != self.headers);
                let mut events = Vec::new();
                if name.is_some()
                    || url.is_some()
                    || categories.is_some()
                    || secret.is_some()
                    || headers.is_some()
                {
                    events.push(WebhookEvent::WebhookUpdated {
                        name,
                        url,
                        categories,
                        secret: secret.clone(),
                        headers,
                        at: *at,
                    });
                }
                match status {
                    Some(WebhookStatus::Paused) if self.status == WebhookStatus::Active => {
                        events.push(WebhookEvent::WebhookPaused { at: *at })
                    }
                    Some(WebhookStatus::Active) if self.status == WebhookStatus::Paused => {
                        events.push(WebhookEvent::WebhookResumed { at: *at })
                    }
                    _ => {}
                }
                Ok(events)
            }
            WebhookCommand::Delete { at } => {
                self.live()?;
                Ok(vec![WebhookEvent::WebhookDeleted { at: *at }])
            }
            WebhookCommand::RecordDrop {
                delivery_id,
                event_id,
                action,
                attempts,
                reason,
                at,
            } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("webhook"));
                }
                Ok(vec![WebhookEvent::WebhookDeliveryDropped {
                    delivery_id: delivery_id.clone(),
                    event_id: event_id.clone(),
                    action: action.clone(),
                    attempts: *attempts,
                    reason: reason.clone(),
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &WebhookEvent) {
        match event {
            WebhookEvent::WebhookCreated {
                webhook_id,
                tenant_id,
                name,
                url,
                categories,
                headers,
                status,
                ..
            } => {
                self.id = Some(*webhook_id);
                self.tenant_id = Some(*tenant_id);
                self.name = name.clone();
                self.url = url.clone();
                self.categories = categories.clone();
                self.headers = headers.clone();
                self.status = *status;
            }
            WebhookEvent::WebhookUpdated {
                name,
                url,
                categories,
                headers,
                ..
            } => {
                if let Some(n) = name {
                    self.name = n.clone();
                }
                if let Some(u) = url {
                    self.url = u.clone();
                }
                if let Some(c) = categories {
                    self.categories = c.clone();
                }
                if let Some(h) = headers {
                    self.headers = h.clone();
                }
            }
            WebhookEvent::WebhookPaused { .. } => self.status = WebhookStatus::Paused,
            WebhookEvent::WebhookResumed { .. } => self.status = WebhookStatus::Active,
            WebhookEvent::WebhookDeleted { .. } => self.deleted = true,
            WebhookEvent::WebhookDeliveryDropped { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(checked_url("https://example.com/hook").is_ok());
        assert!(checked_url("http://127.0.0.1:8080/x?y=1").is_ok());
        assert!(checked_url("http://[::1]:9/x").is_ok());
        for bad in [
            "ftp://example.com",
            "example.com",
            "https://",
            "https:///x",
            "http://a b",
        ] {
            assert!(checked_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn categories_are_known_and_deduplicated() {
        let c = checked_categories(&["sharing".into(), "SHARING".into(), "ADMIN".into()]);
        assert_eq!(c, Ok(vec!["SHARING".to_owned(), "ADMIN".to_owned()]));
        assert!(checked_categories(&["NOPE".into()]).is_err());
    }

    #[test]
    fn reserved_headers_are_refused() {
        let mut h = BTreeMap::new();
        h.insert("X-ScaiDrive-Signature".to_owned(), "x".to_owned());
        assert!(checked_headers(&h).is_err());
        let mut h = BTreeMap::new();
        h.insert("X-Team".to_owned(), "blue".to_owned());
        assert!(checked_headers(&h).is_ok());
    }

    #[test]
    fn status_changes_become_pause_and_resume_events() {
        let at = Utc::now();
        let mut w = Webhook::default();
        let created = w
            .decide(&WebhookCommand::Create {
                webhook_id: WebhookId::from_uuid(uuid::Uuid::now_v7()),
                tenant_id: TenantId::from_uuid(uuid::Uuid::now_v7()),
                name: "n".into(),
                url: "https://x.test/h".into(),
                categories: vec![],
                secret: "0123456789".into(),
                headers: BTreeMap::new(),
                status: WebhookStatus::Active,
                at,
            })
            .unwrap_or_default();
        for e in &created {
            w.evolve(e);
        }
        let update = |status| WebhookCommand::Update {
            name: None,
            url: None,
            categories: None,
            secret: None,
            headers: None,
            status: Some(status),
            at,
        };
        assert_eq!(
            w.decide(&update(WebhookStatus::Paused)),
            Ok(vec![WebhookEvent::WebhookPaused { at }])
        );
        assert_eq!(w.decide(&update(WebhookStatus::Active)), Ok(vec![]));
        w.evolve(&WebhookEvent::WebhookDeleted { at });
        assert_eq!(
            w.decide(&WebhookCommand::Delete { at }),
            Err(DomainError::NotFound("webhook"))
        );
    }
}
