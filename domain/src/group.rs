//! The Group aggregate: a named set of users inside one tenant, managed by
//! tenant admins or pushed by ScaiKey. Group names are unique per tenant
//! through a set-constraint claim taken by the command layer
//! ([`name_scope`] / [`name_key`](crate::name::name_key)).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{GroupId, TenantId, UserId};

/// Longest group name, description and external id (characters).
pub const MAX_NAME: usize = 255;
pub const MAX_DESCRIPTION: usize = 2000;
pub const MAX_EXTERNAL_ID: usize = 255;

/// Claim scope that keeps group names unique inside a tenant.
pub fn name_scope(tenant_id: TenantId) -> String {
    format!("group-name:{tenant_id}")
}

/// Claim scope that keeps external (ScaiKey) group ids unique inside a tenant.
pub fn external_scope(tenant_id: TenantId) -> String {
    format!("group-external:{tenant_id}")
}

/// A group's name after trimming; 1–255 characters, no control characters.
pub fn checked_name(name: &str) -> Result<String, DomainError> {
    let trimmed = crate::name::normalize(name.trim());
    let n = trimmed.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(DomainError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(trimmed)
}

fn checked_description(d: &Option<String>) -> Result<(), DomainError> {
    if let Some(d) = d {
        if d.chars().count() > MAX_DESCRIPTION {
            return Err(DomainError::invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            ));
        }
    }
    Ok(())
}

