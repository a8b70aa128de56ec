//! Quota commands: which accounts a write into a share must reserve on, and
//! the reserve / commit / release / free steps staged into the caller's unit
//! of work, so the check and the reservation commit with the write itself.
//!
//! Only accounts a limit applies to are loaded into the unit of work: the
//! others track nothing (their usage is the read model's), and keeping them
//! out of the append keeps unlimited tenants free of a shared hot stream.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::Content;
use scaidrive_domain::drive::share::Share;
use scaidrive_domain::drive::upload::{UploadCommand, UploadSession};
use scaidrive_domain::drive::Owner;
use scaidrive_domain::id::{FileId, ShareId, TenantId, UploadId, UserId};
use scaidrive_domain::quota::account::QuotaTarget;
use scaidrive_domain::quota::{QuotaAccount, QuotaCommand, QuotaEvent, QuotaLevel, QuotaLimit};
use scaidrive_domain::tenancy::Tenant;
use scaidrive_domain::{Aggregate, DomainError};
use scaidrive_projections::db::Db;

use super::write::{create_file_in, Target};
use super::{CommandBus, CommandContext, CommandError, Committed, UnitOfWork};

/// One level that applies to a write, with the limit it has by default.
#[derive(Debug, Clone)]
pub struct AccountRef {
    pub target: QuotaTarget,
    /// A limit that applies without an explicit one (share `quota_bytes`,
    /// else the tenant's `default_share_quota_bytes`).
    pub default_limit: Option<u64>,
}

impl AccountRef {
    pub fn stream_id(&self) -> String {
        self.target.quota_id.to_string()
    }
}

fn store_err(e: sqlx::Error) -> CommandError {
    CommandError::Store(crate::store::StoreError::from_sqlx(e))
}

/// The levels of SPEC §5 for a share, most specific first: the share, its
/// owner (user or group), the tenant, the partner.
pub async fn levels_for_share(
    bus: &CommandBus,
    share_id: ShareId,
) -> Result<Vec<AccountRef>, CommandError> {
    let share = bus.load::<Share>(&share_id.to_string()).await?.state;
    let tenant_id = share.tenant_id.ok_or(DomainError::NotFound("share"))?;
    let tenant = bus.load::<Tenant>(&tenant_id.to_string()).await?.state;
    let share_default = share
        .quota_bytes
        .or(tenant.settings.default_share_quota_bytes);
    let t = Some(tenant_id);
    let mut refs = vec![AccountRef {
        target: QuotaTarget::new(QuotaLevel::Share, &share_id.to_string(), t),
        default_limit: share_default,
    }];
    match share.owner {
        Some(Owner::User(u)) => refs.push(AccountRef {
            target: QuotaTarget::new(QuotaLevel::User, &u.to_string(), t),
            default_limit: None,
        }),
        Some(Owner::Group(g)) => refs.push(AccountRef {
            target: QuotaTarget::new(QuotaLevel::Group, &g.to_string(), t),
            default_limit: None,
        }),
        None => {}
    }
    refs.push(AccountRef {
        target: QuotaTarget::new(QuotaLevel::Tenant, &tenant_id.to_string(), t),
        default_limit: None,
    });
    if let Some(p) = tenant.partner_id {
        refs.push(AccountRef {
            target: QuotaTarget::new(QuotaLevel::Partner, &p.to_string(), None),
            default_limit: None,
        });
    }
    Ok(refs)
}

/// The accounts a write into `share_id` must reserve on now (a limit applies
/// and the account is not exempt), most specific first.
pub async fn enforcing_for_share(
    bus: &CommandBus,
    share_id: ShareId,
) -> Result<Vec<AccountRef>, CommandError> {
    let mut out = Vec::new();
    for r in levels_for_share(bus, share_id).await? {
        let acc = bus.load::<QuotaAccount>(&r.stream_id()).await?;
        if acc.state.enforces(r.default_limit) {
            out.push(r);
        }
    }
    Ok(out)
}

