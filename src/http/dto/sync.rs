//! Sync devices, cursors and apply outcomes as the API shows them.

use chrono::SecondsFormat;
use scaidrive_projections::sync_queries::{ChangeRow, ConflictRow, CursorRow, DeviceRow};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::command::sync::Outcome;
use crate::http::schema::{
    ApplyStatus, ChangeTypeDoc, ConflictStrategyDoc, SyncResourceType, Timestamp,
};
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

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeMetadata {
    pub size: Option<i64>,
    pub mime_type: Option<String>,
    pub permanent: bool,
}

/// One entry of the change feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Change {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub old_share_id: Option<String>,
    #[schema(value_type = SyncResourceType)]
    pub resource_type: String,
    pub resource_id: String,
    #[schema(value_type = ChangeTypeDoc)]
    pub change_type: String,
    pub changed_by: Option<String>,
    pub device_id: Option<String>,
    /// With milliseconds: several changes often share a second.
    #[schema(value_type = Timestamp)]
    pub changed_at: String,
    pub name: Option<String>,
    pub parent_id: Option<String>,
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub version_id: Option<String>,
    pub metadata: ChangeMetadata,
    /// The feed position just after this change.
    pub cursor: String,
}

impl From<&ChangeRow> for Change {
    fn from(r: &ChangeRow) -> Self {
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            share_id: r.share_id.clone(),
            old_share_id: r.old_share_id.clone(),
            resource_type: r.resource_type.clone(),
            resource_id: r.resource_id.clone(),
            change_type: r.change_type.clone(),
            changed_by: r.changed_by.clone(),
            device_id: r.device_id.clone(),
            changed_at: r.changed_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            name: r.name.clone(),
            parent_id: r.parent_id.clone(),
            old_path: r.old_path.clone(),
            new_path: r.new_path.clone(),
            version_id: r.version_id.clone(),
            metadata: ChangeMetadata {
                size: r.size,
                mime_type: r.mime_type.clone(),
                permanent: r.permanent,
            },
            cursor: r.log().to_token(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    pub cursor: String,
    pub has_more: bool,
    pub share_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Conflict {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub device_id: String,
    pub user_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub name: String,
    pub change_type: String,
    /// The change as the device sent it.
    #[schema(value_type = Option<Object>)]
    pub client_change: Value,
    pub base_version_id: Option<String>,
    pub server_version_id: Option<String>,
    pub strategy: String,
    /// `open` or `resolved`.
    pub status: String,
    pub is_resolved: bool,
    pub resolution: Option<String>,
    pub result_resource_id: Option<String>,
    pub result_version_id: Option<String>,
    pub resolved_by: Option<String>,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Option<Timestamp>)]
    pub resolved_at: Option<String>,
    /// What resolving did (resolve only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ApplyOutcome>,
}

impl From<&ConflictRow> for Conflict {
    fn from(r: &ConflictRow) -> Self {
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            share_id: r.share_id.clone(),
            device_id: r.device_id.clone(),
            user_id: r.user_id.clone(),
            resource_type: r.resource_type.clone(),
            resource_id: r.resource_id.clone(),
            name: r.name.clone(),
            change_type: r.change_type.clone(),
            client_change: serde_json::from_str(&r.client_change).unwrap_or(Value::Null),
            base_version_id: r.base_version_id.clone(),
            server_version_id: r.server_version_id.clone(),
            strategy: r.strategy.clone(),
            status: r.status.clone(),
            is_resolved: r.status == "resolved",
            resolution: r.resolution.clone(),
            result_resource_id: r.result_resource_id.clone(),
            result_version_id: r.result_version_id.clone(),
            resolved_by: r.resolved_by.clone(),
            created_at: ts(r.created_at),
            resolved_at: r.resolved_at.map(ts),
            result: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictList {
    pub conflicts: Vec<Conflict>,
    pub total: usize,
}
