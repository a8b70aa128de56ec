//! Drive commands that span several streams or need facts from outside one
//! aggregate: paths from parents, sibling-name claims, subtree operations.

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::{Content, File, FileCommand};
use scaidrive_domain::drive::folder::{Folder, FolderCommand};
use scaidrive_domain::drive::{child_path, parent_path, sibling_scope};
use scaidrive_domain::id::{FileId, FolderId, ShareId, TenantId, UserId, VersionId};
use scaidrive_domain::name::{name_key, normalize, validate_item_name};
use scaidrive_domain::{Aggregate, DomainError};
use uuid::Uuid;

use super::write::resolve_parent;
pub use super::write::{create_file_in, Target};
use super::{CommandBus, CommandContext, CommandError, Committed, UnitOfWork};

fn checked_name(name: &str) -> Result<String, CommandError> {
    validate_item_name(name).map_err(|m| DomainError::invalid("name", m))?;
    Ok(normalize(name))
}

pub async fn create_folder(
    bus: &CommandBus,
    ctx: &CommandContext,
    tenant_id: TenantId,
    target: Target,
    name: &str,
    by: UserId,
) -> Result<(FolderId, Committed), CommandError> {
    let name = checked_name(name)?;
    let folder_id = FolderId::from_uuid(Uuid::now_v7());
    let committed = bus
        .retrying(|| async {
            let mut uow = bus.begin(ctx);
            let path = child_path(&resolve_parent(&mut uow, &target).await?, &name);
            let events = Folder::default().decide(&FolderCommand::Create {
                folder_id,
                tenant_id,
                share_id: target.share_id,
                parent_id: target.folder_id,
                name: name.clone(),
                path,
                by,
                at: ctx.now,
            })?;
            uow.emit::<Folder>(&folder_id.to_string(), &events)?;
            uow.claim(
                sibling_scope(target.share_id, target.folder_id),
                name_key(&name),
                folder_id.to_string(),
            );
            uow.commit().await
        })
        .await?;
    Ok((folder_id, committed))
}

pub async fn rename_folder(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FolderId,
    name: &str,
    current_path: &str,
) -> Result<Committed, CommandError> {
    let name = checked_name(name)?;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let mut f = uow.load::<Folder>(&id.to_string()).await?;
        f.state.path = current_path.to_owned();
        let share = f.state.share_id.ok_or(DomainError::NotFound("folder"))?;
        let new_path = child_path(parent_path(&f.state.path), &name);
        let events = f.state.decide(&FolderCommand::Rename {
            name: name.clone(),
            new_path,
            at: ctx.now,
        })?;
        if !events.is_empty() {
            let scope = sibling_scope(share, f.state.parent_id);
            uow.release(scope.clone(), name_key(&f.state.name), id.to_string());
            uow.claim(scope, name_key(&name), id.to_string());
        }
        uow.emit::<Folder>(&id.to_string(), &events)?;
        uow.commit().await
    })
    .await
}

/// Moves a folder with its subtree. `folders_below` (parents before
/// children) and `files_below` are what the read model has below it; when
/// the move changes share, the version bytes of the files still inside the
/// subtree (read from their own streams, which join the append's
/// expectations) move from the source share's quota accounts to the
/// target's, in the move's append (over a limit → 507).
pub async fn move_folder(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FolderId,
    target: Target,
    current_path: &str,
    folders_below: &[FolderId],
    files_below: &[FileId],
) -> Result<Committed, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let mut f = uow.load::<Folder>(&id.to_string()).await?;
        f.state.path = current_path.to_owned();
        let own_share = f.state.share_id.ok_or(DomainError::NotFound("folder"))?;
        let share = current_share(&mut uow, own_share, f.state.parent_id).await?;
        let target_ancestors = ancestors(&mut uow, target.folder_id, id).await?;
        if target_ancestors.contains(&id) {
            return Err(DomainError::InvalidTransition(
                "cannot move a folder into itself or its own subtree".into(),
            )
            .into());
        }
        let new_path = child_path(&resolve_parent(&mut uow, &target).await?, &f.state.name);
        let events = f.state.decide(&FolderCommand::Move {
            share_id: target.share_id,
            parent_id: target.folder_id,
            new_path,
            target_ancestors,
            at: ctx.now,
        })?;
        if !events.is_empty() {
            let key = name_key(&f.state.name);
            uow.release(
                sibling_scope(own_share, f.state.parent_id),
                key.clone(),
                id.to_string(),
            );
            uow.claim(
                sibling_scope(target.share_id, target.folder_id),
                key,
                id.to_string(),
            );
            if share != target.share_id {
                let bytes = subtree_bytes(&mut uow, id, folders_below, files_below).await?;
                super::quota::transfer_in(&mut uow, share, target.share_id, &id.to_string(), bytes)
                    .await?;
            }
        }
        uow.emit::<Folder>(&id.to_string(), &events)?;
        uow.commit().await
    })
    .await
}

