//! Proofs for auditors: the latest signed checkpoint, inclusion proofs of a
//! tenant's own events, consistency proofs between tree sizes, the log's
//! verifier key, and the alarms witnesses raise.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use scaidrive_domain::log::LogEvent;
use scaidrive_domain::merkle;
use scaidrive_domain::{DomainEvent as _, EventMetadata, NewEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::state::AppState;
use crate::proofs::{self, ProofError};
use crate::store::{AppendRequest, ExpectedVersion, StreamAppend};

/// The event type of an alarm a witness or verifier raised.
pub const ALARM: &str = "log-witness-alarm";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/checkpoint", get(checkpoint))
        .route("/audit/proof/inclusion", get(inclusion))
        .route("/audit/proof/consistency", get(consistency))
        .route("/audit/alarms", post(alarm))
        .route("/.well-known/scaidrive-log-key", get(log_key))
}

/// The OpenAPI paths of this module, joined to the main document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(checkpoint, inclusion, consistency, alarm, log_key))]
pub struct ProofsApi;

impl From<ProofError> for ApiError {
    fn from(e: ProofError) -> Self {
        ApiError::internal(e)
    }
}

fn b64(h: &merkle::Hash) -> String {
    B64.encode(h)
}

async fn latest_or_404(state: &AppState) -> ApiResult<proofs::Signed> {
    proofs::latest(&state.store)
        .await?
        .ok_or_else(|| ApiError::NotFound("no checkpoint has been signed yet".into()))
}

/// The latest checkpoint, as a C2SP signed note (tenant admins).
#[utoipa::path(get, path = "/audit/checkpoint", tag = "audit",
    responses(
        (status = 200, description = "origin, tree size, base64 root, blank line, signature line", content_type = "text/plain", body = String),
        (status = 404, description = "No checkpoint yet"),
    ))]
async fn checkpoint(State(state): State<AppState>, p: Principal) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let s = latest_or_404(&state).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        s.note,
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InclusionQuery {
    /// An event of the caller's tenant (`evt_...`).
    event_id: String,
    /// Default: the latest checkpoint's size.
    tree_size: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct InclusionProof {
    leaf_index: u64,
    tree_size: u64,
    /// Base64 SHA-256(0x00 ‖ the event's hash bytes).
    leaf_hash: String,
    /// Base64 hashes, leaf side first (RFC 6962 audit path).
    hashes: Vec<String>,
}

/// Resolves the tree size a proof is for: given (at most the tree's size),
/// else the latest checkpoint's.
async fn size_or_latest(state: &AppState, given: Option<u64>, field: &str) -> ApiResult<u64> {
    let have = proofs::tree_size(&state.db).await?;
    match given {
        Some(n) if n > have => Err(ApiError::BadRequest(format!(
            "{field} {n} is beyond the tree's size ({have})"
        ))),
        Some(n) => Ok(n),
        None => Ok(latest_or_404(state).await?.size.min(have)),
    }
}

/// An inclusion proof of one of the tenant's events (tenant admins).
#[utoipa::path(get, path = "/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses(
        (status = 200, description = "The audit path", body = InclusionProof),
        (status = 404, description = "No such event in the caller's tenant"),
        (status = 409, description = "The event is not in a tree of that size yet"),
    ))]
