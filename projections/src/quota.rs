//! Quota usage and settings: the bytes of every file (all versions; trash
//! apart from live), folders, share owners, tenants' partners and open upload
//! reservations, summed per level on read; the accounts' settings; and the
//! warning emails a crossed threshold queues.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::FileEvent;
use scaidrive_domain::drive::folder::FolderEvent;
use scaidrive_domain::drive::share::ShareEvent;
use scaidrive_domain::drive::upload::UploadEvent;
use scaidrive_domain::quota::account::QuotaTarget;
use scaidrive_domain::quota::{QuotaEvent, QuotaLevel};
use scaidrive_domain::tenancy::TenantEvent;
use scaidrive_domain::{AnyEvent, DecodedEvent, RecordedEvent};

use crate::db::{Db, Tx};
use crate::outbox::{enqueue, Message};
use crate::projection::{typed, Projection, ProjectionError};
use crate::{db_fetch_all, db_fetch_optional, tx_execute, tx_fetch_all, tx_insert_rows};

/// Folds drive, tenant, upload and quota events into the `rm_quota_*` tables.
pub struct QuotaProjection;

/// Descendant folders of `$1` (not `$1` itself).
const SUBTREE: &str = "WITH RECURSIVE sub(id) AS (\
     SELECT folder_id FROM rm_quota_folders WHERE parent_id = $1 \
     UNION ALL SELECT f.folder_id FROM rm_quota_folders f JOIN sub ON f.parent_id = sub.id) ";

/// A `rm_quota_folders` row for a created folder.
struct QuotaFolder {
    folder_id: String,
    tenant_id: String,
    share_id: String,
    parent_id: Option<String>,
}

impl QuotaFolder {
    /// The row a `folder-created` event adds (`None` for other events).
    fn of(e: &FolderEvent) -> Option<Self> {
        match e {
            FolderEvent::FolderCreated {
                folder_id,
                tenant_id,
                share_id,
                parent_id,
                ..
            } => Some(QuotaFolder {
                folder_id: folder_id.to_string(),
                tenant_id: tenant_id.to_string(),
                share_id: share_id.to_string(),
                parent_id: parent_id.map(|p| p.to_string()),
            }),
            _ => None,
        }
    }
}

/// Rows per `rm_quota_folders` `INSERT`.
const FOLDERS_PER_INSERT: usize = 1000;

/// Writes `folders` (and empties it), in one statement per
/// [`FOLDERS_PER_INSERT`].
async fn insert_folders(tx: &mut Tx, folders: &mut Vec<QuotaFolder>) -> Result<(), sqlx::Error> {
    for chunk in folders.chunks(FOLDERS_PER_INSERT) {
        tx_insert_rows!(
            &mut *tx,
            "INSERT INTO rm_quota_folders (folder_id, tenant_id, share_id, parent_id) ",
            chunk,
            |mut row, f: &QuotaFolder| {
                row.push_bind(&f.folder_id)
                    .push_bind(&f.tenant_id)
                    .push_bind(&f.share_id)
                    .push_bind(&f.parent_id);
            },
            " ON CONFLICT (folder_id) DO NOTHING"
        )?;
    }
    folders.clear();
    Ok(())
}

async fn upsert_account(
    tx: &mut Tx,
    t: &QuotaTarget,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO rm_quota_accounts (quota_id, tenant_id, target_type, target_id, modified_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (quota_id) DO NOTHING",
        t.quota_id.to_string(),
        t.tenant_id.map(|x| x.to_string()),
        t.target_type.as_str(),
        &t.target_id,
        at
    )?;
    Ok(())
}

/// Who hears about a crossed threshold: the user (user level), the owning
/// user (share level), else the tenant's admins.
async fn warning_recipients(
    tx: &mut Tx,
    t: &QuotaTarget,
    tenant: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let direct = match t.target_type {
        QuotaLevel::User => Some(t.target_id.clone()),
        QuotaLevel::Share => tx_fetch_all!(
            tx,
            (String,),
            "SELECT owner_id FROM rm_quota_shares WHERE share_id = $1",
            &t.target_id
        )?
        .into_iter()
        .map(|r| r.0)
        .find(|o| o.starts_with("usr_")),
        _ => None,
    };
    let rows: Vec<(Option<String>,)> = match direct {
        Some(user) => tx_fetch_all!(
            tx,
            (Option<String>,),
            "SELECT email FROM rm_users WHERE id = $1",
            user
        )?,
        None => tx_fetch_all!(
            tx,
            (Option<String>,),
            "SELECT email FROM rm_users WHERE tenant_id = $1 AND admin_role IS NOT NULL ORDER BY id",
            tenant.unwrap_or_default().to_owned()
        )?,
    };
    Ok(rows.into_iter().filter_map(|r| r.0).collect())
}

