//! What the drive's routers share: finding a resource the caller may see
//! (404 otherwise, never revealing existence), trash state (410), JSON shapes.
//!
//! Visibility is READ: a resource the caller cannot read answers 404, one
//! they can read but not change answers 403 (`require_perm`).

use std::str::FromStr;

use chrono::Utc;
use scaidrive_domain::access::{resolve, share_role, Permission, Permissions, Subject};
use scaidrive_domain::id::{FileId, FolderId, ShareId};
use scaidrive_projections::access;
use scaidrive_projections::drive_queries::{self as q, FileRow, FolderRow, ShareRow};
use serde::Deserialize;
use serde_json::Value;

use super::dto::{self, Entry};
use super::error::{ApiError, ApiResult, Refusal};
use super::principal::Principal;
use super::state::AppState;
use crate::auth::Scope;
use crate::command::drive::Target;

/// A resource a permission is checked on.
#[derive(Debug, Clone, Copy)]
pub enum On<'a> {
    Share(&'a ShareRow),
    Folder(&'a FolderRow),
    File(&'a FileRow),
}

impl On<'_> {
    /// `share`, `folder` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            On::Share(_) => "share",
            On::Folder(_) => "folder",
            On::File(_) => "file",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            On::Share(s) => &s.id,
            On::Folder(f) => &f.id,
            On::File(f) => &f.id,
        }
    }
}

/// The 403 for a permission (or `OWNER`) the caller lacks on a resource they
/// can see; the access log records it (see [`Refusal`]).
pub fn denied(p: &Principal, on: On<'_>, permission: &'static str, detail: String) -> ApiError {
    ApiError::Denied {
        detail,
        refusal: Box::new(Refusal {
            ctx: p.context(),
            user_id: p.user_id,
            resource_type: on.kind(),
            resource_id: on.id().to_owned(),
            permission,
        }),
    }
}

/// The caller's role on a share, from their memberships (the owner row
/// included; `owner` also counts when the caller already has the share row),
/// with the subject the resolution needs.
pub async fn share_role_of(
    state: &AppState,
    p: &Principal,
    share_id: &str,
    owner: &str,
) -> ApiResult<Option<scaidrive_domain::access::ShareRole>> {
    let principals = p.principal_ids();
    let members = state
        .memberships
        .get_or_load((share_id.to_owned(), principals.clone()), || {
            access::memberships_of(&state.db, share_id, &principals)
        })
        .await?;
    Ok(share_role(
        &subject(p, &principals),
        owner,
        &members,
        Utc::now(),
    ))
}

/// The caller as the resolution sees them (`principals[0]` is the user).
fn subject<'a>(p: &'a Principal, principals: &'a [String]) -> Subject<'a> {
    Subject {
        user_id: &principals[0],
        groups: &p.groups,
        is_tenant_admin: false,
    }
}

/// Whether any folder or file of the share has an ACL (remembered while the
/// access read model is unchanged).
async fn has_acls(state: &AppState, share_id: &str) -> ApiResult<bool> {
    Ok(state
        .share_acls
        .get_or_load(share_id.to_owned(), || {
            access::share_has_acls(&state.db, share_id)
        })
        .await?)
}

/// The caller's effective permissions on a resource (SPEC §3), resolved
/// once per request and resource.
pub async fn effective(state: &AppState, p: &Principal, on: On<'_>) -> ApiResult<Permissions> {
    if p.is_tenant_admin {
        return Ok(Permissions::ALL);
    }
    let (id, share_id, owner) = match on {
        On::Share(s) => (&s.id, &s.id, s.owner_id.as_str()),
        On::Folder(f) => (&f.id, &f.share_id, ""),
        On::File(f) => (&f.id, &f.share_id, ""),
    };
    if let Some(hit) = p.access.get(id) {
        return Ok(hit);
    }
    let role = share_role_of(state, p, share_id, owner).await?;
    let levels = if has_acls(state, share_id).await? {
        let mut chain = match on {
            On::Share(_) => vec![],
            On::Folder(f) => access::folder_chain(&state.db, &f.id).await?,
            On::File(f) => {
                let mut c = vec![f.id.clone()];
                if let Some(parent) = &f.folder_id {
                    c.extend(access::folder_chain(&state.db, parent).await?);
                }
                c
            }
        };
        chain.push(share_id.clone());
        access::levels(&state.db, &chain).await?
    } else {
        vec![]
    };
    let principals = p.principal_ids();
    let perms = resolve(&subject(p, &principals), role, &levels);
    p.access.put(id, perms);
    Ok(perms)
}

