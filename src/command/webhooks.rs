//! Outbound webhook commands: create, update and delete (one stream each).
//! The signing secret arrives sealed; this layer never sees it in the clear.

use std::collections::BTreeMap;

use scaidrive_domain::id::{TenantId, WebhookId};
use scaidrive_domain::webhook::{Webhook, WebhookCommand, WebhookStatus};
use scaidrive_domain::Aggregate;
use uuid::Uuid;

use super::{CommandBus, CommandContext, CommandError, Committed};

/// What a new webhook is.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub tenant_id: TenantId,
    pub name: String,
    pub url: String,
    pub categories: Vec<String>,
    /// Sealed under the server key.
    pub sealed_secret: String,
    pub headers: BTreeMap<String, String>,
    pub status: WebhookStatus,
}

/// What changes in a webhook (`None`: left as it is).
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub name: Option<String>,
    pub url: Option<String>,
    pub categories: Option<Vec<String>>,
    /// Sealed under the server key.
    pub sealed_secret: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub status: Option<WebhookStatus>,
}

async fn run(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: WebhookId,
    cmd: WebhookCommand,
) -> Result<Committed, CommandError> {
    let (_, committed) = bus
        .execute::<Webhook, _>(&id.to_string(), ctx, |w| w.state.decide(&cmd))
        .await?;
    Ok(committed)
}

/// Creates a webhook with a fresh id.
pub async fn create(
    bus: &CommandBus,
    ctx: &CommandContext,
    new: NewWebhook,
) -> Result<(WebhookId, Committed), CommandError> {
    let id = WebhookId::from_uuid(Uuid::now_v7());
    let cmd = WebhookCommand::Create {
        webhook_id: id,
        tenant_id: new.tenant_id,
        name: new.name,
        url: new.url,
        categories: new.categories,
        secret: new.sealed_secret,
        headers: new.headers,
        status: new.status,
        at: ctx.now,
    };
    Ok((id, run(bus, ctx, id, cmd).await?))
}

/// Changes, pauses or resumes a webhook.
pub async fn update(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: WebhookId,
    change: WebhookChange,
) -> Result<Committed, CommandError> {
    let cmd = WebhookCommand::Update {
        name: change.name,
        url: change.url,
        categories: change.categories,
        secret: change.sealed_secret,
        headers: change.headers,
        status: change.status,
        at: ctx.now,
    };
    run(bus, ctx, id, cmd).await
}

/// Deletes a webhook.
pub async fn delete(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: WebhookId,
) -> Result<Committed, CommandError> {
    run(bus, ctx, id, WebhookCommand::Delete { at: ctx.now }).await
}
