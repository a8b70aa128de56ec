//! One runner for all the projections this process holds: the projections
//! standing at the same position read one batch and apply it in one
//! transaction with one checkpoint statement for the lot, instead of one
//! transaction each. A write's read-your-writes wait then ends with a single
//! commit on the read-model database.
//!
//! The checkpoint rows still decide who applies a batch, one row per
//! projection, exactly as for a runner of its own ([`Projector::step`]): the
//! joint statement moves only the rows still where this process left them
//! and not locked by anyone else. A projection whose row did not move is
//! settled alone, without holding up the others. A batch that fails is
//! applied again one projection at a time, so a read model that cannot apply
//! an event stalls only itself (it then stands at a position of its own and
//! is stepped alone, with the runner's back-off).

use std::time::Duration;

use futures::future::{select_all, BoxFuture, FutureExt};
use scaidrive_domain::{DecodedEvent, LogPosition};
use scaidrive_projections::checkpoint::{self, Checkpoint};
use tokio_util::sync::CancellationToken;

use super::{Projector, ProjectorError, BATCH, POLL};
use crate::lease::Lease;

/// What a step did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stepped {
    /// Events read (by the groups that moved).
    pub read: usize,
    /// Whether to step again at once rather than wait for a commit signal.
    pub more: bool,
}

impl Projector {
    /// Applies the log to every projection whose lease (in `leases`, one
    /// per projection in order) this process holds, until `shutdown`.
    pub(super) async fn drive(&self, leases: Vec<Lease>, shutdown: CancellationToken) {
        let mut wake = self.store.subscribe();
        let mut backoff = Duration::from_millis(100);
        loop {
            let held: Vec<usize> = (0..leases.len()).filter(|&i| leases[i].is_held()).collect();
            let pause = if held.is_empty() {
                None
            } else {
                match self.step_held(&held).await {
                    Ok(stepped) if stepped.more => {
                        backoff = Duration::from_millis(100);
                        if shutdown.is_cancelled() {
                            return;
                        }
                        continue;
                    }
                    // Caught up as of the read: the next commit's signal
                    // (queued on `wake` if it came during the step) or the
                    // poll starts the next step.
                    Ok(_) => {
                        backoff = Duration::from_millis(100);
                        Some(POLL)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "projection batch failed, retrying");
                        let pause = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        Some(pause)
                    }
                }
            };
            // A wake-up also ends a pause after an error: after an outage
            // the store's listener reconnects and signals, so the read
            // models resume as soon as the database is back.
            let sleep = async {
                match pause {
                    Some(p) => tokio::time::sleep(p).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.recv() => {}
                _ = sleep => {}
                _ = lease_change(&leases, &held) => {}
            }
        }
    }

