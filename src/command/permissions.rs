//! Permission commands: ACL entries and inheritance (one `acl:{resource}`
//! stream per resource), and who owns a share, folder or file (on the
//! item's own stream).

use scaidrive_domain::access::{AceType, PrincipalType};
use scaidrive_domain::drive::file::{File, FileCommand};
use scaidrive_domain::drive::folder::{Folder, FolderCommand};
use scaidrive_domain::drive::share::{Share, ShareCommand};
use scaidrive_domain::drive::Owner;
use scaidrive_domain::id::{FileId, FolderId, ShareId, UserId};
use scaidrive_domain::sharing::{acl_stream, AceRecord, Acl, AclCommand, ResourceType};

use super::{CommandBus, CommandContext, CommandError, Committed};

/// The resource whose ACL a command edits, and the share it lives in.
#[derive(Debug, Clone)]
pub struct AclTarget {
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub share_id: ShareId,
}

/// One change to a resource's ACL.
#[derive(Debug, Clone)]
pub enum AclChange {
    /// Adds an allow or deny entry.
    Add(AceRecord),
    /// Removes the entry of `ace_type` for a principal (`""` for everyone).
    Remove {
        principal_type: PrincipalType,
        principal_id: String,
        ace_type: AceType,
    },
    /// Breaks or restores inheritance; breaking it may keep `copied`, the
    /// entries inherited so far (computed by the caller from the ancestors).
    Inheritance {
        inherit_from_parent: bool,
        copied: Vec<AceRecord>,
    },
}

/// Applies one change to the ACL of `target`.
pub async fn edit_acl(
    bus: &CommandBus,
    ctx: &CommandContext,
    target: AclTarget,
    change: AclChange,
) -> Result<Committed, CommandError> {
    let AclTarget {
        resource_type,
        resource_id,
        share_id,
    } = target;
    let stream = acl_stream(&resource_id);
    let at = ctx.now;
    let cmd = match change {
        AclChange::Add(entry) => AclCommand::AddEntry {
            resource_type,
            resource_id,
            share_id,
            entry,
            at,
        },
        AclChange::Remove {
            principal_type,
            principal_id,
            ace_type,
        } => AclCommand::RemoveEntry {
            resource_type,
            resource_id,
            share_id,
            principal_type,
            principal_id,
            ace_type,
            at,
        },
        AclChange::Inheritance {
            inherit_from_parent,
            copied,
        } => AclCommand::SetInheritance {
            resource_type,
            resource_id,
            share_id,
            inherit_from_parent,
            copied,
            at,
        },
    };
    Ok(bus.run::<Acl>(&stream, ctx, &cmd).await?.1)
}

/// What changes hands, and to whom: a share goes to a user or group, a
/// folder or file to a user.
#[derive(Debug, Clone, Copy)]
pub enum Transfer {
    Share(ShareId, Owner),
    Folder(FolderId, UserId),
    File(FileId, UserId),
}

/// Gives a share, folder or file to a new owner (a share's previous owner
/// stays on as an admin member).
pub async fn transfer(
    bus: &CommandBus,
    ctx: &CommandContext,
    what: Transfer,
    by: UserId,
) -> Result<Committed, CommandError> {
    let at = ctx.now;
    let committed = match what {
        Transfer::Share(id, new_owner) => {
            let cmd = ShareCommand::TransferOwnership { new_owner, by, at };
            bus.run::<Share>(&id.to_string(), ctx, &cmd).await?.1
        }
        Transfer::Folder(id, new_owner) => {
            let cmd = FolderCommand::TransferOwnership { new_owner, by, at };
            bus.run::<Folder>(&id.to_string(), ctx, &cmd).await?.1
        }
        Transfer::File(id, new_owner) => {
            let cmd = FileCommand::TransferOwnership { new_owner, by, at };
            bus.run::<File>(&id.to_string(), ctx, &cmd).await?.1
        }
    };
    Ok(committed)
}
