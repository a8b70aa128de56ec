//! Share members, invitations and the caller's own shares as the API shows
//! them.

use chrono::{DateTime, Utc};
use scaidrive_projections::access::{InvitationRow, MemberRow};
use scaidrive_projections::drive_queries::ShareRow;
use scaidrive_projections::groups::GroupRow;
use scaidrive_projections::tenancy::UserRow;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::{
    InvitationStatus, MemberPrincipalType, RoleDoc, ShareTypeDoc, Timestamp,
};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub share_id: String,
    #[schema(value_type = MemberPrincipalType)]
    pub principal_type: String,
    pub principal_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = RoleDoc)]
    pub role: String,
    #[schema(value_type = Option<Timestamp>)]
    pub expires_at: Option<String>,
    pub is_expired: bool,
    pub added_by: Option<String>,
    #[schema(value_type = Timestamp)]
    pub added_at: String,
}

impl Member {
    /// A membership with the member's display `name` and `email` (looked up
    /// by the caller), expired or not as of `now`.
    pub fn of(
        m: &MemberRow,
        name: Option<String>,
        email: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            share_id: m.share_id.clone(),
            principal_type: m.principal_type.clone(),
            principal_id: m.principal_id.clone(),
            name,
            email,
            role: m.role.clone(),
            expires_at: m.expires_at.map(ts),
            is_expired: m.expires_at.is_some_and(|e| e <= now),
            added_by: m.added_by.clone(),
            added_at: ts(m.added_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<Member>,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    pub id: String,
    pub share_id: String,
    pub email: String,
    #[schema(value_type = RoleDoc)]
    pub role: String,
    pub message: Option<String>,
    #[schema(value_type = InvitationStatus)]
    pub status: String,
    #[schema(value_type = Timestamp)]
    pub expires_at: String,
    pub invited_by: String,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Option<Timestamp>)]
    pub responded_at: Option<String>,
    /// In the invitee's own listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub share_name: Option<String>,
}

impl Invitation {
    /// An invitation, `expired` once a pending one is past its expiry at
    /// `now` (evaluated when read: no job needs to flip the status).
    pub fn of(r: &InvitationRow, now: DateTime<Utc>) -> Self {
        let status = if r.status == "pending" && r.expires_at <= now {
            "expired"
        } else {
            r.status.as_str()
        };
        Self {
            id: r.id.clone(),
            share_id: r.share_id.clone(),
            email: r.email.clone(),
            role: r.role.clone(),
            message: r.message.clone(),
            status: status.to_owned(),
            expires_at: ts(r.expires_at),
            invited_by: r.invited_by.clone(),
            created_at: ts(r.created_at),
            responded_at: r.responded_at.map(ts),
            share_name: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub invitations: Vec<Invitation>,
    pub total: i64,
}

/// What accepting or declining an invitation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationAnswer {
    pub id: String,
    /// `accepted` or `declined`.
    #[schema(value_type = InvitationStatus)]
    pub status: &'static str,
    pub share_id: Option<String>,
    /// The role granted (accept only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RoleDoc>)]
    pub role: Option<Option<&'static str>>,
}

/// A share the caller holds a role on.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyShare {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(value_type = ShareTypeDoc)]
    pub kind: String,
    #[schema(value_type = ShareTypeDoc)]
    pub share_type: String,
    #[schema(value_type = Option<RoleDoc>)]
    pub role: Option<&'static str>,
    pub owner_id: String,
    pub quota_bytes: Option<i64>,
    pub used_bytes: i64,
    pub is_deleted: bool,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
}

impl MyShare {
    /// A share, what it holds and the caller's role on it.
    pub fn of(r: &ShareRow, used_bytes: i64, role: Option<&'static str>) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            kind: r.share_type.clone(),
            share_type: r.share_type.clone(),
            role,
            owner_id: r.owner_id.clone(),
            quota_bytes: r.quota_bytes,
            used_bytes,
            is_deleted: r.is_deleted,
            created_at: ts(r.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyShareList {
    pub shares: Vec<MyShare>,
    pub total: i64,
}

/// A user a principal search found.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalUser {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The name, else the email, else the id.
    pub display_name: String,
}

impl From<&UserRow> for PrincipalUser {
    fn from(u: &UserRow) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            display_name: u
                .name
                .clone()
                .or_else(|| u.email.clone())
                .unwrap_or_else(|| u.id.clone()),
        }
    }
}

/// A group a principal search found.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalGroup {
    pub id: String,
    pub name: String,
    pub member_count: i64,
}

impl From<&GroupRow> for PrincipalGroup {
    fn from(g: &GroupRow) -> Self {
        Self {
            id: g.id.clone(),
            name: g.name.clone(),
            member_count: g.member_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalSearch {
    pub users: Vec<PrincipalUser>,
    pub groups: Vec<PrincipalGroup>,
}
