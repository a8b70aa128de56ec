//! Time travel: `GET /history/{resource_type}/{id}?at=` answers a resource as
//! it was at a moment (an ISO-8601 timestamp) or log position, by replaying
//! its events up to that point.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use scaidrive_domain::drive::file::File;
use scaidrive_domain::drive::folder::Folder;
use scaidrive_domain::drive::share::Share;
use scaidrive_domain::history;
use scaidrive_domain::link::Link;
use scaidrive_domain::{Aggregate, DecodedEvent, LogPosition, RecordedEvent};
use serde::Deserialize;

use super::dto;
use super::dto::history::{
    AclThen, AsOf, FileThen, FolderThen, History, ItemThen, LinkThen, ShareThen,
};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery};
use super::principal::Principal;
use super::schema as doc;
use super::state::AppState;
use crate::store::LogFilter;

pub fn router() -> Router<AppState> {
    Router::new().route("/history/{resource_type}/{id}", get(history))
}

#[derive(Debug, Clone, Copy)]
enum At {
    Position(LogPosition),
    Time(DateTime<Utc>),
    Now,
}

impl At {
    fn parse(raw: Option<&str>) -> ApiResult<At> {
        match raw {
            None | Some("") => Ok(At::Now),
            Some(r) => {
                if let Ok(t) = DateTime::parse_from_rfc3339(r) {
                    return Ok(At::Time(t.with_timezone(&Utc)));
                }
                LogPosition::parse_token(r)
                    .map(At::Position)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "at must be an ISO-8601 timestamp or a log position, not '{r}'"
                        ))
                    })
            }
        }
    }

    fn includes(&self, e: &RecordedEvent) -> bool {
        match self {
            At::Position(p) => e.log <= *p,
            At::Time(t) => e.recorded_at <= *t,
            At::Now => true,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// An ISO-8601 timestamp or a log position; default now.
    #[param(
        pattern = "^(0|[0-9]{1,18}\\.[0-9]{1,18}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    at: Option<String>,
}

/// The events of one stream up to `at`, checked to belong to the tenant.
async fn stream_until(
    state: &AppState,
    p: &Principal,
    stream: &str,
    at: At,
) -> ApiResult<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let batch = state.store.read_stream(stream, after, 1000).await?;
        let n = batch.len();
        for e in batch {
            after = e.stream_version;
            if e.tenant_id.as_deref() != Some(p.tenant_id.to_string().as_str()) {
                return Err(ApiError::not_found("resource"));
            }
            if at.includes(&e) {
                out.push(e);
            }
        }
        if n < 1000 {
            break;
        }
    }
    if out.is_empty() {
        return Err(ApiError::NotFound(
            "resource did not exist at that point".into(),
        ));
    }
    Ok(out)
}

fn fold<A: Aggregate>(events: &[RecordedEvent]) -> ApiResult<A> {
    history::replay(events).map_err(ApiError::internal)
}

/// A resource as it was at a moment, replayed from its events (tenant admins).
#[utoipa::path(get, path = "/history/{resource_type}/{id}",
    params(
        ("resource_type" = String, Path, pattern = "^(file|folder|share|acl|link)$",
            description = "`acl` takes the id of the share, folder or file the ACL is on"),
        ("id" = inline(doc::HistoryId), Path, description = "Its prefix matches resource_type"),
        HistoryQuery,
    ),
    responses(
        (status = 200, description = "The resource then (a link's token, short code and URLs show as `[redacted]`)", body = History),
        (status = 404, description = "No such resource, or it did not exist then"),
    ),
)]
async fn history(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((resource_type, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<History>> {
    p.require_tenant_admin()?;
    let at = At::parse(q.at.as_deref())?;
    // Each kind's stream is named by its own id (a malformed one answers 400,
    // and a stream of another kind is never folded as this one).
    use super::drive::path_id;
    use scaidrive_domain::id::{FileId, FolderId, ShareId};
    match resource_type.as_str() {
        "file" => path_id::<FileId>(&id, "file").map(drop)?,
        "folder" => path_id::<FolderId>(&id, "folder").map(drop)?,
        "share" => path_id::<ShareId>(&id, "share").map(drop)?,
        "acl"
            if FileId::parse(&id).is_err()
                && FolderId::parse(&id).is_err()
                && ShareId::parse(&id).is_err() =>
        {
            return Err(ApiError::BadRequest(format!(
                "'{id}' is not a share, folder or file id"
            )));
        }
        _ => {}
    }
    let body = match resource_type.as_str() {
        "file" => {
            let events = stream_until(&state, &p, &id, at).await?;
            let f: File = fold(&events)?;
            History::File(FileThen::of(id, AsOf::of(&events), &f))
        }
        "share" => {
            let events = stream_until(&state, &p, &id, at).await?;
            let s: Share = fold(&events)?;
            History::Share(ShareThen::of(id, AsOf::of(&events), &s))
        }
        "folder" => {
            let events = stream_until(&state, &p, &id, at).await?;
            let f: Folder = fold(&events)?;
            let items = listing_at(&state, &p, &id, at).await?;
            History::Folder(FolderThen::of(id, AsOf::of(&events), &f, items))
        }
        "acl" => {
            let events =
                stream_until(&state, &p, &scaidrive_domain::sharing::acl_stream(&id), at).await?;
            let a: scaidrive_domain::sharing::Acl = fold(&events)?;
            History::Acl(AclThen::of(id, AsOf::of(&events), &a))
        }
        "link" => {
            let _: scaidrive_domain::id::LinkId = super::drive::path_id(&id, "link")?;
            let events = stream_until(&state, &p, &id, at).await?;
            let l: Link = fold(&events)?;
            // Expiry is a matter of time, so the status is the one at `at`.
            let when = match at {
                At::Time(t) => t,
                At::Position(_) => events
                    .last()
                    .map(|e| e.recorded_at)
                    .unwrap_or_else(Utc::now),
                At::Now => Utc::now(),
            };
            // History is an outward view: the token and short code never leave.
            History::Link(Box::new(LinkThen {
                link: dto::Link::of(&l, None, "", when),
                as_of: AsOf::of(&events),
            }))
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "history is kept for file, folder, share, acl and link, not '{other}'"
            )));
        }
    };
    Ok(Json(body))
}

/// The live children of a folder at `at`, by replaying the tenant's folder
/// and file events up to that point.
async fn listing_at(
    state: &AppState,
    p: &Principal,
    folder: &str,
    at: At,
) -> ApiResult<Vec<ItemThen>> {
    let mut listing = history::Listing::default();
    let filter = LogFilter {
        tenant_id: Some(p.tenant_id.to_string()),
        ..LogFilter::default()
    };
    let mut after = LogPosition::START;
    'read: loop {
        let batch = state.store.read_filtered(after, 1000, &filter).await?;
        let n = batch.len();
        for e in batch {
            after = e.log;
            if !at.includes(&e) {
                break 'read;
            }
            if !history::Listing::concerns(&e.event_type) {
                continue;
            }
            listing
                .apply(&DecodedEvent::new(e))
                .map_err(ApiError::internal)?;
        }
        if n < 1000 {
            break;
        }
    }
    Ok(listing
        .children(folder)
        .into_iter()
        .map(ItemThen::from)
        .collect())
}
