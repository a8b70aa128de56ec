//! Permission checks, effective permissions, ACL editing and ownership
//! transfer (SPEC §4.2, §4.5).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use scaidrive_domain::access::{AceType, Permission, Permissions, PrincipalType};
use scaidrive_domain::drive::Owner;
use scaidrive_domain::id::{AceId, FileId, FolderId};
use scaidrive_domain::sharing::{AceRecord, ResourceType};
use scaidrive_domain::DomainError;
use scaidrive_projections::access::{self, AceRow};
use scaidrive_projections::drive_queries::{FileRow, FolderRow, ShareRow};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::drive::{
    effective, file_dto, folder_dto, live_file, live_folder, path_id, require_perm, require_read,
    require_write, visible_file, visible_folder, visible_share, On,
};
use super::dto::{self, AclEntry, OwnedResource, EVERYONE};
use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::sharing::principal_exists;
use super::state::AppState;
use crate::command::permissions::{self as cmd, AclTarget};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/permissions/check", get(check_query).post(check_body))
        .route("/permissions/check/batch", post(check_batch))
        .route("/permissions/effective", get(effective_permissions))
        .route(
            "/permissions/acl/{resource_type}/{id}",
            get(read_acl).post(add_entry).delete(remove_entry),
        )
        .route(
            "/permissions/acl/{resource_type}/{id}/inheritance",
            put(set_inheritance),
        )
        .route(
            "/permissions/ownership/{resource_type}/{id}/transfer",
            post(transfer),
        )
}

/// A resource with the share it lives in.
enum Resource {
    Share(ShareRow),
    Folder(FolderRow, ShareRow),
    File(FileRow, ShareRow),
}

impl Resource {
    fn on(&self) -> On<'_> {
        match self {
            Resource::Share(s) => On::Share(s),
            Resource::Folder(f, _) => On::Folder(f),
            Resource::File(f, _) => On::File(f),
        }
    }

    fn kind(&self) -> ResourceType {
        match self {
            Resource::Share(_) => ResourceType::Share,
            Resource::Folder(..) => ResourceType::Folder,
            Resource::File(..) => ResourceType::File,
        }
    }

    fn id(&self) -> &str {
        match self {
            Resource::Share(s) => &s.id,
            Resource::Folder(f, _) => &f.id,
            Resource::File(f, _) => &f.id,
        }
    }

    fn share(&self) -> &ShareRow {
        match self {
            Resource::Share(s) | Resource::Folder(_, s) | Resource::File(_, s) => s,
        }
    }

    /// What an ACL command on this resource names.
    fn target(&self) -> ApiResult<AclTarget> {
        Ok(AclTarget {
            resource_type: self.kind(),
            resource_id: self.id().to_owned(),
            share_id: path_id(&self.share().id, "share")?,
        })
    }

    /// The resource's ancestors, nearest first, ending at the share root.
    async fn ancestors(&self, state: &AppState) -> ApiResult<Vec<String>> {
        let mut chain = match self {
            Resource::Share(_) => return Ok(vec![]),
            Resource::Folder(f, _) => match &f.parent_id {
                Some(parent) => access::folder_chain(&state.db, parent).await?,
                None => vec![],
            },
            Resource::File(f, _) => match &f.folder_id {
                Some(parent) => access::folder_chain(&state.db, parent).await?,
                None => vec![],
            },
        };
        chain.push(self.share().id.clone());
        Ok(chain)
    }
}

fn resource_type(raw: &str) -> ApiResult<ResourceType> {
    ResourceType::parse(raw).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "resource_type must be share, folder or file, not '{raw}'"
        ))
    })
}

/// The resource if the caller can see it (404 otherwise; trashed included).
async fn visible(
    state: &AppState,
    p: &Principal,
    t: ResourceType,
    id: &str,
) -> ApiResult<Resource> {
    Ok(match t {
        ResourceType::Share => {
            let _: scaidrive_domain::id::ShareId = path_id(id, "share")?;
            Resource::Share(visible_share(state, p, id).await?)
        }
        ResourceType::Folder => {
            let _: scaidrive_domain::id::FolderId = path_id(id, "folder")?;
            let (f, s) = visible_folder(state, p, id).await?;
            Resource::Folder(f, s)
        }
        ResourceType::File => {
            let _: scaidrive_domain::id::FileId = path_id(id, "file")?;
            let (f, s) = visible_file(state, p, id).await?;
            Resource::File(f, s)
        }
    })
}

