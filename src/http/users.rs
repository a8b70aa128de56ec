//! `GET /users/me`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiResult;
use super::openapi as doc;
use super::principal::Principal;
use super::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me", get(me))
        .route("/users/me/quota", get(my_quota))
}

/// The caller's user-level usage and limit.
#[utoipa::path(get, path = "/users/me/quota", responses(
    (status = 200, description = "Usage and limit", body = doc::MyQuota),
))]
async fn my_quota(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(super::quotas::my_quota(&state, &p).await?))
}

/// The caller.
#[utoipa::path(get, path = "/users/me", responses(
    (status = 200, description = "The signed-in user", body = doc::Me),
))]
async fn me(p: Principal) -> Json<Value> {
    let display = p
        .name
        .clone()
        .or_else(|| p.email.clone())
        .unwrap_or_else(|| p.user_id.to_string());
    Json(json!({
        "id": p.user_id,
        "email": p.email,
        "name": p.name,
        "display_name": display,
        "tenant_id": p.tenant_id,
        "partner_id": p.partner_id,
        "groups": p.groups,
        "scopes": p.scopes.names(),
        "is_admin": p.is_tenant_admin,
        "admin_role": if p.is_tenant_admin { Some("tenant_admin") } else { None },
    }))
}
