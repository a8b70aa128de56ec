//! Group commit within one stream.
//!
//! Commands on one stream are decided one at a time, under the stream's
//! lock, but their appends need not wait for each other. While one append
//! is on its way to the store, the commands that arrive decide on the state
//! that append will leave, and their events gather into the next append. That
//! one goes out as soon as the one before it is stored: one append, with one
//! expected version, carries every command that arrived meanwhile, each
//! event with its own command's metadata, and each command gets back exactly
//! its own recorded events.
//!
//! A refused command stages nothing, so it never sinks the others; a refusal
//! (or a no-op) decided on a state not yet stored is only answered once that
//! state is. When an append fails, every command in it, and every command
//! gathered behind it (decided on a state that was never stored), gets a
//! concurrency conflict and decides again on the stored state. The expected
//! version makes a decision on a stale state impossible to store, whichever
//! process made it, so limits decided on the state (download caps) stay
//! exact.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use scaidrive_domain::{Aggregate, DomainEvent, LogPosition, NewEvent, RecordedEvent};
use tokio::sync::watch;
use uuid::Uuid;

use super::{CacheEntry, CommandBus, CommandContext, CommandError, Committed, Loaded};
use crate::store::{AppendOutcome, AppendRequest, ExpectedVersion, StoreError, StreamAppend};

/// How an append ended, as the commands in it see it.
#[derive(Debug, Clone)]
enum Outcome {
    Pending,
    Stored(Arc<Vec<RecordedEvent>>),
    Failed(StoreError),
}

impl Outcome {
    fn is_pending(&self) -> bool {
        matches!(self, Outcome::Pending)
    }
}

/// Waits until the append behind `rx` has ended.
async fn ended(rx: &mut watch::Receiver<Outcome>) -> Outcome {
    match rx.wait_for(|o| !o.is_pending()).await {
        Ok(o) => o.clone(),
        // The appending task is gone without a word: nothing is known to be
        // stored, so the commands decide again.
        Err(_) => Outcome::Failed(conflict("the append was abandoned")),
    }
}

fn conflict(why: &str) -> StoreError {
    StoreError::Conflict {
        stream: why.to_owned(),
        expected: ExpectedVersion::Any,
        actual: None,
    }
}

/// The append gathering commands, not yet sent.
struct Gathering<A> {
    id: u64,
    /// The state after every gathered event.
    state: A,
    /// The version the first gathered event follows (`None`: no stream yet).
    base: Option<i64>,
    events: Vec<NewEvent>,
    done: watch::Sender<Outcome>,
}

impl<A> Gathering<A> {
    fn version_after(&self) -> Option<i64> {
        match (self.base, self.events.len() as i64) {
            (b, 0) => b,
            (b, n) => Some(b.unwrap_or(0) + n),
        }
    }
}

/// The append last sent: the state and version it leaves, and how it ended.
struct Sent<A> {
    state: A,
    version: Option<i64>,
    done: watch::Receiver<Outcome>,
}

/// One stream's appends: the one gathering and the one last sent.
struct Pipe<A> {
    open: Option<Gathering<A>>,
    sent: Option<Sent<A>>,
}

type SharedPipe<A> = Arc<Mutex<Pipe<A>>>;

/// The pipes of recently written streams. Losing one (evicted while in use)
/// costs at most a concurrency conflict and a retry: the store checks every
/// append's expected version.
pub(super) struct Pipes {
    pipes: Mutex<lru::LruCache<String, Arc<dyn Any + Send + Sync>>>,
    next_id: AtomicU64,
}

impl Pipes {
    pub(super) fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            pipes: Mutex::new(lru::LruCache::new(cap)),
            next_id: AtomicU64::new(1),
        }
    }

    fn get<A: Aggregate>(&self, stream_id: &str) -> SharedPipe<A> {
        let mut pipes = self.pipes.lock();
        if let Some(p) = pipes.get(stream_id) {
            if let Ok(p) = p.clone().downcast::<Mutex<Pipe<A>>>() {
                return p;
            }
        }
        let p: SharedPipe<A> = Arc::new(Mutex::new(Pipe {
            open: None,
            sent: None,
        }));
        pipes.put(stream_id.to_owned(), p.clone());
        p
    }
}

/// What a command's decision was based on.
struct Basis<A> {
    loaded: Loaded<A>,
    /// The append whose outcome the basis waits on (`None`: the stored state).
    pending: Option<watch::Receiver<Outcome>>,
}

