//! The sync read models: the change feed (`rm_changes`, exactly one row per
//! mutation of a share, folder or file, keyed by the log position of the
//! event that carries it), devices, their cursors, and conflicts.
//!
//! Because the runner applies events in log order and stores its checkpoint
//! in the same transaction, a reader paging `rm_changes` by position never
//! sees a row appear behind its cursor: nothing is skipped or repeated.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::FileEvent;
use scaidrive_domain::drive::folder::FolderEvent;
use scaidrive_domain::drive::share::ShareEvent;
use scaidrive_domain::id::ChangeId;
use scaidrive_domain::sync::{ChangeType, ConflictEvent, DeviceEvent, ResourceType};
use scaidrive_domain::{AnyEvent, DecodedEvent, RecordedEvent};

use crate::db::Tx;
use crate::projection::{typed, Projection, ProjectionError};
use crate::{tx_execute, tx_insert_rows};

/// Folds drive events into the change feed and sync events into devices,
/// cursors and conflicts.
pub struct SyncProjection;

/// The projection's name (its checkpoint is the end of the feed).
pub const NAME: &str = "sync";

/// One change about to be stored.
#[derive(Debug, Clone)]
struct Draft {
    share_id: String,
    old_share_id: Option<String>,
    resource_type: ResourceType,
    resource_id: String,
    change_type: ChangeType,
    name: Option<String>,
    parent_id: Option<String>,
    old_path: Option<String>,
    new_path: Option<String>,
    version_id: Option<String>,
    size: Option<i64>,
    mime_type: Option<String>,
    permanent: bool,
    by: Option<String>,
}

impl Draft {
    fn new(
        share_id: impl ToString,
        resource_type: ResourceType,
        resource_id: impl ToString,
        change_type: ChangeType,
    ) -> Self {
        Self {
            share_id: share_id.to_string(),
            old_share_id: None,
            resource_type,
            resource_id: resource_id.to_string(),
            change_type,
            name: None,
            parent_id: None,
            old_path: None,
            new_path: None,
            version_id: None,
            size: None,
            mime_type: None,
            permanent: false,
            by: None,
        }
    }
}

