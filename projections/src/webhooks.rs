//! Outbound webhooks: the tenant's webhooks as rows, and the delivery queue.
//! Every event of a tenant is queued, as its audit JSON, for each of the
//! tenant's webhooks whose categories match — in the projection's own
//! transaction, keyed by (webhook, event), so each event is queued exactly
//! once whatever the replays. The sender (`src/webhooks/`) drains the queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::webhook::WebhookEvent;
use scaidrive_domain::{AnyEvent, DecodedEvent};
use uuid::Uuid;

use crate::audit;
use crate::db::{Db, Tx};
use crate::projection::{typed, Projection, ProjectionError};
use crate::{db_fetch_all, db_fetch_optional, tx_execute, tx_fetch_all};

/// Folds webhook events into `rm_webhooks` and queues deliveries.
pub struct WebhooksProjection;

const TYPES: [&str; 6] = [
    "webhook-created",
    "webhook-updated",
    "webhook-paused",
    "webhook-resumed",
    "webhook-deleted",
    "webhook-delivery-dropped",
];

fn to_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Target {
    id: String,
    categories: String,
}

#[async_trait]
impl Projection for WebhooksProjection {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, _event_type: &str) -> bool {
        true
    }

    async fn apply(&self, tx: &mut Tx, e: &DecodedEvent) -> Result<(), ProjectionError> {
        queue(tx, e, &mut Targets::default()).await
    }

    /// Reads each tenant's webhooks once for the run (again after an event
    /// that changes them).
    async fn apply_all(&self, tx: &mut Tx, events: &[DecodedEvent]) -> Result<(), ProjectionError> {
        let mut targets = Targets::default();
        for e in events {
            queue(tx, e, &mut targets).await?;
        }
        Ok(())
    }

    /// Only the webhook rows: the delivery log (`webhook_deliveries`, one of
    /// the [`QUEUE_TABLES`](crate::projection::QUEUE_TABLES)) is history the
    /// sender wrote, and replays find every queued event already there.
    fn tables(&self) -> &'static [&'static str] {
        &["rm_webhooks"]
    }
}

/// Each tenant's webhooks, as read during one run of events.
type Targets = HashMap<String, Arc<Vec<Target>>>;

/// Folds `e` if it is a webhook's own event, then queues it for each of its
/// tenant's webhooks whose categories match.
async fn queue(tx: &mut Tx, e: &DecodedEvent, known: &mut Targets) -> Result<(), ProjectionError> {
    if TYPES.contains(&e.event_type.as_str()) {
        fold(tx, e).await?;
        known.clear();
    }
    let Some(tenant) = &e.tenant_id else {
        return Ok(());
    };
    let targets = match known.get(tenant) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<Vec<Target>> = Arc::new(tx_fetch_all!(
                tx,
                Target,
                "SELECT id, categories FROM rm_webhooks WHERE tenant_id = $1 ORDER BY id",
                tenant.clone()
            )?);
            known.insert(tenant.clone(), t.clone());
            t
        }
    };
    if targets.is_empty() {
        return Ok(());
    }
    let row = audit::row_of(e);
    let payload = audit::entry_json(&row).to_string();
    for t in targets.iter() {
        // A webhook is not told about its own dropped deliveries: a
        // receiver that is down would otherwise feed itself forever.
        if e.event_type == "webhook-delivery-dropped" && e.stream_id == t.id {
            continue;
        }
        let categories: Vec<String> = serde_json::from_str(&t.categories).unwrap_or_default();
        if !categories.is_empty() && !categories.contains(&row.category) {
            continue;
        }
        tx_execute!(
            tx,
            "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, commit_id, position, action, payload, \
             status, attempts, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9) ON CONFLICT (webhook_id, event_id) DO NOTHING",
            format!("dlv_{}", Uuid::now_v7().simple()),
            t.id.clone(),
            tenant.clone(),
            row.event_id.clone(),
            e.log.commit,
            e.log.position,
            row.action.clone(),
            payload.clone(),
            e.metadata.occurred_at
        )?;
    }
    Ok(())
}