#[async_trait]
impl Projection for QuotaProjection {
    fn name(&self) -> &'static str {
        "quota"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, t: &str) -> bool {
        t == "tenant-provisioned"
            || t == "share-created"
            || t.starts_with("folder-")
            || t.starts_with("file-")
            || t == "upload-started"
            || t == "upload-completed"
            || t == "upload-aborted"
            || t == "upload-expired"
            || t.starts_with("quota-")
    }

    /// A run of `folder-created` events goes in one multi-row `INSERT`
    /// (written before any other event is applied); the rest as
    /// [`apply`](Self::apply) does it.
    async fn apply_all(&self, tx: &mut Tx, events: &[DecodedEvent]) -> Result<(), ProjectionError> {
        let mut run: Vec<QuotaFolder> = Vec::new();
        for event in events.iter().filter(|e| self.handles(&e.event_type)) {
            if let AnyEvent::Folder(e) = typed(event)? {
                if let Some(folder) = QuotaFolder::of(e) {
                    run.push(folder);
                    continue;
                }
            }
            insert_folders(tx, &mut run).await?;
            self.apply(tx, event).await?;
        }
        insert_folders(tx, &mut run).await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let tenant = event.tenant_id.clone().unwrap_or_default();
        match typed(event)? {
            AnyEvent::Tenant(TenantEvent::TenantProvisioned {
                tenant_id,
                partner_id,
                ..
            }) => {
                tx_execute!(
                    tx,
                    "INSERT INTO rm_quota_tenants (tenant_id, partner_id) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING",
                    tenant_id.to_string(),
                    partner_id.to_string()
                )?;
            }
            AnyEvent::Share(ShareEvent::ShareCreated {
                share_id,
                tenant_id,
                owner_id,
                ..
            }) => {
                tx_execute!(
                    tx,
                    "INSERT INTO rm_quota_shares (share_id, tenant_id, owner_id) VALUES ($1, $2, $3) ON CONFLICT (share_id) DO NOTHING",
                    share_id.to_string(),
                    tenant_id.to_string(),
                    owner_id.to_string()
                )?;
            }
            AnyEvent::Folder(e) => self.apply_folder(tx, e.clone()).await?,
            AnyEvent::File(e) => self.apply_file(tx, e.clone()).await?,
            AnyEvent::Upload(e) => match e {
                UploadEvent::UploadStarted {
                    upload_id, plan, ..
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_quota_reservations (upload_id, tenant_id, share_id, bytes) VALUES ($1, $2, $3, $4) ON CONFLICT (upload_id) DO NOTHING",
                        upload_id.to_string(),
                        plan.tenant_id.to_string(),
                        plan.share_id.to_string(),
                        plan.file_size as i64
                    )?;
                }
                UploadEvent::UploadCompleted { upload_id, .. }
                | UploadEvent::UploadAborted { upload_id, .. }
                | UploadEvent::UploadExpired { upload_id, .. } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_quota_reservations WHERE upload_id = $1",
                        upload_id.to_string()
                    )?;
                }
                UploadEvent::UploadChunkReceived { .. } => {}
            },
            AnyEvent::Quota(e) => self.apply_quota(tx, event, &tenant, e.clone()).await?,
            _ => {}
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_quota_files",
            "rm_quota_folders",
            "rm_quota_shares",
            "rm_quota_tenants",
            "rm_quota_reservations",
            "rm_quota_accounts",
        ]
    }

    /// The usage rows. Not the tenants' partners nor the accounts' settings:
    /// those may be written by another tenant's caller (a partner admin).
    fn tenant_tables(&self) -> &'static [&'static str] {
        &[
            "rm_quota_files",
            "rm_quota_folders",
            "rm_quota_shares",
            "rm_quota_reservations",
        ]
    }
}