fn last_segment(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Whether `event`, a purge, carries the change of what it purged. A
/// permanent delete of a folder purges its whole subtree in one commit;
/// only the purge of the subtree's top carries the change. A purged share
/// takes all its content in one commit; the share's own change carries it.
/// `commit` is the whole commit `event` belongs to (the runner hands out
/// whole commits).
fn is_top_purge(event: &DecodedEvent, commit: &[DecodedEvent]) -> bool {
    let (my_share, my_parent) = match &event.event {
        AnyEvent::Folder(FolderEvent::FolderPurged {
            share_id,
            parent_id,
            ..
        }) => (share_id.to_string(), Some(parent_id)),
        AnyEvent::File(FileEvent::FilePurged { share_id, .. }) => (share_id.to_string(), None),
        _ => return true,
    };
    if commit
        .iter()
        .any(|s| s.event_type == "share-purged" && s.stream_id == my_share)
    {
        return false;
    }
    let folders: Vec<&str> = commit
        .iter()
        .filter(|s| s.event_type == "folder-purged")
        .map(|s| s.stream_id.as_str())
        .collect();
    let Some(first) = folders.first() else {
        return true;
    };
    match my_parent {
        // Files are purged inside a folder's purge only.
        None => false,
        Some(Some(parent)) => parent.is_none_or(|p| !folders.contains(&p.to_string().as_str())),
        // Written before purges named the parent: the subtree's top is
        // purged first.
        Some(None) => *first == event.stream_id,
    }
}

fn drive_change(event: &DecodedEvent) -> Result<Option<Draft>, ProjectionError> {
    let d = match typed(event)?.clone() {
        AnyEvent::Share(e) => match e {
            ShareEvent::ShareCreated {
                share_id, name, by, ..
            } => {
                let mut d =
                    Draft::new(share_id, ResourceType::Share, share_id, ChangeType::Created);
                d.name = Some(name);
                d.new_path = Some("/".into());
                d.by = Some(by.to_string());
                d
            }
            ShareEvent::ShareUpdated { share_id, name, .. } => {
                let kind = if name.is_some() {
                    ChangeType::Renamed
                } else {
                    ChangeType::Updated
                };
                let mut d = Draft::new(share_id, ResourceType::Share, share_id, kind);
                d.name = name;
                d
            }
            ShareEvent::ShareDeleted { share_id, .. } => {
                Draft::new(share_id, ResourceType::Share, share_id, ChangeType::Deleted)
            }
            ShareEvent::ShareRestored { share_id, .. } => {
                Draft::new(share_id, ResourceType::Share, share_id, ChangeType::Created)
            }
            ShareEvent::SharePurged { share_id, .. } => {
                let mut d =
                    Draft::new(share_id, ResourceType::Share, share_id, ChangeType::Deleted);
                d.permanent = true;
                d
            }
            ShareEvent::ShareOwnershipTransferred { share_id, .. } => {
                Draft::new(share_id, ResourceType::Share, share_id, ChangeType::Updated)
            }
            // Who may access a share is not content; clients learn it from
            // their next request's answer (404 once access is gone).
            ShareEvent::ShareMemberAdded { .. }
            | ShareEvent::ShareMemberUpdated { .. }
            | ShareEvent::ShareMemberRemoved { .. } => return Ok(None),
        },
        AnyEvent::Folder(e) => match e {
            FolderEvent::FolderCreated {
                folder_id,
                share_id,
                parent_id,
                name,
                path,
                by,
                ..
            } => {
                let mut d = Draft::new(
                    share_id,
                    ResourceType::Folder,
                    folder_id,
                    ChangeType::Created,
                );
                d.name = Some(name);
                d.parent_id = parent_id.map(|p| p.to_string());
                d.new_path = Some(path);
                d.by = Some(by.to_string());
                d
            }
            FolderEvent::FolderRenamed {
                folder_id,
                share_id,
                name,
                old_path,
                path,
                ..
            } => {
                let mut d = Draft::new(
                    share_id,
                    ResourceType::Folder,
                    folder_id,
                    ChangeType::Renamed,
                );
                d.name = Some(name);
                d.old_path = Some(old_path);
                d.new_path = Some(path);
                d
            }
            FolderEvent::FolderMoved {
                folder_id,
                old_share_id,
                share_id,
                parent_id,
                old_path,
                path,
                ..
            } => {
                let mut d =
                    Draft::new(share_id, ResourceType::Folder, folder_id, ChangeType::Moved);
                d.old_share_id = (old_share_id != share_id).then(|| old_share_id.to_string());
                d.parent_id = parent_id.map(|p| p.to_string());
                d.name = Some(last_segment(&path));
                d.old_path = Some(old_path);
                d.new_path = Some(path);
                d
            }
            FolderEvent::FolderDeleted {
                folder_id,
                share_id,
                path,
                ..
            } => {
                let mut d = Draft::new(
                    share_id,
                    ResourceType::Folder,
                    folder_id,
                    ChangeType::Deleted,
                );
                d.old_path = Some(path);
                d
            }
            FolderEvent::FolderRestored {
                folder_id,
                share_id,
                path,
                ..
            } => {
                let mut d = Draft::new(
                    share_id,
                    ResourceType::Folder,
                    folder_id,
                    ChangeType::Created,
                );
                d.name = Some(last_segment(&path));
                d.new_path = Some(path);
                d
            }
            // Who owns an item is not content; clients read it with the item.
            FolderEvent::FolderOwnershipTransferred { .. } => return Ok(None),
            FolderEvent::FolderPurged {
                folder_id,
                share_id,
                path,
                ..
            } => {
                let mut d = Draft::new(
                    share_id,
                    ResourceType::Folder,
                    folder_id,
                    ChangeType::Deleted,
                );
                d.old_path = Some(path);
                d.permanent = true;
                d
            }
        },
        AnyEvent::File(e) => match e {
            FileEvent::FileCreated {
                file_id,
                share_id,
                folder_id,
                name,
                path,
                version,
                ..
            } => {
                let mut d = Draft::new(share_id, ResourceType::File, file_id, ChangeType::Created);
                d.name = Some(name);
                d.parent_id = folder_id.map(|p| p.to_string());
                d.new_path = Some(path);
                d.version_id = Some(version.content.version_id.to_string());
                d.size = Some(version.content.size as i64);
                d.mime_type = Some(version.content.mime_type.clone());
                d.by = Some(version.by.to_string());
                d
            }
            FileEvent::FileVersionAdded {
                file_id,
                share_id,
                path,
                version,
                ..
            } => {
                let mut d = Draft::new(share_id, ResourceType::File, file_id, ChangeType::Updated);
                d.name = Some(last_segment(&path));
                d.new_path = Some(path);
                d.version_id = Some(version.content.version_id.to_string());
                d.size = Some(version.content.size as i64);
                d.mime_type = Some(version.content.mime_type.clone());
                d.by = Some(version.by.to_string());
                d
            }
            FileEvent::FileRenamed {
                file_id,
                share_id,
                name,
                old_path,
                path,
                by,
                ..
            } => {
                let mut d = Draft::new(share_id, ResourceType::File, file_id, ChangeType::Renamed);
                d.name = Some(name);
                d.old_path = Some(old_path);
                d.new_path = Some(path);
                d.by = Some(by.to_string());
                d
            }
            FileEvent::FileMoved {
                file_id,
                old_share_id,
                share_id,
                folder_id,
                old_path,
                path,
                by,
                ..
            } => {
                let mut d = Draft::new(share_id, ResourceType::File, file_id, ChangeType::Moved);
                d.old_share_id = (old_share_id != share_id).then(|| old_share_id.to_string());
                d.parent_id = folder_id.map(|p| p.to_string());
                d.name = Some(last_segment(&path));
                d.old_path = Some(old_path);
                d.new_path = Some(path);
                d.by = Some(by.to_string());
                d
            }
            FileEvent::FileDeleted {
                file_id,
                share_id,
                path,
                by,
                ..
            } => {
                let mut d = Draft::new(share_id, ResourceType::File, file_id, ChangeType::Deleted);
                d.old_path = Some(path);
                d.by = Some(by.to_string());
                d
            }
            FileEvent::FileRestored {
                file_id,
                share_id,
                path,
                by,
                ..
            } => {
                let mut d = Draft::new(share_id, ResourceType::File, file_id, ChangeType::Created);
                d.name = Some(last_segment(&path));
                d.new_path = Some(path);
                d.by = Some(by.to_string());
                d
            }
            FileEvent::FileOwnershipTransferred { .. } => return Ok(None),
            FileEvent::FilePurged {
                file_id,
                share_id,
                path,
                by,
                ..
            } => {
                let mut d = Draft::new(share_id, ResourceType::File, file_id, ChangeType::Deleted);
                d.old_path = Some(path);
                d.permanent = true;
                d.by = by.map(|b| b.to_string());
                d
            }
            // The file as clients sync it (its current version) is unchanged.
            FileEvent::FileVersionPruned { .. } => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(d))
}

/// Decides which event of a multi-event mutation carries its one change, and
/// completes that change with what the others of its commit know.
fn carried(event: &DecodedEvent, commit: &[DecodedEvent], mut d: Draft) -> Option<Draft> {
    let purge = matches!(event.event_type.as_str(), "folder-purged" | "file-purged");
    if purge && !is_top_purge(event, commit) {
        return None;
    }
    let same_stream = |version: i64| {
        commit
            .iter()
            .find(|s| s.stream_id == event.stream_id && s.stream_version == version)
    };
    match &event.event {
        // A move with a new name is a rename then a move of the same file in
        // one commit: the move carries it, from the path before the rename.
        AnyEvent::File(FileEvent::FileRenamed { .. })
            if same_stream(event.stream_version + 1)
                .is_some_and(|s| s.event_type == "file-moved") =>
        {
            return None;
        }
        AnyEvent::File(FileEvent::FileMoved { .. }) => {
            if let Some(AnyEvent::File(FileEvent::FileRenamed { old_path, .. })) =
                same_stream(event.stream_version - 1).map(|s| &s.event)
            {
                d.old_path = Some(old_path.clone());
            }
        }
        _ => {}
    }
    Some(d)
}

/// Rows per `rm_changes` `INSERT`: 20 parameters each stays far below
/// either backend's limit on bound parameters.
const CHANGES_PER_INSERT: usize = 500;

/// Inserts the change rows of `changes` (event and draft) in one statement.
async fn insert_changes(
    tx: &mut Tx,
    changes: &[(&RecordedEvent, Draft)],
) -> Result<(), sqlx::Error> {
    const HEAD: &str = "INSERT INTO rm_changes (commit_id, position, id, tenant_id, share_id, old_share_id, resource_type, resource_id, \
         change_type, changed_by, device_id, changed_at, name, parent_id, old_path, new_path, version_id, size, mime_type, permanent) ";
    tx_insert_rows!(
        tx,
        HEAD,
        changes,
        |mut row, (event, d): &(&RecordedEvent, Draft)| {
            let actor = &event.metadata.actor;
            row.push_bind(event.log.commit)
                .push_bind(event.log.position)
                .push_bind(ChangeId::from_uuid(event.event_id).to_string())
                .push_bind(event.tenant_id.clone().unwrap_or_default())
                .push_bind(d.share_id.clone())
                .push_bind(d.old_share_id.clone())
                .push_bind(d.resource_type.as_str())
                .push_bind(d.resource_id.clone())
                .push_bind(d.change_type.as_str())
                .push_bind(actor.user_id.clone().or_else(|| d.by.clone()))
                .push_bind(actor.device_id.clone())
                .push_bind(event.metadata.occurred_at)
                .push_bind(d.name.clone())
                .push_bind(d.parent_id.clone())
                .push_bind(d.old_path.clone())
                .push_bind(d.new_path.clone())
                .push_bind(d.version_id.clone())
                .push_bind(d.size)
                .push_bind(d.mime_type.clone())
                .push_bind(d.permanent);
        },
        " ON CONFLICT (commit_id, position) DO NOTHING"
    )?;
    Ok(())
}

async fn apply_device(
    tx: &mut Tx,
    event: &DecodedEvent,
    device: &DeviceEvent,
) -> Result<(), ProjectionError> {
    let tenant = event.tenant_id.clone().unwrap_or_default();
    match device.clone() {
        DeviceEvent::DeviceRegistered {
            device_id,
            user_id,
            tenant_id,
            info,
            at,
        } => {
            tx_execute!(
                tx,
                "INSERT INTO rm_sync_devices (user_id, device_id, tenant_id, device_name, platform, client_version, created_at, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (user_id, device_id) DO NOTHING",
                user_id.to_string(),
                device_id,
                tenant_id.to_string(),
                info.device_name,
                info.platform,
                info.client_version,
                at
            )?;
        }
        DeviceEvent::DeviceUpdated {
            device_id,
            user_id,
            info,
            at,
        } => {
            tx_execute!(
                tx,
                "UPDATE rm_sync_devices SET device_name = $3, platform = $4, client_version = $5, last_seen_at = $6 \
                 WHERE user_id = $1 AND device_id = $2",
                user_id.to_string(),
                device_id,
                info.device_name,
                info.platform,
                info.client_version,
                at
            )?;
        }
        DeviceEvent::SyncCursorMoved {
            device_id,
            user_id,
            share_id,
            commit,
            position,
            at,
        } => {
            tx_execute!(
                tx,
                "INSERT INTO rm_sync_cursors (user_id, device_id, share_id, tenant_id, commit_id, position, last_sync_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, device_id, share_id) DO UPDATE SET \
                 commit_id = excluded.commit_id, position = excluded.position, last_sync_at = excluded.last_sync_at",
                user_id.to_string(),
                &device_id,
                share_id.to_string(),
                &tenant,
                commit,
                position,
                at
            )?;
            touch_device(tx, &user_id.to_string(), &device_id, at).await?;
        }
        DeviceEvent::SyncVersioned {
            device_id,
            user_id,
            at,
            ..
        } => {
            touch_device(tx, &user_id.to_string(), &device_id, at).await?;
        }
    }
    Ok(())
}

async fn touch_device(
    tx: &mut Tx,
    user: &str,
    device: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "UPDATE rm_sync_devices SET last_seen_at = $3 WHERE user_id = $1 AND device_id = $2",
        user,
        device,
        at
    )?;
    Ok(())
}

async fn apply_conflict(tx: &mut Tx, conflict: &ConflictEvent) -> Result<(), ProjectionError> {
    match conflict.clone() {
        ConflictEvent::ConflictDetected(f) => {
            let change = serde_json::to_string(&f.change).unwrap_or_else(|_| "{}".into());
            tx_execute!(
                tx,
                "INSERT INTO rm_sync_conflicts (id, tenant_id, share_id, device_id, user_id, resource_type, resource_id, name, \
                 change_type, client_change, base_version_id, server_version_id, strategy, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'open', $14) ON CONFLICT (id) DO NOTHING",
                f.conflict_id.to_string(),
                f.tenant_id.to_string(),
                f.share_id.to_string(),
                &f.device_id,
                f.user_id.to_string(),
                f.resource_type.as_str(),
                &f.resource_id,
                &f.name,
                f.change.change_type.as_str(),
                change,
                &f.base_version_id,
                &f.server_version_id,
                f.strategy.as_str(),
                f.at
            )?;
        }
        ConflictEvent::ConflictResolved {
            conflict_id,
            resolution,
            result_resource_id,
            result_version_id,
            by,
            at,
            ..
        } => {
            tx_execute!(
                tx,
                "UPDATE rm_sync_conflicts SET status = 'resolved', resolution = $2, result_resource_id = $3, \
                 result_version_id = $4, resolved_by = $5, resolved_at = $6 WHERE id = $1",
                conflict_id.to_string(),
                resolution.as_str(),
                result_resource_id,
                result_version_id,
                by.to_string(),
                at
            )?;
        }
    }
    Ok(())
}

#[async_trait]
impl Projection for SyncProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, t: &str) -> bool {
        t.starts_with("share-")
            || t.starts_with("folder-")
            || t.starts_with("file-")
            || t.starts_with("device-")
            || t.starts_with("sync-")
            || t.starts_with("conflict-")
    }

    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError> {
        self.apply_all(tx, std::slice::from_ref(event)).await
    }

    /// Device and conflict events as they come; the run's changes in one
    /// multi-row `INSERT` per [`CHANGES_PER_INSERT`] (nothing here reads
    /// `rm_changes`, so writing them last changes nothing).
    async fn apply_all(&self, tx: &mut Tx, events: &[DecodedEvent]) -> Result<(), ProjectionError> {
        let mut changes: Vec<(&RecordedEvent, Draft)> = Vec::new();
        for commit in events.chunk_by(|a, b| a.log.commit == b.log.commit) {
            for event in commit.iter().filter(|e| self.handles(&e.event_type)) {
                match typed(event)? {
                    AnyEvent::Device(device) => apply_device(tx, event, device).await?,
                    AnyEvent::Conflict(conflict) => apply_conflict(tx, conflict).await?,
                    _ => {
                        if let Some(d) = drive_change(event)? {
                            if let Some(d) = carried(event, commit, d) {
                                changes.push((event, d));
                            }
                        }
                    }
                }
            }
        }
        for chunk in changes.chunks(CHANGES_PER_INSERT) {
            insert_changes(tx, chunk).await?;
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_changes",
            "rm_sync_devices",
            "rm_sync_cursors",
            "rm_sync_conflicts",
        ]
    }
}

