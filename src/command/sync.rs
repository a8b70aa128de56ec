//! Sync commands: devices and cursors, content a device uploaded becoming a
//! file or a version (with the device's record of it), conflicts.

use scaidrive_domain::drive::file::{Content, File, FileCommand};
use scaidrive_domain::drive::upload::{UploadCommand, UploadSession};
use scaidrive_domain::id::{ConflictId, FileId, ShareId, TenantId, UploadId, UserId, VersionId};
use scaidrive_domain::sync::{
    device_stream, ChangeType, Conflict, ConflictCommand, ConflictFacts, ConflictStrategy, Device,
    DeviceCommand, DeviceInfo,
};
use scaidrive_domain::{Aggregate, DomainError, LogPosition};

use super::drive::{create_file_in, Target};
use super::{CommandBus, CommandContext, CommandError, Committed, UnitOfWork};

/// Registers a device (or updates its description); answers whether it is new.
pub async fn register_device(
    bus: &CommandBus,
    ctx: &CommandContext,
    user: UserId,
    tenant: TenantId,
    device_id: &str,
    info: DeviceInfo,
) -> Result<(bool, Committed), CommandError> {
    let stream = device_stream(user, device_id);
    let cmd = DeviceCommand::Register {
        device_id: device_id.to_owned(),
        user_id: user,
        tenant_id: tenant,
        info,
        at: ctx.now,
    };
    let mut created = false;
    let (_, committed) = bus
        .execute::<Device, _>(&stream, ctx, |d| {
            let events = d.state.decide(&cmd)?;
            Ok(events)
        })
        .await?;
    if committed
        .events
        .iter()
        .any(|e| e.event_type == "device-registered")
    {
        created = true;
    }
    Ok((created, committed))
}

/// Moves a device's cursor in a share (`head`: the end of the feed now).
pub async fn move_cursor(
    bus: &CommandBus,
    ctx: &CommandContext,
    user: UserId,
    device_id: &str,
    share_id: ShareId,
    to: LogPosition,
    head: LogPosition,
) -> Result<Committed, CommandError> {
    let cmd = DeviceCommand::MoveCursor {
        share_id,
        to,
        head,
        at: ctx.now,
    };
    let (_, committed) = bus
        .execute::<Device, _>(&device_stream(user, device_id), ctx, |d| {
            d.state.decide(&cmd)
        })
        .await?;
    Ok(committed)
}

/// Where a device's content goes.
#[derive(Debug, Clone)]
pub enum ContentTarget {
    /// A new file (the device's create, or a conflicted copy).
    NewFile {
        tenant: TenantId,
        target: Target,
        name: String,
        file_id: FileId,
    },
    /// A new version of a file; `base` is checked unless `None`.
    NewVersion {
        file_id: FileId,
        base: Option<VersionId>,
    },
}

/// A conflict to record in the same commit as the content it settled.
#[derive(Debug, Clone)]
pub enum ConflictRecord {
    /// Found now; resolved at once unless `resolution` is `None` (MANUAL).
    New {
        facts: Box<ConflictFacts>,
        resolution: Option<ConflictStrategy>,
    },
    /// Stored earlier, resolved now.
    Existing {
        id: ConflictId,
        resolution: ConflictStrategy,
    },
}

/// Everything one device content write needs.
#[derive(Debug, Clone)]
pub struct ContentWrite {
    /// The upload session to complete (`None` when its content came from a
    /// session completed earlier).
    pub upload: Option<(UploadId, String)>,
    pub content: Content,
    pub target: ContentTarget,
    pub device_id: String,
    pub share_id: ShareId,
    pub change_type: ChangeType,
    pub by: UserId,
    pub conflict: Option<ConflictRecord>,
}