/// Version bytes of the files below folder `id` that are still inside its
/// subtree, each read from its own stream (joining the append's expectations,
/// so a version added meanwhile makes the decision be taken again).
async fn subtree_bytes(
    uow: &mut UnitOfWork<'_>,
    id: FolderId,
    folders_below: &[FolderId],
    files_below: &[FileId],
) -> Result<u64, CommandError> {
    let mut inside = vec![id];
    for fid in folders_below {
        let f = uow.load::<Folder>(&fid.to_string()).await?.state;
        if !f.purged && f.parent_id.is_some_and(|p| inside.contains(&p)) {
            inside.push(*fid);
        }
    }
    let mut bytes = 0;
    for fid in files_below {
        let f = uow.load::<File>(&fid.to_string()).await?.state;
        if !f.purged && f.folder_id.is_some_and(|p| inside.contains(&p)) {
            bytes += f.version_bytes();
        }
    }
    Ok(bytes)
}

/// The share an item in `folder` (or at the root of `own`) is in now. A
/// folder moved to another share takes its subtree along, but only the moved
/// folder's own stream records that: the items below keep the old share in
/// their state. The root-most ancestor's share is always current (a move
/// records the share on the folder moved), so that one wins. Every ancestor
/// read joins the append's expectations.
pub(crate) async fn current_share(
    uow: &mut UnitOfWork<'_>,
    own: ShareId,
    folder: Option<FolderId>,
) -> Result<ShareId, CommandError> {
    let mut share = own;
    let mut cur = folder;
    let mut seen = 0;
    while let Some(f) = cur {
        seen += 1;
        if seen > MAX_DEPTH {
            return Err(DomainError::InvalidTransition(
                "the folder's ancestry does not end at its share root".into(),
            )
            .into());
        }
        let state = uow.load::<Folder>(&f.to_string()).await?.state;
        if let Some(s) = state.share_id {
            share = s;
        }
        cur = state.parent_id;
    }
    Ok(share)
}

/// Deeper than any folder tree a client can build; a chain longer than this
/// is refused rather than walked further.
const MAX_DEPTH: usize = 10_000;

/// The folder `start` and its ancestors, nearest first, up to the share root
/// or to `moving` (a cycle the move would close), read from the folders' own
/// streams. Each one read joins the append's expectations: a concurrent move
/// of any of them makes this decision conflict and be taken again on the new
/// state, so two crossing moves (A into B, B into A) cannot both pass the
/// check, which a read model a moment behind would let them do.
async fn ancestors(
    uow: &mut UnitOfWork<'_>,
    start: Option<FolderId>,
    moving: FolderId,
) -> Result<Vec<FolderId>, CommandError> {
    let mut chain = Vec::new();
    let mut cur = start;
    while let Some(f) = cur {
        if chain.contains(&f) || chain.len() >= MAX_DEPTH {
            return Err(DomainError::InvalidTransition(
                "the target folder's ancestry does not end at its share root".into(),
            )
            .into());
        }
        chain.push(f);
        if f == moving {
            break;
        }
        cur = uow.load::<Folder>(&f.to_string()).await?.state.parent_id;
    }
    Ok(chain)
}

