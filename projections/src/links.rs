//! External links as rows (`rm_links`) for the owner's list and its filters,
//! and the queries over them. Recipient access decides on the link's stream,
//! never on this table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::link::{AccessAction, AccessOutcome, LinkEvent};
use scaidrive_domain::{AnyEvent, DecodedEvent};
use serde_json::Value;
use sqlx::types::Json;

use crate::db::{Db, Tx};
use crate::projection::{typed, Projection, ProjectionError};
use crate::{db_fetch_all, db_fetch_scalar, tx_execute, tx_fetch_optional};

/// Folds `link-*` events into `rm_links`.
pub struct LinksProjection;

#[async_trait]
impl Projection for LinksProjection {
    fn name(&self) -> &'static str {
        "links"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, t: &str) -> bool {
        t.starts_with("link-")
    }

    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let AnyEvent::Link(e) = typed(event)? else {
            return Ok(());
        };
        match e.clone() {
            LinkEvent::LinkCreated {
                link_id,
                tenant_id,
                share_id,
                resource_type,
                resource_id,
                link_type,
                token,
                short_code,
                options,
                by,
                at,
            } => {
                tx_execute!(
                    tx,
                    "INSERT INTO rm_links (id, tenant_id, share_id, resource_type, resource_id, link_type, token, short_code, \
                     expires_at, options, created_by, created_at, modified_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) ON CONFLICT (id) DO NOTHING",
                    link_id.to_string(),
                    tenant_id.to_string(),
                    share_id.to_string(),
                    resource_type.as_str(),
                    resource_id,
                    link_type.as_str(),
                    token,
                    short_code,
                    options.expires_at,
                    Json(stored_options(&options)),
                    by.to_string(),
                    at
                )?;
            }
            LinkEvent::LinkUpdated {
                link_id,
                options,
                at,
                ..
            } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_links SET options = $2, expires_at = $3, modified_at = $4 WHERE id = $1",
                    link_id.to_string(),
                    Json(stored_options(&options)),
                    options.expires_at,
                    at
                )?;
            }
            LinkEvent::LinkDisabled { link_id, at, .. }
            | LinkEvent::LinkEnabled { link_id, at, .. } => {
                let disabled = event.event_type == "link-disabled";
                tx_execute!(
                    tx,
                    "UPDATE rm_links SET disabled = $2, modified_at = $3 WHERE id = $1",
                    link_id.to_string(),
                    disabled,
                    at
                )?;
            }
            LinkEvent::LinkRevoked { link_id, at, .. } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_links SET revoked = TRUE, modified_at = $2 WHERE id = $1",
                    link_id.to_string(),
                    at
                )?;
            }
            LinkEvent::LinkRegenerated {
                link_id,
                token,
                short_code,
                at,
                ..
            } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_links SET token = $2, short_code = $3, modified_at = $4 WHERE id = $1",
                    link_id.to_string(),
                    token,
                    short_code,
                    at
                )?;
            }
            LinkEvent::LinkAccessed {
                link_id,
                action,
                outcome,
                ip,
                email,
                at,
                ..
            } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_links SET last_access_at = $2 WHERE id = $1",
                    link_id.to_string(),
                    at
                )?;
                if outcome == AccessOutcome::Allowed {
                    notify_owner(tx, event, &link_id.to_string(), action, ip, email).await?;
                }
            }
            LinkEvent::LinkDownloadCounted { link_id, count, .. } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_links SET download_count = $2 WHERE id = $1",
                    link_id.to_string(),
                    count as i64
                )?;
            }
            LinkEvent::LinkViewCounted { link_id, count, .. } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_links SET view_count = $2 WHERE id = $1",
                    link_id.to_string(),
                    count as i64
                )?;
            }
            LinkEvent::LinkEmailCodeIssued { .. } => {}
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_links"]
    }
}

