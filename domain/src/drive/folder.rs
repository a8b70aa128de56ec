//! The Folder aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{FolderId, ShareId, TenantId, UserId};
use crate::name::{normalize, validate_item_name};

#[derive(Debug, Clone, Default)]
pub struct Folder {
    pub id: Option<FolderId>,
    pub tenant_id: Option<TenantId>,
    pub share_id: Option<ShareId>,
    pub parent_id: Option<FolderId>,
    pub name: String,
    pub path: String,
    /// The user who owns the folder: its creator until a transfer.
    pub owner: Option<UserId>,
    pub deleted: bool,
    /// When the folder itself was moved to the trash.
    pub deleted_at: Option<DateTime<Utc>>,
    pub purged: bool,
}

impl Folder {
    /// Whether the folder itself went to the trash at or before `cutoff`.
    pub fn trashed_before(&self, cutoff: DateTime<Utc>) -> bool {
        self.deleted && !self.purged && self.deleted_at.is_some_and(|t| t <= cutoff)
    }
}

#[derive(Debug, Clone)]
pub enum FolderCommand {
    Create {
        folder_id: FolderId,
        tenant_id: TenantId,
        share_id: ShareId,
        parent_id: Option<FolderId>,
        name: String,
        path: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    Rename {
        name: String,
        new_path: String,
        at: DateTime<Utc>,
    },
    /// `target_ancestors`: the new parent and all its ancestors (cycle check).
    Move {
        share_id: ShareId,
        parent_id: Option<FolderId>,
        new_path: String,
        target_ancestors: Vec<FolderId>,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
    Restore {
        at: DateTime<Utc>,
    },
    Purge {
        at: DateTime<Utc>,
    },
    /// Makes `new_owner` the folder's owner (who may ask is the caller's rule).
    TransferOwnership {
        new_owner: UserId,
        by: UserId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum FolderEvent {
    FolderCreated {
        folder_id: FolderId,
        tenant_id: TenantId,
        share_id: ShareId,
        parent_id: Option<FolderId>,
        name: String,
        path: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    FolderRenamed {
        folder_id: FolderId,
        share_id: ShareId,
        name: String,
        old_path: String,
        path: String,
        at: DateTime<Utc>,
    },
    FolderMoved {
        folder_id: FolderId,
        old_share_id: ShareId,
        share_id: ShareId,
        old_parent_id: Option<FolderId>,
        parent_id: Option<FolderId>,
        old_path: String,
        path: String,
        at: DateTime<Utc>,
    },
    FolderDeleted {
        folder_id: FolderId,
        share_id: ShareId,
        path: String,
        at: DateTime<Utc>,
    },
    FolderRestored {
        folder_id: FolderId,
        share_id: ShareId,
        path: String,
        at: DateTime<Utc>,
    },
    FolderPurged {
        folder_id: FolderId,
        share_id: ShareId,
        path: String,
        /// The folder's parent when it was purged (`Some(None)` at the
        /// share's root), so the change feed can tell the top of a purged
        /// subtree without reading the log. `None`: written before the
        /// field existed.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "crate::event::present"
        )]
        parent_id: Option<Option<FolderId>>,
        at: DateTime<Utc>,
    },
    FolderOwnershipTransferred {
        folder_id: FolderId,
        share_id: ShareId,
        previous_owner: UserId,
        new_owner: UserId,
        by: UserId,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for FolderEvent {}

fn valid_name(name: &str) -> Result<String, DomainError> {
    validate_item_name(name).map_err(|m| DomainError::invalid("name", m))?;
    Ok(normalize(name))
}

impl Aggregate for Folder {
    type Command = FolderCommand;
    type Event = FolderEvent;

    fn decide(&self, command: &FolderCommand) -> Result<Vec<FolderEvent>, DomainError> {
        if let FolderCommand::Create {
            folder_id,
            tenant_id,
            share_id,
            parent_id,
            name,
            path,
            by,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::AlreadyExists("folder already exists".into()));
            }
            return Ok(vec![FolderEvent::FolderCreated {
                folder_id: *folder_id,
                tenant_id: *tenant_id,
                share_id: *share_id,
                parent_id: *parent_id,
                name: valid_name(name)?,
                path: path.clone(),
                by: *by,
                at: *at,
            }]);
        }
        let (Some(id), Some(share)) = (self.id, self.share_id) else {
            return Err(DomainError::NotFound("folder"));
        };
        if self.purged {
            return Err(DomainError::NotFound("folder"));
        }
        match command {
            FolderCommand::Create { .. } => Ok(vec![]),
            FolderCommand::Purge { at } => Ok(vec![FolderEvent::FolderPurged {
                folder_id: id,
                share_id: share,
                path: self.path.clone(),
                parent_id: Some(self.parent_id),
                at: *at,
            }]),
            FolderCommand::Restore { at } => {
                if !self.deleted {
                    return Err(DomainError::InvalidTransition(
                        "folder is not in the trash".into(),
                    ));
                }
                Ok(vec![FolderEvent::FolderRestored {
                    folder_id: id,
                    share_id: share,
                    path: self.path.clone(),
                    at: *at,
                }])
            }
            _ if self.deleted => Err(DomainError::Gone("folder is in the trash".into())),
            FolderCommand::Rename { name, new_path, at } => {
                let name = valid_name(name)?;
                if name == self.name {
                    return Ok(vec![]);
                }
                Ok(vec![FolderEvent::FolderRenamed {
                    folder_id: id,
                    share_id: share,
                    name,
                    old_path: self.path.clone(),
                    path: new_path.clone(),
                    at: *at,
                }])
            }
            FolderCommand::Move {
                share_id,
                parent_id,
                new_path,
                target_ancestors,
                at,
            } => {
                if *parent_id == Some(id) || target_ancestors.contains(&id) {
                    return Err(DomainError::InvalidTransition(
                        "cannot move a folder into itself or its own subtree".into(),
                    ));
                }
                if *share_id == share && *parent_id == self.parent_id {
                    return Ok(vec![]);
                }
                Ok(vec![FolderEvent::FolderMoved {
                    folder_id: id,
                    old_share_id: share,
                    share_id: *share_id,
                    old_parent_id: self.parent_id,
                    parent_id: *parent_id,
                    old_path: self.path.clone(),
                    path: new_path.clone(),
                    at: *at,
                }])
            }
            FolderCommand::Delete { at } => Ok(vec![FolderEvent::FolderDeleted {
                folder_id: id,
                share_id: share,
                path: self.path.clone(),
                at: *at,
            }]),
            FolderCommand::TransferOwnership { new_owner, by, at } => {
                let Some(previous) = self.owner else {
                    return Err(DomainError::NotFound("folder"));
                };
                if previous == *new_owner {
                    return Ok(vec![]);
                }
                Ok(vec![FolderEvent::FolderOwnershipTransferred {
                    folder_id: id,
                    share_id: share,
                    previous_owner: previous,
                    new_owner: *new_owner,
                    by: *by,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &FolderEvent) {
        match event {
            FolderEvent::FolderCreated {
                folder_id,
                tenant_id,
                share_id,
                parent_id,
                name,
                path,
                by,
                ..
            } => {
                self.id = Some(*folder_id);
                self.owner = Some(*by);
                self.tenant_id = Some(*tenant_id);
                self.share_id = Some(*share_id);
                self.parent_id = *parent_id;
                self.name = name.clone();
                self.path = path.clone();
            }
            FolderEvent::FolderRenamed { name, path, .. } => {
                self.name = name.clone();
                self.path = path.clone();
            }
            FolderEvent::FolderMoved {
                share_id,
                parent_id,
                path,
                ..
            } => {
                self.share_id = Some(*share_id);
                self.parent_id = *parent_id;
                self.path = path.clone();
            }
            FolderEvent::FolderDeleted { at, .. } => {
                self.deleted = true;
                self.deleted_at = Some(*at);
            }
            FolderEvent::FolderRestored { .. } => {
                self.deleted = false;
                self.deleted_at = None;
            }
            FolderEvent::FolderPurged { .. } => self.purged = true,
            FolderEvent::FolderOwnershipTransferred { new_owner, .. } => {
                self.owner = Some(*new_owner)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn fid(n: u128) -> FolderId {
        FolderId::from_uuid(Uuid::from_u128(n))
    }

    fn created() -> FolderEvent {
        FolderEvent::FolderCreated {
            folder_id: fid(1),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(9)),
            share_id: ShareId::from_uuid(Uuid::from_u128(8)),
            parent_id: None,
            name: "Docs".into(),
            path: "/Docs".into(),
            by: UserId::from_uuid(Uuid::from_u128(7)),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_folder_cannot_move_into_its_own_subtree() {
        let share = ShareId::from_uuid(Uuid::from_u128(8));
        Scenario::<Folder>::given([created()])
            .when(FolderCommand::Move {
                share_id: share,
                parent_id: Some(fid(3)),
                new_path: "/Docs/a/b/Docs".into(),
                target_ancestors: vec![fid(3), fid(2), fid(1)],
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::InvalidTransition(_)));
        Scenario::<Folder>::given([created()])
            .when(FolderCommand::Move {
                share_id: share,
                parent_id: Some(fid(1)),
                new_path: "/x".into(),
                target_ancestors: vec![],
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::InvalidTransition(_)));
        Scenario::<Folder>::given([created()])
            .when(FolderCommand::Move {
                share_id: share,
                parent_id: Some(fid(5)),
                new_path: "/Other/Docs".into(),
                target_ancestors: vec![fid(5)],
                at: Utc::now(),
            })
            .then_types(&["folder-moved"]);
    }

    #[test]
    fn ownership_moves_to_the_new_owner_once_and_not_in_the_trash() {
        let creator = UserId::from_uuid(Uuid::from_u128(7));
        let bob = UserId::from_uuid(Uuid::from_u128(6));
        let transfer = |to| FolderCommand::TransferOwnership {
            new_owner: to,
            by: creator,
            at: Utc::now(),
        };
        let ev = Scenario::<Folder>::given([created()])
            .when(transfer(bob))
            .then_types(&["folder-ownership-transferred"]);
        let FolderEvent::FolderOwnershipTransferred { previous_owner, .. } = &ev[0] else {
            panic!("transferred")
        };
        assert_eq!(*previous_owner, creator);
        // To the owner it already has: nothing to record.
        Scenario::<Folder>::given([created()])
            .when(transfer(creator))
            .then([]);
        let deleted = FolderEvent::FolderDeleted {
            folder_id: fid(1),
            share_id: ShareId::from_uuid(Uuid::from_u128(8)),
            path: "/Docs".into(),
            at: Utc::now(),
        };
        Scenario::<Folder>::given([created(), deleted])
            .when(transfer(bob))
            .then_error_matches(|e| matches!(e, DomainError::Gone(_)));
    }

    #[test]
    fn names_are_validated_and_normalised() {
        Scenario::<Folder>::given([created()])
            .when(FolderCommand::Rename {
                name: "a/b".into(),
                new_path: "/a/b".into(),
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::Invalid { .. }));
        let ev = Scenario::<Folder>::given([created()])
            .when(FolderCommand::Rename {
                name: "cafe\u{301}".into(),
                new_path: "/caf\u{e9}".into(),
                at: Utc::now(),
            })
            .then_types(&["folder-renamed"]);
        let FolderEvent::FolderRenamed { name, .. } = &ev[0] else {
            panic!("renamed")
        };
        assert_eq!(name, "caf\u{e9}");
    }

    #[test]
    fn trashed_folders_answer_gone_until_restored() {
        let at = Utc::now();
        let deleted = FolderEvent::FolderDeleted {
            folder_id: fid(1),
            share_id: ShareId::from_uuid(Uuid::from_u128(8)),
            path: "/Docs".into(),
            at,
        };
        Scenario::<Folder>::given([created(), deleted.clone()])
            .when(FolderCommand::Rename {
                name: "X".into(),
                new_path: "/X".into(),
                at,
            })
            .then_error(DomainError::Gone("folder is in the trash".into()));
        Scenario::<Folder>::given([created(), deleted])
            .when(FolderCommand::Restore { at })
            .then_types(&["folder-restored"]);
    }
}
