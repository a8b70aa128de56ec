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
use serde_json::{json, Value};

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

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    stream_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({
        "events": events.iter().map(|e| e.envelope()).collect::<Vec<_>>(),
        "next_after": next.to_token(),
        "has_more": events.len() == limit,
    })))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    after: Option<String>,
}

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