async fn fold(tx: &mut Tx, e: &DecodedEvent) -> Result<(), ProjectionError> {
    let id = e.stream_id.clone();
    let AnyEvent::Webhook(ev) = typed(e)? else {
        return Ok(());
    };
    match ev.clone() {
        WebhookEvent::WebhookCreated {
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
            tx_execute!(
                tx,
                "INSERT INTO rm_webhooks (id, tenant_id, name, url, categories, secret, headers, status, created_at, modified_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (id) DO NOTHING",
                webhook_id.to_string(),
                tenant_id.to_string(),
                name,
                url,
                to_text(&categories),
                secret,
                to_text(&headers),
                status.as_str(),
                at
            )?;
        }
        WebhookEvent::WebhookUpdated {
            name,
            url,
            categories,
            secret,
            headers,
            at,
        } => {
            tx_execute!(
                tx,
                "UPDATE rm_webhooks SET name = COALESCE($2, name), url = COALESCE($3, url), categories = COALESCE($4, categories), \
                 secret = COALESCE($5, secret), headers = COALESCE($6, headers), modified_at = $7 WHERE id = $1",
                id,
                name,
                url,
                categories.as_ref().map(to_text),
                secret,
                headers.as_ref().map(to_text),
                at
            )?;
        }
        WebhookEvent::WebhookPaused { at } | WebhookEvent::WebhookResumed { at } => {
            let status = if e.event_type == "webhook-paused" {
                "paused"
            } else {
                "active"
            };
            tx_execute!(
                tx,
                "UPDATE rm_webhooks SET status = $2, modified_at = $3 WHERE id = $1",
                id.clone(),
                status,
                at
            )?;
            if status == "active" {
                // What waited during the pause goes out now, not at the
                // retry time it had.
                tx_execute!(
                    tx,
                    "UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE webhook_id = $1 AND status = 'pending'",
                    id,
                    at
                )?;
            }
        }
        WebhookEvent::WebhookDeleted { .. } => {
            tx_execute!(tx, "DELETE FROM rm_webhooks WHERE id = $1", id.clone())?;
            tx_execute!(
                tx,
                "UPDATE webhook_deliveries SET status = 'cancelled', next_attempt_at = NULL WHERE webhook_id = $1 AND status = 'pending'",
                id
            )?;
        }
        WebhookEvent::WebhookDeliveryDropped { .. } => {}
    }
    Ok(())
}

/// A webhook as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub url: String,
    pub categories: String,
    pub secret: String,
    pub headers: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl WebhookRow {
    pub fn category_list(&self) -> Vec<String> {
        serde_json::from_str(&self.categories).unwrap_or_default()
    }

    pub fn header_map(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.headers).unwrap_or_default()
    }
}

const WEBHOOK_COLS: &str =
    "id, tenant_id, name, url, categories, secret, headers, status, created_at, modified_at";

/// The webhooks of a tenant, oldest first.
pub async fn webhooks(db: &Db, tenant_id: &str) -> Result<Vec<WebhookRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        WebhookRow,
        &format!(
            "SELECT {WEBHOOK_COLS} FROM rm_webhooks WHERE tenant_id = $1 ORDER BY created_at, id"
        ),
        tenant_id.to_owned()
    )
}

/// One webhook of a tenant (none for another tenant's).
pub async fn webhook(
    db: &Db,
    tenant_id: &str,
    id: &str,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        WebhookRow,
        &format!("SELECT {WEBHOOK_COLS} FROM rm_webhooks WHERE tenant_id = $1 AND id = $2"),
        tenant_id.to_owned(),
        id.to_owned()
    )
}

/// One delivery as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub action: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub last_response_code: Option<i32>,
    pub last_error: Option<String>,
    pub drop_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLS: &str =
    "id, webhook_id, tenant_id, event_id, action, payload, status, attempts, last_response_code, \
     last_error, drop_reason, created_at, next_attempt_at, last_attempt_at, delivered_at";

/// A webhook's deliveries, newest event first, optionally of one status.
pub async fn deliveries(
    db: &Db,
    webhook_id: &str,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        DeliveryRow,
        &format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 AND ($2 IS NULL OR status = $2) \
             ORDER BY commit_id DESC, position DESC LIMIT $3 OFFSET $4"
        ),
        webhook_id.to_owned(),
        status.map(str::to_owned),
        limit,
        offset
    )
}

/// A due delivery with what the sender needs to make the request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub id: String,
    pub webhook_id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub action: String,
    pub payload: String,
    pub attempts: i32,
    pub url: String,
    pub secret: String,
    pub headers: String,
}

/// Pending deliveries of active webhooks whose next attempt is due.
pub async fn due(db: &Db, now: DateTime<Utc>, limit: i64) -> Result<Vec<DueDelivery>, sqlx::Error> {
    db_fetch_all!(
        db,
        DueDelivery,
        "SELECT d.id, d.webhook_id, d.tenant_id, d.event_id, d.action, d.payload, d.attempts, w.url, w.secret, w.headers \
         FROM webhook_deliveries d JOIN rm_webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND w.status = 'active' AND d.next_attempt_at <= $1 \
         ORDER BY d.next_attempt_at, d.commit_id, d.position LIMIT $2",
        now,
        limit
    )
}

