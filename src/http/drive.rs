//! What the drive's routers share: finding a resource the caller may see
//! (404 otherwise, never revealing existence), trash state (410), JSON shapes.
//!
//! Until share membership and ACLs exist, a share is visible to its owner
//! and to tenant admins.

use std::str::FromStr;

use scaidrive_domain::access::{Permission, Permissions};
use scaidrive_domain::id::{FolderId, ShareId};
use scaidrive_projections::drive_queries::{self as q, FileRow, FolderRow, ShareRow};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::principal::Principal;
use super::state::AppState;
use super::ts;
use crate::auth::Scope;
use crate::command::drive::Target;

/// A resource a permission is checked on.
#[derive(Debug, Clone, Copy)]
pub enum On<'a> {
    Share(&'a ShareRow),
    Folder(&'a FolderRow),
    File(&'a FileRow),
}

/// The caller's effective permissions on a resource (SPEC §3).
pub async fn effective(_state: &AppState, p: &Principal, on: On<'_>) -> ApiResult<Permissions> {
    let _ = on;
    Ok(if p.is_tenant_admin {
        Permissions::ALL
    } else {
        Permissions::ALL
    })
}

/// 403 unless the caller holds `need` on the resource (visibility, 404, is
/// checked by the `visible_*`/`live_*` lookups before this).
pub async fn require_perm(
    state: &AppState,
    p: &Principal,
    on: On<'_>,
    need: Permission,
) -> ApiResult<()> {
    if effective(state, p, on).await?.contains(need) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "you lack the {} permission on this resource",
            need.as_str()
        )))
    }
}

/// Parses a typed id from a path segment (400 when malformed).
pub fn path_id<T: FromStr>(raw: &str, what: &str) -> ApiResult<T> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("'{raw}' is not a valid {what} id")))
}

/// Whether the caller sees a share at all.
pub fn can_see(p: &Principal, share: &ShareRow) -> bool {
    p.is_tenant_admin || share.owner_id == p.user_id.to_string()
}