/// A command's place in an append.
struct Seat<A> {
    state: A,
    range: std::ops::Range<usize>,
    done: watch::Receiver<Outcome>,
}

impl CommandBus {
    /// One attempt of [`CommandBus::execute`]: decide under the stream's
    /// lock, stage into the gathering append, wait for it to be stored.
    pub(super) async fn execute_once<A, F>(
        &self,
        stream_id: &str,
        ctx: &CommandContext,
        decide: &F,
        optimistic: bool,
    ) -> Result<(A, Committed), CommandError>
    where
        A: Aggregate,
        F: Fn(&Loaded<A>) -> Result<Vec<A::Event>, scaidrive_domain::DomainError>,
    {
        let guard = self.locks.lock(stream_id).await;
        let pipe = self.pipes.get::<A>(stream_id);
        let (mut basis, mut from_cache) = match pending_basis(&pipe) {
            Some(b) => (b, false),
            None => {
                let (loaded, from_cache) = self.stored::<A>(stream_id, optimistic).await?;
                (
                    Basis {
                        loaded,
                        pending: None,
                    },
                    from_cache,
                )
            }
        };
        let events = loop {
            let decided = decide(&basis.loaded);
            match (decided, basis.pending.take()) {
                (Ok(events), _) if !events.is_empty() => break events,
                // No append would check a refusal or a no-op on the cached
                // state: it is decided again on the caught-up one.
                (_, None) if from_cache => {
                    basis.loaded = self.load::<A>(stream_id).await?;
                    from_cache = false;
                }
                // A refusal or a no-op on the stored state stands.
                (other, None) => {
                    drop(guard);
                    return other
                        .map(|_| (basis.loaded.state, Committed::default()))
                        .map_err(Into::into);
                }
                // On a state not yet stored, it stands once that state is.
                (other, Some(mut pending)) => {
                    drop(guard);
                    return match ended(&mut pending).await {
                        Outcome::Stored(_) => other
                            .map(|_| (basis.loaded.state, Committed::default()))
                            .map_err(Into::into),
                        _ => Err(conflict(stream_id).into()),
                    };
                }
            }
        };
        let seat = self.stage(&pipe, stream_id, ctx, basis.loaded, &events);
        drop(guard);
        let Seat {
            state,
            range,
            mut done,
        } = seat;
        match ended(&mut done).await {
            Outcome::Stored(recorded) => {
                let mine = recorded.get(range).map(<[_]>::to_vec).unwrap_or_default();
                let position: Option<LogPosition> = mine.last().map(|e| e.log);
                Ok((
                    state,
                    Committed {
                        events: mine,
                        position,
                        replayed: None,
                    },
                ))
            }
            Outcome::Failed(e) => Err(e.into()),
            Outcome::Pending => Err(conflict(stream_id).into()),
        }
    }

    /// The stored state: cached as is on a first attempt (the append's
    /// expected version catches a stale cache), else caught up; and whether
    /// it is the cached one.
    async fn stored<A: Aggregate>(
        &self,
        stream_id: &str,
        optimistic: bool,
    ) -> Result<(Loaded<A>, bool), CommandError> {
        if optimistic {
            if let Some((state, version)) = self.cached::<A>(stream_id) {
                let loaded = Loaded {
                    state,
                    version: Some(version),
                };
                return Ok((loaded, true));
            }
        }
        Ok((self.load::<A>(stream_id).await?, false))
    }

