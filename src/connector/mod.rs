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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::Mutex;
use scaidrive_domain::connector::Connector;
use scaidrive_domain::id::ConnectorId;
use scaidrive_domain::Actor;
use tokio_util::sync::CancellationToken;

use crate::command::{CommandContext, CommandError};
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

/// Runs that this process is doing now (connector ids), and runs whose
/// outcome could not be recorded, with when to try them again: a store or
/// server that keeps failing is retried at a doubling interval, not every
/// [`POLL`].
#[derive(Clone, Default)]
struct Active {
    running: Arc<Mutex<HashSet<String>>>,
    retry: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

/// The longest wait between two tries of a run that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Active {
    fn waiting(&self, id: &str) -> bool {
        self.running.lock().contains(id)
            || self
                .retry
                .lock()
                .get(id)
                .is_some_and(|(at, _)| Instant::now() < *at)
    }

    fn ended(&self, id: &str, recorded: bool) {
        self.running.lock().remove(id);
        let mut retry = self.retry.lock();
        if recorded {
            retry.remove(id);
            return;
        }
        let tries = retry.get(id).map_or(0, |(_, n)| *n) + 1;
        let wait = POLL.saturating_mul(1u32 << tries.min(9)).min(MAX_BACKOFF);
        retry.insert(id.to_owned(), (Instant::now() + wait, tries));
    }
}

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
        if active.waiting(&row.id) {
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
                match crate::command::connectors::start_run(&state.bus, &ctx, id, "schedule").await
                {
                    Ok((run_id, _)) => run_id,
                    Err(e) => {
                        tracing::warn!(target: "scaidrive::connector", connector = %row.id, error = %e, "could not start a scheduled run");
                        continue;
                    }
                }
            }
        };
        active.running.lock().insert(row.id.clone());
        let (state, active, stop) = (state.clone(), active.clone(), stop.clone());
        tokio::spawn(async move {
            let cid = id.to_string();
            let recorded = tokio::select! {
                _ = stop.cancelled() => true,
                recorded = engine::run(&state, id, &run_id) => recorded,
            };
            active.ended(&cid, recorded);
        });
    }
    Ok(())
}

pub(crate) fn store_err(e: sqlx::Error) -> CommandError {
    CommandError::Store(crate::store::StoreError::from_sqlx(e))
}