/// Completes the upload into the file or version, records it on the device
/// (`sync-versioned`) and any conflict it settles, in one commit.
pub async fn write_content(
    bus: &CommandBus,
    ctx: &CommandContext,
    w: &ContentWrite,
) -> Result<(FileId, Committed), CommandError> {
    let file_id = match &w.target {
        ContentTarget::NewFile { file_id, .. } | ContentTarget::NewVersion { file_id, .. } => {
            *file_id
        }
    };
    let committed = bus
        .retrying(|| async {
            let mut uow = bus.begin(ctx);
            if let Some((upload_id, checksum)) = &w.upload {
                let s = uow.load::<UploadSession>(&upload_id.to_string()).await?;
                let done = s.state.decide(&UploadCommand::Complete {
                    computed_checksum: checksum.clone(),
                    file_id,
                    version_id: w.content.version_id,
                    at: ctx.now,
                })?;
                uow.emit::<UploadSession>(&upload_id.to_string(), &done)?;
            }
            let base = match &w.target {
                ContentTarget::NewFile {
                    tenant,
                    target,
                    name,
                    file_id,
                } => {
                    create_file_in(
                        &mut uow,
                        *tenant,
                        target.clone(),
                        name,
                        w.content.clone(),
                        w.by,
                        *file_id,
                    )
                    .await?;
                    None
                }
                ContentTarget::NewVersion { file_id, base } => {
                    let f = uow.load::<File>(&file_id.to_string()).await?;
                    let events = f.state.decide(&FileCommand::AddVersion {
                        base_version_id: *base,
                        content: w.content.clone(),
                        by: w.by,
                        at: ctx.now,
                    })?;
                    uow.emit::<File>(&file_id.to_string(), &events)?;
                    *base
                }
            };
            record_version(&mut uow, w, file_id, base).await?;
            if let Some(c) = &w.conflict {
                stage_conflict(
                    &mut uow,
                    c,
                    Some(file_id.to_string()),
                    Some(w.content.version_id.to_string()),
                    w.by,
                )
                .await?;
            }
            uow.commit().await
        })
        .await?;
    Ok((file_id, committed))
}

async fn record_version(
    uow: &mut UnitOfWork<'_>,
    w: &ContentWrite,
    file_id: FileId,
    base: Option<VersionId>,
) -> Result<(), CommandError> {
    let by = w.by;
    let stream = device_stream(by, &w.device_id);
    let d = uow.load::<Device>(&stream).await?;
    let events = d.state.decide(&DeviceCommand::RecordVersion {
        share_id: w.share_id,
        file_id: file_id.to_string(),
        change_type: w.change_type,
        base_version_id: base.map(|b| b.to_string()),
        version_id: w.content.version_id.to_string(),
        at: uow.context().now,
    })?;
    uow.emit::<Device>(&stream, &events)?;
    Ok(())
}

async fn stage_conflict(
    uow: &mut UnitOfWork<'_>,
    c: &ConflictRecord,
    result_resource_id: Option<String>,
    result_version_id: Option<String>,
    by: UserId,
) -> Result<(), CommandError> {
    let (id, detected, resolution) = match c {
        ConflictRecord::New { facts, resolution } => {
            (facts.conflict_id, Some(facts.clone()), *resolution)
        }
        ConflictRecord::Existing { id, resolution } => (*id, None, Some(*resolution)),
    };
    let stream = id.to_string();
    let loaded = uow.load::<Conflict>(&stream).await?;
    if detected.is_none() && !loaded.exists() {
        return Err(DomainError::NotFound("conflict").into());
    }
    let mut state = loaded.state;
    let mut events = match detected {
        Some(facts) => state.decide(&ConflictCommand::Detect(facts))?,
        None => vec![],
    };
    for e in &events {
        state.evolve(e);
    }
    if let Some(r) = resolution {
        events.extend(state.decide(&ConflictCommand::Resolve {
            resolution: r,
            result_resource_id,
            result_version_id,
            by,
            at: uow.context().now,
        })?);
    }
    uow.emit::<Conflict>(&stream, &events)?;
    Ok(())
}

/// Records or resolves a conflict on its own (MANUAL, or settled without new
/// content), optionally aborting the upload the device's change brought.
pub async fn record_conflict(
    bus: &CommandBus,
    ctx: &CommandContext,
    c: &ConflictRecord,
    result: (Option<String>, Option<String>),
    by: UserId,
    abort_upload: Option<UploadId>,
) -> Result<Committed, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        stage_conflict(&mut uow, c, result.0.clone(), result.1.clone(), by).await?;
        if let Some(u) = abort_upload {
            stage_abort(&mut uow, u).await?;
        }
        uow.commit().await
    })
    .await
}

/// Aborts an upload whose content is not wanted (releases what it holds);
/// sessions already finished are left alone.
async fn stage_abort(uow: &mut UnitOfWork<'_>, upload: UploadId) -> Result<(), CommandError> {
    let s = uow.load::<UploadSession>(&upload.to_string()).await?;
    if let Ok(events) = s.state.decide(&UploadCommand::Abort {
        at: uow.context().now,
    }) {
        uow.emit::<UploadSession>(&upload.to_string(), &events)?;
    }
    Ok(())
}