    /// Stages a decision's events: into the gathering append, or into a new
    /// one, sent by a task of its own once the one before it has ended.
    fn stage<A: Aggregate>(
        &self,
        pipe: &SharedPipe<A>,
        stream_id: &str,
        ctx: &CommandContext,
        loaded: Loaded<A>,
        events: &[A::Event],
    ) -> Seat<A> {
        let meta = ctx.metadata();
        let encoded = events.iter().map(|e| {
            let (event_type, data) = e.encode();
            NewEvent {
                event_id: Uuid::now_v7(),
                schema_version: A::Event::schema_version(&event_type),
                event_type,
                tenant_id: ctx.tenant_id.clone(),
                data,
                metadata: meta.clone(),
            }
        });
        let mut p = pipe.lock();
        if let Some(g) = p.open.as_mut() {
            let start = g.events.len();
            g.events.extend(encoded);
            for e in events {
                g.state.evolve(e);
            }
            return Seat {
                state: g.state.clone(),
                range: start..g.events.len(),
                done: g.done.subscribe(),
            };
        }
        let mut state = loaded.state;
        for e in events {
            state.evolve(e);
        }
        let (tx, rx) = watch::channel(Outcome::Pending);
        let id = self.pipes.next_id.fetch_add(1, Ordering::Relaxed);
        let before = p
            .sent
            .as_ref()
            .filter(|s| s.done.borrow().is_pending())
            .map(|s| s.done.clone());
        let g = Gathering {
            id,
            state: state.clone(),
            base: loaded.version,
            events: encoded.collect(),
            done: tx,
        };
        let range = 0..g.events.len();
        p.open = Some(g);
        drop(p);
        let sender = Sender {
            pipe: pipe.clone(),
            stream_id: stream_id.to_owned(),
            id,
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            cache: self.cache.clone(),
        };
        tokio::spawn(sender.send(before));
        Seat {
            state,
            range,
            done: rx,
        }
    }
}

/// The state to decide on while an append is gathering or on its way.
fn pending_basis<A: Aggregate>(pipe: &SharedPipe<A>) -> Option<Basis<A>> {
    let p = pipe.lock();
    if let Some(g) = &p.open {
        return Some(Basis {
            loaded: Loaded {
                state: g.state.clone(),
                version: g.version_after(),
            },
            pending: Some(g.done.subscribe()),
        });
    }
    let s = p.sent.as_ref().filter(|s| s.done.borrow().is_pending())?;
    Some(Basis {
        loaded: Loaded {
            state: s.state.clone(),
            version: s.version,
        },
        pending: Some(s.done.clone()),
    })
}

/// Sends one gathered append; runs on a task of its own, so a caller that
/// goes away (a dropped request) never strands the others.
struct Sender<A> {
    pipe: SharedPipe<A>,
    stream_id: String,
    id: u64,
    store: crate::store::DynStore,
    metrics: Arc<crate::metrics::Metrics>,
    cache: Arc<Mutex<lru::LruCache<String, CacheEntry>>>,
}

impl<A: Aggregate> Sender<A> {
    async fn send(self, before: Option<watch::Receiver<Outcome>>) {
        let mut failed = None;
        if let Some(mut before) = before {
            if let Outcome::Failed(_) = ended(&mut before).await {
                // Decided on a state that was never stored.
                failed = Some(conflict(&self.stream_id));
            }
        }
        // Commands already on their way join before the append is sealed.
        tokio::task::yield_now().await;
        let Some(g) = self.seal() else { return };
        if let Some(e) = failed {
            let _ = g.done.send(Outcome::Failed(e));
            return;
        }
        let version = g.version_after();
        let request = AppendRequest {
            streams: vec![StreamAppend {
                stream_id: self.stream_id.clone(),
                expected: match g.base {
                    Some(v) => ExpectedVersion::Exact(v),
                    None => ExpectedVersion::NoStream,
                },
                events: g.events,
            }],
            ..Default::default()
        };
        let outcome = match self.store.append(request).await {
            Ok(AppendOutcome::Committed(appended)) => {
                self.metrics
                    .events_appended(appended.events.iter().map(|e| e.event_type.as_str()));
                if let Some(v) = version {
                    let mut cache = self.cache.lock();
                    let newer = cache.peek(&self.stream_id).is_none_or(|e| e.version < v);
                    if newer {
                        cache.put(
                            self.stream_id.clone(),
                            CacheEntry {
                                version: v,
                                state: Arc::new(g.state),
                            },
                        );
                    }
                }
                Outcome::Stored(Arc::new(appended.events))
            }
            Ok(AppendOutcome::Duplicate(_)) => Outcome::Failed(StoreError::Invalid(
                "an append without a key was a duplicate".into(),
            )),
            Err(e) => Outcome::Failed(e),
        };
        let _ = g.done.send(outcome);
    }

    /// Takes the gathering append out of the pipe (no command joins it any
    /// more) and records it as the one sent.
    fn seal(&self) -> Option<Gathering<A>> {
        let mut p = self.pipe.lock();
        if p.open.as_ref().map(|g| g.id) != Some(self.id) {
            return None;
        }
        let g = p.open.take()?;
        p.sent = Some(Sent {
            state: g.state.clone(),
            version: g.version_after(),
            done: g.done.subscribe(),
        });
        Some(g)
    }
}
