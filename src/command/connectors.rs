//! Connector commands: every change to a connector's stream (create,
//! update, delete, start and finish a run) goes through here.

use scaidrive_domain::connector::{Connector, ConnectorCommand};
use scaidrive_domain::id::ConnectorId;
use scaidrive_domain::Aggregate;
use uuid::Uuid;

use super::{CommandBus, CommandContext, CommandError, Committed};

/// Decides `cmd` on the connector's stream and appends what it decided.
pub async fn execute(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: ConnectorId,
    cmd: &ConnectorCommand,
) -> Result<Committed, CommandError> {
    let (_, committed) = bus
        .execute::<Connector, _>(&id.to_string(), ctx, |c| c.state.decide(cmd))
        .await?;
    Ok(committed)
}

/// A fresh connector id, for a `Create` command.
pub fn new_id() -> ConnectorId {
    ConnectorId::from_uuid(Uuid::now_v7())
}

/// Starts a run (409 while one is going); answers its id.
pub async fn start_run(
    bus: &CommandBus,
    ctx: &CommandContext,
    id: ConnectorId,
    trigger: &str,
) -> Result<(String, Committed), CommandError> {
    let run_id = format!("run_{}", Uuid::now_v7().simple());
    let cmd = ConnectorCommand::StartRun {
        run_id: run_id.clone(),
        trigger: trigger.to_owned(),
        takeover: false,
        at: ctx.now,
    };
    Ok((run_id, execute(bus, ctx, id, &cmd).await?))
}
