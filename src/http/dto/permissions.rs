//! Permission checks, effective permissions, ACLs and what an ownership
//! transfer answers, as the API shows them.

use scaidrive_domain::access::{Permission, Permissions};
use scaidrive_projections::access::AceRow;
use serde::Serialize;
use utoipa::ToSchema;

use super::drive::{File, Folder};
use super::shares::Share;
use crate::http::schema::{AceTypeDoc, AclPrincipalType, PermissionDoc, ResourceTypeDoc};

/// The `principal_id` an entry has and is answered with for `everyone`
/// (the documented literal; requests may also leave it out or send null).
pub const EVERYONE: &str = "everyone";

/// An entry's principal id as answered: the stored id, or `everyone` for
/// the entry that matches everyone (stored without an id).
pub fn shown_principal_id(principal_type: &str, principal_id: &str) -> String {
    if principal_type == EVERYONE {
        EVERYONE.to_owned()
    } else {
        principal_id.to_owned()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    #[schema(value_type = ResourceTypeDoc)]
    pub resource_type: &'static str,
    pub resource_id: String,
    pub permission: String,
    pub allowed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub results: Vec<CheckResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Effective {
    #[schema(value_type = ResourceTypeDoc)]
    pub resource_type: &'static str,
    pub resource_id: String,
    pub can_read: bool,
    pub can_write: bool,
    pub can_delete: bool,
    pub can_create: bool,
    pub can_share: bool,
    pub can_manage_permissions: bool,
    #[schema(value_type = Vec<PermissionDoc>)]
    pub permissions: Vec<Permission>,
}

impl Effective {
    /// What `perms` allow on the resource.
    pub fn of(resource_type: &'static str, resource_id: String, perms: Permissions) -> Self {
        Self {
            resource_type,
            resource_id,
            can_read: perms.contains(Permission::Read),
            can_write: perms.contains(Permission::Write),
            can_delete: perms.contains(Permission::Delete),
            can_create: perms.contains(Permission::Create),
            can_share: perms.contains(Permission::Share),
            can_manage_permissions: perms.contains(Permission::ManagePermissions),
            permissions: perms.list(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AclEntry {
    pub id: String,
    #[schema(value_type = AclPrincipalType)]
    pub principal_type: String,
    /// A `usr_`/`grp_` id, or `"everyone"` for `everyone`.
    pub principal_id: String,
    #[schema(value_type = Vec<PermissionDoc>)]
    pub permissions: Vec<Permission>,
    #[schema(value_type = AceTypeDoc)]
    pub ace_type: String,
    pub inherit_to_children: bool,
    /// Where an inherited entry is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub inherited_from: Option<String>,
}

impl From<&AceRow> for AclEntry {
    fn from(e: &AceRow) -> Self {
        let perms = Permissions(u8::try_from(e.permissions).unwrap_or(0));
        Self {
            id: e.id.clone(),
            principal_type: e.principal_type.clone(),
            principal_id: shown_principal_id(&e.principal_type, &e.principal_id),
            permissions: perms.list(),
            ace_type: e.ace_type.clone(),
            inherit_to_children: e.inherit_to_children,
            inherited_from: None,
        }
    }
}

impl AclEntry {
    /// An entry that reaches a resource from the ancestor it is set on.
    pub fn inherited(e: &AceRow) -> Self {
        Self {
            inherited_from: Some(e.resource_id.clone()),
            ..Self::from(e)
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Acl {
    #[schema(value_type = ResourceTypeDoc)]
    pub resource_type: &'static str,
    pub resource_id: String,
    pub share_id: String,
    pub inherit_from_parent: bool,
    pub entries: Vec<AclEntry>,
    pub inherited_entries: Vec<AclEntry>,
}

/// What an ownership transfer answers: the share, folder or file as it now
/// is (`owner_id` is the new owner).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OwnedResource {
    Share(Share),
    Folder(Folder),
    File(File),
}
