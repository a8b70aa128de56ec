//! HTTP: one router module per resource, one error mapping (`error.rs`), and
//! the middleware every request passes (request id, caller context,
//! read-your-writes wait, timeout, panic guard).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use scaidrive_domain::LogPosition;
use uuid::Uuid;

pub mod access_log;
pub mod admin;
pub mod audit;
pub mod catalogue;
pub mod connectors;
pub mod drive;
pub mod dto;
pub mod error;
pub mod events;
pub mod extract;
pub mod files;
pub mod folders;
pub mod history;
pub mod links;
pub mod openapi;
pub mod permissions;
pub mod prefer;
pub mod principal;
pub mod principals;
pub mod proofs;
pub mod public_links;
pub mod quotas;
pub mod schema;
pub use crate::read_cache;
pub mod realtime;
pub mod respond;
pub mod search;
pub mod shares;
pub mod sharing;
pub mod state;
pub mod sync;
pub mod system;
pub mod uploads;
pub mod users;
pub mod webhooks_in;
pub mod webhooks_out;

pub use error::{ApiError, ApiResult};
pub use state::{AppState, Services};

/// Echoed or generated on every response.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The log position a write reached; send it back to read your own writes.
pub static POSITION: HeaderName = HeaderName::from_static("x-scaidrive-position");

/// Per-request facts the middleware gathers for handlers and events.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub device_id: Option<String>,
}

/// A response tagged with the log position of the write that produced it.
pub struct Positioned<T>(pub Option<LogPosition>, pub T);

impl<T: IntoResponse> IntoResponse for Positioned<T> {
    fn into_response(self) -> Response {
        let mut resp = self.1.into_response();
        if let Some(p) = self.0 {
            if let Ok(v) = HeaderValue::from_str(&p.to_token()) {
                resp.headers_mut().insert(POSITION.clone(), v);
            }
        }
        resp
    }
}

/// Timestamps as SPEC §1 writes them.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The whole API under `/api/v1`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(system::router())
        .merge(users::router())
        .merge(admin::router())
        .merge(shares::router())
        .merge(sharing::router())
        .merge(permissions::router())
        .merge(folders::router())
        .merge(files::router())
        .merge(uploads::router())
        .merge(quotas::router())
        .merge(events::router())
        .merge(catalogue::router())
        .merge(audit::router())
        .merge(history::router())
        .merge(links::router())
        .merge(principals::router())
        .merge(search::router())
        .merge(public_links::router())
        .merge(realtime::router())
        .merge(sync::router())
        .merge(webhooks_in::router())
        .merge(webhooks_out::router())
        .merge(connectors::router())
        .merge(proofs::router())
        .merge(openapi::router())
        .route_layer(middleware::from_fn(tag_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .route("/.well-known/scaidrive-log-key", get(proofs::log_key))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            around_request,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .with_state(state)
}

/// The matched route template, carried on the response for metrics (raw
/// paths would give every id its own time series).
#[derive(Clone)]
struct RouteTag(String);

async fn tag_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut resp = next.run(req).await;
    if let Some(r) = route {
        resp.extensions_mut().insert(RouteTag(r));
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn header_str(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn around_request(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = header_str(&req, "x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| {
        scaidrive_domain::link::client_ip(
            c.0.ip(),
            header_str(&req, "x-forwarded-for").as_deref(),
            &state.config.trusted_proxies,
        )
        .to_string()
    });
    let ctx = RequestContext {
        request_id: Some(request_id.clone()),
        ip,
        user_agent: header_str(&req, "user-agent"),
        device_id: header_str(&req, "x-device-id").filter(|d| !d.is_empty() && d.len() <= 128),
    };
    req.extensions_mut().insert(ctx);
    let rate = principal::RateSlot::default();
    req.extensions_mut().insert(rate.clone());

    let wait_for = match header_str(&req, "x-scaidrive-position") {
        Some(raw) => match LogPosition::parse_token(&raw) {
            Some(p) => Some(p),
            None => {
                return with_request_id(
                    ApiError::BadRequest("X-ScaiDrive-Position is not a valid position".into())
                        .into_response(),
                    &request_id,
                );
            }
        },
        None => None,
    };
    state.caught_up(wait_for).await;

    let method = req.method().clone();
    let path = loggable_path(req.uri().path());
    let started = std::time::Instant::now();
    let mut resp = match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::GatewayTimeout("request timed out".into()).into_response(),
    };
    let decision = *rate.0.lock();
    if let Some(d) = decision.filter(|d| d.refused.is_none()) {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from(Utc::now().timestamp().max(0) as u64 + d.reset_after),
        );
    }
    let status = resp.status();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let refusal = resp.extensions_mut().remove::<error::Refusal>();
    let route = resp
        .extensions()
        .get::<RouteTag>()
        .map(|r| r.0.as_str())
        .unwrap_or("unmatched");
    // Every refused permission on a visible resource, whichever handler
    // refused it (see `drive::denied`).
    if let Some(r) = refusal {
        access_log::refused(&state, r, method.as_str(), route);
    }
    state
        .bus
        .metrics()
        .request(method.as_str(), route, status.as_u16(), elapsed_ms / 1000.0);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%method, %path, status = status.as_u16(), elapsed_ms, request_id, "request");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), elapsed_ms, request_id, "request");
    }
    with_request_id(resp, &request_id)
}

/// A request path for the log: a public link's token or short code is a
/// capability and never written there.
fn loggable_path(path: &str) -> String {
    for prefix in ["/api/v1/public/links/", "/api/v1/public/s/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
            return format!("{prefix}{}{tail}", scaidrive_domain::secret::REDACTED);
        }
    }
    path.to_owned()
}

fn with_request_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}
