//! Tenant administration: `GET/PATCH /admin/tenant`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use scaidrive_domain::tenancy::{Tenant, TenantCommand};
use scaidrive_projections::tenancy;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Validate, Violations};
use super::principal::Principal;
use super::state::AppState;
use super::Positioned;
use crate::auth::Scope;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/tenant", get(get_tenant).patch(patch_tenant))
}

fn tenant_json(row: &tenancy::TenantRow) -> Value {
    json!({
        "id": row.id,
        "partner_id": row.partner_id,
        "name": row.name,
        "display_name": row.display_name,
        "settings": row.settings.0,
        "created_at": super::ts(row.created_at),
        "modified_at": super::ts(row.modified_at),
    })
}

async fn get_tenant(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    p.require(Scope::TenantAdmin)?;
    let row = tenancy::tenant(&state.db, &p.tenant_id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(tenant_json(&row)))
}

#[derive(Debug, Deserialize)]
struct PatchTenant {
    name: Option<String>,
    display_name: Option<String>,
    settings: Option<Value>,
}

impl Validate for PatchTenant {
    fn validate(&self, v: &mut Violations) {
        if let Some(n) = &self.name {
            v.length("name", n, 1, 255);
        }
        if let Some(n) = &self.display_name {
            v.length("display_name", n, 1, 255);
        }
        if let Some(s) = &self.settings {
            if !s.is_object() {
                v.push(
                    "model_attributes_type",
                    "settings",
                    "Input should be a valid object",
                    s.clone(),
                );
            }
        }
    }
}

async fn patch_tenant(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<PatchTenant>,
) -> ApiResult<Positioned<Json<Value>>> {
    p.require(Scope::TenantAdmin)?;
    let ctx = p.context();
    let cmd = TenantCommand::Update {
        name: body.name,
        display_name: body.display_name,
        settings: body.settings,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Tenant, _>(&p.tenant_id.to_string(), &ctx, |t| {
            scaidrive_domain::Aggregate::decide(&t.state, &cmd)
        })
        .await?;
    state.caught_up(committed.position).await;
    let row = tenancy::tenant(&state.db, &p.tenant_id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Positioned(committed.position, Json(tenant_json(&row))))
}
