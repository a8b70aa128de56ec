//! Shares as the API shows them.

use scaidrive_projections::drive_queries::ShareRow;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::{Object, ShareTypeDoc, Timestamp};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct Share {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = ShareTypeDoc)]
    pub share_type: String,
    /// Same as `share_type`.
    #[serde(rename = "type")]
    #[schema(value_type = ShareTypeDoc)]
    pub kind: String,
    /// `usr_` or `grp_` id.
    pub owner_id: String,
    pub is_public: bool,
    pub is_deleted: bool,
    pub quota_bytes: Option<i64>,
    pub used_bytes: i64,
    pub settings: Object,
    pub created_by: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
}

/// A share's row and what it holds (`used_bytes`, not part of the row).
impl From<(&ShareRow, i64)> for Share {
    fn from((r, used_bytes): (&ShareRow, i64)) -> Self {
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            share_type: r.share_type.clone(),
            kind: r.share_type.clone(),
            owner_id: r.owner_id.clone(),
            is_public: r.is_public,
            is_deleted: r.is_deleted,
            quota_bytes: r.quota_bytes,
            used_bytes,
            settings: Object {},
            created_by: r.created_by.clone(),
            created_at: ts(r.created_at),
            modified_at: ts(r.modified_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShareList {
    pub shares: Vec<Share>,
    pub total: i64,
}