#[cfg(test)]
mod tests {
    //! The change feed's choice of which event of a commit carries a change,
    //! from decoded events alone.

    use super::*;
    use scaidrive_domain::id::{FileId, FolderId, ShareId};
    use scaidrive_domain::{DomainEvent, EventMetadata, LogPosition};
    use uuid::Uuid;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn at() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn recorded<E: DomainEvent>(
        stream: String,
        version: i64,
        position: i64,
        e: &E,
    ) -> DecodedEvent {
        let (event_type, data) = e.encode();
        DecodedEvent::new(RecordedEvent {
            log: LogPosition::new(7, position),
            stream_id: stream,
            stream_version: version,
            event_id: Uuid::from_u128(position as u128),
            event_type,
            schema_version: 1,
            tenant_id: Some("tnt_t".into()),
            data,
            metadata: EventMetadata {
                occurred_at: at(),
                actor: Default::default(),
                correlation_id: None,
                causation_id: None,
            },
            recorded_at: at(),
            hash: String::new(),
        })
    }

    fn folder_purged(n: u128, parent: Option<Option<u128>>, position: i64) -> DecodedEvent {
        let folder = FolderId::from_uuid(id(n));
        let e = FolderEvent::FolderPurged {
            folder_id: folder,
            share_id: ShareId::from_uuid(id(1)),
            path: format!("/f{n}"),
            parent_id: parent.map(|p| p.map(|p| FolderId::from_uuid(id(p)))),
            at: at(),
        };
        recorded(folder.to_string(), 3, position, &e)
    }

