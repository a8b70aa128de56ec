//! SMB connectors: `rm_connectors` (settings, status, last outcome; never the
//! password) and `rm_connector_runs` (one row per sync run), folded from the
//! connectors' streams.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::connector::{ConnectorEvent, ConnectorSettings};
use scaidrive_domain::{AnyEvent, DecodedEvent};

use crate::db::{Db, Tx};
use crate::projection::{typed, Projection, ProjectionError};
use crate::{db_fetch_all, db_fetch_optional, tx_execute, tx_fetch_optional};

pub struct ConnectorsProjection;

#[async_trait]
impl Projection for ConnectorsProjection {
    fn name(&self) -> &'static str {
        "connectors"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, event_type: &str) -> bool {
        event_type.starts_with("connector-")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_connectors", "rm_connector_runs"]
    }

    fn tenant_tables(&self) -> &'static [&'static str] {
        &["rm_connectors", "rm_connector_runs"]
    }

    async fn apply(&self, tx: &mut Tx, e: &DecodedEvent) -> Result<(), ProjectionError> {
        let id = e.stream_id.clone();
        let AnyEvent::Connector(ev) = typed(e)? else {
            return Ok(());
        };
        match ev.clone() {
            ConnectorEvent::ConnectorCreated {
                connector_id,
                tenant_id,
                share_id,
                created_by,
                settings,
                at,
                ..
            } => {
                let status = if settings.enabled { "idle" } else { "disabled" };
                tx_execute!(
                    tx,
                    "INSERT INTO rm_connectors (id, tenant_id, share_id, created_by, settings, status, created_at, modified_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
                    connector_id.to_string(),
                    tenant_id.to_string(),
                    share_id.to_string(),
                    created_by.to_string(),
                    serde_json::to_string(&settings).map_err(|err| ProjectionError::decode(e, err))?,
                    status,
                    at
                )?;
            }
            ConnectorEvent::ConnectorUpdated { changes, at, .. } => {
                let Some(row) = tx_fetch_optional!(
                    tx,
                    SettingsOnly,
                    "SELECT settings, status FROM rm_connectors WHERE id = $1",
                    id.clone()
                )?
                else {
                    return Ok(());
                };
                let cur: ConnectorSettings = serde_json::from_str(&row.settings)
                    .map_err(|err| ProjectionError::decode(e, err))?;
                let next = changes.applied_to(&cur);
                let status = match (next.enabled, row.status.as_str()) {
                    (false, "syncing") => "syncing",
                    (false, _) => "disabled",
                    (true, "disabled") => "idle",
                    (true, s) => match s {
                        "syncing" => "syncing",
                        "error" => "error",
                        _ => "idle",
                    },
                };
                tx_execute!(
                    tx,
                    "UPDATE rm_connectors SET settings = $2, status = $3, modified_at = $4 WHERE id = $1",
                    id,
                    serde_json::to_string(&next).map_err(|err| ProjectionError::decode(e, err))?,
                    status,
                    at
                )?;
            }
            ConnectorEvent::ConnectorDeleted { .. } => {
                tx_execute!(tx, "DELETE FROM rm_connectors WHERE id = $1", id.clone())?;
                tx_execute!(
                    tx,
                    "DELETE FROM rm_connector_runs WHERE connector_id = $1",
                    id
                )?;
            }
            ConnectorEvent::ConnectorSyncStarted {
                run_id,
                trigger,
                at,
            } => {
                tx_execute!(
                    tx,
                    "INSERT INTO rm_connector_runs (id, connector_id, tenant_id, status, trigger_kind, started_at) \
                     VALUES ($1, $2, $3, 'running', $4, $5) ON CONFLICT (id) DO NOTHING",
                    run_id.clone(),
                    id.clone(),
                    e.tenant_id.clone().unwrap_or_default(),
                    trigger,
                    at
                )?;
                tx_execute!(
                    tx,
                    "UPDATE rm_connectors SET status = 'syncing', running_run_id = $2 WHERE id = $1",
                    id,
                    run_id
                )?;
            }
            ConnectorEvent::ConnectorSyncCompleted { run_id, counts, at } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_connector_runs SET status = 'succeeded', finished_at = $2, files_created = $3, files_updated = $4, \
                     files_deleted = $5, bytes_transferred = $6, conflicts = $7 WHERE id = $1",
                    run_id.clone(),
                    at,
                    counts.files_created,
                    counts.files_updated,
                    counts.files_deleted,
                    counts.bytes_transferred,
                    counts.conflicts
                )?;
                finish(tx, &id, &run_id, at, None).await?;
            }
            ConnectorEvent::ConnectorSyncFailed {
                run_id,
                counts,
                status,
                error,
                at,
            } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_connector_runs SET status = 'failed', finished_at = $2, files_created = $3, files_updated = $4, \
                     files_deleted = $5, bytes_transferred = $6, conflicts = $7, error = $8, error_status = $9 WHERE id = $1",
                    run_id.clone(),
                    at,
                    counts.files_created,
                    counts.files_updated,
                    counts.files_deleted,
                    counts.bytes_transferred,
                    counts.conflicts,
                    error.clone(),
                    i32::from(status)
                )?;
                finish(tx, &id, &run_id, at, Some(error)).await?;
            }
        }
        Ok(())
    }
}

