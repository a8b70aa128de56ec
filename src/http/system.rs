//! Health, readiness and the public client configuration.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::openapi as doc;
use super::state::AppState;

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
    (status = 200, description = "The process is up", body = doc::Health),
))]
async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "healthy", "version": VERSION }))
}

/// Readiness: database, blob store, ScaiKey, projections (and Redis, Kafka
/// when configured); 503 while starting, draining or when a check fails.
#[utoipa::path(get, path = "/ready", security(()), responses(
    (status = 200, description = "Ready for traffic", body = doc::Ready),
    (status = 503, description = "Not ready: the failing checks are false", body = doc::Ready),
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
    let mut checks = json!({ "database": database, "storage": storage, "scaikey": scaikey, "projections": projections, "started": started, "draining": draining });
    let mut all = database && storage && scaikey && projections && started && !draining;
    // Optional dependencies appear only when configured.
    if let Some(redis) = state.limiter.redis() {
        let ok = redis.ping().await.is_ok();
        checks["redis"] = ok.into();
        all &= ok;
    }
    #[cfg(feature = "kafka")]
    if let Some(kafka) = &state.kafka {
        let ok = kafka.check().await;
        checks["kafka"] = ok.into();
        all &= ok;
    }
    let body = json!({
        "status": if all { "ready" } else if draining { "draining" } else { "not_ready" },
        "checks": checks,
    });
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The public client configuration.
#[utoipa::path(get, path = "/config", security(()), responses(
    (status = 200, description = "Features and limits", body = doc::ClientConfig),
))]
async fn config() -> Json<serde_json::Value> {
    Json(json!({
        "version": VERSION,
        "features": {
            "semantic_search": false,
            "external_sharing": true,
            "smb_connector": false,
            "sharepoint_connector": false,
        },
        "limits": {
            "max_file_size_bytes": 5_368_709_120u64,
            "max_upload_chunk_size_bytes": 5_242_880u64,
        },
    }))
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
