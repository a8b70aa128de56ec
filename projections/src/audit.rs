//! The audit view: each event classified (category, `share.member_added`-style
//! action, severity) with actor, origin and resource.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::access_log::AccessLogEvent;
use scaidrive_domain::{AnyEvent, DecodedEvent};
use serde_json::Value;
use sqlx::types::Json;

use crate::db::{Db, Tx};
use crate::projection::{Projection, ProjectionError};
use crate::{db_fetch_all, tx_insert_rows};

/// How an event type reads in the audit log.
pub struct Classification {
    pub category: &'static str,
    pub action: String,
    pub severity: &'static str,
    pub resource_type: &'static str,
}

/// Maps an event type onto its audit category, action and severity.
pub fn classify(event_type: &str) -> Classification {
    let (resource_type, verb) = event_type
        .split_once('-')
        .unwrap_or((event_type, "changed"));
    let verb = verb.replace('-', "_");
    let action = format!("{resource_type}.{verb}");
    let (category, severity) = match (resource_type, verb.as_str()) {
        ("partner" | "tenant", _) => ("ADMIN", "info"),
        ("user", "status_changed" | "admin_role_changed") => ("SECURITY", "warning"),
        ("user", "provisioned") => ("AUTHENTICATION", "info"),
        ("user", _) => ("ADMIN", "info"),
        (_, "purged") => ("FILE_MODIFICATION", "warning"),
        ("share", "deleted") => ("SHARING", "warning"),
        ("share", _) => ("SHARING", "info"),
        // External links: recipient access is FILE_ACCESS; refusals are
        // recorded in the event's data (outcome), owner changes are SHARING.
        ("link", "accessed" | "download_counted" | "view_counted") => ("FILE_ACCESS", "info"),
        ("link", "email_code_issued") => ("AUTHENTICATION", "info"),
        ("link", "revoked" | "regenerated") => ("SHARING", "warning"),
        ("link" | "member" | "invitation" | "acl", _) => ("SHARING", "info"),
        ("file" | "folder", "ownership_transferred") => ("SHARING", "info"),
        ("file" | "folder" | "upload", _) => ("FILE_MODIFICATION", "info"),
        // Quotas: settings are administration; crossed thresholds and grace
        // overruns are flagged.
        ("quota", "warning_reached" | "grace_started") => ("COMPLIANCE", "warning"),
        ("quota", "limit_set" | "limit_removed" | "exemption_changed") => ("ADMIN", "info"),
        ("quota", _) => ("COMPLIANCE", "info"),
        // Groups: membership decides access, so its changes are security events.
        ("group", "member_added" | "member_removed") => ("SECURITY", "warning"),
        ("group", _) => ("ADMIN", "info"),
        // Sync: devices and their cursors, versions written by devices, conflicts.
        ("device" | "sync", _) => ("FILE_ACCESS", "info"),
        ("conflict", "detected") => ("FILE_MODIFICATION", "warning"),
        ("conflict", _) => ("FILE_MODIFICATION", "info"),
        // Outbound webhooks: configuration is ADMIN; a lost delivery is SECURITY.
        ("webhook", "delivery_dropped") => ("SECURITY", "warning"),
        ("webhook", _) => ("ADMIN", "info"),
        // Connectors: configuration is ADMIN; a failed run is flagged.
        ("connector", "sync_failed") => ("ADMIN", "warning"),
        ("connector", _) => ("ADMIN", "info"),
        // Mail: a message given up after its last attempt never reached its
        // recipient (an invitation, a one-time code, a warning).
        ("notification", "dead_lettered") => ("SECURITY", "warning"),
        // The Merkle log: a witness's alarm (fork, rollback) is critical.
        ("log", "witness_alarm") => ("SECURITY", "critical"),
        ("log", _) => ("COMPLIANCE", "info"),
        // The access log: refused permissions and signed-in content reads.
        ("access", "denied") => ("AUTHORIZATION", "warning"),
        ("access", _) => ("FILE_ACCESS", "info"),
        _ => ("ADMIN", "info"),
    };
    // Reads read as actions on the file (`file.downloaded`), though their
    // type names keep them out of the `file-` events the drive models apply.
    let action = match (resource_type, verb.strip_prefix("file_")) {
        ("access", Some(read)) => format!("file.{read}"),
        _ => action,
    };
    let resource_type = match resource_type {
        "partner" => "partner",
        "tenant" => "tenant",
        "user" => "user",
        "share" => "share",
        "folder" => "folder",
        "file" => "file",
        "upload" => "upload",
        "group" => "group",
        // Sync.
        "device" | "sync" => "device",
        "conflict" => "conflict",
        "link" => "link",
        "quota" => "quota",
        // Outbound webhooks.
        "webhook" => "webhook",
        "connector" => "connector",
        "notification" => "notification",
        // The access log names its resource in the data (see `resource_of`).
        "access" if verb != "denied" => "file",
        _ => "other",
    };
    Classification {
        category,
        action,
        severity,
        resource_type,
    }
}

