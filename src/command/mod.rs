//! Command handling: load aggregates (from an in-memory cache of recent states,
//! caught up from the store, or for single-aggregate commands taken from the
//! cache as is), decide, append with expected versions, and retry the whole
//! decision on a concurrency conflict.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use scaidrive_domain::{
    Actor, Aggregate, DomainError, DomainEvent, EventMetadata, LogPosition, NewEvent, RecordedEvent,
};
use serde_json::Value;
use uuid::Uuid;

use crate::store::{
    AppendOutcome, AppendRequest, ClaimOp, DynStore, ExpectedVersion, Idempotency, StoreError,
    StreamAppend,
};

pub mod admin;
mod batch;
pub mod connectors;
pub mod drive;
pub mod groups;
pub mod links;
pub mod permissions;
pub mod provision;
pub mod quota;
pub mod retention;
pub mod shares;
pub mod sharing;
mod stripes;
pub mod sync;
pub mod uploads;
pub mod webhooks;
pub mod write;
pub use stripes::StreamLocks;

/// How many times a command is decided again after a concurrency conflict.
pub const MAX_ATTEMPTS: usize = 8;

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(StoreError),
    /// A stored event could not be decoded into its aggregate's event type.
    #[error("corrupt event in stream {stream}: {message}")]
    Corrupt { stream: String, message: String },
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        CommandError::Store(e)
    }
}

impl CommandError {
    /// A concurrency conflict that deciding again may resolve.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CommandError::Store(StoreError::Conflict { .. }))
    }
}

/// Who is acting and in which request; stamped on every event.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub tenant_id: Option<String>,
    pub actor: Actor,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub now: DateTime<Utc>,
}

impl CommandContext {
    /// A context for work the system does on its own (no user).
    pub fn system(tenant_id: Option<String>) -> Self {
        Self {
            tenant_id,
            actor: Actor::default(),
            correlation_id: None,
            causation_id: None,
            now: Utc::now(),
        }
    }

    fn metadata(&self) -> EventMetadata {
        EventMetadata {
            occurred_at: self.now,
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
        }
    }
}

/// A state loaded for deciding, with the version it was read at.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    /// `None` when the stream does not exist.
    pub version: Option<i64>,
}

impl<A> Loaded<A> {
    pub fn exists(&self) -> bool {
        self.version.is_some()
    }
}

struct CacheEntry {
    version: i64,
    state: Arc<dyn Any + Send + Sync>,
}

/// Loads, decides and appends. One per process, shared.
pub struct CommandBus {
    store: DynStore,
    metrics: Arc<crate::metrics::Metrics>,
    cache: Arc<Mutex<lru::LruCache<String, CacheEntry>>>,
    locks: StreamLocks,
    pipes: batch::Pipes,
}

/// What a committed unit of work wrote.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub events: Vec<RecordedEvent>,
    /// Log position of the last event (read-your-writes token).
    pub position: Option<LogPosition>,
    /// Set when an idempotency key had already been used: the stored outcome.
    pub replayed: Option<Value>,
}

impl CommandBus {
    pub fn new(store: DynStore, cache_entries: usize) -> Self {
        let cap = NonZeroUsize::new(cache_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            store,
            metrics: Arc::new(crate::metrics::Metrics::default()),
            cache: Arc::new(Mutex::new(lru::LruCache::new(cap))),
            locks: StreamLocks::new(1024),
            pipes: batch::Pipes::new(4096),
        }
    }

    /// The process's metrics (shared with the HTTP layer).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// In-process serialisation of commands on hot streams.
    pub fn locks(&self) -> &StreamLocks {
        &self.locks
    }

    /// The cached state of a stream, without asking the store (may be stale;
    /// for advisory reads such as rate-limit settings).
    pub fn peek<A: Aggregate>(&self, stream_id: &str) -> Option<A> {
        let mut cache = self.cache.lock();
        cache
            .get(stream_id)
            .and_then(|e| e.state.clone().downcast::<A>().ok())
            .map(|s| (*s).clone())
    }

    /// The cached state and version of a stream, without asking the store.
    fn cached<A: Aggregate>(&self, stream_id: &str) -> Option<(A, i64)> {
        let mut cache = self.cache.lock();
        cache.get(stream_id).and_then(|e| {
            e.state
                .clone()
                .downcast::<A>()
                .ok()
                .map(|s| ((*s).clone(), e.version))
        })
    }

    /// Loads an aggregate: the cached state (if any) caught up with the store.
    pub async fn load<A: Aggregate>(&self, stream_id: &str) -> Result<Loaded<A>, CommandError> {
        let cached = self.cached::<A>(stream_id);
        let (mut state, mut version) = match cached {
            Some((s, v)) => (s, Some(v)),
            None => (A::default(), None),
        };
        let start = version.unwrap_or(0);
        let mut after = start;
        loop {
            let batch = self.store.read_stream(stream_id, after, 1000).await?;
            let n = batch.len();
            for rec in &batch {
                let event: A::Event = rec.decode().map_err(|e| CommandError::Corrupt {
                    stream: stream_id.to_owned(),
                    message: format!("{} v{}: {e}", rec.event_type, rec.stream_version),
                })?;
                state.evolve(&event);
                after = rec.stream_version;
                version = Some(rec.stream_version);
            }
            if n < 1000 {
                break;
            }
        }
        if let Some(v) = version {
            if v != start || start == 0 {
                self.remember(stream_id, v, state.clone());
            }
        }
        Ok(Loaded { state, version })
    }

