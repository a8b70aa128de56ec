//! Share commands: create, update, trash and restore (one stream each).

use scaidrive_domain::drive::share::{Share, ShareCommand};
use scaidrive_domain::drive::{Owner, ShareType};
use scaidrive_domain::id::{ShareId, TenantId, UserId};
use scaidrive_domain::Aggregate;
use uuid::Uuid;

use super::{CommandBus, CommandContext, CommandError, Committed};

/// What a new share is.
#[derive(Debug, Clone)]
pub struct NewShare {
    pub tenant_id: TenantId,
    pub name: String,
    pub description: Option<String>,
    pub share_type: ShareType,
    pub owner: Owner,
    pub quota_bytes: Option<u64>,
    pub by: UserId,
}

async fn run(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: ShareId,
    cmd: ShareCommand,
) -> Result<Committed, CommandError> {
    let (_, committed) = bus
        .execute::<Share, _>(&id.to_string(), ctx, |s| s.state.decide(&cmd))
        .await?;
    Ok(committed)
}

/// Creates a share with a fresh id.
pub async fn create(
    bus: &CommandBus,
    ctx: &CommandContext,
    new: NewShare,
) -> Result<(ShareId, Committed), CommandError> {
    let share_id = ShareId::from_uuid(Uuid::now_v7());
    let cmd = ShareCommand::Create {
        share_id,
        tenant_id: new.tenant_id,
        name: new.name,
        description: new.description,
        share_type: new.share_type,
        owner: new.owner,
        quota_bytes: new.quota_bytes,
        by: new.by,
        at: ctx.now,
    };
    Ok((share_id, run(bus, ctx, share_id, cmd).await?))
}

/// Renames a share or changes its description.
pub async fn update(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: ShareId,
    name: Option<String>,
    description: Option<String>,
) -> Result<Committed, CommandError> {
    let cmd = ShareCommand::Update {
        name,
        description,
        at: ctx.now,
    };
    run(bus, ctx, id, cmd).await
}

/// Moves a share to the trash (`trashed`) or takes it out.
pub async fn set_trashed(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: ShareId,
    trashed: bool,
) -> Result<Committed, CommandError> {
    let cmd = if trashed {
        ShareCommand::Delete { at: ctx.now }
    } else {
        ShareCommand::Restore { at: ctx.now }
    };
    run(bus, ctx, id, cmd).await
}
