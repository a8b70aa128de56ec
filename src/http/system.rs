//! Health, readiness and the public client configuration.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use scaidrive_domain::id::TenantId;
use scaidrive_domain::tenancy::{Tenant, TenantSettings};
use std::collections::BTreeMap;

use super::dto::system as dto;
use super::error::ApiResult;
use super::state::AppState;
use crate::command::provision::Identity;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long `/ready` waits for each database check.
const READY_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/config", get(config))
        .route("/metrics", get(metrics))
}

/// Liveness: answers without checking any dependency.
#[utoipa::path(get, path = "/health", security(()), responses(
    (status = 200, description = "The process is up", body = dto::Health),
))]
async fn health() -> Json<dto::Health> {
    Json(dto::Health {
        status: "healthy".into(),
        version: VERSION.into(),
    })
}

/// Readiness: database, blob store, ScaiKey, projections (and Redis, Kafka
/// when configured); 503 while starting, draining or when a check fails.
#[utoipa::path(get, path = "/ready", security(()), responses(
    (status = 200, description = "Ready for traffic", body = dto::Ready),
    (status = 503, description = "Not ready: the failing checks are false", body = dto::Ready),
))]
async fn ready(State(state): State<AppState>) -> Response {
    // Bounded: with the database down a ping would wait the whole pool
    // acquire timeout, and a probe wants its answer sooner.
    let database = matches!(
        tokio::time::timeout(READY_DB_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    let scaikey = state.auth.check_upstream().await.is_ok();
    let storage = state.blob.ping().await.is_ok();
    let started = state.started.load(std::sync::atomic::Ordering::SeqCst);
    let draining = state.is_draining();
    let lag = if database {
        tokio::time::timeout(READY_DB_TIMEOUT, state.projector.lag())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let projections = database && lag.iter().all(|(_, l)| *l <= state.config.ready_max_lag);
    let mut checks = BTreeMap::from([
        ("database".to_owned(), database),
        ("storage".to_owned(), storage),
        ("scaikey".to_owned(), scaikey),
        ("projections".to_owned(), projections),
        ("started".to_owned(), started),
        ("draining".to_owned(), draining),
    ]);
    let mut all = database && storage && scaikey && projections && started && !draining;
    // Optional dependencies appear only when configured.
    if let Some(redis) = state.limiter.redis() {
        let ok = redis.ping().await.is_ok();
        checks.insert("redis".to_owned(), ok);
        all &= ok;
    }
    #[cfg(feature = "kafka")]
    if let Some(kafka) = &state.kafka {
        let ok = kafka.check().await;
        checks.insert("kafka".to_owned(), ok);
        all &= ok;
    }
    let body = dto::Ready {
        status: if all {
            dto::ReadyStatus::Ready
        } else if draining {
            dto::ReadyStatus::Draining
        } else {
            dto::ReadyStatus::NotReady
        },
        checks,
    };
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The public client configuration: what this process really has on, and
/// the limits of the caller's tenant when a valid bearer token comes along
/// (else the server defaults). A missing, bad or expired token is not an
/// error here: the answer is the defaults, with `tenant_id` null.
#[utoipa::path(get, path = "/config", security(()), responses(
    (status = 200, description = "Features and limits", body = dto::ClientConfig),
))]
async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<dto::ClientConfig>> {
    let tenant = caller_tenant(&state, &headers)
        .await?
        .map(|(id, tenant)| (id, tenant.settings));
    let defaults = TenantSettings::default();
    let settings = tenant.as_ref().map_or(&defaults, |(_, s)| s);
    let server = state.config.rate_limits;
    let own = &settings.rate_limits;
    let c = &state.config;
    Ok(Json(dto::ClientConfig {
        version: VERSION.to_owned(),
        tenant_id: tenant.as_ref().map(|(id, _)| id.to_string()),
        features: dto::ClientFeatures {
            semantic_search: state.semantic.is_ok(),
            external_sharing: settings.sharing.external_sharing_enabled,
            smb_connector: true,
            sharepoint_connector: false,
            search: state.search.is_some(),
            kafka: cfg!(feature = "kafka") && c.kafka.is_some(),
            redis: c.redis_url.is_some(),
            smtp: c.smtp_url.is_some(),
            connectors: true,
        },
        limits: dto::ClientLimits {
            max_file_size_bytes: settings.max_file_size_bytes,
            max_upload_chunk_size_bytes: super::uploads::MAX_CHUNK_BODY as u64,
            rate_limits: dto::ClientRateLimits {
                per_token: own.per_token.unwrap_or(server.per_token),
                per_user: own.per_user.unwrap_or(server.per_user),
                per_tenant: own.per_tenant.unwrap_or(server.per_tenant),
                window_seconds: c.rate_limit_window.as_secs(),
            },
        },
    }))
}

/// The tenant a valid bearer token names, if it exists and belongs to the
/// token's partner. Nothing is provisioned; a token that does not verify
/// (or ScaiKey being unreachable) counts as no token.
async fn caller_tenant(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Option<(TenantId, Tenant)>> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return Ok(None);
    };
    let Ok(claims) = state.auth.verify(token).await else {
        return Ok(None);
    };
    let who = Identity::from_claims(
        claims.partner_id.as_deref(),
        &claims.tenant_id,
        &claims.subject,
        None,
        None,
    );
    let tenant = state
        .bus
        .load::<Tenant>(&who.tenant_id.to_string())
        .await?
        .state;
    Ok((tenant.partner_id == Some(who.partner_id)).then_some((who.tenant_id, tenant)))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", security(()), responses(
    (status = 200, description = "Prometheus text exposition", body = String,
        content_type = "text/plain; version=0.0.4"),
))]
async fn metrics(State(state): State<AppState>) -> Response {
    let lag = state.projector.lag().await.unwrap_or_default();
    let body = state.bus.metrics().render(&lag, &state.leases.held());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}
