//! Background housekeeping: retention (purging old trash, pruning old
//! versions), expiring idle upload sessions (releasing what they hold) and
//! collecting chunks no version references any more.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::upload::UploadSession;
use scaidrive_domain::id::{FileId, FolderId, ShareId};
use scaidrive_domain::tenancy::Tenant;
use scaidrive_projections::db::Db;
use scaidrive_projections::drive_queries as q;
use scaidrive_projections::{db_fetch_all, db_fetch_optional};
use tokio_util::sync::CancellationToken;

use crate::blob::BlobStore;
use crate::command::{CommandBus, CommandContext, CommandError};

/// What one garbage-collection pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub chunks_deleted: u64,
    pub bytes_freed: u64,
    pub chunks_kept: u64,
}

/// The lease that lets one process (on PostgreSQL) apply retention.
pub const RETENTION_LEASE: &str = "retention";

/// Candidates read from the read model per query page.
const PAGE: i64 = 500;

/// One item retention removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub tenant_id: String,
    /// `share` (with everything in it), `folder` (with everything below
    /// it), `file` or `version`.
    pub resource_type: &'static str,
    /// The share, folder or file id.
    pub resource_id: String,
    /// Versions pruned (for `version`), files purged (otherwise).
    pub count: u64,
    /// Version bytes freed on the quota accounts.
    pub bytes: u64,
}

/// What one retention pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    /// When the pass ran (the cutoffs count back from here).
    pub now: Option<DateTime<Utc>>,
    pub tenants: u64,
    pub shares_purged: u64,
    pub files_purged: u64,
    pub folders_purged: u64,
    pub versions_pruned: u64,
    pub bytes_freed: u64,
    /// Items that could not be handled this time (they are tried again next pass).
    pub failed: u64,
    pub removed: Vec<Removed>,
    /// Log position of the pass's last append (read-your-writes token).
    #[serde(skip)]
    pub last_position: Option<scaidrive_domain::LogPosition>,
}

fn store_err(e: sqlx::Error) -> CommandError {
    CommandError::Store(crate::store::StoreError::from_sqlx(e))
}

/// Applies every tenant's retention as of `now`: purges trash older than
/// `trash_retention_days` and prunes versions superseded more than
/// `version_retention_days` ago, each removal its own append by the system
/// actor (so one refused item does not hold back the others). Candidates come
/// from the read model; each command decides on the aggregates.
pub async fn apply_retention(
    db: &Db,
    bus: &CommandBus,
    now: DateTime<Utc>,
) -> Result<RetentionReport, CommandError> {
    let mut report = RetentionReport {
        now: Some(now),
        ..RetentionReport::default()
    };
    let mut after = String::new();
    loop {
        let tenants = q::tenant_ids(db, &after, PAGE).await.map_err(store_err)?;
        for tenant in &tenants {
            report.tenants += 1;
            retain_tenant(db, bus, tenant, now, &mut report).await?;
        }
        match tenants.last() {
            Some(last) if tenants.len() as i64 == PAGE => after = last.clone(),
            _ => break,
        }
    }
    Ok(report)
}

/// A failure that concerns one item only: it is logged and counted, and the
/// pass carries on; store failures end the pass.
fn item_failed(
    report: &mut RetentionReport,
    e: CommandError,
    id: &str,
) -> Result<(), CommandError> {
    if matches!(e, CommandError::Store(_)) {
        return Err(e);
    }
    tracing::warn!(item = %id, error = %e, "retention skipped an item");
    report.failed += 1;
    Ok(())
}

/// What one removal took away, in the report's terms.
#[derive(Default)]
struct Tally {
    shares: u64,
    folders: u64,
    files: u64,
    versions: u64,
    bytes: u64,
}

impl From<crate::command::drive::PurgedSubtree> for Tally {
    fn from(p: crate::command::drive::PurgedSubtree) -> Self {
        Tally {
            folders: p.folders,
            files: p.files,
            bytes: p.bytes,
            ..Tally::default()
        }
    }
}

impl From<crate::command::retention::Pruned> for Tally {
    fn from(p: crate::command::retention::Pruned) -> Self {
        Tally {
            versions: p.versions,
            bytes: p.bytes,
            ..Tally::default()
        }
    }
}

impl Tally {
    fn share(p: crate::command::drive::PurgedSubtree) -> Self {
        Tally {
            shares: 1,
            ..p.into()
        }
    }

    fn file(bytes: u64) -> Self {
        Tally {
            files: 1,
            bytes,
            ..Tally::default()
        }
    }
}