// -------------------------------------------------------------------- checks

#[derive(Debug, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Check {
    #[schema(value_type = doc::ResourceTypeDoc)]
    #[param(value_type = doc::ResourceTypeDoc, inline)]
    resource_type: ResourceType,
    /// A resource that does not exist or is not visible answers `allowed: false`.
    resource_id: String,
    #[schema(value_type = doc::PermissionDoc)]
    #[param(value_type = doc::PermissionDoc, inline)]
    permission: String,
}

impl Validate for Check {
    const REQUIRED: &'static [&'static str] = &["resource_type", "resource_id", "permission"];
    fn validate(&self, v: &mut Violations) {
        check_fields(v, "", &self.permission);
    }
}

fn check_fields(v: &mut Violations, prefix: &str, permission: &str) {
    if permission.parse::<Permission>().is_err() {
        v.push(
            "enum",
            &format!("{prefix}permission"),
            "Input should be 'READ', 'WRITE', 'DELETE', 'CREATE', 'SHARE' or 'MANAGE_PERMISSIONS'",
            Value::from(permission),
        );
    }
}

/// Whether the caller holds `permission`; a resource that does not exist or
/// that the caller cannot see answers `false` alike.
async fn allowed(state: &AppState, p: &Principal, c: &Check) -> ApiResult<bool> {
    let Ok(permission) = c.permission.parse::<Permission>() else {
        return Ok(false);
    };
    match visible(state, p, c.resource_type, &c.resource_id).await {
        Ok(r) => Ok(effective(state, p, r.on()).await?.contains(permission)),
        Err(ApiError::NotFound(_)) | Err(ApiError::BadRequest(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn check_result(c: &Check, allowed: bool) -> dto::CheckResult {
    dto::CheckResult {
        resource_type: c.resource_type.as_str(),
        resource_id: c.resource_id.clone(),
        permission: c.permission.to_ascii_uppercase(),
        allowed,
    }
}

/// Whether the caller holds a permission on a resource.
#[utoipa::path(get, path = "/permissions/check", params(Check), responses(
    (status = 200, description = "The answer", body = dto::CheckResult),
))]
async fn check_query(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(c): ApiQuery<Check>,
) -> ApiResult<Json<dto::CheckResult>> {
    require_read(&p)?;
    if c.permission.parse::<Permission>().is_err() {
        return Err(ApiError::BadRequest(format!(
            "permission must be one of READ, WRITE, DELETE, CREATE, SHARE, MANAGE_PERMISSIONS, not '{}'",
            c.permission
        )));
    }
    let ok = allowed(&state, &p, &c).await?;
    Ok(Json(check_result(&c, ok)))
}

/// Whether the caller holds a permission on a resource (body form).
#[utoipa::path(post, path = "/permissions/check", request_body = Check, responses(
    (status = 200, description = "The answer", body = dto::CheckResult),
))]
async fn check_body(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(c): ApiJson<Check>,
) -> ApiResult<Json<dto::CheckResult>> {
    require_read(&p)?;
    let ok = allowed(&state, &p, &c).await?;
    Ok(Json(check_result(&c, ok)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Batch {
    #[schema(max_items = 100)]
    checks: Vec<Check>,
}

impl Validate for Batch {
    const REQUIRED: &'static [&'static str] = &["checks"];
    fn validate(&self, v: &mut Violations) {
        if self.checks.len() > 100 {
            v.push(
                "too_long",
                "checks",
                "List should have at most 100 items",
                Value::from(self.checks.len()),
            );
        }
        for (i, c) in self.checks.iter().enumerate() {
            check_fields(v, &format!("checks.{i}."), &c.permission);
        }
    }
}

/// Up to 100 checks at once.
#[utoipa::path(post, path = "/permissions/check/batch", request_body = Batch, responses(
    (status = 200, description = "One answer per check, in order", body = dto::BatchResult),
))]
async fn check_batch(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(b): ApiJson<Batch>,
) -> ApiResult<Json<dto::BatchResult>> {
    require_read(&p)?;
    let mut results = Vec::with_capacity(b.checks.len());
    for c in &b.checks {
        let ok = allowed(&state, &p, c).await?;
        results.push(check_result(c, ok));
    }
    Ok(Json(dto::BatchResult { results }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ResourceQuery {
    #[param(value_type = doc::ResourceTypeDoc, inline)]
    resource_type: ResourceType,
    #[param(value_type = doc::ResourceId, inline)]
    resource_id: String,
}

/// The caller's effective permissions on a resource.
#[utoipa::path(get, path = "/permissions/effective", params(ResourceQuery), responses(
    (status = 200, description = "Each permission held or not", body = dto::Effective),
    (status = 404, description = "No such resource, or not visible"),
))]
async fn effective_permissions(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ResourceQuery>,
) -> ApiResult<Json<dto::Effective>> {
    require_read(&p)?;
    let r = visible(&state, &p, q.resource_type, &q.resource_id).await?;
    let perms = effective(&state, &p, r.on()).await?;
    Ok(Json(dto::Effective::of(
        r.kind().as_str(),
        r.id().to_owned(),
        perms,
    )))
}