/// The read model's usage of a target: the baseline of an account that
/// starts tracking.
async fn baseline(db: &Db, target: &QuotaTarget) -> Result<u64, CommandError> {
    let u = scaidrive_projections::quota::usage(db, target.target_type, &target.target_id)
        .await
        .map_err(store_err)?;
    Ok(u.used_bytes.max(0) as u64)
}

/// Reserves `bytes` on every account in `accounts` (most specific first, so
/// the first refusal names the most specific level). Returns the stream ids
/// that now hold the reservation.
pub async fn reserve_in(
    uow: &mut UnitOfWork<'_>,
    db: &Db,
    accounts: &[AccountRef],
    reservation_id: &str,
    bytes: u64,
) -> Result<Vec<String>, CommandError> {
    let staged = stage_reservations(uow, db, accounts, reservation_id, bytes).await?;
    for (stream, events, state) in &staged {
        uow.emit_with_state::<QuotaAccount>(stream, events, Some(state.clone()))?;
    }
    Ok(staged.into_iter().map(|s| s.0).collect())
}

type Staged = (String, Vec<QuotaEvent>, QuotaAccount);

async fn stage_reservations(
    uow: &mut UnitOfWork<'_>,
    db: &Db,
    accounts: &[AccountRef],
    reservation_id: &str,
    bytes: u64,
) -> Result<Vec<Staged>, CommandError> {
    let at = uow.context().now;
    let mut staged = Vec::new();
    for r in accounts {
        let stream = r.stream_id();
        let acc = uow.load::<QuotaAccount>(&stream).await?;
        let base = if acc.state.needs_baseline(r.default_limit) {
            baseline(db, &r.target).await?
        } else {
            0
        };
        let events = acc.state.decide(&QuotaCommand::Reserve {
            target: r.target.clone(),
            reservation_id: reservation_id.to_owned(),
            bytes,
            default_limit: r.default_limit,
            baseline: base,
            at,
        })?;
        if events.is_empty() {
            continue;
        }
        let mut state = acc.state;
        for e in &events {
            state.evolve(e);
        }
        staged.push((stream, events, state));
    }
    Ok(staged)
}

/// Reserves and at once commits (a write whose bytes are already stored).
pub async fn charge_in(
    uow: &mut UnitOfWork<'_>,
    db: &Db,
    accounts: &[AccountRef],
    reservation_id: &str,
    bytes: u64,
) -> Result<(), CommandError> {
    let at = uow.context().now;
    for (stream, mut events, mut state) in
        stage_reservations(uow, db, accounts, reservation_id, bytes).await?
    {
        let committed = state.decide(&QuotaCommand::Commit {
            reservation_id: reservation_id.to_owned(),
            at,
        })?;
        for e in &committed {
            state.evolve(e);
        }
        events.extend(committed);
        uow.emit_with_state::<QuotaAccount>(&stream, &events, Some(state))?;
    }
    Ok(())
}

/// Commits (`release_reason` None) or releases a reservation on the accounts
/// that may hold it; accounts that do not hold it are left out of the append.
pub async fn settle_in(
    uow: &mut UnitOfWork<'_>,
    streams: &[String],
    reservation_id: &str,
    release_reason: Option<&str>,
) -> Result<(), CommandError> {
    let at = uow.context().now;
    for stream in streams {
        let acc = uow.load::<QuotaAccount>(stream).await?;
        let cmd = match release_reason {
            None => QuotaCommand::Commit {
                reservation_id: reservation_id.to_owned(),
                at,
            },
            Some(reason) => QuotaCommand::Release {
                reservation_id: reservation_id.to_owned(),
                reason: reason.to_owned(),
                at,
            },
        };
        let events = acc.state.decide(&cmd)?;
        let mut state = acc.state;
        for e in &events {
            state.evolve(e);
        }
        uow.emit_with_state::<QuotaAccount>(stream, &events, Some(state))?;
    }
    Ok(())
}

