//! Shares, folders, files, versions, chunk reference counts and upload
//! sessions as rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::{FileEvent, Version};
use scaidrive_domain::drive::folder::FolderEvent;
use scaidrive_domain::drive::share::ShareEvent;
use scaidrive_domain::drive::upload::UploadEvent;
use scaidrive_domain::drive::ChunkRef;
use scaidrive_domain::{AnyEvent, DecodedEvent};

use crate::db::Tx;
use crate::projection::{typed, Projection, ProjectionError};
use crate::{tx_execute, tx_fetch_optional, tx_insert_rows};
use scaidrive_domain::drive::child_path;

/// Folds the drive's events into `rm_shares`, `rm_folders`, `rm_files`,
/// `rm_file_versions`, `rm_chunk_refs` and `rm_uploads`.
pub struct DriveProjection;

fn chars(s: &str) -> i32 {
    s.chars().count() as i32
}

/// A folder's stored path, or "/" for a share root. The read model derives
/// paths from its own rows, so they stay right whatever ancestors did.
async fn folder_path(tx: &mut Tx, folder: Option<String>) -> Result<String, sqlx::Error> {
    match folder {
        None => Ok("/".to_owned()),
        Some(id) => Ok(tx_fetch_optional!(
            tx,
            (String,),
            "SELECT path FROM rm_folders WHERE id = $1",
            id
        )?
        .map(|r| r.0)
        .unwrap_or_else(|| "/".to_owned())),
    }
}

/// A `rm_folders` row for a created folder.
struct NewFolder {
    id: String,
    tenant_id: String,
    share_id: String,
    parent_id: Option<String>,
    name: String,
    path: String,
    by: String,
    at: DateTime<Utc>,
}

/// The row of a `folder-created` event (`None` for another event). Its path
/// is below the parent's: a parent created earlier in `run` (not written
/// yet) or the stored one.
async fn new_folder(
    tx: &mut Tx,
    run: &[NewFolder],
    event: &DecodedEvent,
) -> Result<Option<NewFolder>, ProjectionError> {
    let AnyEvent::Folder(FolderEvent::FolderCreated {
        folder_id,
        tenant_id,
        share_id,
        parent_id,
        name,
        by,
        at,
        ..
    }) = typed(event)?
    else {
        return Ok(None);
    };
    let at = *at;
    let parent = parent_id.as_ref().map(|p| p.to_string());
    let pending = parent
        .as_deref()
        .and_then(|p| run.iter().rev().find(|f| f.id == p));
    let parent_path = match pending {
        Some(f) => f.path.clone(),
        None => folder_path(tx, parent.clone()).await?,
    };
    Ok(Some(NewFolder {
        id: folder_id.to_string(),
        tenant_id: tenant_id.to_string(),
        share_id: share_id.to_string(),
        path: child_path(&parent_path, name),
        parent_id: parent,
        name: name.clone(),
        by: by.to_string(),
        at,
    }))
}

/// Rows per `rm_folders` `INSERT` (10 parameters each).
const FOLDERS_PER_INSERT: usize = 1000;

/// Writes `folders` (and empties it), in one statement per
/// [`FOLDERS_PER_INSERT`].
async fn insert_folders(tx: &mut Tx, folders: &mut Vec<NewFolder>) -> Result<(), sqlx::Error> {
    const HEAD: &str = "INSERT INTO rm_folders (id, tenant_id, share_id, parent_id, name, path, owner_id, created_by, created_at, modified_at) ";
    for chunk in folders.chunks(FOLDERS_PER_INSERT) {
        tx_insert_rows!(
            &mut *tx,
            HEAD,
            chunk,
            |mut row, f: &NewFolder| {
                row.push_bind(&f.id)
                    .push_bind(&f.tenant_id)
                    .push_bind(&f.share_id)
                    .push_bind(&f.parent_id)
                    .push_bind(&f.name)
                    .push_bind(&f.path)
                    .push_bind(&f.by)
                    .push_bind(&f.by)
                    .push_bind(f.at)
                    .push_bind(f.at);
            },
            " ON CONFLICT (id) DO NOTHING"
        )?;
    }
    folders.clear();
    Ok(())
}