impl QuotaProjection {
    async fn apply_folder(&self, tx: &mut Tx, e: FolderEvent) -> Result<(), sqlx::Error> {
        match e {
            FolderEvent::FolderCreated { .. } => {
                insert_folders(tx, &mut QuotaFolder::of(&e).into_iter().collect()).await?;
            }
            // Usage follows shares, not who owns an item.
            FolderEvent::FolderRenamed { .. } | FolderEvent::FolderOwnershipTransferred { .. } => {}
            FolderEvent::FolderMoved {
                folder_id,
                share_id,
                parent_id,
                ..
            } => {
                let id = folder_id.to_string();
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_folders SET share_id = $2, parent_id = $3 WHERE folder_id = $1",
                    &id,
                    share_id.to_string(),
                    parent_id.map(|p| p.to_string())
                )?;
                tx_execute!(
                    tx,
                    &format!("{SUBTREE}UPDATE rm_quota_folders SET share_id = $2 WHERE folder_id IN (SELECT id FROM sub)"),
                    &id,
                    share_id.to_string()
                )?;
                tx_execute!(
                    tx,
                    &format!("{SUBTREE}UPDATE rm_quota_files SET share_id = $2 WHERE folder_id = $1 OR folder_id IN (SELECT id FROM sub)"),
                    &id,
                    share_id.to_string()
                )?;
            }
            FolderEvent::FolderDeleted { folder_id, .. } => {
                let id = folder_id.to_string();
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_folders SET trashed = TRUE WHERE folder_id = $1",
                    &id
                )?;
                tx_execute!(
                    tx,
                    &format!("{SUBTREE}UPDATE rm_quota_folders SET hidden_by = $1 WHERE hidden_by IS NULL AND folder_id IN (SELECT id FROM sub)"),
                    &id
                )?;
                tx_execute!(
                    tx,
                    &format!("{SUBTREE}UPDATE rm_quota_files SET hidden_by = $1 WHERE hidden_by IS NULL AND (folder_id = $1 OR folder_id IN (SELECT id FROM sub))"),
                    &id
                )?;
            }
            FolderEvent::FolderRestored { folder_id, .. } => {
                let id = folder_id.to_string();
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_folders SET trashed = FALSE WHERE folder_id = $1",
                    &id
                )?;
                for table in ["rm_quota_folders", "rm_quota_files"] {
                    tx_execute!(
                        tx,
                        &format!("UPDATE {table} SET hidden_by = NULL WHERE hidden_by = $1"),
                        &id
                    )?;
                }
            }
            FolderEvent::FolderPurged { folder_id, .. } => {
                tx_execute!(
                    tx,
                    "DELETE FROM rm_quota_folders WHERE folder_id = $1",
                    folder_id.to_string()
                )?;
            }
        }
        Ok(())
    }

    async fn apply_file(&self, tx: &mut Tx, e: FileEvent) -> Result<(), sqlx::Error> {
        match e {
            FileEvent::FileCreated {
                file_id,
                tenant_id,
                share_id,
                folder_id,
                version,
                ..
            } => {
                let size = version.content.size as i64;
                tx_execute!(
                    tx,
                    "INSERT INTO rm_quota_files (file_id, tenant_id, share_id, folder_id, size, version_bytes) \
                     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (file_id) DO NOTHING",
                    file_id.to_string(),
                    tenant_id.to_string(),
                    share_id.to_string(),
                    folder_id.map(|f| f.to_string()),
                    size
                )?;
            }
            FileEvent::FileVersionAdded {
                file_id, version, ..
            } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_files SET size = $2, version_bytes = version_bytes + $2 WHERE file_id = $1",
                    file_id.to_string(),
                    version.content.size as i64
                )?;
            }
            FileEvent::FileRenamed { .. } | FileEvent::FileOwnershipTransferred { .. } => {}
            FileEvent::FileMoved {
                file_id,
                share_id,
                folder_id,
                ..
            } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_files SET share_id = $2, folder_id = $3, hidden_by = NULL WHERE file_id = $1",
                    file_id.to_string(),
                    share_id.to_string(),
                    folder_id.map(|f| f.to_string())
                )?;
            }
            FileEvent::FileDeleted { file_id, .. } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_files SET trashed = TRUE WHERE file_id = $1",
                    file_id.to_string()
                )?;
            }
            FileEvent::FileRestored { file_id, .. } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_files SET trashed = FALSE WHERE file_id = $1",
                    file_id.to_string()
                )?;
            }
            FileEvent::FilePurged { file_id, .. } => {
                tx_execute!(
                    tx,
                    "DELETE FROM rm_quota_files WHERE file_id = $1",
                    file_id.to_string()
                )?;
            }
            FileEvent::FileVersionPruned { file_id, size, .. } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_files SET version_bytes = version_bytes - $2 WHERE file_id = $1",
                    file_id.to_string(),
                    size as i64
                )?;
            }
        }
        Ok(())
    }

    async fn apply_quota(
        &self,
        tx: &mut Tx,
        event: &RecordedEvent,
        tenant: &str,
        e: QuotaEvent,
    ) -> Result<(), sqlx::Error> {
        let at = event.metadata.occurred_at;
        match e {
            QuotaEvent::QuotaLimitSet { target, limit, .. } => {
                upsert_account(tx, &target, at).await?;
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_accounts SET limit_bytes = $2, limit_type = $3, warning_threshold_1 = $4, \
                     warning_threshold_2 = $5, warning_threshold_3 = $6, grace_period_days = $7, grace_extra_percent = $8, \
                     modified_at = $9 WHERE quota_id = $1",
                    target.quota_id.to_string(),
                    limit.limit_bytes as i64,
                    limit.limit_type.as_str(),
                    i32::from(limit.warning_thresholds[0]),
                    i32::from(limit.warning_thresholds[1]),
                    i32::from(limit.warning_thresholds[2]),
                    limit.grace_period_days as i32,
                    limit.grace_extra_percent as i32,
                    at
                )?;
            }
            QuotaEvent::QuotaLimitRemoved { quota_id, .. } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_accounts SET limit_bytes = NULL, grace_started_at = NULL, modified_at = $2 WHERE quota_id = $1",
                    quota_id.to_string(),
                    at
                )?;
            }
            QuotaEvent::QuotaExemptionChanged {
                target,
                exempt,
                reason,
                ..
            } => {
                upsert_account(tx, &target, at).await?;
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_accounts SET exempt = $2, exempt_reason = $3, modified_at = $4 WHERE quota_id = $1",
                    target.quota_id.to_string(),
                    exempt,
                    reason,
                    at
                )?;
            }
            QuotaEvent::QuotaReserved { target, .. } => {
                upsert_account(tx, &target, at).await?;
            }
            QuotaEvent::QuotaGraceStarted { quota_id, at } => {
                tx_execute!(
                    tx,
                    "UPDATE rm_quota_accounts SET grace_started_at = $2 WHERE quota_id = $1",
                    quota_id.to_string(),
                    at
                )?;
            }
            QuotaEvent::QuotaWarningReached {
                target,
                threshold,
                used_bytes,
                limit_bytes,
                ..
            } => {
                let tenant = target
                    .tenant_id
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| tenant.to_owned());
                let subject = format!("{} quota {threshold}% used", target.target_type.title());
                let body = format!(
                    "The {} quota of {} has reached {threshold}% ({used_bytes} of {limit_bytes} bytes).",
                    target.target_type.as_str(),
                    target.target_id
                );
                let event_id = scaidrive_domain::id::EventId::from_uuid(event.event_id).to_string();
                let link_path = match target.target_type {
                    QuotaLevel::User => format!("/api/v1/quotas/usage/users/{}", target.target_id),
                    QuotaLevel::Share => {
                        format!("/api/v1/quotas/usage/shares/{}", target.target_id)
                    }
                    _ => "/api/v1/quotas/usage/tenant".to_owned(),
                };
                for recipient in warning_recipients(tx, &target, Some(&tenant)).await? {
                    enqueue(
                        tx,
                        &Message {
                            id: format!("{event_id}:{recipient}"),
                            tenant_id: Some(&tenant),
                            kind: "quota-warning",
                            recipient: &recipient,
                            subject: &subject,
                            body: &body,
                            link_path: Some(&link_path),
                            source_event_id: Some(&event_id),
                            at,
                        },
                    )
                    .await?;
                }
            }
            QuotaEvent::QuotaCommitted { .. }
            | QuotaEvent::QuotaReleased { .. }
            | QuotaEvent::QuotaFreed { .. } => {}
        }
        Ok(())
    }
}

