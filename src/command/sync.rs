//! Sync commands: devices and cursors, content a device uploaded becoming a
//! file or a version (with the device's record of it), conflicts.

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::{Content, File, FileCommand};
use scaidrive_domain::drive::parent_path;
use scaidrive_domain::drive::upload::{UploadCommand, UploadSession};
use scaidrive_domain::id::{
    ConflictId, FileId, FolderId, ShareId, TenantId, UploadId, UserId, VersionId,
};
use scaidrive_domain::sync::{
    conflicted_copy_name, device_stream, settle, ChangeType, ClientChange, Conflict,
    ConflictCommand, ConflictFacts, ConflictStrategy, Device, DeviceCommand, DeviceInfo,
    ResourceType, Settlement,
};
use scaidrive_domain::{Aggregate, DomainError, LogPosition};
use uuid::Uuid;

use super::drive::{self as drive, FileEdit};
use super::write::{create_file_in, Target};
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

// ---------------------------------------------------------------- settling

/// What one change of a device became.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `applied` or `conflict`.
    pub status: &'static str,
    pub resource_id: Option<String>,
    pub version_id: Option<String>,
    pub conflict_id: Option<String>,
    pub resolution: Option<ConflictStrategy>,
    /// The log position of its last write (`None`: nothing was written).
    pub position: Option<LogPosition>,
}

impl Outcome {
    pub fn applied(
        resource_id: String,
        version_id: Option<String>,
        position: Option<LogPosition>,
    ) -> Self {
        Self {
            status: "applied",
            resource_id: Some(resource_id),
            version_id,
            conflict_id: None,
            resolution: None,
            position,
        }
    }
}

/// Who applies a device's changes to a share, and how conflicts settle.
#[derive(Debug, Clone)]
pub struct Applier {
    pub tenant_id: TenantId,
    pub share_id: ShareId,
    pub device_id: String,
    /// Who a conflicted copy is named after: the device, else the user.
    pub label: String,
    pub user_id: UserId,
    pub strategy: ConflictStrategy,
}

/// Content a device uploaded for a change.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: UploadId,
    pub content: Content,
    /// `Some(checksum)` while the session still has to be completed.
    pub complete_with: Option<String>,
}

impl Upload {
    /// The session to complete with the content, if it is still open.
    fn completing(&self) -> Option<(UploadId, String)> {
        self.complete_with.clone().map(|c| (self.id, c))
    }
}

/// A device's change to a live file of the share, its access checked.
#[derive(Debug, Clone)]
pub struct FileChange {
    /// The change as the device sent it (kept with a conflict).
    pub change: ClientChange,
    pub change_type: ChangeType,
    pub base_version_id: Option<VersionId>,
    pub modified_at: Option<DateTime<Utc>>,
    /// The name a rename or move gives the file.
    pub new_name: Option<String>,
    pub file_id: FileId,
    /// The file's name and path now.
    pub name: String,
    pub path: String,
    pub folder_id: Option<FolderId>,
    /// Where a move goes.
    pub move_target: Option<Target>,
    /// The content of an update.
    pub upload: Option<Upload>,
}

/// How settling a file change ended.
#[derive(Debug, Clone)]
pub enum Settled {
    /// Applied as sent, or settled by the strategy.
    Done(Outcome),
    /// MANUAL: the conflict is stored for a person to resolve.
    Manual(Outcome),
    /// A version landed between the check and the append: check again.
    Raced,
}

/// Records or resolves a conflict with what its change became, aborting
/// `abort` (the change's unwanted upload) in the same commit.
pub async fn record_outcome(
    bus: &CommandBus,
    ctx: &CommandContext,
    record: ConflictRecord,
    out: &Outcome,
    by: UserId,
    abort: Option<UploadId>,
) -> Result<Option<LogPosition>, CommandError> {
    let result = (out.resource_id.clone(), out.version_id.clone());
    let committed = record_conflict(bus, ctx, &record, result, by, abort).await?;
    Ok(committed.position)
}

fn upload_required() -> CommandError {
    DomainError::invalid("upload_session_id", "Field required").into()
}

