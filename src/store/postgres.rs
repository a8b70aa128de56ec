//! The production backend: PostgreSQL.
//!
//! Writers run in parallel; each append locks only the heads of the streams it
//! touches (in sorted order, so two appends never deadlock on them). Positions
//! are handed out before commit, so they can commit out of order; readers of
//! the whole log therefore only take events whose writing transaction
//! (`transaction_id`, an `xid8`) is older than every transaction still
//! running, and order by `(transaction_id, position)`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
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
    ClaimOp, EventStore, ExpectedVersion, LogFilter, StoreError, StreamAppend, VerifyRange,
    VerifyReport,
};

mod group;

const CHANNEL: &str = "scaidrive_events";

/// How many stream heads (version, last hash) a process remembers for the
/// group append.
const HEAD_CACHE_ENTRIES: usize = 100_000;

/// One-statement attempts before an append falls back to the transaction
/// path (each failed attempt brings the real heads back).
const FAST_ATTEMPTS: usize = 3;

/// Test-only knobs (off by default).
#[derive(Default)]
struct TestHooks {
    /// Sleep this long before COMMIT in appends to streams with this prefix.
    commit_delay: Option<(String, Duration)>,
}

/// The PostgreSQL event store.
pub struct PostgresStore {
    pool: PgPool,
    no_watermark: AtomicBool,
    hooks: Mutex<TestHooks>,
    /// The stream heads and the commit signals (shared with the group
    /// committer's tasks).
    written: Arc<Written>,
    /// Queues appends for group commit.
    group: group::Committer,
    _listener: DropGuard,
}

