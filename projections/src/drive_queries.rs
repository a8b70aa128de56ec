//! Queries over the drive read models.

use chrono::{DateTime, Utc};

use crate::db::Db;
use crate::{db_fetch_all, db_fetch_optional, db_fetch_scalar};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShareRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub share_type: String,
    pub owner_id: String,
    pub is_public: bool,
    pub is_deleted: bool,
    /// The share's quota limit (set through /quotas/shares, else at creation).
    pub quota_bytes: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

const SHARE_COLS: &str = "s.id, s.tenant_id, s.name, s.description, s.share_type, s.owner_id, s.is_public, s.is_deleted, \
    COALESCE((SELECT q.limit_bytes FROM rm_quota_accounts q WHERE q.target_type = 'share' AND q.target_id = s.id AND NOT q.exempt), s.quota_bytes) AS quota_bytes, \
    s.created_by, s.created_at, s.modified_at";

pub async fn share(db: &Db, tenant_id: &str, id: &str) -> Result<Option<ShareRow>, sqlx::Error> {
    let sql = format!("SELECT {SHARE_COLS} FROM rm_shares s WHERE s.id = $1 AND s.tenant_id = $2");
    db_fetch_optional!(db, ShareRow, &sql, id, tenant_id)
}

/// What each of `share_ids` holds: every version of every file, trash
/// included, by share (shares without files are absent). Not part of
/// [`ShareRow`]: the sum reads every file row of the share, and most reads
/// of a share (every permission check) do not show it.
pub async fn share_usage(
    db: &Db,
    share_ids: &[&str],
) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    use crate::db::Arg;
    if share_ids.is_empty() {
        return Ok(Default::default());
    }
    let marks: Vec<String> = (1..=share_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT share_id, CAST(COALESCE(SUM(version_bytes), 0) AS BIGINT) AS used_bytes FROM rm_files \
         WHERE share_id IN ({}) GROUP BY share_id",
        marks.join(", ")
    );
    let args: Vec<Arg> = share_ids
        .iter()
        .map(|id| Arg::Text((*id).to_owned()))
        .collect();
    let rows: Vec<(String, i64)> = db.fetch_all_args(&sql, &args).await?;
    Ok(rows.into_iter().collect())
}