/// Usage of one level target as the read model sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Every version of every file not purged, trash included.
    pub used_bytes: i64,
    /// Live (not trashed) files.
    pub file_count: i64,
    /// Live folders.
    pub folder_count: i64,
    /// Bytes of versions other than the current ones.
    pub version_bytes: i64,
    /// Bytes (all versions) of trashed files.
    pub trash_bytes: i64,
    /// Bytes held by open upload sessions.
    pub reserved_bytes: i64,
}

/// The `WHERE` part selecting a level target's rows (`$1` = target id).
fn filter(level: QuotaLevel) -> &'static str {
    match level {
        QuotaLevel::Share => "share_id = $1",
        QuotaLevel::User | QuotaLevel::Group => {
            "share_id IN (SELECT share_id FROM rm_quota_shares WHERE owner_id = $1)"
        }
        QuotaLevel::Tenant => "tenant_id = $1",
        QuotaLevel::Partner => {
            "tenant_id IN (SELECT tenant_id FROM rm_quota_tenants WHERE partner_id = $1)"
        }
    }
}

/// Sums a level target's usage from the read model.
pub async fn usage(db: &Db, level: QuotaLevel, target_id: &str) -> Result<Usage, sqlx::Error> {
    let w = filter(level);
    let files: Option<(i64, i64, i64, i64)> = db_fetch_optional!(
        db,
        (i64, i64, i64, i64),
        &format!(
            "SELECT CAST(COALESCE(SUM(version_bytes), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN trashed OR hidden_by IS NOT NULL THEN 0 ELSE 1 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(version_bytes - size), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN trashed OR hidden_by IS NOT NULL THEN version_bytes ELSE 0 END), 0) AS BIGINT) \
             FROM rm_quota_files WHERE {w}"
        ),
        target_id
    )?;
    let folders: Option<(i64,)> = db_fetch_optional!(
        db,
        (i64,),
        &format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM rm_quota_folders WHERE NOT trashed AND hidden_by IS NULL AND {w}"
        ),
        target_id
    )?;
    let reserved: Option<(i64,)> = db_fetch_optional!(
        db,
        (i64,),
        &format!(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM rm_quota_reservations WHERE {w}"
        ),
        target_id
    )?;
    let (used_bytes, file_count, version_bytes, trash_bytes) = files.unwrap_or_default();
    Ok(Usage {
        used_bytes,
        file_count,
        folder_count: folders.map(|r| r.0).unwrap_or(0),
        version_bytes,
        trash_bytes,
        reserved_bytes: reserved.map(|r| r.0).unwrap_or(0),
    })
}