/// Queues the owner's notification for an allowed access, download or
/// upload when the link asks for one (in this transaction, so exactly once).
async fn notify_owner(
    tx: &mut Tx,
    event: &DecodedEvent,
    link_id: &str,
    action: AccessAction,
    ip: Option<String>,
    email: Option<String>,
) -> Result<(), sqlx::Error> {
    let Some((options,)) = tx_fetch_optional!(
        tx,
        (Json<Value>,),
        "SELECT options FROM rm_links WHERE id = $1",
        link_id
    )?
    else {
        return Ok(());
    };
    let o = &options.0;
    // Named by its custom name or id: the short code is a capability, sealed
    // in the log, and mail is no place for it.
    let name = o
        .get("custom_name")
        .and_then(Value::as_str)
        .map(|n| format!("\"{n}\""))
        .unwrap_or_else(|| link_id.to_owned());
    let flag = match action {
        AccessAction::Landing => "notify_on_access",
        AccessAction::Download => "notify_on_download",
        AccessAction::Upload => "notify_on_upload",
        _ => return Ok(()),
    };
    let (Some(true), Some(to)) = (
        o.get(flag).and_then(Value::as_bool),
        o.get("notification_email").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    let what = match action {
        AccessAction::Landing => "opened",
        AccessAction::Download => "downloaded from",
        _ => "uploaded to",
    };
    let who = email.unwrap_or_else(|| "someone".into());
    let from = ip.unwrap_or_else(|| "an unknown address".into());
    let subject = format!("Your link {name} was {what}");
    let body = format!(
        "{who} {what} your link {name} from {from} at {}.",
        event.metadata.occurred_at.to_rfc3339()
    );
    let event_id = scaidrive_domain::id::EventId::from_uuid(event.event_id).to_string();
    let link_path = format!("/api/v1/external/links/{link_id}");
    crate::outbox::enqueue(
        tx,
        &crate::outbox::Message {
            id: format!("{event_id}:{to}"),
            tenant_id: event.tenant_id.as_deref(),
            kind: "link-activity",
            recipient: to,
            subject: &subject,
            body: &body,
            link_path: Some(&link_path),
            source_event_id: Some(&event_id),
            at: event.metadata.occurred_at,
        },
    )
    .await
}

/// Options as kept in the read model: the password hash stays in the log.
fn stored_options(o: &scaidrive_domain::link::LinkOptions) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.remove("password_hash");
        map.insert(
            "password_required".into(),
            Value::Bool(o.password_hash.is_some()),
        );
    }
    v
}

/// One link as listed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkRow {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub link_type: String,
    /// As the log holds it: sealed under the server key (plaintext for links
    /// created before sealing).
    pub token: String,
    /// Sealed like `token`.
    pub short_code: String,
    pub revoked: bool,
    pub disabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub download_count: i64,
    pub view_count: i64,
    pub options: Json<Value>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub last_access_at: Option<DateTime<Utc>>,
}

/// Filters of `GET /external/links`.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    pub share_id: Option<String>,
    pub resource_id: Option<String>,
    /// `active`, `expired`, `revoked` or `disabled`.
    pub status: Option<String>,
    /// Only links these users created (`None` = any).
    pub created_by: Option<String>,
}

const COLS: &str = "id, tenant_id, share_id, resource_type, resource_id, link_type, token, short_code, revoked, disabled, \
    expires_at, download_count, view_count, options, created_by, created_at, modified_at, last_access_at";

const WHERE: &str = "tenant_id = $1 AND ($2 IS NULL OR share_id = $2) AND ($3 IS NULL OR resource_id = $3) \
    AND ($4 IS NULL OR created_by = $4) AND ($5 IS NULL \
      OR ($5 = 'revoked' AND revoked) \
      OR ($5 = 'disabled' AND NOT revoked AND disabled) \
      OR ($5 = 'expired' AND NOT revoked AND NOT disabled AND expires_at IS NOT NULL AND expires_at <= $6) \
      OR ($5 = 'active' AND NOT revoked AND NOT disabled AND (expires_at IS NULL OR expires_at > $6)))";

/// A page of a tenant's links, oldest first, and the total matching.
pub async fn list(
    db: &Db,
    tenant_id: &str,
    f: &LinkFilter,
    now: DateTime<Utc>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<LinkRow>, i64), sqlx::Error> {
    let sql = format!(
        "SELECT {COLS} FROM rm_links WHERE {WHERE} ORDER BY created_at, id LIMIT $7 OFFSET $8"
    );
    let rows = db_fetch_all!(
        db,
        LinkRow,
        &sql,
        tenant_id,
        &f.share_id,
        &f.resource_id,
        &f.created_by,
        &f.status,
        now,
        limit,
        offset
    )?;
    let count = format!("SELECT COUNT(*) FROM rm_links WHERE {WHERE}");
    let total = db_fetch_scalar!(
        db,
        i64,
        &count,
        tenant_id,
        &f.share_id,
        &f.resource_id,
        &f.created_by,
        &f.status,
        now
    )?;
    Ok((rows, total))
}
