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

use std::sync::Arc;
use std::time::{Duration, Instant};

use scaidrive_domain::{LogPosition, RecordedEvent};
use tokio::sync::{broadcast, Mutex};

use super::BATCH;
use crate::store::{DynStore, StoreError};

/// How many different starting positions are remembered (runners that are
/// catching up sit at positions of their own).
const SLOTS: usize = 4;
/// How long an empty answer is handed out at most.
const EMPTY_FOR: Duration = Duration::from_millis(20);

type Batch = Arc<Vec<RecordedEvent>>;

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
        let batch: Batch = Arc::new(store.read_all(from, BATCH).await?);
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
