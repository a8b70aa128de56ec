//! Tenant and user administration: a tenant's name and settings, a user's
//! status and admin role (one stream each).

use scaidrive_domain::id::TenantId;
use scaidrive_domain::tenancy::{AdminRole, Tenant, TenantCommand, User, UserCommand, UserStatus};
use scaidrive_domain::Aggregate;
use serde_json::Value;

use super::{CommandBus, CommandContext, CommandError, Committed};

/// Renames a tenant or patches its settings (`settings`: the keys to change).
pub async fn update_tenant(
    bus: &CommandBus,
    ctx: &CommandContext,
    tenant_id: TenantId,
    name: Option<String>,
    display_name: Option<String>,
    settings: Option<Value>,
) -> Result<Committed, CommandError> {
    let cmd = TenantCommand::Update {
        name,
        display_name,
        settings,
        at: ctx.now,
    };
    let (_, committed) = bus
        .execute::<Tenant, _>(&tenant_id.to_string(), ctx, |t| t.state.decide(&cmd))
        .await?;
    Ok(committed)
}

/// Changes a user's status, then their admin role (`Some(None)` takes it
/// away), in one append; either may be left as it is (`None`).
pub async fn change_user(
    bus: &CommandBus,
    ctx: &CommandContext,
    user_id: &str,
    status: Option<UserStatus>,
    admin_role: Option<Option<AdminRole>>,
) -> Result<Committed, CommandError> {
    let (_, committed) = bus
        .execute::<User, _>(user_id, ctx, |u| {
            let mut s = u.state.clone();
            let mut events = Vec::new();
            if let Some(status) = status {
                events.extend(s.decide(&UserCommand::ChangeStatus {
                    status,
                    at: ctx.now,
                })?);
            }
            for e in &events {
                s.evolve(e);
            }
            if let Some(role) = admin_role {
                events.extend(s.decide(&UserCommand::SetAdminRole {
                    admin_role: role,
                    at: ctx.now,
                })?);
            }
            Ok(events)
        })
        .await?;
    Ok(committed)
}