/// The facts of a conflict found now between `fc` and `server_version`.
fn facts(
    who: &Applier,
    fc: &FileChange,
    server_version: VersionId,
    now: DateTime<Utc>,
) -> ConflictFacts {
    ConflictFacts {
        conflict_id: ConflictId::from_uuid(Uuid::now_v7()),
        tenant_id: who.tenant_id,
        share_id: who.share_id,
        device_id: who.device_id.clone(),
        user_id: who.user_id,
        resource_type: ResourceType::File,
        resource_id: fc.file_id.to_string(),
        name: fc.name.clone(),
        change: fc.change.clone(),
        base_version_id: fc.base_version_id.map(|b| b.to_string()),
        server_version_id: Some(server_version.to_string()),
        strategy: who.strategy,
        at: now,
    }
}

/// Settles a device's change to a file against the file's current version:
/// applied as sent when its base is current, else as the strategy (or, when
/// a stored conflict is being resolved, `existing`'s resolution) decides;
/// a conflict is recorded with the writes that settle it.
pub async fn settle_file(
    bus: &CommandBus,
    ctx: &CommandContext,
    who: &Applier,
    fc: &FileChange,
    existing: Option<(ConflictId, ConflictStrategy)>,
) -> Result<Settled, CommandError> {
    let force = existing.is_some();
    let id = fc.file_id;
    let file = bus.load::<File>(&id.to_string()).await?.state;
    let current = file
        .current()
        .cloned()
        .ok_or(DomainError::NotFound("file"))?;
    let stale = fc
        .base_version_id
        .is_some_and(|b| b != current.content.version_id);
    let settlement = if force {
        match existing.map(|e| e.1) {
            Some(r) => settle(r, fc.change_type, fc.modified_at, current.at)
                .unwrap_or(Settlement::ApplyClient),
            None => Settlement::ApplyClient,
        }
    } else if stale {
        bus.metrics().sync_conflict();
        match settle(who.strategy, fc.change_type, fc.modified_at, current.at) {
            Some(s) => s,
            None => {
                let facts = facts(who, fc, current.content.version_id, ctx.now);
                let out = Outcome {
                    status: "conflict",
                    resource_id: Some(id.to_string()),
                    version_id: Some(current.content.version_id.to_string()),
                    conflict_id: Some(facts.conflict_id.to_string()),
                    resolution: None,
                    position: None,
                };
                let record = ConflictRecord::New {
                    facts: Box::new(facts),
                    resolution: None,
                };
                let position = record_outcome(bus, ctx, record, &out, who.user_id, None).await?;
                return Ok(Settled::Manual(Outcome { position, ..out }));
            }
        }
    } else {
        Settlement::ApplyClient
    };
    let record = |resolution: ConflictStrategy| -> Option<ConflictRecord> {
        match existing {
            Some((cid, r)) => Some(ConflictRecord::Existing {
                id: cid,
                resolution: r,
            }),
            None if stale => Some(ConflictRecord::New {
                facts: Box::new(facts(who, fc, current.content.version_id, ctx.now)),
                resolution: Some(resolution),
            }),
            None => None,
        }
    };
    let chosen = existing.map(|e| e.1).unwrap_or(who.strategy);
    let conflict_of = |r: &Option<ConflictRecord>| match r {
        Some(ConflictRecord::New { facts, .. }) => Some(facts.conflict_id.to_string()),
        Some(ConflictRecord::Existing { id, .. }) => Some(id.to_string()),
        None => None,
    };
    let up = fc.upload.as_ref();
    match settlement {
        Settlement::KeepServer => {
            let rec = record(chosen);
            let out = Outcome {
                status: "conflict",
                resource_id: Some(id.to_string()),
                version_id: Some(current.content.version_id.to_string()),
                conflict_id: conflict_of(&rec),
                resolution: Some(chosen),
                position: None,
            };
            let position = match rec {
                Some(r) => {
                    let abort = up.filter(|u| u.complete_with.is_some()).map(|u| u.id);
                    record_outcome(bus, ctx, r, &out, who.user_id, abort).await?
                }
                None => None,
            };
            Ok(Settled::Done(Outcome { position, ..out }))
        }
        Settlement::KeepBoth => {
            let up = up.ok_or_else(upload_required)?;
            let rec = record(chosen);
            let name = conflicted_copy_name(&fc.name, &who.label, ctx.now.date_naive());
            let write = ContentWrite {
                upload: up.completing(),
                content: up.content.clone(),
                target: ContentTarget::NewFile {
                    tenant: who.tenant_id,
                    target: Target {
                        share_id: who.share_id,
                        folder_id: fc.folder_id,
                        parent_path: parent_path(&fc.path).to_owned(),
                    },
                    name,
                    file_id: FileId::from_uuid(Uuid::now_v7()),
                },
                device_id: who.device_id.clone(),
                share_id: who.share_id,
                change_type: ChangeType::Created,
                by: who.user_id,
                conflict: rec.clone(),
            };
            let (copy, committed) = write_content(bus, ctx, &write).await?;
            Ok(Settled::Done(Outcome {
                status: "conflict",
                resource_id: Some(copy.to_string()),
                version_id: Some(up.content.version_id.to_string()),
                conflict_id: conflict_of(&rec),
                resolution: Some(chosen),
                position: committed.position,
            }))
        }
        Settlement::ApplyClient => {
            let rec = record(chosen);
            // A forced write no longer checks the base: the conflict is settled for the client.
            let base = if stale || force {
                None
            } else {
                fc.base_version_id
            };
            let raced = |e: &CommandError| {
                !force && matches!(e, CommandError::Domain(DomainError::VersionMismatch { .. }))
            };
            let (version_id, position) = match fc.change_type {
                ChangeType::Updated => {
                    let up = up.ok_or_else(upload_required)?;
                    let write = ContentWrite {
                        upload: up.completing(),
                        content: up.content.clone(),
                        target: ContentTarget::NewVersion { file_id: id, base },
                        device_id: who.device_id.clone(),
                        share_id: who.share_id,
                        change_type: ChangeType::Updated,
                        by: who.user_id,
                        conflict: rec.clone(),
                    };
                    match write_content(bus, ctx, &write).await {
                        Ok((_, c)) => (Some(up.content.version_id.to_string()), c.position),
                        // Someone wrote a version between the check and the append.
                        Err(e) if raced(&e) => return Ok(Settled::Raced),
                        Err(e) => return Err(e),
                    }
                }
                other => {
                    let edit = FileEdit {
                        id,
                        by: who.user_id,
                        current_path: &fc.path,
                        base,
                    };
                    let result = match other {
                        ChangeType::Renamed => {
                            let name = fc.new_name.clone().unwrap_or_default();
                            drive::rename_file(bus, ctx, edit, &name).await
                        }
                        ChangeType::Moved => {
                            let target = fc.move_target.clone().ok_or_else(|| {
                                DomainError::BadRequest("a move needs a target".into())
                            })?;
                            drive::move_file(bus, ctx, edit, target, fc.new_name.as_deref()).await
                        }
                        _ => drive::trash_file(bus, ctx, edit, false).await,
                    };
                    let committed = match result {
                        Ok(c) => c,
                        // A version landed between the check above and the
                        // append: decide again against it.
                        Err(e) if raced(&e) => return Ok(Settled::Raced),
                        Err(e) => return Err(e),
                    };
                    let mut position = committed.position;
                    let version = Some(current.content.version_id.to_string());
                    if let Some(r) = rec.clone() {
                        let out = Outcome::applied(id.to_string(), version.clone(), None);
                        position = record_outcome(bus, ctx, r, &out, who.user_id, None)
                            .await?
                            .or(position);
                    }
                    (version, position)
                }
            };
            Ok(Settled::Done(Outcome {
                status: "applied",
                resource_id: Some(id.to_string()),
                version_id,
                conflict_id: conflict_of(&rec),
                resolution: rec.as_ref().map(|_| chosen),
                position,
            }))
        }
    }
}
