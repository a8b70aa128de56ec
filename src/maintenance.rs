//! Background housekeeping: expiring idle upload sessions (releasing what
//! they hold) and collecting chunks no version references any more.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use scaidrive_domain::drive::upload::UploadSession;
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

/// Runs both chores every `every` until cancelled.
pub fn spawn(
    state: crate::http::AppState,
    every: Duration,
    grace: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
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