impl RetentionReport {
    /// Adds one command's outcome to the report: a removal is counted and
    /// listed, nothing to do is nothing, a failure is [`item_failed`].
    fn settle(
        &mut self,
        tenant: &str,
        resource_type: &'static str,
        id: &str,
        outcome: Result<Option<(Tally, crate::command::Committed)>, CommandError>,
    ) -> Result<(), CommandError> {
        let (t, committed) = match outcome {
            Ok(Some(done)) => done,
            Ok(None) => return Ok(()),
            Err(e) => return item_failed(self, e, id),
        };
        self.last_position = committed.position.or(self.last_position);
        self.shares_purged += t.shares;
        self.folders_purged += t.folders;
        self.files_purged += t.files;
        self.versions_pruned += t.versions;
        self.bytes_freed += t.bytes;
        self.removed.push(Removed {
            tenant_id: tenant.to_owned(),
            resource_type,
            resource_id: id.to_owned(),
            count: if resource_type == "version" {
                t.versions
            } else {
                t.files
            },
            bytes: t.bytes,
        });
        Ok(())
    }
}

async fn retain_tenant(
    db: &Db,
    bus: &CommandBus,
    tenant: &str,
    now: DateTime<Utc>,
    report: &mut RetentionReport,
) -> Result<(), CommandError> {
    let settings = bus.load::<Tenant>(tenant).await?.state.settings;
    let mut ctx = CommandContext::system(Some(tenant.to_owned()));
    ctx.now = now;
    let trash_cutoff = now - chrono::Duration::days(i64::from(settings.trash_retention_days));
    let version_cutoff = now - chrono::Duration::days(i64::from(settings.version_retention_days));

    // Shares first, then folders: their purge takes what is in them along.
    let mut after = String::new();
    loop {
        let ids = q::ids_trashed_before(db, q::Trashed::Shares, tenant, trash_cutoff, &after, PAGE)
            .await
            .map_err(store_err)?;
        for raw in &ids {
            let Ok(id) = raw.parse::<ShareId>() else {
                continue;
            };
            let (mut folders, files) = q::subtree(db, raw, "").await.map_err(store_err)?;
            folders.sort_by(|a, b| a.path.cmp(&b.path));
            let folders: Vec<FolderId> = folders.iter().filter_map(|f| f.id.parse().ok()).collect();
            let files: Vec<FileId> = files.iter().filter_map(|f| f.id.parse().ok()).collect();
            let outcome = crate::command::retention::purge_trashed_share(
                bus,
                &ctx,
                id,
                &folders,
                &files,
                trash_cutoff,
            )
            .await
            .map(|o| o.map(|(p, c)| (Tally::share(p), c)));
            report.settle(tenant, "share", raw, outcome)?;
        }
        match ids.last() {
            Some(last) if ids.len() as i64 == PAGE => after = last.clone(),
            _ => break,
        }
    }

    let mut after = String::new();
    loop {
        let rows = q::folders_trashed_before(db, tenant, trash_cutoff, &after, PAGE)
            .await
            .map_err(store_err)?;
        for row in &rows {
            let Ok(id) = row.id.parse::<FolderId>() else {
                continue;
            };
            let (mut folders, files) = q::subtree(db, &row.share_id, &row.path)
                .await
                .map_err(store_err)?;
            // Parents before children, so containment can be checked in order.
            folders.sort_by(|a, b| a.path.cmp(&b.path));
            let folders: Vec<FolderId> = folders.iter().filter_map(|f| f.id.parse().ok()).collect();
            let files: Vec<FileId> = files.iter().filter_map(|f| f.id.parse().ok()).collect();
            let outcome = crate::command::retention::purge_trashed_folder(
                bus,
                &ctx,
                id,
                &folders,
                &files,
                trash_cutoff,
            )
            .await
            .map(|o| o.map(|(p, c)| (p.into(), c)));
            report.settle(tenant, "folder", &row.id, outcome)?;
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => after = last.id.clone(),
            _ => break,
        }
    }

    let mut after = String::new();
    loop {
        let ids = q::ids_trashed_before(db, q::Trashed::Files, tenant, trash_cutoff, &after, PAGE)
            .await
            .map_err(store_err)?;
        for raw in &ids {
            let Ok(id) = raw.parse::<FileId>() else {
                continue;
            };
            let outcome =
                crate::command::retention::purge_trashed_file(bus, &ctx, id, trash_cutoff)
                    .await
                    .map(|o| o.map(|(bytes, c)| (Tally::file(bytes), c)));
            report.settle(tenant, "file", raw, outcome)?;
        }
        match ids.last() {
            Some(last) if ids.len() as i64 == PAGE => after = last.clone(),
            _ => break,
        }
    }

    let mut after = String::new();
    loop {
        let ids =
            q::files_with_versions_superseded_before(db, tenant, version_cutoff, &after, PAGE)
                .await
                .map_err(store_err)?;
        for raw in &ids {
            let Ok(id) = raw.parse::<FileId>() else {
                continue;
            };
            let outcome = crate::command::retention::prune_versions(bus, &ctx, id, version_cutoff)
                .await
                .map(|o| o.map(|(p, c)| (p.into(), c)));
            report.settle(tenant, "version", raw, outcome)?;
        }
        match ids.last() {
            Some(last) if ids.len() as i64 == PAGE => after = last.clone(),
            _ => break,
        }
    }
    Ok(())
}