/// Frees a purged file's bytes on the tracking accounts of its share.
pub async fn free_in(
    uow: &mut UnitOfWork<'_>,
    share_id: ShareId,
    file_id: &str,
    bytes: u64,
    at: DateTime<Utc>,
) -> Result<(), CommandError> {
    let bus = uow.bus;
    for r in levels_for_share(bus, share_id).await? {
        let stream = r.stream_id();
        if !bus.load::<QuotaAccount>(&stream).await?.state.tracking {
            continue;
        }
        let acc = uow.load::<QuotaAccount>(&stream).await?;
        let events = acc.state.decide(&QuotaCommand::Free {
            bytes,
            file_id: file_id.to_owned(),
            at,
        })?;
        let mut state = acc.state;
        for e in &events {
            state.evolve(e);
        }
        uow.emit_with_state::<QuotaAccount>(&stream, &events, Some(state))?;
    }
    Ok(())
}

/// Charges bytes a drive operation adds to a share (a copy, a move from
/// another share) on the share's levels that track bytes now, refusing past
/// a limit. Levels in `except` (shared with the source) are left alone; levels
/// not yet tracking need nothing: their baseline, taken when tracking starts,
/// is the read model's usage, which includes these bytes.
pub async fn charge_tracked_in(
    uow: &mut UnitOfWork<'_>,
    share_id: ShareId,
    except: &[String],
    reservation_id: &str,
    bytes: u64,
) -> Result<(), CommandError> {
    let bus = uow.bus;
    let at = uow.context().now;
    for r in levels_for_share(bus, share_id).await? {
        let stream = r.stream_id();
        if except.contains(&stream) {
            continue;
        }
        let peek = bus.load::<QuotaAccount>(&stream).await?.state;
        if !(peek.tracking && peek.enforces(r.default_limit)) {
            continue;
        }
        let acc = uow.load::<QuotaAccount>(&stream).await?;
        let mut state = acc.state;
        let mut events = state.decide(&QuotaCommand::Reserve {
            target: r.target.clone(),
            reservation_id: reservation_id.to_owned(),
            bytes,
            default_limit: r.default_limit,
            baseline: 0,
            at,
        })?;
        for e in &events {
            state.evolve(e);
        }
        let committed = state.decide(&QuotaCommand::Commit {
            reservation_id: reservation_id.to_owned(),
            at,
        })?;
        for e in &committed {
            state.evolve(e);
        }
        events.extend(committed);
        uow.emit_with_state::<QuotaAccount>(&stream, &events, Some(state))?;
    }
    Ok(())
}

/// Moves a file's bytes between shares: charged on the target's levels that
/// the source does not share, freed on the source's levels the target does
/// not share.
pub async fn transfer_in(
    uow: &mut UnitOfWork<'_>,
    from: ShareId,
    to: ShareId,
    file_id: &str,
    bytes: u64,
) -> Result<(), CommandError> {
    if from == to || bytes == 0 {
        return Ok(());
    }
    let bus = uow.bus;
    let source: Vec<String> = levels_for_share(bus, from)
        .await?
        .iter()
        .map(AccountRef::stream_id)
        .collect();
    let target: Vec<String> = levels_for_share(bus, to)
        .await?
        .iter()
        .map(AccountRef::stream_id)
        .collect();
    charge_tracked_in(
        uow,
        to,
        &source,
        &format!("move:{file_id}:{}", uow.context().now.timestamp_micros()),
        bytes,
    )
    .await?;
    let at = uow.context().now;
    for stream in source.iter().filter(|s| !target.contains(s)) {
        if !bus.load::<QuotaAccount>(stream).await?.state.tracking {
            continue;
        }
        let acc = uow.load::<QuotaAccount>(stream).await?;
        let events = acc.state.decide(&QuotaCommand::Free {
            bytes,
            file_id: file_id.to_owned(),
            at,
        })?;
        let mut state = acc.state;
        for e in &events {
            state.evolve(e);
        }
        uow.emit_with_state::<QuotaAccount>(stream, &events, Some(state))?;
    }
    Ok(())
}