async fn finish(
    tx: &mut Tx,
    id: &str,
    run_id: &str,
    at: DateTime<Utc>,
    error: Option<String>,
) -> Result<(), ProjectionError> {
    let row = tx_fetch_optional!(
        tx,
        SettingsOnly,
        "SELECT settings, status FROM rm_connectors WHERE id = $1",
        id.to_owned()
    )?;
    let enabled = row
        .and_then(|r| serde_json::from_str::<ConnectorSettings>(&r.settings).ok())
        .map(|s| s.enabled)
        .unwrap_or(true);
    let status = match (&error, enabled) {
        (Some(_), _) => "error",
        (None, true) => "idle",
        (None, false) => "disabled",
    };
    tx_execute!(
        tx,
        "UPDATE rm_connectors SET status = $3, running_run_id = NULL, last_sync_at = $4, last_error = $5 \
         WHERE id = $1 AND running_run_id = $2",
        id.to_owned(),
        run_id.to_owned(),
        status,
        at,
        error
    )?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct SettingsOnly {
    settings: String,
    status: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectorRow {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub created_by: String,
    pub settings: String,
    pub status: String,
    pub running_run_id: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl ConnectorRow {
    pub fn settings(&self) -> ConnectorSettings {
        serde_json::from_str(&self.settings).unwrap_or_default()
    }
}

const COLS: &str = "id, tenant_id, share_id, created_by, settings, status, running_run_id, last_sync_at, last_error, created_at, modified_at";

pub async fn connector(
    db: &Db,
    tenant_id: &str,
    id: &str,
) -> Result<Option<ConnectorRow>, sqlx::Error> {
    let sql = format!("SELECT {COLS} FROM rm_connectors WHERE id = $1 AND tenant_id = $2");
    db_fetch_optional!(db, ConnectorRow, &sql, id, tenant_id)
}

pub async fn connectors(db: &Db, tenant_id: &str) -> Result<Vec<ConnectorRow>, sqlx::Error> {
    let sql = format!("SELECT {COLS} FROM rm_connectors WHERE tenant_id = $1 ORDER BY id");
    db_fetch_all!(db, ConnectorRow, &sql, tenant_id)
}

/// Every connector of every tenant (the scheduler's view).
pub async fn all_connectors(db: &Db) -> Result<Vec<ConnectorRow>, sqlx::Error> {
    let sql = format!("SELECT {COLS} FROM rm_connectors ORDER BY id");
    db_fetch_all!(db, ConnectorRow, &sql)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: String,
    pub connector_id: String,
    pub status: String,
    pub trigger_kind: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub files_created: i64,
    pub files_updated: i64,
    pub files_deleted: i64,
    pub bytes_transferred: i64,
    pub conflicts: i64,
    pub error: Option<String>,
    pub error_status: Option<i32>,
}

/// A connector's runs, newest first, and their total.
pub async fn runs(
    db: &Db,
    connector_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<RunRow>, i64), sqlx::Error> {
    let rows = db_fetch_all!(
        db,
        RunRow,
        "SELECT id, connector_id, status, trigger_kind, started_at, finished_at, files_created, files_updated, files_deleted, \
         bytes_transferred, conflicts, error, error_status FROM rm_connector_runs WHERE connector_id = $1 \
         ORDER BY started_at DESC, id DESC LIMIT $2 OFFSET $3",
        connector_id,
        limit,
        offset
    )?;
    let total = db
        .fetch_i64_args(
            "SELECT COUNT(*) FROM rm_connector_runs WHERE connector_id = $1",
            &[crate::db::Arg::Text(connector_id.to_owned())],
        )
        .await?;
    Ok((rows, total))
}

pub async fn run(db: &Db, run_id: &str) -> Result<Option<RunRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        RunRow,
        "SELECT id, connector_id, status, trigger_kind, started_at, finished_at, files_created, files_updated, files_deleted, \
         bytes_transferred, conflicts, error, error_status FROM rm_connector_runs WHERE id = $1",
        run_id
    )
}
