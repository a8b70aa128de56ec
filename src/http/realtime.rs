//! WebSockets (SPEC §4.6): `/sync/ws/{device_id}` nudges a sync client with
//! each change of the shares it follows; `/realtime/ws` tells a web client
//! what happened to files and folders. Both are fed by the process's one hub
//! (`crate::hub`), authenticate with the token in `?token=` or the
//! `Authorization` header, and close with 4401 when it is missing or bad.
//! The socket is a nudge; the cursor is the truth: a client that falls
//! behind gets `force_sync` and pages the feed.

use std::collections::BTreeSet;

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

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::principal::{bearer_token, Principal};
use super::state::AppState;
use super::sync::readable_share;
use crate::hub::LiveChange;

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

/// A sync client's nudge socket: client frames `{"type":"subscribe"}` and
/// `{"type":"ping"}`; server frames `subscribed`, `pong`,
/// `{"event_type":"change","share_id",...,"data":<change>}` and `force_sync`.
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
        serve(state, p, socket, Kind::Device(device_id)).await
    })
}

/// A web client's live view: server frames `connected`, `subscribed`,
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
        let hello = json!({"type": "connected", "user_id": p.user_id.to_string(), "tenant_id": p.tenant_id.to_string()});
        if send(&mut socket, hello).await {
            serve(state, p, socket, Kind::Realtime).await
        }
    })
}

enum Kind {
    Device(String),
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

async fn serve(state: AppState, p: Principal, mut socket: WebSocket, kind: Kind) {
    // Subscribe to the hub first, so nothing committed after the client's
    // subscription is confirmed can be missed.
    let mut rx = state.hub.subscribe();
    let tenant = p.tenant_id.to_string();
    let mut shares: BTreeSet<String> = BTreeSet::new();
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
                let reply = handle(&state, &p, &kind, &mut shares, &text).await;
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
                        let share = [Some(&c.share_id), c.old_share_id.as_ref()]
                            .into_iter()
                            .flatten()
                            .find(|s| shares.contains(*s))
                            .cloned();
                        match share {
                            Some(share) if c.tenant_id == tenant => vec![rendered(&kind, &share, &live)],
                            _ => vec![],
                        }
                    }
                    // Changes were dropped for this socket: tell it to page the feed.
                    Err(RecvError::Lagged(_)) => shares
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
        Kind::Device(_) => &live.device_frame,
        Kind::Realtime => &live.realtime_frame,
    };
    cell.get_or_init(|| frame(kind, share, &live.row).to_string())
        .clone()
}

fn frame(kind: &Kind, share: &str, c: &ChangeRow) -> Value {
    match kind {
        Kind::Device(_) => json!({
            "event_type": "change",
            "share_id": share,
            "position": c.log().to_token(),
            "data": c.to_json(),
        }),
        Kind::Realtime => json!({
            "type": realtime_type(c),
            "share_id": share,
            "resource_id": c.resource_id,
            "path": c.new_path.clone().or_else(|| c.old_path.clone()),
            "position": c.log().to_token(),
            "data": c.to_json(),
        }),
    }
}

async fn handle(
    state: &AppState,
    p: &Principal,
    kind: &Kind,
    shares: &mut BTreeSet<String>,
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
        "subscribe" => {
            if wanted.is_empty() {
                if let Kind::Device(device) = kind {
                    // A sync client follows the shares it keeps a cursor in.
                    match sq::cursors(&state.db, &p.user_id.to_string(), device).await {
                        Ok(c) => wanted = c.into_iter().map(|c| c.share_id).collect(),
                        Err(e) => {
                            return vec![
                                json!({"type": "error", "detail": format!("cannot read cursors: {e}")}),
                            ]
                        }
                    }
                } else {
                    return vec![
                        json!({"type": "error", "detail": "subscribe needs share_id or share_ids"}),
                    ];
                }
            }
            let mut out = Vec::new();
            let mut added = Vec::new();
            for s in wanted {
                match readable_share(state, p, &s).await {
                    Ok(_) => {
                        shares.insert(s.clone());
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
                std::mem::take(shares).into_iter().collect()
            } else {
                wanted.into_iter().filter(|s| shares.remove(s)).collect()
            };
            vec![json!({"type": "unsubscribed", "share_ids": removed, "share_id": removed.first()})]
        }
        other => {
            vec![json!({"type": "error", "detail": format!("unknown message type '{other}'")})]
        }
    }
}
