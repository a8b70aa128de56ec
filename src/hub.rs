//! The live-event hub: one tail of the change feed per process, fanned out to
//! every WebSocket. It wakes when the sync projection commits (and on a short
//! timer, in case a wake-up was missed) and broadcasts each new change once.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use scaidrive_domain::LogPosition;
use scaidrive_projections::db::Db;
use scaidrive_projections::sync::NAME as FEED;
use scaidrive_projections::sync_queries::{self, ChangeRow};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::projector::Projector;

/// Changes buffered per subscriber before it is told to resynchronise.
const BUFFER: usize = 4096;
const BATCH: i64 = 1000;
const POLL: Duration = Duration::from_millis(250);

/// A change on its way to sockets, with its frames rendered once and shared
/// by every socket that sends them.
pub struct LiveChange {
    pub row: ChangeRow,
    pub device_frame: OnceLock<String>,
    pub realtime_frame: OnceLock<String>,
}

/// Fans the change feed out to live subscribers.
pub struct Hub {
    tx: broadcast::Sender<Arc<LiveChange>>,
}

impl Default for Hub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(BUFFER);
        Self { tx }
    }
}

impl Hub {
    /// A receiver of every change committed from now on (all tenants: the
    /// socket filters). `Lagged` means changes were dropped for this receiver.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveChange>> {
        self.tx.subscribe()
    }

    /// Tails the feed from the sync projection's current position until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        db: Db,
        projector: Arc<Projector>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run(db, projector, stop).await })
    }

    async fn run(&self, db: Db, projector: Arc<Projector>, stop: CancellationToken) {
        let Some(index) = projector.names().iter().position(|n| *n == FEED) else {
            tracing::error!("no sync projection: live sync events are off");
            return;
        };
        let mut progress = projector.watch();
        let mut last = progress.borrow()[index];
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = progress.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(POLL) => {}
            }
            let reached = progress.borrow()[index];
            if reached <= last {
                continue;
            }
            // Nobody listening: nothing to read. A socket that subscribes
            // from here on asks for changes committed after `reached` only.
            if self.tx.receiver_count() == 0 {
                last = reached;
                continue;
            }
            match self.drain(&db, last).await {
                Ok(Some(to)) => last = to,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "live feed read failed, retrying"),
            }
        }
    }

    /// Broadcasts every change after `from`; returns the last one sent.
    async fn drain(&self, db: &Db, from: LogPosition) -> Result<Option<LogPosition>, sqlx::Error> {
        let mut at = from;
        let mut moved = None;
        loop {
            let rows = sync_queries::all_changes(db, at, BATCH).await?;
            let n = rows.len() as i64;
            for row in rows {
                at = row.log();
                moved = Some(at);
                // No receivers is fine: nobody is listening.
                let _ = self.tx.send(Arc::new(LiveChange {
                    row,
                    device_frame: OnceLock::new(),
                    realtime_frame: OnceLock::new(),
                }));
            }
            if n < BATCH {
                return Ok(moved);
            }
        }
    }
}