    fn file_purged(n: u128, position: i64) -> DecodedEvent {
        let file = FileId::from_uuid(id(n));
        let e = FileEvent::FilePurged {
            file_id: file,
            share_id: ShareId::from_uuid(id(1)),
            path: format!("/x{n}"),
            version_bytes: 0,
            was_deleted: true,
            chunks: vec![],
            by: None,
            at: at(),
        };
        recorded(file.to_string(), 4, position, &e)
    }

    fn carries(commit: &[DecodedEvent]) -> Vec<bool> {
        commit
            .iter()
            .map(|e| {
                let d = drive_change(e).ok().flatten();
                d.and_then(|d| carried(e, commit, d)).is_some()
            })
            .collect()
    }

    #[test]
    fn only_the_top_of_a_purged_subtree_carries_the_change() {
        let commit = vec![
            folder_purged(10, Some(Some(99)), 1),
            folder_purged(11, Some(Some(10)), 2),
            folder_purged(12, Some(Some(11)), 3),
            file_purged(20, 4),
        ];
        assert_eq!(carries(&commit), [true, false, false, false]);
        // A folder at the share's root is a top too.
        let commit = vec![
            folder_purged(10, Some(None), 1),
            folder_purged(11, Some(Some(10)), 2),
        ];
        assert_eq!(carries(&commit), [true, false]);
        // A file purged alone carries its change.
        assert_eq!(carries(&[file_purged(20, 1)]), [true]);
    }

