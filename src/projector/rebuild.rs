//! Rebuilding a read model beside the live one, then swapping it in.
//!
//! The replay writes into scratch copies of the projection's own tables (a
//! scratch schema on PostgreSQL, a scratch database file on SQLite), in
//! batches that commit as they go, while writes and the live runners carry on
//! with the live tables. Once the replay has reached the head of the log, the
//! live read model is let catch up to the replay's position (its runner's
//! work, in the same short transactions), and then one short transaction on
//! the live database locks the projection's checkpoint, puts the rebuilt
//! tables in place of the live ones, applies the events that arrived since
//! the replay's position and stores the checkpoint. ARCHITECTURE.md
//! ("Projections") tells the whole story.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scaidrive_domain::{DecodedEvent, LogPosition};
use scaidrive_projections::checkpoint::{self, Checkpoint};
use scaidrive_projections::db::{Db, SqliteDb, Tx};
use scaidrive_projections::{Projection, QUEUE_TABLES};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Executor, Row};
use tokio::sync::watch;

use super::batches::read_commits;
use super::{Projector, ProjectorError, BATCH};
use crate::store::DynStore;

/// Events read from the log at a time during the replay.
const REPLAY_BATCH: usize = 2_000;
/// How long one scratch transaction of the replay may stay open.
const SCRATCH_TX: Duration = Duration::from_millis(50);
/// How often a swap that could not get its locks in time is tried.
const SWAP_ATTEMPTS: u32 = 5;
/// How long a swap waits for a lock on PostgreSQL before it gives up (and
/// tries again after catching up): readers queue behind a waiting
/// `ACCESS EXCLUSIVE` lock, so it must not wait long.
const PG_LOCK_TIMEOUT: &str = "5s";

impl Projector {
    /// Rebuilds one projection from the start of the log beside its live
    /// read model and swaps the rebuilt tables in when the replay has caught
    /// up. Writes and the live runners go on meanwhile; readers see the live
    /// model until the swap commits, together with the new checkpoint (live
    /// runners that find the checkpoint moved resynchronise).
    /// `progress(events_read)` is called as the replay goes. Returns the
    /// number of events read.
    ///
    /// The work runs in a task of its own: if the caller goes away (a request
    /// that timed out), the rebuild still finishes and cleans up after itself.
    pub async fn rebuild(
        &self,
        name: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, ProjectorError> {
        let index = self
            .projections
            .iter()
            .position(|p| p.name() == name)
            .ok_or_else(|| ProjectorError::Unknown(name.to_owned()))?;
        let job = Rebuild {
            db: self.db.clone(),
            store: self.store.clone(),
            projection: self.projections[index].clone(),
        };
        let (report, mut reported) = watch::channel(0u64);
        let mut task = tokio::spawn(job.run(report));
        let joined = loop {
            tokio::select! {
                biased;
                done = &mut task => break done,
                changed = reported.changed() => match changed {
                    Ok(()) => progress(*reported.borrow_and_update()),
                    Err(_) => break (&mut task).await,
                },
            }
        };
        let done = joined
            .map_err(|e| ProjectorError::Rebuild(format!("the rebuild task failed: {e}")))??;
        progress(done.read);
        self.touched(index, None);
        self.progress
            .send_modify(|v| v[index] = v[index].max(done.position));
        Ok(done.read)
    }
}

impl Projector {
    /// Recomputes one tenant's rows of a projection's
    /// [`tenant_tables`](Projection::tenant_tables) from that tenant's events
    /// alone, and puts them in place of the live ones; other tenants' rows
    /// and the projection's other tables are left alone. The replay goes into
    /// a scratch as for [`rebuild`](Self::rebuild); then one live
    /// transaction locks the checkpoint, brings the scratch to the live
    /// model's position and replaces the tenant's rows. Returns the number of
    /// events read. Runs in a task of its own, like a rebuild.
    pub async fn recompute_tenant(
        &self,
        name: &str,
        tenant_id: &str,
    ) -> Result<u64, ProjectorError> {
        let index = self
            .projections
            .iter()
            .position(|p| p.name() == name)
            .ok_or_else(|| ProjectorError::Unknown(name.to_owned()))?;
        let projection = self.projections[index].clone();
        if projection.tenant_tables().is_empty() {
            return Err(ProjectorError::Rebuild(format!(
                "'{name}' cannot be recomputed for one tenant"
            )));
        }
        let job = Rebuild {
            db: self.db.clone(),
            store: self.store.clone(),
            projection,
        };
        let tenant = tenant_id.to_owned();
        let read = tokio::spawn(async move { job.run_tenant(&tenant).await })
            .await
            .map_err(|e| ProjectorError::Rebuild(format!("the recompute task failed: {e}")))??;
        self.touched(index, None);
        Ok(read)
    }
}

/// One rebuild of one projection.
struct Rebuild {
    db: Db,
    store: DynStore,
    projection: Arc<dyn Projection>,
}

/// What a finished rebuild did.
struct Done {
    /// Events read (replay and tail).
    read: u64,
    /// The checkpoint stored with the swapped-in tables.
    position: LogPosition,
}

/// Why one swap attempt failed.
enum SwapError {
    /// It could not get its locks (or its scratch attachment) in time; the
    /// live tables are untouched: catch up and try again.
    Retry(String),
    Fatal(ProjectorError),
}

impl From<ProjectorError> for SwapError {
    fn from(e: ProjectorError) -> Self {
        let lock = match &e {
            ProjectorError::Db(d) => lock_failure(d),
            ProjectorError::Projection(scaidrive_projections::ProjectionError::Db(d)) => {
                lock_failure(d)
            }
            _ => false,
        };
        if lock {
            SwapError::Retry(e.to_string())
        } else {
            SwapError::Fatal(e)
        }
    }
}

impl From<sqlx::Error> for SwapError {
    fn from(e: sqlx::Error) -> Self {
        ProjectorError::Db(e).into()
    }
}

impl From<scaidrive_projections::ProjectionError> for SwapError {
    fn from(e: scaidrive_projections::ProjectionError) -> Self {
        ProjectorError::Projection(e).into()
    }
}

impl From<crate::store::StoreError> for SwapError {
    fn from(e: crate::store::StoreError) -> Self {
        SwapError::Fatal(e.into())
    }
}

/// PostgreSQL's lock_not_available (our `lock_timeout`) and deadlock_detected.
fn lock_failure(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03" || c == "40P01")
}

/// A double-quoted SQL identifier (both backends).
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A short random suffix that keeps concurrent rebuilds' scratch apart.
fn suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// Runs one statement (without binds) inside a [`Tx`].
async fn exec(tx: &mut Tx, sql: &str) -> Result<(), sqlx::Error> {
    scaidrive_projections::tx_execute!(tx, sql).map(|_| ())
}

impl Rebuild {
    async fn run(self, report: watch::Sender<u64>) -> Result<Done, ProjectorError> {
        let name = self.projection.name();
        let started = Instant::now();
        let mut scratch = match &self.db {
            Db::Sqlite(db) => Scratch::Sqlite(SqliteScratch::new(db, name)?),
            Db::Postgres(_) => Scratch::Postgres(PgScratch::new(name)),
        };
        let done = match scratch.create(&self.db, self.projection.as_ref()).await {
            Ok(()) => self.replay_and_swap(&scratch, &report).await,
            Err(e) => Err(e),
        };
        scratch.remove(&self.db).await;
        match &done {
            Ok(d) => tracing::info!(
                projection = name,
                events = d.read,
                position = %d.position.to_token(),
                seconds = started.elapsed().as_secs_f64(),
                "rebuilt read model swapped in"
            ),
            Err(e) => {
                tracing::error!(projection = name, error = %e, "rebuild failed; the live read model is untouched")
            }
        }
        done
    }

