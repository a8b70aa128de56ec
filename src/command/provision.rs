//! Just-in-time provisioning: the first valid token of an unknown partner,
//! tenant or user creates them, in one atomic append.

use scaidrive_domain::drive::share::{Share, ShareCommand};
use scaidrive_domain::drive::{Owner, ShareType};
use scaidrive_domain::id::{PartnerId, ShareId, TenantId, UserId};
use scaidrive_domain::tenancy::{
    AdminRole, Partner, PartnerCommand, Tenant, TenantCommand, User, UserCommand, UserEvent,
    UserStatus,
};
use scaidrive_domain::{Aggregate, DomainError, LogPosition};

use super::{CommandBus, CommandContext, CommandError};

/// Who a verified token says the caller is, mapped onto our ids.
#[derive(Debug, Clone)]
pub struct Identity {
    pub partner_id: PartnerId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub partner_name: String,
    pub tenant_name: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl Identity {
    /// Maps outside ids: well-formed ids are kept; other strings are hashed
    /// (user subjects within their tenant, so equal names in two tenants are
    /// two users).
    pub fn from_claims(
        partner: Option<&str>,
        tenant: &str,
        subject: &str,
        email: Option<String>,
        name: Option<String>,
    ) -> Self {
        let tenant_id = TenantId::from_external(tenant);
        let user_id = match UserId::parse(subject) {
            Ok(id) => id,
            Err(_) => UserId::from_external(&format!("{tenant_id}/{subject}")),
        };
        let partner_name = partner.unwrap_or("default").to_owned();
        Identity {
            partner_id: PartnerId::from_external(&partner_name),
            tenant_id,
            user_id,
            partner_name,
            tenant_name: tenant.to_owned(),
            email,
            name,
        }
    }
}

/// How a user comes to be provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The user signs in with a token (see [`SignIn`] for who becomes an admin).
    SignIn(SignIn),
    /// ScaiKey's directory announces the user (webhook): nobody signs in, the
    /// role is what the directory says, and a tenant created on the way waits
    /// for an admin to sign in.
    Directory { admin_role: Option<AdminRole> },
}

/// What a sign-in's token says about the admin role (SPEC §3 "Admin gate").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignIn {
    /// The token's `scope` claim names `tenant:admin`, `admin:*` or `*`:
    /// the user is seated as tenant admin, at first sign-in or later.
    pub explicit_admin: bool,
    /// The token comes from the embedded development issuer, which seats the
    /// user whose sign-in creates a tenant (or the first new user of a tenant
    /// waiting for an admin) as its admin, to bootstrap a local tenant. With
    /// ScaiKey configured being first makes nobody an admin.
    pub bootstrap: bool,
}

/// Makes sure partner, tenant and user exist and the profile (and, for an
/// explicit admin scope, the admin role) is current; returns the user's
/// state. Also answers the log position of what it appended, if anything.
pub async fn provision(
    bus: &CommandBus,
    ctx: &CommandContext,
    who: &Identity,
    sign_in: SignIn,
) -> Result<(User, Option<LogPosition>), CommandError> {
    provision_as(bus, ctx, who, Origin::SignIn(sign_in)).await
}

/// [`provision`] for a given [`Origin`].
pub async fn provision_as(
    bus: &CommandBus,
    ctx: &CommandContext,
    who: &Identity,
    origin: Origin,
) -> Result<(User, Option<LogPosition>), CommandError> {
    let user_stream = who.user_id.to_string();
    let user_cmd = |admin_role| UserCommand::Provision {
        user_id: who.user_id,
        tenant_id: who.tenant_id,
        email: who.email.clone(),
        name: who.name.clone(),
        admin_role,
        at: ctx.now,
    };

    let explicit_admin = matches!(origin, Origin::SignIn(s) if s.explicit_admin);
    // A known user: the profile claims, and the role an explicit admin scope
    // grants (ScaiKey's word; recorded, so the stored role, which resource
    // checks use, agrees with the gate). A suspended or inactive user's role
    // is left alone: every request of theirs is refused anyway.
    let update = |u: &User| -> Result<Vec<UserEvent>, DomainError> {
        let mut events = u.decide(&user_cmd(None))?;
        if explicit_admin
            && u.status == UserStatus::Active
            && u.admin_role != Some(AdminRole::TenantAdmin)
        {
            let mut next = u.clone();
            for e in &events {
                next.evolve(e);
            }
            events.extend(next.decide(&UserCommand::SetAdminRole {
                admin_role: Some(AdminRole::TenantAdmin),
                at: ctx.now,
            })?);
        }
        Ok(events)
    };

    // Fast path: a known user (one cached stream read, usually no append).
    let known = bus.load::<User>(&user_stream).await?;
    if known.exists() {
        if known.state.tenant_id != Some(who.tenant_id) {
            return Err(
                DomainError::Forbidden("this user belongs to another tenant".into()).into(),
            );
        }
        if update(&known.state)?.is_empty() {
            return Ok((known.state, None));
        }
        let (state, committed) = bus
            .execute::<User, _>(&user_stream, ctx, |u| update(&u.state))
            .await?;
        return Ok((state, committed.position));
    }

    let _guard = bus.locks().lock(&who.tenant_id.to_string()).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let partner_stream = who.partner_id.to_string();
        let tenant_stream = who.tenant_id.to_string();

        let partner = uow.load::<Partner>(&partner_stream).await?;
        let events = partner.state.decide(&PartnerCommand::Provision {
            partner_id: who.partner_id,
            name: who.partner_name.clone(),
            at: ctx.now,
        })?;
        uow.emit::<Partner>(&partner_stream, &events)?;

        let tenant = uow.load::<Tenant>(&tenant_stream).await?;
        if let Some(p) = tenant.state.partner_id {
            if p != who.partner_id {
                return Err(
                    DomainError::Forbidden("tenant belongs to another partner".into()).into(),
                );
            }
        }
        let new_tenant = !tenant.exists();
        let mut tenant_state = tenant.state;
        let mut events = tenant_state.decide(&TenantCommand::Provision {
            tenant_id: who.tenant_id,
            partner_id: who.partner_id,
            name: who.tenant_name.clone(),
            awaiting_admin: !matches!(origin, Origin::SignIn(_)),
            at: ctx.now,
        })?;
        for e in &events {
            tenant_state.evolve(e);
        }

        let user = uow.load::<User>(&user_stream).await?;
        let user_is_new = !user.exists();
        let role = match origin {
            Origin::SignIn(s) => {
                let first = new_tenant || (user_is_new && tenant_state.awaiting_admin);
                let admin = s.explicit_admin || (s.bootstrap && first);
                // The seat is an event on the tenant stream, so two first users
                // signing in at once conflict there and only one gets it.
                if admin && user_is_new && tenant_state.awaiting_admin {
                    events.extend(tenant_state.decide(&TenantCommand::SeatAdmin {
                        user_id: who.user_id,
                        at: ctx.now,
                    })?);
                }
                admin.then_some(AdminRole::TenantAdmin)
            }
            Origin::Directory { admin_role } => admin_role,
        };
        uow.emit::<Tenant>(&tenant_stream, &events)?;
        let events = if user_is_new {
            user.state.decide(&user_cmd(role))?
        } else {
            update(&user.state)?
        };
        let mut state = user.state;
        for e in &events {
            state.evolve(e);
        }
        uow.emit_with_state::<User>(&user_stream, &events, Some(state.clone()))?;

        // Every user gets a personal share at first sign-in; its id is derived
        // from the user's, so racing sign-ins cannot create two.
        if user_is_new {
            let share_id = ShareId::from_external(&format!("personal/{}", who.user_id));
            let share_stream = share_id.to_string();
            let share = uow.load::<Share>(&share_stream).await?;
            if !share.exists() {
                let events = share.state.decide(&ShareCommand::Create {
                    share_id,
                    tenant_id: who.tenant_id,
                    name: "Personal".into(),
                    description: None,
                    share_type: ShareType::Personal,
                    owner: Owner::User(who.user_id),
                    quota_bytes: None,
                    by: who.user_id,
                    at: ctx.now,
                })?;
                uow.emit::<Share>(&share_stream, &events)?;
            }
        }
        let committed = uow.commit().await?;
        Ok((state, committed.position))
    })
    .await
}