/// Soft delete (releases the name) or restore (claims it again).
pub async fn trash_folder(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FolderId,
    restore: bool,
    current_path: &str,
) -> Result<Committed, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let mut f = uow.load::<Folder>(&id.to_string()).await?;
        f.state.path = current_path.to_owned();
        let share = f.state.share_id.ok_or(DomainError::NotFound("folder"))?;
        let cmd = if restore {
            FolderCommand::Restore { at: ctx.now }
        } else {
            FolderCommand::Delete { at: ctx.now }
        };
        let events = f.state.decide(&cmd)?;
        let scope = sibling_scope(share, f.state.parent_id);
        if restore {
            if let Some(p) = f.state.parent_id {
                resolve_parent(
                    &mut uow,
                    &Target {
                        share_id: share,
                        folder_id: Some(p),
                        parent_path: String::new(),
                    },
                )
                .await?;
            }
            uow.claim(scope, name_key(&f.state.name), id.to_string());
        } else {
            uow.release(scope, name_key(&f.state.name), id.to_string());
        }
        uow.emit::<Folder>(&id.to_string(), &events)?;
        uow.commit().await
    })
    .await
}

/// Permanently deletes a folder, every folder below it and every file below
/// it (file purges drop chunk references and free quota).
pub async fn purge_folder(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FolderId,
    folders_below: &[FolderId],
    files_below: &[FileId],
    by: UserId,
) -> Result<Committed, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        purge_folder_in(&mut uow, id, folders_below, files_below, Some(by), false).await?;
        uow.commit().await
    })
    .await
}

/// What a subtree purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedSubtree {
    pub folders: u64,
    pub files: u64,
    /// Version bytes of the purged files (freed on the quota accounts).
    pub bytes: u64,
}

/// Stages the purge of a folder and what lies below it. With `contained`,
/// an item is purged only if it still sits in a folder of the purged set
/// (the lists come from the read model, which may not have seen a move out
/// of the subtree yet); every item read joins the append's expectations.
pub(crate) async fn purge_folder_in(
    uow: &mut UnitOfWork<'_>,
    id: FolderId,
    folders_below: &[FolderId],
    files_below: &[FileId],
    by: Option<UserId>,
    contained: bool,
) -> Result<PurgedSubtree, CommandError> {
    let now = uow.context().now;
    let mut purged = PurgedSubtree::default();
    let mut inside = vec![id];
    for fid in std::iter::once(&id).chain(folders_below.iter()) {
        let f = uow.load::<Folder>(&fid.to_string()).await?;
        if f.state.id.is_none() || f.state.purged {
            continue;
        }
        if contained && *fid != id && !f.state.parent_id.is_some_and(|p| inside.contains(&p)) {
            continue;
        }
        inside.push(*fid);
        if let Some(share) = f.state.share_id {
            uow.release(
                sibling_scope(share, f.state.parent_id),
                name_key(&f.state.name),
                fid.to_string(),
            );
        }
        let events = f.state.decide(&FolderCommand::Purge { at: now })?;
        uow.emit::<Folder>(&fid.to_string(), &events)?;
        purged.folders += 1;
    }
    for file_id in files_below {
        if contained {
            let f = uow.load::<File>(&file_id.to_string()).await?;
            if !f.state.folder_id.is_some_and(|p| inside.contains(&p)) {
                continue;
            }
        }
        if let Some(bytes) = purge_file_in(uow, *file_id, by, now).await? {
            purged.files += 1;
            purged.bytes += bytes;
        }
    }
    Ok(purged)
}