/// 404 unless the caller may at least read the resource: what one cannot
/// read, one must not learn exists.
async fn require_visible(state: &AppState, p: &Principal, on: On<'_>, what: &str) -> ApiResult<()> {
    if effective(state, p, on).await?.contains(Permission::Read) {
        Ok(())
    } else {
        Err(ApiError::not_found(what))
    }
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
        Err(denied(
            p,
            on,
            need.as_str(),
            format!("you lack the {} permission on this resource", need.as_str()),
        ))
    }
}

/// Parses a typed id from a path segment (400 when malformed).
pub fn path_id<T: FromStr>(raw: &str, what: &str) -> ApiResult<T> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("'{raw}' is not a valid {what} id")))
}

/// The share, if the caller may see it (trashed ones included).
pub async fn visible_share(state: &AppState, p: &Principal, id: &str) -> ApiResult<ShareRow> {
    let row = state
        .share_row(&p.tenant_id.to_string(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("share"))?;
    require_visible(state, p, On::Share(&row), "share").await?;
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
    let row = visible_folder_row(state, p, id).await?;
    let share = state
        .share_row(&p.tenant_id.to_string(), &row.share_id)
        .await?
        .ok_or_else(|| ApiError::not_found("folder"))?;
    Ok((row, share))
}

/// A folder the caller sees, without its share: enough for the read-back
/// after a write of the caller's own (the write already checked the share).
pub async fn visible_folder_row(state: &AppState, p: &Principal, id: &str) -> ApiResult<FolderRow> {
    let row = q::folder(&state.db, &p.tenant_id.to_string(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("folder"))?;
    require_visible(state, p, On::Folder(&row), "folder").await?;
    Ok(row)
}

/// A file the caller sees, without its share (see [`visible_folder_row`]).
pub async fn visible_file_row(state: &AppState, p: &Principal, id: &str) -> ApiResult<FileRow> {
    let row = q::file(&state.db, &p.tenant_id.to_string(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    require_visible(state, p, On::File(&row), "file").await?;
    Ok(row)
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
    let row = visible_file_row(state, p, id).await?;
    let share = state
        .share_row(&p.tenant_id.to_string(), &row.share_id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
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

/// What a handler needs on a resource before it acts, checked after the
/// lookup (404 when the caller cannot see it, 410 when trashed and the
/// handler wants it live), in this order.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// The `files:read` scope (seeing the resource is its READ).
    Read,
    /// The `files:write` scope.
    Write,
    /// The `files:write` scope and this permission on the resource.
    Perm(Permission),
}

async fn check(state: &AppState, p: &Principal, on: On<'_>, need: Need) -> ApiResult<()> {
    match need {
        Need::Read => require_read(p),
        Need::Write => require_write(p),
        Need::Perm(perm) => {
            require_write(p)?;
            require_perm(state, p, on, perm).await
        }
    }
}

/// A live folder, in a live share, the caller may act on as `need` says:
/// the one guard of a folder handler.
pub async fn folder(
    state: &AppState,
    p: &Principal,
    id: FolderId,
    need: Need,
) -> ApiResult<(FolderRow, ShareRow)> {
    let (row, share) = live_folder(state, p, &id.to_string()).await?;
    check(state, p, On::Folder(&row), need).await?;
    Ok((row, share))
}

/// [`folder`], trashed ones (or in a trashed share) included.
pub async fn folder_any(
    state: &AppState,
    p: &Principal,
    id: FolderId,
    need: Need,
) -> ApiResult<(FolderRow, ShareRow)> {
    let (row, share) = visible_folder(state, p, &id.to_string()).await?;
    check(state, p, On::Folder(&row), need).await?;
    Ok((row, share))
}

/// A live file, in a live share, the caller may act on as `need` says.
pub async fn file(
    state: &AppState,
    p: &Principal,
    id: FileId,
    need: Need,
) -> ApiResult<(FileRow, ShareRow)> {
    let (row, share) = live_file(state, p, &id.to_string()).await?;
    check(state, p, On::File(&row), need).await?;
    Ok((row, share))
}

/// [`file`], trashed ones (or in a trashed share) included.
pub async fn file_any(
    state: &AppState,
    p: &Principal,
    id: FileId,
    need: Need,
) -> ApiResult<(FileRow, ShareRow)> {
    let (row, share) = visible_file(state, p, &id.to_string()).await?;
    check(state, p, On::File(&row), need).await?;
    Ok((row, share))
}

/// A folder as the API shows it, read back after a write of the caller's.
pub async fn folder_dto(state: &AppState, p: &Principal, id: &str) -> ApiResult<dto::Folder> {
    Ok((&visible_folder_row(state, p, id).await?).into())
}

/// A file as the API shows it, read back after a write of the caller's.
pub async fn file_dto(state: &AppState, p: &Principal, id: &str) -> ApiResult<dto::File> {
    Ok((&visible_file_row(state, p, id).await?).into())
}

/// `{target_folder_id | target_share_id}` of move and copy bodies.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TargetBody {
    /// The folder to move or copy into (wins over `target_share_id`).
    #[schema(value_type = Option<super::schema::FolderId>)]
    pub target_folder_id: Option<FolderId>,
    /// The share whose root to move or copy into.
    #[schema(value_type = Option<super::schema::ShareId>)]
    pub target_share_id: Option<ShareId>,
}

/// Resolves a move/copy target the caller may create in (403 otherwise).
pub async fn resolve_target(
    state: &AppState,
    p: &Principal,
    body: &TargetBody,
) -> ApiResult<Target> {
    match (&body.target_folder_id, &body.target_share_id) {
        (Some(f), _) => {
            let (row, share) = live_folder(state, p, &f.to_string()).await?;
            require_perm(state, p, On::Folder(&row), Permission::Create).await?;
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
            let share = live_share(state, p, &s.to_string()).await?;
            require_perm(state, p, On::Share(&share), Permission::Create).await?;
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

/// Where a new item goes: a live folder of the share (`field` names the
/// body field that chose it) or the share's root; 403 without CREATE there.
pub async fn creation_target(
    state: &AppState,
    p: &Principal,
    share_id: ShareId,
    folder_id: Option<FolderId>,
    field: &str,
) -> ApiResult<Target> {
    let parent_path = match folder_id {
        Some(f) => {
            let (row, _) = live_folder(state, p, &f.to_string()).await?;
            if row.share_id != share_id.to_string() {
                return Err(scaidrive_domain::DomainError::invalid(
                    field,
                    "the folder is not in that share",
                )
                .into());
            }
            require_write(p)?;
            require_perm(state, p, On::Folder(&row), Permission::Create).await?;
            row.path
        }
        None => {
            let share = live_share(state, p, &share_id.to_string()).await?;
            require_write(p)?;
            require_perm(state, p, On::Share(&share), Permission::Create).await?;
            "/".to_owned()
        }
    };
    Ok(Target {
        share_id,
        folder_id,
        parent_path,
    })
}

/// 403 unless the token may write files.
pub fn require_write(p: &Principal) -> ApiResult<()> {
    p.require(Scope::FilesWrite)
}

/// 403 unless the token may read files.
pub fn require_read(p: &Principal) -> ApiResult<()> {
    p.require(Scope::FilesRead)
}

/// Whether `s` is a media type: `type/subtype` (RFC 9110 tokens), then
/// optional `;` parameters, in at most 255 printable ASCII characters.
pub fn is_media_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let essence = s.split(';').next().unwrap_or_default().trim();
    s.len() <= 255
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && matches!(essence.split_once('/'), Some((t, sub)) if token(t) && token(sub))
}

/// The media type stored for new content: the client's when it is one (a
/// multipart part's header may hold anything), else `application/octet-stream`.
pub fn media_type_or_default(raw: Option<String>) -> String {
    raw.filter(|m| is_media_type(m))
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// What each of `rows` holds (`used_bytes`), in `rows` order: one query for all.
pub async fn used_bytes_of(state: &AppState, rows: &[ShareRow]) -> ApiResult<Vec<i64>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let used = q::share_usage(&state.db, &ids).await?;
    Ok(rows
        .iter()
        .map(|r| used.get(&r.id).copied().unwrap_or(0))
        .collect())
}

/// A share as the API shows it, with what it holds.
pub async fn share_body(state: &AppState, r: &ShareRow) -> ApiResult<dto::Share> {
    let used = used_bytes_of(state, std::slice::from_ref(r)).await?;
    Ok((r, used[0]).into())
}

/// [`share_body`] for a page of shares.
pub async fn share_bodies(state: &AppState, rows: &[ShareRow]) -> ApiResult<Vec<dto::Share>> {
    let used = used_bytes_of(state, rows).await?;
    Ok(rows.iter().zip(used).map(dto::Share::from).collect())
}

/// A live share the caller may act on as `need` says.
pub async fn share(
    state: &AppState,
    p: &Principal,
    id: ShareId,
    need: Need,
) -> ApiResult<ShareRow> {
    let row = live_share(state, p, &id.to_string()).await?;
    check(state, p, On::Share(&row), need).await?;
    Ok(row)
}

/// A share as the API shows it, read back after a write of the caller's.
pub async fn share_dto(state: &AppState, p: &Principal, id: &str) -> ApiResult<dto::Share> {
    share_body(state, &visible_share(state, p, id).await?).await
}

/// `PATCH` body of folders and files: rename, restore from the trash, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RenameOrRestore {
    /// 1–255 characters, no `/` or NUL, not `.` or `..`.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^/\\u0000]+$")]
    pub name: Option<String>,
    /// `true` takes the item out of the trash.
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
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Page size, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
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

/// A children listing, paginated (folders first), without the items the
/// caller may not read.
/// With no caller (an external link's recipient), nothing is hidden: the
/// link grants its whole resource.
pub async fn listing(
    state: &AppState,
    p: Option<&Principal>,
    share_id: &str,
    parent: Option<&str>,
    include_deleted: bool,
    page: &Page,
) -> ApiResult<(Vec<Entry>, i64)> {
    let (limit, offset) = page.resolve()?;
    let hidden = match p {
        Some(p) => hidden_children(state, p, share_id, parent).await?,
        None => Default::default(),
    };
    if hidden.is_empty() {
        let (folders, files, total) =
            q::children(&state.db, share_id, parent, include_deleted, limit, offset).await?;
        let items = folders
            .iter()
            .map(Entry::from)
            .chain(files.iter().map(Entry::from))
            .collect();
        return Ok((items, total));
    }
    // Some children deny this caller: leave them out in SQL, so pages and
    // the total stay consistent.
    let hidden: Vec<String> = hidden.into_iter().collect();
    let (folders, files, total) = q::children_except(
        &state.db,
        share_id,
        parent,
        include_deleted,
        limit,
        offset,
        &hidden,
    )
    .await?;
    let items = folders
        .iter()
        .map(Entry::from)
        .chain(files.iter().map(Entry::from))
        .collect();
    Ok((items, total))
}

/// Children of a folder (or share root) the caller cannot read: only those
/// with ACL state of their own can differ from the parent, so only those are
/// resolved, in three queries whatever their number.
async fn hidden_children(
    state: &AppState,
    p: &Principal,
    share_id: &str,
    parent: Option<&str>,
) -> ApiResult<std::collections::HashSet<String>> {
    let mut hidden = std::collections::HashSet::new();
    if p.is_tenant_admin || !has_acls(state, share_id).await? {
        return Ok(hidden);
    }
    let ids = access::children_with_acls(&state.db, share_id, parent).await?;
    if ids.is_empty() {
        return Ok(hidden);
    }
    let mut chain = match parent {
        Some(f) => access::folder_chain(&state.db, f).await?,
        None => vec![],
    };
    chain.push(share_id.to_owned());
    let inherited = access::levels(&state.db, &chain).await?;
    let own = access::levels(&state.db, &ids).await?;
    let role = share_role_of(state, p, share_id, "").await?;
    let principals = p.principal_ids();
    let subject = subject(p, &principals);
    for (id, level) in ids.iter().zip(own) {
        let levels: Vec<_> = std::iter::once(level)
            .chain(inherited.iter().cloned())
            .collect();
        if !resolve(&subject, role, &levels).contains(Permission::Read) {
            hidden.insert(id.clone());
        }
    }
    Ok(hidden)
}

#[cfg(test)]
mod tests {
    use super::is_media_type;

    #[test]
    fn media_types_are_type_slash_subtype_tokens() {
        for ok in [
            "text/plain",
            "application/vnd.ms-excel",
            "text/markdown; charset=utf-8",
            "image/svg+xml",
        ] {
            assert!(is_media_type(ok), "{ok}");
        }
        for bad in [
            "0",
            "",
            "text",
            "/plain",
            "text/",
            "te xt/plain",
            "text/plain\u{e9}",
            "a/b/c",
        ] {
            assert!(!is_media_type(bad), "{bad}");
        }
    }
}