fn checked_external(e: &Option<String>) -> Result<(), DomainError> {
    if let Some(e) = e {
        let n = e.chars().count();
        if n == 0 || n > MAX_EXTERNAL_ID {
            return Err(DomainError::invalid(
                "external_id",
                format!("must be 1 to {MAX_EXTERNAL_ID} characters"),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct Group {
    pub id: Option<GroupId>,
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub description: Option<String>,
    pub external_id: Option<String>,
    pub members: BTreeSet<UserId>,
    pub deleted: bool,
}

impl Group {
    /// Exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }

    fn live(&self) -> Result<(), DomainError> {
        if self.is_live() {
            Ok(())
        } else {
            Err(DomainError::NotFound("group"))
        }
    }
}

#[derive(Debug, Clone)]
pub enum GroupCommand {
    Create {
        group_id: GroupId,
        tenant_id: TenantId,
        name: String,
        description: Option<String>,
        external_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// `None` leaves a field as it is; `Some(None)` clears an optional one.
    Update {
        name: Option<String>,
        description: Option<Option<String>>,
        external_id: Option<Option<String>>,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
    AddMember {
        user_id: UserId,
        at: DateTime<Utc>,
    },
    RemoveMember {
        user_id: UserId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum GroupEvent {
    GroupCreated {
        group_id: GroupId,
        tenant_id: TenantId,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// Carries the full new values of the fields that changed; absent = unchanged.
    GroupUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        description: Option<Option<String>>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        external_id: Option<Option<String>>,
        at: DateTime<Utc>,
    },
    GroupDeleted {
        at: DateTime<Utc>,
    },
    GroupMemberAdded {
        user_id: UserId,
        at: DateTime<Utc>,
    },
    GroupMemberRemoved {
        user_id: UserId,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for GroupEvent {}

/// A field that is present (possibly `null`) deserializes to `Some`, so
/// "cleared" (`null`) and "unchanged" (absent) stay apart.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl Aggregate for Group {
    type Command = GroupCommand;
    type Event = GroupEvent;

    fn decide(&self, command: &GroupCommand) -> Result<Vec<GroupEvent>, DomainError> {
        match command {
            GroupCommand::Create {
                group_id,
                tenant_id,
                name,
                description,
                external_id,
                at,
            } => {
                if self.id.is_some() {
                    return Err(DomainError::AlreadyExists(
                        "the group already exists".into(),
                    ));
                }
                let name = checked_name(name)?;
                checked_description(description)?;
                checked_external(external_id)?;
                Ok(vec![GroupEvent::GroupCreated {
                    group_id: *group_id,
                    tenant_id: *tenant_id,
                    name,
                    description: description.clone(),
                    external_id: external_id.clone(),
                    at: *at,
                }])
            }
            GroupCommand::Update {
                name,
                description,
                external_id,
                at,
            } => {
                self.live()?;
                let name = name.as_deref().map(checked_name).transpose()?;
                if let Some(d) = description {
                    checked_description(d)?;
                }
                if let Some(e) = external_id {
                    checked_external(e)?;
                }
                let name = name.filter(|n| *n != self.name);
                let description = description.clone().filter(|d| *d != self.description);
                let external_id = external_id.clone().filter(|e| *e != self.external_id);
                if name.is_none() && description.is_none() && external_id.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![GroupEvent::GroupUpdated {
                    name,
                    description,
                    external_id,
                    at: *at,
                }])
            }
            GroupCommand::Delete { at } => {
                self.live()?;
                Ok(vec![GroupEvent::GroupDeleted { at: *at }])
            }
            GroupCommand::AddMember { user_id, at } => {
                self.live()?;
                if self.members.contains(user_id) {
                    return Err(DomainError::AlreadyExists(format!(
                        "user {user_id} is already a member of this group"
                    )));
                }
                Ok(vec![GroupEvent::GroupMemberAdded {
                    user_id: *user_id,
                    at: *at,
                }])
            }
            GroupCommand::RemoveMember { user_id, at } => {
                self.live()?;
                if !self.members.contains(user_id) {
                    return Err(DomainError::NotFound("group member"));
                }
                Ok(vec![GroupEvent::GroupMemberRemoved {
                    user_id: *user_id,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &GroupEvent) {
        match event {
            GroupEvent::GroupCreated {
                group_id,
                tenant_id,
                name,
                description,
                external_id,
                ..
            } => {
                self.id = Some(*group_id);
                self.tenant_id = Some(*tenant_id);
                self.name = name.clone();
                self.description = description.clone();
                self.external_id = external_id.clone();
            }
            GroupEvent::GroupUpdated {
                name,
                description,
                external_id,
                ..
            } => {
                if let Some(n) = name {
                    self.name = n.clone();
                }
                if let Some(d) = description {
                    self.description = d.clone();
                }
                if let Some(e) = external_id {
                    self.external_id = e.clone();
                }
            }
            GroupEvent::GroupDeleted { .. } => {
                self.deleted = true;
                self.members.clear();
            }
            GroupEvent::GroupMemberAdded { user_id, .. } => {
                self.members.insert(*user_id);
            }
            GroupEvent::GroupMemberRemoved { user_id, .. } => {
                self.members.remove(user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-04-23T10:15:02Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn gid() -> GroupId {
        GroupId::from_uuid(Uuid::from_u128(7))
    }

    fn uid(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    fn created() -> GroupEvent {
        GroupEvent::GroupCreated {
            group_id: gid(),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            name: "Engineering".into(),
            description: None,
            external_id: None,
            at: at(),
        }
    }

    #[test]
    fn a_group_is_created_with_a_trimmed_name() {
        Scenario::<Group>::given_nothing()
            .when(GroupCommand::Create {
                group_id: gid(),
                tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
                name: "  Engineering ".into(),
                description: None,
                external_id: None,
                at: at(),
            })
            .then([created()]);
    }

    #[test]
    fn blank_or_control_names_are_invalid() {
        for bad in ["   ", "a\u{7}b"] {
            Scenario::<Group>::given_nothing()
                .when(GroupCommand::Create {
                    group_id: gid(),
                    tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
                    name: bad.into(),
                    description: None,
                    external_id: None,
                    at: at(),
                })
                .then_error_matches(
                    |e| matches!(e, DomainError::Invalid { field, .. } if field == "name"),
                );
        }
    }

    #[test]
    fn adding_a_member_twice_is_a_conflict() {
        let added = GroupEvent::GroupMemberAdded {
            user_id: uid(3),
            at: at(),
        };
        Scenario::<Group>::given([created()])
            .when(GroupCommand::AddMember {
                user_id: uid(3),
                at: at(),
            })
            .then([added.clone()]);
        Scenario::<Group>::given([created(), added])
            .when(GroupCommand::AddMember {
                user_id: uid(3),
                at: at(),
            })
            .then_error_matches(|e| matches!(e, DomainError::AlreadyExists(_)));
    }

    #[test]
    fn removing_a_non_member_is_not_found() {
        Scenario::<Group>::given([created()])
            .when(GroupCommand::RemoveMember {
                user_id: uid(3),
                at: at(),
            })
            .then_error(DomainError::NotFound("group member"));
    }

    #[test]
    fn a_deleted_group_refuses_everything() {
        Scenario::<Group>::given([created(), GroupEvent::GroupDeleted { at: at() }])
            .when(GroupCommand::AddMember {
                user_id: uid(3),
                at: at(),
            })
            .then_error(DomainError::NotFound("group"));
        Scenario::<Group>::given([created(), GroupEvent::GroupDeleted { at: at() }])
            .when(GroupCommand::Delete { at: at() })
            .then_error(DomainError::NotFound("group"));
    }

    #[test]
    fn a_cleared_description_survives_the_round_trip() {
        let e = GroupEvent::GroupUpdated {
            name: None,
            description: Some(None),
            external_id: None,
            at: at(),
        };
        let (ty, data) = e.encode();
        assert_eq!(ty, "group-updated");
        assert_eq!(data["description"], serde_json::Value::Null);
        let back = GroupEvent::decode(&ty, 1, data).ok();
        assert_eq!(back, Some(e));
    }

    #[test]
    fn an_update_carries_only_what_changed() {
        Scenario::<Group>::given([created()])
            .when(GroupCommand::Update {
                name: Some("Engineering".into()),
                description: Some(Some("builders".into())),
                external_id: None,
                at: at(),
            })
            .then([GroupEvent::GroupUpdated {
                name: None,
                description: Some(Some("builders".into())),
                external_id: None,
                at: at(),
            }]);
        Scenario::<Group>::given([created()])
            .when(GroupCommand::Update {
                name: Some("Engineering".into()),
                description: Some(None),
                external_id: None,
                at: at(),
            })
            .then([]);
    }
}
