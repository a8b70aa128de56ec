//! Runs projections: each reads the log from its checkpoint and applies a batch
//! plus the new checkpoint in one transaction on the read-model database.
//! Also answers "have the read models passed position P yet?" for
//! read-your-writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scaidrive_domain::{DecodedEvent, LogPosition};
use scaidrive_projections::checkpoint::{self, Checkpoint};
use scaidrive_projections::db::Db;
use scaidrive_projections::Projection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lease::{Lease, Leases};
use crate::store::DynStore;

mod batches;
mod follow;
mod joint;
mod rebuild;
#[cfg(test)]
mod tests;

const BATCH: usize = 500;
/// Re-read the log this often even without a wake-up (a signal can be missed,
/// and on Postgres an unrelated open transaction can hold back the watermark).
const POLL: Duration = Duration::from_millis(200);

/// Feeds every projection from the log.
pub struct Projector {
    db: Db,
    store: DynStore,
    projections: Vec<Arc<dyn Projection>>,
    progress: watch::Sender<Vec<LogPosition>>,
    waiters: follow::Waiters,
    batches: batches::Batches,
    /// Per projection, how often its read model has changed as far as this
    /// process can tell (see [`generation`](Self::generation)).
    changes: Vec<Arc<AtomicU64>>,
    /// Narrower counts: changes made by events of some kinds only (see
    /// [`generation_of`](Self::generation_of)).
    kinds: parking_lot::RwLock<Vec<KindCount>>,
}

/// How often one projection has applied events of some kinds.
struct KindCount {
    index: usize,
    /// Event type prefixes.
    kinds: &'static [&'static str],
    count: Arc<AtomicU64>,
}