    async fn replay_and_swap(
        &self,
        scratch: &Scratch,
        report: &watch::Sender<u64>,
    ) -> Result<Done, ProjectorError> {
        let p = self.projection.as_ref();
        let mut at = LogPosition::START;
        let mut read = 0u64;
        let mut attempt = 1;
        loop {
            // The whole log at first; after a swap that gave up, what came since.
            loop {
                let raw = read_commits(&self.store, at, REPLAY_BATCH).await?;
                let full = raw.len() >= REPLAY_BATCH;
                let batch = DecodedEvent::all(raw);
                let Some(last) = batch.last().map(|e| e.log) else {
                    break;
                };
                // Short scratch transactions: on PostgreSQL any open writing
                // transaction holds back the log's read watermark, and with
                // it every live reader of the log. One commit at a time, so
                // a projection sees each commit whole.
                let mut open: Option<(Tx, Instant)> = None;
                for commit in batch.chunk_by(|a, b| a.log.commit == b.log.commit) {
                    if !commit.iter().any(|e| p.handles(&e.event_type)) {
                        continue;
                    }
                    scratch.apply(p, &mut open, commit).await?;
                }
                if let Some((tx, _)) = open.take() {
                    tx.commit().await?;
                }
                read += batch.len() as u64;
                at = last;
                report.send_replace(read);
                if !full {
                    break;
                }
            }
            scratch.analyze(&self.db).await;
            self.live_catch_up(at).await?;
            let swapped = match (scratch, &self.db) {
                (Scratch::Sqlite(s), Db::Sqlite(db)) => self.swap_sqlite(db, s, at).await,
                (Scratch::Postgres(s), Db::Postgres(_)) => self.swap_postgres(s, at).await,
                _ => Err(SwapError::Fatal(ProjectorError::Rebuild(
                    "scratch and database backends differ".into(),
                ))),
            };
            match swapped {
                Ok((position, tail)) => {
                    read += tail;
                    report.send_replace(read);
                    return Ok(Done { read, position });
                }
                Err(SwapError::Retry(why)) if attempt < SWAP_ATTEMPTS => {
                    tracing::warn!(
                        projection = p.name(),
                        attempt,
                        reason = %why,
                        "rebuild: the swap gave up waiting; catching up to try again"
                    );
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(SwapError::Retry(why)) => {
                    return Err(ProjectorError::Rebuild(format!(
                        "could not swap in the rebuilt '{}' in {SWAP_ATTEMPTS} attempts: {why}",
                        p.name()
                    )))
                }
                Err(SwapError::Fatal(e)) => return Err(e),
            }
        }
    }

    /// [`Projector::recompute_tenant`]: scratch, replay of the tenant's
    /// events, swap of its rows, scratch removed whatever happened.
    async fn run_tenant(self, tenant: &str) -> Result<u64, ProjectorError> {
        let name = self.projection.name();
        let started = Instant::now();
        let mut scratch = match &self.db {
            Db::Sqlite(db) => Scratch::Sqlite(SqliteScratch::new(db, name)?),
            Db::Postgres(_) => Scratch::Postgres(PgScratch::new(name)),
        };
        let done = match scratch.create(&self.db, self.projection.as_ref()).await {
            Ok(()) => self.replay_and_swap_tenant(&scratch, tenant).await,
            Err(e) => Err(e),
        };
        scratch.remove(&self.db).await;
        match &done {
            Ok(read) => tracing::info!(
                projection = name,
                tenant_id = tenant,
                events = read,
                seconds = started.elapsed().as_secs_f64(),
                "recomputed a tenant's rows"
            ),
            Err(e) => {
                tracing::error!(projection = name, tenant_id = tenant, error = %e, "tenant recompute failed; the live read model is untouched")
            }
        }
        done
    }

    /// Applies the tenant's events after `from`, up to `until` (or the head),
    /// to the scratch in short transactions; returns where it got and how
    /// many events it read.
    async fn replay_tenant(
        &self,
        scratch: &Scratch,
        filter: &crate::store::LogFilter,
        from: LogPosition,
        until: Option<LogPosition>,
    ) -> Result<(LogPosition, u64), ProjectorError> {
        let p = self.projection.as_ref();
        let mut at = from;
        let mut read = 0u64;
        loop {
            let batch =
                DecodedEvent::all(self.store.read_filtered(at, REPLAY_BATCH, filter).await?);
            let full = batch.len() == REPLAY_BATCH;
            let mut open: Option<(Tx, Instant)> = None;
            let mut ended = batch.is_empty();
            for event in &batch {
                if until.is_some_and(|u| event.log > u) {
                    ended = true;
                    break;
                }
                at = event.log;
                read += 1;
                if !p.handles(&event.event_type) {
                    continue;
                }
                scratch
                    .apply(p, &mut open, std::slice::from_ref(event))
                    .await?;
            }
            if let Some((tx, _)) = open.take() {
                tx.commit().await?;
            }
            if ended || !full {
                return Ok((at, read));
            }
        }
    }

    async fn replay_and_swap_tenant(
        &self,
        scratch: &Scratch,
        tenant: &str,
    ) -> Result<u64, ProjectorError> {
        let p = self.projection.as_ref();
        let filter = crate::store::LogFilter {
            tenant_id: Some(tenant.to_owned()),
            ..crate::store::LogFilter::default()
        };
        let (mut at, mut read) = self
            .replay_tenant(scratch, &filter, LogPosition::START, None)
            .await?;
        scratch.analyze(&self.db).await;
        for attempt in 1..=SWAP_ATTEMPTS {
            // Bring the scratch to where the live model is now; the swap
            // checks the live model has not passed another event of the
            // tenant meanwhile.
            self.live_catch_up(at).await?;
            let live = checkpoint::read(&self.db, p.name())
                .await?
                .map_or(LogPosition::START, |c| c.position);
            let (_, tail) = self.replay_tenant(scratch, &filter, at, Some(live)).await?;
            read += tail;
            at = at.max(live);
            // SQLite: the writer connection reaches the scratch by attaching
            // it (outside any transaction).
            if let (Scratch::Sqlite(s), Db::Sqlite(db)) = (scratch, &self.db) {
                let Some(file) = s.path.to_str() else {
                    return Err(ProjectorError::Rebuild(
                        "the scratch path is not UTF-8".into(),
                    ));
                };
                sqlx::query(&format!("ATTACH DATABASE $1 AS {}", ident(&s.alias)))
                    .bind(file)
                    .execute(&db.write)
                    .await?;
            }
            let swapped = self.swap_tenant(scratch, &filter, at).await;
            if let (Scratch::Sqlite(s), Db::Sqlite(db)) = (scratch, &self.db) {
                if let Err(e) = sqlx::raw_sql(&format!("DETACH DATABASE {}", ident(&s.alias)))
                    .execute(&db.write)
                    .await
                {
                    tracing::debug!(error = %e, "detaching the recompute scratch database");
                }
            }
            match swapped {
                Ok(true) => return Ok(read),
                Ok(false) => tracing::debug!(
                    projection = p.name(),
                    attempt,
                    "tenant recompute: the tenant wrote meanwhile; catching up to try again"
                ),
                Err(SwapError::Retry(why)) => tracing::warn!(
                    projection = p.name(),
                    attempt,
                    reason = %why,
                    "tenant recompute: the swap gave up waiting; catching up to try again"
                ),
                Err(SwapError::Fatal(e)) => return Err(e),
            }
        }
        Err(ProjectorError::Rebuild(format!(
            "could not swap in the recomputed '{}' rows in {SWAP_ATTEMPTS} attempts",
            p.name()
        )))
    }

    /// In one live transaction: lock the checkpoint and, if the live model
    /// has passed no event of the tenant since `at` (the scratch's
    /// position), replace the tenant's rows of each tenant table with the
    /// scratch's. Answers false (nothing changed) if it has.
    async fn swap_tenant(
        &self,
        scratch: &Scratch,
        filter: &crate::store::LogFilter,
        at: LogPosition,
    ) -> Result<bool, SwapError> {
        let p = self.projection.as_ref();
        let tenant = filter.tenant_id.clone().unwrap_or_default();
        let mut tx = self.db.begin().await?;
        if let Tx::Postgres(_) = &tx {
            exec(
                &mut tx,
                &format!("SET LOCAL lock_timeout = '{PG_LOCK_TIMEOUT}'"),
            )
            .await?;
        }
        if let (Scratch::Sqlite(s), Tx::Sqlite(t)) = (scratch, &mut tx) {
            let attached = sqlx::query("SELECT 1 FROM pragma_database_list WHERE name = $1")
                .bind(&s.alias)
                .fetch_optional(&mut **t)
                .await?
                .is_some();
            if !attached {
                tx.rollback().await?;
                return Err(SwapError::Retry(
                    "the scratch database was not attached to the writer connection".into(),
                ));
            }
        }
        let stored = checkpoint::load(&mut tx, p.name()).await?;
        let live = stored.map_or(LogPosition::START, |c| c.position);
        if live < at {
            tx.rollback().await?;
            return Ok(false);
        }
        if live > at {
            let newer = self.store.read_filtered(at, 1, filter).await?;
            if newer.first().is_some_and(|e| e.log <= live) {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for table in p.tenant_tables() {
            let (live, copy, columns) = match (scratch, &mut tx) {
                (Scratch::Sqlite(s), Tx::Sqlite(t)) => {
                    let columns: Vec<String> =
                        sqlx::query(&format!("PRAGMA main.table_info({})", ident(table)))
                            .fetch_all(&mut **t)
                            .await?
                            .iter()
                            .map(|r| ident(&r.get::<String, _>("name")))
                            .collect();
                    (
                        format!("main.{}", ident(table)),
                        format!("{}.{}", ident(&s.alias), ident(table)),
                        columns,
                    )
                }
                (Scratch::Postgres(s), Tx::Postgres(t)) => {
                    let Some((schema, _)) = s.owned.iter().find(|(_, t)| t == table) else {
                        return Err(SwapError::Fatal(ProjectorError::Rebuild(format!(
                            "table {table} is not one of the projection's own"
                        ))));
                    };
                    let columns: Vec<String> = sqlx::query_scalar::<_, String>(
                        "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass \
                         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    )
                    .bind(format!("{}.{}", ident(schema), ident(table)))
                    .fetch_all(&mut **t)
                    .await?
                    .iter()
                    .map(|c| ident(c))
                    .collect();
                    (
                        format!("{}.{}", ident(schema), ident(table)),
                        format!("{}.{}", ident(&s.schema), ident(table)),
                        columns,
                    )
                }
                _ => {
                    return Err(SwapError::Fatal(ProjectorError::Rebuild(
                        "scratch and database backends differ".into(),
                    )))
                }
            };
            if !columns.iter().any(|c| c == "\"tenant_id\"") {
                return Err(SwapError::Fatal(ProjectorError::Rebuild(format!(
                    "table {table} has no tenant_id column"
                ))));
            }
            let list = columns.join(", ");
            scaidrive_projections::tx_execute!(
                &mut tx,
                &format!("DELETE FROM {live} WHERE tenant_id = $1"),
                &tenant
            )?;
            scaidrive_projections::tx_execute!(
                &mut tx,
                &format!(
                    "INSERT INTO {live} ({list}) SELECT {list} FROM {copy} WHERE tenant_id = $1"
                ),
                &tenant
            )?;
        }
        // Stored again where it was: its time says when the model was last
        // brought up to date, which is now for this tenant's rows.
        checkpoint::store(
            &mut tx,
            p.name(),
            Checkpoint {
                version: stored.map_or(p.version(), |c| c.version),
                position: live,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Lets the live read model reach `target` in short transactions of its
    /// own, exactly as its runner would (the checkpoint row decides who
    /// applies a batch). Afterwards every event up to `target` has been
    /// applied live once, so every message it queues has been queued, and
    /// the replay's own queue writes can be thrown away.
    async fn live_catch_up(&self, target: LogPosition) -> Result<(), ProjectorError> {
        let p = self.projection.as_ref();
        loop {
            let stored = checkpoint::read(&self.db, p.name()).await?;
            let from = stored.map_or(LogPosition::START, |c| c.position);
            if from >= target {
                return Ok(());
            }
            let batch = DecodedEvent::all(read_commits(&self.store, from, BATCH).await?);
            if batch.is_empty() {
                return Ok(());
            }
            let mut tx = self.db.begin().await?;
            let now = checkpoint::load(&mut tx, p.name()).await?;
            if now.map(|c| c.position) != stored.map(|c| c.position) {
                // A runner moved it meanwhile: look again.
                tx.rollback().await?;
                continue;
            }
            let upto = batch.partition_point(|e| e.log <= target);
            let last = batch[..upto].last().map_or(from, |e| e.log);
            p.apply_all(&mut tx, &batch[..upto]).await?;
            if last == from {
                tx.rollback().await?;
                return Ok(());
            }
            // The stored version stays: if this rebuild fails later, a model
            // of another version is still reset at the next start.
            let version = stored.map_or(p.version(), |c| c.version);
            checkpoint::store(
                &mut tx,
                p.name(),
                Checkpoint {
                    version,
                    position: last,
                },
            )
            .await?;
            tx.commit().await?;
        }
    }

    /// Applies the log after `from`, up to `until`, in the live transaction
    /// `tx`; returns where it got and how many events it read.
    async fn apply_range(
        &self,
        tx: &mut Tx,
        from: LogPosition,
        until: LogPosition,
    ) -> Result<(LogPosition, u64), ProjectorError> {
        let p = self.projection.as_ref();
        let mut at = from;
        let mut read = 0u64;
        while at < until {
            let batch = DecodedEvent::all(read_commits(&self.store, at, BATCH).await?);
            if batch.is_empty() {
                break;
            }
            let upto = batch.partition_point(|e| e.log <= until);
            p.apply_all(tx, &batch[..upto]).await?;
            if let Some(e) = batch[..upto].last() {
                at = e.log;
            }
            read += upto as u64;
            if upto < batch.len() {
                return Ok((at, read));
            }
        }
        Ok((at, read))
    }

    /// The part of a swap both backends share, after the rebuilt tables are in
    /// place in `tx`: the tail since the replay's position, then the checkpoint.
    async fn finish_swap(
        &self,
        mut tx: Tx,
        at: LogPosition,
    ) -> Result<(LogPosition, u64), SwapError> {
        let p = self.projection.as_ref();
        // Up to the head as of now: on PostgreSQL writes go on meanwhile, and
        // what comes later is the live runner's.
        let head = self.store.head().await?.max(at);
        let (position, tail) = self.apply_range(&mut tx, at, head).await?;
        checkpoint::store(
            &mut tx,
            p.name(),
            Checkpoint {
                version: p.version(),
                position,
            },
        )
        .await?;
        tx.commit().await?;
        Ok((position, tail))
    }

    /// The live model's position in `tx` (its checkpoint now locked), after
    /// letting it reach `at` if it had not yet (rare: `live_catch_up` ran
    /// just before), so that every event up to `at` has been applied live.
    async fn lock_and_reach(&self, tx: &mut Tx, at: LogPosition) -> Result<(), SwapError> {
        let p = self.projection.as_ref();
        let live_at = checkpoint::load(tx, p.name())
            .await?
            .map_or(LogPosition::START, |c| c.position);
        if live_at < at {
            self.apply_range(tx, live_at, at).await?;
        }
        Ok(())
    }

    /// SQLite: on the writer connection, attach the scratch file and, in one
    /// `BEGIN IMMEDIATE` transaction, replace each owned table's rows with the
    /// scratch's, apply the tail and store the checkpoint. The single writer
    /// is held for the copy and the tail only.
    async fn swap_sqlite(
        &self,
        db: &SqliteDb,
        s: &SqliteScratch,
        at: LogPosition,
    ) -> Result<(LogPosition, u64), SwapError> {
        let Some(file) = s.path.to_str() else {
            return Err(SwapError::Fatal(ProjectorError::Rebuild(
                "the scratch path is not UTF-8".into(),
            )));
        };
        sqlx::query(&format!("ATTACH DATABASE $1 AS {}", ident(&s.alias)))
            .bind(file)
            .execute(&db.write)
            .await?;
        let swapped = self.swap_sqlite_attached(s, at).await;
        // The pool has exactly one connection, the one attached above (unless
        // it was replaced meanwhile, when there is nothing to detach).
        if let Err(e) = sqlx::raw_sql(&format!("DETACH DATABASE {}", ident(&s.alias)))
            .execute(&db.write)
            .await
        {
            tracing::debug!(error = %e, "detaching the rebuild scratch database");
        }
        swapped
    }

    async fn swap_sqlite_attached(
        &self,
        s: &SqliteScratch,
        at: LogPosition,
    ) -> Result<(LogPosition, u64), SwapError> {
        let p = self.projection.as_ref();
        let mut tx = self.db.begin().await?;
        let attached = match &mut tx {
            Tx::Sqlite(t) => sqlx::query("SELECT 1 FROM pragma_database_list WHERE name = $1")
                .bind(&s.alias)
                .fetch_optional(&mut **t)
                .await?
                .is_some(),
            Tx::Postgres(_) => false,
        };
        if !attached {
            tx.rollback().await?;
            return Err(SwapError::Retry(
                "the scratch database was not attached to the writer connection".into(),
            ));
        }
        self.lock_and_reach(&mut tx, at).await?;
        for table in p.tables() {
            let columns: Vec<String> = match &mut tx {
                Tx::Sqlite(t) => sqlx::query(&format!("PRAGMA main.table_info({})", ident(table)))
                    .fetch_all(&mut **t)
                    .await?
                    .iter()
                    .map(|r| ident(&r.get::<String, _>("name")))
                    .collect(),
                Tx::Postgres(_) => Vec::new(),
            };
            if columns.is_empty() {
                return Err(SwapError::Fatal(ProjectorError::Rebuild(format!(
                    "table {table} has no columns"
                ))));
            }
            let list = columns.join(", ");
            exec(&mut tx, &format!("DELETE FROM main.{}", ident(table))).await?;
            exec(
                &mut tx,
                &format!(
                    "INSERT INTO main.{t} ({list}) SELECT {list} FROM {a}.{t}",
                    t = ident(table),
                    a = ident(&s.alias)
                ),
            )
            .await?;
        }
        self.finish_swap(tx, at).await
    }

    /// PostgreSQL: in one transaction (with a short `lock_timeout`), drop each
    /// owned live table and move the rebuilt one into its schema, apply the
    /// tail and store the checkpoint. Indexes and constraints move with their
    /// table under the names the live ones had.
    async fn swap_postgres(
        &self,
        s: &PgScratch,
        at: LogPosition,
    ) -> Result<(LogPosition, u64), SwapError> {
        let mut tx = self.db.begin().await?;
        exec(
            &mut tx,
            &format!("SET LOCAL lock_timeout = '{PG_LOCK_TIMEOUT}'"),
        )
        .await?;
        self.lock_and_reach(&mut tx, at).await?;
        let live: Vec<String> = s
            .owned
            .iter()
            .map(|(schema, table)| format!("{}.{}", ident(schema), ident(table)))
            .collect();
        exec(
            &mut tx,
            &format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live.join(", ")),
        )
        .await?;
        for ((schema, table), live) in s.owned.iter().zip(&live) {
            exec(&mut tx, &format!("DROP TABLE {live}")).await?;
            exec(
                &mut tx,
                &format!(
                    "ALTER TABLE {}.{} SET SCHEMA {}",
                    ident(&s.schema),
                    ident(table),
                    ident(schema)
                ),
            )
            .await?;
        }
        self.finish_swap(tx, at).await
    }
}

/// Where a replay writes.
enum Scratch {
    Sqlite(SqliteScratch),
    Postgres(PgScratch),
}

impl Scratch {
    async fn create(&mut self, db: &Db, p: &dyn Projection) -> Result<(), ProjectorError> {
        match (self, db) {
            (Scratch::Sqlite(s), Db::Sqlite(_)) => s.create(p).await,
            (Scratch::Postgres(s), Db::Postgres(pool)) => s.create(pool, p).await,
            _ => Err(ProjectorError::Rebuild(
                "scratch and database backends differ".into(),
            )),
        }
    }

    /// A transaction in which the projection's tables (and the queue tables)
    /// are the scratch ones, and every other table the live one.
    async fn begin(&self) -> Result<Tx, ProjectorError> {
        let unready = || ProjectorError::Rebuild("the scratch was not created".into());
        Ok(match self {
            Scratch::Sqlite(s) => Tx::Sqlite(s.pool.as_ref().ok_or_else(unready)?.begin().await?),
            Scratch::Postgres(s) => {
                Tx::Postgres(s.pool.as_ref().ok_or_else(unready)?.begin().await?)
            }
        })
    }

    /// Applies events of a replay (a whole commit, or one event of a
    /// tenant's) in `open`, the replay's transaction:
    /// begun on demand and committed once it has been open for
    /// [`SCRATCH_TX`], so that no long transaction holds back the log's read
    /// watermark.
    async fn apply(
        &self,
        p: &dyn Projection,
        open: &mut Option<(Tx, Instant)>,
        events: &[DecodedEvent],
    ) -> Result<(), ProjectorError> {
        if open.is_none() {
            *open = Some((self.begin().await?, Instant::now()));
        }
        let Some((tx, started)) = open.as_mut() else {
            return Ok(());
        };
        p.apply_all(tx, events).await?;
        if started.elapsed() >= SCRATCH_TX {
            if let Some((tx, _)) = open.take() {
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Fresh planner statistics for the rebuilt tables before they go live
    /// (PostgreSQL; SQLite keeps the live tables and their statistics).
    async fn analyze(&self, db: &Db) {
        if let (Scratch::Postgres(s), Db::Postgres(pool)) = (self, db) {
            for (_, table) in &s.owned {
                let sql = format!("ANALYZE {}.{}", ident(&s.schema), ident(table));
                if let Err(e) = sqlx::raw_sql(&sql).execute(pool).await {
                    tracing::debug!(error = %e, "analyzing a rebuilt table");
                }
            }
        }
    }

    /// Drops the scratch (best effort: a leftover is only wasted space, and
    /// its name says what it is).
    async fn remove(&mut self, db: &Db) {
        match (self, db) {
            (Scratch::Sqlite(s), _) => s.remove().await,
            (Scratch::Postgres(s), Db::Postgres(pool)) => s.remove(pool).await,
            _ => {}
        }
    }
}

/// SQLite: a scratch database file beside the live one, opened on its own
/// connection with the live database attached read-only as `live`. SQLite
/// resolves an unqualified table name in `main` (the scratch) first, then in
/// attached databases, so the projection's SQL writes the scratch tables and
/// reads everything else (`events`, other projections' tables) live; a write
/// to a table the scratch lacks fails instead of reaching the live database.
struct SqliteScratch {
    live: PathBuf,
    path: PathBuf,
    /// The scratch's name on the writer connection during the swap.
    alias: String,
    pool: Option<SqlitePool>,
}

impl SqliteScratch {
    fn new(db: &SqliteDb, name: &str) -> Result<Self, ProjectorError> {
        let options = db.write.connect_options();
        let live = options.get_filename();
        let live = std::fs::canonicalize(live).map_err(|e| {
            ProjectorError::Rebuild(format!(
                "a rebuild needs the database file ({}): {e}",
                live.display()
            ))
        })?;
        let id = suffix();
        let mut file = live.as_os_str().to_owned();
        file.push(format!(".rebuild-{name}-{id}.db"));
        Ok(Self {
            live,
            path: PathBuf::from(file),
            alias: format!("rebuild_{id}"),
            pool: None,
        })
    }

    async fn create(&mut self, p: &dyn Projection) -> Result<(), ProjectorError> {
        let mut uri = url::Url::from_file_path(&self.live).map_err(|()| {
            ProjectorError::Rebuild(format!("{} is not an absolute path", self.live.display()))
        })?;
        uri.set_query(Some("mode=ro"));
        let attach = format!(
            "ATTACH DATABASE '{}' AS live",
            uri.as_str().replace('\'', "''")
        );
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            // Throwaway data: no durability needed, only rollback.
            .journal_mode(SqliteJournalMode::Memory)
            .synchronous(SqliteSynchronous::Off)
            .foreign_keys(false)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let attach = attach.clone();
                Box::pin(async move {
                    conn.execute(attach.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        self.pool = Some(pool.clone());
        // The live schema's own statements: the tables, then their indexes.
        let tables: Vec<&'static str> = p.tables().iter().chain(QUEUE_TABLES).copied().collect();
        for table in tables {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT type, sql FROM live.sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL \
                 AND type IN ('table', 'index') ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, name",
            )
            .bind(table)
            .fetch_all(&pool)
            .await?;
            if !rows.iter().any(|(kind, _)| kind == "table") {
                return Err(ProjectorError::Rebuild(format!(
                    "no table {table} in the live database"
                )));
            }
            for (_, sql) in rows {
                sqlx::raw_sql(&sql).execute(&pool).await?;
            }
        }
        Ok(())
    }

    async fn remove(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.close().await;
        }
        for ext in ["", "-journal", "-wal", "-shm"] {
            let mut f = self.path.as_os_str().to_owned();
            f.push(ext);
            let f = Path::new(&f);
            if let Err(e) = std::fs::remove_file(f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %f.display(), error = %e, "removing the rebuild scratch");
                }
            }
        }
    }
}

/// PostgreSQL: a scratch schema with a copy of each owned (and queue) table's
/// definition, written on a connection whose `search_path` puts the scratch
/// schema first, so the projection's SQL writes the scratch tables and reads
/// everything else live.
struct PgScratch {
    schema: String,
    /// Each owned table with the schema its live version is in.
    owned: Vec<(String, &'static str)>,
    pool: Option<PgPool>,
}

impl PgScratch {
    fn new(name: &str) -> Self {
        Self {
            schema: format!("scaidrive_rebuild_{name}_{}", suffix()),
            owned: Vec::new(),
            pool: None,
        }
    }

    async fn create(&mut self, live: &PgPool, p: &dyn Projection) -> Result<(), ProjectorError> {
        let scratch = ident(&self.schema);
        sqlx::raw_sql(&format!("CREATE SCHEMA {scratch}"))
            .execute(live)
            .await?;
        let owned = p.tables();
        let tables: Vec<&'static str> = owned.iter().chain(QUEUE_TABLES).copied().collect();
        for table in tables {
            let schema: Option<String> = sqlx::query_scalar(
                "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = to_regclass($1)",
            )
            .bind(table)
            .fetch_optional(live)
            .await?;
            let Some(schema) = schema else {
                return Err(ProjectorError::Rebuild(format!(
                    "no table {table} in the live database"
                )));
            };
            let src = format!("{}.{}", ident(&schema), ident(table));
            let dst = format!("{scratch}.{}", ident(table));
            // Columns, defaults, CHECK constraints, storage and comments; the
            // indexes follow under the live ones' names (names are per
            // schema, so they are free here and still right after the move).
            sqlx::raw_sql(&format!(
                "CREATE TABLE {dst} (LIKE {src} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .execute(live)
            .await?;
            let constraints: Vec<(String, String)> = sqlx::query_as(
                "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname",
            )
            .bind(&src)
            .fetch_all(live)
            .await?;
            for (name, def) in constraints {
                sqlx::raw_sql(&format!(
                    "ALTER TABLE {dst} ADD CONSTRAINT {} {def}",
                    ident(&name)
                ))
                .execute(live)
                .await?;
            }
            let indexes: Vec<(String, bool, String)> = sqlx::query_as(
                "SELECT c.relname::text, x.indisunique, pg_get_indexdef(x.indexrelid) \
                 FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid \
                 WHERE x.indrelid = $1::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k \
                   WHERE k.conrelid = x.indrelid AND k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x')) \
                 ORDER BY c.relname",
            )
            .bind(&src)
            .fetch_all(live)
            .await?;
            for (name, unique, def) in indexes {
                // `CREATE [UNIQUE] INDEX name ON schema.table USING ...`: keep
                // the method, columns and predicate, point it at the scratch.
                let Some(at) = def.find(" USING ") else {
                    return Err(ProjectorError::Rebuild(format!(
                        "cannot read the definition of index {name}: {def}"
                    )));
                };
                let unique = if unique { "UNIQUE " } else { "" };
                sqlx::raw_sql(&format!(
                    "CREATE {unique}INDEX {} ON {dst}{}",
                    ident(&name),
                    &def[at..]
                ))
                .execute(live)
                .await?;
            }
            if owned.contains(&table) {
                // Privileges granted on the live table (to a reporting role,
                // say) carry over.
                let grants: Vec<(String, String, bool)> = sqlx::query_as(
                    "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, \
                     a.privilege_type, a.is_grantable \
                     FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a \
                     LEFT JOIN pg_roles r ON r.oid = a.grantee \
                     WHERE c.oid = $1::regclass AND a.grantee <> c.relowner",
                )
                .bind(&src)
                .fetch_all(live)
                .await?;
                for (grantee, privilege, grantable) in grants {
                    let option = if grantable { " WITH GRANT OPTION" } else { "" };
                    sqlx::raw_sql(&format!("GRANT {privilege} ON {dst} TO {grantee}{option}"))
                        .execute(live)
                        .await?;
                }
                self.owned.push((schema, table));
            }
        }
        let search_path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
            .fetch_one(live)
            .await?;
        let setup =
            format!("SET search_path TO {scratch}, {search_path}; SET synchronous_commit TO off");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let setup = setup.clone();
                Box::pin(async move {
                    conn.execute(setup.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(live.connect_options().as_ref().clone())
            .await?;
        self.pool = Some(pool);
        Ok(())
    }

    async fn remove(&mut self, live: &PgPool) {
        if let Some(pool) = self.pool.take() {
            pool.close().await;
        }
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&self.schema));
        if let Err(e) = sqlx::raw_sql(&sql).execute(live).await {
            tracing::warn!(schema = %self.schema, error = %e, "dropping the rebuild scratch schema");
        }
    }
}
