//! The process's own answers: liveness, readiness and the public client
//! configuration.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::TenantId;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `healthy`.
    pub status: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    Draining,
    NotReady,
}

/// Readiness: each dependency's check (`redis`, `kafka` appear when configured).
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub status: ReadyStatus,
    pub checks: BTreeMap<String, bool>,
}

/// `GET /config`: what this process has on, and limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientConfig {
    pub version: String,
    /// The tenant whose settings `limits` (and `external_sharing`) show:
    /// the caller's, when a valid bearer token was sent; null = the server
    /// defaults.
    #[schema(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
    pub features: ClientFeatures,
    pub limits: ClientLimits,
}

/// Each flag is true only when the thing is on in this process.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientFeatures {
    /// Semantic search: an embedding provider is configured and loaded.
    pub semantic_search: bool,
    /// External links: built; with a token, the tenant's sharing policy.
    pub external_sharing: bool,
    /// SMB connectors (`/smb-connectors`).
    pub smb_connector: bool,
    /// SharePoint connectors (not built yet: false).
    pub sharepoint_connector: bool,
    /// Keyword search: the index is open in this process.
    pub search: bool,
    /// The Kafka relay is compiled in and brokers are configured.
    pub kafka: bool,
    /// A Redis URL is configured (shared rate-limit windows).
    pub redis: bool,
    /// An SMTP URL is configured (`SCAIDRIVE_SMTP_URL`).
    pub smtp: bool,
    /// Any connector kind.
    pub connectors: bool,
}

/// Upload limits and rate limits: the caller's tenant's, else the defaults.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientLimits {
    /// The tenant's per-file cap (`settings.max_file_size_bytes`).
    pub max_file_size_bytes: u64,
    pub max_upload_chunk_size_bytes: u64,
    pub rate_limits: ClientRateLimits,
}

/// Units per window (SPEC §4.11): the tenant's own settings where set,
/// else the server's defaults.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientRateLimits {
    pub per_token: u64,
    pub per_user: u64,
    pub per_tenant: u64,
    pub window_seconds: u64,
}
