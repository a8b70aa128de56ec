//! The Share aggregate: the top of a folder tree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{Owner, ShareType};
use crate::access::{PrincipalType, ShareRole};
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{ShareId, TenantId, UserId};

#[derive(Debug, Clone, Default)]
pub struct Share {
    pub id: Option<ShareId>,
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub description: Option<String>,
    pub share_type: Option<ShareType>,
    pub owner: Option<Owner>,
    pub quota_bytes: Option<u64>,
    pub deleted: bool,
    /// When the share went to the trash.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Purged from the trash: gone for good.
    pub purged: bool,
    /// Members other than the owner, by principal id.
    pub members: BTreeMap<String, Member>,
}

impl Share {
    /// Whether the share went to the trash at or before `cutoff`.
    pub fn trashed_before(&self, cutoff: DateTime<Utc>) -> bool {
        self.deleted && !self.purged && self.deleted_at.is_some_and(|t| t <= cutoff)
    }
}

/// A share membership (the owner is not one: it is `Share::owner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub principal_type: PrincipalType,
    pub role: ShareRole,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum ShareCommand {
    Create {
        share_id: ShareId,
        tenant_id: TenantId,
        name: String,
        description: Option<String>,
        share_type: ShareType,
        owner: Owner,
        quota_bytes: Option<u64>,
        by: UserId,
        at: DateTime<Utc>,
    },
    Update {
        name: Option<String>,
        description: Option<String>,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
    Restore {
        at: DateTime<Utc>,
    },
    /// Removes a trashed share for good (its content is purged beside it).
    Purge {
        at: DateTime<Utc>,
    },
    AddMember {
        principal_type: PrincipalType,
        principal_id: String,
        role: ShareRole,
        expires_at: Option<DateTime<Utc>>,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// `expires_at: Some(None)` clears the expiry.
    UpdateMember {
        principal_id: String,
        role: Option<ShareRole>,
        expires_at: Option<Option<DateTime<Utc>>>,
        at: DateTime<Utc>,
    },
    RemoveMember {
        principal_id: String,
        at: DateTime<Utc>,
    },
    /// The previous owner stays on as an admin member.
    TransferOwnership {
        new_owner: Owner,
        by: UserId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum ShareEvent {
    ShareCreated {
        share_id: ShareId,
        tenant_id: TenantId,
        name: String,
        description: Option<String>,
        share_type: ShareType,
        owner_id: Owner,
        quota_bytes: Option<u64>,
        by: UserId,
        at: DateTime<Utc>,
    },
    ShareUpdated {
        share_id: ShareId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        at: DateTime<Utc>,
    },
    ShareDeleted {
        share_id: ShareId,
        at: DateTime<Utc>,
    },
    ShareRestored {
        share_id: ShareId,
        at: DateTime<Utc>,
    },
    SharePurged {
        share_id: ShareId,
        at: DateTime<Utc>,
    },
    ShareMemberAdded {
        share_id: ShareId,
        principal_type: PrincipalType,
        principal_id: String,
        role: ShareRole,
        expires_at: Option<DateTime<Utc>>,
        by: UserId,
        at: DateTime<Utc>,
    },
    ShareMemberUpdated {
        share_id: ShareId,
        principal_id: String,
        role: ShareRole,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    ShareMemberRemoved {
        share_id: ShareId,
        principal_id: String,
        at: DateTime<Utc>,
    },
    ShareOwnershipTransferred {
        share_id: ShareId,
        previous_owner: Owner,
        new_owner: Owner,
        by: UserId,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for ShareEvent {}

fn check_name(name: &str) -> Result<(), DomainError> {
    let n = name.chars().count();
    if n == 0 || n > 255 || name.trim().is_empty() {
        return Err(DomainError::invalid("name", "must be 1 to 255 characters"));
    }
    Ok(())
}

fn check_description(d: &Option<String>) -> Result<(), DomainError> {
    if d.as_ref().is_some_and(|d| d.chars().count() > 2000) {
        return Err(DomainError::invalid(
            "description",
            "must be at most 2000 characters",
        ));
    }
    Ok(())
}

impl Aggregate for Share {
    type Command = ShareCommand;
    type Event = ShareEvent;

    fn decide(&self, command: &ShareCommand) -> Result<Vec<ShareEvent>, DomainError> {
        if let ShareCommand::Create {
            share_id,
            tenant_id,
            name,
            description,
            share_type,
            owner,
            quota_bytes,
            by,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::AlreadyExists("share already exists".into()));
            }
            check_name(name)?;
            check_description(description)?;
            return Ok(vec![ShareEvent::ShareCreated {
                share_id: *share_id,
                tenant_id: *tenant_id,
                name: name.clone(),
                description: description.clone(),
                share_type: *share_type,
                owner_id: *owner,
                quota_bytes: *quota_bytes,
                by: *by,
                at: *at,
            }]);
        }
        let Some(id) = self.id else {
            return Err(DomainError::NotFound("share"));
        };
        if self.purged {
            return Err(DomainError::NotFound("share"));
        }
        match command {
            ShareCommand::Create { .. } => Ok(vec![]),
            ShareCommand::Purge { at } => {
                if !self.deleted {
                    return Err(DomainError::InvalidTransition(
                        "only a share in the trash can be purged".into(),
                    ));
                }
                Ok(vec![ShareEvent::SharePurged {
                    share_id: id,
                    at: *at,
                }])
            }
            ShareCommand::Restore { at } => {
                if !self.deleted {
                    return Err(DomainError::InvalidTransition(
                        "share is not in the trash".into(),
                    ));
                }
                Ok(vec![ShareEvent::ShareRestored {
                    share_id: id,
                    at: *at,
                }])
            }
            _ if self.deleted => Err(DomainError::Gone("share is in the trash".into())),
            ShareCommand::Update {
                name,
                description,
                at,
            } => {
                if let Some(n) = name {
                    check_name(n)?;
                }
                check_description(description)?;
                let name = name.clone().filter(|n| *n != self.name);
                let description = description
                    .clone()
                    .filter(|d| Some(d) != self.description.as_ref());
                if name.is_none() && description.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ShareEvent::ShareUpdated {
                    share_id: id,
                    name,
                    description,
                    at: *at,
                }])
            }
            ShareCommand::Delete { at } => Ok(vec![ShareEvent::ShareDeleted {
                share_id: id,
                at: *at,
            }]),
            ShareCommand::AddMember {
                principal_type,
                principal_id,
                role,
                expires_at,
                by,
                at,
            } => {
                if *role == ShareRole::Owner {
                    return Err(DomainError::invalid(
                        "role",
                        "a share has exactly one owner; transfer ownership instead",
                    ));
                }
                if *principal_type == PrincipalType::Everyone {
                    return Err(DomainError::invalid(
                        "principal_type",
                        "members are users or groups",
                    ));
                }
                if self.is_owner(principal_id) {
                    return Err(DomainError::AlreadyExists(
                        "the principal owns this share".into(),
                    ));
                }
                if self.members.contains_key(principal_id) {
                    return Err(DomainError::AlreadyExists(
                        "the principal is already a member of this share".into(),
                    ));
                }
                if expires_at.is_some_and(|e| e <= *at) {
                    return Err(DomainError::invalid("expires_at", "must be in the future"));
                }
                Ok(vec![ShareEvent::ShareMemberAdded {
                    share_id: id,
                    principal_type: *principal_type,
                    principal_id: principal_id.clone(),
                    role: *role,
                    expires_at: *expires_at,
                    by: *by,
                    at: *at,
                }])
            }
            ShareCommand::UpdateMember {
                principal_id,
                role,
                expires_at,
                at,
            } => {
                if self.is_owner(principal_id) {
                    return Err(DomainError::InvalidTransition(
                        "the owner's role cannot change; transfer ownership instead".into(),
                    ));
                }
                let Some(m) = self.members.get(principal_id) else {
                    return Err(DomainError::NotFound("member"));
                };
                if *role == Some(ShareRole::Owner) {
                    return Err(DomainError::invalid(
                        "role",
                        "a share has exactly one owner; transfer ownership instead",
                    ));
                }
                if let Some(Some(e)) = expires_at {
                    if *e <= *at {
                        return Err(DomainError::invalid("expires_at", "must be in the future"));
                    }
                }
                let role = role.unwrap_or(m.role);
                let expires = expires_at.unwrap_or(m.expires_at);
                if role == m.role && expires == m.expires_at {
                    return Ok(vec![]);
                }
                Ok(vec![ShareEvent::ShareMemberUpdated {
                    share_id: id,
                    principal_id: principal_id.clone(),
                    role,
                    expires_at: expires,
                    at: *at,
                }])
            }
            ShareCommand::RemoveMember { principal_id, at } => {
                if self.is_owner(principal_id) {
                    return Err(DomainError::InvalidTransition(
                        "the owner cannot be removed; transfer ownership first".into(),
                    ));
                }
                if !self.members.contains_key(principal_id) {
                    return Err(DomainError::NotFound("member"));
                }
                Ok(vec![ShareEvent::ShareMemberRemoved {
                    share_id: id,
                    principal_id: principal_id.clone(),
                    at: *at,
                }])
            }
            ShareCommand::TransferOwnership { new_owner, by, at } => {
                let Some(previous) = self.owner else {
                    return Err(DomainError::NotFound("share"));
                };
                if previous == *new_owner {
                    return Ok(vec![]);
                }
                Ok(vec![ShareEvent::ShareOwnershipTransferred {
                    share_id: id,
                    previous_owner: previous,
                    new_owner: *new_owner,
                    by: *by,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &ShareEvent) {
        match event {
            ShareEvent::ShareCreated {
                share_id,
                tenant_id,
                name,
                description,
                share_type,
                owner_id,
                quota_bytes,
                ..
            } => {
                self.id = Some(*share_id);
                self.tenant_id = Some(*tenant_id);
                self.name = name.clone();
                self.description = description.clone();
                self.share_type = Some(*share_type);
                self.owner = Some(*owner_id);
                self.quota_bytes = *quota_bytes;
            }
            ShareEvent::ShareUpdated {
                name, description, ..
            } => {
                if let Some(n) = name {
                    self.name = n.clone();
                }
                if let Some(d) = description {
                    self.description = Some(d.clone());
                }
            }
            ShareEvent::ShareDeleted { at, .. } => {
                self.deleted = true;
                self.deleted_at = Some(*at);
            }
            ShareEvent::ShareRestored { .. } => {
                self.deleted = false;
                self.deleted_at = None;
            }
            ShareEvent::SharePurged { .. } => self.purged = true,
            ShareEvent::ShareMemberAdded {
                principal_type,
                principal_id,
                role,
                expires_at,
                ..
            } => {
                self.members.insert(
                    principal_id.clone(),
                    Member {
                        principal_type: *principal_type,
                        role: *role,
                        expires_at: *expires_at,
                    },
                );
            }
            ShareEvent::ShareMemberUpdated {
                principal_id,
                role,
                expires_at,
                ..
            } => {
                if let Some(m) = self.members.get_mut(principal_id) {
                    m.role = *role;
                    m.expires_at = *expires_at;
                }
            }
            ShareEvent::ShareMemberRemoved { principal_id, .. } => {
                self.members.remove(principal_id);
            }
            ShareEvent::ShareOwnershipTransferred {
                previous_owner,
                new_owner,
                ..
            } => {
                self.members.remove(&new_owner.to_string());
                self.members.insert(
                    previous_owner.to_string(),
                    previous_owner_member(previous_owner),
                );
                self.owner = Some(*new_owner);
            }
        }
    }
}

fn previous_owner_member(o: &Owner) -> Member {
    Member {
        principal_type: match o {
            Owner::User(_) => PrincipalType::User,
            Owner::Group(_) => PrincipalType::Group,
        },
        role: ShareRole::Admin,
        expires_at: None,
    }
}

impl Share {
    fn is_owner(&self, principal_id: &str) -> bool {
        self.owner.is_some_and(|o| o.to_string() == principal_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn created() -> ShareEvent {
        ShareEvent::ShareCreated {
            share_id: ShareId::from_uuid(Uuid::from_u128(1)),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(2)),
            name: "Team".into(),
            description: None,
            share_type: ShareType::Project,
            owner_id: Owner::User(UserId::from_uuid(Uuid::from_u128(3))),
            quota_bytes: None,
            by: UserId::from_uuid(Uuid::from_u128(3)),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_trashed_share_refuses_changes_until_restored() {
        let at = Utc::now();
        let deleted = ShareEvent::ShareDeleted {
            share_id: ShareId::from_uuid(Uuid::from_u128(1)),
            at,
        };
        Scenario::<Share>::given([created(), deleted.clone()])
            .when(ShareCommand::Update {
                name: Some("x".into()),
                description: None,
                at,
            })
            .then_error(DomainError::Gone("share is in the trash".into()));
        Scenario::<Share>::given([created(), deleted.clone()])
            .when(ShareCommand::Delete { at })
            .then_error(DomainError::Gone("share is in the trash".into()));
        Scenario::<Share>::given([created(), deleted])
            .when(ShareCommand::Restore { at })
            .then_types(&["share-restored"]);
        Scenario::<Share>::given([created()])
            .when(ShareCommand::Restore { at })
            .then_error_matches(|e| matches!(e, DomainError::InvalidTransition(_)));
    }

    fn member(id: &str, role: ShareRole) -> ShareEvent {
        ShareEvent::ShareMemberAdded {
            share_id: ShareId::from_uuid(Uuid::from_u128(1)),
            principal_type: PrincipalType::User,
            principal_id: id.into(),
            role,
            expires_at: None,
            by: UserId::from_uuid(Uuid::from_u128(3)),
            at: Utc::now(),
        }
    }

    fn owner_id() -> String {
        UserId::from_uuid(Uuid::from_u128(3)).to_string()
    }

    #[test]
    fn members_are_unique_and_the_owner_is_never_a_member() {
        let at = Utc::now();
        let add = |id: &str| ShareCommand::AddMember {
            principal_type: PrincipalType::User,
            principal_id: id.into(),
            role: ShareRole::Reader,
            expires_at: None,
            by: UserId::from_uuid(Uuid::from_u128(3)),
            at,
        };
        Scenario::<Share>::given([created()])
            .when(add("usr_a"))
            .then_types(&["share-member-added"]);
        Scenario::<Share>::given([created(), member("usr_a", ShareRole::Reader)])
            .when(add("usr_a"))
            .then_error_matches(|e| matches!(e, DomainError::AlreadyExists(_)));
        Scenario::<Share>::given([created()])
            .when(add(&owner_id()))
            .then_error_matches(|e| matches!(e, DomainError::AlreadyExists(_)));
        Scenario::<Share>::given([created()])
            .when(ShareCommand::RemoveMember {
                principal_id: owner_id(),
                at,
            })
            .then_error_matches(|e| matches!(e, DomainError::InvalidTransition(_)));
    }

    #[test]
    fn transfer_keeps_exactly_one_owner_and_the_old_one_as_admin() {
        let at = Utc::now();
        let new_owner = UserId::from_uuid(Uuid::from_u128(9));
        let mut s = Share::replay(&[created(), member(&new_owner.to_string(), ShareRole::Reader)]);
        let events = s
            .decide(&ShareCommand::TransferOwnership {
                new_owner: Owner::User(new_owner),
                by: UserId::from_uuid(Uuid::from_u128(3)),
                at,
            })
            .unwrap();
        for e in &events {
            s.evolve(e);
        }
        assert_eq!(s.owner, Some(Owner::User(new_owner)));
        assert!(!s.members.contains_key(&new_owner.to_string()));
        assert_eq!(s.members[&owner_id()].role, ShareRole::Admin);
    }

    #[test]
    fn updates_that_change_nothing_emit_nothing() {
        Scenario::<Share>::given([created()])
            .when(ShareCommand::Update {
                name: Some("Team".into()),
                description: None,
                at: Utc::now(),
            })
            .then([]);
        Scenario::<Share>::given([created()])
            .when(ShareCommand::Update {
                name: Some(String::new()),
                description: None,
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::Invalid { .. }));
    }

    #[test]
    fn only_a_trashed_share_is_purged_and_then_it_is_gone() {
        let at = Utc::now();
        Scenario::<Share>::given([created()])
            .when(ShareCommand::Purge { at })
            .then_error_matches(|e| matches!(e, DomainError::InvalidTransition(_)));
        let deleted = ShareEvent::ShareDeleted {
            share_id: ShareId::from_uuid(Uuid::from_u128(1)),
            at,
        };
        let purged = Scenario::<Share>::given([created(), deleted.clone()])
            .when(ShareCommand::Purge { at })
            .then_types(&["share-purged"]);
        let mut state = Share::default();
        for e in [created(), deleted].iter().chain(purged.iter()) {
            state.evolve(e);
        }
        assert!(!state.trashed_before(at));
        Scenario::<Share>::given([created()].into_iter().chain(purged.iter().cloned()))
            .when(ShareCommand::Restore { at })
            .then_error(DomainError::NotFound("share"));
    }
}
