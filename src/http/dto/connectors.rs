//! SMB connectors and their runs as the API shows them. The password is
//! never part of an answer: `has_password` is always true.

use scaidrive_projections::connectors::{ConnectorRow, RunRow};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::{ConnectorId, ShareId, TenantId, Timestamp};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct Connector {
    #[schema(value_type = ConnectorId)]
    pub id: String,
    #[schema(value_type = TenantId)]
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub server_host: String,
    pub server_port: i64,
    pub share_name: String,
    pub base_path: String,
    pub domain: String,
    pub username: String,
    pub has_password: bool,
    #[schema(value_type = ShareId)]
    pub target_share_id: String,
    pub target_path: String,
    /// `bidirectional`, `smb_to_scaidrive` or `scaidrive_to_smb`.
    pub sync_direction: &'static str,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    /// `LAST_WRITER_WINS`, `KEEP_BOTH`, `SERVER_WINS`, `CLIENT_WINS` or `MANUAL`.
    pub conflict_resolution: &'static str,
    pub sync_interval_minutes: i64,
    pub enabled: bool,
    /// `idle`, `running`, `error`, ...: the last run's outcome.
    pub status: String,
    #[schema(value_type = Option<Timestamp>)]
    pub last_sync_at: Option<String>,
    pub last_error: Option<String>,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
}

impl From<&ConnectorRow> for Connector {
    fn from(r: &ConnectorRow) -> Self {
        let s = r.settings();
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            name: s.name,
            description: s.description,
            server_host: s.server_host,
            server_port: s.server_port,
            share_name: s.share_name,
            base_path: s.base_path,
            domain: s.domain,
            username: s.username,
            has_password: true,
            target_share_id: r.share_id.clone(),
            target_path: s.target_path,
            sync_direction: s.sync_direction.as_str(),
            include_patterns: s.include_patterns,
            exclude_patterns: s.exclude_patterns,
            conflict_resolution: s.conflict_resolution.as_str(),
            sync_interval_minutes: s.sync_interval_minutes,
            enabled: s.enabled,
            status: r.status.clone(),
            last_sync_at: r.last_sync_at.map(ts),
            last_error: r.last_error.clone(),
            created_at: ts(r.created_at),
            modified_at: ts(r.modified_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorList {
    pub connectors: Vec<Connector>,
    pub total: usize,
}

/// One sync run of a connector.
#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    pub id: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    #[schema(value_type = Timestamp)]
    pub started_at: String,
    #[schema(value_type = Option<Timestamp>)]
    pub finished_at: Option<String>,
    pub files_created: i64,
    pub files_updated: i64,
    pub files_deleted: i64,
    pub bytes_transferred: i64,
    pub conflicts: i64,
    pub error: Option<String>,
    /// The HTTP-like status of a failure (401 rejected credentials, 503
    /// unreachable, 504 too slow).
    pub error_status: Option<i32>,
}

impl From<&RunRow> for Run {
    fn from(r: &RunRow) -> Self {
        Self {
            id: r.id.clone(),
            status: r.status.clone(),
            trigger: r.trigger_kind.clone(),
            started_at: ts(r.started_at),
            finished_at: r.finished_at.map(ts),
            files_created: r.files_created,
            files_updated: r.files_updated,
            files_deleted: r.files_deleted,
            bytes_transferred: r.bytes_transferred,
            conflicts: r.conflicts,
            error: r.error.clone(),
            error_status: r.error_status,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
    pub total: i64,
}

/// A run just started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    pub run_id: String,
}

/// The outcome of a connection test (200 either way).
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    pub success: bool,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}
