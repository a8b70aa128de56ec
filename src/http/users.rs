//! `GET /users/me`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::dto;
use super::error::ApiResult;
use super::principal::Principal;
use super::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me", get(me))
        .route("/users/me/quota", get(my_quota))
}

/// The caller's user-level usage and limit.
#[utoipa::path(get, path = "/users/me/quota", responses(
    (status = 200, description = "Usage and limit", body = dto::MyQuota),
))]
async fn my_quota(State(state): State<AppState>, p: Principal) -> ApiResult<Json<dto::MyQuota>> {
    Ok(Json(super::quotas::my_quota(&state, &p).await?))
}

/// The caller.
#[utoipa::path(get, path = "/users/me", responses(
    (status = 200, description = "The signed-in user", body = dto::Me),
))]
async fn me(p: Principal) -> Json<dto::Me> {
    Json(dto::Me::from(&p))
}
