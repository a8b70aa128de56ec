//! Folders: create, read, list children, rename/restore, move, trash or purge.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use scaidrive_domain::access::Permission;
use scaidrive_domain::id::{FileId, FolderId, ShareId};
use scaidrive_projections::drive_queries as q;
use serde::Deserialize;

use super::drive::{self, folder_dto, resolve_target, Need, Page, RenameOrRestore, TargetBody};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::command::drive as cmd;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/folders", post(create))
        .route("/folders/{id}", get(read).patch(update).delete(remove))
        .route("/folders/{id}/children", get(children))
        .route("/folders/{id}/move", post(move_to))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateFolder {
    #[schema(value_type = doc::ShareId)]
    share_id: ShareId,
    /// The parent folder; absent or `null` for the share root.
    #[schema(value_type = Option<doc::FolderId>)]
    parent_id: Option<FolderId>,
    /// 1–255 characters, no `/` or NUL, not `.` or `..`.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^/\\u0000]+$")]
    name: String,
}

impl Validate for CreateFolder {
    const REQUIRED: &'static [&'static str] = &["share_id", "name"];
    fn validate(&self, v: &mut Violations) {
        v.item_name("name", &self.name);
    }
}

/// Creates a folder (CREATE on the parent).
#[utoipa::path(post, path = "/folders", request_body = CreateFolder, responses(
    (status = 201, description = "The new folder", body = dto::Folder),
    (status = 404, description = "No such share or parent folder"),
    (status = 409, description = "A live sibling has this name (NAME_CONFLICT)"),
    (status = 410, description = "The share or parent folder is in the trash"),
))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<CreateFolder>,
) -> ApiResult<Response> {
    let target =
        drive::creation_target(&state, &p, body.share_id, body.parent_id, "parent_id").await?;
    let ctx = p.context();
    let (id, committed) =
        cmd::create_folder(&state.bus, &ctx, p.tenant_id, target, &body.name, p.user_id).await?;
    let id = id.to_string();
    respond
        .item(&state, &committed, StatusCode::CREATED, &id, || {
            folder_dto(&state, &p, &id)
        })
        .await
}

/// One folder.
#[utoipa::path(get, path = "/folders/{id}", params(("id" = inline(doc::FolderId), Path)), responses(
    (status = 200, description = "The folder", body = dto::Folder),
    (status = 410, description = "The folder is in the trash"),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<FolderId>,
) -> ApiResult<Json<dto::Folder>> {
    let (row, _) = drive::folder(&state, &p, id, Need::Read).await?;
    Ok(Json((&row).into()))
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

/// A folder's children, folders first.
#[utoipa::path(get, path = "/folders/{id}/children", params(("id" = inline(doc::FolderId), Path), ChildrenQuery), responses(
    (status = 200, description = "A page of children", body = dto::Listing),
    (status = 410, description = "The folder is in the trash"),
))]
async fn children(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<FolderId>,
    ApiQuery(q): ApiQuery<ChildrenQuery>,
) -> ApiResult<Json<dto::Listing>> {
    let (row, _) = drive::folder(&state, &p, id, Need::Read).await?;
    let page = Page {
        limit: q.limit,
        offset: q.offset,
    };
    let (items, total) = drive::listing(
        &state,
        Some(&p),
        &row.share_id,
        Some(&row.id),
        q.include_deleted.unwrap_or(false),
        &page,
    )
    .await?;
    Ok(Json(dto::Listing {
        items,
        path: row.path,
        total,
    }))
}

