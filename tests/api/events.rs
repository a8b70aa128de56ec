//! The event log over HTTP: paging, tenant scoping, and the live SSE tail.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::spawn;

#[tokio::test]
async fn events_page_by_position_and_stay_inside_the_tenant() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let other = app.token("globex", "gina", "");
    app.get("/users/me", &other).await;
    let me = app.get("/users/me", &t).await;
    app.patch("/admin/tenant", &t, json!({"display_name": "Acme"}))
        .await;
    let all = app.get("/events?limit=1000", &t).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let events = all.body["events"].as_array().expect("events").clone();
    let tenant = me.body["tenant_id"].as_str().expect("tenant");
    assert!(
        events.len() >= 4,
        "partner, tenant, user, share, update: {}",
        all.body
    );
    assert!(
        events.iter().all(|e| e["tenant_id"] == tenant),
        "only this tenant's events"
    );
    for field in [
        "event_id",
        "position",
        "stream_id",
        "stream_version",
        "event_type",
        "schema_version",
        "occurred_at",
        "actor",
        "data",
        "hash",
    ] {
        assert!(events[0].get(field).is_some(), "envelope lacks {field}");
    }
    assert!(events[0]["event_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("evt_")));

    // Page one event at a time and get the same sequence.
    let mut after = "0".to_owned();
    let mut paged = Vec::new();
    loop {
        let page = app.get(&format!("/events?limit=1&after={after}"), &t).await;
        let items = page.body["events"].as_array().expect("events").clone();
        if items.is_empty() {
            assert_eq!(page.body["has_more"], false);
            break;
        }
        after = page.body["next_after"].as_str().expect("next").to_owned();
        paged.extend(items);
    }
    assert_eq!(paged, events);

    let typed = app.get("/events?type=tenant-updated", &t).await;
    assert_eq!(typed.body["events"].as_array().map(Vec::len), Some(1));
    app.get("/events?after=nonsense", &t)
        .await
        .assert_detail(400);
    let reader = app.token("acme", "bob", "files:read");
    app.get("/events", &reader).await.assert_detail(403);
}

async fn next_event(
    lines: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
) -> Option<(String, Value)> {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                return Some((id, serde_json::from_str(&data).ok()?));
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), lines.next())
            .await
            .ok()??
            .ok()?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_live_tail_catches_up_then_follows_and_resumes() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let me = app.get("/users/me", &t).await;
    let resp = app
        .raw(Method::GET, "/events/stream")
        .bearer_auth(&t)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let (first_id, first) = next_event(&mut body, &mut buf)
        .await
        .expect("catch-up event");
    assert_eq!(first["tenant_id"], me.body["tenant_id"]);

    let share = app
        .post(
            "/shares",
            &t,
            json!({"name": "Live", "share_type": "project", "owner_id": me.body["id"]}),
        )
        .await;
    assert_eq!(share.status, 201);
    let mut seen_share = false;
    for _ in 0..20 {
        let Some((_, e)) = next_event(&mut body, &mut buf).await else {
            break;
        };
        if e["event_type"] == "share-created" && e["data"]["name"] == "Live" {
            seen_share = true;
            break;
        }
    }
    assert!(seen_share, "a new commit reaches the open stream");

    // Resuming after the first event never repeats it.
    let resumed = app
        .raw(Method::GET, "/events/stream")
        .bearer_auth(&t)
        .header("Last-Event-ID", &first_id)
        .send()
        .await
        .expect("send");
    let mut body = resumed.bytes_stream();
    let mut buf = String::new();
    let (id, _) = next_event(&mut body, &mut buf).await.expect("event");
    assert_ne!(id, first_id);
}
