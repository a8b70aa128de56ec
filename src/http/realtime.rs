//! WebSockets (SPEC §4.6): `/sync/ws/{device_id}` nudges a sync client with
//! each change of the shares it follows; `/realtime/ws` tells a web client
//! what happened to files and folders. Both are fed by the process's one hub
//! (`crate::hub`), authenticate with the token in `?token=` or the
//! `Authorization` header, and close with 4401 when it is missing or bad.
//! The socket is a nudge; the cursor is the truth: a client that falls
//! behind gets `force_sync` and pages the feed.
//!
//! Every frame is checked against the caller's READ permission on the share
//! as it is when the change arrives (remembered until the access or share
//! read models move), so a membership removed while the socket is open stops
//! the frames of that share, and a sync client's plain `subscribe` follows
//! every share the caller can read, also those granted later.

use std::collections::{BTreeSet, HashMap};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use scaidrive_projections::sync_queries::{self as sq, ChangeRow};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::drive::{require_perm, require_read, visible_share, On};
use super::dto;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::principal::{bearer_token, Principal};
use super::state::AppState;
use super::state::SHARE_ROW_SOURCES;
use super::sync::readable_share;
use crate::hub::LiveChange;
use crate::projector::Generation;
use scaidrive_domain::access::Permission;
use scaidrive_projections::drive_queries as dq;

/// Close code for a missing or bad token (SPEC §4.6).
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code for a caller who may not use the socket (ours).
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code for an unknown device (ours).
pub const CLOSE_NOT_FOUND: u16 = 4404;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sync/ws/{device_id}", get(device_socket))
        .route("/realtime/ws", get(realtime_socket))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// The bearer token (browsers cannot set headers on a WebSocket); a
    /// missing or bad one closes the socket with 4401.
    token: Option<String>,
}

/// A plain request where an upgrade belongs answers 400 with `detail`.
fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|e| {
        ApiError::BadRequest(format!(
            "a WebSocket upgrade is required: {}",
            e.body_text()
        ))
    })
}

/// The caller, from the query token or the header (the header wins).
async fn authenticate(
    state: &AppState,
    mut parts: Parts,
    token: Option<String>,
) -> Result<Principal, ApiError> {
    if bearer_token(&parts).is_none() {
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            let v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| ApiError::Unauthorized("malformed token".into()))?;
            parts.headers.insert(AUTHORIZATION, v);
        }
    }
    Principal::from_request_parts(&mut parts, state).await
}

fn close_code(e: &ApiError) -> u16 {
    match e {
        ApiError::Forbidden(_) | ApiError::Denied { .. } | ApiError::RateLimited { .. } => {
            CLOSE_FORBIDDEN
        }
        _ => CLOSE_UNAUTHORIZED,
    }
}

async fn refuse(mut socket: WebSocket, code: u16, reason: String) {
    let reason: String = reason.chars().take(120).collect();
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

/// A sync client's nudge socket: client frames `{"type":"subscribe"}` (every
/// share the caller can read, now and granted later; or `share_id` /
/// `share_ids`), `unsubscribe` and `{"type":"ping"}`; server frames
/// `subscribed` (`share_ids`, and `all: true` for a plain subscribe), `pong`,
/// `{"event_type":"change","share_id",...,"data":<change>}` and `force_sync`.
/// A share the caller can no longer read sends nothing more.
/// Closes with 4401 (token), 4403 (not allowed) or 4404 (unknown device).
#[utoipa::path(get, path = "/sync/ws/{device_id}", security((), ("bearer" = [])),
    params(("device_id" = String, Path, min_length = 1, max_length = 128), TokenQuery),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade request"),
    ),
)]
async fn device_socket(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    ApiPath(device_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
    parts: Parts,
) -> Response {
    let ws = match upgrade(ws) {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let who = authenticate(&state, parts, q.token).await;
    ws.on_upgrade(move |socket| async move {
        let p = match who {
            Ok(p) => p,
            Err(e) => return refuse(socket, close_code(&e), e.to_string()).await,
        };
        match sq::device(&state.db, &p.user_id.to_string(), &device_id).await {
            Ok(Some(_)) => {}
            _ => {
                return refuse(
                    socket,
                    CLOSE_NOT_FOUND,
                    "device not found; register it with POST /sync/devices".into(),
                )
                .await
            }
        }
        serve(state, p, socket, Kind::Device).await
    })
}

/// A web client's live view: server frames `connected` (`user_id`,
/// `tenant_id`, `timestamp` in ISO-8601 UTC), `subscribed`,
/// `unsubscribed`, `file_created|file_updated|file_deleted|folder_created|
/// folder_deleted`, `pong`; client frames `subscribe`/`unsubscribe` with
/// `share_id` or `share_ids`, and `ping`. Closes with 4401 for a bad token.
#[utoipa::path(get, path = "/realtime/ws", security((), ("bearer" = [])), params(TokenQuery),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade request"),
    ),
)]
async fn realtime_socket(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    ApiQuery(q): ApiQuery<TokenQuery>,
    parts: Parts,
) -> Response {
    let ws = match upgrade(ws) {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let who = authenticate(&state, parts, q.token).await;
    ws.on_upgrade(move |mut socket| async move {
        let p = match who {
            Ok(p) => p,
            Err(e) => return refuse(socket, close_code(&e), e.to_string()).await,
        };
        let hello = json!({
            "type": "connected",
            "user_id": p.user_id.to_string(),
            "tenant_id": p.tenant_id.to_string(),
            "timestamp": super::ts(chrono::Utc::now()),
        });
        if send(&mut socket, hello).await {
            serve(state, p, socket, Kind::Realtime).await
        }
    })
}

enum Kind {
    Device,
    Realtime,
}

#[derive(Debug, Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    share_id: Option<String>,
    share_ids: Option<Vec<String>>,
}