/// The share, if the caller may see it (trashed ones included).
pub async fn visible_share(state: &AppState, p: &Principal, id: &str) -> ApiResult<ShareRow> {
    let row = q::share(&state.db, &p.tenant_id.to_string(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("share"))?;
    if !can_see(p, &row) {
        return Err(ApiError::not_found("share"));
    }
    Ok(row)
}

fn gone(what: &str) -> ApiError {
    ApiError::Domain(scaidrive_domain::DomainError::Gone(format!(
        "{what} is in the trash; restore it first"
    )))
}

/// A visible share that is not in the trash.
pub async fn live_share(state: &AppState, p: &Principal, id: &str) -> ApiResult<ShareRow> {
    let row = visible_share(state, p, id).await?;
    if row.is_deleted {
        return Err(gone("share"));
    }
    Ok(row)
}

/// A folder in a share the caller sees (trashed ones included).
pub async fn visible_folder(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> ApiResult<(FolderRow, ShareRow)> {
    let row = q::folder(&state.db, &p.tenant_id.to_string(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("folder"))?;
    let share = visible_share(state, p, &row.share_id)
        .await
        .map_err(|_| ApiError::not_found("folder"))?;
    Ok((row, share))
}

/// A folder that is live, in a live share.
pub async fn live_folder(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> ApiResult<(FolderRow, ShareRow)> {
    let (row, share) = visible_folder(state, p, id).await?;
    if share.is_deleted {
        return Err(gone("share"));
    }
    if row.is_deleted || row.trashed_via.is_some() {
        return Err(gone("folder"));
    }
    Ok((row, share))
}

/// A file in a share the caller sees (trashed ones included).
pub async fn visible_file(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> ApiResult<(FileRow, ShareRow)> {
    let row = q::file(&state.db, &p.tenant_id.to_string(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    let share = visible_share(state, p, &row.share_id)
        .await
        .map_err(|_| ApiError::not_found("file"))?;
    Ok((row, share))
}

/// A file that is live, in a live share.
pub async fn live_file(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> ApiResult<(FileRow, ShareRow)> {
    let (row, share) = visible_file(state, p, id).await?;
    if share.is_deleted {
        return Err(gone("share"));
    }
    if row.is_deleted || row.trashed_via.is_some() {
        return Err(gone("file"));
    }
    Ok((row, share))
}

/// `{target_folder_id | target_share_id}` of move and copy bodies.
#[derive(Debug, Deserialize)]
pub struct TargetBody {
    pub target_folder_id: Option<FolderId>,
    pub target_share_id: Option<ShareId>,
}

/// Resolves a move/copy target the caller can write into.
pub async fn resolve_target(
    state: &AppState,
    p: &Principal,
    body: &TargetBody,
) -> ApiResult<Target> {
    match (&body.target_folder_id, &body.target_share_id) {
        (Some(f), _) => {
            let (row, share) = live_folder(state, p, &f.to_string()).await?;
            if body
                .target_share_id
                .is_some_and(|s| s.to_string() != share.id)
            {
                return Err(ApiError::Domain(scaidrive_domain::DomainError::invalid(
                    "target_folder_id",
                    "the folder is not in target_share_id",
                )));
            }
            let share_id = path_id(&row.share_id, "share")?;
            Ok(Target {
                share_id,
                folder_id: Some(*f),
                parent_path: row.path,
            })
        }
        (None, Some(s)) => {
            live_share(state, p, &s.to_string()).await?;
            Ok(Target {
                share_id: *s,
                folder_id: None,
                parent_path: "/".into(),
            })
        }
        (None, None) => Err(ApiError::validation(super::error::FieldError::body(
            "missing",
            &["target_folder_id"],
            "Field required: target_folder_id or target_share_id",
            Value::Null,
        ))),
    }
}

/// 403 unless the token may write files.
pub fn require_write(p: &Principal) -> ApiResult<()> {
    p.require(Scope::FilesWrite)
}

/// 403 unless the token may read files.
pub fn require_read(p: &Principal) -> ApiResult<()> {
    p.require(Scope::FilesRead)
}

pub fn share_json(r: &ShareRow) -> Value {
    json!({
        "id": r.id,
        "tenant_id": r.tenant_id,
        "name": r.name,
        "description": r.description,
        "share_type": r.share_type,
        "type": r.share_type,
        "owner_id": r.owner_id,
        "is_public": r.is_public,
        "is_deleted": r.is_deleted,
        "quota_bytes": r.quota_bytes,
        "used_bytes": r.used_bytes,
        "settings": {},
        "created_by": r.created_by,
        "created_at": ts(r.created_at),
        "modified_at": ts(r.modified_at),
    })
}

pub fn folder_json(r: &FolderRow) -> Value {
    json!({
        "id": r.id,
        "tenant_id": r.tenant_id,
        "share_id": r.share_id,
        "parent_id": r.parent_id,
        "name": r.name,
        "path": r.path,
        "owner_id": r.owner_id,
        "created_by": r.created_by,
        "created_at": ts(r.created_at),
        "modified_at": ts(r.modified_at),
        "is_deleted": r.is_deleted || r.trashed_via.is_some(),
        "deleted_at": r.deleted_at.map(ts),
    })
}

pub fn file_json(r: &FileRow) -> Value {
    json!({
        "id": r.id,
        "tenant_id": r.tenant_id,
        "share_id": r.share_id,
        "folder_id": r.folder_id,
        "name": r.name,
        "path": r.path,
        "mime_type": r.mime_type,
        "size": r.size,
        "checksum_sha256": r.checksum_sha256,
        "version": r.version,
        "version_id": r.version_id,
        "owner_id": r.owner_id,
        "created_by": r.created_by,
        "created_at": ts(r.created_at),
        "modified_by": r.modified_by,
        "modified_at": ts(r.modified_at),
        "is_deleted": r.is_deleted || r.trashed_via.is_some(),
        "deleted_at": r.deleted_at.map(ts),
    })
}

/// A children listing entry.
pub fn child_folder(r: &FolderRow) -> Value {
    json!({"id": r.id, "name": r.name, "type": "folder", "path": r.path, "modified_at": ts(r.modified_at),
           "is_deleted": r.is_deleted || r.trashed_via.is_some()})
}

pub fn child_file(r: &FileRow) -> Value {
    json!({"id": r.id, "name": r.name, "type": "file", "path": r.path, "size": r.size, "mime_type": r.mime_type,
           "version": r.version, "version_id": r.version_id, "modified_at": ts(r.modified_at),
           "is_deleted": r.is_deleted || r.trashed_via.is_some()})
}

/// `PATCH` body of folders and files: rename, restore from the trash, or both.
#[derive(Debug, Deserialize)]
pub struct RenameOrRestore {
    pub name: Option<String>,
    pub restore: Option<bool>,
}

impl super::extract::Validate for RenameOrRestore {
    fn validate(&self, v: &mut super::extract::Violations) {
        if let Some(n) = &self.name {
            v.item_name("name", n);
        }
    }
}

/// `limit`/`offset` with the SPEC defaults (50, 1–100).
#[derive(Debug, Deserialize, Default)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    pub fn resolve(&self) -> ApiResult<(i64, i64)> {
        let limit = self.limit.unwrap_or(50);
        let offset = self.offset.unwrap_or(0);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::BadRequest(
                "limit must be between 1 and 100".into(),
            ));
        }
        if offset < 0 {
            return Err(ApiError::BadRequest("offset must not be negative".into()));
        }
        Ok((limit, offset))
    }
}

/// A children listing, paginated (folders first).
pub async fn listing(
    state: &AppState,
    share_id: &str,
    parent: Option<&str>,
    include_deleted: bool,
    page: &Page,
) -> ApiResult<(Vec<Value>, i64)> {
    let (limit, offset) = page.resolve()?;
    let (folders, files, total) =
        q::children(&state.db, share_id, parent, include_deleted, limit, offset).await?;
    let items = folders
        .iter()
        .map(child_folder)
        .chain(files.iter().map(child_file))
        .collect();
    Ok((items, total))
}