impl PostgresStore {
    /// Connects the store and starts listening for commits of other processes.
    pub async fn new(pool: PgPool) -> Result<Self, StoreError> {
        let (wake, _) = broadcast::channel(64);
        let cancel = CancellationToken::new();
        let me = Uuid::now_v7().to_string();
        tokio::spawn(listen(
            pool.clone(),
            me.clone(),
            wake.clone(),
            cancel.clone(),
        ));
        let notify_others = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(notify_loop(
            pool.clone(),
            me,
            notify_others.clone(),
            cancel.clone(),
        ));
        let written = Arc::new(Written {
            heads: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(HEAD_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            wake,
            notify_others,
        });
        Ok(Self {
            group: group::Committer::start(pool.clone(), written.clone()),
            pool,
            no_watermark: AtomicBool::new(false),
            hooks: Mutex::new(TestHooks::default()),
            written,
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
/// The payload names the sending store, whose own listener skips it: its
/// subscribers were woken directly at commit.
async fn notify_loop(
    pool: PgPool,
    me: String,
    wanted: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wanted.notified() => {}
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&me)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "commit notification failed; listeners fall back to polling");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn listen(pool: PgPool, me: String, wake: broadcast::Sender<()>, cancel: CancellationToken) {
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
                    n = listener.recv() => {
                        if n?.payload() != me {
                            let _ = wake.send(());
                        }
                    }
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

/// serialization_failure, deadlock_detected: safe to decide again.
fn retryable(code: Option<&str>) -> bool {
    matches!(code, Some("40001") | Some("40P01"))
}

/// A conflict with no stream to name: decide again on fresh state.
fn anonymous_conflict() -> StoreError {
    StoreError::Conflict {
        stream: String::new(),
        expected: ExpectedVersion::Any,
        actual: None,
    }
}

fn err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if retryable(d.code().as_deref()) {
            return anonymous_conflict();
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
                        None => return Err(anonymous_conflict()),
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

/// What one call of the append function gave.
enum FastOutcome {
    Done(AppendOutcome),
    /// The heads the chain was computed from were not current; these are.
    Stale(Vec<(String, i64, String)>),
    /// The group this append was in failed as a whole and wrote nothing:
    /// write it on its own.
    Alone,
}

#[derive(serde::Deserialize)]
struct ConflictInfo {
    stream: String,
    actual: Option<i64>,
}

#[derive(serde::Deserialize)]
struct ClaimInfo {
    scope: String,
    key: String,
    holder: String,
}

fn expected_code(e: ExpectedVersion) -> (&'static str, i64) {
    match e {
        ExpectedVersion::NoStream => ("none", 0),
        ExpectedVersion::Exact(v) => ("exact", v),
        ExpectedVersion::Any => ("any", 0),
    }
}

impl PostgresStore {
    /// The arrays of `scaidrive_append` for `request`, with the chain
    /// computed from the remembered heads (the function refuses to write if
    /// they are not current).
    fn prepare(&self, request: &AppendRequest) -> Result<Prepared, StoreError> {
        let mut order: Vec<&StreamAppend> = request.streams.iter().collect();
        order.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        let assumed: HashMap<&str, (i64, String)> = {
            let mut heads = self.written.heads.lock();
            order
                .iter()
                .map(|s| {
                    let head = heads
                        .get(&s.stream_id)
                        .cloned()
                        .unwrap_or((0, String::new()));
                    (s.stream_id.as_str(), head)
                })
                .collect()
        };

        let n: usize = request.streams.iter().map(|s| s.events.len()).sum();
        let mut p = Prepared::with_capacity(order.len(), n, request.claims.len());
        let mut new_heads: HashMap<&str, (i64, String)> = HashMap::new();
        for s in &request.streams {
            let (mut version, mut prev) = assumed
                .get(s.stream_id.as_str())
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
                p.e_stream.push(s.stream_id.clone());
                p.e_version.push(version);
                p.e_id.push(e.event_id);
                p.e_type.push(e.event_type.clone());
                p.e_schema.push(e.schema_version);
                p.e_tenant.push(e.tenant_id.clone());
                p.e_data.push(e.data.clone());
                p.e_meta.push(
                    serde_json::to_value(&e.metadata)
                        .map_err(|x| StoreError::Invalid(x.to_string()))?,
                );
                p.e_hash.push(hash.clone());
                p.recorded.push(RecordedEvent {
                    log: LogPosition::START,
                    stream_id: s.stream_id.clone(),
                    stream_version: version,
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    tenant_id: e.tenant_id.clone(),
                    data: e.data.clone(),
                    metadata: e.metadata.clone(),
                    recorded_at: p.now,
                    hash: hash.clone(),
                });
                prev = hash;
            }
            new_heads.insert(s.stream_id.as_str(), (version, prev));
        }

        for s in &order {
            let (kind, v) = expected_code(s.expected);
            let (av, ah) = assumed
                .get(s.stream_id.as_str())
                .cloned()
                .unwrap_or((0, String::new()));
            let (nv, nh) = new_heads
                .get(s.stream_id.as_str())
                .cloned()
                .unwrap_or((av, ah.clone()));
            p.p_streams.push(s.stream_id.clone());
            p.p_expected.push(kind);
            p.p_expected_version.push(v);
            p.p_assumed_version.push(av);
            p.p_assumed_hash.push(ah);
            p.p_new_version.push(nv);
            p.p_new_hash.push(nh);
            p.p_tenant
                .push(s.events.first().and_then(|e| e.tenant_id.clone()));
            p.expected.push(s.expected);
        }

        for claim in &request.claims {
            let (op, scope, key, owner) = match claim {
                ClaimOp::Claim { scope, key, owner } => ("claim", scope, key, owner),
                ClaimOp::Release { scope, key, owner } => ("release", scope, key, owner),
            };
            p.c_op.push(op);
            p.c_scope.push(scope.clone());
            p.c_key.push(key.clone());
            p.c_owner.push(owner.clone());
        }
        p.idem_key = request.idempotency.as_ref().map(|i| i.key.clone());
        p.idem_outcome = request.idempotency.as_ref().map(|i| i.outcome.clone());
        Ok(p)
    }
}

/// The bookkeeping around commits: remembered heads, the in-process wake-up
/// and the notification of other processes.
struct Written {
    /// Stream heads (version, last hash) as last written or read here: the
    /// chain of an append is computed from them, and the database checks
    /// they are still current.
    heads: Mutex<lru::LruCache<String, (i64, String)>>,
    wake: broadcast::Sender<()>,
    /// Asks the notifier task to tell other processes about new commits.
    notify_others: Arc<tokio::sync::Notify>,
}

impl Written {
    /// After a commit of `events`: remember their heads, wake the
    /// subscribers here and tell the other processes.
    fn committed(&self, events: &[RecordedEvent]) {
        if events.is_empty() {
            return;
        }
        self.remember_heads(events);
        let _ = self.wake.send(());
        self.notify_others.notify_one();
    }

    /// Remembers the heads the given events leave behind (never going back).
    fn remember_heads(&self, events: &[RecordedEvent]) {
        let mut heads = self.heads.lock();
        for e in events {
            let newer = heads
                .peek(&e.stream_id)
                .is_none_or(|(v, _)| *v < e.stream_version);
            if newer {
                heads.put(e.stream_id.clone(), (e.stream_version, e.hash.clone()));
            }
        }
    }

    /// What a committed (or idempotently repeated) append answers; remembers
    /// the heads it left and wakes the subscribers.
    fn finish(&self, p: Prepared, answer: Answer) -> FastOutcome {
        let (status, outcome, ids, positions, commits) = answer;
        if status == "duplicate" {
            return FastOutcome::Done(AppendOutcome::Duplicate(outcome.unwrap_or(Value::Null)));
        }
        let by_id: HashMap<Uuid, (i64, i64)> = ids
            .unwrap_or_default()
            .into_iter()
            .zip(
                commits
                    .unwrap_or_default()
                    .into_iter()
                    .zip(positions.unwrap_or_default()),
            )
            .collect();
        let mut recorded = p.recorded;
        for r in &mut recorded {
            if let Some((c, pos)) = by_id.get(&r.event_id) {
                r.log = LogPosition::new(*c, *pos);
            }
        }
        self.committed(&recorded);
        let last = recorded.iter().map(|e| e.log).max();
        FastOutcome::Done(AppendOutcome::Committed(Appended {
            events: recorded,
            last,
        }))
    }
}

/// What `scaidrive_append` answers: status, stored outcome of a repeated
/// idempotency key, and the ids, positions and commit ids of the events.
type Answer = (
    String,
    Option<Value>,
    Option<Vec<Uuid>>,
    Option<Vec<i64>>,
    Option<Vec<i64>>,
);

/// One append in the form `scaidrive_append` takes it (parallel arrays,
/// streams in sorted order), with the events as they will be recorded.
struct Prepared {
    p_streams: Vec<String>,
    p_expected: Vec<&'static str>,
    p_expected_version: Vec<i64>,
    p_assumed_version: Vec<i64>,
    p_assumed_hash: Vec<String>,
    p_new_version: Vec<i64>,
    p_new_hash: Vec<String>,
    p_tenant: Vec<Option<String>>,
    /// The expectation of each stream, in `p_streams` order.
    expected: Vec<ExpectedVersion>,
    e_stream: Vec<String>,
    e_version: Vec<i64>,
    e_id: Vec<Uuid>,
    e_type: Vec<String>,
    e_schema: Vec<i32>,
    e_tenant: Vec<Option<String>>,
    e_data: Vec<Value>,
    e_meta: Vec<Value>,
    e_hash: Vec<String>,
    c_op: Vec<&'static str>,
    c_scope: Vec<String>,
    c_key: Vec<String>,
    c_owner: Vec<String>,
    idem_key: Option<String>,
    idem_outcome: Option<Value>,
    now: DateTime<Utc>,
    recorded: Vec<RecordedEvent>,
}

impl Prepared {
    fn with_capacity(streams: usize, events: usize, claims: usize) -> Self {
        Self {
            p_streams: Vec::with_capacity(streams),
            p_expected: Vec::with_capacity(streams),
            p_expected_version: Vec::with_capacity(streams),
            p_assumed_version: Vec::with_capacity(streams),
            p_assumed_hash: Vec::with_capacity(streams),
            p_new_version: Vec::with_capacity(streams),
            p_new_hash: Vec::with_capacity(streams),
            p_tenant: Vec::with_capacity(streams),
            expected: Vec::with_capacity(streams),
            e_stream: Vec::with_capacity(events),
            e_version: Vec::with_capacity(events),
            e_id: Vec::with_capacity(events),
            e_type: Vec::with_capacity(events),
            e_schema: Vec::with_capacity(events),
            e_tenant: Vec::with_capacity(events),
            e_data: Vec::with_capacity(events),
            e_meta: Vec::with_capacity(events),
            e_hash: Vec::with_capacity(events),
            c_op: Vec::with_capacity(claims),
            c_scope: Vec::with_capacity(claims),
            c_key: Vec::with_capacity(claims),
            c_owner: Vec::with_capacity(claims),
            idem_key: None,
            idem_outcome: None,
            now: Utc::now(),
            recorded: Vec::with_capacity(events),
        }
    }
}

/// An error `scaidrive_append` raised for one append.
struct Failure {
    code: Option<String>,
    message: String,
    constraint: Option<String>,
}

impl Failure {
    /// The store's answer, or `None` for an error that is not the
    /// function's own (the caller maps the driver error).
    fn outcome(&self, p: &Prepared) -> Option<Result<FastOutcome, StoreError>> {
        let corrupt = |e: serde_json::Error| {
            StoreError::Backend(format!("unreadable answer of scaidrive_append: {e}"))
        };
        let unique = self.code.as_deref() == Some("23505");
        Some(match self.code.as_deref() {
            Some("SD409") => match serde_json::from_str::<ConflictInfo>(&self.message) {
                Ok(info) => {
                    let expected = p
                        .p_streams
                        .iter()
                        .zip(&p.expected)
                        .find(|(s, _)| **s == info.stream)
                        .map(|(_, e)| *e)
                        .unwrap_or(ExpectedVersion::Any);
                    Err(StoreError::Conflict {
                        stream: info.stream,
                        expected,
                        actual: info.actual,
                    })
                }
                Err(e) => Err(corrupt(e)),
            },
            Some("SD412") => serde_json::from_str::<Vec<(String, i64, String)>>(&self.message)
                .map(FastOutcome::Stale)
                .map_err(corrupt),
            Some("SD423") => match serde_json::from_str::<ClaimInfo>(&self.message) {
                Ok(info) => Err(StoreError::ClaimTaken {
                    scope: info.scope,
                    key: info.key,
                    holder: info.holder,
                }),
                Err(e) => Err(corrupt(e)),
            },
            _ if unique && self.constraint.as_deref() == Some("events_event_id_key") => {
                Err(StoreError::Invalid("duplicate event id".into()))
            }
            code if unique || retryable(code) => Err(anonymous_conflict()),
            _ => return None,
        })
    }
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
        // One statement per attempt, written with whatever other appends
        // queued meanwhile (group commit), unless a test hook needs the open
        // transaction; heads that keep moving under us fall back to it too.
        if delay.is_none() {
            for _ in 0..FAST_ATTEMPTS {
                match self.group.append(self.prepare(&request)?).await? {
                    FastOutcome::Done(outcome) => return Ok(outcome),
                    FastOutcome::Stale(current) => {
                        let mut heads = self.written.heads.lock();
                        for (stream, version, hash) in current {
                            heads.put(stream, (version, hash));
                        }
                    }
                    FastOutcome::Alone => break,
                }
            }
        }
        let mut tx = self.pool.begin().await.map_err(err)?;
        match append_in(&mut tx, &request).await {
            Ok(Ok(appended)) => {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                tx.commit().await.map_err(err)?;
                self.written.committed(&appended.events);
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
        let events = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
        if let Some(last) = events.last() {
            self.written.remember_heads(std::slice::from_ref(last));
        }
        Ok(events)
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
        self.written.wake.subscribe()
    }

    async fn verify_range(
        &self,
        tenant_id: Option<&str>,
        range: VerifyRange,
    ) -> Result<VerifyReport, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY stream_id, stream_version"
        );
        let mut rows = sqlx::query(&sql).bind(tenant_id).fetch(&self.pool);
        let mut chains = ChainVerifier::new(range);
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
