//! Outbound webhooks' admin API (SPEC §4.10): tenant admins create, list,
//! change, pause/resume and delete their tenant's webhooks and read each
//! one's delivery log. The signing secret is write-only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use scaidrive_domain::id::WebhookId;
use scaidrive_domain::webhook::{self, Webhook, WebhookCommand, WebhookStatus};
use scaidrive_domain::Aggregate;
use scaidrive_projections::webhooks::{self as rm, DeliveryRow, WebhookRow};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::drive::{path_id, Page};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::openapi as doc;
use super::principal::Principal;
use super::state::AppState;
use super::{ts, Positioned};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", get(list).post(create))
        .route(
            "/admin/webhooks/{webhook_id}",
            get(read).patch(patch).delete(remove),
        )
        .route("/admin/webhooks/{webhook_id}/deliveries", get(deliveries))
        .route(
            "/admin/webhooks/{webhook_id}/deliveries/{delivery_id}",
            get(delivery),
        )
}

/// The JSON form of a webhook; the secret never leaves the service.
fn webhook_json(r: &WebhookRow) -> Value {
    json!({
        "id": r.id,
        "tenant_id": r.tenant_id,
        "name": r.name,
        "url": r.url,
        "categories": r.category_list(),
        "headers": r.header_map(),
        "status": r.status,
        "has_secret": !r.secret.is_empty(),
        "created_at": ts(r.created_at),
        "modified_at": ts(r.modified_at),
    })
}

fn delivery_json(d: &DeliveryRow) -> Value {
    json!({
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "action": d.action,
        "status": d.status,
        "attempts": d.attempts,
        "last_response_code": d.last_response_code,
        "last_error": d.last_error,
        "drop_reason": d.drop_reason,
        "created_at": ts(d.created_at),
        "last_attempt_at": d.last_attempt_at.map(ts),
        "next_attempt_at": d.next_attempt_at.map(ts),
        "delivered_at": d.delivered_at.map(ts),
    })
}

fn check_url(v: &mut Violations, url: &str) {
    if let Err(scaidrive_domain::DomainError::Invalid { message, .. }) = webhook::checked_url(url) {
        v.push("url_parsing", "url", message, Value::from(url));
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateWebhook {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: String,
    /// An `http://` or `https://` URL.
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://([^/?#@\\s\\u0000-\\u001f\\u007f-\\u009f]*@)?[^/?#@:\\s\\u0000-\\u001f\\u007f-\\u009f][^\\s\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    url: String,
    /// Audit categories to send; empty = all.
    #[serde(default)]
    #[schema(value_type = Vec<doc::AuditCategory>)]
    categories: Vec<String>,
    /// Signs each delivery (`X-ScaiDrive-Signature`); write-only.
    #[schema(min_length = 8, max_length = 512, write_only)]
    secret: String,
    /// Extra request headers (valid header names and values).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Default `active`.
    #[serde(default)]
    #[schema(value_type = doc::WebhookStatusDoc)]
    status: WebhookStatus,
}

impl Validate for CreateWebhook {
    const REQUIRED: &'static [&'static str] = &["name", "url", "secret"];

    fn validate(&self, v: &mut Violations) {
        v.length("name", self.name.trim(), 1, webhook::MAX_NAME);
        check_url(v, &self.url);
        v.length(
            "secret",
            &self.secret,
            webhook::MIN_SECRET,
            webhook::MAX_SECRET,
        );
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PatchWebhook {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://([^/?#@\\s\\u0000-\\u001f\\u007f-\\u009f]*@)?[^/?#@:\\s\\u0000-\\u001f\\u007f-\\u009f][^\\s\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    url: Option<String>,
    #[schema(value_type = Option<Vec<doc::AuditCategory>>)]
    categories: Option<Vec<String>>,
    #[schema(min_length = 8, max_length = 512, write_only)]
    secret: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    /// `paused` holds deliveries back; `active` resumes them.
    #[schema(value_type = Option<doc::WebhookStatusDoc>)]
    status: Option<WebhookStatus>,
}

impl Validate for PatchWebhook {
    fn validate(&self, v: &mut Violations) {
        if let Some(n) = &self.name {
            v.length("name", n.trim(), 1, webhook::MAX_NAME);
        }
        if let Some(u) = &self.url {
            check_url(v, u);
        }
        if let Some(s) = &self.secret {
            v.length("secret", s, webhook::MIN_SECRET, webhook::MAX_SECRET);
        }
    }
}

/// A webhook of the caller's tenant (404 for any other).
async fn tenant_webhook(
    state: &AppState,
    p: &Principal,
    raw: &str,
) -> ApiResult<(WebhookId, WebhookRow)> {
    let id: WebhookId = path_id(raw, "webhook")?;
    let row = rm::webhook(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok((id, row))
}

async fn after_write(state: &AppState, p: &Principal, id: WebhookId) -> ApiResult<Value> {
    let row = rm::webhook(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(webhook_json(&row))
}

/// Creates an outbound webhook (tenant admins).
#[utoipa::path(post, path = "/admin/webhooks", request_body = CreateWebhook, responses(
    (status = 201, description = "The new webhook", body = doc::Webhook),
    (status = 409, description = "A webhook with this name exists"),
))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Positioned<Json<Value>>)> {
    p.require_tenant_admin()?;
    let ctx = p.context();
    let id = WebhookId::from_uuid(Uuid::now_v7());
    webhook::checked_secret(&body.secret)?;
    let cmd = WebhookCommand::Create {
        webhook_id: id,
        tenant_id: p.tenant_id,
        name: body.name,
        url: body.url,
        categories: body.categories,
        secret: state.secrets.seal(&body.secret),
        headers: body.headers,
        status: body.status,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Webhook, _>(&id.to_string(), &ctx, |w| w.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    let body = after_write(&state, &p, id).await?;
    Ok((
        StatusCode::CREATED,
        Positioned(committed.position, Json(body)),
    ))
}

/// The tenant's webhooks (tenant admins).
#[utoipa::path(get, path = "/admin/webhooks", responses(
    (status = 200, description = "Every webhook", body = doc::WebhookList),
))]
async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    p.require_tenant_admin()?;
    let rows = rm::webhooks(&state.db, &p.tenant_id.to_string()).await?;
    Ok(Json(json!({
        "webhooks": rows.iter().map(webhook_json).collect::<Vec<_>>(),
    })))
}