/// One attempt's outcome.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub response_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What one attempt did, recorded with the delivery's new state.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// 1-based.
    pub number: i32,
    pub at: DateTime<Utc>,
    pub response_code: Option<i32>,
    pub error: Option<&'a str>,
    pub duration_ms: i64,
}

async fn record_attempt(tx: &mut Tx, id: &str, a: &Attempt<'_>) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO webhook_delivery_attempts (delivery_id, attempt, attempted_at, response_code, error, duration_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id, attempt) DO NOTHING",
        id.to_owned(),
        a.number,
        a.at,
        a.response_code,
        a.error.map(str::to_owned),
        a.duration_ms
    )?;
    Ok(())
}

/// The attempts of a delivery, first first.
pub async fn attempts(db: &Db, delivery_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        AttemptRow,
        "SELECT attempt, attempted_at, response_code, error, duration_ms FROM webhook_delivery_attempts \
         WHERE delivery_id = $1 ORDER BY attempt",
        delivery_id.to_owned()
    )
}

/// One delivery of a webhook.
pub async fn delivery(
    db: &Db,
    webhook_id: &str,
    id: &str,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        DeliveryRow,
        &format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
        ),
        webhook_id.to_owned(),
        id.to_owned()
    )
}

/// Records a successful attempt.
pub async fn mark_delivered(db: &Db, id: &str, a: &Attempt<'_>) -> Result<(), sqlx::Error> {
    let code = a.response_code;
    let at = a.at;
    let mut tx = db.begin().await?;
    record_attempt(&mut tx, id, a).await?;
    tx_execute!(
        &mut tx,
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_response_code = $2, \
         last_error = NULL, last_attempt_at = $3, delivered_at = $3, next_attempt_at = NULL WHERE id = $1 AND status = 'pending'",
        id.to_owned(),
        code,
        at
    )?;
    tx.commit().await
}

/// Records a failed attempt: the next one at `next`, or (with `None`) the
/// delivery is given up and waits for its SECURITY event.
pub async fn mark_failed(
    db: &Db,
    id: &str,
    a: &Attempt<'_>,
    next: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let code = a.response_code;
    let error = a.error.unwrap_or("failed");
    let at = a.at;
    let mut tx = db.begin().await?;
    record_attempt(&mut tx, id, a).await?;
    tx_execute!(
        &mut tx,
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_response_code = $2, last_error = $3, last_attempt_at = $4, \
         next_attempt_at = $5, status = CASE WHEN $5 IS NULL THEN 'dropping' ELSE 'pending' END, \
         drop_reason = CASE WHEN $5 IS NULL THEN 'retries_exhausted' ELSE NULL END \
         WHERE id = $1 AND status = 'pending'",
        id.to_owned(),
        code,
        error.to_owned(),
        at,
        next
    )?;
    tx.commit().await
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Overfull {
    webhook_id: String,
    queued: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct IdRow {
    id: String,
}

/// Keeps every webhook's queue within `max` pending deliveries: the newest
/// beyond the bound are given up (the queue keeps the oldest events, so a
/// resumed receiver sees a gap-free prefix). Returns how many were dropped.
pub async fn enforce_bound(db: &Db, max: i64) -> Result<u64, sqlx::Error> {
    let over = db_fetch_all!(
        db,
        Overfull,
        "SELECT webhook_id, COUNT(*) AS queued FROM webhook_deliveries WHERE status = 'pending' \
         GROUP BY webhook_id HAVING COUNT(*) > $1",
        max
    )?;
    let mut dropped = 0;
    for o in over {
        let ids = db_fetch_all!(
            db,
            IdRow,
            "SELECT id FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending' \
             ORDER BY commit_id DESC, position DESC LIMIT $2",
            o.webhook_id.clone(),
            o.queued - max
        )?;
        let mut tx = db.begin().await?;
        for r in ids {
            dropped += tx_execute!(
                &mut tx,
                "UPDATE webhook_deliveries SET status = 'dropping', drop_reason = 'queue_full', next_attempt_at = NULL \
                 WHERE id = $1 AND status = 'pending'",
                r.id
            )?;
        }
        tx.commit().await?;
    }
    Ok(dropped)
}

/// Deliveries given up whose SECURITY event is still to be recorded.
pub async fn dropping(db: &Db, limit: i64) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        DeliveryRow,
        &format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE status = 'dropping' ORDER BY commit_id, position LIMIT $1"),
        limit
    )
}

/// The drop of a delivery is recorded.
pub async fn mark_dropped(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    tx_execute!(
        &mut tx,
        "UPDATE webhook_deliveries SET status = 'dropped' WHERE id = $1 AND status = 'dropping'",
        id.to_owned()
    )?;
    tx.commit().await
}
