//! The log itself, for auditors and integrations: `GET /events` pages through
//! the tenant's events by position; `GET /events/stream` is a live tail as
//! Server-Sent Events that resumes from `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use scaidrive_domain::LogPosition;
use serde::Deserialize;

use super::dto::audit as dto;
use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::principal::Principal;
use super::state::AppState;
use crate::store::LogFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(list))
        .route("/events/stream", get(stream))
}

fn position(raw: Option<&str>) -> ApiResult<LogPosition> {
    match raw {
        None | Some("") => Ok(LogPosition::START),
        Some(r) => LogPosition::parse_token(r)
            .ok_or_else(|| ApiError::BadRequest(format!("'{r}' is not a log position"))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// A log position (`next_after` of the previous page); default the start.
    #[param(pattern = "^(0|[0-9]{1,18}\\.[0-9]{1,18})?$")]
    after: Option<String>,
    /// Default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    stream_id: Option<String>,
    /// An event type, e.g. `link-revoked`.
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// The tenant's events in log order (tenant admins).
#[utoipa::path(get, path = "/events", params(ListQuery), responses(
    (status = 200, description = "A page of events", body = dto::EventPage),
))]
async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<dto::EventPage>> {
    p.require_tenant_admin()?;
    let after = position(q.after.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let filter = LogFilter {
        tenant_id: Some(p.tenant_id.to_string()),
        stream_id: q.stream_id,
        event_type: q.event_type,
    };
    let events = state.store.read_filtered(after, limit, &filter).await?;
    let next = events.last().map(|e| e.log).unwrap_or(after);
    Ok(Json(dto::EventPage {
        events: events.iter().map(|e| e.envelope()).collect(),
        next_after: next.to_token(),
        has_more: events.len() == limit,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// A log position to start after (`Last-Event-ID` wins).
    #[param(pattern = "^(0|[0-9]{1,18}\\.[0-9]{1,18})?$")]
    after: Option<String>,
}

/// A live tail of the tenant's events as Server-Sent Events (tenant admins);
/// each event's id is its position, so `Last-Event-ID` resumes.
#[utoipa::path(get, path = "/events/stream",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position")),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data` is an event envelope",
            body = String, content_type = "text/event-stream"),
    ),
)]
async fn stream(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    p.require_tenant_admin()?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut after = position(resume.as_deref().or(q.after.as_deref()))?;
    let filter = LogFilter {
        tenant_id: Some(p.tenant_id.to_string()),
        ..LogFilter::default()
    };
    let events = async_stream::stream! {
        let mut wake = state.store.subscribe();
        loop {
            let batch = match state.store.read_filtered(after, 500, &filter).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed");
                    yield Ok(Event::default().event("error").data("event store unavailable, retrying"));
                    Vec::new()
                }
            };
            let caught_up = batch.len() < 500;
            for e in &batch {
                after = e.log;
                yield Ok(Event::default().id(e.log.to_token()).event(e.event_type.clone()).data(e.envelope().to_string()));
            }
            if caught_up {
                tokio::select! {
                    _ = state.shutdown.cancelled() => break,
                    _ = wake.recv() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            if state.shutdown.is_cancelled() {
                break;
            }
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