/// Shares the caller can see: all of the tenant's for admins, else owned ones.
pub async fn shares(
    db: &Db,
    tenant_id: &str,
    principals: Option<&[String]>,
    include_trashed: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ShareRow>, i64), sqlx::Error> {
    use crate::db::Arg;
    let mut args = vec![Arg::Text(tenant_id.to_owned()), Arg::Bool(include_trashed)];
    let mut filter = "s.tenant_id = $1 AND ($2 OR NOT s.is_deleted)".to_owned();
    if let Some(ids) = principals {
        filter.push_str(" AND ");
        filter.push_str(&crate::access::member_share_filter(3, ids.len()));
        args.extend(ids.iter().cloned().map(Arg::Text));
        args.push(Arg::Time(Utc::now()));
    }
    let n = args.len();
    let count = format!("SELECT COUNT(*) FROM rm_shares s WHERE {filter}");
    let total = db.fetch_i64_args(&count, &args).await?;
    let sql = format!(
        "SELECT {SHARE_COLS} FROM rm_shares s WHERE {filter} ORDER BY s.created_at, s.id LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    args.push(Arg::Int(limit));
    args.push(Arg::Int(offset));
    let rows = db.fetch_all_args(&sql, &args).await?;
    Ok((rows, total))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FolderRow {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub path: String,
    pub owner_id: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub is_deleted: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub trashed_via: Option<String>,
}

const FOLDER_COLS: &str = "id, tenant_id, share_id, parent_id, name, path, owner_id, created_by, created_at, modified_at, \
    is_deleted, deleted_at, trashed_via";

pub async fn folder(db: &Db, tenant_id: &str, id: &str) -> Result<Option<FolderRow>, sqlx::Error> {
    let sql = format!("SELECT {FOLDER_COLS} FROM rm_folders WHERE id = $1 AND tenant_id = $2");
    db_fetch_optional!(db, FolderRow, &sql, id, tenant_id)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub folder_id: Option<String>,
    pub name: String,
    pub path: String,
    pub mime_type: String,
    pub size: i64,
    pub checksum_sha256: String,
    pub version: i64,
    pub version_id: String,
    pub version_bytes: i64,
    pub owner_id: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub modified_by: String,
    pub modified_at: DateTime<Utc>,
    pub is_deleted: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub trashed_via: Option<String>,
}

const FILE_COLS: &str = "id, tenant_id, share_id, folder_id, name, path, mime_type, size, checksum_sha256, version, version_id, \
    version_bytes, owner_id, created_by, created_at, modified_by, modified_at, is_deleted, deleted_at, trashed_via";

pub async fn file(db: &Db, tenant_id: &str, id: &str) -> Result<Option<FileRow>, sqlx::Error> {
    let sql = format!("SELECT {FILE_COLS} FROM rm_files WHERE id = $1 AND tenant_id = $2");
    db_fetch_optional!(db, FileRow, &sql, id, tenant_id)
}

/// The direct children of a folder (or of a share's root when `parent` is
/// None): folders first, then files, each by name; paginated across both.
pub async fn children(
    db: &Db,
    share_id: &str,
    parent: Option<&str>,
    include_deleted: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<FolderRow>, Vec<FileRow>, i64), sqlx::Error> {
    let live = if include_deleted {
        "TRUE"
    } else {
        "(NOT is_deleted AND trashed_via IS NULL)"
    };
    let fsql = format!(
        "SELECT {FOLDER_COLS} FROM rm_folders WHERE share_id = $1 AND parent_id IS NOT DISTINCT FROM $2 AND {live} \
         ORDER BY name, id LIMIT $3 OFFSET $4"
    );
    let fcount = format!("SELECT COUNT(*) FROM rm_folders WHERE share_id = $1 AND parent_id IS NOT DISTINCT FROM $2 AND {live}");
    let nsql = format!(
        "SELECT {FILE_COLS} FROM rm_files WHERE share_id = $1 AND folder_id IS NOT DISTINCT FROM $2 AND {live} \
         ORDER BY name, id LIMIT $3 OFFSET $4"
    );
    let ncount = format!("SELECT COUNT(*) FROM rm_files WHERE share_id = $1 AND folder_id IS NOT DISTINCT FROM $2 AND {live}");
    let folders_total = db_fetch_scalar!(db, i64, &fcount, share_id, parent)?;
    let files_total = db_fetch_scalar!(db, i64, &ncount, share_id, parent)?;
    let folders = if offset < folders_total {
        db_fetch_all!(db, FolderRow, &fsql, share_id, parent, limit, offset)?
    } else {
        Vec::new()
    };
    let remaining = limit - folders.len() as i64;
    let file_offset = (offset - folders_total).max(0);
    let files = if remaining > 0 {
        db_fetch_all!(db, FileRow, &nsql, share_id, parent, remaining, file_offset)?
    } else {
        Vec::new()
    };
    Ok((folders, files, folders_total + files_total))
}

/// A children listing without some ids (the ones a caller may not read),
/// paginated in SQL like [`children`].
pub async fn children_except(
    db: &Db,
    share_id: &str,
    parent: Option<&str>,
    include_deleted: bool,
    limit: i64,
    offset: i64,
    except: &[String],
) -> Result<(Vec<FolderRow>, Vec<FileRow>, i64), sqlx::Error> {
    use crate::db::{placeholders, Arg};
    let live = if include_deleted {
        "TRUE"
    } else {
        "(NOT is_deleted AND trashed_via IS NULL)"
    };
    let not_in = format!("id NOT IN ({})", placeholders(3, except.len()));
    let mut args = vec![
        Arg::Text(share_id.to_owned()),
        match parent {
            Some(p) => Arg::Text(p.to_owned()),
            None => Arg::Null,
        },
    ];
    args.extend(except.iter().cloned().map(Arg::Text));
    let n = args.len();
    let fwhere =
        format!("share_id = $1 AND parent_id IS NOT DISTINCT FROM $2 AND {live} AND {not_in}");
    let nwhere =
        format!("share_id = $1 AND folder_id IS NOT DISTINCT FROM $2 AND {live} AND {not_in}");
    let folders_total = db
        .fetch_i64_args(
            &format!("SELECT COUNT(*) FROM rm_folders WHERE {fwhere}"),
            &args,
        )
        .await?;
    let files_total = db
        .fetch_i64_args(
            &format!("SELECT COUNT(*) FROM rm_files WHERE {nwhere}"),
            &args,
        )
        .await?;
    let page = |w: &str, cols: &str, table: &str| {
        format!(
            "SELECT {cols} FROM {table} WHERE {w} ORDER BY name, id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        )
    };
    let folders = if offset < folders_total {
        let mut a = args.clone();
        a.extend([Arg::Int(limit), Arg::Int(offset)]);
        db.fetch_all_args(&page(&fwhere, FOLDER_COLS, "rm_folders"), &a)
            .await?
    } else {
        Vec::new()
    };
    let remaining = limit - folders.len() as i64;
    let files = if remaining > 0 {
        let mut a = args.clone();
        a.extend([
            Arg::Int(remaining),
            Arg::Int((offset - folders_total).max(0)),
        ]);
        db.fetch_all_args(&page(&nwhere, FILE_COLS, "rm_files"), &a)
            .await?
    } else {
        Vec::new()
    };
    Ok((folders, files, folders_total + files_total))
}

/// Items trashed on their own (not hidden by a trashed ancestor) in a share.
pub async fn trash(db: &Db, share_id: &str) -> Result<(Vec<FolderRow>, Vec<FileRow>), sqlx::Error> {
    let fsql = format!("SELECT {FOLDER_COLS} FROM rm_folders WHERE share_id = $1 AND is_deleted AND trashed_via IS NULL ORDER BY deleted_at");
    let nsql = format!("SELECT {FILE_COLS} FROM rm_files WHERE share_id = $1 AND is_deleted AND trashed_via IS NULL ORDER BY deleted_at");
    Ok((
        db_fetch_all!(db, FolderRow, &fsql, share_id)?,
        db_fetch_all!(db, FileRow, &nsql, share_id)?,
    ))
}

/// Every folder and file below a path (for subtree operations).
pub async fn subtree(
    db: &Db,
    share_id: &str,
    path: &str,
) -> Result<(Vec<FolderRow>, Vec<FileRow>), sqlx::Error> {
    let prefix = format!("{path}/");
    let n = prefix.chars().count() as i32;
    let fsql = format!("SELECT {FOLDER_COLS} FROM rm_folders WHERE share_id = $1 AND substr(path, 1, $2) = $3 ORDER BY path DESC");
    let nsql = format!(
        "SELECT {FILE_COLS} FROM rm_files WHERE share_id = $1 AND substr(path, 1, $2) = $3"
    );
    Ok((
        db_fetch_all!(db, FolderRow, &fsql, share_id, n, &prefix)?,
        db_fetch_all!(db, FileRow, &nsql, share_id, n, &prefix)?,
    ))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub number: i64,
    pub version_id: String,
    pub size: i64,
    pub checksum_sha256: String,
    pub mime_type: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

pub async fn versions(db: &Db, file_id: &str) -> Result<Vec<VersionRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        VersionRow,
        "SELECT number, version_id, size, checksum_sha256, mime_type, created_by, created_at FROM rm_file_versions \
         WHERE file_id = $1 ORDER BY number DESC",
        file_id
    )
}

/// Chunks with no references since before `cutoff` (garbage candidates).
pub async fn unreferenced_chunks(
    db: &Db,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    db_fetch_all!(
        db,
        (String, String),
        "SELECT tenant_id, hash FROM rm_chunk_refs WHERE refs <= 0 AND released_at < $1 LIMIT $2",
        cutoff,
        limit
    )
}

/// Whether any live version references a chunk.
pub async fn chunk_referenced(db: &Db, tenant_id: &str, hash: &str) -> Result<bool, sqlx::Error> {
    let refs: Option<i64> = db_fetch_optional!(
        db,
        (i64,),
        "SELECT refs FROM rm_chunk_refs WHERE tenant_id = $1 AND hash = $2",
        tenant_id,
        hash
    )?
    .map(|r| r.0);
    Ok(refs.is_some_and(|r| r > 0))
}

/// Active sessions idle past their expiry.
pub async fn expired_uploads(
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    db_fetch_all!(
        db,
        (String, String),
        "SELECT id, tenant_id FROM rm_uploads WHERE status = 'active' AND expires_at < $1 LIMIT $2",
        now,
        limit
    )
}

/// Tenant ids, one page after `after` (retention walks every tenant).
pub async fn tenant_ids(db: &Db, after: &str, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = db_fetch_all!(
        db,
        (String,),
        "SELECT id FROM rm_tenants WHERE id > $1 ORDER BY id LIMIT $2",
        after,
        limit
    )?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The items [`ids_trashed_before`] lists: shares, or files trashed
/// themselves (not with a folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trashed {
    Shares,
    Files,
}

/// Ids of a tenant's shares or files that went to the trash at or before
/// `cutoff`, one page after `after` (by id).
pub async fn ids_trashed_before(
    db: &Db,
    what: Trashed,
    tenant_id: &str,
    cutoff: DateTime<Utc>,
    after: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let table = match what {
        Trashed::Shares => "rm_shares",
        Trashed::Files => "rm_files",
    };
    let sql = format!(
        "SELECT id FROM {table} WHERE tenant_id = $1 AND is_deleted AND deleted_at <= $2 AND id > $3 \
         ORDER BY id LIMIT $4"
    );
    let rows: Vec<(String,)> = db_fetch_all!(db, (String,), &sql, tenant_id, cutoff, after, limit)?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Folders of a tenant that went to the trash themselves at or before
/// `cutoff`, one page after `after` (by id).
pub async fn folders_trashed_before(
    db: &Db,
    tenant_id: &str,
    cutoff: DateTime<Utc>,
    after: &str,
    limit: i64,
) -> Result<Vec<FolderRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {FOLDER_COLS} FROM rm_folders WHERE tenant_id = $1 AND is_deleted AND deleted_at <= $2 \
         AND id > $3 ORDER BY id LIMIT $4"
    );
    db_fetch_all!(db, FolderRow, &sql, tenant_id, cutoff, after, limit)
}

/// Files of a tenant with a non-current version superseded (a later
/// version created) at or before `cutoff`, one page after `after` (by id).
pub async fn files_with_versions_superseded_before(
    db: &Db,
    tenant_id: &str,
    cutoff: DateTime<Utc>,
    after: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = db_fetch_all!(
        db,
        (String,),
        "SELECT DISTINCT v.file_id FROM rm_file_versions v \
         JOIN rm_files f ON f.id = v.file_id \
         WHERE f.tenant_id = $1 AND v.number < f.version AND v.file_id > $3 AND EXISTS ( \
             SELECT 1 FROM rm_file_versions n WHERE n.file_id = v.file_id AND n.number > v.number \
             AND n.created_at <= $2) \
         ORDER BY v.file_id LIMIT $4",
        tenant_id,
        cutoff,
        after,
        limit
    )?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
