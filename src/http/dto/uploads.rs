//! Resumable upload sessions and chunk receipts as the API shows them.

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::upload::UploadSession as Session;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::{Timestamp, UploadStatusDoc};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadSession {
    pub session_id: String,
    pub id: String,
    #[schema(value_type = UploadStatusDoc)]
    pub status: &'static str,
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub chunk_size: Option<u64>,
    pub total_chunks: u64,
    pub received_chunks: u64,
    /// Indexes still to send.
    pub missing_chunks: Vec<u64>,
    #[schema(value_type = Option<Timestamp>)]
    pub expires_at: Option<String>,
    /// Set once completed.
    pub file_id: Option<String>,
}

impl UploadSession {
    /// The session `id` as it stands at `now` (an active one may have expired).
    pub fn at(id: &str, s: &Session, now: DateTime<Utc>) -> Self {
        let plan = s.plan.as_ref();
        Self {
            session_id: id.to_owned(),
            id: id.to_owned(),
            status: s.status_at(now).as_str(),
            file_name: plan.map(|p| p.file_name.clone()),
            file_size: plan.map(|p| p.file_size),
            chunk_size: plan.map(|p| p.chunk_size),
            total_chunks: s.received.len() as u64,
            received_chunks: s.received_count(),
            missing_chunks: s.missing(),
            expires_at: s.expires_at().map(ts),
            file_id: s.result.map(|r| r.0.to_string()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkReceipt {
    pub index: u64,
    pub size: u64,
    pub sha256: String,
    /// The tenant already stored these bytes.
    pub deduplicated: bool,
}