async fn stored_path(tx: &mut Tx, table: &str, id: &str) -> Result<Option<String>, sqlx::Error> {
    let sql = format!("SELECT path FROM {table} WHERE id = $1");
    Ok(tx_fetch_optional!(tx, (String,), &sql, id)?.map(|r| r.0))
}

/// Rewrites the paths (and share) of everything below `old` to sit below `new`.
async fn move_subtree(
    tx: &mut Tx,
    old_share: &str,
    new_share: &str,
    old: &str,
    new: &str,
) -> Result<(), sqlx::Error> {
    let prefix = format!("{old}/");
    for table in ["rm_folders", "rm_files"] {
        let sql = format!(
            "UPDATE {table} SET path = $1 || substr(path, $2), share_id = $3 \
             WHERE share_id = $4 AND substr(path, 1, $5) = $6"
        );
        tx_execute!(
            tx,
            &sql,
            new,
            chars(old) + 1,
            new_share,
            old_share,
            chars(&prefix),
            &prefix
        )?;
    }
    Ok(())
}

/// Marks (or unmarks) everything below a folder as hidden by its trashing.
async fn hide_subtree(
    tx: &mut Tx,
    share: &str,
    path: &str,
    via: Option<&str>,
    folder_id: &str,
) -> Result<(), sqlx::Error> {
    let prefix = format!("{path}/");
    for table in ["rm_folders", "rm_files"] {
        let sql = match via {
            Some(_) => format!(
                "UPDATE {table} SET trashed_via = $1 WHERE share_id = $2 AND substr(path, 1, $3) = $4 AND trashed_via IS NULL"
            ),
            None => format!(
                "UPDATE {table} SET trashed_via = NULL WHERE share_id = $2 AND substr(path, 1, $3) = $4 AND trashed_via = $1"
            ),
        };
        tx_execute!(tx, &sql, folder_id, share, chars(&prefix), &prefix)?;
    }
    Ok(())
}

async fn add_chunk_refs(
    tx: &mut Tx,
    tenant: &str,
    chunks: &[ChunkRef],
    delta: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for c in chunks {
        tx_execute!(
            tx,
            "INSERT INTO rm_chunk_refs (tenant_id, hash, size, refs, released_at) VALUES ($1, $2, $3, $4, NULL) \
             ON CONFLICT (tenant_id, hash) DO UPDATE SET refs = rm_chunk_refs.refs + excluded.refs, \
             released_at = CASE WHEN rm_chunk_refs.refs + excluded.refs <= 0 THEN $5 ELSE NULL END",
            tenant,
            &c.hash,
            c.size as i64,
            delta,
            at
        )?;
    }
    Ok(())
}

async fn insert_version(
    tx: &mut Tx,
    file_id: &str,
    tenant: &str,
    v: &Version,
) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO rm_file_versions (file_id, number, version_id, tenant_id, size, checksum_sha256, mime_type, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (file_id, number) DO NOTHING",
        file_id,
        v.number as i64,
        v.content.version_id.to_string(),
        tenant,
        v.content.size as i64,
        &v.content.checksum_sha256,
        &v.content.mime_type,
        v.by.to_string(),
        v.at
    )?;
    Ok(())
}