/// Stages a file's purge (name release, chunk references, quota freed);
/// answers the version bytes freed, or `None` when it is already gone.
pub(crate) async fn purge_file_in(
    uow: &mut UnitOfWork<'_>,
    id: FileId,
    by: Option<UserId>,
    at: DateTime<Utc>,
) -> Result<Option<u64>, CommandError> {
    let f = uow.load::<File>(&id.to_string()).await?;
    if f.state.id.is_none() || f.state.purged {
        return Ok(None);
    }
    if let Some(share) = f.state.share_id {
        uow.release(
            sibling_scope(share, f.state.folder_id),
            name_key(&f.state.name),
            id.to_string(),
        );
    }
    let events = f.state.decide(&FileCommand::Purge { by, at })?;
    uow.emit::<File>(&id.to_string(), &events)?;
    let bytes = f.state.version_bytes();
    if let Some(share) = f.state.share_id {
        let share = current_share(uow, share, f.state.folder_id).await?;
        super::quota::free_in(uow, share, &id.to_string(), bytes, at).await?;
    }
    Ok(Some(bytes))
}

/// Creates a file from content already in the blob store.
#[allow(clippy::too_many_arguments)]
pub async fn create_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    tenant_id: TenantId,
    target: Target,
    name: &str,
    content: Content,
    by: UserId,
    file_id: FileId,
) -> Result<Committed, CommandError> {
    let name = checked_name(name)?;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        create_file_in(
            &mut uow,
            tenant_id,
            target.clone(),
            &name,
            content.clone(),
            by,
            file_id,
        )
        .await?;
        uow.commit().await
    })
    .await
}

/// Which file an edit is on, by whom, where the read model has it, and
/// (for sync clients) the version the edit was based on.
#[derive(Debug, Clone, Copy)]
pub struct FileEdit<'a> {
    pub id: FileId,
    pub by: UserId,
    pub current_path: &'a str,
    /// Checked inside the append's unit of work: a version written in
    /// between makes the edit fail with `VersionMismatch`.
    pub base: Option<VersionId>,
}

/// Loads the file into the unit of work and checks the edit's base version.
async fn load_for_edit(
    uow: &mut UnitOfWork<'_>,
    edit: &FileEdit<'_>,
) -> Result<crate::command::Loaded<File>, CommandError> {
    let mut f = uow.load::<File>(&edit.id.to_string()).await?;
    f.state.path = edit.current_path.to_owned();
    if let Some(base) = edit.base {
        let current = f.state.current().map(|v| v.content.version_id);
        if current != Some(base) {
            return Err(DomainError::VersionMismatch {
                expected: base.to_string(),
                actual: current.map(|c| c.to_string()).unwrap_or_default(),
            }
            .into());
        }
    }
    Ok(f)
}

pub async fn rename_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    edit: FileEdit<'_>,
    name: &str,
) -> Result<Committed, CommandError> {
    let (id, by) = (edit.id, edit.by);
    let name = checked_name(name)?;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let f = load_for_edit(&mut uow, &edit).await?;
        let share = f.state.share_id.ok_or(DomainError::NotFound("file"))?;
        let new_path = child_path(parent_path(&f.state.path), &name);
        let events = f.state.decide(&FileCommand::Rename {
            name: name.clone(),
            new_path,
            by,
            at: ctx.now,
        })?;
        if !events.is_empty() {
            let scope = sibling_scope(share, f.state.folder_id);
            uow.release(scope.clone(), name_key(&f.state.name), id.to_string());
            uow.claim(scope, name_key(&name), id.to_string());
        }
        uow.emit::<File>(&id.to_string(), &events)?;
        uow.commit().await
    })
    .await
}

