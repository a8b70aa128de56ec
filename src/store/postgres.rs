//! The production backend: PostgreSQL.
//!
//! Writers run in parallel; each append locks only the heads of the streams it
//! touches (in sorted order, so two appends never deadlock on them). Positions
//! are handed out before commit, so they can commit out of order; readers of
//! the whole log therefore only take events whose writing transaction
//! (`transaction_id`, an `xid8`) is older than every transaction still
//! running, and order by `(transaction_id, position)`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use parking_lot::Mutex;
use scaidrive_domain::event::{chain_hash, HashInput};
use scaidrive_domain::{EventMetadata, LogPosition, RecordedEvent};
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool, PgRow};
use sqlx::{PgConnection, Row};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::{
    check_expected, validate_request, AppendOutcome, AppendRequest, Appended, ChainVerifier,
    ClaimOp, EventStore, ExpectedVersion, LogFilter, StoreError, VerifyReport,
};

const CHANNEL: &str = "scaidrive_events";

/// Test-only knobs (off by default).
#[derive(Default)]
struct TestHooks {
    /// Sleep this long before COMMIT in appends to streams with this prefix.
    commit_delay: Option<(String, Duration)>,
}

/// The PostgreSQL event store.
pub struct PostgresStore {
    pool: PgPool,
    wake: broadcast::Sender<()>,
    no_watermark: AtomicBool,
    hooks: Mutex<TestHooks>,
    /// Asks the notifier task to tell other processes about new commits.
    notify_others: Arc<tokio::sync::Notify>,
    _listener: DropGuard,
}

impl PostgresStore {
    /// Connects the store and starts listening for commits of other processes.
    pub async fn new(pool: PgPool) -> Result<Self, StoreError> {
        let (wake, _) = broadcast::channel(64);
        let cancel = CancellationToken::new();
        tokio::spawn(listen(pool.clone(), wake.clone(), cancel.clone()));
        let notify_others = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(notify_loop(
            pool.clone(),
            notify_others.clone(),
            cancel.clone(),
        ));
        Ok(Self {
            pool,
            wake,
            notify_others,
            no_watermark: AtomicBool::new(false),
            hooks: Mutex::new(TestHooks::default()),
            _listener: cancel.drop_guard(),
        })
    }

    /// Test hook: delay the COMMIT of appends whose first stream id starts
    /// with `prefix`, to hold a transaction open while others commit.
    #[doc(hidden)]
    pub fn set_commit_delay_for_tests(&self, delay: Option<(String, Duration)>) {
        self.hooks.lock().commit_delay = delay;
    }

    /// Test hook: read the log without the transaction watermark, to show the
    /// watermark is what keeps readers from skipping late commits.
    #[doc(hidden)]
    pub fn disable_watermark_for_tests(&self, disabled: bool) {
        self.no_watermark.store(disabled, Ordering::SeqCst);
    }

    fn watermark(&self) -> &'static str {
        if self.no_watermark.load(Ordering::SeqCst) {
            "TRUE"
        } else {
            "transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
        }
    }
}

/// Sends at most one NOTIFY per few milliseconds, outside the appending
/// transactions: a NOTIFY inside a transaction takes a global lock at commit
/// and would serialise every writer.
async fn notify_loop(pool: PgPool, wanted: Arc<tokio::sync::Notify>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wanted.notified() => {}
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "commit notification failed; listeners fall back to polling");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn listen(pool: PgPool, wake: broadcast::Sender<()>, cancel: CancellationToken) {
    loop {
        let result = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            // Anything committed while we were not listening is picked up by
            // the subscribers' catch-up read this wake-up triggers.
            let _ = wake.send(());
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok::<(), sqlx::Error>(()),
                    n = listener.recv() => { n?; let _ = wake.send(()); }
                }
            }
        }
        .await;
        if cancel.is_cancelled() {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "event notification listener failed, reconnecting");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

