//! Group commands: the group aggregate plus the per-tenant claims that keep
//! names and external ids unique, appended together.

use scaidrive_domain::group::{external_scope, name_scope, Group, GroupCommand};
use scaidrive_domain::id::{GroupId, TenantId, UserId};
use scaidrive_domain::name::name_key;
use scaidrive_domain::{Aggregate, DomainError};

use super::{CommandBus, CommandContext, CommandError, Committed, Loaded, UnitOfWork};

/// What a new group looks like.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: String,
    pub description: Option<String>,
    pub external_id: Option<String>,
}

/// A change to a group; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct GroupChange {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub external_id: Option<Option<String>>,
}

/// A taken claim becomes a 409 that says which value is taken.
fn explain(err: CommandError, name: &str, external_id: Option<&str>) -> CommandError {
    match err {
        CommandError::Domain(DomainError::NameConflict(key)) => {
            let what = if key == name_key(name) {
                format!("a group named '{name}' already exists")
            } else {
                format!(
                    "a group with external_id '{}' already exists",
                    external_id.unwrap_or(&key)
                )
            };
            CommandError::Domain(DomainError::AlreadyExists(what))
        }
        other => other,
    }
}

/// Loads a group of `tenant_id` (a group of another tenant does not exist).
async fn load_live(
    uow: &mut UnitOfWork<'_>,
    tenant_id: TenantId,
    id: GroupId,
) -> Result<Loaded<Group>, CommandError> {
    let g = uow.load::<Group>(&id.to_string()).await?;
    if !g.state.is_live() || g.state.tenant_id != Some(tenant_id) {
        return Err(DomainError::NotFound("group").into());
    }
    Ok(g)
}

pub async fn create(
    bus: &CommandBus,
    ctx: &CommandContext,
    tenant_id: TenantId,
    group_id: GroupId,
    new: &NewGroup,
) -> Result<(Group, Committed), CommandError> {
    let stream = group_id.to_string();
    let _guard = bus.locks().lock(&stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let g = uow.load::<Group>(&stream).await?;
        let events = g.state.decide(&GroupCommand::Create {
            group_id,
            tenant_id,
            name: new.name.clone(),
            description: new.description.clone(),
            external_id: new.external_id.clone(),
            at: ctx.now,
        })?;
        let state = Group::replay(&events);
        uow.claim(name_scope(tenant_id), name_key(&state.name), &stream);
        if let Some(ext) = &state.external_id {
            uow.claim(external_scope(tenant_id), ext.clone(), &stream);
        }
        uow.emit_with_state::<Group>(&stream, &events, Some(state.clone()))?;
        let committed = uow.commit().await?;
        Ok((state, committed))
    })
    .await
    .map_err(|e| explain(e, new.name.trim(), new.external_id.as_deref()))
}

pub async fn update(
    bus: &CommandBus,
    ctx: &CommandContext,
    tenant_id: TenantId,
    group_id: GroupId,
    change: &GroupChange,
) -> Result<(Group, Committed), CommandError> {
    let stream = group_id.to_string();
    let _guard = bus.locks().lock(&stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let g = load_live(&mut uow, tenant_id, group_id).await?;
        let events = g.state.decide(&GroupCommand::Update {
            name: change.name.clone(),
            description: change.description.clone(),
            external_id: change.external_id.clone(),
            at: ctx.now,
        })?;
        let mut state = g.state.clone();
        for e in &events {
            state.evolve(e);
        }
        if name_key(&state.name) != name_key(&g.state.name) {
            uow.release(name_scope(tenant_id), name_key(&g.state.name), &stream);
            uow.claim(name_scope(tenant_id), name_key(&state.name), &stream);
        }
        if state.external_id != g.state.external_id {
            if let Some(old) = &g.state.external_id {
                uow.release(external_scope(tenant_id), old.clone(), &stream);
            }
            if let Some(new) = &state.external_id {
                uow.claim(external_scope(tenant_id), new.clone(), &stream);
            }
        }
        uow.emit_with_state::<Group>(&stream, &events, Some(state.clone()))?;
        let committed = uow.commit().await?;
        Ok((state, committed))
    })
    .await
    .map_err(|e| {
        explain(
            e,
            change.name.as_deref().unwrap_or_default().trim(),
            change.external_id.clone().flatten().as_deref(),
        )
    })
}

/// Deletes the group and frees its name and external id for reuse.
pub async fn delete(
    bus: &CommandBus,
    ctx: &CommandContext,
    tenant_id: TenantId,
    group_id: GroupId,
) -> Result<Committed, CommandError> {
    let stream = group_id.to_string();
    let _guard = bus.locks().lock(&stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let g = load_live(&mut uow, tenant_id, group_id).await?;
        let events = g.state.decide(&GroupCommand::Delete { at: ctx.now })?;
        uow.release(name_scope(tenant_id), name_key(&g.state.name), &stream);
        if let Some(ext) = &g.state.external_id {
            uow.release(external_scope(tenant_id), ext.clone(), &stream);
        }
        uow.emit::<Group>(&stream, &events)?;
        uow.commit().await
    })
    .await
}

/// Adds or removes a member. With `lenient`, adding a member twice or
/// removing a non-member is a no-op instead of an error (directory sync).
pub async fn set_member(
    bus: &CommandBus,
    ctx: &CommandContext,
    tenant_id: TenantId,
    group_id: GroupId,
    user_id: UserId,
    member: bool,
    lenient: bool,
) -> Result<Committed, CommandError> {
    let stream = group_id.to_string();
    let _guard = bus.locks().lock(&stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let g = load_live(&mut uow, tenant_id, group_id).await?;
        if lenient && g.state.members.contains(&user_id) == member {
            return Ok(Committed::default());
        }
        let cmd = if member {
            GroupCommand::AddMember {
                user_id,
                at: ctx.now,
            }
        } else {
            GroupCommand::RemoveMember {
                user_id,
                at: ctx.now,
            }
        };
        let events = g.state.decide(&cmd)?;
        uow.emit::<Group>(&stream, &events)?;
        uow.commit().await
    })
    .await
}
