//! Sharing commands that span streams: accepting an invitation adds the
//! membership in the same atomic append.

use scaidrive_domain::access::PrincipalType;
use scaidrive_domain::drive::share::{Share, ShareCommand};
use scaidrive_domain::id::{InvitationId, UserId};
use scaidrive_domain::sharing::{Invitation, InvitationCommand};
use scaidrive_domain::{Aggregate, DomainError};

use super::{CommandBus, CommandContext, CommandError, Committed};

/// Accepts an invitation for `user_id` (whose email must match) and makes
/// them a member, unless they already hold a role on the share.
pub async fn accept_invitation(
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