pub async fn move_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    edit: FileEdit<'_>,
    target: Target,
    new_name: Option<&str>,
) -> Result<Committed, CommandError> {
    let (id, by) = (edit.id, edit.by);
    let new_name = new_name.map(checked_name).transpose()?;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let f = load_for_edit(&mut uow, &edit).await?;
        let share = f.state.share_id.ok_or(DomainError::NotFound("file"))?;
        let name = new_name.clone().unwrap_or_else(|| f.state.name.clone());
        let new_path = child_path(&resolve_parent(&mut uow, &target).await?, &name);
        let mut events = Vec::new();
        let mut state = f.state.clone();
        if name != state.name {
            let renamed = state.decide(&FileCommand::Rename {
                name: name.clone(),
                new_path: child_path(parent_path(&state.path), &name),
                by,
                at: ctx.now,
            })?;
            for e in &renamed {
                state.evolve(e);
            }
            events.extend(renamed);
        }
        events.extend(state.decide(&FileCommand::Move {
            share_id: target.share_id,
            folder_id: target.folder_id,
            new_path,
            by,
            at: ctx.now,
        })?);
        if !events.is_empty() {
            uow.release(
                sibling_scope(share, f.state.folder_id),
                name_key(&f.state.name),
                id.to_string(),
            );
            uow.claim(
                sibling_scope(target.share_id, target.folder_id),
                name_key(&name),
                id.to_string(),
            );
            let bytes = f.state.version_bytes();
            let from = current_share(&mut uow, share, f.state.folder_id).await?;
            super::quota::transfer_in(&mut uow, from, target.share_id, &id.to_string(), bytes)
                .await?;
        }
        uow.emit::<File>(&id.to_string(), &events)?;
        uow.commit().await
    })
    .await
}

/// Copies a file's current content into a new file (chunks are shared).
pub async fn copy_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FileId,
    target: Target,
    new_name: Option<&str>,
    by: UserId,
) -> Result<(FileId, Committed), CommandError> {
    let new_name = new_name.map(checked_name).transpose()?;
    let new_id = FileId::from_uuid(Uuid::now_v7());
    let committed = bus
        .retrying(|| async {
            let mut uow = bus.begin(ctx);
            let f = uow.load::<File>(&id.to_string()).await?;
            if f.state.id.is_none() || f.state.purged {
                return Err(DomainError::NotFound("file").into());
            }
            if f.state.deleted {
                return Err(DomainError::Gone("file is in the trash".into()).into());
            }
            let tenant = f.state.tenant_id.ok_or(DomainError::NotFound("file"))?;
            let mut content = f
                .state
                .current()
                .ok_or(DomainError::NotFound("file"))?
                .content
                .clone();
            content.version_id = VersionId::from_uuid(Uuid::now_v7());
            let name = new_name.clone().unwrap_or_else(|| f.state.name.clone());
            let (version, size) = (content.version_id.to_string(), content.size);
            create_file_in(&mut uow, tenant, target.clone(), &name, content, by, new_id).await?;
            super::quota::charge_tracked_in(&mut uow, target.share_id, &[], &version, size).await?;
            uow.commit().await
        })
        .await?;
    Ok((new_id, committed))
}

pub async fn trash_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    edit: FileEdit<'_>,
    restore: bool,
) -> Result<Committed, CommandError> {
    let (id, by) = (edit.id, edit.by);
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let f = load_for_edit(&mut uow, &edit).await?;
        let share = f.state.share_id.ok_or(DomainError::NotFound("file"))?;
        let cmd = if restore {
            FileCommand::Restore { by, at: ctx.now }
        } else {
            FileCommand::Delete { by, at: ctx.now }
        };
        let events = f.state.decide(&cmd)?;
        let scope = sibling_scope(share, f.state.folder_id);
        if restore {
            resolve_parent(
                &mut uow,
                &Target {
                    share_id: share,
                    folder_id: f.state.folder_id,
                    parent_path: String::new(),
                },
            )
            .await?;
            uow.claim(scope, name_key(&f.state.name), id.to_string());
        } else {
            uow.release(scope, name_key(&f.state.name), id.to_string());
        }
        uow.emit::<File>(&id.to_string(), &events)?;
        uow.commit().await
    })
    .await
}

pub async fn purge_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: FileId,
    by: UserId,
) -> Result<Committed, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let f = uow.load::<File>(&id.to_string()).await?;
        if f.state.id.is_none() || f.state.purged {
            return Err(DomainError::NotFound("file").into());
        }
        purge_file_in(&mut uow, id, Some(by), ctx.now).await?;
        uow.commit().await
    })
    .await
}
