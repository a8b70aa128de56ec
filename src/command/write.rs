//! Where new items go and the staging of a new file: what the drive
//! commands and the quota write batcher both build on (so neither imports
//! the other for it).

use scaidrive_domain::drive::file::{Content, File, FileCommand};
use scaidrive_domain::drive::folder::Folder;
use scaidrive_domain::drive::{child_path, sibling_scope};
use scaidrive_domain::id::{FileId, FolderId, ShareId, TenantId, UserId};
use scaidrive_domain::name::name_key;
use scaidrive_domain::{Aggregate, DomainError};

use super::{CommandError, UnitOfWork};

/// Where a new or moved item goes, resolved against live state.
#[derive(Debug, Clone)]
pub struct Target {
    pub share_id: ShareId,
    pub folder_id: Option<FolderId>,
    /// The parent's current path ("/" for a share root), from the read model:
    /// aggregates do not learn when an ancestor is renamed or moved.
    pub parent_path: String,
}

/// Loads the parent folder (if any) into the unit of work, so the decision
/// is invalidated if the parent changes, and answers its path.
pub(super) async fn resolve_parent(
    uow: &mut UnitOfWork<'_>,
    target: &Target,
) -> Result<String, CommandError> {
    match target.folder_id {
        None => Ok(target.parent_path.clone()),
        Some(fid) => {
            let parent = uow.load::<Folder>(&fid.to_string()).await?;
            let state = parent.state;
            if state.id.is_none() || state.purged {
                return Err(DomainError::NotFound("folder").into());
            }
            if state.share_id != Some(target.share_id) {
                return Err(
                    DomainError::invalid("folder_id", "the folder is not in that share").into(),
                );
            }
            if state.deleted {
                return Err(DomainError::Gone("the target folder is in the trash".into()).into());
            }
            Ok(target.parent_path.clone())
        }
    }
}

/// Stages a file creation (with its name claim) in a unit of work.
pub async fn create_file_in(
    uow: &mut UnitOfWork<'_>,
    tenant_id: TenantId,
    target: Target,
    name: &str,
    content: Content,
    by: UserId,
    file_id: FileId,
) -> Result<(), CommandError> {
    let path = child_path(&resolve_parent(uow, &target).await?, name);
    let at = uow.context().now;
    let events = File::default().decide(&FileCommand::Create {
        file_id,
        tenant_id,
        share_id: target.share_id,
        folder_id: target.folder_id,
        name: name.to_owned(),
        path,
        content,
        by,
        at,
    })?;
    uow.emit::<File>(&file_id.to_string(), &events)?;
    uow.claim(
        sibling_scope(target.share_id, target.folder_id),
        name_key(name),
        file_id.to_string(),
    );
    Ok(())
}