// ---------------------------------------------------------------------- ACLs

/// The id stored for a requested principal: none for `everyone`.
fn stored_principal_id(t: PrincipalType, requested: Option<&str>) -> String {
    match t {
        PrincipalType::Everyone => String::new(),
        _ => requested.unwrap_or_default().to_owned(),
    }
}

/// The entries that reach a resource from its ancestors, with where each
/// comes from (what breaking inheritance with `copy_inherited` copies).
async fn inherited(state: &AppState, r: &Resource) -> ApiResult<Vec<AceRow>> {
    let (own_inherits, _) = access::acl(&state.db, r.id()).await?;
    if !own_inherits {
        return Ok(vec![]);
    }
    let chain = r.ancestors(state).await?;
    let entries = access::entries_on(&state.db, &chain).await?;
    let broken = access::not_inheriting(&state.db, &chain).await?;
    let mut out = vec![];
    for id in &chain {
        out.extend(
            entries
                .iter()
                .filter(|e| &e.resource_id == id && e.inherit_to_children)
                .cloned(),
        );
        if broken.contains(id) {
            break;
        }
    }
    Ok(out)
}

async fn acl_dto(state: &AppState, r: &Resource) -> ApiResult<dto::Acl> {
    let (inherit, entries) = access::acl(&state.db, r.id()).await?;
    let from_parents = inherited(state, r).await?;
    Ok(dto::Acl {
        resource_type: r.kind().as_str(),
        resource_id: r.id().to_owned(),
        share_id: r.share().id.clone(),
        inherit_from_parent: inherit,
        entries: entries.iter().map(AclEntry::from).collect(),
        inherited_entries: from_parents.iter().map(AclEntry::inherited).collect(),
    })
}

