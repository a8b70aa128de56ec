//! The SMB connector engine: runs each connector's syncs in the one process
//! that holds the `connectors` lease.
//!
//! A run is started by an event (`connector-sync-started`, from `/sync` or
//! from the schedule) and ended by another (`-completed` / `-failed`). The
//! lease holder looks every second for connectors whose stream says a run is
//! going and that it is not running itself, and runs them: so a run that was
//! cut short (the process died, the SMB server vanished mid-run) is resumed
//! under the same run id by whichever process holds the lease next, and the
//! per-path state written as each file settles (`connector_items`) makes it
//! skip what was already done. One process runs at most one run per
//! connector at a time, and the stream refuses a second start while one is
//! going (409).

pub mod engine;
pub mod smb;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parking_lot::Mutex;
use scaidrive_domain::connector::{Connector, ConnectorCommand};
use scaidrive_domain::id::ConnectorId;
use scaidrive_domain::{Actor, Aggregate};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::command::{CommandContext, CommandError, Committed};
use crate::lease::Lease;
use crate::services::AppState;

/// The lease whose holder runs every connector.
pub const LEASE: &str = "connectors";
/// How often the holder looks for runs to do and schedules that are due.
pub const POLL: Duration = Duration::from_secs(1);

/// The context a connector's own writes are made in: its creator as the
/// user, `connector:cnn_…` as the service account.
pub fn context(tenant_id: &str, connector_id: &str, created_by: Option<String>) -> CommandContext {
    let mut ctx = CommandContext::system(Some(tenant_id.to_owned()));
    ctx.actor = Actor {
        user_id: created_by,
        service_account: Some(format!("connector:{connector_id}")),
        ..Actor::default()
    };
    ctx
}

/// Starts a run (409 while one is going); answers its id.
pub async fn start_run(
    state: &AppState,
    ctx: &CommandContext,
    id: ConnectorId,
    trigger: &str,
) -> Result<(String, Committed), CommandError> {
    let run_id = format!("run_{}", Uuid::now_v7().simple());
    let cmd = ConnectorCommand::StartRun {
        run_id: run_id.clone(),
        trigger: trigger.to_owned(),
        takeover: false,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Connector, _>(&id.to_string(), ctx, |c| c.state.decide(&cmd))
        .await?;
    Ok((run_id, committed))
}

/// Runs that this process is doing now (connector ids).
#[derive(Clone, Default)]
struct Active(Arc<Mutex<HashSet<String>>>);

pub fn spawn(
    state: AppState,
    lease: Lease,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let active = Active::default();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            if !lease.is_held() {
                continue;
            }
            if let Err(e) = tick(&state, &active, &stop).await {
                tracing::warn!(target: "scaidrive::connector", error = %e, "connector pass failed");
            }
        }
    })
}

async fn tick(
    state: &AppState,
    active: &Active,
    stop: &CancellationToken,
) -> Result<(), CommandError> {
    let rows = scaidrive_projections::connectors::all_connectors(&state.db)
        .await
        .map_err(store_err)?;
    let now = Utc::now();
    for row in rows {
        if active.0.lock().contains(&row.id) {
            continue;
        }
        let Ok(id) = row.id.parse::<ConnectorId>() else {
            continue;
        };
        let loaded = state.bus.load::<Connector>(&row.id).await?;
        let c = loaded.state;
        if !c.is_live() {
            continue;
        }
        let run_id = match &c.running {
            Some(r) => r.clone(),
            None => {
                let s = &c.settings;
                let due = s.enabled
                    && s.sync_interval_minutes > 0
                    && row.last_sync_at.is_none_or(|t| {
                        now - t >= chrono::Duration::minutes(s.sync_interval_minutes)
                    });
                if !due {
                    continue;
                }
                let ctx = context(&row.tenant_id, &row.id, c.created_by.map(|u| u.to_string()));
                match start_run(state, &ctx, id, "schedule").await {
                    Ok((run_id, _)) => run_id,
                    Err(e) => {
                        tracing::warn!(target: "scaidrive::connector", connector = %row.id, error = %e, "could not start a scheduled run");
                        continue;
                    }
                }
            }
        };
        active.0.lock().insert(row.id.clone());
        let (state, active, stop) = (state.clone(), active.clone(), stop.clone());
        tokio::spawn(async move {
            let cid = id.to_string();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = engine::run(&state, id, &run_id) => {}
            }
            active.0.lock().remove(&cid);
        });
    }
    Ok(())
}

pub(crate) fn store_err(e: sqlx::Error) -> CommandError {
    CommandError::Store(crate::store::StoreError::from_sqlx(e))
}
