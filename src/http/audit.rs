//! The audit view (`GET /audit/events`), its streamed export (NDJSON or
//! CSV), and verification of the tenant's hash chains.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use scaidrive_domain::LogPosition;
use scaidrive_projections::audit::{self, AuditFilter, AuditRow};
use serde::Deserialize;
use serde_json::{json, Value};

use super::dto::audit as dto;
use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::principal::Principal;
use super::schema as doc;
use super::state::AppState;
use super::ts;
use crate::store::VerifyRange;

const CATEGORIES: [&str; 8] = [
    "AUTHENTICATION",
    "AUTHORIZATION",
    "FILE_ACCESS",
    "FILE_MODIFICATION",
    "SHARING",
    "ADMIN",
    "SECURITY",
    "COMPLIANCE",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/events", get(list))
        .route("/audit/export", get(export))
        .route("/audit/verify", get(verify))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    #[param(value_type = Option<String>,
        pattern = "^(AUTHENTICATION|AUTHORIZATION|FILE_ACCESS|FILE_MODIFICATION|SHARING|ADMIN|SECURITY|COMPLIANCE)$")]
    category: Option<String>,
    /// E.g. `share.member_added`.
    action: Option<String>,
    user_id: Option<String>,
    resource_id: Option<String>,
    /// ISO-8601 timestamp.
    #[param(value_type = Option<doc::DateTimeInput>, inline)]
    from: Option<String>,
    /// ISO-8601 timestamp.
    #[param(value_type = Option<doc::DateTimeInput>, inline)]
    to: Option<String>,
    /// Free text.
    q: Option<String>,
    /// A log position (`next_after` of the previous page).
    #[param(pattern = "^(0|[0-9]{1,18}\\.[0-9]{1,18})?$")]
    after: Option<String>,
    /// List only (see the operation).
    #[param(ignore)]
    limit: Option<i64>,
    /// Export only (see the operation).
    #[param(ignore)]
    format: Option<String>,
}

fn parse_time(field: &str, v: &Option<String>) -> ApiResult<Option<DateTime<Utc>>> {
    match v {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| ApiError::BadRequest(format!("{field} must be an ISO-8601 timestamp"))),
    }
}

fn filter(q: &AuditQuery) -> ApiResult<AuditFilter> {
    if let Some(c) = &q.category {
        if !CATEGORIES.contains(&c.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown category '{c}' (one of {})",
                CATEGORIES.join(", ")
            )));
        }
    }
    Ok(AuditFilter {
        category: q.category.clone(),
        action: q.action.clone(),
        user_id: q.user_id.clone(),
        resource_id: q.resource_id.clone(),
        from: parse_time("from", &q.from)?,
        to: parse_time("to", &q.to)?,
        q: q.q.clone().filter(|s| !s.is_empty()),
    })
}

fn after(q: &AuditQuery) -> ApiResult<LogPosition> {
    match q.after.as_deref() {
        None | Some("") => Ok(LogPosition::START),
        Some(r) => LogPosition::parse_token(r)
            .ok_or_else(|| ApiError::BadRequest(format!("'{r}' is not a log position"))),
    }
}

fn entry(r: &AuditRow) -> Value {
    audit::entry_json(r)
}

