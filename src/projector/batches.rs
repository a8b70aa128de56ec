//! The runners of one process share their reads of the log: after a commit
//! wakes them, every projection asks for the events after the same position,
//! and one query answers all of them.
//!
//! A remembered batch is a prefix of what the log holds after its start (the
//! store only ever answers a contiguous run from the gap-safe part of the
//! log), so handing it out later is never wrong: a runner that gets an older,
//! shorter batch simply reads again from its end on the next step.
//!
//! "Nothing after P" is shared too (every runner that has caught up asks it
//! once per wake-up), but only until the next commit signal, and never for
//! longer than [`EMPTY_FOR`]: on PostgreSQL an event can become readable
//! without a signal of its own (when an older transaction ends), and the
//! runners' poll must then find it.
//!
//! A batch is read once and decoded once ([`DecodedEvent`]), and always ends
//! at the end of a commit ([`read_commits`]): a projection sees every event
//! of a commit in the same batch, so what one event of a multi-event write
//! needs to know about the others is in hand (the change feed's purges and
//! rename-then-move, `projections/src/sync.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use scaidrive_domain::{DecodedEvent, LogPosition, RecordedEvent};
use tokio::sync::{broadcast, Mutex};

use super::BATCH;
use crate::store::{DynStore, StoreError};

/// How many different starting positions are remembered (runners that are
/// catching up sit at positions of their own).
const SLOTS: usize = 4;
/// How long an empty answer is handed out at most.
const EMPTY_FOR: Duration = Duration::from_millis(20);

type Batch = Arc<Vec<DecodedEvent>>;

struct Slots {
    /// Most recently used last.
    full: Vec<(LogPosition, Batch)>,
    /// The last empty answer: where, and when it was read.
    empty: Option<(LogPosition, Instant)>,
    /// Commit signals; any one received forgets the empty answer.
    commits: Option<broadcast::Receiver<()>>,
}

pub(super) struct Batches {
    slots: Mutex<Slots>,
}

impl Default for Batches {
    fn default() -> Self {
        Self {
            slots: Mutex::new(Slots {
                full: Vec::new(),
                empty: None,
                commits: None,
            }),
        }
    }
}

impl Batches {
    /// Up to [`BATCH`] events after `from`, from the log or from a read
    /// another runner has just made.
    pub(super) async fn read(
        &self,
        store: &DynStore,
        from: LogPosition,
    ) -> Result<Batch, StoreError> {
        // Held across the read: the runners woken together wait for the
        // first one's query instead of each sending the same one.
        let mut slots = self.slots.lock().await;
        let commits = slots.commits.get_or_insert_with(|| store.subscribe());
        let mut signalled = false;
        while let Ok(()) | Err(broadcast::error::TryRecvError::Lagged(_)) = commits.try_recv() {
            signalled = true;
        }
        if signalled {
            slots.empty = None;
        }
        if let Some(i) = slots.full.iter().position(|(at, _)| *at == from) {
            let hit = slots.full.remove(i);
            let batch = hit.1.clone();
            slots.full.push(hit);
            return Ok(batch);
        }
        if let Some((at, when)) = slots.empty {
            if at == from && when.elapsed() < EMPTY_FOR {
                return Ok(Arc::new(Vec::new()));
            }
        }
        let read_at = Instant::now();
        let batch: Batch = Arc::new(DecodedEvent::all(read_commits(store, from, BATCH).await?));
        if batch.is_empty() {
            slots.empty = Some((from, read_at));
        } else {
            slots.full.retain(|(at, _)| *at != from);
            if slots.full.len() == SLOTS {
                slots.full.remove(0);
            }
            slots.full.push((from, batch.clone()));
        }
        Ok(batch)
    }
}

/// At least `limit` events after `from` (fewer at the head of the log), and
/// then the rest of the last one's commit: a batch never ends inside a
/// commit. A commit is readable whole or not at all, so the rest is there.
pub(super) async fn read_commits(
    store: &DynStore,
    from: LogPosition,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = store.read_all(from, limit).await?;
    if events.len() < limit {
        return Ok(events);
    }
    while let Some(last) = events.last().map(|e| e.log) {
        let more = store.read_all(last, limit).await?;
        let read = more.len();
        let same: Vec<RecordedEvent> = more
            .into_iter()
            .take_while(|e| e.log.commit == last.commit)
            .collect();
        // A later commit came back, or the head of the log: it is whole.
        let whole = same.len() < read || read < limit;
        events.extend(same);
        if whole {
            break;
        }
    }
    Ok(events)
}