async fn inclusion(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> ApiResult<Json<InclusionProof>> {
    p.require_tenant_admin()?;
    let tenant = p.tenant_id.to_string();
    let leaf = proofs::leaf_of(&state.db, &q.event_id)
        .await?
        .filter(|l| l.tenant_id.as_deref() == Some(tenant.as_str()))
        .ok_or_else(|| ApiError::not_found("event"))?;
    let index = leaf.leaf_index as u64;
    let size = size_or_latest(&state, q.tree_size, "tree_size").await?;
    if size <= index {
        return Err(ApiError::Domain(scaidrive_domain::DomainError::InvalidTransition(format!(
            "the event is leaf {index}, not in a tree of size {size}; ask for a larger tree_size or wait for the next checkpoint"
        ))));
    }
    let (leaf_hash, hashes) = proofs::with_nodes(&state.db, |src| {
        let leaf = src.node(merkle::NodeId { level: 0, index })?;
        Ok((leaf, merkle::inclusion_proof(src, index, size)?))
    })
    .await?;
    Ok(Json(InclusionProof {
        leaf_index: index,
        tree_size: size,
        leaf_hash: b64(&leaf_hash),
        hashes: hashes.iter().map(b64).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    /// The earlier tree size.
    from: u64,
    /// Default: the latest checkpoint's size.
    to: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ConsistencyProof {
    from: u64,
    to: u64,
    /// Base64 hashes (RFC 6962 consistency proof).
    hashes: Vec<String>,
}

/// A consistency proof between two tree sizes (tenant admins).
#[utoipa::path(get, path = "/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, description = "The proof", body = ConsistencyProof)))]
async fn consistency(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> ApiResult<Json<ConsistencyProof>> {
    p.require_tenant_admin()?;
    let to = size_or_latest(&state, q.to, "to").await?;
    if q.from > to {
        return Err(ApiError::BadRequest(format!(
            "from ({}) must not exceed to ({to})",
            q.from
        )));
    }
    let from = q.from;
    let hashes =
        proofs::with_nodes(&state.db, |src| merkle::consistency_proof(src, from, to)).await?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        hashes: hashes.iter().map(b64).collect(),
    }))
}

/// The log's C2SP verifier key (no authentication).
#[utoipa::path(get, path = "/.well-known/scaidrive-log-key", tag = "audit", security(()),
    responses((status = 200, description = "`<name>+<key id>+<base64(0x01 ‖ Ed25519 key)>`", content_type = "text/plain", body = String)))]
pub async fn log_key(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.log_key.verifier().text()),
    )
        .into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Alarm {
    /// `fork`, `rollback`, `bad-signature`, `bad-proof` or `inconsistent`.
    #[schema(pattern = "^(fork|rollback|bad-signature|bad-proof|inconsistent)$")]
    kind: String,
    /// What was seen.
    #[schema(min_length = 1, max_length = 4000)]
    detail: String,
    /// The last checkpoint the reporter trusted (a signed note).
    #[schema(max_length = 8000)]
    trusted: Option<String>,
    /// The checkpoint that failed (a signed note).
    #[schema(max_length = 8000)]
    seen: Option<String>,
}

const KINDS: [&str; 5] = [
    "fork",
    "rollback",
    "bad-signature",
    "bad-proof",
    "inconsistent",
];

impl Validate for Alarm {
    const REQUIRED: &'static [&'static str] = &["kind", "detail"];

    fn validate(&self, v: &mut Violations) {
        if !KINDS.contains(&self.kind.as_str()) {
            v.push(
                "enum",
                "kind",
                format!(
                    "Input should be {}",
                    KINDS.map(|k| format!("'{k}'")).join(", ")
                ),
                json!(self.kind),
            );
        }
        v.length("detail", &self.detail, 1, 4000);
        if let Some(t) = &self.trusted {
            v.length("trusted", t, 0, 8000);
        }
        if let Some(s) = &self.seen {
            v.length("seen", s, 0, 8000);
        }
    }
}

/// Records a witness's or verifier's alarm as a critical SECURITY event of
/// the tenant (tenant admins).
#[utoipa::path(post, path = "/audit/alarms", tag = "audit", request_body = Alarm,
    responses((status = 201, description = "Recorded; answers the event id", body = Object)))]
async fn alarm(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(a): ApiJson<Alarm>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let ctx = p.context();
    let tenant = p.tenant_id.to_string();
    let event_id = uuid::Uuid::now_v7();
    let (event_type, data) = LogEvent::LogWitnessAlarm {
        kind: a.kind,
        detail: a.detail,
        trusted: a.trusted,
        seen: a.seen,
    }
    .encode();
    let event = NewEvent {
        event_id,
        event_type,
        schema_version: 1,
        tenant_id: Some(tenant.clone()),
        data,
        metadata: EventMetadata {
            occurred_at: chrono::Utc::now(),
            actor: ctx.actor.clone(),
            correlation_id: ctx.correlation_id.clone(),
            causation_id: None,
        },
    };
    let outcome = state
        .store
        .append(AppendRequest {
            streams: vec![StreamAppend {
                stream_id: format!("log-alarms-{tenant}"),
                expected: ExpectedVersion::Any,
                events: vec![event],
            }],
            ..Default::default()
        })
        .await?;
    let position = match outcome {
        crate::store::AppendOutcome::Committed(c) => c.last,
        crate::store::AppendOutcome::Duplicate(_) => None,
    };
    let id = scaidrive_domain::id::EventId::from_uuid(event_id).to_string();
    Ok(super::Positioned(
        position,
        (StatusCode::CREATED, Json(json!({ "event_id": id }))),
    )
    .into_response())
}
