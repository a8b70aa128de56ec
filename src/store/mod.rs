//! The event store: the `EventStore` trait, its request/answer types and typed
//! errors. Backends live beside this file (`sqlite.rs`, `postgres.rs`) and all
//! pass the one conformance suite in `tests/store/`.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::{LogPosition, NewEvent, RecordedEvent};
use scaidrive_projections::db::Db;
use serde_json::Value;
use tokio::sync::broadcast;

pub mod postgres;
pub mod sqlite;

/// What the writer believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event has exactly this version (1-based).
    Exact(i64),
    /// No check: append after whatever is there.
    Any,
}

/// Events for one stream inside an [`AppendRequest`].
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// A unique `(scope, key)` row claimed or released in the append transaction
/// (sibling names: scope = parent, key = normalised name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOp {
    /// Insert the claim; if another owner holds it the whole append fails
    /// with [`StoreError::ClaimTaken`]. Re-claiming one's own key is a no-op.
    Claim {
        scope: String,
        key: String,
        owner: String,
    },
    /// Delete the claim if this owner holds it.
    Release {
        scope: String,
        key: String,
        owner: String,
    },
}

/// An idempotency key and the outcome to store with it.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub outcome: Value,
}

/// Everything one command wants committed, all-or-nothing.
#[derive(Debug, Clone, Default)]
pub struct AppendRequest {
    pub streams: Vec<StreamAppend>,
    pub claims: Vec<ClaimOp>,
    pub idempotency: Option<Idempotency>,
}

/// What a successful append committed.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The recorded events, in the order given.
    pub events: Vec<RecordedEvent>,
    /// The log position of the last event written (the read-your-writes token);
    /// `None` when the request held no events.
    pub last: Option<LogPosition>,
}

/// The answer to an append.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    Committed(Appended),
    /// The idempotency key was already used: nothing was appended and this is
    /// the outcome stored with it the first time.
    Duplicate(Value),
}

/// Narrows a log read (all given conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub tenant_id: Option<String>,
    pub stream_id: Option<String>,
    pub event_type: Option<String>,
}

/// One broken link found by the hash-chain verifier.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BrokenLink {
    pub stream_id: String,
    pub stream_version: i64,
    pub position: i64,
    pub expected_hash: String,
    pub stored_hash: String,
}

/// The verifier's report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub events_checked: u64,
    pub streams_checked: u64,
    /// The first broken link in log order, if any.
    pub first_broken: Option<BrokenLink>,
    /// The earliest and latest `occurred_at` among the checked events.
    pub first_occurred_at: Option<DateTime<Utc>>,
    pub last_occurred_at: Option<DateTime<Utc>>,
}

/// Which events a verification checks: those whose `occurred_at` (the
/// timestamp the audit view filters on) lies in `[from, to]`; an open end is
/// unbounded. The first checked event of a stream is linked to the stored
/// hash of the stream's event before it, which is itself outside the range
/// and not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl VerifyRange {
    /// Whether an event that occurred at `at` is checked.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at <= t)
    }
}

/// Store failures, typed so callers can decide without string matching.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(
        "concurrency conflict on stream {stream}: expected {expected:?}, actual version {actual:?}"
    )]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: Option<i64>,
    },
    #[error("claim ({scope}, {key}) is held by {holder}")]
    ClaimTaken {
        scope: String,
        key: String,
        holder: String,
    },
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Maps a driver error: connection-level failures become `Unavailable`.
    pub fn from_sqlx(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => Self::Unavailable(err.to_string()),
            sqlx::Error::Database(ref d) if d.code().as_deref().is_some_and(server_unavailable) => {
                Self::Unavailable(err.to_string())
            }
            other => Self::Backend(other.to_string()),
        }
    }
}

/// SQLSTATEs saying the server itself is going away, starting up or out of
/// connections (a PostgreSQL shutdown or crash reports these on open
/// connections before they drop): the request may succeed once it is back.
fn server_unavailable(code: &str) -> bool {
    code.starts_with("08") // connection_exception
        || code.starts_with("53") // insufficient_resources (too many connections, ...)
        || matches!(code, "57P01" | "57P02" | "57P03") // admin/crash shutdown, cannot connect now
}

