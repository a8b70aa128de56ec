//! One sync run: compare the SMB tree, the drive folder and what each side
//! held at the last run (`connector_items`), then pull, push, trash or
//! delete file by file, recording each settled path at once.
//!
//! Unchanged files (same size and mtime on SMB, same version in the drive)
//! are not read. Drive writes are ordinary ones: chunked into the tenant's
//! content-addressed store (deduplicated), charged to every quota level in
//! the same append (507 ends the run), with the connector as the service
//! account.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use futures::StreamExt;
use scaidrive_domain::connector::{
    path_selected, ConflictResolution, Connector, ConnectorCommand, RunCounts, SyncDirection,
};
use scaidrive_domain::drive::child_path;
use scaidrive_domain::drive::chunking::DEFAULT_CHUNK_SIZE;
use scaidrive_domain::drive::file::{Content, File, FileCommand};
use scaidrive_domain::id::{ConnectorId, FileId, FolderId, ShareId, TenantId, UserId, VersionId};
use scaidrive_domain::{Aggregate, DomainError};
use scaidrive_projections::db::Db;
use scaidrive_projections::{db_fetch_all, tx_execute};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::smb::{Endpoint, Smb, SmbEntry, SmbFailure};
use super::store_err;
use crate::blob::content::{store_stream, StoreContentError};
use crate::command::drive::{create_folder, trash_file, trash_folder, FileEdit, Target};
use crate::command::{quota, CommandContext, CommandError, Committed};
use crate::services::AppState;

/// Why a run stopped: an HTTP-like status and a message for the run's record.
#[derive(Debug, Clone)]
pub struct RunFailure {
    pub status: u16,
    pub message: String,
}

impl From<SmbFailure> for RunFailure {
    fn from(f: SmbFailure) -> Self {
        Self {
            status: f.status,
            message: f.message,
        }
    }
}

