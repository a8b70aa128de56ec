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
use scaidrive_domain::{DomainEvent, RecordedEvent};
use serde_json::Value;

use crate::db::Tx;
use crate::projection::{Projection, ProjectionError};
use crate::{tx_execute, tx_insert_rows};

/// Folds drive events into the change feed and sync events into devices,
/// cursors and conflicts.
pub struct SyncProjection;

/// The projection's name (its checkpoint is the end of the feed).
pub const NAME: &str = "sync";

fn decode<E: DomainEvent>(event: &RecordedEvent) -> Result<E, ProjectionError> {
    event
        .decode::<E>()
        .map_err(|e| ProjectionError::decode(event, e))
}

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

/// An event of the same commit, read back from the log.
#[derive(Debug, Clone)]
struct Sibling {
    stream_id: String,
    stream_version: i64,
    event_type: String,
    data: Value,
}

/// Events written by the same transaction as `event` (optionally only of one
/// stream). A commit is visible whole, so this sees all of it even when the
/// runner's batch ends in its middle.
async fn commit_events(
    tx: &mut Tx,
    event: &RecordedEvent,
    stream: Option<&str>,
) -> Result<Vec<Sibling>, sqlx::Error> {
    let rows: Vec<(String, i64, String, Value)> = match tx {
        Tx::Sqlite(t) => {
            let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
                "SELECT stream_id, stream_version, event_type, data FROM events \
                 WHERE transaction_id = $1 AND ($2 IS NULL OR stream_id = $2) ORDER BY position",
            )
            .bind(event.log.commit)
            .bind(stream)
            .fetch_all(&mut **t)
            .await?;
            rows.into_iter()
                .map(|(s, v, t, d)| (s, v, t, serde_json::from_str(&d).unwrap_or(Value::Null)))
                .collect()
        }
        Tx::Postgres(t) => {
            let rows: Vec<(String, i64, String, sqlx::types::Json<Value>)> = sqlx::query_as(
                "SELECT stream_id, stream_version, event_type, data FROM events \
                 WHERE transaction_id = $1::bigint::text::xid8 AND ($2::text IS NULL OR stream_id = $2) \
                 ORDER BY position",
            )
            .bind(event.log.commit)
            .bind(stream)
            .fetch_all(&mut **t)
            .await?;
            rows.into_iter()
                .map(|(s, v, t, d)| (s, v, t, d.0))
                .collect()
        }
    };
    Ok(rows
        .into_iter()
        .map(|(stream_id, stream_version, event_type, data)| Sibling {
            stream_id,
            stream_version,
            event_type,
            data,
        })
        .collect())
}

