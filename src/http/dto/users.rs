//! The signed-in caller as `GET /users/me` shows them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::principal::Principal;
use crate::http::schema::{AdminRoleDoc, PartnerId, TenantId, UserId};

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    #[schema(value_type = UserId)]
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub display_name: String,
    #[schema(value_type = TenantId)]
    pub tenant_id: String,
    #[schema(value_type = PartnerId)]
    pub partner_id: String,
    /// `grp_` ids of the caller's groups.
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub is_admin: bool,
    #[schema(value_type = Option<AdminRoleDoc>)]
    pub admin_role: Option<&'static str>,
}

impl From<&Principal> for Me {
    fn from(p: &Principal) -> Self {
        let display_name = p
            .name
            .clone()
            .or_else(|| p.email.clone())
            .unwrap_or_else(|| p.user_id.to_string());
        Self {
            id: p.user_id.to_string(),
            email: p.email.clone(),
            name: p.name.clone(),
            display_name,
            tenant_id: p.tenant_id.to_string(),
            partner_id: p.partner_id.to_string(),
            groups: p.groups.clone(),
            scopes: p.scopes.names(),
            is_admin: p.is_tenant_admin,
            admin_role: p.is_tenant_admin.then_some("tenant_admin"),
        }
    }
}
