//! `scaidrive-bench --sync`: how long a change takes from its commit to a
//! subscribed WebSocket client, with many sockets open, through the real
//! server on loopback.
//!
//! Writes go one at a time through `POST /folders`; the commit instant is
//! when the event store signals the commit in-process, and each socket's
//! task stamps the frame carrying that folder on arrival.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::app::Application;
use crate::auth::{DevIssuer, MintRequest};
use crate::config::Config;

/// What the sync benchmark measured.
pub struct SyncFigures {
    pub sockets: usize,
    pub writes: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

async fn json_of(r: reqwest::RequestBuilder) -> Result<Value, String> {
    r.send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// Opens `sockets` device sockets on one share and measures commit → frame
/// for `writes` sequential folder creations.
pub async fn run(sockets: usize, writes: usize) -> Result<SyncFigures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config::embedded(dir.path().to_path_buf());
    config.consistency_wait = Duration::from_secs(30);
    config.rate_limits = crate::ratelimit::Limits {
        per_token: u64::MAX / 4,
        per_user: u64::MAX / 4,
        per_tenant: u64::MAX / 4,
    };
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let addr = app.local_addr();
    let base = format!("http://{addr}/api/v1");
    let services = app.state();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    let issuer = DevIssuer::load_or_create(dir.path(), None).map_err(|e| e.to_string())?;
    let token = issuer
        .mint(&MintRequest {
            ttl: Duration::from_secs(7200),
            ..MintRequest::new("bench", "bench")
        })
        .map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let me = json_of(http.get(format!("{base}/users/me")).bearer_auth(&token)).await?;
    let share = json_of(
        http.post(format!("{base}/shares"))
            .bearer_auth(&token)
            .json(&json!({"name": "sync-bench", "share_type": "project", "owner_id": me["id"]})),
    )
    .await?;
    let share_id = share["id"]
        .as_str()
        .ok_or(format!("share: {share}"))?
        .to_owned();
    json_of(
        http.post(format!("{base}/sync/devices"))
            .bearer_auth(&token)
            .json(&json!({"device_id": "bench", "device_name": "bench"})),
    )
    .await?;

    // One socket task per connection, each stamping the frames it receives.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let ws_url = format!("ws://{addr}/api/v1/sync/ws/bench?token={token}");
    let mut tasks = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .map_err(|e| format!("websocket: {e}"))?;
        ws.send(Message::Text(
            json!({"type": "subscribe", "share_ids": [share_id]})
                .to_string()
                .into(),
        ))
        .await
        .map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("subscribed") => {}
            other => return Err(format!("subscribe failed: {other:?}")),
        }
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let at = Instant::now();
                    if let Ok(v) = serde_json::from_str::<Value>(&t) {
                        if let Some(name) = v["data"]["name"].as_str() {
                            let _ = tx.send((name.to_owned(), at));
                        }
                    }
                }
            }
        }));
    }
    drop(tx);

    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for i in 0..writes {
        let name = format!("b{i}");
        let mut committed = services.store.subscribe();
        let req = http
            .post(format!("{base}/folders"))
            .bearer_auth(&token)
            .json(&json!({"share_id": share_id, "name": name}))
            .send();
        let pending = tokio::spawn(req);
        tokio::time::timeout(Duration::from_secs(10), committed.recv())
            .await
            .map_err(|_| "no commit signal within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let at_commit = Instant::now();
        let mut got = 0;
        while got < sockets {
            let (n, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .map_err(|_| format!("write {i}: only {got} of {sockets} frames within 10 s"))?
                .ok_or("sockets closed")?;
            if n == name {
                got += 1;
                let us = at.saturating_duration_since(at_commit).as_micros() as u64;
                hist.record(us.max(1)).map_err(|e| e.to_string())?;
            }
        }
        let resp = pending
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("write {i}: {}", resp.status()));
        }
    }
    for t in tasks {
        t.abort();
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(SyncFigures {
        sockets,
        writes,
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
    })
}