    #[test]
    fn purges_written_before_the_parent_was_recorded_take_the_first_as_top() {
        let commit = vec![
            folder_purged(10, None, 1),
            folder_purged(11, None, 2),
            file_purged(20, 3),
        ];
        assert_eq!(carries(&commit), [true, false, false]);
    }

    #[test]
    fn a_share_purge_carries_everything_in_it() {
        let share = ShareId::from_uuid(id(1));
        let purged = recorded(
            share.to_string(),
            9,
            3,
            &scaidrive_domain::drive::share::ShareEvent::SharePurged {
                share_id: share,
                at: at(),
            },
        );
        let commit = vec![folder_purged(10, Some(None), 1), file_purged(20, 2), purged];
        assert_eq!(carries(&commit), [false, false, true]);
    }

    #[test]
    fn a_rename_then_move_is_one_move_from_the_old_path() {
        let file = FileId::from_uuid(id(20));
        let share = ShareId::from_uuid(id(1));
        let by = scaidrive_domain::id::UserId::from_uuid(id(5));
        let renamed = FileEvent::FileRenamed {
            file_id: file,
            share_id: share,
            name: "b".into(),
            old_path: "/a".into(),
            path: "/b".into(),
            by,
            at: at(),
        };
        let moved = FileEvent::FileMoved {
            file_id: file,
            old_share_id: share,
            share_id: share,
            old_folder_id: None,
            folder_id: Some(FolderId::from_uuid(id(10))),
            old_path: "/b".into(),
            path: "/f/b".into(),
            version_bytes: 0,
            by,
            at: at(),
        };
        let commit = vec![
            recorded(file.to_string(), 2, 1, &renamed),
            recorded(file.to_string(), 3, 2, &moved),
        ];
        assert_eq!(carries(&commit), [false, true]);
        let d = drive_change(&commit[1]).ok().flatten();
        let d = d.and_then(|d| carried(&commit[1], &commit, d));
        assert_eq!(d.and_then(|d| d.old_path).as_deref(), Some("/a"));
        // Alone, a rename is a rename.
        assert_eq!(carries(&commit[..1]), [true]);
    }
}