const COLUMNS: &str = "position, stream_id, stream_version, event_id, event_type, schema_version, tenant_id, \
                       data, metadata, transaction_id::text::bigint AS commit_id, recorded_at, hash";

fn err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        // serialization_failure, deadlock_detected: safe to decide again.
        if matches!(d.code().as_deref(), Some("40001") | Some("40P01")) {
            return StoreError::Conflict {
                stream: String::new(),
                expected: ExpectedVersion::Any,
                actual: None,
            };
        }
    }
    StoreError::from_sqlx(e)
}

fn decode_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let metadata: Value = row.try_get("metadata").map_err(err)?;
    Ok(RecordedEvent {
        log: LogPosition::new(
            row.try_get("commit_id").map_err(err)?,
            row.try_get("position").map_err(err)?,
        ),
        stream_id: row.try_get("stream_id").map_err(err)?,
        stream_version: row.try_get("stream_version").map_err(err)?,
        event_id: row.try_get::<Uuid, _>("event_id").map_err(err)?,
        event_type: row.try_get("event_type").map_err(err)?,
        schema_version: row.try_get("schema_version").map_err(err)?,
        tenant_id: row.try_get("tenant_id").map_err(err)?,
        data: row.try_get("data").map_err(err)?,
        metadata: serde_json::from_value::<EventMetadata>(metadata)
            .map_err(|e| StoreError::Backend(format!("corrupt metadata in events: {e}")))?,
        recorded_at: row
            .try_get::<DateTime<Utc>, _>("recorded_at")
            .map_err(err)?,
        hash: row.try_get("hash").map_err(err)?,
    })
}