/// Aborts (or expires) an upload session and releases its reservation in the
/// same append.
pub async fn end_upload(
    bus: &CommandBus,
    ctx: &CommandContext,
    upload_id: &str,
    expire: bool,
) -> Result<Committed, CommandError> {
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let s = uow.load::<UploadSession>(upload_id).await?;
        let cmd = if expire {
            UploadCommand::Expire { at: ctx.now }
        } else {
            UploadCommand::Abort { at: ctx.now }
        };
        let events = s.state.decide(&cmd)?;
        if events.is_empty() {
            return Ok(Committed::default());
        }
        uow.emit::<UploadSession>(upload_id, &events)?;
        let accounts = s
            .state
            .plan
            .as_ref()
            .map(|p| p.quota_accounts.clone())
            .unwrap_or_default();
        let reason = if expire { "expired" } else { "aborted" };
        settle_in(&mut uow, &accounts, upload_id, Some(reason)).await?;
        uow.commit().await
    })
    .await
}

/// Sets (or replaces) a limit; tracking starts from the read model's usage.
pub async fn set_limit(
    bus: &CommandBus,
    db: &Db,
    ctx: &CommandContext,
    target: QuotaTarget,
    limit: QuotaLimit,
) -> Result<(QuotaAccount, Committed), CommandError> {
    let stream = target.quota_id.to_string();
    let _guard = bus.locks().lock(&stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let acc = uow.load::<QuotaAccount>(&stream).await?;
        let base = if !acc.state.tracking {
            baseline(db, &target).await?
        } else {
            0
        };
        let events = acc.state.decide(&QuotaCommand::SetLimit {
            target: target.clone(),
            limit: limit.clone(),
            baseline: base,
            at: ctx.now,
        })?;
        let mut state = acc.state;
        for e in &events {
            state.evolve(e);
        }
        uow.emit_with_state::<QuotaAccount>(&stream, &events, Some(state.clone()))?;
        Ok((state, uow.commit().await?))
    })
    .await
}

/// Removes an explicit limit (the account stops tracking).
pub async fn remove_limit(
    bus: &CommandBus,
    ctx: &CommandContext,
    target: &QuotaTarget,
) -> Result<Committed, CommandError> {
    let stream = target.quota_id.to_string();
    let (_, committed) = bus
        .execute::<QuotaAccount, _>(&stream, ctx, |a| {
            a.state.decide(&QuotaCommand::RemoveLimit { at: ctx.now })
        })
        .await?;
    Ok(committed)
}

/// Exempts an account (or ends the exemption, tracking again from the read model).
pub async fn set_exempt(
    bus: &CommandBus,
    db: &Db,
    ctx: &CommandContext,
    target: QuotaTarget,
    exempt: bool,
    reason: Option<String>,
) -> Result<(QuotaAccount, Committed), CommandError> {
    let stream = target.quota_id.to_string();
    let _guard = bus.locks().lock(&stream).await;
    bus.retrying(|| async {
        let mut uow = bus.begin(ctx);
        let acc = uow.load::<QuotaAccount>(&stream).await?;
        let base = if !exempt && !acc.state.tracking {
            baseline(db, &target).await?
        } else {
            0
        };
        let events = acc.state.decide(&QuotaCommand::SetExempt {
            target: target.clone(),
            exempt,
            reason: reason.clone(),
            baseline: base,
            at: ctx.now,
        })?;
        let mut state = acc.state;
        for e in &events {
            state.evolve(e);
        }
        uow.emit_with_state::<QuotaAccount>(&stream, &events, Some(state.clone()))?;
        Ok((state, uow.commit().await?))
    })
    .await
}

/// A target in a tenant (share, user, group, tenant levels).
pub fn target(level: QuotaLevel, id: &str, tenant: Option<TenantId>) -> QuotaTarget {
    QuotaTarget::new(level, id, tenant)
}

/// A write that adds bytes, described as data so that writes queued behind
/// the same quota accounts can be decided together and appended at once.
#[derive(Debug, Clone)]
pub enum Write {
    /// A simple upload: the file (content already stored) and its charge.
    CreateFile {
        tenant_id: TenantId,
        target: Target,
        /// Already normalised.
        name: String,
        content: Content,
        by: UserId,
        file_id: FileId,
    },
    /// A resumable upload session and its reservation.
    StartUpload {
        upload_id: UploadId,
        command: UploadCommand,
    },
}

/// One write with who makes it and what it reserves.
#[derive(Debug, Clone)]
pub struct Job {
    pub ctx: CommandContext,
    pub write: Write,
    /// The enforcing accounts, most specific first.
    pub accounts: Vec<AccountRef>,
    pub reservation_id: String,
    pub bytes: u64,
}

