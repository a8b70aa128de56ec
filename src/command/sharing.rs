//! Sharing commands: memberships (on the share's stream), invitations (one
//! stream each), and accepting an invitation, which adds the membership in
//! the same atomic append.

use chrono::{DateTime, Utc};
use scaidrive_domain::access::{PrincipalType, ShareRole};
use scaidrive_domain::drive::share::{Share, ShareCommand};
use scaidrive_domain::id::{InvitationId, ShareId, UserId};
use scaidrive_domain::sharing::{Invitation, InvitationCommand};
use scaidrive_domain::{Aggregate, DomainError};
use uuid::Uuid;

use super::{CommandBus, CommandContext, CommandError, Committed};

async fn on_share(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: ShareId,
    cmd: ShareCommand,
) -> Result<Committed, CommandError> {
    Ok(bus.run::<Share>(&id.to_string(), ctx, &cmd).await?.1)
}

/// Who joins a share, in which role, until when.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub principal_type: PrincipalType,
    pub principal_id: String,
    pub role: ShareRole,
    pub expires_at: Option<DateTime<Utc>>,
    pub by: UserId,
}

/// Adds a user or group to a share.
pub async fn add_member(
    bus: &CommandBus,
    ctx: &CommandContext,
    share: ShareId,
    m: NewMember,
) -> Result<Committed, CommandError> {
    let cmd = ShareCommand::AddMember {
        principal_type: m.principal_type,
        principal_id: m.principal_id,
        role: m.role,
        expires_at: m.expires_at,
        by: m.by,
        at: ctx.now,
    };
    on_share(bus, ctx, share, cmd).await
}

/// Changes a member's role or expiry (`Some(None)` makes it permanent).
pub async fn update_member(
    bus: &CommandBus,
    ctx: &CommandContext,
    share: ShareId,
    principal_id: String,
    role: Option<ShareRole>,
    expires_at: Option<Option<DateTime<Utc>>>,
) -> Result<Committed, CommandError> {
    let at = ctx.now;
    let cmd = ShareCommand::UpdateMember {
        principal_id,
        role,
        expires_at,
        at,
    };
    on_share(bus, ctx, share, cmd).await
}

/// Removes a member; access ends at once.
pub async fn remove_member(
    bus: &CommandBus,
    ctx: &CommandContext,
    share: ShareId,
    principal_id: String,
) -> Result<Committed, CommandError> {
    let at = ctx.now;
    on_share(
        bus,
        ctx,
        share,
        ShareCommand::RemoveMember { principal_id, at },
    )
    .await
}

/// Who is invited to a share, in which role, until when.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub share_id: ShareId,
    pub email: String,
    pub role: ShareRole,
    pub message: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub by: UserId,
}

/// Invites someone by email: a pending invitation with a fresh id.
pub async fn invite(
    bus: &CommandBus,
    ctx: &CommandContext,
    new: NewInvitation,
) -> Result<(InvitationId, Committed), CommandError> {
    let invitation_id = InvitationId::from_uuid(Uuid::now_v7());
    let cmd = InvitationCommand::Create {
        invitation_id,
        share_id: new.share_id,
        email: new.email,
        role: new.role,
        message: new.message,
        expires_at: new.expires_at,
        by: new.by,
        at: ctx.now,
    };
    let stream = invitation_id.to_string();
    let (_, committed) = bus.run::<Invitation>(&stream, ctx, &cmd).await?;
    Ok((invitation_id, committed))
}

/// Revokes a pending invitation.
pub async fn revoke_invitation(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: InvitationId,
) -> Result<Committed, CommandError> {
    let cmd = InvitationCommand::Revoke { at: ctx.now };
    Ok(bus.run::<Invitation>(&id.to_string(), ctx, &cmd).await?.1)
}

/// Accepts (`accept`) or declines an invitation for `user_id`, whose email
/// must match; the answer's new state and what it wrote.
pub async fn answer_invitation(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: InvitationId,
    email: &str,
    user_id: UserId,
    accept: bool,
) -> Result<(Invitation, Committed), CommandError> {
    if accept {
        return accept_invitation(bus, ctx, id, email, user_id).await;
    }
    let cmd = InvitationCommand::Decline {
        email: email.to_owned(),
        user_id,
        at: ctx.now,
    };
    bus.run::<Invitation>(&id.to_string(), ctx, &cmd).await
}

/// Accepts an invitation and makes the invitee a member, unless they
/// already hold a role on the share.
async fn accept_invitation(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: InvitationId,
    email: &str,
    user_id: UserId,
) -> Result<(Invitation, Committed), CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let inv = uow.load::<Invitation>(&id.to_string()).await?.state;
        let events = inv.decide(&InvitationCommand::Accept {
            email: email.to_owned(),
            user_id,
            at: ctx.now,
        })?;
        let share_id = inv.share_id.ok_or(DomainError::NotFound("invitation"))?;
        let role = inv.role.ok_or(DomainError::NotFound("invitation"))?;
        let share = uow.load::<Share>(&share_id.to_string()).await?.state;
        if share.deleted {
            return Err(DomainError::Gone("the share is in the trash".into()).into());
        }
        let uid = user_id.to_string();
        let already =
            share.owner.is_some_and(|o| o.to_string() == uid) || share.members.contains_key(&uid);
        if !already {
            let added = share.decide(&ShareCommand::AddMember {
                principal_type: PrincipalType::User,
                principal_id: uid,
                role,
                expires_at: None,
                by: user_id,
                at: ctx.now,
            })?;
            uow.emit::<Share>(&share_id.to_string(), &added)?;
        }
        uow.emit::<Invitation>(&id.to_string(), &events)?;
        let committed = uow.commit().await?;
        Ok((inv.clone(), committed))
    })
    .await
}
