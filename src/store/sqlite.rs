//! The embedded backend: one SQLite file in WAL mode. All writes go through
//! the single writer connection with `BEGIN IMMEDIATE`, so the commit counter
//! (`transaction_id`) and positions grow in commit order and a reader of the
//! log can never skip an event that commits later.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use scaidrive_domain::event::{chain_hash, HashInput};
use scaidrive_domain::{EventMetadata, LogPosition, RecordedEvent};
use scaidrive_projections::db::SqliteDb;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{
    check_expected, validate_request, AppendOutcome, AppendRequest, Appended, ClaimOp, EventStore,
    LogFilter, StoreError, VerifyRange, VerifyReport,
};

/// The SQLite event store.
pub struct SqliteStore {
    db: SqliteDb,
    wake: broadcast::Sender<()>,
}

impl SqliteStore {
    pub fn new(db: SqliteDb) -> Self {
        let (wake, _) = broadcast::channel(64);
        Self { db, wake }
    }
}

const COLUMNS: &str =
    "position, stream_id, stream_version, event_id, event_type, schema_version, tenant_id, \
                       data, metadata, transaction_id, recorded_at, hash";

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

fn decode_row(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Backend(format!("corrupt {what} in events: {e}"))
    };
    let event_id: String = row.try_get("event_id").map_err(err)?;
    let data: String = row.try_get("data").map_err(err)?;
    let metadata: String = row.try_get("metadata").map_err(err)?;
    Ok(RecordedEvent {
        log: LogPosition::new(
            row.try_get("transaction_id").map_err(err)?,
            row.try_get("position").map_err(err)?,
        ),
        stream_id: row.try_get("stream_id").map_err(err)?,
        stream_version: row.try_get("stream_version").map_err(err)?,
        event_id: Uuid::parse_str(&event_id).map_err(|e| bad("event_id", &e))?,
        event_type: row.try_get("event_type").map_err(err)?,
        schema_version: row.try_get("schema_version").map_err(err)?,
        tenant_id: row.try_get("tenant_id").map_err(err)?,
        data: serde_json::from_str(&data).map_err(|e| bad("data", &e))?,
        metadata: serde_json::from_str::<EventMetadata>(&metadata)
            .map_err(|e| bad("metadata", &e))?,
        recorded_at: row
            .try_get::<DateTime<Utc>, _>("recorded_at")
            .map_err(err)?,
        hash: row.try_get("hash").map_err(err)?,
    })
}