/// The log, with its guarantees (ARCHITECTURE.md "The event store").
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events to one or more streams, applies claims and stores the
    /// idempotency outcome, in one transaction.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// Events of one stream with `stream_version > after_version`, in order, at most `limit`.
    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The current version of a stream (`None` if it does not exist).
    async fn stream_version(&self, stream_id: &str) -> Result<Option<i64>, StoreError>;

    /// The global log strictly after `after`, in log order, at most `limit`
    /// events, never skipping an event that commits later (gap-safe).
    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Like [`read_all`](Self::read_all), keeping only events that match `filter`.
    async fn read_filtered(
        &self,
        after: LogPosition,
        limit: usize,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the newest event a gap-safe reader can see now.
    async fn head(&self) -> Result<LogPosition, StoreError>;

    /// The stored outcome of an idempotency key, if it was used.
    async fn idempotent_outcome(&self, key: &str) -> Result<Option<Value>, StoreError>;

    /// Who holds a claim, if anyone.
    async fn claim_holder(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError>;

    /// A wake-up signal: a value is sent after new events may have become
    /// visible (a commit in this process, or a notification from another).
    /// Subscribers then `read_all` from their checkpoint; they should also
    /// re-read on a timer, as a lagging receiver may miss a signal.
    fn subscribe(&self) -> broadcast::Receiver<()>;

    /// Recomputes the hash chains of all streams (optionally of one tenant)
    /// and reports the first broken link.
    async fn verify(&self, tenant_id: Option<&str>) -> Result<VerifyReport, StoreError> {
        self.verify_range(tenant_id, VerifyRange::default()).await
    }

    /// Like [`verify`](Self::verify), checking only the events in `range`.
    async fn verify_range(
        &self,
        tenant_id: Option<&str>,
        range: VerifyRange,
    ) -> Result<VerifyReport, StoreError>;

    /// Checks the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A shared handle to whichever backend is configured.
pub type DynStore = Arc<dyn EventStore>;

// Request checks shared by every backend.

/// Checks a request's shape before touching the database.
pub(crate) fn validate_request(request: &AppendRequest) -> Result<(), StoreError> {
    let mut seen = BTreeSet::new();
    for s in &request.streams {
        if s.stream_id.is_empty() {
            return Err(StoreError::Invalid("empty stream id".into()));
        }
        if !seen.insert(s.stream_id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "stream {} appears twice in one append",
                s.stream_id
            )));
        }
        if let ExpectedVersion::Exact(v) = s.expected {
            if v < 1 {
                return Err(StoreError::Invalid(format!(
                    "expected version {v} of {} is below 1",
                    s.stream_id
                )));
            }
        }
    }
    Ok(())
}

/// Whether a stream head satisfies the expectation.
pub(crate) fn check_expected(
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<i64>,
) -> Result<(), StoreError> {
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual.is_none(),
        ExpectedVersion::Exact(v) => actual == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            stream: stream.to_owned(),
            expected,
            actual,
        })
    }
}

/// Opens the event store on the backend the database handle points at.
pub async fn open(db: &Db) -> Result<DynStore, StoreError> {
    match db {
        Db::Sqlite(s) => Ok(Arc::new(sqlite::SqliteStore::new(s.clone()))),
        Db::Postgres(p) => Ok(Arc::new(postgres::PostgresStore::new(p.clone()).await?)),
    }
}

/// Recomputes hash chains from events fed in stream order, remembering the
/// earliest (by log position) broken link. Events outside the range only
/// pass their stored hash on to the next event of their stream.
#[derive(Debug, Default)]
pub(crate) struct ChainVerifier {
    range: VerifyRange,
    /// The current stream: id, the hash its next event links to, whether it
    /// is broken already, whether it was counted.
    current: Option<(String, String, bool, bool)>,
    events: u64,
    streams: u64,
    first_broken: Option<BrokenLink>,
    first_at: Option<DateTime<Utc>>,
    last_at: Option<DateTime<Utc>>,
}

impl ChainVerifier {
    /// A verifier that checks only the events in `range`.
    pub(crate) fn new(range: VerifyRange) -> Self {
        ChainVerifier {
            range,
            ..ChainVerifier::default()
        }
    }

    pub(crate) fn check(&mut self, e: &RecordedEvent) {
        let same = self
            .current
            .as_ref()
            .is_some_and(|(s, _, _, _)| *s == e.stream_id);
        if !same {
            self.current = Some((e.stream_id.clone(), String::new(), false, false));
        }
        let Some((_, prev, broken, counted)) = self.current.as_mut() else {
            return;
        };
        let at = e.metadata.occurred_at;
        if !self.range.contains(at) {
            if !*broken {
                *prev = e.hash.clone();
            }
            return;
        }
        self.events += 1;
        if !*counted {
            *counted = true;
            self.streams += 1;
        }
        self.first_at = Some(self.first_at.map_or(at, |f| f.min(at)));
        self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
        if *broken {
            return;
        }
        let expected = scaidrive_domain::event::chain_hash(
            prev,
            &scaidrive_domain::event::HashInput {
                stream_id: &e.stream_id,
                stream_version: e.stream_version,
                event_id: e.event_id,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                tenant_id: e.tenant_id.as_deref(),
                data: &e.data,
                metadata: &e.metadata,
            },
        );
        if expected != e.hash {
            *broken = true;
            let link = BrokenLink {
                stream_id: e.stream_id.clone(),
                stream_version: e.stream_version,
                position: e.log.position,
                expected_hash: expected,
                stored_hash: e.hash.clone(),
            };
            if self
                .first_broken
                .as_ref()
                .is_none_or(|b| link.position < b.position)
            {
                self.first_broken = Some(link);
            }
        } else {
            *prev = e.hash.clone();
        }
    }

    pub(crate) fn report(self) -> VerifyReport {
        VerifyReport {
            events_checked: self.events,
            streams_checked: self.streams,
            first_broken: self.first_broken,
            first_occurred_at: self.first_at,
            last_occurred_at: self.last_at,
        }
    }
}
