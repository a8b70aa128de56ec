//! The audit view, its exports, and hash-chain verification over HTTP.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn;

#[tokio::test]
async fn audit_entries_are_classified_filtered_and_exported() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let me = app.get("/users/me", &t).await;
    let uid = me.body["id"].as_str().expect("id").to_owned();
    let share = app
        .post(
            "/shares",
            &t,
            json!({"name": "Audit me", "share_type": "project", "owner_id": uid}),
        )
        .await;
    let sid = share.body["id"].as_str().expect("share").to_owned();
    app.delete(&format!("/shares/{sid}"), &t).await;

    let all = app.get("/audit/events", &t).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let entries = all.body["events"].as_array().expect("events");
    let deleted = entries
        .iter()
        .find(|e| e["action"] == "share.deleted")
        .unwrap_or_else(|| panic!("share.deleted entry: {}", all.body));
    assert_eq!(deleted["category"], "SHARING");
    assert_eq!(deleted["severity"], "warning");
    assert_eq!(deleted["user_id"], uid.as_str());
    assert_eq!(deleted["resource_id"], sid.as_str());
    assert!(
        deleted["ip_address"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("127.")),
        "{deleted}"
    );

    let sharing = app.get("/audit/events?category=SHARING", &t).await;
    assert!(sharing.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .all(|e| e["category"] == "SHARING"));
    let by_resource = app
        .get(&format!("/audit/events?resource_id={sid}"), &t)
        .await;
    assert_eq!(by_resource.body["events"].as_array().map(Vec::len), Some(2));
    let text = app.get("/audit/events?q=SHARE.DEL", &t).await;
    assert_eq!(text.body["events"].as_array().map(Vec::len), Some(1));
    let future = app.get("/audit/events?from=2999-01-01T00:00:00Z", &t).await;
    assert_eq!(future.body["events"].as_array().map(Vec::len), Some(0));
    app.get("/audit/events?category=NOPE", &t)
        .await
        .assert_detail(400);
    app.get("/audit/events?from=yesterday", &t)
        .await
        .assert_detail(400);

    let nd = app
        .raw(Method::GET, "/audit/export?format=ndjson")
        .bearer_auth(&t)
        .send()
        .await
        .expect("send");
    assert_eq!(nd.headers()["content-type"], "application/x-ndjson");
    let text = nd.text().await.expect("body");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), entries.len());
    let csv = app
        .raw(Method::GET, "/audit/export?format=csv")
        .bearer_auth(&t)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(csv.starts_with("event_id,timestamp,category,action"));
    assert_eq!(csv.lines().count(), entries.len() + 1);
    app.get("/audit/export?format=xml", &t)
        .await
        .assert_detail(400);

    let reader = app.token("acme", "bob", "files:read");
    app.get("/audit/events", &reader).await.assert_detail(403);
    let other = app.token("globex", "gina", "");
    let theirs = app.get("/audit/events", &other).await;
    assert!(theirs.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .all(|e| e["resource_id"] != sid.as_str()));
}

#[tokio::test]
async fn verification_finds_a_tampered_event() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    app.patch("/admin/tenant", &t, json!({"display_name": "Before"}))
        .await;
    let ok = app.get("/audit/verify", &t).await;
    assert_eq!(ok.body["ok"], true, "{}", ok.body);
    assert!(ok.body["events_checked"].as_u64().is_some_and(|n| n >= 4));

    let scaidrive_projections::db::Db::Sqlite(db) = &app.state.db else {
        panic!("sqlite")
    };
    sqlx::query("UPDATE events SET data = '{\"display_name\":\"Forged\"}' WHERE event_type = 'tenant-updated'")
        .execute(&db.write)
        .await
        .expect("tamper");
    let bad = app.get("/audit/verify", &t).await;
    assert_eq!(bad.body["ok"], false);
    assert_eq!(
        bad.body["first_broken"]["stream_version"], 2,
        "{}",
        bad.body
    );
}