async fn append_in(
    conn: &mut PgConnection,
    request: &AppendRequest,
) -> Result<Result<Appended, ()>, StoreError> {
    let now = Utc::now();
    let mut ids: Vec<&str> = request
        .streams
        .iter()
        .map(|s| s.stream_id.as_str())
        .collect();
    ids.sort_unstable();

    // Serialise writers of the same stream BEFORE this transaction writes
    // anything. A transaction gets its id (which orders the global log) at its
    // first write, and advisory locks take no id: so whoever appends to a
    // stream later also has the larger transaction id, and log order keeps
    // every stream's order. (Row locks or inserts here would hand out ids
    // while waiting, and a later waiter could then commit an earlier id.)
    if !ids.is_empty() {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended(s, 0)) FROM UNNEST($1::text[]) AS s",
        )
        .bind(&ids)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    }

    // A concurrent duplicate of the idempotency key waits here for this
    // transaction, then sees the key taken.
    if let Some(idem) = &request.idempotency {
        let inserted = sqlx::query("INSERT INTO idempotency (key, outcome, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
            .bind(&idem.key)
            .bind(&idem.outcome)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(err)?
            .rows_affected();
        if inserted == 0 {
            return Ok(Err(()));
        }
    }

    // Lock the heads that exist, in stream-id order.
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT stream_id, version, last_hash FROM streams WHERE stream_id = ANY($1) ORDER BY stream_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let mut heads: HashMap<String, (i64, String)> =
        rows.into_iter().map(|(s, v, h)| (s, (v, h))).collect();

    // Create the heads of new streams, in order; losing a creation race is a conflict.
    let mut new_ids: Vec<&crate::store::StreamAppend> = request
        .streams
        .iter()
        .filter(|s| !heads.contains_key(&s.stream_id))
        .collect();
    new_ids.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
    for s in new_ids {
        check_expected(&s.stream_id, s.expected, None)?;
        if s.events.is_empty() {
            continue;
        }
        let created = sqlx::query(
            "INSERT INTO streams (stream_id, version, last_hash, tenant_id) VALUES ($1, 0, '', $2) ON CONFLICT (stream_id) DO NOTHING",
        )
        .bind(&s.stream_id)
        .bind(s.events.first().and_then(|e| e.tenant_id.clone()))
        .execute(&mut *conn)
        .await
        .map_err(err)?
        .rows_affected();
        if created == 0 {
            let (v, h): (i64, String) = sqlx::query_as(
                "SELECT version, last_hash FROM streams WHERE stream_id = $1 FOR UPDATE",
            )
            .bind(&s.stream_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
            check_expected(&s.stream_id, s.expected, Some(v))?;
            heads.insert(s.stream_id.clone(), (v, h));
        } else {
            heads.insert(s.stream_id.clone(), (0, String::new()));
        }
    }
    for s in &request.streams {
        if let Some((v, _)) = heads.get(&s.stream_id) {
            // Version 0 is a head this transaction just created.
            let actual = (*v > 0).then_some(*v);
            check_expected(&s.stream_id, s.expected, actual)?;
        }
    }

    for claim in &request.claims {
        match claim {
            ClaimOp::Claim { scope, key, owner } => {
                let inserted = sqlx::query(
                    "INSERT INTO claims (scope, key, owner, claimed_at) VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING",
                )
                .bind(scope)
                .bind(key)
                .bind(owner)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(err)?
                .rows_affected();
                if inserted == 0 {
                    let holder: Option<String> = sqlx::query_scalar(
                        "SELECT owner FROM claims WHERE scope = $1 AND key = $2",
                    )
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
                            })
                        }
                        // Released between our insert and select: retrying decides again.
                        None => {
                            return Err(StoreError::Conflict {
                                stream: String::new(),
                                expected: ExpectedVersion::Any,
                                actual: None,
                            })
                        }
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

    // All events in one statement.
    let n: usize = request.streams.iter().map(|s| s.events.len()).sum();
    let mut recorded = Vec::with_capacity(n);
    if n > 0 {
        let mut c_stream = Vec::with_capacity(n);
        let mut c_version = Vec::with_capacity(n);
        let mut c_id = Vec::with_capacity(n);
        let mut c_type = Vec::with_capacity(n);
        let mut c_schema = Vec::with_capacity(n);
        let mut c_tenant: Vec<Option<String>> = Vec::with_capacity(n);
        let mut c_data = Vec::with_capacity(n);
        let mut c_meta = Vec::with_capacity(n);
        let mut c_hash = Vec::with_capacity(n);
        let mut new_heads = Vec::new();
        for s in &request.streams {
            if s.events.is_empty() {
                continue;
            }
            let (mut version, mut prev) = heads
                .get(&s.stream_id)
                .cloned()
                .unwrap_or((0, String::new()));
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
                c_stream.push(s.stream_id.clone());
                c_version.push(version);
                c_id.push(e.event_id);
                c_type.push(e.event_type.clone());
                c_schema.push(e.schema_version);
                c_tenant.push(e.tenant_id.clone());
                c_data.push(e.data.clone());
                c_meta.push(
                    serde_json::to_value(&e.metadata)
                        .map_err(|x| StoreError::Invalid(x.to_string()))?,
                );
                c_hash.push(hash.clone());
                recorded.push(RecordedEvent {
                    log: LogPosition::START,
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
            }
            new_heads.push((s.stream_id.clone(), version, prev));
        }
        let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, tenant_id, data, metadata, recorded_at, hash) \
             SELECT s, v, i, t, sv, tn, d, m, $9, h \
             FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[], $6::text[], $7::jsonb[], $8::jsonb[], $10::text[]) \
                  AS x(s, v, i, t, sv, tn, d, m, h) \
             RETURNING event_id, position, transaction_id::text::bigint",
        )
        .bind(&c_stream)
        .bind(&c_version)
        .bind(&c_id)
        .bind(&c_type)
        .bind(&c_schema)
        .bind(&c_tenant)
        .bind(&c_data)
        .bind(&c_meta)
        .bind(now)
        .bind(&c_hash)
        .fetch_all(&mut *conn)
        .await
        .map_err(|x| match &x {
            sqlx::Error::Database(d) if d.is_unique_violation() && d.constraint() == Some("events_event_id_key") => {
                StoreError::Invalid("duplicate event id".into())
            }
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Conflict { stream: String::new(), expected: ExpectedVersion::Any, actual: None }
            }
            _ => err(x),
        })?;
        let by_id: HashMap<Uuid, (i64, i64)> =
            rows.into_iter().map(|(id, p, c)| (id, (c, p))).collect();
        for r in &mut recorded {
            if let Some((c, p)) = by_id.get(&r.event_id) {
                r.log = LogPosition::new(*c, *p);
            }
        }
        let (h_ids, (h_versions, h_hashes)): (Vec<String>, (Vec<i64>, Vec<String>)) =
            new_heads.into_iter().map(|(s, v, h)| (s, (v, h))).unzip();
        sqlx::query(
            "UPDATE streams SET version = x.v, last_hash = x.h FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS x(s, v, h) \
             WHERE streams.stream_id = x.s",
        )
        .bind(&h_ids)
        .bind(&h_versions)
        .bind(&h_hashes)
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
impl EventStore for PostgresStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        validate_request(&request)?;
        let delay = {
            let hooks = self.hooks.lock();
            hooks.commit_delay.as_ref().and_then(|(prefix, d)| {
                request
                    .streams
                    .first()
                    .filter(|s| s.stream_id.starts_with(prefix.as_str()))
                    .map(|_| *d)
            })
        };
        let mut tx = self.pool.begin().await.map_err(err)?;
        match append_in(&mut tx, &request).await {
            Ok(Ok(appended)) => {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                tx.commit().await.map_err(err)?;
                if !appended.events.is_empty() {
                    let _ = self.wake.send(());
                    self.notify_others.notify_one();
                }
                Ok(AppendOutcome::Committed(appended))
            }
            Ok(Err(())) => {
                tx.rollback().await.map_err(err)?;
                let key = request
                    .idempotency
                    .as_ref()
                    .map(|i| i.key.as_str())
                    .unwrap_or_default();
                let outcome = self.idempotent_outcome(key).await?.unwrap_or(Value::Null);
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
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<i64>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(v.filter(|v| *v > 0))
    }

    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2::bigint) AND {} \
             ORDER BY transaction_id, position LIMIT $3",
            self.watermark()
        );
        let rows = sqlx::query(&sql)
            .bind(after.commit)
            .bind(after.position)
            .bind(limit as i64)
            .fetch_all(&self.pool)
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
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2::bigint) AND {} \
             AND ($4::text IS NULL OR tenant_id = $4) AND ($5::text IS NULL OR stream_id = $5) \
             AND ($6::text IS NULL OR event_type = $6) \
             ORDER BY transaction_id, position LIMIT $3",
            self.watermark()
        );
        let rows = sqlx::query(&sql)
            .bind(after.commit)
            .bind(after.position)
            .bind(limit as i64)
            .bind(&filter.tenant_id)
            .bind(&filter.stream_id)
            .bind(&filter.event_type)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode_row).collect()
    }

    async fn head(&self) -> Result<LogPosition, StoreError> {
        let sql = format!(
            "SELECT transaction_id::text::bigint, position FROM events WHERE {} \
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
            self.watermark()
        );
        let row: Option<(i64, i64)> = sqlx::query_as(&sql)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row
            .map(|(c, p)| LogPosition::new(c, p))
            .unwrap_or(LogPosition::START))
    }

    async fn idempotent_outcome(&self, key: &str) -> Result<Option<Value>, StoreError> {
        sqlx::query_scalar("SELECT outcome FROM idempotency WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn claim_holder(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT owner FROM claims WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    fn subscribe(&self) -> broadcast::Receiver<()> {
        self.wake.subscribe()
    }

    async fn verify(&self, tenant_id: Option<&str>) -> Result<VerifyReport, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY stream_id, stream_version"
        );
        let mut rows = sqlx::query(&sql).bind(tenant_id).fetch(&self.pool);
        let mut chains = ChainVerifier::default();
        while let Some(row) = rows.try_next().await.map_err(err)? {
            chains.check(&decode_row(&row)?);
        }
        Ok(chains.report())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}
