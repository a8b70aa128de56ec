//! Queries over the sync read models.

use chrono::{DateTime, Utc};
use scaidrive_domain::LogPosition;

use crate::db::Db;
use crate::{db_fetch_all, db_fetch_optional, db_fetch_scalar};

/// One entry of the change feed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    pub commit_id: i64,
    pub position: i64,
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub old_share_id: Option<String>,
    pub resource_type: String,
    pub resource_id: String,
    pub change_type: String,
    pub changed_by: Option<String>,
    pub device_id: Option<String>,
    pub changed_at: DateTime<Utc>,
    pub name: Option<String>,
    pub parent_id: Option<String>,
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<i64>,
    pub mime_type: Option<String>,
    pub permanent: bool,
}

impl ChangeRow {
    /// Where the change sits in the log (its cursor).
    pub fn log(&self) -> LogPosition {
        LogPosition::new(self.commit_id, self.position)
    }
}

const CHANGE_COLS: &str = "commit_id, position, id, tenant_id, share_id, old_share_id, resource_type, resource_id, \
    change_type, changed_by, device_id, changed_at, name, parent_id, old_path, new_path, version_id, size, mime_type, permanent";

/// A share's changes strictly after `after`, in log order, at most `limit`.
pub async fn changes(
    db: &Db,
    tenant_id: &str,
    share_id: &str,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<ChangeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHANGE_COLS} FROM rm_changes WHERE tenant_id = $1 AND (share_id = $2 OR old_share_id = $2) \
         AND (commit_id > $3 OR (commit_id = $3 AND position > $4)) ORDER BY commit_id, position LIMIT $5"
    );
    db_fetch_all!(
        db,
        ChangeRow,
        &sql,
        tenant_id,
        share_id,
        after.commit,
        after.position,
        limit
    )
}

/// How many of a share's changes lie after `after`.
pub async fn pending(
    db: &Db,
    tenant_id: &str,
    share_id: &str,
    after: LogPosition,
) -> Result<i64, sqlx::Error> {
    db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_changes WHERE tenant_id = $1 AND (share_id = $2 OR old_share_id = $2) \
         AND (commit_id > $3 OR (commit_id = $3 AND position > $4))",
        tenant_id,
        share_id,
        after.commit,
        after.position
    )
}

/// Every tenant's changes after `after` (the live hub's tail).
pub async fn all_changes(
    db: &Db,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<ChangeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHANGE_COLS} FROM rm_changes WHERE (commit_id > $1 OR (commit_id = $1 AND position > $2)) \
         ORDER BY commit_id, position LIMIT $3"
    );
    db_fetch_all!(db, ChangeRow, &sql, after.commit, after.position, limit)
}

/// A registered device.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub user_id: String,
    pub device_id: String,
    pub tenant_id: String,
    pub device_name: String,
    pub platform: String,
    pub client_version: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

const DEVICE_COLS: &str =
    "user_id, device_id, tenant_id, device_name, platform, client_version, created_at, last_seen_at";

pub async fn devices(db: &Db, user_id: &str) -> Result<Vec<DeviceRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {DEVICE_COLS} FROM rm_sync_devices WHERE user_id = $1 ORDER BY created_at, device_id"
    );
    db_fetch_all!(db, DeviceRow, &sql, user_id)
}

pub async fn device(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<Option<DeviceRow>, sqlx::Error> {
    let sql =
        format!("SELECT {DEVICE_COLS} FROM rm_sync_devices WHERE user_id = $1 AND device_id = $2");
    db_fetch_optional!(db, DeviceRow, &sql, user_id, device_id)
}

/// A device's cursor in one share.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CursorRow {
    pub share_id: String,
    pub commit_id: i64,
    pub position: i64,
    pub last_sync_at: DateTime<Utc>,
}

impl CursorRow {
    pub fn log(&self) -> LogPosition {
        LogPosition::new(self.commit_id, self.position)
    }
}

pub async fn cursor(
    db: &Db,
    user_id: &str,
    device_id: &str,
    share_id: &str,
) -> Result<Option<CursorRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        CursorRow,
        "SELECT share_id, commit_id, position, last_sync_at FROM rm_sync_cursors \
         WHERE user_id = $1 AND device_id = $2 AND share_id = $3",
        user_id,
        device_id,
        share_id
    )
}

/// The shares a device keeps a cursor in.
pub async fn cursors(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<Vec<CursorRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        CursorRow,
        "SELECT share_id, commit_id, position, last_sync_at FROM rm_sync_cursors \
         WHERE user_id = $1 AND device_id = $2 ORDER BY share_id",
        user_id,
        device_id
    )
}

/// A recorded conflict.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConflictRow {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub device_id: String,
    pub user_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub name: String,
    pub change_type: String,
    pub client_change: String,
    pub base_version_id: Option<String>,
    pub server_version_id: Option<String>,
    pub strategy: String,
    pub status: String,
    pub resolution: Option<String>,
    pub result_resource_id: Option<String>,
    pub result_version_id: Option<String>,
    pub resolved_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const CONFLICT_COLS: &str = "id, tenant_id, share_id, device_id, user_id, resource_type, resource_id, name, change_type, \
    client_change, base_version_id, server_version_id, strategy, status, resolution, result_resource_id, result_version_id, \
    resolved_by, created_at, resolved_at";

/// A user's conflicts, optionally of one device and share.
pub async fn conflicts(
    db: &Db,
    tenant_id: &str,
    user_id: Option<&str>,
    device_id: Option<&str>,
    share_id: Option<&str>,
    include_resolved: bool,
) -> Result<Vec<ConflictRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CONFLICT_COLS} FROM rm_sync_conflicts WHERE tenant_id = $1 AND ($2 IS NULL OR user_id = $2) \
         AND ($3 IS NULL OR device_id = $3) AND ($4 IS NULL OR share_id = $4) AND ($5 OR status = 'open') \
         ORDER BY created_at, id LIMIT 1000"
    );
    db_fetch_all!(
        db,
        ConflictRow,
        &sql,
        tenant_id,
        user_id,
        device_id,
        share_id,
        include_resolved
    )
}

pub async fn conflict(
    db: &Db,
    tenant_id: &str,
    id: &str,
) -> Result<Option<ConflictRow>, sqlx::Error> {
    let sql =
        format!("SELECT {CONFLICT_COLS} FROM rm_sync_conflicts WHERE tenant_id = $1 AND id = $2");
    db_fetch_optional!(db, ConflictRow, &sql, tenant_id, id)
}
