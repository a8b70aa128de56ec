//! Outbound webhooks' admin API (SPEC §4.10): tenant admins create, list,
//! change, pause/resume and delete their tenant's webhooks and read each
//! one's delivery log. The signing secret is write-only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use scaidrive_domain::id::WebhookId;
use scaidrive_domain::webhook::{self, WebhookStatus};
use scaidrive_projections::webhooks::{self as rm, WebhookRow};
use serde::Deserialize;
use serde_json::Value;

use super::drive::{path_id, Page};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::command::webhooks::{self as cmd, NewWebhook, WebhookChange};

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

async fn after_write(state: &AppState, p: &Principal, id: WebhookId) -> ApiResult<dto::Webhook> {
    let row = rm::webhook(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(dto::Webhook::from(&row))
}

/// Creates an outbound webhook (tenant admins).
#[utoipa::path(post, path = "/admin/webhooks", request_body = CreateWebhook, responses(
    (status = 201, description = "The new webhook", body = dto::Webhook),
    (status = 409, description = "A webhook with this name exists"),
))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    webhook::checked_secret(&body.secret)?;
    let new = NewWebhook {
        tenant_id: p.tenant_id,
        name: body.name,
        url: body.url,
        categories: body.categories,
        sealed_secret: state.secrets.seal(&body.secret),
        headers: body.headers,
        status: body.status,
    };
    let (id, committed) = cmd::create(&state.bus, &p.context(), new).await?;
    let key = id.to_string();
    let read = || after_write(&state, &p, id);
    respond
        .full()
        .item(&state, &committed, StatusCode::CREATED, &key, read)
        .await
}

/// The tenant's webhooks (tenant admins).
#[utoipa::path(get, path = "/admin/webhooks", responses(
    (status = 200, description = "Every webhook", body = dto::WebhookList),
))]
async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<dto::WebhookList>> {
    p.require_tenant_admin()?;
    let rows = rm::webhooks(&state.db, &p.tenant_id.to_string()).await?;
    Ok(Json(dto::WebhookList {
        webhooks: rows.iter().map(dto::Webhook::from).collect(),
    }))
}

/// One webhook.
#[utoipa::path(get, path = "/admin/webhooks/{webhook_id}", params(("webhook_id" = inline(doc::WebhookId), Path)), responses(
    (status = 200, description = "The webhook", body = dto::Webhook),
))]
async fn read(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(webhook_id): ApiPath<String>,
) -> ApiResult<Json<dto::Webhook>> {
    p.require_tenant_admin()?;
    let (_, row) = tenant_webhook(&state, &p, &webhook_id).await?;
    Ok(Json(dto::Webhook::from(&row)))
}

/// Changes, pauses or resumes a webhook.
#[utoipa::path(patch, path = "/admin/webhooks/{webhook_id}", request_body = PatchWebhook,
    params(("webhook_id" = inline(doc::WebhookId), Path)),
    responses((status = 200, description = "The webhook as changed", body = dto::Webhook)),
)]
async fn patch(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(webhook_id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchWebhook>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_webhook(&state, &p, &webhook_id).await?;
    if let Some(s) = &body.secret {
        webhook::checked_secret(s)?;
    }
    let change = WebhookChange {
        name: body.name,
        url: body.url,
        categories: body.categories,
        sealed_secret: body.secret.map(|s| state.secrets.seal(&s)),
        headers: body.headers,
        status: body.status,
    };
    let committed = cmd::update(&state.bus, &p.context(), id, change).await?;
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &id.to_string(), || {
            after_write(&state, &p, id)
        })
        .await
}

/// Deletes a webhook (pending deliveries are cancelled).
#[utoipa::path(delete, path = "/admin/webhooks/{webhook_id}", params(("webhook_id" = inline(doc::WebhookId), Path)), responses(
    (status = 204, description = "Deleted"),
))]
async fn remove(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(webhook_id): ApiPath<String>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_webhook(&state, &p, &webhook_id).await?;
    let committed = cmd::delete(&state.bus, &p.context(), id).await?;
    Ok(respond.full().empty(&state, &committed).await)
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
    responses((status = 200, description = "A page of deliveries", body = dto::DeliveryList)),
)]
async fn deliveries(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(webhook_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<dto::DeliveryList>> {
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
    Ok(Json(dto::DeliveryList {
        deliveries: rows.iter().map(dto::Delivery::from).collect(),
    }))
}

/// One delivery with every attempt (time, response code, error, duration).
#[utoipa::path(get, path = "/admin/webhooks/{webhook_id}/deliveries/{delivery_id}",
    params(("webhook_id" = inline(doc::WebhookId), Path), ("delivery_id" = String, Path)),
    responses((status = 200, description = "The delivery and its attempts", body = dto::Delivery)),
)]
async fn delivery(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((webhook_id, delivery_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<dto::Delivery>> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_webhook(&state, &p, &webhook_id).await?;
    let row = rm::delivery(&state.db, &id.to_string(), &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = rm::attempts(&state.db, &row.id).await?;
    Ok(Json(dto::Delivery {
        attempt_log: Some(attempts.iter().map(dto::DeliveryAttempt::from).collect()),
        ..dto::Delivery::from(&row)
    }))
}