/// The realtime frame type of a change (`file_created`, `folder_deleted`, ...).
fn realtime_type(c: &ChangeRow) -> String {
    let verb = match c.change_type.as_str() {
        "created" => "created",
        "deleted" => "deleted",
        _ => "updated",
    };
    format!("{}_{verb}", c.resource_type)
}

/// Most shares a plain `subscribe` lists in its answer (and a lagging socket
/// is told to resynchronise); the frames follow every readable share.
const MAX_LISTED: i64 = 1000;

/// What a socket follows, and whether the caller can read those shares.
struct Follows {
    /// Shares subscribed by id.
    shares: BTreeSet<String>,
    /// Every share the caller can read (a sync client's plain `subscribe`).
    all: bool,
    /// Shares unsubscribed by id while following all of them.
    excluded: BTreeSet<String>,
    /// Whether the caller can read a share, as of `stamp`.
    readable: HashMap<String, bool>,
    stamp: u64,
    /// What moves when that may change: the access read model (memberships,
    /// ACLs) and share rows (owner, trash). `None`: ask every time.
    sources: Option<Vec<Generation>>,
}

impl Follows {
    fn new(state: &AppState) -> Self {
        let mut sources = state.projector.generation_handle("access").map(|g| vec![g]);
        for (projection, kinds) in SHARE_ROW_SOURCES {
            sources = match (sources, state.projector.generation_of(projection, kinds)) {
                (Some(mut all), Some(g)) => {
                    all.push(g);
                    Some(all)
                }
                _ => None,
            };
        }
        Self {
            shares: BTreeSet::new(),
            all: false,
            excluded: BTreeSet::new(),
            readable: HashMap::new(),
            stamp: u64::MAX,
            sources,
        }
    }

    fn wants(&self, share: &str) -> bool {
        self.shares.contains(share) || (self.all && !self.excluded.contains(share))
    }

    /// Whether the caller can see and READ `share` now.
    async fn can_read(&mut self, state: &AppState, p: &Principal, share: &str) -> bool {
        // Read before asking: a change applied meanwhile moves it, and the
        // answer remembered below is dropped at the next check.
        let stamp = self
            .sources
            .as_ref()
            .map(|g| g.iter().map(Generation::get).sum::<u64>());
        if let Some(stamp) = stamp {
            if stamp == self.stamp {
                if let Some(known) = self.readable.get(share) {
                    return *known;
                }
            } else {
                self.readable.clear();
                self.stamp = stamp;
            }
        }
        let ok = match can_read_share(state, p, share).await {
            Ok(()) => true,
            Err(e) if e.status().is_client_error() => false,
            Err(e) => {
                tracing::warn!(error = %e, share_id = share, "socket permission check failed");
                return false;
            }
        };
        if stamp.is_some() {
            self.readable.insert(share.to_owned(), ok);
        }
        ok
    }