/// What a write produced: the commit and, for a session, its state.
pub type WriteResult = Result<(Committed, Option<UploadSession>), CommandError>;

impl Job {
    /// Commits at once (the bytes are stored) rather than holding a reservation.
    fn commits_now(&self) -> bool {
        matches!(self.write, Write::CreateFile { .. })
    }
}

/// Stages the write's own events (not its quota events) into `uow`.
async fn stage_write(
    uow: &mut UnitOfWork<'_>,
    write: &Write,
) -> Result<Option<UploadSession>, CommandError> {
    match write {
        Write::CreateFile {
            tenant_id,
            target,
            name,
            content,
            by,
            file_id,
        } => {
            create_file_in(
                uow,
                *tenant_id,
                target.clone(),
                name,
                content.clone(),
                *by,
                *file_id,
            )
            .await?;
            Ok(None)
        }
        Write::StartUpload { upload_id, command } => {
            let stream = upload_id.to_string();
            let s = uow.load::<UploadSession>(&stream).await?;
            let events = s.state.decide(command)?;
            let mut session = s.state;
            for e in &events {
                session.evolve(e);
            }
            uow.emit_with_state::<UploadSession>(&stream, &events, Some(session.clone()))?;
            Ok(Some(session))
        }
    }
}

/// One write in its own append, decided again on conflict.
async fn run_single(bus: &CommandBus, db: &Db, job: &Job) -> WriteResult {
    bus.retrying(|| async {
        let mut uow = bus.begin(&job.ctx);
        let session = stage_write(&mut uow, &job.write).await?;
        if job.commits_now() {
            charge_in(&mut uow, db, &job.accounts, &job.reservation_id, job.bytes).await?;
        } else {
            reserve_in(&mut uow, db, &job.accounts, &job.reservation_id, job.bytes).await?;
        }
        Ok((uow.commit().await?, session))
    })
    .await
}

type Reply = tokio::sync::oneshot::Sender<WriteResult>;

/// Writes waiting behind one set of accounts, and whose turn it is.
#[derive(Default)]
struct Queue {
    jobs: parking_lot::Mutex<Vec<(Job, Reply)>>,
    turn: tokio::sync::Mutex<()>,
}

type QueueKey = (usize, String);

static QUEUES: std::sync::LazyLock<
    parking_lot::Mutex<std::collections::HashMap<QueueKey, std::sync::Arc<Queue>>>,
> = std::sync::LazyLock::new(Default::default);

/// Performs a write that reserves quota.
///
/// Writes that reserve on the same accounts queue in-process; whoever gets
/// the turn takes every write queued so far, decides them one after another
/// against the accounts' state (each refusal answers only its own write) and
/// appends them all in ONE transaction. So 32 writers into one tenant cost
/// about one append per batch instead of 32 serialised appends, while the
/// accounts' version check still makes any concurrent writer (another
/// process) conflict and decide again: never an overshoot.
pub async fn submit(bus: &CommandBus, db: &Db, job: Job) -> WriteResult {
    if job.accounts.is_empty() {
        return run_single(bus, db, &job).await;
    }
    let mut streams: Vec<String> = job.accounts.iter().map(AccountRef::stream_id).collect();
    streams.sort();
    let key = (bus as *const CommandBus as usize, streams.join(","));
    let queue = QUEUES.lock().entry(key).or_default().clone();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    queue.jobs.lock().push((job, tx));
    let turn = queue.turn.lock().await;
    // A previous batch may have taken (and answered) this write already.
    if let Ok(answer) = rx.try_recv() {
        return answer;
    }
    let batch = std::mem::take(&mut *queue.jobs.lock());
    run_batch(bus, db, batch).await;
    drop(turn);
    rx.await.unwrap_or_else(|_| {
        Err(CommandError::Store(crate::store::StoreError::Unavailable(
            "the write's batch ended without an answer".into(),
        )))
    })
}