#[async_trait]
impl Projection for DriveProjection {
    fn name(&self) -> &'static str {
        "drive"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, t: &str) -> bool {
        t.starts_with("share-")
            || t.starts_with("folder-")
            || t.starts_with("file-")
            || t.starts_with("upload-")
    }

    /// A run of `folder-created` events goes in one multi-row `INSERT`
    /// (any other event writes the run first, so everything it reads is
    /// there); the rest as [`apply`](Self::apply) does it.
    async fn apply_all(&self, tx: &mut Tx, events: &[DecodedEvent]) -> Result<(), ProjectionError> {
        let mut run: Vec<NewFolder> = Vec::new();
        for event in events.iter().filter(|e| self.handles(&e.event_type)) {
            if let Some(folder) = new_folder(tx, &run, event).await? {
                run.push(folder);
                continue;
            }
            insert_folders(tx, &mut run).await?;
            self.apply(tx, event).await?;
        }
        insert_folders(tx, &mut run).await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let tenant = event.tenant_id.clone().unwrap_or_default();
        let at = event.metadata.occurred_at;
        match typed(event)? {
            AnyEvent::Share(e) => match e.clone() {
                ShareEvent::ShareCreated {
                    share_id,
                    tenant_id,
                    name,
                    description,
                    share_type,
                    owner_id,
                    quota_bytes,
                    by,
                    at,
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_shares (id, tenant_id, name, description, share_type, owner_id, quota_bytes, created_by, created_at, modified_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (id) DO NOTHING",
                        share_id.to_string(),
                        tenant_id.to_string(),
                        name,
                        description,
                        share_type.as_str(),
                        owner_id.to_string(),
                        quota_bytes.map(|q| q as i64),
                        by.to_string(),
                        at
                    )?;
                }
                ShareEvent::ShareUpdated {
                    share_id,
                    name,
                    description,
                    at,
                } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_shares SET name = COALESCE($2, name), description = COALESCE($3, description), modified_at = $4 WHERE id = $1",
                        share_id.to_string(),
                        name,
                        description,
                        at
                    )?;
                }
                ShareEvent::ShareDeleted { share_id, at } => {
                    tx_execute!(tx, "UPDATE rm_shares SET is_deleted = TRUE, deleted_at = $2, modified_at = $2 WHERE id = $1", share_id.to_string(), at)?;
                }
                ShareEvent::ShareRestored { share_id, at } => {
                    tx_execute!(tx, "UPDATE rm_shares SET is_deleted = FALSE, deleted_at = NULL, modified_at = $2 WHERE id = $1", share_id.to_string(), at)?;
                }
                ShareEvent::SharePurged { share_id, .. } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_shares WHERE id = $1",
                        share_id.to_string()
                    )?;
                }
                ShareEvent::ShareOwnershipTransferred {
                    share_id,
                    new_owner,
                    at,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_shares SET owner_id = $2, modified_at = $3 WHERE id = $1",
                        share_id.to_string(),
                        new_owner.to_string(),
                        at
                    )?;
                }
                // Memberships are the access projection's.
                ShareEvent::ShareMemberAdded { .. }
                | ShareEvent::ShareMemberUpdated { .. }
                | ShareEvent::ShareMemberRemoved { .. } => {}
            },
            AnyEvent::Folder(e) => match e.clone() {
                FolderEvent::FolderCreated { .. } => {
                    if let Some(folder) = new_folder(tx, &[], event).await? {
                        insert_folders(tx, &mut vec![folder]).await?;
                    }
                }
                FolderEvent::FolderRenamed {
                    folder_id,
                    share_id,
                    name,
                    at,
                    ..
                } => {
                    let Some(old_path) =
                        stored_path(tx, "rm_folders", &folder_id.to_string()).await?
                    else {
                        return Ok(());
                    };
                    let path = child_path(scaidrive_domain::drive::parent_path(&old_path), &name);

                    tx_execute!(tx, "UPDATE rm_folders SET name = $2, path = $3, modified_at = $4 WHERE id = $1", folder_id.to_string(), name, &path, at)?;
                    move_subtree(
                        tx,
                        &share_id.to_string(),
                        &share_id.to_string(),
                        &old_path,
                        &path,
                    )
                    .await?;
                }
                FolderEvent::FolderMoved {
                    folder_id,
                    old_share_id,
                    share_id,
                    parent_id,
                    at,
                    ..
                } => {
                    let Some(old_path) =
                        stored_path(tx, "rm_folders", &folder_id.to_string()).await?
                    else {
                        return Ok(());
                    };
                    let name = old_path.rsplit('/').next().unwrap_or_default().to_owned();
                    let path = child_path(
                        &folder_path(tx, parent_id.map(|p| p.to_string())).await?,
                        &name,
                    );
                    tx_execute!(
                        tx,
                        "UPDATE rm_folders SET share_id = $2, parent_id = $3, path = $4, modified_at = $5 WHERE id = $1",
                        folder_id.to_string(),
                        share_id.to_string(),
                        parent_id.map(|p| p.to_string()),
                        &path,
                        at
                    )?;
                    move_subtree(
                        tx,
                        &old_share_id.to_string(),
                        &share_id.to_string(),
                        &old_path,
                        &path,
                    )
                    .await?;
                }
                FolderEvent::FolderDeleted {
                    folder_id,
                    share_id,
                    at,
                    ..
                } => {
                    let Some(path) = stored_path(tx, "rm_folders", &folder_id.to_string()).await?
                    else {
                        return Ok(());
                    };

                    tx_execute!(
                        tx,
                        "UPDATE rm_folders SET is_deleted = TRUE, deleted_at = $2 WHERE id = $1",
                        folder_id.to_string(),
                        at
                    )?;
                    let id = folder_id.to_string();
                    hide_subtree(tx, &share_id.to_string(), &path, Some(&id), &id).await?;
                }
                FolderEvent::FolderRestored {
                    folder_id,
                    share_id,
                    ..
                } => {
                    let Some(path) = stored_path(tx, "rm_folders", &folder_id.to_string()).await?
                    else {
                        return Ok(());
                    };
                    tx_execute!(
                        tx,
                        "UPDATE rm_folders SET is_deleted = FALSE, deleted_at = NULL WHERE id = $1",
                        folder_id.to_string()
                    )?;
                    let id = folder_id.to_string();
                    hide_subtree(tx, &share_id.to_string(), &path, None, &id).await?;
                }
                FolderEvent::FolderOwnershipTransferred {
                    folder_id,
                    new_owner,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_folders SET owner_id = $2 WHERE id = $1",
                        folder_id.to_string(),
                        new_owner.to_string()
                    )?;
                }
                FolderEvent::FolderPurged { folder_id, .. } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_folders WHERE id = $1",
                        folder_id.to_string()
                    )?;
                }
            },
            AnyEvent::File(e) => match e.clone() {
                FileEvent::FileCreated {
                    file_id,
                    tenant_id,
                    share_id,
                    folder_id,
                    name,
                    version,
                    ..
                } => {
                    let path = child_path(
                        &folder_path(tx, folder_id.map(|p| p.to_string())).await?,
                        &name,
                    );

                    let c = &version.content;
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_files (id, tenant_id, share_id, folder_id, name, path, mime_type, size, checksum_sha256, version, version_id, \
                         version_bytes, owner_id, created_by, created_at, modified_by, modified_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $13, $14) ON CONFLICT (id) DO NOTHING",
                        file_id.to_string(),
                        tenant_id.to_string(),
                        share_id.to_string(),
                        folder_id.map(|f| f.to_string()),
                        name,
                        path,
                        &c.mime_type,
                        c.size as i64,
                        &c.checksum_sha256,
                        version.number as i64,
                        c.version_id.to_string(),
                        c.size as i64,
                        version.by.to_string(),
                        version.at
                    )?;
                    insert_version(tx, &file_id.to_string(), &tenant_id.to_string(), &version)
                        .await?;
                    add_chunk_refs(tx, &tenant_id.to_string(), &c.chunks, 1, at).await?;
                }
                FileEvent::FileVersionAdded {
                    file_id, version, ..
                } => {
                    let c = &version.content;
                    tx_execute!(
                        tx,
                        "UPDATE rm_files SET mime_type = $2, size = $3, checksum_sha256 = $4, version = $5, version_id = $6, \
                         version_bytes = version_bytes + $3, modified_by = $7, modified_at = $8 WHERE id = $1",
                        file_id.to_string(),
                        &c.mime_type,
                        c.size as i64,
                        &c.checksum_sha256,
                        version.number as i64,
                        c.version_id.to_string(),
                        version.by.to_string(),
                        version.at
                    )?;
                    insert_version(tx, &file_id.to_string(), &tenant, &version).await?;
                    add_chunk_refs(tx, &tenant, &c.chunks, 1, at).await?;
                }
                FileEvent::FileRenamed {
                    file_id,
                    name,
                    by,
                    at,
                    ..
                } => {
                    let Some(old_path) = stored_path(tx, "rm_files", &file_id.to_string()).await?
                    else {
                        return Ok(());
                    };
                    let path = child_path(scaidrive_domain::drive::parent_path(&old_path), &name);
                    tx_execute!(
                        tx,
                        "UPDATE rm_files SET name = $2, path = $3, modified_by = $4, modified_at = $5 WHERE id = $1",
                        file_id.to_string(),
                        name,
                        path,
                        by.to_string(),
                        at
                    )?;
                }
                FileEvent::FileMoved {
                    file_id,
                    share_id,
                    folder_id,
                    by,
                    at,
                    ..
                } => {
                    let Some(old_path) = stored_path(tx, "rm_files", &file_id.to_string()).await?
                    else {
                        return Ok(());
                    };
                    let name = old_path.rsplit('/').next().unwrap_or_default().to_owned();
                    let path = child_path(
                        &folder_path(tx, folder_id.map(|p| p.to_string())).await?,
                        &name,
                    );
                    tx_execute!(
                        tx,
                        "UPDATE rm_files SET share_id = $2, folder_id = $3, path = $4, modified_by = $5, modified_at = $6, trashed_via = NULL WHERE id = $1",
                        file_id.to_string(),
                        share_id.to_string(),
                        folder_id.map(|f| f.to_string()),
                        path,
                        by.to_string(),
                        at
                    )?;
                }
                FileEvent::FileDeleted { file_id, at, .. } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_files SET is_deleted = TRUE, deleted_at = $2 WHERE id = $1",
                        file_id.to_string(),
                        at
                    )?;
                }
                FileEvent::FileOwnershipTransferred {
                    file_id, new_owner, ..
                } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_files SET owner_id = $2 WHERE id = $1",
                        file_id.to_string(),
                        new_owner.to_string()
                    )?;
                }
                FileEvent::FileRestored { file_id, .. } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_files SET is_deleted = FALSE, deleted_at = NULL WHERE id = $1",
                        file_id.to_string()
                    )?;
                }
                FileEvent::FilePurged {
                    file_id, chunks, ..
                } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_file_versions WHERE file_id = $1",
                        file_id.to_string()
                    )?;
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_files WHERE id = $1",
                        file_id.to_string()
                    )?;
                    add_chunk_refs(tx, &tenant, &chunks, -1, at).await?;
                }
                FileEvent::FileVersionPruned {
                    file_id,
                    number,
                    size,
                    chunks,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_file_versions WHERE file_id = $1 AND number = $2",
                        file_id.to_string(),
                        number as i64
                    )?;
                    tx_execute!(
                        tx,
                        "UPDATE rm_files SET version_bytes = version_bytes - $2 WHERE id = $1",
                        file_id.to_string(),
                        size as i64
                    )?;
                    add_chunk_refs(tx, &tenant, &chunks, -1, at).await?;
                }
            },
            AnyEvent::Upload(e) => match e.clone() {
                UploadEvent::UploadStarted {
                    upload_id,
                    plan,
                    at,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_uploads (id, tenant_id, share_id, status, file_size, last_activity, expires_at) \
                         VALUES ($1, $2, $3, 'active', $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                        upload_id.to_string(),
                        plan.tenant_id.to_string(),
                        plan.share_id.to_string(),
                        plan.file_size as i64,
                        at,
                        at + chrono::Duration::hours(scaidrive_domain::drive::upload::IDLE_EXPIRY_HOURS)
                    )?;
                }
                UploadEvent::UploadChunkReceived { upload_id, at, .. } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_uploads SET last_activity = $2, expires_at = $3 WHERE id = $1",
                        upload_id.to_string(),
                        at,
                        at + chrono::Duration::hours(
                            scaidrive_domain::drive::upload::IDLE_EXPIRY_HOURS
                        )
                    )?;
                }
                UploadEvent::UploadCompleted { upload_id, .. } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_uploads SET status = 'completed' WHERE id = $1",
                        upload_id.to_string()
                    )?;
                }
                UploadEvent::UploadAborted { upload_id, .. } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_uploads SET status = 'aborted' WHERE id = $1",
                        upload_id.to_string()
                    )?;
                }
                UploadEvent::UploadExpired { upload_id, .. } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_uploads SET status = 'expired' WHERE id = $1",
                        upload_id.to_string()
                    )?;
                }
            },
            _ => {}
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_shares",
            "rm_folders",
            "rm_files",
            "rm_file_versions",
            "rm_chunk_refs",
            "rm_uploads",
        ]
    }
}
