//! Sync devices, cursors and apply outcomes as the API shows them.

use scaidrive_projections::sync_queries::{CursorRow, DeviceRow};
use serde::Serialize;
use utoipa::ToSchema;

use crate::command::sync::Outcome;
use crate::http::openapi::{ApplyStatus, ConflictStrategyDoc, Timestamp};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCursor {
    pub share_id: String,
    pub cursor_position: String,
    #[schema(value_type = Timestamp)]
    pub last_sync_at: String,
}

impl From<&CursorRow> for DeviceCursor {
    fn from(c: &CursorRow) -> Self {
        Self {
            share_id: c.share_id.clone(),
            cursor_position: c.log().to_token(),
            last_sync_at: ts(c.last_sync_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    pub device_id: String,
    pub id: String,
    pub user_id: String,
    pub device_name: String,
    pub platform: String,
    pub client_version: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub last_seen_at: String,
    pub cursors: Vec<DeviceCursor>,
}

/// A device with its cursors.
impl From<(&DeviceRow, &[CursorRow])> for Device {
    fn from((d, cursors): (&DeviceRow, &[CursorRow])) -> Self {
        Self {
            device_id: d.device_id.clone(),
            id: d.device_id.clone(),
            user_id: d.user_id.clone(),
            device_name: d.device_name.clone(),
            platform: d.platform.clone(),
            client_version: d.client_version.clone(),
            created_at: ts(d.created_at),
            last_seen_at: ts(d.last_seen_at),
            cursors: cursors.iter().map(DeviceCursor::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<Device>,
    pub total: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStatus {
    pub share_id: String,
    pub device_id: String,
    pub cursor_position: String,
    #[schema(value_type = Timestamp)]
    pub last_sync_at: String,
    pub pending_changes: i64,
    pub has_conflicts: bool,
    pub open_conflicts: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CursorMoved {
    pub share_id: String,
    pub device_id: String,
    pub cursor_position: String,
    #[schema(value_type = Timestamp)]
    pub last_sync_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApplyOutcome {
    pub index: usize,
    #[schema(value_type = ApplyStatus)]
    pub status: &'static str,
    pub resource_id: Option<String>,
    pub version_id: Option<String>,
    pub conflict_id: Option<String>,
    #[schema(value_type = Option<ConflictStrategyDoc>)]
    pub resolution: Option<&'static str>,
}

/// What the change at `index` became.
impl From<(usize, &Outcome)> for ApplyOutcome {
    fn from((index, o): (usize, &Outcome)) -> Self {
        Self {
            index,
            status: o.status,
            resource_id: o.resource_id.clone(),
            version_id: o.version_id.clone(),
            conflict_id: o.conflict_id.clone(),
            resolution: o.resolution.map(|r| r.as_str()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyResult {
    pub results: Vec<ApplyOutcome>,
    /// The device's cursor on the share, if it has one.
    pub cursor: Option<String>,
    /// The log position of the last write.
    pub position: Option<String>,
}
