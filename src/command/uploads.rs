//! Resumable upload commands: receive a chunk, complete a session into a new
//! file or a new version (with its quota settled in the same append). Start
//! and abort go through [`super::quota`] (the reservation is part of them).

use scaidrive_domain::drive::file::{Content, File, FileCommand};
use scaidrive_domain::drive::upload::{UploadCommand, UploadPlan, UploadSession};
use scaidrive_domain::id::{FileId, UploadId, UserId};
use scaidrive_domain::name::normalize;
use scaidrive_domain::Aggregate;
use scaidrive_projections::db::Db;

use super::quota::{charge_in, settle_in, AccountRef};
use super::write::{create_file_in, Target};
use super::{CommandBus, CommandContext, CommandError, Committed};

/// A chunk the blob store holds now, recorded in its session.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub index: u64,
    pub sha256: String,
    pub size: u64,
    /// The tenant stored these bytes already.
    pub deduplicated: bool,
}

/// Records a received chunk in the session `upload_id`.
pub async fn receive_chunk(
    bus: &CommandBus,
    ctx: &CommandContext,
    upload_id: &str,
    chunk: Chunk,
) -> Result<Committed, CommandError> {
    let cmd = UploadCommand::ReceiveChunk {
        index: chunk.index,
        sha256: chunk.sha256,
        size: chunk.size,
        deduplicated: chunk.deduplicated,
        at: ctx.now,
    };
    let (_, committed) = bus
        .execute::<UploadSession, _>(upload_id, ctx, |s| s.state.decide(&cmd))
        .await?;
    Ok(committed)
}

/// A session's content, checked, and where it goes.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub upload_id: UploadId,
    pub plan: &'a UploadPlan,
    /// The assembled content; its checksum is the one computed from the chunks.
    pub content: Content,
    /// The new file's id, or the file that gets a new version.
    pub file_id: FileId,
    /// The path of the folder the new file goes into.
    pub parent_path: String,
    /// Levels limited since the session started (no reservation): charged now.
    pub late: Vec<AccountRef>,
    pub by: UserId,
}

/// Completes a session: settles its reservations, charges late levels, and
/// creates the file (or adds the version) in one append.
pub async fn complete(
    bus: &CommandBus,
    db: &Db,
    ctx: &CommandContext,
    c: &Completion<'_>,
) -> Result<Committed, CommandError> {
    let id = c.upload_id.to_string();
    let plan = c.plan;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        settle_in(&mut uow, &plan.quota_accounts, &id, None).await?;
        charge_in(&mut uow, db, &c.late, &id, plan.file_size).await?;
        let s = uow.load::<UploadSession>(&id).await?;
        let done = s.state.decide(&UploadCommand::Complete {
            computed_checksum: c.content.checksum_sha256.clone(),
            file_id: c.file_id,
            version_id: c.content.version_id,
            at: ctx.now,
        })?;
        uow.emit::<UploadSession>(&id, &done)?;
        match plan.replace_file_id {
            Some(fid) => {
                let f = uow.load::<File>(&fid.to_string()).await?;
                let events = f.state.decide(&FileCommand::AddVersion {
                    base_version_id: plan.base_version_id,
                    content: c.content.clone(),
                    by: c.by,
                    at: ctx.now,
                })?;
                uow.emit::<File>(&fid.to_string(), &events)?;
            }
            None => {
                let target = Target {
                    share_id: plan.share_id,
                    folder_id: plan.folder_id,
                    parent_path: c.parent_path.clone(),
                };
                let name = normalize(&plan.file_name);
                create_file_in(
                    &mut uow,
                    plan.tenant_id,
                    target,
                    &name,
                    c.content.clone(),
                    c.by,
                    c.file_id,
                )
                .await?;
            }
        }
        uow.commit().await
    })
    .await
}