/// The current parent of each folder stream, from its created/moved events.
async fn folder_parents(
    tx: &mut Tx,
    folders: &[String],
) -> Result<std::collections::HashMap<String, Option<String>>, sqlx::Error> {
    let mut out = std::collections::HashMap::new();
    for f in folders {
        let sql = "SELECT data FROM events WHERE stream_id = $1 AND event_type IN ('folder-created', 'folder-moved') \
                   ORDER BY stream_version DESC LIMIT 1";
        let data: Option<Value> = match tx {
            Tx::Sqlite(t) => sqlx::query_scalar::<_, String>(sql)
                .bind(f)
                .fetch_optional(&mut **t)
                .await?
                .and_then(|d| serde_json::from_str(&d).ok()),
            Tx::Postgres(t) => sqlx::query_scalar::<_, sqlx::types::Json<Value>>(sql)
                .bind(f)
                .fetch_optional(&mut **t)
                .await?
                .map(|d| d.0),
        };
        let parent = data.and_then(|d| {
            d.get("parent_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        out.insert(f.clone(), parent);
    }
    Ok(out)
}

/// A permanent delete of a folder purges its whole subtree in one commit;
/// only the purge of the subtree's top carries the change. A purged share
/// takes all its content in one commit; the share's own change carries it.
async fn is_top_purge(tx: &mut Tx, event: &RecordedEvent) -> Result<bool, sqlx::Error> {
    let commit = commit_events(tx, event, None).await?;
    let my_share = event.data.get("share_id").and_then(Value::as_str);
    if commit
        .iter()
        .any(|s| s.event_type == "share-purged" && Some(s.stream_id.as_str()) == my_share)
    {
        return Ok(false);
    }
    let purges: Vec<Sibling> = commit
        .into_iter()
        .filter(|s| s.event_type == "folder-purged" || s.event_type == "file-purged")
        .collect();
    let folders: Vec<String> = purges
        .iter()
        .filter(|s| s.event_type == "folder-purged")
        .map(|s| s.stream_id.clone())
        .collect();
    if folders.is_empty() {
        return Ok(true);
    }
    if event.event_type == "file-purged" {
        // Files are purged inside a folder's purge only.
        return Ok(false);
    }
    let parents = folder_parents(tx, &folders).await?;
    let me = &event.stream_id;
    let my_parent = parents.get(me).cloned().flatten();
    Ok(my_parent.is_none_or(|p| !folders.contains(&p)))
}

fn drive_change(event: &RecordedEvent) -> Result<Option<Draft>, ProjectionError> {
    let t = event.event_type.as_str();
    let d = if t.starts_with("share-") {
        match decode::<ShareEvent>(event)? {
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
        }
    } else if t.starts_with("folder-") {
        match decode::<FolderEvent>(event)? {
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
        }
    } else if t.starts_with("file-") {
        match decode::<FileEvent>(event)? {
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
        }
    } else {
        return Ok(None);
    };
    Ok(Some(d))
}

/// Decides which event of a multi-event mutation carries its one change, and
/// completes that change with what the others know.
async fn carried(
    tx: &mut Tx,
    event: &RecordedEvent,
    mut d: Draft,
) -> Result<Option<Draft>, ProjectionError> {
    let purge = matches!(event.event_type.as_str(), "folder-purged" | "file-purged");
    if purge && !is_top_purge(tx, event).await? {
        return Ok(None);
    }
    match event.event_type.as_str() {
        // A move with a new name is a rename then a move of the same file in
        // one commit: the move carries it, from the path before the rename.
        "file-renamed" => {
            let same = commit_events(tx, event, Some(&event.stream_id)).await?;
            let moved_too = same.iter().any(|s| {
                s.stream_version == event.stream_version + 1 && s.event_type == "file-moved"
            });
            if moved_too {
                return Ok(None);
            }
        }
        "file-moved" => {
            let same = commit_events(tx, event, Some(&event.stream_id)).await?;
            if let Some(renamed) = same.iter().find(|s| {
                s.stream_version == event.stream_version - 1 && s.event_type == "file-renamed"
            }) {
                if let Some(p) = renamed.data.get("old_path").and_then(Value::as_str) {
                    d.old_path = Some(p.to_owned());
                }
            }
        }
        _ => {}
    }
    Ok(Some(d))
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

async fn apply_device(tx: &mut Tx, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let tenant = event.tenant_id.clone().unwrap_or_default();
    match decode::<DeviceEvent>(event)? {
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

async fn apply_conflict(tx: &mut Tx, event: &RecordedEvent) -> Result<(), ProjectionError> {
    match decode::<ConflictEvent>(event)? {
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

    async fn apply(&self, tx: &mut Tx, event: &RecordedEvent) -> Result<(), ProjectionError> {
        self.apply_all(tx, std::slice::from_ref(event)).await
    }

    /// Device and conflict events as they come; the run's changes in one
    /// multi-row `INSERT` per [`CHANGES_PER_INSERT`] (nothing here reads
    /// `rm_changes`, so writing them last changes nothing).
    async fn apply_all(
        &self,
        tx: &mut Tx,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut changes: Vec<(&RecordedEvent, Draft)> = Vec::new();
        for event in events.iter().filter(|e| self.handles(&e.event_type)) {
            let t = event.event_type.as_str();
            if t.starts_with("device-") || t.starts_with("sync-") {
                apply_device(tx, event).await?;
            } else if t.starts_with("conflict-") {
                apply_conflict(tx, event).await?;
            } else if let Some(d) = drive_change(event)? {
                if let Some(d) = carried(tx, event, d).await? {
                    changes.push((event, d));
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
