//! The notification outbox: projections queue messages inside their own
//! transaction (so a message exists exactly when the event that caused it
//! has been applied), and a sender in the service drains the table.

use chrono::{DateTime, Utc};

use crate::db::{Db, Tx};
use crate::{db_fetch_all, tx_execute};

/// A message to send.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Unique per message; replays and rebuilds keep it (e.g. `{event_id}:{recipient}`).
    pub id: String,
    pub tenant_id: Option<&'a str>,
    /// What it is for: `invitation`, `link-email-code`, `quota-warning`, ...
    pub kind: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub source_event_id: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// Queues a message in the caller's transaction; a second enqueue with the
/// same id (a replay) is a no-op.
pub async fn enqueue(tx: &mut Tx, m: &Message<'_>) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO notification_outbox (id, tenant_id, kind, recipient, subject, body, source_event_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        m.id.clone(),
        m.tenant_id.map(str::to_owned),
        m.kind.to_owned(),
        m.recipient.to_owned(),
        m.subject.to_owned(),
        m.body.to_owned(),
        m.source_event_id.map(str::to_owned),
        m.at
    )?;
    Ok(())
}

/// A queued message as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub tenant_id: Option<String>,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub source_event_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub sent_at: Option<DateTime<Utc>>,
}

const COLS: &str =
    "id, tenant_id, kind, recipient, subject, body, source_event_id, created_at, attempts, sent_at";

/// The oldest unsent messages.
pub async fn pending(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        OutboxRow,
        &format!("SELECT {COLS} FROM notification_outbox WHERE sent_at IS NULL AND attempts < 10 ORDER BY created_at, id LIMIT $1"),
        limit
    )
}

/// Messages to one recipient, newest first (tests and operators read these).
pub async fn to_recipient(db: &Db, recipient: &str) -> Result<Vec<OutboxRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        OutboxRow,
        &format!("SELECT {COLS} FROM notification_outbox WHERE lower(recipient) = lower($1) ORDER BY created_at DESC, id DESC"),
        recipient.to_owned()
    )
}

/// Marks a message sent, or counts a failed attempt.
pub async fn mark(
    db: &Db,
    id: &str,
    error: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    match error {
        None => tx_execute!(
            &mut tx,
            "UPDATE notification_outbox SET sent_at = $2, attempts = attempts + 1 WHERE id = $1",
            id.to_owned(),
            at
        )?,
        Some(e) => tx_execute!(
            &mut tx,
            "UPDATE notification_outbox SET last_error = $2, attempts = attempts + 1 WHERE id = $1",
            id.to_owned(),
            e.to_owned()
        )?,
    };
    tx.commit().await
}
