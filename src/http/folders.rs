//! Folders: create, read, list children, rename/restore, move, trash or purge.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use scaidrive_domain::access::Permission;
use scaidrive_domain::id::{FileId, FolderId, ShareId};
use scaidrive_projections::drive_queries as q;
use serde::Deserialize;
use serde_json::{json, Value};

use super::drive::{
    self, folder_json, live_folder, path_id, require_perm, require_read, require_write,
    resolve_target, visible_folder, On, Page, RenameOrRestore, TargetBody,
};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::state::AppState;
use super::Positioned;
use crate::command::drive as cmd;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/folders", post(create))
        .route("/folders/{id}", get(read).patch(update).delete(remove))
        .route("/folders/{id}/children", get(children))
        .route("/folders/{id}/move", post(move_to))
}

#[derive(Debug, Deserialize)]
struct CreateFolder {
    share_id: ShareId,
    parent_id: Option<FolderId>,
    name: String,
}

impl Validate for CreateFolder {
    const REQUIRED: &'static [&'static str] = &["share_id", "name"];
    fn validate(&self, v: &mut Violations) {
        v.item_name("name", &self.name);
    }
}

async fn fresh(state: &AppState, p: &Principal, id: &str) -> ApiResult<Value> {
    let (row, _) = visible_folder(state, p, id).await?;
    Ok(folder_json(&row))
}

async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<CreateFolder>,
) -> ApiResult<impl IntoResponse> {
    let target =
        drive::creation_target(&state, &p, body.share_id, body.parent_id, "parent_id").await?;
    let ctx = p.context();
    let (id, committed) =
        cmd::create_folder(&state.bus, &ctx, p.tenant_id, target, &body.name, p.user_id).await?;
    state.caught_up(committed.position).await;
    Ok(Positioned(
        committed.position,
        (
            StatusCode::CREATED,
            Json(fresh(&state, &p, &id.to_string()).await?),
        ),
    ))
}

async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let _: FolderId = path_id(&id, "folder")?;
    let (row, _) = live_folder(&state, &p, &id).await?;
    require_read(&p)?;
    Ok(Json(folder_json(&row)))
}

#[derive(Debug, Deserialize)]
struct ChildrenQuery {
    include_deleted: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn children(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChildrenQuery>,
) -> ApiResult<Json<Value>> {
    let _: FolderId = path_id(&id, "folder")?;
    let (row, _) = live_folder(&state, &p, &id).await?;
    require_read(&p)?;
    let page = Page {
        limit: q.limit,
        offset: q.offset,
    };
    let (items, total) = drive::listing(
        &state,
        Some(&p),
        &row.share_id,
        Some(&id),
        q.include_deleted.unwrap_or(false),
        &page,
    )
    .await?;
    Ok(Json(
        json!({ "items": items, "path": row.path, "total": total }),
    ))
}

async fn update(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RenameOrRestore>,
) -> ApiResult<Positioned<Json<Value>>> {
    let folder_id: FolderId = path_id(&id, "folder")?;
    let ctx = p.context();
    let mut position = None;
    if body.restore == Some(true) {
        let (row, share) = visible_folder(&state, &p, &id).await?;
        require_write(&p)?;
        require_perm(&state, &p, On::Folder(&row), Permission::Write).await?;
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
        let c = cmd::trash_folder(&state.bus, &ctx, folder_id, true, &row.path).await?;
        position = c.position.or(position);
        state.caught_up(position).await;
    }
    if let Some(name) = &body.name {
        let (row, _) = live_folder(&state, &p, &id).await?;
        require_write(&p)?;
        require_perm(&state, &p, On::Folder(&row), Permission::Write).await?;
        let c = cmd::rename_folder(&state.bus, &ctx, folder_id, name, &row.path).await?;
        position = c.position.or(position);
        state.caught_up(position).await;
    }
    if body.name.is_none() && body.restore != Some(true) {
        live_folder(&state, &p, &id).await?;
    }
    Ok(Positioned(position, Json(fresh(&state, &p, &id).await?)))
}

/// The target folder and its ancestors, nearest first (cycle checks).
async fn ancestors(
    state: &AppState,
    p: &Principal,
    start: Option<FolderId>,
) -> ApiResult<Vec<FolderId>> {
    let mut out = Vec::new();
    let mut cur = start;
    while let Some(f) = cur {
        if out.len() > 10_000 || out.contains(&f) {
            break;
        }
        out.push(f);
        let row = q::folder(&state.db, &p.tenant_id.to_string(), &f.to_string()).await?;
        cur = row.and_then(|r| r.parent_id).and_then(|s| s.parse().ok());
    }
    Ok(out)
}

async fn move_to(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TargetBody>,
) -> ApiResult<Positioned<Json<Value>>> {
    let folder_id: FolderId = path_id(&id, "folder")?;
    let (row, _) = live_folder(&state, &p, &id).await?;
    require_write(&p)?;
    require_perm(&state, &p, On::Folder(&row), Permission::Delete).await?;
    let target = resolve_target(&state, &p, &body).await?;
    let chain = ancestors(&state, &p, target.folder_id).await?;
    let ctx = p.context();
    let bytes = if target.share_id.to_string() != row.share_id {
        let (_, files) = q::subtree(&state.db, &row.share_id, &row.path).await?;
        files
            .iter()
            .map(|f| u64::try_from(f.version_bytes).unwrap_or(0))
            .sum()
    } else {
        0
    };
    let committed =
        cmd::move_folder(&state.bus, &ctx, folder_id, target, chain, &row.path, bytes).await?;
    state.caught_up(committed.position).await;
    Ok(Positioned(
        committed.position,
        Json(fresh(&state, &p, &id).await?),
    ))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    permanent: Option<bool>,
}

async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<impl IntoResponse> {
    let folder_id: FolderId = path_id(&id, "folder")?;
    let ctx = p.context();
    let committed = if q.permanent.unwrap_or(false) {
        let (row, _) = visible_folder(&state, &p, &id).await?;
        require_write(&p)?;
        require_perm(&state, &p, On::Folder(&row), Permission::Delete).await?;
        let (folders, files) = q::subtree(&state.db, &row.share_id, &row.path).await?;
        let folders: Vec<FolderId> = folders.iter().filter_map(|f| f.id.parse().ok()).collect();
        let files: Vec<FileId> = files.iter().filter_map(|f| f.id.parse().ok()).collect();
        cmd::purge_folder(&state.bus, &ctx, folder_id, &folders, &files, p.user_id).await?
    } else {
        let (row, _) = live_folder(&state, &p, &id).await?;
        require_write(&p)?;
        require_perm(&state, &p, On::Folder(&row), Permission::Delete).await?;
        cmd::trash_folder(&state.bus, &ctx, folder_id, false, &row.path).await?
    };
    state.caught_up(committed.position).await;
    Ok(Positioned(committed.position, StatusCode::NO_CONTENT))
}