/// The resource an audit entry is about: the event's stream, except for the
/// access log, whose stream is the caller's and whose data names the
/// resource (`resource_type`/`resource_id` of a refusal, `file_id` of a read).
pub fn resource_of(e: &DecodedEvent, c: &Classification) -> (String, String) {
    match &e.event {
        AnyEvent::AccessLog(AccessLogEvent::AccessDenied {
            resource_type,
            resource_id,
            ..
        }) => return (resource_type.clone(), resource_id.clone()),
        AnyEvent::AccessLog(
            AccessLogEvent::AccessFileDownloaded(read) | AccessLogEvent::AccessFilePreviewed(read),
        ) => return (c.resource_type.to_owned(), read.file_id.to_string()),
        _ => {}
    }
    // An entry the access log wrote in a shape this build does not decode:
    // the names it gives, as they are.
    if matches!(e.event, AnyEvent::Undecodable(_)) && e.event_type.starts_with("access-") {
        let text = |k: &str| e.data.get(k).and_then(Value::as_str).map(str::to_owned);
        let id = text("resource_id").or_else(|| text("file_id"));
        if let Some(id) = id {
            let ty = text("resource_type").unwrap_or_else(|| c.resource_type.to_owned());
            return (ty, id);
        }
    }
    (c.resource_type.to_owned(), e.stream_id.clone())
}

/// Folds every event into `rm_audit`.
pub struct AuditProjection;

#[async_trait]
impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn version(&self) -> i32 {
        2
    }

    fn handles(&self, _event_type: &str) -> bool {
        true
    }

    async fn apply(&self, tx: &mut Tx, e: &DecodedEvent) -> Result<(), ProjectionError> {
        insert(tx, std::slice::from_ref(e)).await
    }

    /// One multi-row `INSERT` per [`ROWS_PER_INSERT`] events.
    async fn apply_all(&self, tx: &mut Tx, events: &[DecodedEvent]) -> Result<(), ProjectionError> {
        for chunk in events.chunks(ROWS_PER_INSERT) {
            insert(tx, chunk).await?;
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_audit"]
    }
}

/// One audit entry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub position: i64,
    pub commit_id: i64,
    pub event_id: String,
    pub tenant_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub category: String,
    pub action: String,
    pub severity: String,
    pub event_type: String,
    pub user_id: Option<String>,
    pub service_account: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: String,
    pub details: Json<Value>,
}

/// The JSON of one audit entry, as `GET /audit/events` lists it and as
/// outbound webhooks POST it.
pub fn entry_json(r: &AuditRow) -> Value {
    serde_json::json!({
        "id": r.event_id,
        "event_id": r.event_id,
        "position": r.position,
        "timestamp": r.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "category": r.category,
        "action": r.action,
        "severity": r.severity,
        "event_type": r.event_type,
        "user_id": r.user_id,
        "service_account": r.service_account,
        "ip_address": r.ip,
        "user_agent": r.user_agent,
        "resource_type": r.resource_type,
        "resource_id": r.resource_id,
        // Rows written before sealing existed may hold a secret in the clear.
        "details": scaidrive_domain::secret::outward(&r.event_type, &r.details.0),
    })
}