/// Expires active sessions idle past their expiry; returns how many.
pub async fn expire_uploads(db: &Db, bus: &CommandBus) -> Result<u64, CommandError> {
    let now = Utc::now();
    let mut n = 0;
    for (id, tenant) in q::expired_uploads(db, now, 500)
        .await
        .map_err(|e| CommandError::Store(crate::store::StoreError::from_sqlx(e)))?
    {
        let ctx = CommandContext::system(Some(tenant));
        // Expiry releases the session's quota reservation in the same append.
        let c = crate::command::quota::end_upload(bus, &ctx, &id, true).await?;
        if !c.events.is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

fn sql_err(e: sqlx::Error) -> String {
    e.to_string()
}

/// Deletes chunks that nothing has referenced for longer than `grace`, and
/// stray chunks (written by uploads that never completed) older than `grace`
/// that no active upload session holds.
pub async fn collect_garbage(
    db: &Db,
    bus: &CommandBus,
    blob: &BlobStore,
    grace: Duration,
) -> Result<GcReport, String> {
    let cutoff = Utc::now() - chrono::Duration::from_std(grace).map_err(|e| e.to_string())?;
    let mut report = GcReport::default();

    // Chunks held by upload sessions that may still complete.
    let active: Vec<(String,)> = db_fetch_all!(
        db,
        (String,),
        "SELECT id FROM rm_uploads WHERE status = 'active'"
    )
    .map_err(sql_err)?;
    let mut held = HashSet::new();
    for (id,) in active {
        let s = bus
            .load::<UploadSession>(&id)
            .await
            .map_err(|e| e.to_string())?;
        let tenant = s
            .state
            .plan
            .as_ref()
            .map(|p| p.tenant_id.to_string())
            .unwrap_or_default();
        for h in s.state.received.iter().flatten() {
            held.insert((tenant.clone(), h.clone()));
        }
    }

    for obj in blob.list_chunks(None).await.map_err(|e| e.to_string())? {
        if obj.last_modified >= cutoff || held.contains(&(obj.tenant_id.clone(), obj.hash.clone()))
        {
            report.chunks_kept += 1;
            continue;
        }
        let row: Option<(i64, Option<chrono::DateTime<Utc>>)> = db_fetch_optional!(
            db,
            (i64, Option<chrono::DateTime<Utc>>),
            "SELECT refs, released_at FROM rm_chunk_refs WHERE tenant_id = $1 AND hash = $2",
            &obj.tenant_id,
            &obj.hash
        )
        .map_err(sql_err)?;
        let collectable = match row {
            None => true,
            Some((refs, released)) => refs <= 0 && released.is_some_and(|r| r < cutoff),
        };
        if !collectable {
            report.chunks_kept += 1;
            continue;
        }
        // Forget the row first, and only if it is still unreferenced.
        let mut tx = db.begin().await.map_err(sql_err)?;
        scaidrive_projections::tx_execute!(
            &mut tx,
            "DELETE FROM rm_chunk_refs WHERE tenant_id = $1 AND hash = $2 AND refs <= 0",
            &obj.tenant_id,
            &obj.hash
        )
        .map_err(sql_err)?;
        tx.commit().await.map_err(sql_err)?;
        blob.delete_chunk(&obj.tenant_id, &obj.hash)
            .await
            .map_err(|e| e.to_string())?;
        report.chunks_deleted += 1;
        report.bytes_freed += obj.size;
    }
    Ok(report)
}

/// Runs the chores every `every` until cancelled (retention only while this
/// process holds its lease).
pub fn spawn(
    state: crate::services::AppState,
    every: Duration,
    grace: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // Retention appends many events: one process does it (on PostgreSQL,
    // the lease holder); the other chores coordinate through their rows.
    let retention = state.leases.lease(RETENTION_LEASE);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if retention.is_held() {
                match apply_retention(&state.db, &state.bus, Utc::now()).await {
                    Ok(r) if !r.removed.is_empty() => tracing::info!(
                        shares = r.shares_purged,
                        files = r.files_purged,
                        folders = r.folders_purged,
                        versions = r.versions_pruned,
                        bytes = r.bytes_freed,
                        "retention purged old trash and versions"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention pass failed"),
                }
            }
            match expire_uploads(&state.db, &state.bus).await {
                Ok(n) if n > 0 => tracing::info!(expired = n, "expired idle upload sessions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "expiring upload sessions failed"),
            }
            match collect_garbage(&state.db, &state.bus, &state.blob, grace).await {
                Ok(r) if r.chunks_deleted > 0 => {
                    tracing::info!(
                        deleted = r.chunks_deleted,
                        bytes = r.bytes_freed,
                        "collected unreferenced chunks"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "chunk garbage collection failed"),
            }
        }
    })
}
