//! The Share aggregate: the top of a folder tree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Owner, ShareType};
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        match command {
            ShareCommand::Create { .. } => Ok(vec![]),
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
            ShareEvent::ShareDeleted { .. } => self.deleted = true,
            ShareEvent::ShareRestored { .. } => self.deleted = false,
        }
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
}