/// One webhook.
#[utoipa::path(get, path = "/admin/webhooks/{webhook_id}", params(("webhook_id" = inline(doc::WebhookId), Path)), responses(
    (status = 200, description = "The webhook", body = doc::Webhook),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(webhook_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    p.require_tenant_admin()?;
    let (_, row) = tenant_webhook(&state, &p, &webhook_id).await?;
    Ok(Json(webhook_json(&row)))
}

/// Changes, pauses or resumes a webhook.
#[utoipa::path(patch, path = "/admin/webhooks/{webhook_id}", request_body = PatchWebhook,
    params(("webhook_id" = inline(doc::WebhookId), Path)),
    responses((status = 200, description = "The webhook as changed", body = doc::Webhook)),
)]
async fn patch(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(webhook_id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchWebhook>,
) -> ApiResult<Positioned<Json<Value>>> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_webhook(&state, &p, &webhook_id).await?;
    let ctx = p.context();
    if let Some(s) = &body.secret {
        webhook::checked_secret(s)?;
    }
    let cmd = WebhookCommand::Update {
        name: body.name,
        url: body.url,
        categories: body.categories,
        secret: body.secret.map(|s| state.secrets.seal(&s)),
        headers: body.headers,
        status: body.status,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Webhook, _>(&id.to_string(), &ctx, |w| w.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    let body = after_write(&state, &p, id).await?;
    Ok(Positioned(committed.position, Json(body)))
}

/// Deletes a webhook (pending deliveries are cancelled).
#[utoipa::path(delete, path = "/admin/webhooks/{webhook_id}", params(("webhook_id" = inline(doc::WebhookId), Path)), responses(
    (status = 204, description = "Deleted"),
))]
async fn remove(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(webhook_id): ApiPath<String>,
) -> ApiResult<Positioned<StatusCode>> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_webhook(&state, &p, &webhook_id).await?;
    let ctx = p.context();
    let (_, committed) = state
        .bus
        .execute::<Webhook, _>(&id.to_string(), &ctx, |w| {
            w.state.decide(&WebhookCommand::Delete { at: ctx.now })
        })
        .await?;
    state.caught_up_to(&committed).await;
    Ok(Positioned(committed.position, StatusCode::NO_CONTENT))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    #[param(value_type = Option<String>, pattern = "^(pending|delivered|dropping|dropped|cancelled)$")]
    status: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

const DELIVERY_STATUSES: [&str; 5] = ["pending", "delivered", "dropping", "dropped", "cancelled"];

/// A webhook's deliveries, newest first.
#[utoipa::path(get, path = "/admin/webhooks/{webhook_id}/deliveries", params(("webhook_id" = inline(doc::WebhookId), Path), DeliveryQuery),
    responses((status = 200, description = "A page of deliveries", body = doc::DeliveryList)),
)]
async fn deliveries(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(webhook_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Value>> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_webhook(&state, &p, &webhook_id).await?;
    if let Some(s) = &q.status {
        if !DELIVERY_STATUSES.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown status '{s}' (one of {})",
                DELIVERY_STATUSES.join(", ")
            )));
        }
    }
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .resolve()?;
    let rows = rm::deliveries(
        &state.db,
        &id.to_string(),
        q.status.as_deref(),
        limit,
        offset,
    )
    .await?;
    Ok(Json(json!({
        "deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>(),
    })))
}

/// One delivery with every attempt (time, response code, error, duration).
#[utoipa::path(get, path = "/admin/webhooks/{webhook_id}/deliveries/{delivery_id}",
    params(("webhook_id" = inline(doc::WebhookId), Path), ("delivery_id" = String, Path)),
    responses((status = 200, description = "The delivery and its attempts", body = doc::Delivery)),
)]
async fn delivery(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((webhook_id, delivery_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_webhook(&state, &p, &webhook_id).await?;
    let row = rm::delivery(&state.db, &id.to_string(), &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = rm::attempts(&state.db, &row.id).await?;
    let mut body = delivery_json(&row);
    body["attempt_log"] = Value::Array(
        attempts
            .iter()
            .map(|a| {
                json!({
                    "attempt": a.attempt,
                    "attempted_at": a.attempted_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "response_code": a.response_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                })
            })
            .collect(),
    );
    Ok(Json(body))
}
