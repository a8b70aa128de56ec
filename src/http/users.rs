//! `GET /users/me`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::principal::Principal;
use super::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/users/me", get(me))
}

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