/// Renames a folder, restores it from the trash, or both (WRITE).
#[utoipa::path(patch, path = "/folders/{id}", request_body = super::drive::RenameOrRestore,
    params(("id" = inline(doc::FolderId), Path)),
    responses(
        (status = 200, description = "The folder as changed", body = dto::Folder),
        (status = 409, description = "A live sibling has this name (NAME_CONFLICT)"),
        (status = 410, description = "The folder (or a folder above it, or its share) is in the trash"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<FolderId>,
    ApiJson(body): ApiJson<RenameOrRestore>,
) -> ApiResult<Response> {
    let ctx = p.context();
    let mut position = None;
    if body.restore == Some(true) {
        let (row, share) = drive::folder_any(&state, &p, id, Need::Perm(Permission::Write)).await?;
        if share.is_deleted {
            return Err(ApiError::Domain(scaidrive_domain::DomainError::Gone(
                "share is in the trash".into(),
            )));
        }
        if row.trashed_via.is_some() && !row.is_deleted {
            return Err(ApiError::Domain(scaidrive_domain::DomainError::Gone(
                "a folder above this one is in the trash; restore that one".into(),
            )));
        }
        let c = cmd::trash_folder(&state.bus, &ctx, id, true, &row.path).await?;
        position = c.position.or(position);
        // The rename below reads the restored folder.
        state.caught_up(position).await;
    }
    if let Some(name) = &body.name {
        let (row, _) = drive::folder(&state, &p, id, Need::Perm(Permission::Write)).await?;
        let c = cmd::rename_folder(&state.bus, &ctx, id, name, &row.path).await?;
        position = c.position.or(position);
    }
    if body.name.is_none() && body.restore != Some(true) {
        drive::live_folder(&state, &p, &id.to_string()).await?;
    }
    let id = id.to_string();
    respond
        .after(&state, position, StatusCode::OK, || {
            folder_dto(&state, &p, &id)
        })
        .await
}

/// Moves a folder and its subtree (DELETE here, CREATE at the target).
#[utoipa::path(post, path = "/folders/{id}/move", request_body = super::drive::TargetBody,
    params(("id" = inline(doc::FolderId), Path)),
    responses(
        (status = 200, description = "The folder at its new place", body = dto::Folder),
        (status = 409, description = "Name taken at the target, or the target is inside the folder"),
        (status = 410, description = "The folder or the target is in the trash"),
        (status = 507, description = "The target share's quota would be exceeded"),
    ),
)]
async fn move_to(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<FolderId>,
    ApiJson(body): ApiJson<TargetBody>,
) -> ApiResult<Response> {
    let (row, _) = drive::folder(&state, &p, id, Need::Perm(Permission::Delete)).await?;
    let target = resolve_target(&state, &p, &body).await?;
    let ctx = p.context();
    let (folders, files): (Vec<FolderId>, Vec<FileId>) =
        if target.share_id.to_string() != row.share_id {
            // The bytes that change share are those of the subtree: list it
            // from a read model that has every write committed so far.
            state.caught_up(Some(state.store.head().await?)).await;
            let (mut folders, files) = q::subtree(&state.db, &row.share_id, &row.path).await?;
            folders.sort_by(|a, b| a.path.cmp(&b.path));
            (
                folders.iter().filter_map(|f| f.id.parse().ok()).collect(),
                files.iter().filter_map(|f| f.id.parse().ok()).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
    let committed =
        cmd::move_folder(&state.bus, &ctx, id, target, &row.path, &folders, &files).await?;
    respond
        .item(&state, &committed, StatusCode::OK, &row.id, || {
            folder_dto(&state, &p, &row.id)
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Purge instead of moving to the trash.
    permanent: Option<bool>,
}

/// Moves a folder and its subtree to the trash, or purges it (DELETE).
#[utoipa::path(delete, path = "/folders/{id}", params(("id" = inline(doc::FolderId), Path), DeleteQuery), responses(
    (status = 204, description = "Trashed or purged"),
    (status = 410, description = "Already in the trash (purge it with permanent=true)"),
))]
async fn remove(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<FolderId>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<Response> {
    let ctx = p.context();
    let need = Need::Perm(Permission::Delete);
    let committed = if q.permanent.unwrap_or(false) {
        let (row, _) = drive::folder_any(&state, &p, id, need).await?;
        let (folders, files) = q::subtree(&state.db, &row.share_id, &row.path).await?;
        let folders: Vec<FolderId> = folders.iter().filter_map(|f| f.id.parse().ok()).collect();
        let files: Vec<FileId> = files.iter().filter_map(|f| f.id.parse().ok()).collect();
        cmd::purge_folder(&state.bus, &ctx, id, &folders, &files, p.user_id).await?
    } else {
        let (row, _) = drive::folder(&state, &p, id, need).await?;
        cmd::trash_folder(&state.bus, &ctx, id, false, &row.path).await?
    };
    Ok(respond.empty(&state, &committed).await)
}