/// A resource's ACL: its own entries and those it inherits.
#[utoipa::path(get, path = "/permissions/acl/{resource_type}/{id}", params(("resource_type" = inline(doc::ResourceTypeDoc), Path), ("id" = inline(doc::ResourceId), Path, description = "The resource's id (its prefix matches resource_type)")), responses(
    (status = 200, description = "The ACL", body = dto::Acl),
))]
async fn read_acl(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((t, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<dto::Acl>> {
    let t = resource_type(&t)?;
    let r = visible(&state, &p, t, &id).await?;
    require_read(&p)?;
    Ok(Json(acl_dto(&state, &r).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct AddEntry {
    #[schema(value_type = doc::AclPrincipalType)]
    principal_type: PrincipalType,
    /// `usr_`/`grp_` id of the caller's tenant; for `everyone`, `"everyone"`,
    /// null, empty or absent.
    #[schema(pattern = "^$|^everyone$|^(usr_|grp_)[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}$")]
    principal_id: Option<String>,
    #[schema(value_type = Vec<doc::PermissionDoc>, min_items = 1)]
    permissions: Vec<String>,
    /// Default `allow`.
    #[schema(value_type = Option<doc::AceTypeDoc>)]
    ace_type: Option<AceType>,
    /// Default `true`.
    inherit_to_children: Option<bool>,
}

impl Validate for AddEntry {
    const REQUIRED: &'static [&'static str] = &["principal_type", "permissions"];
    fn validate(&self, v: &mut Violations) {
        principal_fields(v, self.principal_type, self.principal_id.as_deref());
        if self.permissions.is_empty() {
            v.push(
                "too_short",
                "permissions",
                "List should have at least 1 item",
                Value::Array(vec![]),
            );
        }
        for (i, perm) in self.permissions.iter().enumerate() {
            if perm.parse::<Permission>().is_err() {
                v.push(
                    "enum",
                    &format!("permissions.{i}"),
                    "Input should be 'READ', 'WRITE', 'DELETE', 'CREATE', 'SHARE' or 'MANAGE_PERMISSIONS'",
                    Value::from(perm.as_str()),
                );
            }
        }
    }
}

fn principal_fields(v: &mut Violations, t: PrincipalType, id: Option<&str>) {
    match (t, id) {
        (PrincipalType::Everyone, Some(id)) if !id.is_empty() && id != EVERYONE => v.push(
            "value_error",
            "principal_id",
            "must be 'everyone', null or absent for principal_type everyone",
            Value::from(id),
        ),
        (PrincipalType::Everyone, _) => {}
        (_, None) => v.push("missing", "principal_id", "Field required", Value::Null),
        (t, Some(id)) => {
            let ok = match t {
                PrincipalType::User => id.parse::<scaidrive_domain::id::UserId>().is_ok(),
                _ => id.parse::<scaidrive_domain::id::GroupId>().is_ok(),
            };
            if !ok {
                v.push(
                    "value_error",
                    "principal_id",
                    format!("not a valid {} id", t.as_str()),
                    Value::from(id),
                );
            }
        }
    }
}

/// 403 unless the caller may edit the resource's permissions.
async fn managed(state: &AppState, p: &Principal, t: &str, id: &str) -> ApiResult<Resource> {
    let t = resource_type(t)?;
    let r = visible(state, p, t, id).await?;
    require_write(p)?;
    require_perm(state, p, r.on(), Permission::ManagePermissions).await?;
    Ok(r)
}

/// Adds an ACL entry (MANAGE_PERMISSIONS).
#[utoipa::path(post, path = "/permissions/acl/{resource_type}/{id}", request_body = AddEntry,
    params(("resource_type" = inline(doc::ResourceTypeDoc), Path), ("id" = inline(doc::ResourceId), Path, description = "The resource's id (its prefix matches resource_type)")),
    responses(
        (status = 201, description = "The new entry", body = dto::AclEntry),
        (status = 409, description = "The same entry exists"),
    ),
)]
async fn add_entry(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((t, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<AddEntry>,
) -> ApiResult<Response> {
    let r = managed(&state, &p, &t, &id).await?;
    let principal_id = stored_principal_id(body.principal_type, body.principal_id.as_deref());
    principal_exists(&state, &p, body.principal_type, &principal_id).await?;
    let target = r.target()?;
    let entry = AceRecord {
        id: AceId::from_uuid(Uuid::now_v7()),
        principal_type: body.principal_type,
        principal_id,
        permissions: body
            .permissions
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
        ace_type: body.ace_type.unwrap_or(AceType::Allow),
        inherit_to_children: body.inherit_to_children.unwrap_or(true),
    };
    let entry_id = entry.id.to_string();
    let change = cmd::AclChange::Add(entry);
    let committed = cmd::edit_acl(&state.bus, &p.context(), target, change).await?;
    let read = || async {
        let row = access::entries_on(&state.db, &[r.id().to_owned()])
            .await?
            .into_iter()
            .find(|e| e.id == entry_id)
            .ok_or_else(|| ApiError::internal("ACL entry not projected"))?;
        Ok(AclEntry::from(&row))
    };
    let created = StatusCode::CREATED;
    respond
        .full()
        .item(&state, &committed, created, &entry_id, read)
        .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RemoveEntry {
    #[schema(value_type = doc::AclPrincipalType)]
    principal_type: PrincipalType,
    /// As when adding: for `everyone`, `"everyone"`, null, empty or absent.
    #[schema(pattern = "^$|^everyone$|^(usr_|grp_)[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}$")]
    principal_id: Option<String>,
    #[schema(value_type = doc::AceTypeDoc)]
    ace_type: AceType,
}

impl Validate for RemoveEntry {
    const REQUIRED: &'static [&'static str] = &["principal_type", "ace_type"];
    fn validate(&self, v: &mut Violations) {
        principal_fields(v, self.principal_type, self.principal_id.as_deref());
    }
}

/// Removes an ACL entry (MANAGE_PERMISSIONS).
#[utoipa::path(delete, path = "/permissions/acl/{resource_type}/{id}", request_body = RemoveEntry,
    params(("resource_type" = inline(doc::ResourceTypeDoc), Path), ("id" = inline(doc::ResourceId), Path, description = "The resource's id (its prefix matches resource_type)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 409, description = "No such entry"),
    ),
)]
async fn remove_entry(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((t, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RemoveEntry>,
) -> ApiResult<Response> {
    let r = managed(&state, &p, &t, &id).await?;
    let change = cmd::AclChange::Remove {
        principal_type: body.principal_type,
        principal_id: stored_principal_id(body.principal_type, body.principal_id.as_deref()),
        ace_type: body.ace_type,
    };
    let committed = cmd::edit_acl(&state.bus, &p.context(), r.target()?, change).await?;
    Ok(respond.full().empty(&state, &committed).await)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Inheritance {
    inherit_from_parent: bool,
    /// When breaking inheritance, copy the inherited entries first.
    copy_inherited: Option<bool>,
}

impl Validate for Inheritance {
    const REQUIRED: &'static [&'static str] = &["inherit_from_parent"];
}

/// Breaks or restores ACL inheritance (MANAGE_PERMISSIONS).
#[utoipa::path(put, path = "/permissions/acl/{resource_type}/{id}/inheritance",
    request_body = Inheritance, params(("resource_type" = inline(doc::ResourceTypeDoc), Path), ("id" = inline(doc::ResourceId), Path, description = "The resource's id (its prefix matches resource_type)")),
    responses((status = 200, description = "The ACL as changed", body = dto::Acl)),
)]
async fn set_inheritance(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((t, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Inheritance>,
) -> ApiResult<Response> {
    let r = managed(&state, &p, &t, &id).await?;
    let target = r.target()?;
    let copied = if !body.inherit_from_parent && body.copy_inherited.unwrap_or(false) {
        inherited(&state, &r)
            .await?
            .iter()
            .filter_map(|e| {
                Some(AceRecord {
                    id: AceId::from_uuid(Uuid::now_v7()),
                    principal_type: e.principal_type()?,
                    principal_id: e.principal_id.clone(),
                    permissions: Permissions(u8::try_from(e.permissions).ok()?).list(),
                    ace_type: if e.ace_type == "deny" {
                        AceType::Deny
                    } else {
                        AceType::Allow
                    },
                    inherit_to_children: e.inherit_to_children,
                })
            })
            .collect()
    } else {
        vec![]
    };
    let change = cmd::AclChange::Inheritance {
        inherit_from_parent: body.inherit_from_parent,
        copied,
    };
    let committed = cmd::edit_acl(&state.bus, &p.context(), target, change).await?;
    let read = || acl_dto(&state, &r);
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, r.id(), read)
        .await
}

// ----------------------------------------------------------------- ownership

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Transfer {
    /// A user of the caller's tenant, or for a share also a group.
    #[schema(value_type = doc::OwnerId)]
    new_owner_id: String,
}

impl Validate for Transfer {
    const REQUIRED: &'static [&'static str] = &["new_owner_id"];
    fn validate(&self, v: &mut Violations) {
        if Owner::parse(&self.new_owner_id).is_none() {
            v.push(
                "value_error",
                "new_owner_id",
                "must be a user (usr_…) or group (grp_…) id",
                Value::from(self.new_owner_id.as_str()),
            );
        }
    }
}

/// Transfers the ownership of a share (to a user or group), a folder or a
/// file (to a user): its current owner or a tenant admin only.
#[utoipa::path(post, path = "/permissions/ownership/{resource_type}/{id}/transfer",
    request_body = Transfer, params(("resource_type" = inline(doc::ResourceTypeDoc), Path), ("id" = inline(doc::ResourceId), Path, description = "The resource's id (its prefix matches resource_type)")),
    responses(
        (status = 200, description = "The share, folder or file with its new owner in `owner_id` (a transfer to the current owner changes nothing)", body = dto::OwnedResource),
        (status = 403, description = "The caller is neither the owner nor a tenant admin"),
        (status = 404, description = "No such resource, or not visible"),
        (status = 410, description = "The resource is in the trash"),
        (status = 422, description = "new_owner_id is not a user (or, for a share, a group) of the caller's tenant"),
    ),
)]
async fn transfer(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((t, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Transfer>,
) -> ApiResult<Response> {
    match resource_type(&t)? {
        ResourceType::Share => transfer_share(&state, &p, respond, &id, &body).await,
        item => transfer_item(&state, &p, respond, item, &id, &body).await,
    }
}

async fn transfer_share(
    state: &AppState,
    p: &Principal,
    respond: Respond,
    id: &str,
    body: &Transfer,
) -> ApiResult<Response> {
    let r = visible(state, p, ResourceType::Share, id).await?;
    require_write(p)?;
    let share = r.share();
    if !super::shares::is_owner(p, share) {
        return Err(super::drive::denied(
            p,
            On::Share(share),
            "OWNER",
            "only the share's owner or a tenant admin can transfer ownership".into(),
        ));
    }
    let new_owner = Owner::parse(&body.new_owner_id)
        .ok_or_else(|| DomainError::invalid("new_owner_id", "not a user or group id"))?;
    let kind = match new_owner {
        Owner::User(_) => PrincipalType::User,
        Owner::Group(_) => PrincipalType::Group,
    };
    principal_exists(state, p, kind, &body.new_owner_id).await?;
    let share_id = path_id(&share.id, "share")?;
    let what = cmd::Transfer::Share(share_id, new_owner);
    let committed = cmd::transfer(&state.bus, &p.context(), what, p.user_id).await?;
    respond
        .full()
        .item(state, &committed, StatusCode::OK, id, || async {
            let row = state
                .share_row(&p.tenant_id.to_string(), id)
                .await?
                .ok_or_else(|| ApiError::not_found("share"))?;
            Ok(OwnedResource::Share(
                super::drive::share_body(state, &row).await?,
            ))
        })
        .await
}

/// A folder's or file's ownership: it goes to a user of the tenant (the
/// read models keep a user as the owner of both), recorded on the item's
/// own stream.
async fn transfer_item(
    state: &AppState,
    p: &Principal,
    respond: Respond,
    t: ResourceType,
    id: &str,
    body: &Transfer,
) -> ApiResult<Response> {
    let what = t.as_str();
    let Some(Owner::User(new_owner)) = Owner::parse(&body.new_owner_id) else {
        return Err(ApiError::validation(FieldError::body(
            "value_error",
            &["new_owner_id"],
            format!(
                "Value error, a {what} is owned by a user: new_owner_id must be a user (usr_…) id"
            ),
            Value::from(body.new_owner_id.as_str()),
        )));
    };
    // The rows are kept so that a refusal names the resource it was about.
    let (folder, file) = match t {
        ResourceType::Folder => {
            let folder_id: FolderId = path_id(id, "folder")?;
            (Some((folder_id, live_folder(state, p, id).await?.0)), None)
        }
        _ => {
            let file_id: FileId = path_id(id, "file")?;
            (None, Some((file_id, live_file(state, p, id).await?.0)))
        }
    };
    let (on, owner_id) = match (&folder, &file) {
        (Some((_, f)), _) => (On::Folder(f), f.owner_id.as_str()),
        (_, Some((_, f))) => (On::File(f), f.owner_id.as_str()),
        (None, None) => return Err(ApiError::NotFound(format!("{what} not found"))),
    };
    require_write(p)?;
    if !(p.is_tenant_admin || owner_id == p.user_id.to_string()) {
        return Err(super::drive::denied(
            p,
            on,
            "OWNER",
            format!("only the {what}'s owner or a tenant admin can transfer its ownership"),
        ));
    }
    if !access::user_in_tenant(&state.db, &p.tenant_id.to_string(), &body.new_owner_id).await? {
        return Err(ApiError::validation(FieldError::body(
            "value_error",
            &["new_owner_id"],
            "Value error, no such user in this tenant",
            Value::from(body.new_owner_id.as_str()),
        )));
    }
    let ctx = p.context();
    let item = match (&folder, &file) {
        (Some((folder_id, _)), _) => cmd::Transfer::Folder(*folder_id, new_owner),
        (_, Some((file_id, _))) => cmd::Transfer::File(*file_id, new_owner),
        (None, None) => return Err(ApiError::NotFound(format!("{what} not found"))),
    };
    let committed = cmd::transfer(&state.bus, &ctx, item, p.user_id).await?;
    respond
        .full()
        .item(state, &committed, StatusCode::OK, id, || async {
            Ok(match t {
                ResourceType::Folder => OwnedResource::Folder(folder_dto(state, p, id).await?),
                _ => OwnedResource::File(file_dto(state, p, id).await?),
            })
        })
        .await
}