/// A number that moves whenever what it counts may have changed (see
/// [`Projector::generation_of`]).
#[derive(Clone)]
pub struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Projector {
    pub fn new(db: Db, store: DynStore, projections: Vec<Arc<dyn Projection>>) -> Arc<Self> {
        let (progress, _) = watch::channel(vec![LogPosition::START; projections.len()]);
        Arc::new(Self {
            db,
            store,
            progress,
            waiters: follow::Waiters::default(),
            batches: batches::Batches::default(),
            changes: (0..projections.len())
                .map(|_| Arc::new(AtomicU64::new(0)))
                .collect(),
            kinds: Default::default(),
            projections,
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    /// The position each projection has applied up to, by name.
    pub fn positions(&self) -> Vec<(&'static str, LogPosition)> {
        let cur = self.progress.borrow();
        self.projections
            .iter()
            .zip(cur.iter())
            .map(|(p, pos)| (p.name(), *pos))
            .collect()
    }

    /// Progress of every projection (in [`names`](Self::names) order), for
    /// live tails that follow a read model.
    pub fn watch(&self) -> watch::Receiver<Vec<LogPosition>> {
        self.progress.subscribe()
    }

    /// The index of the projection called `name`, in [`names`](Self::names) order.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.projections.iter().position(|p| p.name() == name)
    }

    /// A number that changes whenever projection `index`'s read model may
    /// have changed: a batch it applied something in, a batch applied
    /// elsewhere (another process, a rebuild). A value read before reading
    /// the read model and still current afterwards means what was read is
    /// still what the model holds, so it can be kept in memory. It moves
    /// before the projection's progress does: whoever has waited for a
    /// position sees the new value.
    pub fn generation(&self, index: usize) -> u64 {
        self.changes[index].load(Ordering::SeqCst)
    }

    /// Like [`generation`](Self::generation), but moving only when the
    /// projection called `projection` applies an event whose type starts
    /// with one of `kinds` (or when it is changed in a way this process does
    /// not see event by event: elsewhere, by a rebuild). For answers that
    /// depend on a few rare events of a busy projection (a share's row, not
    /// its folders). `None` for an unknown projection.
    pub fn generation_of(
        &self,
        projection: &str,
        kinds: &'static [&'static str],
    ) -> Option<Generation> {
        let index = self.index_of(projection)?;
        let mut all = self.kinds.write();
        if let Some(k) = all.iter().find(|k| k.index == index && k.kinds == kinds) {
            return Some(Generation(k.count.clone()));
        }
        let count = Arc::new(AtomicU64::new(0));
        all.push(KindCount {
            index,
            kinds,
            count: count.clone(),
        });
        Some(Generation(count))
    }

    /// [`generation`](Self::generation) as a handle.
    pub fn generation_handle(&self, projection: &str) -> Option<Generation> {
        let index = self.index_of(projection)?;
        Some(Generation(self.changes[index].clone()))
    }

    /// Marks projection `index`'s read model as changed by `batch` (by
    /// anything, for `None`), before its progress moves.
    fn touched(&self, index: usize, batch: Option<&[DecodedEvent]>) {
        self.changes[index].fetch_add(1, Ordering::SeqCst);
        for k in self.kinds.read().iter().filter(|k| k.index == index) {
            let hit = batch.is_none_or(|events| {
                events
                    .iter()
                    .any(|e| k.kinds.iter().any(|p| e.event_type.starts_with(p)))
            });
            if hit {
                k.count.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Where one projection has got to.
    pub fn position_of(&self, name: &str) -> Option<LogPosition> {
        self.positions()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p)
    }

    /// Loads checkpoints (resetting read models whose version changed).
    pub async fn prepare(&self) -> Result<(), ProjectorError> {
        for (i, p) in self.projections.iter().enumerate() {
            let cp = self.checkpoint_of(p.as_ref()).await?;
            self.progress.send_modify(|v| v[i] = cp.position);
        }
        Ok(())
    }

    async fn checkpoint_of(&self, p: &dyn Projection) -> Result<Checkpoint, ProjectorError> {
        let mut tx = self.db.begin().await?;
        checkpoint::lock_setup(&mut tx, p.name()).await?;
        let cp = checkpoint::load(&mut tx, p.name()).await?;
        let cp = match cp {
            Some(cp) if cp.version == p.version() => cp,
            stale => {
                if stale.is_some() {
                    tracing::info!(
                        projection = p.name(),
                        version = p.version(),
                        "projection version changed, rebuilding"
                    );
                }
                p.reset(&mut tx).await?;
                let cp = Checkpoint {
                    version: p.version(),
                    position: LogPosition::START,
                };
                checkpoint::store(&mut tx, p.name(), cp).await?;
                cp
            }
        };
        tx.commit().await?;
        Ok(cp)
    }

    /// Spawns the task that applies the log to the projections whose leases
    /// (from `leases`, named after the projections) this process holds, all
    /// at once ([`joint`]), and one that follows the progress of those held
    /// elsewhere. They stop when `shutdown` is cancelled.
    pub fn spawn(
        self: &Arc<Self>,
        leases: &Leases,
        shutdown: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let per_projection: Vec<Lease> = self
            .projections
            .iter()
            .map(|p| leases.lease(p.name()))
            .collect();
        let me = self.clone();
        let (held, stop) = (per_projection.clone(), shutdown.clone());
        vec![
            tokio::spawn(async move { me.drive(held, stop).await }),
            tokio::spawn(self.clone().follow(per_projection, shutdown)),
        ]
    }

    /// Applies at most one batch to projection `index` alone (the runner's
    /// [`apply_batch`](Self::apply_batch) for one member); returns events
    /// read, or 1 for a position taken over from elsewhere.
    pub async fn step(&self, index: usize) -> Result<usize, ProjectorError> {
        let from = self.progress.borrow()[index];
        Ok(self.apply_batch(from, &[index]).await?.read)
    }

    /// Drives every projection until it has nothing left to read (tests, CLI).
    pub async fn catch_up(&self) -> Result<(), ProjectorError> {
        for i in 0..self.projections.len() {
            while self.step(i).await? > 0 {}
        }
        Ok(())
    }

    /// Waits until every projection has applied `position`, at most `timeout`.
    /// Returns whether it got there.
    pub async fn wait_for(&self, position: LogPosition, timeout: Duration) -> bool {
        self.wait_for_some(position, None, timeout).await
    }

    /// Which projections (in [`names`](Self::names) order) apply any of
    /// `event_types`: the read models a write of those events changes.
    pub fn concerned<'a>(&self, event_types: impl IntoIterator<Item = &'a str>) -> Vec<bool> {
        let mut mask = vec![false; self.projections.len()];
        for t in event_types {
            for (m, p) in mask.iter_mut().zip(&self.projections) {
                *m = *m || p.handles(t);
            }
        }
        mask
    }

    /// Waits until each projection marked in `mask` (every one for `None`)
    /// has applied `position`, at most `timeout`. Returns whether it got there.
    pub async fn wait_for_some(
        &self,
        position: LogPosition,
        mask: Option<&[bool]>,
        timeout: Duration,
    ) -> bool {
        let there = |v: &Vec<LogPosition>| {
            v.iter().enumerate().all(|(i, p)| {
                *p >= position || mask.is_some_and(|m| !m.get(i).copied().unwrap_or(true))
            })
        };
        let mut rx = self.progress.subscribe();
        if there(&rx.borrow()) {
            return true;
        }
        // Projections applied elsewhere are followed faster meanwhile.
        let _waiting = self.waiters.enter();
        let reached = tokio::time::timeout(timeout, rx.wait_for(there)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// How many events each projection is behind the log head.
    pub async fn lag(&self) -> Result<Vec<(&'static str, i64)>, ProjectorError> {
        let head = self.store.head().await?;
        Ok(self
            .positions()
            .into_iter()
            .map(|(name, pos)| (name, (head.position - pos.position).max(0)))
            .collect())
    }
}

/// Why a projection step failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Projection(#[from] scaidrive_projections::ProjectionError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("no projection named '{0}'")]
    Unknown(String),
    #[error("rebuild: {0}")]
    Rebuild(String),
}
