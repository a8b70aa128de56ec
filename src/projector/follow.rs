//! Following projections another process applies: a process without a
//! projection's lease still answers read-your-writes and reports lag, from
//! the checkpoints the holder stores. It re-reads them (one small query for
//! all) on commit wake-ups and every [`POLL`], and every [`FAST`] while a
//! request here waits for a position; never more often than every [`FAST`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scaidrive_projections::checkpoint;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Projector, POLL};
use crate::lease::Lease;

/// How often to re-read the checkpoints while someone waits for a position,
/// and the shortest spacing of two reads.
const FAST: Duration = Duration::from_millis(10);

/// Who is waiting in [`Projector::wait_for`].
#[derive(Default)]
pub(super) struct Waiters {
    count: AtomicUsize,
    arrived: Notify,
}

impl Waiters {
    /// Counts the caller as waiting until the guard drops.
    pub(super) fn enter(&self) -> WaitGuard<'_> {
        // Later ones find the follower polling fast already.
        if self.count.fetch_add(1, Ordering::SeqCst) == 0 {
            self.arrived.notify_one();
        }
        WaitGuard(self)
    }

    fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }
}

pub(super) struct WaitGuard<'a>(&'a Waiters);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Projector {
    /// Keeps the progress of every projection whose lease another process
    /// holds in step with its stored checkpoint, until `shutdown`.
    pub(super) async fn follow(self: Arc<Self>, leases: Vec<Lease>, shutdown: CancellationToken) {
        let mut wake = self.store.subscribe();
        let mut failing = false;
        loop {
            let mut pause = POLL;
            let read_at = tokio::time::Instant::now();
            if leases.iter().any(|l| !l.is_held()) {
                match self.refresh(&leases).await {
                    Ok(()) => {
                        failing = false;
                        if self.waiters.any() {
                            pause = FAST;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot read the projection checkpoints, retrying");
                        }
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.recv() => {}
                _ = self.waiters.arrived.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
            // A busy log wakes this on every commit.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(read_at + FAST) => {}
            }
        }
    }

    /// Takes the stored position of each projection not held here.
    async fn refresh(&self, leases: &[Lease]) -> Result<(), sqlx::Error> {
        let stored = checkpoint::all(&self.db).await?;
        self.progress.send_if_modified(|progress| {
            let mut moved = false;
            for (i, p) in self.projections.iter().enumerate() {
                // The holder's own progress is newer than any stored row.
                if leases[i].is_held() {
                    continue;
                }
                let Some((_, cp)) = stored.iter().find(|(n, _)| n == p.name()) else {
                    continue;
                };
                if progress[i] != cp.position {
                    // Applied elsewhere: what changed is not known here.
                    self.touched(i, None);
                    progress[i] = cp.position;
                    moved = true;
                }
            }
            moved
        });
        Ok(())
    }
}