/// The audit view (tenant admins).
#[utoipa::path(get, path = "/audit/events",
    params(AuditQuery, ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Default 100")),
    responses(
    (status = 200, description = "A page of audit entries", body = dto::AuditPage),
))]
async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<dto::AuditPage>> {
    p.require_tenant_admin()?;
    let f = filter(&q)?;
    let from = after(&q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let rows = audit::page(
        &state.db,
        &p.tenant_id.to_string(),
        &f,
        (from.commit, from.position),
        limit,
    )
    .await?;
    let next = rows
        .last()
        .map(|r| LogPosition::new(r.commit_id, r.position))
        .unwrap_or(from);
    Ok(Json(dto::AuditPage {
        events: rows.iter().map(entry).collect(),
        next_after: next.to_token(),
        has_more: rows.len() as i64 == limit,
    }))
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

fn csv_line(r: &AuditRow) -> String {
    let cols = [
        r.event_id.clone(),
        ts(r.occurred_at),
        r.category.clone(),
        r.action.clone(),
        r.severity.clone(),
        r.user_id.clone().unwrap_or_default(),
        r.service_account.clone().unwrap_or_default(),
        r.ip.clone().unwrap_or_default(),
        r.resource_type.clone().unwrap_or_default(),
        r.resource_id.clone(),
    ];
    let mut line = cols
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// Streams every matching entry, page by page, so an export of any size
/// holds one page in memory.
#[utoipa::path(get, path = "/audit/export",
    params(AuditQuery, ("format" = Option<String>, Query, pattern = "^(ndjson|csv)$", description = "Default `ndjson`")),
    responses(
    (status = 200, description = "Every matching entry",
        content((String = "application/x-ndjson"), (String = "text/csv"))),
))]
async fn export(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let f = filter(&q)?;
    let csv = match q.format.as_deref().unwrap_or("ndjson") {
        "ndjson" => false,
        "csv" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown format '{other}' (ndjson or csv)"
            )))
        }
    };
    let tenant = p.tenant_id.to_string();
    let mut cursor = after(&q)?;
    let stream = async_stream::try_stream! {
        if csv {
            yield bytes::Bytes::from_static(b"event_id,timestamp,category,action,severity,user_id,service_account,ip_address,resource_type,resource_id\n");
        }
        loop {
            let rows = audit::page(&state.db, &tenant, &f, (cursor.commit, cursor.position), 500)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let Some(last) = rows.last() else { break };
            cursor = LogPosition::new(last.commit_id, last.position);
            let mut chunk = String::new();
            // NDJSON entries carry what a Merkle proof is checked against.
            let anchors = if csv {
                Default::default()
            } else {
                let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
                crate::proofs::anchors(&state.db, &positions)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?
            };
            for r in &rows {
                if csv {
                    chunk.push_str(&csv_line(r));
                } else {
                    let mut e = entry(r);
                    let a = anchors.get(&r.position);
                    e["hash"] = json!(a.map(|a| &a.hash));
                    e["stream_id"] = json!(a.map(|a| &a.stream_id));
                    e["stream_version"] = json!(a.map(|a| a.stream_version));
                    e["leaf_index"] = json!(a.and_then(|a| a.leaf_index));
                    chunk.push_str(&e.to_string());
                    chunk.push('\n');
                }
            }
            yield bytes::Bytes::from(chunk);
            if rows.len() < 500 {
                break;
            }
        }
    };
    let stream: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
    > = Box::pin(stream);
    let mut resp = Response::new(Body::from_stream(stream));
    let (ct, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "ndjson")
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Ok(cd) = HeaderValue::from_str(&format!("attachment; filename=\"audit.{ext}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, cd);
    }
    Ok(resp)
}

/// A timestamp with all its digits: a range's ends as given, not rounded.
fn exact(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct VerifyQuery {
    /// ISO-8601 timestamp: check events that occurred at or after it
    /// (the same `occurred_at` the audit view's `from` filters on).
    #[param(value_type = Option<doc::DateTimeInput>, inline)]
    from: Option<String>,
    /// ISO-8601 timestamp: check events that occurred at or before it.
    #[param(value_type = Option<doc::DateTimeInput>, inline)]
    to: Option<String>,
}

/// Checks the tenant's tamper-evident hash chains (tenant admins), for the
/// events that occurred in `[from, to]` (either end open), and says which
/// range it checked.
#[utoipa::path(get, path = "/audit/verify", params(VerifyQuery), responses(
    (status = 200, description = "What was checked and the first broken link, if any",
        body = dto::AuditVerification),
))]
async fn verify(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> ApiResult<Json<dto::AuditVerification>> {
    p.require_tenant_admin()?;
    let range = VerifyRange {
        from: parse_time("from", &q.from)?,
        to: parse_time("to", &q.to)?,
    };
    if let (Some(from), Some(to)) = (range.from, range.to) {
        if from > to {
            return Err(ApiError::BadRequest(
                "from must not be later than to".into(),
            ));
        }
    }
    let report = state
        .store
        .verify_range(Some(&p.tenant_id.to_string()), range)
        .await?;
    Ok(Json(dto::AuditVerification {
        ok: report.first_broken.is_none(),
        events_checked: report.events_checked,
        streams_checked: report.streams_checked,
        first_broken: report.first_broken,
        range: dto::VerifiedRange {
            from: range.from.map(exact),
            to: range.to.map(exact),
            first_occurred_at: report.first_occurred_at.map(exact),
            last_occurred_at: report.last_occurred_at.map(exact),
        },
    }))
}
