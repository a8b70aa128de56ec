//! Shares: create, list, read, rename, trash and restore; root listing; trash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use scaidrive_domain::access::Permission;
use scaidrive_domain::drive::{Owner, ShareType};
use scaidrive_domain::id::ShareId;
use scaidrive_projections::drive_queries as q;
use serde::Deserialize;
use serde_json::Value;

use super::drive::{
    self, require_read, require_write, share_bodies, share_body, share_dto, visible_share, Need,
    On, Page,
};
use super::dto::{self, Entry};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::command::shares as cmd;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/shares", get(list).post(create))
        .route("/shares/{id}", get(read).patch(update).delete(remove))
        .route("/shares/{id}/restore", post(restore))
        .route("/shares/{id}/children", get(children))
        .route("/shares/{id}/trash", get(trash))
}

/// `?include_trashed=&limit=&offset=` of share listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Include shares in the trash.
    pub include_trashed: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

impl ListQuery {
    pub fn page(&self) -> ApiResult<(i64, i64)> {
        Page {
            limit: self.limit,
            offset: self.offset,
        }
        .resolve()
    }
}

/// The shares the caller may see (all of the tenant's for tenant admins).
#[utoipa::path(get, path = "/shares", params(ListQuery), responses(
    (status = 200, description = "A page of shares", body = dto::ShareList),
))]
async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<dto::ShareList>> {
    require_read(&p)?;
    let (limit, offset) = q.page()?;
    let principals = (!p.is_tenant_admin).then(|| p.principal_ids());
    let (rows, total) = q::shares(
        &state.db,
        &p.tenant_id.to_string(),
        principals.as_deref(),
        q.include_trashed.unwrap_or(false),
        limit,
        offset,
    )
    .await?;
    Ok(Json(dto::ShareList {
        shares: share_bodies(&state, &rows).await?,
        total,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateShare {
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    #[schema(value_type = doc::ShareTypeDoc)]
    share_type: ShareType,
    /// The owning user (the caller, unless a tenant admin) or group (tenant admins).
    #[schema(value_type = doc::OwnerId)]
    owner_id: String,
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// At most 2^63 − 1.
    quota_bytes: Option<u64>,
}

impl Validate for CreateShare {
    const REQUIRED: &'static [&'static str] = &["name", "share_type", "owner_id"];
    fn validate(&self, v: &mut Violations) {
        v.length("name", &self.name, 1, 255);
        if let Some(d) = &self.description {
            v.length("description", d, 0, 2000);
        }
        // Stored as a signed 64-bit count of bytes.
        if let Some(q) = self.quota_bytes.filter(|q| i64::try_from(*q).is_err()) {
            v.push(
                "less_than_equal",
                "quota_bytes",
                format!("Input should be less than or equal to {}", i64::MAX),
                Value::from(q),
            );
        }
        if Owner::parse(&self.owner_id).is_none() {
            v.push(
                "value_error",
                "owner_id",
                "Value error, owner_id must be a user (usr_) or group (grp_) id",
                Value::from(self.owner_id.clone()),
            );
        }
    }
}

/// Creates a share.
#[utoipa::path(post, path = "/shares", request_body = CreateShare, responses(
    (status = 201, description = "The new share", body = dto::Share),
))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<CreateShare>,
) -> ApiResult<Response> {
    require_write(&p)?;
    let owner =
        Owner::parse(&body.owner_id).ok_or_else(|| ApiError::BadRequest("bad owner".into()))?;
    match owner {
        Owner::User(u) if u == p.user_id => {}
        Owner::User(u) => {
            if !p.is_tenant_admin {
                return Err(ApiError::Forbidden(
                    "only tenant admins create shares owned by someone else".into(),
                ));
            }
            let exists = scaidrive_projections::tenancy::user(
                &state.db,
                &p.tenant_id.to_string(),
                &u.to_string(),
            )
            .await?;
            if exists.is_none() {
                return Err(scaidrive_domain::DomainError::invalid(
                    "owner_id",
                    "no such user in this tenant",
                )
                .into());
            }
        }
        Owner::Group(_) => {
            if !p.is_tenant_admin {
                return Err(ApiError::Forbidden(
                    "only tenant admins create group-owned shares".into(),
                ));
            }
        }
    }
    let ctx = p.context();
    let new = cmd::NewShare {
        tenant_id: p.tenant_id,
        name: body.name,
        description: body.description,
        share_type: body.share_type,
        owner,
        quota_bytes: body.quota_bytes,
        by: p.user_id,
    };
    let (share_id, committed) = cmd::create(&state.bus, &ctx, new).await?;
    let id = share_id.to_string();
    respond
        .full()
        .item(&state, &committed, StatusCode::CREATED, &id, || {
            share_dto(&state, &p, &id)
        })
        .await
}