/// The audit entry of an event, built the way [`AuditProjection`] stores it.
pub fn row_of(e: &DecodedEvent) -> AuditRow {
    let c = classify(&e.event_type);
    let (resource_type, resource_id) = resource_of(e, &c);
    let a = &e.metadata.actor;
    AuditRow {
        position: e.log.position,
        commit_id: e.log.commit,
        event_id: scaidrive_domain::id::EventId::from_uuid(e.event_id).to_string(),
        tenant_id: e.tenant_id.clone(),
        occurred_at: e.metadata.occurred_at,
        category: c.category.to_owned(),
        action: c.action,
        severity: c.severity.to_owned(),
        event_type: e.event_type.clone(),
        user_id: a.user_id.clone(),
        service_account: a.service_account.clone(),
        ip: a.ip.clone(),
        user_agent: a.user_agent.clone(),
        resource_type: Some(resource_type),
        resource_id,
        details: Json(scaidrive_domain::secret::outward(&e.event_type, &e.data)),
    }
}

/// Filters of `GET /audit/events`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub category: Option<String>,
    pub action: Option<String>,
    pub user_id: Option<String>,
    pub resource_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Free text, matched against action, resource and event type.
    pub q: Option<String>,
}

/// A page of a tenant's audit entries in log order, after `(commit, position)`.
pub async fn page(
    db: &Db,
    tenant_id: &str,
    f: &AuditFilter,
    after: (i64, i64),
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let q =
        f.q.as_ref()
            .map(|q| format!("%{}%", q.to_lowercase().replace(['%', '_'], "")));
    db_fetch_all!(
        db,
        AuditRow,
        "SELECT position, commit_id, event_id, tenant_id, occurred_at, category, action, severity, event_type, user_id, \
         service_account, ip, user_agent, resource_type, resource_id, details FROM rm_audit \
         WHERE tenant_id = $1 AND (commit_id > $2 OR (commit_id = $2 AND position > $3)) \
         AND ($4 IS NULL OR category = $4) AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR user_id = $6) \
         AND ($7 IS NULL OR resource_id = $7) AND ($8 IS NULL OR occurred_at >= $8) AND ($9 IS NULL OR occurred_at <= $9) \
         AND ($10 IS NULL OR lower(action) LIKE $10 OR lower(resource_id) LIKE $10 OR lower(event_type) LIKE $10) \
         ORDER BY commit_id, position LIMIT $11",
        tenant_id,
        after.0,
        after.1,
        &f.category,
        &f.action,
        &f.user_id,
        &f.resource_id,
        f.from,
        f.to,
        q,
        limit
    )
}