async fn append_in(
    conn: &mut SqliteConnection,
    request: &AppendRequest,
) -> Result<Result<Appended, Value>, StoreError> {
    if let Some(idem) = &request.idempotency {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM idempotency WHERE key = $1")
                .bind(&idem.key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err)?;
        if let Some(s) = stored {
            return Ok(Err(serde_json::from_str(&s).unwrap_or(Value::Null)));
        }
    }

    // Stream heads, checked in a fixed order.
    let mut order: Vec<usize> = (0..request.streams.len()).collect();
    order.sort_by(|a, b| {
        request.streams[*a]
            .stream_id
            .cmp(&request.streams[*b].stream_id)
    });
    let mut heads: Vec<(Option<i64>, String)> = vec![(None, String::new()); request.streams.len()];
    for i in order {
        let s = &request.streams[i];
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT version, last_hash FROM streams WHERE stream_id = $1")
                .bind(&s.stream_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err)?;
        check_expected(&s.stream_id, s.expected, head.as_ref().map(|h| h.0))?;
        heads[i] = match head {
            Some((v, h)) => (Some(v), h),
            None => (None, String::new()),
        };
    }

    let now = Utc::now();
    for claim in &request.claims {
        match claim {
            ClaimOp::Claim { scope, key, owner } => {
                let holder: Option<String> =
                    sqlx::query_scalar("SELECT owner FROM claims WHERE scope = $1 AND key = $2")
                        .bind(scope)
                        .bind(key)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(err)?;
                match holder {
                    Some(h) if h == *owner => {}
                    Some(h) => {
                        return Err(StoreError::ClaimTaken {
                            scope: scope.clone(),
                            key: key.clone(),
                            holder: h,
                        });
                    }
                    None => {
                        sqlx::query("INSERT INTO claims (scope, key, owner, claimed_at) VALUES ($1, $2, $3, $4)")
                            .bind(scope)
                            .bind(key)
                            .bind(owner)
                            .bind(now)
                            .execute(&mut *conn)
                            .await
                            .map_err(err)?;
                    }
                }
            }
            ClaimOp::Release { scope, key, owner } => {
                sqlx::query("DELETE FROM claims WHERE scope = $1 AND key = $2 AND owner = $3")
                    .bind(scope)
                    .bind(key)
                    .bind(owner)
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?;
            }
        }
    }

    let mut recorded = Vec::new();
    if request.streams.iter().any(|s| !s.events.is_empty()) {
        let commit: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(transaction_id), 0) + 1 FROM events")
                .fetch_one(&mut *conn)
                .await
                .map_err(err)?;
        for (s, (head, last_hash)) in request.streams.iter().zip(heads) {
            if s.events.is_empty() {
                continue;
            }
            let mut version = head.unwrap_or(0);
            let mut prev = last_hash;
            let mut tenant = None;
            for e in &s.events {
                version += 1;
                let hash = chain_hash(
                    &prev,
                    &HashInput {
                        stream_id: &s.stream_id,
                        stream_version: version,
                        event_id: e.event_id,
                        event_type: &e.event_type,
                        schema_version: e.schema_version,
                        tenant_id: e.tenant_id.as_deref(),
                        data: &e.data,
                        metadata: &e.metadata,
                    },
                );
                let meta = serde_json::to_string(&e.metadata)
                    .map_err(|x| StoreError::Invalid(x.to_string()))?;
                let position: i64 = sqlx::query_scalar(
                    "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, tenant_id, \
                     data, metadata, transaction_id, recorded_at, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING position",
                )
                .bind(&s.stream_id)
                .bind(version)
                .bind(e.event_id.to_string())
                .bind(&e.event_type)
                .bind(e.schema_version)
                .bind(&e.tenant_id)
                .bind(e.data.to_string())
                .bind(&meta)
                .bind(commit)
                .bind(now)
                .bind(&hash)
                .fetch_one(&mut *conn)
                .await
                .map_err(|x| match &x {
                    sqlx::Error::Database(d) if d.is_unique_violation() => {
                        StoreError::Invalid(format!("duplicate event id {}", e.event_id))
                    }
                    _ => err(x),
                })?;
                recorded.push(RecordedEvent {
                    log: LogPosition::new(commit, position),
                    stream_id: s.stream_id.clone(),
                    stream_version: version,
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    tenant_id: e.tenant_id.clone(),
                    data: e.data.clone(),
                    metadata: e.metadata.clone(),
                    recorded_at: now,
                    hash: hash.clone(),
                });
                prev = hash;
                tenant = e.tenant_id.clone();
            }
            sqlx::query(
                "INSERT INTO streams (stream_id, version, last_hash, tenant_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, last_hash = excluded.last_hash",
            )
            .bind(&s.stream_id)
            .bind(version)
            .bind(&prev)
            .bind(tenant)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        }
    }

    if let Some(idem) = &request.idempotency {
        sqlx::query("INSERT INTO idempotency (key, outcome, created_at) VALUES ($1, $2, $3)")
            .bind(&idem.key)
            .bind(idem.outcome.to_string())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    let last = recorded.iter().map(|e| e.log).max();
    Ok(Ok(Appended {
        events: recorded,
        last,
    }))
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        validate_request(&request)?;
        let mut tx = self
            .db
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err)?;
        match append_in(&mut tx, &request).await {
            Ok(Ok(appended)) => {
                tx.commit().await.map_err(err)?;
                if !appended.events.is_empty() {
                    let _ = self.wake.send(());
                }
                Ok(AppendOutcome::Committed(appended))
            }
            Ok(Err(outcome)) => {
                tx.rollback().await.map_err(err)?;
                Ok(AppendOutcome::Duplicate(outcome))
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(after_version)
            .bind(limit as i64)
            .fetch_all(&self.db.read)
            .await
            .map_err(err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(&self.db.read)
            .await
            .map_err(err)
    }

    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE transaction_id > $1 OR (transaction_id = $1 AND position > $2) \
             ORDER BY transaction_id, position LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(after.commit)
            .bind(after.position)
            .bind(limit as i64)
            .fetch_all(&self.db.read)
            .await
            .map_err(err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_filtered(
        &self,
        after: LogPosition,
        limit: usize,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events \
             WHERE (transaction_id > $1 OR (transaction_id = $1 AND position > $2)) \
             AND ($4 IS NULL OR tenant_id = $4) AND ($5 IS NULL OR stream_id = $5) AND ($6 IS NULL OR event_type = $6) \
             ORDER BY transaction_id, position LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(after.commit)
            .bind(after.position)
            .bind(limit as i64)
            .bind(&filter.tenant_id)
            .bind(&filter.stream_id)
            .bind(&filter.event_type)
            .fetch_all(&self.db.read)
            .await
            .map_err(err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn head(&self) -> Result<LogPosition, StoreError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1")
                .fetch_optional(&self.db.read)
                .await
                .map_err(err)?;
        Ok(row
            .map(|(c, p)| LogPosition::new(c, p))
            .unwrap_or(LogPosition::START))
    }

    async fn idempotent_outcome(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM idempotency WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.db.read)
                .await
                .map_err(err)?;
        Ok(stored.map(|s| serde_json::from_str(&s).unwrap_or(Value::Null)))
    }

    async fn claim_holder(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT owner FROM claims WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.db.read)
            .await
            .map_err(err)
    }

    fn subscribe(&self) -> broadcast::Receiver<()> {
        self.wake.subscribe()
    }

    async fn verify_range(
        &self,
        tenant_id: Option<&str>,
        range: VerifyRange,
    ) -> Result<VerifyReport, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY stream_id, stream_version"
        );
        let mut rows = sqlx::query(&sql).bind(tenant_id).fetch(&self.db.read);
        let mut chains = super::ChainVerifier::new(range);
        while let Some(row) = rows.try_next().await.map_err(err)? {
            chains.check(&decode_row(&row)?);
        }
        Ok(chains.report())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.db.read)
            .await
            .map_err(err)?;
        Ok(())
    }
}