/// One share.
#[utoipa::path(get, path = "/shares/{id}", params(("id" = inline(doc::ShareId), Path)), responses(
    (status = 200, description = "The share", body = dto::Share),
    (status = 410, description = "The share is in the trash"),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<ShareId>,
) -> ApiResult<Json<dto::Share>> {
    let row = drive::share(&state, &p, id, Need::Read).await?;
    Ok(Json(share_body(&state, &row).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct UpdateShare {
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
    #[schema(max_length = 2000)]
    description: Option<String>,
}

impl Validate for UpdateShare {
    fn validate(&self, v: &mut Violations) {
        if let Some(n) = &self.name {
            v.length("name", n, 1, 255);
        }
        if let Some(d) = &self.description {
            v.length("description", d, 0, 2000);
        }
    }
}

/// The owner (a user, or a member of the owning group) or a tenant admin.
pub fn is_owner(p: &Principal, row: &q::ShareRow) -> bool {
    p.is_tenant_admin || row.owner_id == p.user_id.to_string() || p.groups.contains(&row.owner_id)
}

/// Renames a share or changes its description (MANAGE_PERMISSIONS).
#[utoipa::path(patch, path = "/shares/{id}", request_body = UpdateShare, params(("id" = inline(doc::ShareId), Path)),
    responses(
        (status = 200, description = "The share as changed", body = dto::Share),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<ShareId>,
    ApiJson(body): ApiJson<UpdateShare>,
) -> ApiResult<Response> {
    let row = drive::share(&state, &p, id, Need::Perm(Permission::ManagePermissions)).await?;
    let ctx = p.context();
    let committed = cmd::update(&state.bus, &ctx, id, body.name, body.description).await?;
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &row.id, || {
            share_dto(&state, &p, &row.id)
        })
        .await
}

/// Trashes or restores a share: owner (or tenant admin) only.
async fn set_trashed(
    state: &AppState,
    p: &Principal,
    id: ShareId,
    trashed: bool,
) -> ApiResult<crate::command::Committed> {
    let row = visible_share(state, p, &id.to_string()).await?;
    require_write(p)?;
    if !is_owner(p, &row) {
        let verb = if trashed { "delete" } else { "restore" };
        return Err(drive::denied(
            p,
            On::Share(&row),
            "OWNER",
            format!("only the share's owner can {verb} it"),
        ));
    }
    Ok(cmd::set_trashed(&state.bus, &p.context(), id, trashed).await?)
}

/// Moves a share to the trash (its owner or a tenant admin).
#[utoipa::path(delete, path = "/shares/{id}", params(("id" = inline(doc::ShareId), Path)), responses(
    (status = 204, description = "In the trash"),
    (status = 410, description = "Already in the trash"),
))]
async fn remove(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<ShareId>,
) -> ApiResult<Response> {
    let committed = set_trashed(&state, &p, id, true).await?;
    Ok(respond.full().empty(&state, &committed).await)
}

/// Takes a share out of the trash (its owner or a tenant admin).
#[utoipa::path(post, path = "/shares/{id}/restore", params(("id" = inline(doc::ShareId), Path)), responses(
    (status = 200, description = "The restored share", body = dto::Share),
    (status = 409, description = "The share is not in the trash"),
))]
async fn restore(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<ShareId>,
) -> ApiResult<Response> {
    let committed = set_trashed(&state, &p, id, false).await?;
    let id = id.to_string();
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &id, || {
            share_dto(&state, &p, &id)
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ChildrenQuery {
    /// Include items in the trash.
    include_deleted: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// The share's root listing, folders first.
#[utoipa::path(get, path = "/shares/{id}/children", params(("id" = inline(doc::ShareId), Path), ChildrenQuery), responses(
    (status = 200, description = "A page of the root's children", body = dto::Listing),
    (status = 410, description = "The share is in the trash"),
))]
async fn children(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<ShareId>,
    ApiQuery(q): ApiQuery<ChildrenQuery>,
) -> ApiResult<Json<dto::Listing>> {
    let row = drive::share(&state, &p, id, Need::Read).await?;
    let page = Page {
        limit: q.limit,
        offset: q.offset,
    };
    let (items, total) = drive::listing(
        &state,
        Some(&p),
        &row.id,
        None,
        q.include_deleted.unwrap_or(false),
        &page,
    )
    .await?;
    Ok(Json(dto::Listing {
        items,
        path: "/".into(),
        total,
    }))
}

/// What is in the share's trash.
#[utoipa::path(get, path = "/shares/{id}/trash", params(("id" = inline(doc::ShareId), Path)), responses(
    (status = 200, description = "Trashed folders and files", body = dto::TrashListing),
    (status = 410, description = "The share is in the trash"),
))]
async fn trash(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<ShareId>,
) -> ApiResult<Json<dto::TrashListing>> {
    let row = drive::share(&state, &p, id, Need::Read).await?;
    let (folders, files) = q::trash(&state.db, &row.id).await?;
    let items: Vec<Entry> = folders
        .iter()
        .map(|f| Entry::from(f).trashed(f.deleted_at.map(super::ts)))
        .chain(
            files
                .iter()
                .map(|f| Entry::from(f).trashed(f.deleted_at.map(super::ts))),
        )
        .collect();
    let total = items.len() as i64;
    Ok(Json(dto::TrashListing { items, total }))
}