/// Rows per audit `INSERT`: 16 parameters each stays far below either
/// backend's limit on bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// Inserts the audit rows of `events` in one statement.
async fn insert(tx: &mut Tx, events: &[DecodedEvent]) -> Result<(), ProjectionError> {
    const HEAD: &str = "INSERT INTO rm_audit (position, commit_id, event_id, tenant_id, occurred_at, category, action, severity, event_type, \
         user_id, service_account, ip, user_agent, resource_type, resource_id, details) ";
    tx_insert_rows!(
        tx,
        HEAD,
        events,
        |mut row, e: &DecodedEvent| {
            let c = classify(&e.event_type);
            let (resource_type, resource_id) = resource_of(e, &c);
            let a = &e.metadata.actor;
            row.push_bind(e.log.position)
                .push_bind(e.log.commit)
                .push_bind(scaidrive_domain::id::EventId::from_uuid(e.event_id).to_string())
                .push_bind(e.tenant_id.clone())
                .push_bind(e.metadata.occurred_at)
                .push_bind(c.category)
                .push_bind(c.action)
                .push_bind(c.severity)
                .push_bind(e.event_type.clone())
                .push_bind(a.user_id.clone())
                .push_bind(a.service_account.clone())
                .push_bind(a.ip.clone())
                .push_bind(a.user_agent.clone())
                .push_bind(resource_type)
                .push_bind(resource_id)
                .push_bind(Json(scaidrive_domain::secret::outward(
                    &e.event_type,
                    &e.data,
                )));
        },
        " ON CONFLICT (position) DO NOTHING"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn event_types_read_as_dotted_actions() {
        let c = classify("share-created");
        assert_eq!(
            (c.category, c.action.as_str(), c.severity),
            ("SHARING", "share.created", "info")
        );
        let c = classify("user-status-changed");
        assert_eq!(
            (c.category, c.action.as_str(), c.severity),
            ("SECURITY", "user.status_changed", "warning")
        );
        let c = classify("file-purged");
        assert_eq!((c.category, c.severity), ("FILE_MODIFICATION", "warning"));
        assert_eq!(classify("file-version-added").action, "file.version_added");
        let c = classify("folder-ownership-transferred");
        assert_eq!(
            (c.category, c.action.as_str(), c.resource_type),
            ("SHARING", "folder.ownership_transferred", "folder")
        );
        let c = classify("group-member-added");
        assert_eq!(
            (c.category, c.action.as_str(), c.severity, c.resource_type),
            ("SECURITY", "group.member_added", "warning", "group")
        );
        let c = classify("group-created");
        assert_eq!((c.category, c.resource_type), ("ADMIN", "group"));
        let c = classify("notification-dead-lettered");
        assert_eq!(
            (c.category, c.action.as_str(), c.severity, c.resource_type),
            (
                "SECURITY",
                "notification.dead_lettered",
                "warning",
                "notification"
            )
        );
    }

    #[test]
    fn the_access_log_reads_as_authorization_and_file_access() {
        let c = classify("access-denied");
        assert_eq!(
            (c.category, c.action.as_str(), c.severity),
            ("AUTHORIZATION", "access.denied", "warning")
        );
        let c = classify("access-file-downloaded");
        assert_eq!(
            (c.category, c.action.as_str(), c.severity, c.resource_type),
            ("FILE_ACCESS", "file.downloaded", "info", "file")
        );
        assert_eq!(classify("access-file-previewed").action, "file.previewed");
    }

    #[test]
    fn access_log_entries_are_about_the_resource_not_the_callers_stream() {
        let mut e = scaidrive_domain::RecordedEvent {
            log: Default::default(),
            stream_id: "access-log:usr_x".into(),
            stream_version: 1,
            event_id: uuid::Uuid::nil(),
            event_type: "access-denied".into(),
            schema_version: 1,
            tenant_id: None,
            data: serde_json::json!({"resource_type": "folder", "resource_id": "fld_y",
                "permission": "WRITE", "method": "PUT", "route": "/api/v1/folders/{id}"}),
            metadata: scaidrive_domain::EventMetadata {
                occurred_at: chrono::Utc::now(),
                actor: Default::default(),
                correlation_id: None,
                causation_id: None,
            },
            recorded_at: chrono::Utc::now(),
            hash: String::new(),
        };
        let row = super::row_of(&scaidrive_domain::DecodedEvent::new(e.clone()));
        assert_eq!(row.resource_type.as_deref(), Some("folder"));
        assert_eq!(row.resource_id, "fld_y");
        e.event_type = "access-file-downloaded".into();
        // Not a whole payload: the names it gives are used as they are.
        e.data = serde_json::json!({"file_id": "fil_z", "version": 1});
        let row = super::row_of(&scaidrive_domain::DecodedEvent::new(e));
        assert_eq!(
            (row.resource_type.as_deref(), row.resource_id.as_str()),
            (Some("file"), "fil_z")
        );
        assert_eq!(row.category, "FILE_ACCESS");
    }
}