    /// One step for the projections `held`: a joint batch for each group
    /// standing at the same position.
    pub(super) async fn step_held(&self, held: &[usize]) -> Result<Stepped, ProjectorError> {
        let mut groups: Vec<(LogPosition, Vec<usize>)> = Vec::new();
        {
            let progress = self.progress.borrow();
            for &i in held {
                match groups.iter_mut().find(|(at, _)| *at == progress[i]) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((progress[i], vec![i])),
                }
            }
        }
        let several = groups.len() > 1;
        let mut total = Stepped::default();
        let mut failed = None;
        for (from, members) in groups {
            match self.step_joint(from, &members).await {
                Ok(s) => {
                    total.read += s.read;
                    total.more |= s.more;
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        // Several groups (after a start or a takeover) may have been handed
        // a remembered, shorter batch: look again rather than wait.
        total.more |= several && total.read > 0;
        match failed {
            // Some moved on: go again at once (the failed ones now stand
            // apart and come back to the back-off alone).
            Some(e) if total.read > 0 => {
                tracing::error!(error = %e, "projection batch failed, retrying");
                total.more = true;
                Ok(total)
            }
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Applies the batch after `from` to `members` (all standing there) in
    /// one transaction; falls back to one projection at a time if that fails.
    async fn step_joint(
        &self,
        from: LogPosition,
        members: &[usize],
    ) -> Result<Stepped, ProjectorError> {
        match self.apply_batch(from, members).await {
            Ok(s) => Ok(s),
            Err(joint) if members.len() > 1 => {
                tracing::warn!(error = %joint, "joint projection batch failed, applying it one projection at a time");
                let mut read = 0;
                let mut failed = None;
                for &i in members {
                    match self.apply_batch(from, &[i]).await {
                        Ok(s) => read = read.max(s.read),
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
                let stepped = Stepped { read, more: true };
                match failed {
                    Some(e) if read == 0 => Err(e),
                    Some(e) => {
                        tracing::error!(error = %e, "projection batch failed, retrying");
                        Ok(stepped)
                    }
                    None => Ok(stepped),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The one way a batch is applied: reads (once, shared, decoded) the
    /// whole commits after `from` and applies them to `members`, every one
    /// standing at `from`, in one transaction with one checkpoint statement
    /// for the lot (or, when none of them handles any event of the batch,
    /// that statement alone). The checkpoint rows decide who applies: a row
    /// that did not move is settled afterwards, alone ([`settle`](Self::settle)).
    pub(super) async fn apply_batch(
        &self,
        from: LogPosition,
        members: &[usize],
    ) -> Result<Stepped, ProjectorError> {
        let batch = self.batches.read(&self.store, from).await?;
        let Some(last) = batch.last().map(|e| e.log) else {
            return Ok(Stepped::default());
        };
        let rows: Vec<(&str, i32)> = members
            .iter()
            .map(|&i| (self.projections[i].name(), self.projections[i].version()))
            .collect();
        let concerned: Vec<bool> = members
            .iter()
            .map(|&i| {
                let p = &self.projections[i];
                batch.iter().any(|e| p.handles(&e.event_type))
            })
            .collect();
        let moved = if concerned.contains(&true) {
            let mut tx = self.db.begin_derived().await?;
            // Moving the checkpoints first locks their rows for the batch
            // (runners of other processes, and a rebuild's swap, take turns
            // on them) and finds out whether someone else moved one.
            let moved = checkpoint::take_many(&mut tx, &rows, from, last).await?;
            for (k, &i) in members.iter().enumerate() {
                if !(moved[k] && concerned[k]) {
                    continue;
                }
                self.projections[i].apply_all(&mut tx, &batch).await?;
            }
            tx.commit().await?;
            moved
        } else {
            // Nothing here for any of them: one statement moves them all.
            checkpoint::advance_many(&self.db, &rows, from, last).await?
        };
        for (k, &i) in members.iter().enumerate() {
            if moved[k] && concerned[k] {
                self.touched(i, Some(&batch));
            }
        }
        self.progress.send_modify(|v| {
            for (k, &i) in members.iter().enumerate() {
                if moved[k] {
                    v[i] = last;
                }
            }
        });
        let mut stepped = Stepped {
            read: if moved.contains(&true) {
                batch.len()
            } else {
                0
            },
            // A full batch: the log may hold more right now.
            more: batch.len() >= BATCH,
        };
        for (k, &i) in members.iter().enumerate() {
            if !moved[k] && self.settle(i, from, &batch).await? {
                stepped.read = stepped.read.max(1);
                stepped.more = true;
            }
        }
        Ok(stepped)
    }

    /// Projection `index`'s checkpoint did not move from `from` with
    /// `batch`: take over a position someone else stored, or, for a row that
    /// is missing, apply the batch and store it. A row still at `from` is
    /// locked by someone finishing a batch or a swap; it is tried again on
    /// the next step. Returns whether anything changed.
    async fn settle(
        &self,
        index: usize,
        from: LogPosition,
        batch: &[DecodedEvent],
    ) -> Result<bool, ProjectorError> {
        let p = self.projections[index].as_ref();
        match checkpoint::read(&self.db, p.name()).await? {
            Some(cp) if cp.position != from => {
                self.touched(index, None);
                self.progress.send_modify(|v| v[index] = cp.position);
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                let Some(last) = batch.last().map(|e| e.log) else {
                    return Ok(false);
                };
                let mut tx = self.db.begin_derived().await?;
                p.apply_all(&mut tx, batch).await?;
                let next = Checkpoint {
                    version: p.version(),
                    position: last,
                };
                checkpoint::store(&mut tx, p.name(), next).await?;
                tx.commit().await?;
                self.touched(index, Some(batch));
                self.progress.send_modify(|v| v[index] = last);
                Ok(true)
            }
        }
    }
}

/// Resolves when a lease in `leases` is gained or lost, relative to `held`.
fn lease_change<'a>(leases: &'a [Lease], held: &[usize]) -> BoxFuture<'a, ()> {
    let changes: Vec<BoxFuture<'a, ()>> = leases
        .iter()
        .enumerate()
        .map(|(i, lease)| {
            if held.contains(&i) {
                lease.lost().boxed()
            } else {
                lease.acquired().boxed()
            }
        })
        .collect();
    if changes.is_empty() {
        return std::future::pending().boxed();
    }
    select_all(changes).map(|_| ()).boxed()
}
