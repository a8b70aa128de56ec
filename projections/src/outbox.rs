//! The notification outbox: projections queue messages inside their own
//! transaction (so a message exists exactly when the event that caused it
//! has been applied), and the mail sender in the service drains the table:
//! it claims a message, sends it, marks it sent, and on failure schedules a
//! retry or gives the message up (`dead`).

use chrono::{DateTime, Utc};

use crate::db::{Db, Tx};
use crate::{db_fetch_all, tx_execute};

/// A message to send.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Unique per message; replays and rebuilds keep it (e.g. `{event_id}:{recipient}`).
    pub id: String,
    pub tenant_id: Option<&'a str>,
    /// What it is for: `invitation`, `link-email-code`, `link-activity`,
    /// `quota-warning`, `member-added`; picks the mail template.
    pub kind: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    /// Plain text; the templates add a greeting, the link and a footer.
    pub body: &'a str,
    /// Path (below the public URL, e.g. `/api/v1/public/links/{token}`) the
    /// message's link points to.
    pub link_path: Option<&'a str>,
    pub source_event_id: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// Queues a message in the caller's transaction; a second enqueue with the
/// same id (a replay) is a no-op.
pub async fn enqueue(tx: &mut Tx, m: &Message<'_>) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO notification_outbox (id, tenant_id, kind, recipient, subject, body, link_path, source_event_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        m.id.clone(),
        m.tenant_id.map(str::to_owned),
        m.kind.to_owned(),
        m.recipient.to_owned(),
        m.subject.to_owned(),
        m.body.to_owned(),
        m.link_path.map(str::to_owned),
        m.source_event_id.map(str::to_owned),
        m.at
    )?;
    Ok(())
}

/// Where a message is in its delivery.
pub mod status {
    /// Waiting for its (next) attempt.
    pub const PENDING: &str = "pending";
    /// Claimed by a sender that is sending it now (or crashed doing so).
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    /// Given up: no further attempt is made.
    pub const DEAD: &str = "dead";
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
    pub link_path: Option<String>,
    pub source_event_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Attempts started (claims), the current one included.
    pub attempts: i32,
    pub status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
}

const COLS: &str =
    "id, tenant_id, kind, recipient, subject, body, link_path, source_event_id, created_at, \
     attempts, status, next_attempt_at, claimed_by, claimed_at, last_error, sent_at, dead_at";

/// Pending messages whose next attempt is due at `now`, oldest first.
pub async fn due(db: &Db, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        OutboxRow,
        &format!(
            "SELECT {COLS} FROM notification_outbox \
             WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
             ORDER BY created_at, id LIMIT $2"
        ),
        now,
        limit
    )
}

/// Messages some other sender claimed before `before` and never settled:
/// it crashed (or lost its lease) while sending them.
pub async fn stale_claims(
    db: &Db,
    mine: &str,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        OutboxRow,
        &format!(
            "SELECT {COLS} FROM notification_outbox \
             WHERE status = 'sending' AND (claimed_by IS NULL OR claimed_by <> $1) AND claimed_at < $2 \
             ORDER BY created_at, id LIMIT $3"
        ),
        mine.to_owned(),
        before,
        limit
    )
}

/// Dead messages whose dead letter is not yet in the log.
pub async fn dead_unrecorded(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        OutboxRow,
        &format!(
            "SELECT {COLS} FROM notification_outbox WHERE status = 'dead' AND dead_recorded_at IS NULL \
             ORDER BY dead_at, id LIMIT $1"
        ),
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

/// Takes a pending message for one attempt (counting it); `false` when it
/// is no longer pending (another sender took it).
pub async fn claim(db: &Db, id: &str, claim: &str, at: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let n = tx_execute!(
        &mut tx,
        "UPDATE notification_outbox SET status = 'sending', claimed_by = $2, claimed_at = $3, attempts = attempts + 1 \
         WHERE id = $1 AND status = 'pending'",
        id.to_owned(),
        claim.to_owned(),
        at
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Marks a message `claim` holds as sent.
pub async fn mark_sent(
    db: &Db,
    id: &str,
    claim: &str,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let n = tx_execute!(
        &mut tx,
        "UPDATE notification_outbox SET status = 'sent', sent_at = $3, last_error = NULL \
         WHERE id = $1 AND claimed_by = $2 AND status = 'sending'",
        id.to_owned(),
        claim.to_owned(),
        at
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Settles a failed attempt of a message `claim` holds: pending again until
/// `next`, or dead when there is no next attempt.
pub async fn mark_failed(
    db: &Db,
    id: &str,
    claim: &str,
    error: &str,
    next: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let (state, dead_at) = match next {
        Some(_) => (status::PENDING, None),
        None => (status::DEAD, Some(at)),
    };
    let mut tx = db.begin().await?;
    let n = tx_execute!(
        &mut tx,
        "UPDATE notification_outbox SET status = $3, last_error = $4, next_attempt_at = $5, dead_at = $6 \
         WHERE id = $1 AND claimed_by = $2 AND status = 'sending'",
        id.to_owned(),
        claim.to_owned(),
        state,
        error.to_owned(),
        next,
        dead_at
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Notes that a dead message's dead letter is in the log.
pub async fn mark_dead_recorded(db: &Db, id: &str, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    tx_execute!(
        &mut tx,
        "UPDATE notification_outbox SET dead_recorded_at = $2 WHERE id = $1 AND status = 'dead'",
        id.to_owned(),
        at
    )?;
    tx.commit().await
}