/// A quota account's settings as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub quota_id: String,
    pub tenant_id: Option<String>,
    pub target_type: String,
    pub target_id: String,
    pub limit_bytes: Option<i64>,
    pub limit_type: String,
    pub warning_threshold_1: i32,
    pub warning_threshold_2: i32,
    pub warning_threshold_3: i32,
    pub grace_period_days: i32,
    pub grace_extra_percent: i32,
    pub grace_started_at: Option<DateTime<Utc>>,
    pub exempt: bool,
    pub exempt_reason: Option<String>,
    pub modified_at: DateTime<Utc>,
}

const ACCOUNT_COLS: &str = "quota_id, tenant_id, target_type, target_id, limit_bytes, limit_type, \
    warning_threshold_1, warning_threshold_2, warning_threshold_3, grace_period_days, grace_extra_percent, \
    grace_started_at, exempt, exempt_reason, modified_at";

/// The configured accounts of one level in a tenant (with a limit or an exemption).
pub async fn accounts(
    db: &Db,
    tenant_id: &str,
    level: QuotaLevel,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AccountRow>, i64), sqlx::Error> {
    let rows = db_fetch_all!(
        db,
        AccountRow,
        &format!(
            "SELECT {ACCOUNT_COLS} FROM rm_quota_accounts WHERE tenant_id = $1 AND target_type = $2 \
             AND (limit_bytes IS NOT NULL OR exempt) ORDER BY target_id LIMIT $3 OFFSET $4"
        ),
        tenant_id,
        level.as_str(),
        limit,
        offset
    )?;
    let total: Option<(i64,)> = db_fetch_optional!(
        db,
        (i64,),
        "SELECT CAST(COUNT(*) AS BIGINT) FROM rm_quota_accounts WHERE tenant_id = $1 AND target_type = $2 \
         AND (limit_bytes IS NOT NULL OR exempt)",
        tenant_id,
        level.as_str()
    )?;
    Ok((rows, total.map(|t| t.0).unwrap_or(0)))
}

/// The users of a tenant that own shares or have an account, for usage lists.
pub async fn user_targets(
    db: &Db,
    tenant_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<String>, i64), sqlx::Error> {
    let rows: Vec<(String,)> = db_fetch_all!(
        db,
        (String,),
        "SELECT id FROM rm_users WHERE tenant_id = $1 ORDER BY id LIMIT $2 OFFSET $3",
        tenant_id,
        limit,
        offset
    )?;
    let total: Option<(i64,)> = db_fetch_optional!(
        db,
        (i64,),
        "SELECT CAST(COUNT(*) AS BIGINT) FROM rm_users WHERE tenant_id = $1",
        tenant_id
    )?;
    Ok((
        rows.into_iter().map(|r| r.0).collect(),
        total.map(|t| t.0).unwrap_or(0),
    ))
}

/// The partner a tenant belongs to, per the read model.
pub async fn tenant_partner(db: &Db, tenant_id: &str) -> Result<Option<String>, sqlx::Error> {
    Ok(db_fetch_optional!(
        db,
        (String,),
        "SELECT partner_id FROM rm_quota_tenants WHERE tenant_id = $1",
        tenant_id
    )?
    .map(|r| r.0))
}