    /// The shares followed now, by id (those a plain `subscribe` follows
    /// listed as far as the caller's memberships name them).
    async fn listed(&mut self, state: &AppState, p: &Principal) -> Vec<String> {
        let mut out: BTreeSet<String> = self.shares.clone();
        if self.all {
            match member_shares(state, p).await {
                Ok(ids) => {
                    for id in ids {
                        if !self.excluded.contains(&id) && self.can_read(state, p, &id).await {
                            out.insert(id);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list a socket's shares"),
            }
        }
        out.into_iter().collect()
    }
}

/// Visible and READ, whether or not the share is in the trash (its
/// deletion is a change its followers get).
async fn can_read_share(state: &AppState, p: &Principal, id: &str) -> Result<(), ApiError> {
    let p = &p.afresh();
    require_read(p)?;
    let share = visible_share(state, p, id).await?;
    require_perm(state, p, On::Share(&share), Permission::Read).await
}

/// The live shares the caller holds a role in (all of the tenant's for a
/// tenant admin), oldest first.
async fn member_shares(state: &AppState, p: &Principal) -> Result<Vec<String>, ApiError> {
    let principals = (!p.is_tenant_admin).then(|| p.principal_ids());
    let (rows, _) = dq::shares(
        &state.db,
        &p.tenant_id.to_string(),
        principals.as_deref(),
        false,
        MAX_LISTED,
        0,
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

async fn serve(state: AppState, p: Principal, mut socket: WebSocket, kind: Kind) {
    // Subscribe to the hub first, so nothing committed after the client's
    // subscription is confirmed can be missed.
    let mut rx = state.hub.subscribe();
    let tenant = p.tenant_id.to_string();
    let mut follows = Follows::new(&state);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                return refuse(socket, 1001, "server is shutting down".into()).await;
            }
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let reply = handle(&state, &p, &kind, &mut follows, &text).await;
                for r in reply {
                    if !send(&mut socket, r).await {
                        return;
                    }
                }
            }
            change = rx.recv() => {
                let frames: Vec<String> = match change {
                    Ok(live) => {
                        let c = &live.row;
                        let mut share = None;
                        if c.tenant_id == tenant {
                            for s in [Some(&c.share_id), c.old_share_id.as_ref()].into_iter().flatten() {
                                if follows.wants(s) && follows.can_read(&state, &p, s).await {
                                    share = Some(s.clone());
                                    break;
                                }
                            }
                        }
                        share.map(|s| rendered(&kind, &s, &live)).into_iter().collect()
                    }
                    // Changes were dropped for this socket: tell it to page the feed.
                    Err(RecvError::Lagged(_)) => follows
                        .listed(&state, &p)
                        .await
                        .iter()
                        .map(|s| json!({"event_type": "force_sync", "type": "force_sync", "share_id": s}).to_string())
                        .collect(),
                    Err(RecvError::Closed) => return,
                };
                for f in frames {
                    if socket.send(Message::Text(f.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A change's frame text; the common case (the change's own share) is
/// rendered once per change and shared by every socket.
fn rendered(kind: &Kind, share: &str, live: &LiveChange) -> String {
    if share != live.row.share_id {
        return frame(kind, share, &live.row).to_string();
    }
    let cell = match kind {
        Kind::Device => &live.device_frame,
        Kind::Realtime => &live.realtime_frame,
    };
    cell.get_or_init(|| frame(kind, share, &live.row).to_string())
        .clone()
}

fn frame(kind: &Kind, share: &str, c: &ChangeRow) -> Value {
    match kind {
        Kind::Device => json!({
            "event_type": "change",
            "share_id": share,
            "position": c.log().to_token(),
            "data": dto::Change::from(c),
        }),
        Kind::Realtime => json!({
            "type": realtime_type(c),
            "share_id": share,
            "resource_id": c.resource_id,
            "path": c.new_path.clone().or_else(|| c.old_path.clone()),
            "position": c.log().to_token(),
            "data": dto::Change::from(c),
        }),
    }
}

async fn handle(
    state: &AppState,
    p: &Principal,
    kind: &Kind,
    follows: &mut Follows,
    text: &str,
) -> Vec<Value> {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return vec![json!({"type": "error", "detail": format!("unreadable message: {e}")})]
        }
    };
    let mut wanted: Vec<String> = msg.share_ids.unwrap_or_default();
    wanted.extend(msg.share_id);
    match msg.kind.as_str() {
        "ping" => vec![json!({"type": "pong"})],
        "subscribe" if wanted.is_empty() => match kind {
            // A sync client follows every share it can read, including
            // those it is granted while the socket is open.
            Kind::Device => {
                follows.all = true;
                follows.excluded.clear();
                let listed = follows.listed(state, p).await;
                vec![
                    json!({"type": "subscribed", "all": true, "share_ids": listed, "share_id": listed.first()}),
                ]
            }
            Kind::Realtime => {
                vec![json!({"type": "error", "detail": "subscribe needs share_id or share_ids"})]
            }
        },
        "subscribe" => {
            let mut out = Vec::new();
            let mut added = Vec::new();
            for s in wanted {
                match readable_share(state, &p.afresh(), &s).await {
                    Ok(_) => {
                        follows.excluded.remove(&s);
                        follows.shares.insert(s.clone());
                        added.push(s);
                    }
                    Err(e) => out.push(json!({"type": "error", "share_id": s, "status": e.status().as_u16(), "detail": e.to_string()})),
                }
            }
            out.insert(
                0,
                json!({"type": "subscribed", "share_ids": added, "share_id": added.first()}),
            );
            out
        }
        "unsubscribe" => {
            let removed: Vec<String> = if wanted.is_empty() {
                follows.all = false;
                follows.excluded.clear();
                std::mem::take(&mut follows.shares).into_iter().collect()
            } else {
                wanted
                    .into_iter()
                    .filter(|s| {
                        let followed = follows.wants(s);
                        follows.shares.remove(s);
                        if follows.all {
                            follows.excluded.insert(s.clone());
                        }
                        followed
                    })
                    .collect()
            };
            vec![json!({"type": "unsubscribed", "share_ids": removed, "share_id": removed.first()})]
        }
        other => {
            vec![json!({"type": "error", "detail": format!("unknown message type '{other}'")})]
        }
    }
}