impl From<CommandError> for RunFailure {
    fn from(e: CommandError) -> Self {
        let status = match &e {
            CommandError::Domain(DomainError::QuotaExceeded(_)) => 507,
            CommandError::Domain(DomainError::PayloadTooLarge { .. }) => 413,
            CommandError::Domain(DomainError::NameConflict(_)) => 409,
            CommandError::Domain(DomainError::NotFound(_)) => 404,
            CommandError::Domain(DomainError::Gone(_)) => 410,
            CommandError::Domain(_) => 422,
            _ => 503,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

fn fail(status: u16, message: impl Into<String>) -> RunFailure {
    RunFailure {
        status,
        message: message.into(),
    }
}

/// What a connector needs to reach its source, from its stream.
pub fn endpoint(state: &AppState, c: &Connector) -> Result<Endpoint, RunFailure> {
    let password = state
        .secrets
        .open(&c.credentials)
        .map_err(|e| fail(500, format!("the stored password cannot be opened: {e}")))?;
    let s = &c.settings;
    Ok(Endpoint {
        host: s.server_host.clone(),
        port: s.server_port,
        share: s.share_name.clone(),
        domain: s.domain.clone(),
        username: s.username.clone(),
        password,
        base_path: s.base_path.clone(),
    })
}

/// Runs `run_id` to its end and records the outcome on the connector.
/// Runs one sync and records its outcome; `false` when the outcome could not
/// be recorded (the run stays open on its stream and is tried again).
pub async fn run(state: &AppState, id: ConnectorId, run_id: &str) -> bool {
    let mut counts = RunCounts::default();
    let outcome = sync(state, id, &mut counts).await;
    let Ok(loaded) = state.bus.load::<Connector>(&id.to_string()).await else {
        return false;
    };
    let c = loaded.state;
    let Some(tenant) = c.tenant_id else {
        return false;
    };
    let ctx = super::context(
        &tenant.to_string(),
        &id.to_string(),
        c.created_by.map(|u| u.to_string()),
    );
    if let Err(f) = &outcome {
        tracing::warn!(target: "scaidrive::connector", connector = %id, run = run_id, status = f.status, error = %f.message, "sync run failed");
    }
    let cmd = ConnectorCommand::FinishRun {
        run_id: run_id.to_owned(),
        counts,
        failure: outcome.err().map(|f| (f.status, f.message)),
        at: Utc::now(),
    };
    match crate::command::connectors::execute(&state.bus, &ctx, id, &cmd).await {
        Ok(committed) => {
            state.caught_up_to(&committed).await;
            true
        }
        Err(e) => {
            tracing::debug!(target: "scaidrive::connector", connector = %id, error = %e, "run outcome not recorded");
            false
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Item {
    path: String,
    smb_size: i64,
    smb_mtime: i64,
    drive_version_id: String,
}

#[derive(Debug, Clone)]
struct DriveFile {
    id: FileId,
    full_path: String,
    version_id: String,
    size: i64,
    hash: String,
    modified: i64,
}

async fn load_items(db: &Db, connector: &str) -> Result<HashMap<String, Item>, RunFailure> {
    let rows: Vec<Item> = db_fetch_all!(
        db,
        Item,
        "SELECT path, smb_size, smb_mtime, drive_version_id FROM connector_items WHERE connector_id = $1 AND kind = 'file'",
        connector
    )
    .map_err(|e| fail(503, format!("reading the sync state failed: {e}")))?;
    Ok(rows.into_iter().map(|r| (r.path.clone(), r)).collect())
}

async fn save_item(
    db: &Db,
    connector: &str,
    path: &str,
    smb: &SmbEntry,
    drive_id: &str,
    version_id: &str,
    hash: &str,
) -> Result<(), RunFailure> {
    let mut tx = db.begin().await.map_err(|e| fail(503, e.to_string()))?;
    tx_execute!(
        &mut tx,
        "INSERT INTO connector_items (connector_id, path, kind, smb_size, smb_mtime, drive_id, drive_version_id, hash) \
         VALUES ($1, $2, 'file', $3, $4, $5, $6, $7) ON CONFLICT (connector_id, path) DO UPDATE SET \
         smb_size = EXCLUDED.smb_size, smb_mtime = EXCLUDED.smb_mtime, drive_id = EXCLUDED.drive_id, \
         drive_version_id = EXCLUDED.drive_version_id, hash = EXCLUDED.hash",
        connector.to_owned(),
        path.to_owned(),
        smb.size as i64,
        smb.mtime,
        drive_id.to_owned(),
        version_id.to_owned(),
        hash.to_owned()
    )
    .map_err(|e| fail(503, format!("recording the sync state failed: {e}")))?;
    tx.commit().await.map_err(|e| fail(503, e.to_string()))?;
    Ok(())
}

async fn forget_item(db: &Db, connector: &str, path: &str) -> Result<(), RunFailure> {
    let mut tx = db.begin().await.map_err(|e| fail(503, e.to_string()))?;
    tx_execute!(
        &mut tx,
        "DELETE FROM connector_items WHERE connector_id = $1 AND path = $2",
        connector.to_owned(),
        path.to_owned()
    )
    .map_err(|e| fail(503, e.to_string()))?;
    tx.commit().await.map_err(|e| fail(503, e.to_string()))?;
    Ok(())
}

/// The folders both sides held at the last run.
async fn load_folders(db: &Db, connector: &str) -> Result<BTreeSet<String>, RunFailure> {
    let rows: Vec<(String,)> = db_fetch_all!(
        db,
        (String,),
        "SELECT path FROM connector_items WHERE connector_id = $1 AND kind = 'folder'",
        connector
    )
    .map_err(|e| fail(503, format!("reading the sync state failed: {e}")))?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

async fn save_folder(
    db: &Db,
    connector: &str,
    path: &str,
    drive_id: FolderId,
) -> Result<(), RunFailure> {
    let mut tx = db.begin().await.map_err(|e| fail(503, e.to_string()))?;
    tx_execute!(
        &mut tx,
        "INSERT INTO connector_items (connector_id, path, kind, drive_id) VALUES ($1, $2, 'folder', $3) \
         ON CONFLICT (connector_id, path) DO UPDATE SET kind = 'folder', drive_id = EXCLUDED.drive_id",
        connector.to_owned(),
        path.to_owned(),
        drive_id.to_string()
    )
    .map_err(|e| fail(503, format!("recording the sync state failed: {e}")))?;
    tx.commit().await.map_err(|e| fail(503, e.to_string()))?;
    Ok(())
}

/// Forgets the whole state (the connector was deleted).
pub async fn forget_all(db: &Db, connector: &str) -> Result<(), CommandError> {
    let mut tx = db.begin().await.map_err(store_err)?;
    tx_execute!(
        &mut tx,
        "DELETE FROM connector_items WHERE connector_id = $1",
        connector.to_owned()
    )
    .map_err(store_err)?;
    tx.commit().await.map_err(store_err)?;
    Ok(())
}

/// The run's fixed facts.
struct Run<'a> {
    state: &'a AppState,
    id: String,
    ctx: CommandContext,
    tenant: TenantId,
    share: ShareId,
    by: UserId,
    smb: Smb,
    /// Drive path of the connector's root ("/" or "/a/b").
    root: String,
    folders: HashMap<String, FolderId>,
    max_size: u64,
    last: Option<Committed>,
    /// Files this run moved to the drive's trash (relative paths).
    trashed: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Nothing,
    Pull,
    Push,
    TrashDrive,
    RemoveSmb,
    Forget,
    Conflict,
}

fn decide(
    dir: SyncDirection,
    smb: Option<&SmbEntry>,
    drive: Option<&DriveFile>,
    st: Option<&Item>,
) -> Action {
    let smb_changed = match (smb, st) {
        (Some(e), Some(s)) => s.smb_size != e.size as i64 || s.smb_mtime != e.mtime,
        (Some(_), None) => true,
        _ => false,
    };
    let drive_changed = match (drive, st) {
        (Some(d), Some(s)) => s.drive_version_id != d.version_id,
        (Some(_), None) => true,
        _ => false,
    };
    use Action::*;
    match dir {
        SyncDirection::Bidirectional => match (smb, drive, st) {
            (Some(_), Some(_), None) => Conflict,
            (Some(_), Some(_), Some(_)) => match (smb_changed, drive_changed) {
                (true, true) => Conflict,
                (true, false) => Pull,
                (false, true) => Push,
                (false, false) => Nothing,
            },
            (Some(_), None, None) => Pull,
            (Some(_), None, Some(_)) => {
                if smb_changed {
                    Pull
                } else {
                    RemoveSmb
                }
            }
            (None, Some(_), None) => Push,
            (None, Some(_), Some(_)) => {
                if drive_changed {
                    Push
                } else {
                    TrashDrive
                }
            }
            (None, None, Some(_)) => Forget,
            (None, None, None) => Nothing,
        },
        SyncDirection::SmbToScaidrive => match (smb, drive, st) {
            (Some(_), Some(_), None) => Conflict,
            (Some(_), Some(_), Some(_)) if smb_changed => Pull,
            (Some(_), Some(_), Some(_)) => Nothing,
            (Some(_), None, _) => Pull,
            (None, Some(_), Some(_)) => TrashDrive,
            (None, _, Some(_)) => Forget,
            _ => Nothing,
        },
        SyncDirection::ScaidriveToSmb => match (smb, drive, st) {
            (Some(_), Some(_), None) => Conflict,
            (Some(_), Some(_), Some(_)) if drive_changed => Push,
            (Some(_), Some(_), Some(_)) => Nothing,
            (None, Some(_), _) => Push,
            (Some(_), None, Some(_)) => RemoveSmb,
            (_, None, Some(_)) => Forget,
            _ => Nothing,
        },
    }
}

/// A name for the SMB side's copy kept beside the drive's (KEEP_BOTH).
fn conflict_copy_name(name: &str, at: chrono::DateTime<Utc>) -> String {
    let stamp = at.format("%Y-%m-%d %H%M%S");
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem} (SMB conflict {stamp}).{ext}"),
        _ => format!("{name} (SMB conflict {stamp})"),
    }
}

async fn sync(state: &AppState, id: ConnectorId, counts: &mut RunCounts) -> Result<(), RunFailure> {
    let loaded = state.bus.load::<Connector>(&id.to_string()).await?;
    let c = loaded.state;
    if !c.is_live() {
        return Err(fail(404, "the connector was deleted"));
    }
    let (Some(tenant), Some(share), Some(by)) = (c.tenant_id, c.share_id, c.created_by) else {
        return Err(fail(404, "the connector is incomplete"));
    };
    let s = c.settings.clone();
    let ep = endpoint(state, &c)?;
    let smb = Smb::connect(&ep).await?;
    let ctx = super::context(&tenant.to_string(), &id.to_string(), Some(by.to_string()));

    let share_row = scaidrive_projections::drive_queries::share(
        &state.db,
        &tenant.to_string(),
        &share.to_string(),
    )
    .await
    .map_err(|e| fail(503, e.to_string()))?;
    match share_row {
        Some(r) if !r.is_deleted => {}
        _ => return Err(fail(410, "the target share is gone or in the trash")),
    }
    let max_size = scaidrive_projections::tenancy::tenant(&state.db, &tenant.to_string())
        .await
        .map_err(|e| fail(503, e.to_string()))?
        .map(|t| t.settings.0.max_file_size_bytes)
        .unwrap_or(5_368_709_120);

    let root = if s.target_path.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}", s.target_path)
    };
    let (folders, files) =
        scaidrive_projections::drive_queries::subtree(&state.db, &share.to_string(), "")
            .await
            .map_err(|e| fail(503, e.to_string()))?;
    let folder_ids: HashMap<String, FolderId> = folders
        .iter()
        .filter(|f| !f.is_deleted && f.trashed_via.is_none())
        .filter_map(|f| f.id.parse().ok().map(|id| (f.path.clone(), id)))
        .collect();
    let prefix = if root == "/" {
        "/".to_owned()
    } else {
        format!("{root}/")
    };
    let selected = |p: &str| path_selected(p, &s.include_patterns, &s.exclude_patterns);
    let mut drive: BTreeMap<String, DriveFile> = BTreeMap::new();
    // A file inside a trashed folder is in the trash too.
    for f in files
        .iter()
        .filter(|f| !f.is_deleted && f.trashed_via.is_none())
    {
        let Some(rel) = f.path.strip_prefix(&prefix) else {
            continue;
        };
        if !selected(rel) {
            continue;
        }
        let Ok(fid) = f.id.parse() else { continue };
        drive.insert(
            rel.to_owned(),
            DriveFile {
                id: fid,
                full_path: f.path.clone(),
                version_id: f.version_id.clone(),
                size: f.size,
                hash: f.checksum_sha256.clone(),
                modified: f.modified_at.timestamp(),
            },
        );
    }
    let (smb_dirs, smb_tree): (BTreeMap<String, SmbEntry>, BTreeMap<String, SmbEntry>) = smb
        .walk()
        .await?
        .into_iter()
        .filter(|(p, _)| selected(p))
        .partition(|(_, e)| e.is_dir);
    let smb_dirs: BTreeSet<String> = smb_dirs.into_keys().collect();
    let drive_dirs: BTreeMap<String, (FolderId, String)> = folders
        .iter()
        .filter(|f| !f.is_deleted && f.trashed_via.is_none())
        .filter_map(|f| {
            let rel = f.path.strip_prefix(&prefix)?;
            let id = f.id.parse().ok()?;
            selected(rel).then(|| (rel.to_owned(), (id, f.path.clone())))
        })
        .collect();
    // Every live file of the drive below the root, selected or not: a
    // folder that still holds one is never removed.
    let drive_files: Vec<String> = files
        .iter()
        .filter(|f| !f.is_deleted && f.trashed_via.is_none())
        .filter_map(|f| f.path.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    let items = load_items(&state.db, &id.to_string()).await?;
    let known_dirs = load_folders(&state.db, &id.to_string()).await?;

    let mut run = Run {
        state,
        id: id.to_string(),
        ctx,
        tenant,
        share,
        by,
        smb,
        root,
        folders: folder_ids,
        max_size,
        last: None,
        trashed: BTreeSet::new(),
    };
    let paths: BTreeSet<String> = smb_tree
        .keys()
        .chain(drive.keys())
        .chain(items.keys())
        .cloned()
        .collect();
    let result = async {
        for path in &paths {
            let (e, d, st) = (smb_tree.get(path), drive.get(path), items.get(path));
            let action = decide(s.sync_direction, e, d, st);
            run.apply(
                path,
                action,
                s.conflict_resolution,
                s.sync_direction,
                e,
                d,
                counts,
            )
            .await?;
        }
        run.mirror_folders(
            s.sync_direction,
            &smb_dirs,
            &drive_dirs,
            &known_dirs,
            &drive_files,
        )
        .await
    }
    .await;
    if let Some(c) = &run.last {
        state.caught_up_to(c).await;
    }
    result
}

impl Run<'_> {
    /// Folders, after the files: each side's folders appear on the other
    /// (files bring their own folders along; this is for the ones that hold
    /// none), and a folder removed on one side since the last run is
    /// removed on the other once it is empty, so a folder deleted on
    /// purpose does not come back. One-way directions keep the target like
    /// the source.
    async fn mirror_folders(
        &mut self,
        dir: SyncDirection,
        smb_dirs: &BTreeSet<String>,
        drive_dirs: &BTreeMap<String, (FolderId, String)>,
        known: &BTreeSet<String>,
        drive_files: &[String],
    ) -> Result<(), RunFailure> {
        let db = self.state.db.clone();
        let id = self.id.clone();
        let pull = dir != SyncDirection::ScaidriveToSmb;
        let push = dir != SyncDirection::SmbToScaidrive;
        let all: BTreeSet<&String> = smb_dirs
            .iter()
            .chain(drive_dirs.keys())
            .chain(known.iter())
            .collect();
        let mut from_drive = Vec::new();
        let mut from_smb = Vec::new();
        // Parents sort before their children: creating follows that order.
        for rel in all {
            let (on_smb, in_drive, was) = (
                smb_dirs.contains(rel),
                drive_dirs.get(rel),
                known.contains(rel),
            );
            match (on_smb, in_drive) {
                (true, Some((fid, _))) if !was => save_folder(&db, &id, rel, *fid).await?,
                (true, Some(_)) => {}
                // Removed in the drive since the last run.
                (true, None) if was && push => from_smb.push(rel.clone()),
                (true, None) if pull => {
                    let path = self.drive_path(rel);
                    if let Some(fid) = self.folder(&path).await? {
                        save_folder(&db, &id, rel, fid).await?;
                    }
                }
                // Removed on the SMB side since the last run.
                (false, Some((fid, path))) if was && pull => {
                    from_drive.push((rel.clone(), *fid, path.clone()))
                }
                (false, Some((fid, _))) if push => {
                    self.smb.mkdirs(rel).await?;
                    save_folder(&db, &id, rel, *fid).await?;
                }
                (false, None) if was => forget_item(&db, &id, rel).await?,
                _ => {}
            }
        }
        // Deepest first: a folder is empty only once its subfolders are gone.
        for rel in from_smb.iter().rev() {
            // The file pass may have pulled something into it again.
            if self.folders.contains_key(&self.drive_path(rel)) {
                continue;
            }
            if self.smb.remove_dir(rel).await? {
                forget_item(&db, &id, rel).await?;
            }
        }
        // Only the topmost: the trash takes a folder with everything in it.
        let gone: BTreeSet<&str> = from_drive.iter().map(|(r, _, _)| r.as_str()).collect();
        for (rel, fid, path) in &from_drive {
            let under = format!("{rel}/");
            let holds_files = drive_files
                .iter()
                .any(|f| f.starts_with(&under) && !self.trashed.contains(f));
            let below_another = gone.iter().any(|g| rel.starts_with(&format!("{g}/")));
            if holds_files || below_another {
                continue;
            }
            // A push of this run may have made it again on the SMB side.
            if self.smb.stat(rel).await.is_ok() {
                continue;
            }
            let committed = trash_folder(&self.state.bus, &self.ctx, *fid, false, path).await?;
            self.last = Some(committed);
            for r in gone.iter().filter(|g| **g == rel || g.starts_with(&under)) {
                forget_item(&db, &id, r).await?;
            }
        }
        Ok(())
    }

    fn drive_path(&self, rel: &str) -> String {
        if self.root == "/" {
            format!("/{rel}")
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    fn parent_of(path: &str) -> (String, String) {
        match path.rsplit_once('/') {
            Some(("", name)) => ("/".to_owned(), name.to_owned()),
            Some((parent, name)) => (parent.to_owned(), name.to_owned()),
            None => ("/".to_owned(), path.to_owned()),
        }
    }

    /// The drive folder at `path` ("/" = the share's root), created with
    /// its missing parents.
    async fn folder(&mut self, path: &str) -> Result<Option<FolderId>, RunFailure> {
        if path == "/" || path.is_empty() {
            return Ok(None);
        }
        if let Some(id) = self.folders.get(path) {
            return Ok(Some(*id));
        }
        let (parent, name) = Self::parent_of(path);
        let parent_id = Box::pin(self.folder(&parent)).await?;
        let (fid, committed) = create_folder(
            &self.state.bus,
            &self.ctx,
            self.tenant,
            Target {
                share_id: self.share,
                folder_id: parent_id,
                parent_path: parent.clone(),
            },
            &name,
            self.by,
        )
        .await?;
        self.last = Some(committed);
        self.folders.insert(path.to_owned(), fid);
        Ok(Some(fid))
    }

    /// Reads an SMB file into the chunk store.
    async fn read_in(&self, rel: &str) -> Result<crate::blob::content::Stored, RunFailure> {
        let rx = self.smb.read(rel);
        let stream =
            ReceiverStream::new(rx).map(|r| r.map_err(|f| format!("{}|{}", f.status, f.message)));
        let stored = store_stream(
            &self.state.blob,
            &self.tenant.to_string(),
            Box::pin(stream),
            DEFAULT_CHUNK_SIZE,
            self.max_size,
        )
        .await
        .map_err(|e| match e {
            StoreContentError::TooLarge(limit) => fail(
                413,
                format!("{rel} exceeds the tenant limit of {limit} bytes"),
            ),
            StoreContentError::Body(m) => match m.split_once('|') {
                Some((s, msg)) => fail(s.parse().unwrap_or(502), msg.to_owned()),
                None => fail(502, m),
            },
            StoreContentError::Blob(b) => fail(502, format!("the blob store failed: {b}")),
        })?;
        self.state.bus.metrics().upload_bytes(stored.size);
        self.state
            .bus
            .metrics()
            .chunks_deduplicated(stored.deduplicated);
        Ok(stored)
    }

    fn content(rel: &str, stored: crate::blob::content::Stored) -> Content {
        let _ = rel;
        Content {
            version_id: VersionId::from_uuid(Uuid::now_v7()),
            size: stored.size,
            checksum_sha256: stored.sha256,
            mime_type: "application/octet-stream".to_owned(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunks: stored.chunks,
        }
    }

    /// Imports the SMB file at `rel` as a new drive file at `drive_path`.
    async fn create_in_drive(
        &mut self,
        rel: &str,
        drive_path: &str,
    ) -> Result<(FileId, Content), RunFailure> {
        let (parent, name) = Self::parent_of(drive_path);
        let folder_id = self.folder(&parent).await?;
        let stored = self.read_in(rel).await?;
        let content = Self::content(rel, stored);
        let file_id = FileId::from_uuid(Uuid::now_v7());
        let accounts = quota::enforcing_for_share(&self.state.bus, self.share).await?;
        let job = quota::Job {
            ctx: self.ctx.clone(),
            reservation_id: content.version_id.to_string(),
            bytes: content.size,
            write: quota::Write::CreateFile {
                tenant_id: self.tenant,
                target: Target {
                    share_id: self.share,
                    folder_id,
                    parent_path: parent,
                },
                name: scaidrive_domain::name::normalize(&name),
                content: content.clone(),
                by: self.by,
                file_id,
            },
            accounts,
        };
        let (committed, _) = quota::submit(&self.state.bus, &self.state.db, job).await?;
        self.last = Some(committed);
        Ok((file_id, content))
    }

    /// Imports the SMB file at `rel` as a new version of `file`.
    async fn version_in_drive(&mut self, rel: &str, file: FileId) -> Result<Content, RunFailure> {
        let stored = self.read_in(rel).await?;
        let content = Self::content(rel, stored);
        let accounts = quota::enforcing_for_share(&self.state.bus, self.share).await?;
        let (bus, db, ctx, by) = (&self.state.bus, &self.state.db, &self.ctx, self.by);
        let committed = bus
            .retrying(|| async {
                let mut uow = bus.begin(ctx);
                let f = uow.load::<File>(&file.to_string()).await?;
                let base = f.state.current().map(|v| v.content.version_id);
                let events = f.state.decide(&FileCommand::AddVersion {
                    base_version_id: base,
                    content: content.clone(),
                    by,
                    at: ctx.now,
                })?;
                uow.emit::<File>(&file.to_string(), &events)?;
                quota::charge_in(
                    &mut uow,
                    db,
                    &accounts,
                    &content.version_id.to_string(),
                    content.size,
                )
                .await?;
                uow.commit().await
            })
            .await?;
        self.last = Some(committed);
        Ok(content)
    }

    /// Writes the drive file's current content to the SMB file at `rel`.
    async fn push(&mut self, rel: &str, file: FileId) -> Result<(SmbEntry, Content), RunFailure> {
        let f = self.state.bus.load::<File>(&file.to_string()).await?;
        let content = f
            .state
            .current()
            .map(|v| v.content.clone())
            .ok_or_else(|| fail(404, format!("{rel} has no content")))?;
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.smb.mkdirs(parent).await?;
        }
        let (tx, rx) = mpsc::channel(2);
        let blob = self.state.blob.clone();
        let tenant = self.tenant.to_string();
        let chunks = content.chunks.clone();
        let feeder = tokio::spawn(async move {
            for c in chunks {
                let piece = blob
                    .get_chunk(&tenant, &c.hash)
                    .await
                    .map_err(|e| SmbFailure::new(502, format!("the blob store failed: {e}")));
                let stop = piece.is_err();
                if tx.send(piece).await.is_err() || stop {
                    return;
                }
            }
        });
        let written = self.smb.write(rel, rx).await;
        feeder.abort();
        Ok((written?, content))
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &mut self,
        rel: &str,
        action: Action,
        resolution: ConflictResolution,
        dir: SyncDirection,
        smb: Option<&SmbEntry>,
        drive: Option<&DriveFile>,
        counts: &mut RunCounts,
    ) -> Result<(), RunFailure> {
        let db = self.state.db.clone();
        let id = self.id.clone();
        match action {
            Action::Nothing => {}
            Action::Forget => forget_item(&db, &id, rel).await?,
            Action::Pull => {
                let e = smb.ok_or_else(|| fail(500, "pull without a source"))?;
                let content = match drive {
                    Some(d) => {
                        let c = self.version_in_drive(rel, d.id).await?;
                        counts.files_updated += 1;
                        save_item(
                            &db,
                            &id,
                            rel,
                            e,
                            &d.id.to_string(),
                            &c.version_id.to_string(),
                            &c.checksum_sha256,
                        )
                        .await?;
                        c
                    }
                    None => {
                        let path = self.drive_path(rel);
                        let (fid, c) = self.create_in_drive(rel, &path).await?;
                        counts.files_created += 1;
                        save_item(
                            &db,
                            &id,
                            rel,
                            e,
                            &fid.to_string(),
                            &c.version_id.to_string(),
                            &c.checksum_sha256,
                        )
                        .await?;
                        c
                    }
                };
                counts.bytes_transferred += content.size as i64;
            }
            Action::Push => {
                let d = drive.ok_or_else(|| fail(500, "push without a source"))?;
                let (entry, content) = self.push(rel, d.id).await?;
                if smb.is_some() {
                    counts.files_updated += 1;
                } else {
                    counts.files_created += 1;
                }
                counts.bytes_transferred += content.size as i64;
                save_item(
                    &db,
                    &id,
                    rel,
                    &entry,
                    &d.id.to_string(),
                    &content.version_id.to_string(),
                    &content.checksum_sha256,
                )
                .await?;
            }
            Action::TrashDrive => {
                if let Some(d) = drive {
                    let committed = trash_file(
                        &self.state.bus,
                        &self.ctx,
                        FileEdit {
                            id: d.id,
                            by: self.by,
                            current_path: &d.full_path,
                            base: None,
                        },
                        false,
                    )
                    .await?;
                    self.last = Some(committed);
                    counts.files_deleted += 1;
                    self.trashed.insert(rel.to_owned());
                }
                forget_item(&db, &id, rel).await?;
            }
            Action::RemoveSmb => {
                self.smb.remove(rel).await?;
                counts.files_deleted += 1;
                forget_item(&db, &id, rel).await?;
            }
            Action::Conflict => {
                let (Some(e), Some(d)) = (smb, drive) else {
                    return Ok(());
                };
                // Same bytes on both sides (a first run over copies): only
                // remember them.
                if e.size as i64 == d.size && self.smb_hash(rel).await? == d.hash {
                    save_item(&db, &id, rel, e, &d.id.to_string(), &d.version_id, &d.hash).await?;
                    return Ok(());
                }
                let winner = match dir {
                    SyncDirection::SmbToScaidrive => ConflictResolution::ClientWins,
                    SyncDirection::ScaidriveToSmb => ConflictResolution::ServerWins,
                    SyncDirection::Bidirectional => {
                        counts.conflicts += 1;
                        match resolution {
                            ConflictResolution::LastWriterWins if e.mtime > d.modified => {
                                ConflictResolution::ClientWins
                            }
                            ConflictResolution::LastWriterWins => ConflictResolution::ServerWins,
                            other => other,
                        }
                    }
                };
                match winner {
                    ConflictResolution::ClientWins => {
                        Box::pin(self.apply(rel, Action::Pull, resolution, dir, smb, drive, counts))
                            .await?
                    }
                    ConflictResolution::ServerWins => {
                        Box::pin(self.apply(rel, Action::Push, resolution, dir, smb, drive, counts))
                            .await?
                    }
                    ConflictResolution::KeepBoth => {
                        let (parent, name) = Self::parent_of(&d.full_path);
                        let copy = child_path(&parent, &conflict_copy_name(&name, Utc::now()));
                        let (_, c) = self.create_in_drive(rel, &copy).await?;
                        counts.files_created += 1;
                        counts.bytes_transferred += c.size as i64;
                        Box::pin(self.apply(rel, Action::Push, resolution, dir, smb, drive, counts))
                            .await?
                    }
                    // MANUAL (and anything else): both sides stay as they are
                    // until someone changes one of them to match.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn smb_hash(&self, rel: &str) -> Result<String, RunFailure> {
        let mut rx = self.smb.read(rel);
        let mut h = Sha256::new();
        while let Some(piece) = rx.recv().await {
            h.update(&piece?);
        }
        Ok(hex::encode(h.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidirectional_decisions() {
        let e = SmbEntry {
            is_dir: false,
            size: 3,
            mtime: 10,
        };
        let d = DriveFile {
            id: FileId::from_uuid(Uuid::now_v7()),
            full_path: "/a".into(),
            version_id: "v1".into(),
            size: 3,
            hash: "h".into(),
            modified: 10,
        };
        let st = Item {
            path: "a".into(),
            smb_size: 3,
            smb_mtime: 10,
            drive_version_id: "v1".into(),
        };
        let b = SyncDirection::Bidirectional;
        assert_eq!(decide(b, Some(&e), Some(&d), Some(&st)), Action::Nothing);
        assert_eq!(decide(b, Some(&e), None, None), Action::Pull);
        assert_eq!(decide(b, None, Some(&d), None), Action::Push);
        assert_eq!(decide(b, None, Some(&d), Some(&st)), Action::TrashDrive);
        assert_eq!(decide(b, Some(&e), None, Some(&st)), Action::RemoveSmb);
        let mut changed = e.clone();
        changed.mtime = 11;
        let mut d2 = d.clone();
        d2.version_id = "v2".into();
        assert_eq!(
            decide(b, Some(&changed), Some(&d2), Some(&st)),
            Action::Conflict
        );
        assert_eq!(decide(b, Some(&changed), Some(&d), Some(&st)), Action::Pull);
        assert_eq!(decide(b, Some(&e), Some(&d2), Some(&st)), Action::Push);
        assert_eq!(
            decide(
                SyncDirection::SmbToScaidrive,
                Some(&e),
                Some(&d2),
                Some(&st)
            ),
            Action::Nothing
        );
    }
}
