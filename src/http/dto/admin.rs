//! Tenants, users, groups and group members as the admin API shows them.

use scaidrive_domain::tenancy::TenantSettings as Settings;
use scaidrive_projections::groups::{GroupRow, MemberRow};
use scaidrive_projections::tenancy::{TenantRow, UserRow};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::{AdminRoleDoc, TenantSettings, Timestamp, UserStatusDoc};
use crate::http::ts;

#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub partner_id: String,
    pub name: String,
    pub display_name: Option<String>,
    #[schema(value_type = TenantSettings)]
    pub settings: Settings,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
}

impl From<&TenantRow> for Tenant {
    fn from(r: &TenantRow) -> Self {
        Self {
            id: r.id.clone(),
            partner_id: r.partner_id.clone(),
            name: r.name.clone(),
            display_name: r.display_name.clone(),
            settings: r.settings.0.clone(),
            created_at: ts(r.created_at),
            modified_at: ts(r.modified_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
    pub total: i64,
}

/// A user as tenant admins see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUser {
    pub id: String,
    pub tenant_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub display_name: String,
    #[schema(value_type = UserStatusDoc)]
    pub status: String,
    pub is_admin: bool,
    #[schema(value_type = Option<AdminRoleDoc>)]
    pub admin_role: Option<String>,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
}

impl From<&UserRow> for AdminUser {
    fn from(r: &UserRow) -> Self {
        let display_name = r
            .name
            .clone()
            .or_else(|| r.email.clone())
            .unwrap_or_else(|| r.id.clone());
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            email: r.email.clone(),
            name: r.name.clone(),
            display_name,
            status: r.status.clone(),
            is_admin: r.admin_role.is_some(),
            admin_role: r.admin_role.clone(),
            created_at: ts(r.created_at),
            modified_at: ts(r.modified_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<AdminUser>,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Group {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub external_id: Option<String>,
    pub member_count: i64,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
}

impl From<&GroupRow> for Group {
    fn from(r: &GroupRow) -> Self {
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            external_id: r.external_id.clone(),
            member_count: r.member_count,
            created_at: ts(r.created_at),
            modified_at: ts(r.modified_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<Group>,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupMember {
    pub group_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    #[schema(value_type = Timestamp)]
    pub added_at: String,
}

/// A member row of the group `group_id`.
impl From<(&str, &MemberRow)> for GroupMember {
    fn from((group_id, m): (&str, &MemberRow)) -> Self {
        Self {
            group_id: group_id.to_owned(),
            user_id: m.user_id.clone(),
            email: m.email.clone(),
            name: m.name.clone(),
            status: m.status.clone(),
            added_at: ts(m.added_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupMemberList {
    pub members: Vec<GroupMember>,
    pub total: i64,
}