    fn remember<A: Aggregate>(&self, stream_id: &str, version: i64, state: A) {
        let mut cache = self.cache.lock();
        let newer = cache.peek(stream_id).is_none_or(|e| e.version < version);
        if newer {
            cache.put(
                stream_id.to_owned(),
                CacheEntry {
                    version,
                    state: Arc::new(state),
                },
            );
        }
    }

    /// Starts a unit of work: load several aggregates, stage their events and
    /// claims, and commit them atomically.
    pub fn begin(&self, ctx: &CommandContext) -> UnitOfWork<'_> {
        UnitOfWork {
            bus: self,
            ctx: ctx.clone(),
            streams: BTreeMap::new(),
            claims: Vec::new(),
            idempotency: None,
        }
    }

    /// Runs `attempt` until it commits or fails with something other than a
    /// concurrency conflict, at most [`MAX_ATTEMPTS`] times.
    pub async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, CommandError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CommandError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(e) if e.is_retryable() && tries < MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, tries, "concurrency conflict, deciding again");
                    tokio::task::yield_now().await;
                }
                other => return other,
            }
        }
    }

    /// Appends events to a stream that belongs to no aggregate (the access
    /// log), after whatever is there: nothing is decided on the stream's
    /// state, so there is no version to check and nothing to retry.
    pub async fn record<E: DomainEvent>(
        &self,
        stream_id: &str,
        ctx: &CommandContext,
        events: &[E],
    ) -> Result<Committed, CommandError> {
        let meta = ctx.metadata();
        let events = events
            .iter()
            .map(|e| {
                let (event_type, data) = e.encode();
                NewEvent {
                    event_id: Uuid::now_v7(),
                    schema_version: E::schema_version(&event_type),
                    event_type,
                    tenant_id: ctx.tenant_id.clone(),
                    data,
                    metadata: meta.clone(),
                }
            })
            .collect();
        let request = AppendRequest {
            streams: vec![StreamAppend {
                stream_id: stream_id.to_owned(),
                expected: ExpectedVersion::Any,
                events,
            }],
            ..Default::default()
        };
        match self.store.append(request).await? {
            AppendOutcome::Committed(appended) => {
                self.metrics
                    .events_appended(appended.events.iter().map(|e| e.event_type.as_str()));
                Ok(Committed {
                    events: appended.events,
                    position: appended.last,
                    replayed: None,
                })
            }
            AppendOutcome::Duplicate(outcome) => Ok(Committed {
                replayed: Some(outcome),
                ..Default::default()
            }),
        }
    }

    /// One command decided on one aggregate's stream: [`Self::execute`]
    /// with the aggregate's own `decide`.
    pub async fn run<A: Aggregate>(
        &self,
        stream_id: &str,
        ctx: &CommandContext,
        cmd: &A::Command,
    ) -> Result<(A, Committed), CommandError> {
        self.execute::<A, _>(stream_id, ctx, |l| l.state.decide(cmd))
            .await
    }

    /// The common case: one aggregate, one decision, retried on conflict.
    ///
    /// Decisions on one stream are made one at a time inside the process,
    /// and the appends of commands that arrive while one is on its way are
    /// gathered into one (see [`batch`]). The first attempt decides on the
    /// cached state without asking the store (the append's expected version
    /// catches a cache another process made stale, and the retry then
    /// catches up). A decision on the cached state that writes nothing or is
    /// refused is made again on the caught-up state, as no append would
    /// check it.
    pub async fn execute<A, F>(
        &self,
        stream_id: &str,
        ctx: &CommandContext,
        decide: F,
    ) -> Result<(A, Committed), CommandError>
    where
        A: Aggregate,
        F: Fn(&Loaded<A>) -> Result<Vec<A::Event>, DomainError>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.execute_once(stream_id, ctx, &decide, tries == 1).await {
                Err(e) if e.is_retryable() && tries < MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, tries, "concurrency conflict, deciding again");
                    tokio::task::yield_now().await;
                }
                other => return other,
            }
        }
    }
}

struct Staged {
    expected: ExpectedVersion,
    version: Option<i64>,
    events: Vec<NewEvent>,
    state: Option<Arc<dyn Any + Send + Sync>>,
}

/// Aggregates loaded and events staged for one atomic append.
pub struct UnitOfWork<'a> {
    bus: &'a CommandBus,
    ctx: CommandContext,
    streams: BTreeMap<String, Staged>,
    claims: Vec<ClaimOp>,
    idempotency: Option<Idempotency>,
}

