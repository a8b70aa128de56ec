//! The runners of one process share their reads of the log: after a commit
//! wakes them, every projection asks for the events after the same position,
//! and one query answers all of them.
//!
//! A remembered batch is a prefix of what the log holds after its start (the
//! store only ever answers a contiguous run from the gap-safe part of the
//! log), so handing it out later is never wrong: a runner that gets an older,
//! shorter batch simply reads again from its end on the next step.

use std::sync::Arc;

use scaidrive_domain::{LogPosition, RecordedEvent};
use tokio::sync::Mutex;

use super::BATCH;
use crate::store::{DynStore, StoreError};

/// How many different starting positions are remembered (runners that are
/// catching up sit at positions of their own).
const SLOTS: usize = 4;

type Batch = Arc<Vec<RecordedEvent>>;

#[derive(Default)]
pub(super) struct Batches {
    /// Most recently used last.
    slots: Mutex<Vec<(LogPosition, Batch)>>,
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
        if let Some(i) = slots.iter().position(|(at, _)| *at == from) {
            let hit = slots.remove(i);
            let batch = hit.1.clone();
            slots.push(hit);
            return Ok(batch);
        }
        let batch: Batch = Arc::new(store.read_all(from, BATCH).await?);
        if !batch.is_empty() {
            slots.retain(|(at, _)| *at != from);
            if slots.len() == SLOTS {
                slots.remove(0);
            }
            slots.push((from, batch.clone()));
        }
        Ok(batch)
    }
}