/// A tenant a partner admin creates: the partner must exist; the tenant must
/// not. It waits for its first signing-in user to become its admin.
pub async fn create_tenant(
    bus: &CommandBus,
    ctx: &CommandContext,
    partner_id: PartnerId,
    tenant_id: TenantId,
    name: &str,
    display_name: Option<String>,
    settings: Option<serde_json::Value>,
) -> Result<(Tenant, Option<LogPosition>), CommandError> {
    let tenant_stream = tenant_id.to_string();
    let _guard = bus.locks().lock(&tenant_stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let partner = uow.load::<Partner>(&partner_id.to_string()).await?;
        if !partner.exists() {
            return Err(DomainError::NotFound("partner").into());
        }
        let tenant = uow.load::<Tenant>(&tenant_stream).await?;
        if tenant.exists() {
            return Err(
                DomainError::AlreadyExists(format!("tenant {tenant_id} already exists")).into(),
            );
        }
        let mut state = tenant.state;
        let mut events = state.decide(&TenantCommand::Provision {
            tenant_id,
            partner_id,
            name: name.to_owned(),
            awaiting_admin: true,
            at: ctx.now,
        })?;
        for e in &events {
            state.evolve(e);
        }
        if display_name.is_some() || settings.is_some() {
            let more = state.decide(&TenantCommand::Update {
                name: None,
                display_name: display_name.clone(),
                settings: settings.clone(),
                at: ctx.now,
            })?;
            for e in &more {
                state.evolve(e);
            }
            events.extend(more);
        }
        uow.emit_with_state::<Tenant>(&tenant_stream, &events, Some(state.clone()))?;
        let committed = uow.commit().await?;
        Ok((state, committed.position))
    })
    .await
}

/// Makes sure a partner and a tenant exist without anyone signing in (the
/// ScaiKey directory names a tenant first seen); a tenant created here waits
/// for its first signing-in user to become its admin.
pub async fn ensure_tenant(
    bus: &CommandBus,
    ctx: &CommandContext,
    who: &Identity,
) -> Result<Option<LogPosition>, CommandError> {
    let tenant_stream = who.tenant_id.to_string();
    let _guard = bus.locks().lock(&tenant_stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let partner_stream = who.partner_id.to_string();
        let tenant = uow.load::<Tenant>(&tenant_stream).await?;
        if let Some(p) = tenant.state.partner_id {
            if p != who.partner_id {
                return Err(
                    DomainError::Forbidden("tenant belongs to another partner".into()).into(),
                );
            }
            return Ok(None);
        }
        let partner = uow.load::<Partner>(&partner_stream).await?;
        let events = partner.state.decide(&PartnerCommand::Provision {
            partner_id: who.partner_id,
            name: who.partner_name.clone(),
            at: ctx.now,
        })?;
        uow.emit::<Partner>(&partner_stream, &events)?;
        let events = tenant.state.decide(&TenantCommand::Provision {
            tenant_id: who.tenant_id,
            partner_id: who.partner_id,
            name: who.tenant_name.clone(),
            awaiting_admin: true,
            at: ctx.now,
        })?;
        uow.emit::<Tenant>(&tenant_stream, &events)?;
        Ok(uow.commit().await?.position)
    })
    .await
}
