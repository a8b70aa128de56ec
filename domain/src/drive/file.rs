//! The File aggregate: a name in a folder and its version history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ChunkRef;
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{FileId, FolderId, ShareId, TenantId, UserId, VersionId};
use crate::name::{normalize, validate_item_name};

/// Content of a new version, before it is numbered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Content {
    pub version_id: VersionId,
    pub size: u64,
    pub checksum_sha256: String,
    pub mime_type: String,
    pub chunk_size: u64,
    pub chunks: Vec<ChunkRef>,
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Version {
    pub number: u64,
    #[serde(flatten)]
    pub content: Content,
    pub by: UserId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct File {
    pub id: Option<FileId>,
    pub tenant_id: Option<TenantId>,
    pub share_id: Option<ShareId>,
    pub folder_id: Option<FolderId>,
    pub name: String,
    pub path: String,
    pub versions: Vec<Version>,
    pub deleted: bool,
    /// When the file itself was moved to the trash (not when a folder above it was).
    pub deleted_at: Option<DateTime<Utc>>,
    pub purged: bool,
    pub created_by: Option<UserId>,
    /// The user who owns the file: its creator until a transfer.
    pub owner: Option<UserId>,
}

impl File {
    pub fn current(&self) -> Option<&Version> {
        self.versions.last()
    }

    pub fn version(&self, number: u64) -> Option<&Version> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// Bytes of every version (what version usage counts).
    pub fn version_bytes(&self) -> u64 {
        self.versions.iter().map(|v| v.content.size).sum()
    }

    /// Whether the file itself went to the trash at or before `cutoff`.
    pub fn trashed_before(&self, cutoff: DateTime<Utc>) -> bool {
        self.deleted && !self.purged && self.deleted_at.is_some_and(|t| t <= cutoff)
    }

    /// The non-current versions superseded at or before `cutoff`, each with
    /// the moment it stopped being current (when the next version came).
    /// The current version is never among them.
    pub fn superseded_before(&self, cutoff: DateTime<Utc>) -> Vec<(&Version, DateTime<Utc>)> {
        self.versions
            .windows(2)
            .filter(|w| w[1].at <= cutoff)
            .map(|w| (&w[0], w[1].at))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub enum FileCommand {
    Create {
        file_id: FileId,
        tenant_id: TenantId,
        share_id: ShareId,
        folder_id: Option<FolderId>,
        name: String,
        path: String,
        content: Content,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// `base_version_id`: the version the client edited; stale → 409.
    AddVersion {
        base_version_id: Option<VersionId>,
        content: Content,
        by: UserId,
        at: DateTime<Utc>,
    },
    RestoreVersion {
        number: u64,
        new_version_id: VersionId,
        by: UserId,
        at: DateTime<Utc>,
    },
    Rename {
        name: String,
        new_path: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    Move {
        share_id: ShareId,
        folder_id: Option<FolderId>,
        new_path: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    Delete {
        by: UserId,
        at: DateTime<Utc>,
    },
    Restore {
        by: UserId,
        at: DateTime<Utc>,
    },
    /// `by`: `None` when the system purges (trash retention).
    Purge {
        by: Option<UserId>,
        at: DateTime<Utc>,
    },
    /// Prunes the non-current versions superseded at or before
    /// `superseded_before` (version retention; the system does it).
    PruneVersions {
        superseded_before: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Makes `new_owner` the file's owner (who may ask is the caller's rule).
    TransferOwnership {
        new_owner: UserId,
        by: UserId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum FileEvent {
    FileCreated {
        file_id: FileId,
        tenant_id: TenantId,
        share_id: ShareId,
        folder_id: Option<FolderId>,
        name: String,
        path: String,
        version: Version,
    },
    FileVersionAdded {
        file_id: FileId,
        share_id: ShareId,
        path: String,
        version: Version,
        restored_from: Option<u64>,
    },
    FileRenamed {
        file_id: FileId,
        share_id: ShareId,
        name: String,
        old_path: String,
        path: String,
        by: UserId,
        at: DateTime<Utc>,
    },
    FileMoved {
        file_id: FileId,
        old_share_id: ShareId,
        share_id: ShareId,
        old_folder_id: Option<FolderId>,
        folder_id: Option<FolderId>,
        old_path: String,
        path: String,
        /// Bytes of all versions, which move with the file between shares.
        version_bytes: u64,
        by: UserId,
        at: DateTime<Utc>,
    },
    FileDeleted {
        file_id: FileId,
        share_id: ShareId,
        path: String,
        version_bytes: u64,
        by: UserId,
        at: DateTime<Utc>,
    },
    FileRestored {
        file_id: FileId,
        share_id: ShareId,
        path: String,
        version_bytes: u64,
        by: UserId,
        at: DateTime<Utc>,
    },
    FilePurged {
        file_id: FileId,
        share_id: ShareId,
        path: String,
        version_bytes: u64,
        was_deleted: bool,
        /// Every chunk of every version, so reference counts can drop.
        chunks: Vec<ChunkRef>,
        /// `None` when the system purged it (trash retention).
        #[serde(default)]
        by: Option<UserId>,
        at: DateTime<Utc>,
    },
    /// A non-current version removed by version retention.
    FileVersionPruned {
        file_id: FileId,
        share_id: ShareId,
        number: u64,
        version_id: VersionId,
        size: u64,
        /// The version's chunks, so reference counts can drop.
        chunks: Vec<ChunkRef>,
        /// When the version stopped being current.
        superseded_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    FileOwnershipTransferred {
        file_id: FileId,
        share_id: ShareId,
        previous_owner: UserId,
        new_owner: UserId,
        by: UserId,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for FileEvent {}

fn valid_name(name: &str) -> Result<String, DomainError> {
    validate_item_name(name).map_err(|m| DomainError::invalid("name", m))?;
    Ok(normalize(name))
}

impl Aggregate for File {
    type Command = FileCommand;
    type Event = FileEvent;

    fn decide(&self, command: &FileCommand) -> Result<Vec<FileEvent>, DomainError> {
        if let FileCommand::Create {
            file_id,
            tenant_id,
            share_id,
            folder_id,
            name,
            path,
            content,
            by,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::AlreadyExists("file already exists".into()));
            }
            return Ok(vec![FileEvent::FileCreated {
                file_id: *file_id,
                tenant_id: *tenant_id,
                share_id: *share_id,
                folder_id: *folder_id,
                name: valid_name(name)?,
                path: path.clone(),
                version: Version {
                    number: 1,
                    content: content.clone(),
                    by: *by,
                    at: *at,
                },
            }]);
        }
        let (Some(id), Some(share)) = (self.id, self.share_id) else {
            return Err(DomainError::NotFound("file"));
        };
        if self.purged {
            return Err(DomainError::NotFound("file"));
        }
        let next = self.current().map(|v| v.number).unwrap_or(0) + 1;
        match command {
            FileCommand::Create { .. } => Ok(vec![]),
            FileCommand::Purge { by, at } => Ok(vec![FileEvent::FilePurged {
                file_id: id,
                share_id: share,
                path: self.path.clone(),
                version_bytes: self.version_bytes(),
                was_deleted: self.deleted,
                chunks: self
                    .versions
                    .iter()
                    .flat_map(|v| v.content.chunks.iter().cloned())
                    .collect(),
                by: *by,
                at: *at,
            }]),
            FileCommand::PruneVersions {
                superseded_before,
                at,
            } => Ok(self
                .superseded_before(*superseded_before)
                .into_iter()
                .map(|(v, superseded_at)| FileEvent::FileVersionPruned {
                    file_id: id,
                    share_id: share,
                    number: v.number,
                    version_id: v.content.version_id,
                    size: v.content.size,
                    chunks: v.content.chunks.clone(),
                    superseded_at,
                    at: *at,
                })
                .collect()),
            FileCommand::Restore { by, at } => {
                if !self.deleted {
                    return Err(DomainError::InvalidTransition(
                        "file is not in the trash".into(),
                    ));
                }
                Ok(vec![FileEvent::FileRestored {
                    file_id: id,
                    share_id: share,
                    path: self.path.clone(),
                    version_bytes: self.version_bytes(),
                    by: *by,
                    at: *at,
                }])
            }
            _ if self.deleted => Err(DomainError::Gone("file is in the trash".into())),
            FileCommand::AddVersion {
                base_version_id,
                content,
                by,
                at,
            } => {
                let current = self.current().map(|v| v.content.version_id);
                if let Some(base) = base_version_id {
                    if Some(*base) != current {
                        return Err(DomainError::VersionMismatch {
                            expected: base.to_string(),
                            actual: current.map(|c| c.to_string()).unwrap_or_default(),
                        });
                    }
                }
                Ok(vec![FileEvent::FileVersionAdded {
                    file_id: id,
                    share_id: share,
                    path: self.path.clone(),
                    version: Version {
                        number: next,
                        content: content.clone(),
                        by: *by,
                        at: *at,
                    },
                    restored_from: None,
                }])
            }
            FileCommand::RestoreVersion {
                number,
                new_version_id,
                by,
                at,
            } => {
                let old = self
                    .version(*number)
                    .ok_or(DomainError::NotFound("version"))?;
                let mut content = old.content.clone();
                content.version_id = *new_version_id;
                Ok(vec![FileEvent::FileVersionAdded {
                    file_id: id,
                    share_id: share,
                    path: self.path.clone(),
                    version: Version {
                        number: next,
                        content,
                        by: *by,
                        at: *at,
                    },
                    restored_from: Some(*number),
                }])
            }
            FileCommand::Rename {
                name,
                new_path,
                by,
                at,
            } => {
                let name = valid_name(name)?;
                if name == self.name {
                    return Ok(vec![]);
                }
                Ok(vec![FileEvent::FileRenamed {
                    file_id: id,
                    share_id: share,
                    name,
                    old_path: self.path.clone(),
                    path: new_path.clone(),
                    by: *by,
                    at: *at,
                }])
            }
            FileCommand::Move {
                share_id,
                folder_id,
                new_path,
                by,
                at,
            } => {
                if *share_id == share && *folder_id == self.folder_id && *new_path == self.path {
                    return Ok(vec![]);
                }
                Ok(vec![FileEvent::FileMoved {
                    file_id: id,
                    old_share_id: share,
                    share_id: *share_id,
                    old_folder_id: self.folder_id,
                    folder_id: *folder_id,
                    old_path: self.path.clone(),
                    path: new_path.clone(),
                    version_bytes: self.version_bytes(),
                    by: *by,
                    at: *at,
                }])
            }
            FileCommand::Delete { by, at } => Ok(vec![FileEvent::FileDeleted {
                file_id: id,
                share_id: share,
                path: self.path.clone(),
                version_bytes: self.version_bytes(),
                by: *by,
                at: *at,
            }]),
            FileCommand::TransferOwnership { new_owner, by, at } => {
                let Some(previous) = self.owner else {
                    return Err(DomainError::NotFound("file"));
                };
                if previous == *new_owner {
                    return Ok(vec![]);
                }
                Ok(vec![FileEvent::FileOwnershipTransferred {
                    file_id: id,
                    share_id: share,
                    previous_owner: previous,
                    new_owner: *new_owner,
                    by: *by,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &FileEvent) {
        match event {
            FileEvent::FileCreated {
                file_id,
                tenant_id,
                share_id,
                folder_id,
                name,
                path,
                version,
            } => {
                self.id = Some(*file_id);
                self.tenant_id = Some(*tenant_id);
                self.share_id = Some(*share_id);
                self.folder_id = *folder_id;
                self.name = name.clone();
                self.path = path.clone();
                self.created_by = Some(version.by);
                self.owner = Some(version.by);
                self.versions = vec![version.clone()];
            }
            FileEvent::FileVersionAdded { version, .. } => self.versions.push(version.clone()),
            FileEvent::FileRenamed { name, path, .. } => {
                self.name = name.clone();
                self.path = path.clone();
            }
            FileEvent::FileMoved {
                share_id,
                folder_id,
                path,
                ..
            } => {
                self.share_id = Some(*share_id);
                self.folder_id = *folder_id;
                self.path = path.clone();
            }
            FileEvent::FileDeleted { at, .. } => {
                self.deleted = true;
                self.deleted_at = Some(*at);
            }
            FileEvent::FileRestored { .. } => {
                self.deleted = false;
                self.deleted_at = None;
            }
            FileEvent::FilePurged { .. } => self.purged = true,
            FileEvent::FileOwnershipTransferred { new_owner, .. } => self.owner = Some(*new_owner),
            FileEvent::FileVersionPruned { number, .. } => {
                self.versions.retain(|v| v.number != *number);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn vid(n: u128) -> VersionId {
        VersionId::from_uuid(Uuid::from_u128(n))
    }

    fn user() -> UserId {
        UserId::from_uuid(Uuid::from_u128(5))
    }

    fn content(v: u128, size: u64) -> Content {
        Content {
            version_id: vid(v),
            size,
            checksum_sha256: format!("{v:064x}"),
            mime_type: "text/plain".into(),
            chunk_size: 4_194_304,
            chunks: vec![ChunkRef {
                hash: format!("{v:064x}"),
                size,
            }],
        }
    }

    fn created() -> FileEvent {
        FileEvent::FileCreated {
            file_id: FileId::from_uuid(Uuid::from_u128(1)),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(2)),
            share_id: ShareId::from_uuid(Uuid::from_u128(3)),
            folder_id: None,
            name: "a.txt".into(),
            path: "/a.txt".into(),
            version: Version {
                number: 1,
                content: content(10, 5),
                by: user(),
                at: Utc::now(),
            },
        }
    }

    #[test]
    fn ownership_moves_to_the_new_owner_once_and_not_in_the_trash() {
        let bob = UserId::from_uuid(Uuid::from_u128(6));
        let transfer = |to| FileCommand::TransferOwnership {
            new_owner: to,
            by: user(),
            at: Utc::now(),
        };
        let state = Scenario::<File>::given([created()])
            .when(transfer(bob))
            .then_types(&["file-ownership-transferred"]);
        let FileEvent::FileOwnershipTransferred { previous_owner, .. } = &state[0] else {
            panic!("transferred")
        };
        assert_eq!(*previous_owner, user());
        Scenario::<File>::given([created()])
            .when(transfer(user()))
            .then([]);
        let deleted = FileEvent::FileDeleted {
            file_id: FileId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(3)),
            path: "/a.txt".into(),
            version_bytes: 5,
            by: user(),
            at: Utc::now(),
        };
        Scenario::<File>::given([created(), deleted])
            .when(transfer(bob))
            .then_error_matches(|e| matches!(e, DomainError::Gone(_)));
    }

    #[test]
    fn versions_number_up_and_a_stale_base_is_a_conflict() {
        let at = Utc::now();
        let state = Scenario::<File>::given([created()]);
        let ev = state
            .when(FileCommand::AddVersion {
                base_version_id: Some(vid(10)),
                content: content(11, 7),
                by: user(),
                at,
            })
            .then_types(&["file-version-added"]);
        let FileEvent::FileVersionAdded { version, .. } = &ev[0] else {
            panic!("version")
        };
        assert_eq!(version.number, 2);
        let mut history = vec![created()];
        history.extend(ev);
        Scenario::<File>::given(history)
            .when(FileCommand::AddVersion {
                base_version_id: Some(vid(10)),
                content: content(12, 1),
                by: user(),
                at,
            })
            .then_error_matches(|e| matches!(e, DomainError::VersionMismatch { .. }));
    }

    #[test]
    fn restoring_a_version_adds_a_new_one_with_its_content() {
        let at = Utc::now();
        let v2 = FileEvent::FileVersionAdded {
            file_id: FileId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(3)),
            path: "/a.txt".into(),
            version: Version {
                number: 2,
                content: content(11, 9),
                by: user(),
                at,
            },
            restored_from: None,
        };
        let ev = Scenario::<File>::given([created(), v2])
            .when(FileCommand::RestoreVersion {
                number: 1,
                new_version_id: vid(99),
                by: user(),
                at,
            })
            .then_types(&["file-version-added"]);
        let FileEvent::FileVersionAdded {
            version,
            restored_from,
            ..
        } = &ev[0]
        else {
            panic!("version")
        };
        assert_eq!(
            (version.number, version.content.size, *restored_from),
            (3, 5, Some(1))
        );
        assert_eq!(version.content.version_id, vid(99));
        Scenario::<File>::given([created()])
            .when(FileCommand::RestoreVersion {
                number: 7,
                new_version_id: vid(98),
                by: user(),
                at,
            })
            .then_error(DomainError::NotFound("version"));
    }

    #[test]
    fn purge_lists_every_chunk_and_trash_blocks_edits() {
        let at = Utc::now();
        let deleted = FileEvent::FileDeleted {
            file_id: FileId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(3)),
            path: "/a.txt".into(),
            version_bytes: 5,
            by: user(),
            at,
        };
        Scenario::<File>::given([created(), deleted.clone()])
            .when(FileCommand::Rename {
                name: "b".into(),
                new_path: "/b".into(),
                by: user(),
                at,
            })
            .then_error(DomainError::Gone("file is in the trash".into()));
        let ev = Scenario::<File>::given([created(), deleted])
            .when(FileCommand::Purge {
                by: Some(user()),
                at,
            })
            .then_types(&["file-purged"]);
        let FileEvent::FilePurged {
            chunks,
            was_deleted,
            ..
        } = &ev[0]
        else {
            panic!("purged")
        };
        assert_eq!(chunks.len(), 1);
        assert!(*was_deleted);
    }

    #[test]
    fn pruning_keeps_the_current_version_and_versions_superseded_after_the_cutoff() {
        let t0 = Utc::now() - chrono::Duration::days(400);
        let added = |n: u64, v: u128, at| FileEvent::FileVersionAdded {
            file_id: FileId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(3)),
            path: "/a.txt".into(),
            version: Version {
                number: n,
                content: content(v, 3),
                by: user(),
                at,
            },
            restored_from: None,
        };
        let mut first = created();
        if let FileEvent::FileCreated { version, .. } = &mut first {
            version.at = t0;
        }
        // v1 superseded at t0+10d, v2 at t0+300d, v3 current.
        let history = vec![
            first,
            added(2, 11, t0 + chrono::Duration::days(10)),
            added(3, 12, t0 + chrono::Duration::days(300)),
        ];
        let cutoff = t0 + chrono::Duration::days(100);
        let ev = Scenario::<File>::given(history.clone())
            .when(FileCommand::PruneVersions {
                superseded_before: cutoff,
                at: Utc::now(),
            })
            .then_types(&["file-version-pruned"]);
        let FileEvent::FileVersionPruned {
            number,
            size,
            chunks,
            ..
        } = &ev[0]
        else {
            panic!("pruned")
        };
        assert_eq!((*number, *size, chunks.len()), (1, 5, 1));
        // Even a cutoff in the far future never takes the current version.
        let all = Scenario::<File>::given(history.clone())
            .when(FileCommand::PruneVersions {
                superseded_before: Utc::now() + chrono::Duration::days(1000),
                at: Utc::now(),
            })
            .then_types(&["file-version-pruned", "file-version-pruned"]);
        let mut state = File::default();
        for e in history.iter().chain(all.iter()) {
            state.evolve(e);
        }
        assert_eq!(state.versions.len(), 1);
        assert_eq!(state.current().map(|v| v.number), Some(3));
        assert_eq!(state.version_bytes(), 3);
        // Nothing is left to prune: no events.
        let mut again = history;
        again.extend(all);
        Scenario::<File>::given(again)
            .when(FileCommand::PruneVersions {
                superseded_before: Utc::now() + chrono::Duration::days(1000),
                at: Utc::now(),
            })
            .then_types(&[]);
    }

    #[test]
    fn only_items_trashed_before_the_cutoff_count_as_expired() {
        let at = Utc::now();
        let deleted = FileEvent::FileDeleted {
            file_id: FileId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(3)),
            path: "/a.txt".into(),
            version_bytes: 5,
            by: user(),
            at,
        };
        let mut f = File::default();
        f.evolve(&created());
        assert!(!f.trashed_before(at + chrono::Duration::days(1)));
        f.evolve(&deleted);
        assert!(!f.trashed_before(at - chrono::Duration::seconds(1)));
        assert!(f.trashed_before(at));
    }
}
