//! The access log: refused permissions on visible resources are
//! AUTHORIZATION entries, signed-in downloads and previews FILE_ACCESS
//! entries, both bounded, both real events (`/events`, webhooks).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_with, Backend, TestApp};

const RW: &str = "files:read files:write";

/// A tenant with an admin (alice), a share she owns with one file, and bob,
/// a reader of that share.
struct Cast {
    admin: String,
    bob: String,
    bob_id: String,
    share: String,
    file: String,
}

async fn cast(app: &TestApp) -> Cast {
    let admin = app.token("acme", "alice", "");
    let alice_id = id_of(app, &admin).await;
    let bob = app.token("acme", "bob", RW);
    let bob_id = id_of(app, &bob).await;
    let s = app
        .post(
            "/shares",
            &admin,
            json!({"name": "Team", "share_type": "project", "owner_id": alice_id}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let share = s.body["id"].as_str().expect("share").to_owned();
    let m = app
        .post(
            &format!("/shares/{share}/members"),
            &admin,
            json!({"principal_type": "user", "principal_id": bob_id, "role": "reader"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let f = crate::drive::upload(
        app,
        &admin,
        &share,
        None,
        "report.txt",
        b"0123456789abcdefghij".to_vec(),
    )
    .await;
    assert_eq!(f.status, 201, "{}", f.body);
    let file = f.body["id"].as_str().expect("file").to_owned();
    Cast {
        admin,
        bob,
        bob_id,
        share,
        file,
    }
}

async fn id_of(app: &TestApp, t: &str) -> String {
    let me = app.get("/users/me", t).await;
    assert_eq!(me.status, 200, "{}", me.body);
    me.body["id"].as_str().expect("id").to_owned()
}

/// Polls `/audit/events?{query}` until `f` holds for its entries.
async fn wait_audit(
    app: &TestApp,
    t: &str,
    query: &str,
    f: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app
            .get(&format!("/audit/events?{query}&limit=100"), t)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let events = r.body["events"].as_array().expect("events").clone();
        if f(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on /audit/events?{query}: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_content(
    app: &TestApp,
    t: &str,
    path: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap) {
    let mut req = app.raw(Method::GET, path).bearer_auth(t);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    resp.bytes().await.expect("body");
    (status, headers)
}

async fn refusals_are_authorization_entries_bounded_per_resource(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let c = cast(&app).await;
    // 200 refusals of the same permission on the same file in a loop.
    for _ in 0..200 {
        app.delete(&format!("/files/{}", c.file), &c.bob)
            .await
            .assert_detail(403);
    }
    // An owner-only action on the share.
    app.delete(&format!("/shares/{}", c.share), &c.bob)
        .await
        .assert_detail(403);
    // What carol cannot see answers 404 and is no refusal.
    let carol = app.token("acme", "carol", RW);
    let carol_id = id_of(&app, &carol).await;
    app.delete(&format!("/files/{}", c.file), &carol)
        .await
        .assert_detail(404);

    let entries = wait_audit(&app, &c.admin, "category=AUTHORIZATION", |e| {
        e.iter().any(|e| e["resource_id"] == c.share.as_str())
            && e.iter().any(|e| e["resource_id"] == c.file.as_str())
    })
    .await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let file = entries
        .iter()
        .find(|e| e["resource_id"] == c.file.as_str())
        .expect("file entry");
    assert_eq!(file["action"], "access.denied");
    assert_eq!(file["category"], "AUTHORIZATION");
    assert_eq!(file["severity"], "warning");
    assert_eq!(file["event_type"], "access-denied");
    assert_eq!(file["user_id"], c.bob_id.as_str());
    assert_eq!(file["resource_type"], "file");
    assert_eq!(file["details"]["permission"], "DELETE");
    assert_eq!(file["details"]["method"], "DELETE");
    assert_eq!(file["details"]["route"], "/api/v1/files/{id}");
    assert_eq!(file["details"]["suppressed"], 0);
    assert!(
        file["ip_address"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("127.")),
        "{file}"
    );
    let share = entries
        .iter()
        .find(|e| e["resource_id"] == c.share.as_str())
        .expect("share entry");
    assert_eq!(share["resource_type"], "share");
    assert_eq!(share["details"]["permission"], "OWNER");
    assert!(entries.iter().all(|e| e["user_id"] != carol_id.as_str()));
    // The audit filters reach them like any entry.
    let by_action = app
        .get("/audit/events?action=access.denied&limit=100", &c.admin)
        .await;
    assert_eq!(by_action.body["events"].as_array().map(Vec::len), Some(2));
    let by_user = app
        .get(
            &format!("/audit/events?category=AUTHORIZATION&user_id={}", c.bob_id),
            &c.admin,
        )
        .await;
    assert_eq!(by_user.body["events"].as_array().map(Vec::len), Some(2));
    // They are events of the log: `/events` lists them, in bob's access log.
    let events = app.get("/events?type=access-denied", &c.admin).await;
    let events = events.body["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["stream_id"] == format!("access-log:{}", c.bob_id).as_str()));
}

crate::both_backends!(refusals_are_authorization_entries_bounded_per_resource
    => refusals_are_authorization_entries_bounded_per_resource_sqlite,
       refusals_are_authorization_entries_bounded_per_resource_pg);

#[tokio::test]
async fn a_later_refusal_entry_counts_the_ones_left_out_and_the_tenant_ceiling_holds() {
    let app = spawn_with(Backend::Sqlite, |c| {
        c.access_log.denial_window = Duration::from_millis(200);
        c.access_log.denials_per_tenant_minute = 1000;
    })
    .await;
    let c = cast(&app).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0u64;
    let entries = loop {
        for _ in 0..10 {
            app.delete(&format!("/files/{}", c.file), &c.bob)
                .await
                .assert_detail(403);
        }
        sent += 10;
        let r = app
            .get("/audit/events?action=access.denied&limit=100", &c.admin)
            .await;
        let e = r.body["events"].as_array().expect("events").clone();
        if e.iter()
            .any(|e| e["details"]["suppressed"].as_u64() > Some(0))
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no entry counted what it left out: {e:?}"
        );
    };
    let recorded = entries.len() as u64;
    let left_out: u64 = entries
        .iter()
        .map(|e| e["details"]["suppressed"].as_u64().expect("suppressed"))
        .sum();
    assert!(recorded < sent, "{recorded} entries for {sent} refusals");
    assert!(left_out + recorded <= sent);

    // A tenant ceiling of 2 per minute: refusals on many resources give 2.
    let app = spawn_with(Backend::Sqlite, |c| {
        c.access_log.denials_per_tenant_minute = 2;
    })
    .await;
    let c = cast(&app).await;
    for i in 0..5 {
        let f =
            crate::drive::upload(&app, &c.admin, &c.share, None, &format!("f{i}"), vec![1]).await;
        let id = f.body["id"].as_str().expect("file");
        app.delete(&format!("/files/{id}"), &c.bob)
            .await
            .assert_detail(403);
    }
    app.delete(&format!("/files/{}", c.file), &c.bob)
        .await
        .assert_detail(403);
    let entries = wait_audit(&app, &c.admin, "action=access.denied", |e| e.len() >= 2).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
}

async fn downloads_and_previews_are_file_access_entries(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let c = cast(&app).await;
    let content = format!("/files/{}/content", c.file);
    // A player's range requests: one entry for the version, with its range.
    let (status, _) = get_content(&app, &c.bob, &content, Some("bytes=0-9")).await;
    assert_eq!(status, 206);
    for _ in 0..50 {
        let (status, _) = get_content(&app, &c.bob, &content, Some("bytes=10-19")).await;
        assert_eq!(status, 206);
    }
    let (status, headers) = get_content(&app, &c.bob, &content, None).await;
    assert_eq!(status, 200);
    assert!(headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment;"));
    // A preview is the content for inline display.
    let (status, headers) =
        get_content(&app, &c.bob, &format!("{content}?inline=true"), None).await;
    assert_eq!(status, 200);
    assert!(headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("inline;"));
    app.get(&format!("{content}?inline=maybe"), &c.bob)
        .await
        .assert_detail(400);
    // A sync client's download.
    let (status, _) = get_content(&app, &c.bob, &format!("/sync/download/{}", c.file), None).await;
    assert_eq!(status, 200);

    let entries = wait_audit(&app, &c.admin, "category=FILE_ACCESS", |e| {
        e.iter()
            .filter(|e| e["resource_id"] == c.file.as_str())
            .count()
            >= 3
    })
    .await;
    let reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["resource_id"] == c.file.as_str())
        .collect();
    assert_eq!(reads.len(), 3, "{reads:?}");
    let download = reads
        .iter()
        .find(|e| e["action"] == "file.downloaded" && e["details"]["via"] == "files")
        .expect("download entry");
    assert_eq!(download["category"], "FILE_ACCESS");
    assert_eq!(download["severity"], "info");
    assert_eq!(download["resource_type"], "file");
    assert_eq!(download["user_id"], c.bob_id.as_str());
    assert_eq!(download["details"]["version"], 1);
    assert_eq!(download["details"]["share_id"], c.share.as_str());
    assert_eq!(download["details"]["range"], json!({"start": 0, "end": 10}));
    let preview = reads
        .iter()
        .find(|e| e["action"] == "file.previewed")
        .expect("preview entry");
    assert_eq!(preview["details"]["range"], Value::Null);
    let sync = reads
        .iter()
        .find(|e| e["action"] == "file.downloaded" && e["details"]["via"] == "sync")
        .expect("sync entry");
    assert_eq!(sync["details"]["version"], 1);
    // Filters: by action and by resource.
    let previews = app
        .get("/audit/events?action=file.previewed", &c.admin)
        .await;
    assert_eq!(previews.body["events"].as_array().map(Vec::len), Some(1));
    let about_file = app
        .get(
            &format!("/audit/events?category=FILE_ACCESS&resource_id={}", c.file),
            &c.admin,
        )
        .await;
    assert_eq!(about_file.body["events"].as_array().map(Vec::len), Some(3));
    let events = app
        .get("/events?type=access-file-downloaded", &c.admin)
        .await;
    assert_eq!(events.body["events"].as_array().map(Vec::len), Some(2));
}

crate::both_backends!(downloads_and_previews_are_file_access_entries
    => downloads_and_previews_are_file_access_entries_sqlite,
       downloads_and_previews_are_file_access_entries_pg);

async fn webhooks_receive_authorization_and_file_access_entries(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.webhooks.poll = Duration::from_millis(10);
    })
    .await;
    let rx = crate::webhooks_out::Receiver::start(0).await;
    let c = cast(&app).await;
    let hook = app
        .post(
            "/admin/webhooks",
            &c.admin,
            json!({"name": "SIEM", "url": rx.url, "categories": ["AUTHORIZATION", "FILE_ACCESS"],
                   "secret": "s3cret-for-tests"}),
        )
        .await;
    assert_eq!(hook.status, 201, "{}", hook.body);
    app.delete(&format!("/files/{}", c.file), &c.bob)
        .await
        .assert_detail(403);
    let content = format!("/files/{}/content", c.file);
    assert_eq!(get_content(&app, &c.bob, &content, None).await.0, 200);
    let inline = format!("{content}?inline=true");
    assert_eq!(get_content(&app, &c.bob, &inline, None).await.0, 200);
    let actions = ["access.denied", "file.downloaded", "file.previewed"];
    let hits = rx
        .wait_for("the access log entries", |h| {
            actions
                .iter()
                .all(|a| h.iter().any(|h| h.header("x-scaidrive-event") == *a))
        })
        .await;
    for h in &hits {
        let body = h.json();
        assert!(
            body["category"] == "AUTHORIZATION" || body["category"] == "FILE_ACCESS",
            "{body}"
        );
    }
    let denied = hits
        .iter()
        .map(|h| h.json())
        .find(|b| b["action"] == "access.denied")
        .expect("denied");
    assert_eq!(denied["resource_id"], c.file.as_str());
    assert_eq!(denied["user_id"], c.bob_id.as_str());
    // The body is the audit entry as the audit view shows it.
    let audit = app
        .get("/audit/events?action=access.denied", &c.admin)
        .await;
    assert_eq!(audit.body["events"][0], denied, "{}", audit.body);
}

crate::both_backends!(webhooks_receive_authorization_and_file_access_entries
    => webhooks_receive_authorization_and_file_access_entries_sqlite,
       webhooks_receive_authorization_and_file_access_entries_pg);
