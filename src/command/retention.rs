//! Retention commands: the system purges what has been in the trash longer
//! than the tenant keeps it and prunes versions superseded longer ago than
//! it keeps them. Each decision is taken on the aggregates themselves (a
//! restore or a new trashing meanwhile wins), frees the quota it releases in
//! the same append, and asks the legal holds first.

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::{File, FileCommand, FileEvent};
use scaidrive_domain::drive::folder::{Folder, FolderCommand};
use scaidrive_domain::drive::share::{Share, ShareCommand};
use scaidrive_domain::drive::sibling_scope;
use scaidrive_domain::id::{FileId, FolderId, ShareId, TenantId};
use scaidrive_domain::name::name_key;
use scaidrive_domain::Aggregate;

use super::drive::{current_share, purge_file_in, purge_folder_in, PurgedSubtree};
use super::{CommandBus, CommandContext, CommandError, Committed};

/// Something retention is about to remove for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A share purged from the trash, with everything in it.
    Share(ShareId),
    /// A file purged from the trash (on its own or below a purged folder).
    File(FileId),
    /// A folder purged from the trash, with everything below it.
    Folder(FolderId),
    /// A non-current version of a file.
    Version { file: FileId, number: u64 },
}

/// Whether legal holds let retention remove `what` in `tenant`. Consulted
/// before every purge and prune. No holds exist yet (SPEC §5 "Legal holds"),
/// so everything is let through; once they do, an item under an active hold
/// answers `false` here and retention keeps it.
pub fn legal_holds_permit(tenant: TenantId, what: Removal) -> bool {
    let _ = (tenant, what);
    true
}

/// Purges a file that went to the trash at or before `cutoff`; `None` when
/// it is no longer such a file (restored, already purged) or under a hold.
pub async fn purge_trashed_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FileId,
    cutoff: DateTime<Utc>,
) -> Result<Option<(u64, Committed)>, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let f = uow.load::<File>(&id.to_string()).await?;
        let Some(tenant) = f.state.tenant_id else {
            return Ok(None);
        };
        if !f.state.trashed_before(cutoff) || !legal_holds_permit(tenant, Removal::File(id)) {
            return Ok(None);
        }
        let Some(bytes) = purge_file_in(&mut uow, id, None, ctx.now).await? else {
            return Ok(None);
        };
        Ok(Some((bytes, uow.commit().await?)))
    })
    .await
}

/// Purges a folder that went to the trash at or before `cutoff` with the
/// folders (parents before children) and files the read model has below it;
/// only items still inside the subtree go. `None` when the folder is no
/// longer such a folder or something in it is under a hold.
pub async fn purge_trashed_folder(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FolderId,
    folders_below: &[FolderId],
    files_below: &[FileId],
    cutoff: DateTime<Utc>,
) -> Result<Option<(PurgedSubtree, Committed)>, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let f = uow.load::<Folder>(&id.to_string()).await?;
        let Some(tenant) = f.state.tenant_id else {
            return Ok(None);
        };
        if !f.state.trashed_before(cutoff) {
            return Ok(None);
        }
        let held = std::iter::once(Removal::Folder(id))
            .chain(folders_below.iter().map(|f| Removal::Folder(*f)))
            .chain(files_below.iter().map(|f| Removal::File(*f)))
            .any(|r| !legal_holds_permit(tenant, r));
        if held {
            return Ok(None);
        }
        let purged = purge_folder_in(&mut uow, id, folders_below, files_below, None, true).await?;
        Ok(Some((purged, uow.commit().await?)))
    })
    .await
}

/// What pruning one file's versions removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub versions: u64,
    pub bytes: u64,
}

/// Prunes a file's non-current versions superseded at or before `cutoff`
/// (never the current one), freeing their bytes on the share's quota
/// accounts; `None` when there is nothing to prune.
pub async fn prune_versions(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FileId,
    cutoff: DateTime<Utc>,
) -> Result<Option<(Pruned, Committed)>, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let f = uow.load::<File>(&id.to_string()).await?;
        let (Some(tenant), Some(share)) = (f.state.tenant_id, f.state.share_id) else {
            return Ok(None);
        };
        if f.state.purged {
            return Ok(None);
        }
        let events: Vec<FileEvent> = f
            .state
            .decide(&FileCommand::PruneVersions {
                superseded_before: cutoff,
                at: ctx.now,
            })?
            .into_iter()
            .filter(|e| match e {
                FileEvent::FileVersionPruned { number, .. } => legal_holds_permit(
                    tenant,
                    Removal::Version {
                        file: id,
                        number: *number,
                    },
                ),
                _ => true,
            })
            .collect();
        let mut pruned = Pruned::default();
        for e in &events {
            if let FileEvent::FileVersionPruned { size, .. } = e {
                pruned.versions += 1;
                pruned.bytes += size;
            }
        }
        if pruned.versions == 0 {
            return Ok(None);
        }
        uow.emit::<File>(&id.to_string(), &events)?;
        let share = super::drive::current_share(&mut uow, share, f.state.folder_id).await?;
        super::quota::free_in(&mut uow, share, &id.to_string(), pruned.bytes, ctx.now).await?;
        Ok(Some((pruned, uow.commit().await?)))
    })
    .await
}

/// Purges a share that went to the trash at or before `cutoff`, with every
/// folder (parents before children) and file the read model has in it; only
/// items still in that share go. `None` when the share is no longer such a
/// share or something in it is under a hold.
pub async fn purge_trashed_share(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: ShareId,
    folders: &[FolderId],
    files: &[FileId],
    cutoff: DateTime<Utc>,
) -> Result<Option<(PurgedSubtree, Committed)>, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let stream = id.to_string();
        let share = uow.load::<Share>(&stream).await?.state;
        let Some(tenant) = share.tenant_id else {
            return Ok(None);
        };
        if !share.trashed_before(cutoff) {
            return Ok(None);
        }
        let held = std::iter::once(Removal::Share(id))
            .chain(folders.iter().map(|f| Removal::Folder(*f)))
            .chain(files.iter().map(|f| Removal::File(*f)))
            .any(|r| !legal_holds_permit(tenant, r));
        if held {
            return Ok(None);
        }
        let mut purged = PurgedSubtree::default();
        for fid in folders {
            let f = uow.load::<Folder>(&fid.to_string()).await?.state;
            let Some(own) = f.share_id else { continue };
            if f.purged || current_share(&mut uow, own, f.parent_id).await? != id {
                continue;
            }
            uow.release(
                sibling_scope(own, f.parent_id),
                name_key(&f.name),
                fid.to_string(),
            );
            let events = f.decide(&FolderCommand::Purge { at: ctx.now })?;
            uow.emit::<Folder>(&fid.to_string(), &events)?;
            purged.folders += 1;
        }
        for fid in files {
            let f = uow.load::<File>(&fid.to_string()).await?.state;
            let Some(own) = f.share_id else { continue };
            if f.purged || current_share(&mut uow, own, f.folder_id).await? != id {
                continue;
            }
            if let Some(bytes) = purge_file_in(&mut uow, *fid, None, ctx.now).await? {
                purged.files += 1;
                purged.bytes += bytes;
            }
        }
        let events = share.decide(&ShareCommand::Purge { at: ctx.now })?;
        uow.emit::<Share>(&stream, &events)?;
        Ok(Some((purged, uow.commit().await?)))
    })
    .await
}