async fn run_batch(bus: &CommandBus, db: &Db, batch: Vec<(Job, Reply)>) {
    if batch.len() == 1 {
        for (job, reply) in batch {
            let _ = reply.send(run_single(bus, db, &job).await);
        }
        return;
    }
    let mut tries = 0;
    loop {
        tries += 1;
        match try_batch(bus, db, &batch).await {
            Ok((committed, results)) => {
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(result.map(|s| (committed.clone(), s)));
                }
                return;
            }
            Err(e) if e.is_retryable() && tries < super::MAX_ATTEMPTS => {
                tokio::task::yield_now().await;
            }
            // A name taken meanwhile, or any other failure of the shared
            // append: each write goes again on its own for its own answer.
            Err(_) => {
                for (job, reply) in batch {
                    let _ = reply.send(run_single(bus, db, &job).await);
                }
                return;
            }
        }
    }
}

type JobResult = Result<Option<UploadSession>, CommandError>;

/// Decides every write of a batch in order and commits the accepted ones in
/// one append; refused writes get their own error.
async fn try_batch(
    bus: &CommandBus,
    db: &Db,
    batch: &[(Job, Reply)],
) -> Result<(Committed, Vec<JobResult>), CommandError> {
    let mut uow = bus.begin(&batch[0].0.ctx);
    let mut states: BTreeMap<String, QuotaAccount> = BTreeMap::new();
    for (job, _) in batch {
        for r in &job.accounts {
            let stream = r.stream_id();
            if let std::collections::btree_map::Entry::Vacant(v) = states.entry(stream) {
                let loaded = uow.load::<QuotaAccount>(v.key()).await?;
                v.insert(loaded.state);
            }
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    for (job, _) in batch {
        let mut scratch = bus.begin(&job.ctx);
        let session = match stage_write(&mut scratch, &job.write).await {
            Ok(s) => s,
            Err(e) if e.is_retryable() || matches!(e, CommandError::Store(_)) => return Err(e),
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        match decide_reservation(db, job, &states).await {
            Ok(decided) => {
                uow.ctx = job.ctx.clone();
                for (stream, events, state) in decided {
                    uow.emit_with_state::<QuotaAccount>(&stream, &events, Some(state.clone()))?;
                    states.insert(stream, state);
                }
                merge(&mut uow, scratch);
                results.push(Ok(session));
            }
            Err(e) if matches!(e, CommandError::Store(_)) => return Err(e),
            Err(e) => results.push(Err(e)),
        }
    }
    let committed = uow.commit().await?;
    Ok((committed, results))
}

/// The job's quota events on the batch's current account states.
async fn decide_reservation(
    db: &Db,
    job: &Job,
    states: &BTreeMap<String, QuotaAccount>,
) -> Result<Vec<Staged>, CommandError> {
    let at = job.ctx.now;
    let mut out = Vec::new();
    for r in &job.accounts {
        let stream = r.stream_id();
        let Some(state) = states.get(&stream) else {
            continue;
        };
        let base = if state.needs_baseline(r.default_limit) {
            baseline(db, &r.target).await?
        } else {
            0
        };
        let mut events = state.decide(&QuotaCommand::Reserve {
            target: r.target.clone(),
            reservation_id: job.reservation_id.clone(),
            bytes: job.bytes,
            default_limit: r.default_limit,
            baseline: base,
            at,
        })?;
        if events.is_empty() {
            continue;
        }
        let mut state = state.clone();
        for e in &events {
            state.evolve(e);
        }
        if job.commits_now() {
            let committed = state.decide(&QuotaCommand::Commit {
                reservation_id: job.reservation_id.clone(),
                at,
            })?;
            for e in &committed {
                state.evolve(e);
            }
            events.extend(committed);
        }
        out.push((stream, events, state));
    }
    Ok(out)
}

/// Moves a write's staged streams and claims into the batch's unit of work.
fn merge(uow: &mut UnitOfWork<'_>, scratch: UnitOfWork<'_>) {
    for (stream, staged) in scratch.streams {
        match uow.streams.entry(stream) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(staged);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let mine = o.get_mut();
                if !staged.events.is_empty() {
                    mine.events.extend(staged.events);
                    mine.state = None;
                }
            }
        }
    }
    uow.claims.extend(scratch.claims);
}
