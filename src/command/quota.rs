//! Quota commands: which accounts a write into a share must reserve on, and
//! the reserve / commit / release / free steps staged into the caller's unit
//! of work, so the check and the reservation commit with the write itself.
//!
//! Only accounts a limit applies to are loaded into the unit of work: the
//! others track nothing (their usage is the read model's), and keeping them
//! out of the append keeps unlimited tenants free of a shared hot stream.

use chrono::{DateTime, Utc};
use scaidrive_domain::drive::share::Share;
use scaidrive_domain::drive::upload::{UploadCommand, UploadSession};
use scaidrive_domain::drive::Owner;
use scaidrive_domain::id::{ShareId, TenantId};
use scaidrive_domain::quota::account::QuotaTarget;
use scaidrive_domain::quota::{QuotaAccount, QuotaCommand, QuotaEvent, QuotaLevel, QuotaLimit};
use scaidrive_domain::tenancy::Tenant;
use scaidrive_domain::{Aggregate, DomainError};
use scaidrive_projections::db::Db;

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