impl UnitOfWork<'_> {
    pub fn context(&self) -> &CommandContext {
        &self.ctx
    }

    /// Loads an aggregate and records the version the decision is based on.
    pub async fn load<A: Aggregate>(&mut self, stream_id: &str) -> Result<Loaded<A>, CommandError> {
        let loaded = self.bus.load::<A>(stream_id).await?;
        self.track(stream_id, loaded.version);
        Ok(loaded)
    }

    fn track(&mut self, stream_id: &str, version: Option<i64>) {
        let expected = match version {
            Some(v) => ExpectedVersion::Exact(v),
            None => ExpectedVersion::NoStream,
        };
        self.streams.entry(stream_id.to_owned()).or_insert(Staged {
            expected,
            version,
            events: Vec::new(),
            state: None,
        });
    }

    /// Stages events for a stream loaded in this unit of work, or for a new
    /// stream that must not exist yet.
    pub fn emit<A: Aggregate>(
        &mut self,
        stream_id: &str,
        events: &[A::Event],
    ) -> Result<(), CommandError> {
        self.emit_with_state::<A>(stream_id, events, None)
    }

    /// Like [`emit`](Self::emit), also caching the state after the events.
    pub fn emit_with_state<A: Aggregate>(
        &mut self,
        stream_id: &str,
        events: &[A::Event],
        state_after: Option<A>,
    ) -> Result<(), CommandError> {
        if events.is_empty() {
            return Ok(());
        }
        let meta = self.ctx.metadata();
        let tenant = self.ctx.tenant_id.clone();
        let staged = self.streams.entry(stream_id.to_owned()).or_insert(Staged {
            expected: ExpectedVersion::NoStream,
            version: None,
            events: Vec::new(),
            state: None,
        });
        for e in events {
            let (event_type, data) = e.encode();
            staged.events.push(NewEvent {
                event_id: Uuid::now_v7(),
                schema_version: A::Event::schema_version(&event_type),
                event_type,
                tenant_id: tenant.clone(),
                data,
                metadata: meta.clone(),
            });
        }
        if let Some(s) = state_after {
            staged.state = Some(Arc::new(s));
        }
        Ok(())
    }

    /// Claims a unique `(scope, key)` for `owner` in the same transaction.
    pub fn claim(
        &mut self,
        scope: impl Into<String>,
        key: impl Into<String>,
        owner: impl Into<String>,
    ) {
        self.claims.push(ClaimOp::Claim {
            scope: scope.into(),
            key: key.into(),
            owner: owner.into(),
        });
    }

    /// Releases a claim held by `owner` in the same transaction.
    pub fn release(
        &mut self,
        scope: impl Into<String>,
        key: impl Into<String>,
        owner: impl Into<String>,
    ) {
        self.claims.push(ClaimOp::Release {
            scope: scope.into(),
            key: key.into(),
            owner: owner.into(),
        });
    }

    /// Stores `outcome` under `key`; a later commit with the same key appends
    /// nothing and gets the stored outcome back.
    pub fn idempotent(&mut self, key: impl Into<String>, outcome: Value) {
        self.idempotency = Some(Idempotency {
            key: key.into(),
            outcome,
        });
    }

    /// Whether anything is staged.
    pub fn has_changes(&self) -> bool {
        !self.claims.is_empty() || self.streams.values().any(|s| !s.events.is_empty())
    }

    /// Appends everything staged, all or nothing. Streams that were only
    /// loaded are checked too: the decision was based on their version.
    pub async fn commit(self) -> Result<Committed, CommandError> {
        let bus = self.bus;
        if !self.has_changes() && self.idempotency.is_none() {
            return Ok(Committed::default());
        }
        let mut cache_updates = Vec::new();
        let mut streams = Vec::with_capacity(self.streams.len());
        for (stream_id, staged) in self.streams {
            if !staged.events.is_empty() {
                if let Some(state) = staged.state {
                    let v = staged.version.unwrap_or(0) + staged.events.len() as i64;
                    cache_updates.push((stream_id.clone(), v, state));
                }
            }
            streams.push(StreamAppend {
                stream_id,
                expected: staged.expected,
                events: staged.events,
            });
        }
        let request = AppendRequest {
            streams,
            claims: self.claims,
            idempotency: self.idempotency,
        };
        match bus.store.append(request).await {
            Ok(AppendOutcome::Committed(appended)) => {
                bus.metrics
                    .events_appended(appended.events.iter().map(|e| e.event_type.as_str()));
                let mut cache = bus.cache.lock();
                for (stream_id, version, state) in cache_updates {
                    cache.put(stream_id, CacheEntry { version, state });
                }
                Ok(Committed {
                    events: appended.events,
                    position: appended.last,
                    replayed: None,
                })
            }
            Ok(AppendOutcome::Duplicate(outcome)) => Ok(Committed {
                replayed: Some(outcome),
                ..Default::default()
            }),
            Err(StoreError::ClaimTaken { key, .. }) => {
                Err(CommandError::Domain(DomainError::NameConflict(key)))
            }
            Err(e) => Err(e.into()),
        }
    }
}
