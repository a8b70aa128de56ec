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

/// Makes the data of the tenant's `tenant-updated` event at `version` no
/// longer match its stored hash.
async fn tamper_tenant_update(app: &crate::helpers::TestApp, version: i64) {
    match &app.state.db {
        scaidrive_projections::db::Db::Sqlite(db) => sqlx::query(
            "UPDATE events SET data = '{\"display_name\":\"Forged\"}' WHERE event_type = 'tenant-updated' AND stream_version = $1",
        )
        .bind(version)
        .execute(&db.write)
        .await
        .expect("tamper")
        .rows_affected(),
        scaidrive_projections::db::Db::Postgres(pool) => sqlx::query(
            "UPDATE events SET data = '{\"display_name\":\"Forged\"}'::jsonb WHERE event_type = 'tenant-updated' AND stream_version = $1",
        )
        .bind(version)
        .execute(pool)
        .await
        .expect("tamper")
        .rows_affected(),
    };
}

async fn verification_checks_only_the_range_asked_for(backend: crate::helpers::Backend) {
    let app = crate::helpers::spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let first = app
        .patch("/admin/tenant", &t, json!({"display_name": "Before"}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    // Every event from here on occurred at or after `cut`.
    let cut_text = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let cut = chrono::DateTime::parse_from_rfc3339(&cut_text).expect("timestamp");
    let second = app
        .patch("/admin/tenant", &t, json!({"display_name": "After"}))
        .await;
    assert_eq!(second.status, 200, "{}", second.body);
    let all = app.get("/audit/verify", &t).await;
    assert_eq!(all.body["ok"], true, "{}", all.body);
    assert_eq!(all.body["range"]["from"], json!(null));
    assert_eq!(all.body["range"]["to"], json!(null));
    let total = all.body["events_checked"].as_u64().expect("count");

    // The event before the cut is forged: a check of the whole log (or up
    // to the cut) finds it, a check from the cut on does not look at it.
    tamper_tenant_update(&app, 2).await;
    let q = |from: Option<&str>, to: Option<&str>| {
        let mut query = Vec::new();
        if let Some(f) = from {
            query.push(format!("from={}", urlencoding(f)));
        }
        if let Some(t) = to {
            query.push(format!("to={}", urlencoding(t)));
        }
        format!("/audit/verify?{}", query.join("&"))
    };
    let whole = app.get("/audit/verify", &t).await;
    assert_eq!(whole.body["ok"], false, "{}", whole.body);
    let before = app.get(&q(None, Some(&cut_text)), &t).await;
    assert_eq!(before.body["ok"], false, "{}", before.body);
    assert_eq!(before.body["first_broken"]["stream_version"], 2);

    let after = app.get(&q(Some(&cut_text), None), &t).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.body["ok"], true, "{}", after.body);
    let checked = after.body["events_checked"].as_u64().expect("count");
    assert!(checked >= 1 && checked < total, "{checked} of {total}");
    assert_eq!(after.body["streams_checked"], 1, "{}", after.body);
    let range = &after.body["range"];
    let from = chrono::DateTime::parse_from_rfc3339(range["from"].as_str().expect("from"))
        .expect("timestamp");
    assert_eq!(from, cut);
    assert_eq!(range["to"], json!(null));
    let first_at =
        chrono::DateTime::parse_from_rfc3339(range["first_occurred_at"].as_str().expect("first"))
            .expect("timestamp");
    assert!(first_at >= cut, "{first_at} before {cut}");
    assert_eq!(
        before.body["events_checked"].as_u64().expect("n") + checked,
        total
    );

    // A range in the future checks nothing.
    let none = app.get(&q(Some("2999-01-01T00:00:00Z"), None), &t).await;
    assert_eq!(none.body["ok"], true);
    assert_eq!(none.body["events_checked"], 0);
    assert_eq!(none.body["range"]["first_occurred_at"], json!(null));

    // Bad values are 400 with a detail.
    for bad in [
        q(Some("yesterday"), None),
        q(None, Some("2026-13-01T00:00:00Z")),
        q(Some("2026-02-01T00:00:00Z"), Some("2026-01-01T00:00:00Z")),
    ] {
        app.get(&bad, &t).await.assert_detail(400);
    }
}

/// Percent-encodes a query value (timestamps carry `+` and `:`).
fn urlencoding(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

crate::both_backends!(verification_checks_only_the_range_asked_for
    => verification_checks_only_the_range_asked_for_sqlite,
       verification_checks_only_the_range_asked_for_postgres);
