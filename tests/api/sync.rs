//! Sync end to end: the change feed, devices and cursors, apply with conflict
//! strategies, two devices editing one file offline, WebSockets, and the
//! feed under many concurrent writers on PostgreSQL.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::drive::new_share;
use crate::helpers::{spawn, spawn_on, Backend, TestApp};

async fn upload_file(app: &TestApp, t: &str, share: &str, name: &str, data: &[u8]) -> Value {
    let a = crate::drive::upload(app, t, share, None, name, data.to_vec()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

/// An upload session holding `data`, every chunk sent, not completed.
async fn staged(app: &TestApp, t: &str, share: &str, name: &str, data: &[u8]) -> String {
    let s = app
        .post(
            "/uploads",
            t,
            json!({"share_id": share, "file_name": name, "file_size": data.len(), "mime_type": "text/plain"}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let sid = s.body["session_id"].as_str().expect("sid").to_owned();
    let put = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(t)
        .body(data.to_vec())
        .send()
        .await
        .expect("chunk");
    assert_eq!(put.status(), 200);
    sid
}

async fn content(app: &TestApp, t: &str, file: &str) -> Vec<u8> {
    let r = app
        .raw(Method::GET, &format!("/sync/download/{file}"))
        .bearer_auth(t)
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 200);
    r.bytes().await.expect("bytes").to_vec()
}

/// Every change of a share from `cursor`, paged by `limit`; returns the
/// changes and the final cursor.
async fn feed(
    app: &TestApp,
    t: &str,
    share: &str,
    cursor: &str,
    limit: usize,
) -> (Vec<Value>, String) {
    let mut out = Vec::new();
    let mut cursor = cursor.to_owned();
    loop {
        let r = app
            .get(
                &format!("/sync/changes?share_id={share}&cursor={cursor}&limit={limit}"),
                t,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(
            r.body["changes"]
                .as_array()
                .expect("changes")
                .iter()
                .cloned(),
        );
        cursor = r.body["cursor"].as_str().expect("cursor").to_owned();
        if r.body["has_more"] == false {
            return (out, cursor);
        }
    }
}

fn kinds(changes: &[Value]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| {
            (
                c["resource_type"].as_str().unwrap_or_default().to_owned(),
                c["change_type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn kind(r: &str, c: &str) -> (String, String) {
    (r.to_owned(), c.to_owned())
}

#[tokio::test]
async fn the_feed_holds_exactly_one_change_per_mutation_in_order() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Feed").await;
    let folder = app
        .post("/folders", &t, json!({"share_id": share, "name": "docs"}))
        .await;
    let fid = folder.body["id"].as_str().expect("id").to_owned();
    let sub = app
        .post(
            "/folders",
            &t,
            json!({"share_id": share, "parent_id": fid, "name": "sub"}),
        )
        .await;
    assert_eq!(sub.status, 201);
    let file = upload_file(&app, &t, &share, "a.txt", b"hello").await;
    let file_id = file["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.patch(&format!("/files/{file_id}"), &t, json!({"name": "b.txt"}))
            .await
            .status,
        200
    );
    // A move with a new name is two events in the log, one change in the feed.
    let mv = app
        .post(
            &format!("/files/{file_id}/move"),
            &t,
            json!({"target_folder_id": fid, "new_name": "c.txt"}),
        )
        .await;
    assert_eq!(mv.status, 200, "{}", mv.body);
    assert_eq!(
        app.delete(&format!("/files/{file_id}"), &t).await.status,
        204
    );
    // A permanent delete of a folder purges its subtree: one change.
    assert_eq!(
        app.delete(&format!("/folders/{fid}?permanent=true"), &t)
            .await
            .status,
        204
    );

    let (all, end) = feed(&app, &t, &share, "0", 1000).await;
    assert_eq!(
        kinds(&all),
        vec![
            kind("share", "created"),
            kind("folder", "created"),
            kind("folder", "created"),
            kind("file", "created"),
            kind("file", "renamed"),
            kind("file", "moved"),
            kind("file", "deleted"),
            kind("folder", "deleted"),
        ]
    );
    let moved = &all[5];
    assert_eq!(moved["old_path"], "/b.txt");
    assert_eq!(moved["new_path"], "/docs/c.txt");
    assert_eq!(all[3]["metadata"]["size"], 5);
    assert_eq!(all[3]["version_id"], file["version_id"]);
    assert_eq!(all[7]["resource_id"], fid.as_str());
    assert_eq!(all[7]["metadata"]["permanent"], true);
    for c in &all {
        assert!(c["id"].as_str().expect("id").starts_with("chg_"));
        assert_eq!(c["share_id"], share.as_str());
        assert!(c["changed_by"].as_str().expect("by").starts_with("usr_"));
    }

    // Paging one by one tells the same story; the end cursor has nothing after it.
    let (paged, end2) = feed(&app, &t, &share, "0", 1).await;
    assert_eq!(paged, all);
    assert_eq!(end2, end);
    let (rest, _) = feed(&app, &t, &share, &end, 10).await;
    assert!(rest.is_empty());
    // No cursor: the end of the feed, only newer changes.
    let now = app
        .get(&format!("/sync/changes?share_id={share}"), &t)
        .await;
    assert_eq!(now.body["changes"], json!([]));
    assert_eq!(now.body["has_more"], false);

    // A trashed share's feed still tells its last change.
    assert_eq!(
        app.delete(&format!("/shares/{share}"), &t).await.status,
        204
    );
    let (last, _) = feed(&app, &t, &share, &end, 10).await;
    assert_eq!(kinds(&last), vec![kind("share", "deleted")]);

    // Bad input and strangers.
    for bad in ["limit=0", "limit=5001", "cursor=nope", "cursor=1.x"] {
        app.get(&format!("/sync/changes?share_id={share}&{bad}"), &t)
            .await
            .assert_detail(400);
    }
    app.get("/sync/changes", &t).await.assert_detail(400);
    let mallory = app.token("acme", "mallory", "files:read files:write");
    app.get(
        &format!("/sync/changes?share_id={share}&cursor=0"),
        &mallory,
    )
    .await
    .assert_detail(404);
    let other = app.token("globex", "bob", "");
    app.get(&format!("/sync/changes?share_id={share}&cursor=0"), &other)
        .await
        .assert_detail(404);
}

#[tokio::test]
async fn devices_status_and_cursors_follow_the_feed() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let d = app
        .post(
            "/sync/devices",
            &t,
            json!({"device_id": "laptop-1", "device_name": "Alice's laptop", "platform": "linux", "client_version": "1.2"}),
        )
        .await;
    assert_eq!(d.status, 201, "{}", d.body);
    assert_eq!(d.body["device_name"], "Alice's laptop");
    let again = app
        .post(
            "/sync/devices",
            &t,
            json!({"device_id": "laptop-1", "device_name": "Laptop"}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["device_name"], "Laptop");
    app.post("/sync/devices", &t, json!({"device_id": ""}))
        .await
        .assert_422();
    app.post("/sync/devices", &t, json!({})).await.assert_422();
    let list = app.get("/sync/devices", &t).await;
    assert_eq!(list.body["total"], 1);

    app.get(
        &format!("/sync/status?share_id={share}&device_id=ghost"),
        &t,
    )
    .await
    .assert_detail(404);
    // The first status creates the cursor at the end of the feed.
    let s = app
        .get(
            &format!("/sync/status?share_id={share}&device_id=laptop-1"),
            &t,
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["pending_changes"], 0);
    assert_eq!(s.body["has_conflicts"], false);
    let start = s.body["cursor_position"]
        .as_str()
        .expect("cursor")
        .to_owned();

    upload_file(&app, &t, &share, "x.txt", b"x").await;
    app.post("/folders", &t, json!({"share_id": share, "name": "f"}))
        .await;
    let s = app
        .get(
            &format!("/sync/status?share_id={share}&device_id=laptop-1"),
            &t,
        )
        .await;
    assert_eq!(s.body["pending_changes"], 2);
    assert_eq!(s.body["cursor_position"], start.as_str());
    let (changes, end) = feed(&app, &t, &share, &start, 1000).await;
    assert_eq!(changes.len(), 2);
    let c = app
        .post(
            &format!("/sync/cursor?share_id={share}&device_id=laptop-1&position={end}"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["cursor_position"], end.as_str());
    let s = app
        .get(
            &format!("/sync/status?share_id={share}&device_id=laptop-1"),
            &t,
        )
        .await;
    assert_eq!(s.body["pending_changes"], 0);
    app.post(
        &format!("/sync/cursor?share_id={share}&device_id=laptop-1&position=999999999.1"),
        &t,
        json!({}),
    )
    .await
    .assert_detail(400);
    app.post(
        &format!("/sync/cursor?share_id={share}&device_id=laptop-1&position=abc"),
        &t,
        json!({}),
    )
    .await
    .assert_detail(400);
    let list = app.get("/sync/devices", &t).await;
    assert_eq!(
        list.body["devices"][0]["cursors"][0]["cursor_position"],
        end.as_str()
    );
}

pub(crate) async fn register(app: &TestApp, t: &str, device: &str, name: &str) {
    let d = app
        .post(
            "/sync/devices",
            t,
            json!({"device_id": device, "device_name": name}),
        )
        .await;
    assert!(d.status == 201 || d.status == 200, "{}", d.body);
}

#[tokio::test]
async fn apply_creates_updates_renames_moves_and_deletes_with_base_checks() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    register(&app, &t, "pc", "PC").await;
    let sid = staged(&app, &t, &share, "notes.txt", b"v1").await;
    let r = app
        .post(
            "/sync/apply",
            &t,
            json!({"device_id": "pc", "share_id": share, "changes": [
                {"change_type": "created", "resource_type": "folder", "name": "docs"},
                {"change_type": "created", "resource_type": "file", "upload_session_id": sid},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let folder = r.body["results"][0]["resource_id"]
        .as_str()
        .expect("folder")
        .to_owned();
    let file = r.body["results"][1]["resource_id"]
        .as_str()
        .expect("file")
        .to_owned();
    let v1 = r.body["results"][1]["version_id"]
        .as_str()
        .expect("v1")
        .to_owned();
    assert_eq!(r.body["results"][1]["status"], "applied");
    assert_eq!(content(&app, &t, &file).await, b"v1");

    let sid2 = staged(&app, &t, &share, "notes.txt", b"v2").await;
    let r = app
        .post(
            "/sync/apply",
            &t,
            json!({"device_id": "pc", "share_id": share, "changes": [
                {"change_type": "updated", "resource_type": "file", "resource_id": file, "base_version_id": v1, "upload_session_id": sid2},
                {"change_type": "renamed", "resource_type": "file", "resource_id": file, "name": "n.txt"},
                {"change_type": "moved", "resource_type": "file", "resource_id": file, "parent_id": folder},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v2 = r.body["results"][0]["version_id"]
        .as_str()
        .expect("v2")
        .to_owned();
    assert_ne!(v1, v2);
    assert_eq!(content(&app, &t, &file).await, b"v2");
    let f = app.get(&format!("/files/{file}"), &t).await;
    assert_eq!(f.body["path"], "/docs/n.txt");
    assert_eq!(f.body["version"], 2);

    // The device is recorded on every event of the apply.
    let (changes, _) = feed(&app, &t, &share, "0", 100).await;
    let by_pc: Vec<_> = changes.iter().filter(|c| c["device_id"] == "pc").collect();
    assert_eq!(by_pc.len(), 5, "{changes:?}");

    // Validation, visibility, unknown device.
    app.post(
        "/sync/apply",
        &t,
        json!({"device_id": "pc", "share_id": share, "changes": [{"change_type": "updated", "resource_type": "folder", "resource_id": folder}]}),
    )
    .await
    .assert_422();
    app.post(
        "/sync/apply",
        &t,
        json!({"device_id": "pc", "share_id": share, "changes": [{"change_type": "exploded", "resource_type": "file"}]}),
    )
    .await
    .assert_422();
    app.post(
        "/sync/apply",
        &t,
        json!({"device_id": "pc", "share_id": share, "changes": []}),
    )
    .await
    .assert_422();
    app.post(
        "/sync/apply",
        &t,
        json!({"device_id": "nope", "share_id": share, "changes": [{"change_type": "deleted", "resource_type": "file", "resource_id": file}]}),
    )
    .await
    .assert_detail(404);
    let reader = app.token("acme", "alice", "files:read");
    app.post(
        "/sync/apply",
        &reader,
        json!({"device_id": "pc", "share_id": share, "changes": [{"change_type": "deleted", "resource_type": "file", "resource_id": file}]}),
    )
    .await
    .assert_detail(403);

    // Delete with the current base applies.
    let r = app
        .post(
            "/sync/apply",
            &t,
            json!({"device_id": "pc", "share_id": share, "changes": [
                {"change_type": "deleted", "resource_type": "file", "resource_id": file, "base_version_id": v2},
                {"change_type": "deleted", "resource_type": "folder", "resource_id": folder},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.get(&format!("/files/{file}"), &t)
        .await
        .assert_detail(410);
}

/// Two devices hold `name` at v1; both edit offline; A syncs first, then B
/// with `strategy`. Returns (file, A's version, B's apply answer).
async fn two_devices_edit_one_file(
    app: &TestApp,
    t: &str,
    share: &str,
    name: &str,
    strategy: &str,
) -> (String, String, String, crate::helpers::Answer) {
    let f = upload_file(app, t, share, name, b"base").await;
    let file = f["id"].as_str().expect("id").to_owned();
    let v1 = f["version_id"].as_str().expect("v1").to_owned();
    // Both devices are offline now and edit their copy.
    let a_sid = staged(app, t, share, name, b"from A").await;
    let b_sid = staged(app, t, share, name, b"from B").await;
    let a = app
        .post(
            "/sync/apply",
            t,
            json!({"device_id": "dev-a", "share_id": share, "conflict_resolution": strategy, "changes": [
                {"change_type": "updated", "resource_type": "file", "resource_id": file, "base_version_id": v1, "upload_session_id": a_sid}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["results"][0]["status"], "applied");
    let va = a.body["results"][0]["version_id"]
        .as_str()
        .expect("va")
        .to_owned();
    let b = app
        .post(
            "/sync/apply",
            t,
            json!({"device_id": "dev-b", "share_id": share, "conflict_resolution": strategy, "changes": [
                {"change_type": "updated", "resource_type": "file", "resource_id": file, "base_version_id": v1, "upload_session_id": b_sid}]}),
        )
        .await;
    (file, v1, va, b)
}

#[tokio::test]
async fn two_devices_editing_offline_end_as_each_strategy_promises() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Team").await;
    register(&app, &t, "dev-a", "Desk").await;
    register(&app, &t, "dev-b", "Laptop").await;
    let start = app
        .get(
            &format!("/sync/status?share_id={share}&device_id=dev-a"),
            &t,
        )
        .await
        .body["cursor_position"]
        .as_str()
        .expect("cursor")
        .to_owned();
    app.get(
        &format!("/sync/status?share_id={share}&device_id=dev-b"),
        &t,
    )
    .await;

    // MANUAL: 409, the conflict is stored; resolving it as CLIENT_WINS
    // writes B's content as a new version.
    let (file, _, va, b) =
        two_devices_edit_one_file(&app, &t, &share, "manual.txt", "MANUAL").await;
    b.assert_detail(409);
    assert_eq!(b.body["code"], "SYNC_CONFLICT");
    let cid = b.body["conflict_id"].as_str().expect("cid").to_owned();
    assert!(cid.starts_with("cfl_"));
    assert_eq!(content(&app, &t, &file).await, b"from A");
    let open = app
        .get(
            &format!("/sync/conflicts?device_id=dev-b&share_id={share}"),
            &t,
        )
        .await;
    assert_eq!(open.body["total"], 1, "{}", open.body);
    assert_eq!(open.body["conflicts"][0]["server_version_id"], va.as_str());
    let st = app
        .get(
            &format!("/sync/status?share_id={share}&device_id=dev-b"),
            &t,
        )
        .await;
    assert_eq!(st.body["has_conflicts"], true);
    app.post(
        &format!("/sync/conflicts/{cid}/resolve?resolution=MANUAL"),
        &t,
        json!({}),
    )
    .await
    .assert_detail(400);
    let res = app
        .post(
            &format!("/sync/conflicts/{cid}/resolve?resolution=CLIENT_WINS"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["status"], "resolved");
    assert_eq!(content(&app, &t, &file).await, b"from B");
    app.post(
        &format!("/sync/conflicts/{cid}/resolve?resolution=SERVER_WINS"),
        &t,
        json!({}),
    )
    .await
    .assert_detail(409);
    let all = app
        .get("/sync/conflicts?device_id=dev-b&include_resolved=true", &t)
        .await;
    assert_eq!(all.body["total"], 1);

    // LAST_WRITER_WINS: B wrote last, so B's content is current.
    let (file, _, _, b) =
        two_devices_edit_one_file(&app, &t, &share, "lww.txt", "LAST_WRITER_WINS").await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["results"][0]["status"], "applied");
    assert_eq!(b.body["results"][0]["resolution"], "LAST_WRITER_WINS");
    assert_eq!(content(&app, &t, &file).await, b"from B");

    // CLIENT_WINS: the same, recorded as such.
    let (file, _, _, b) =
        two_devices_edit_one_file(&app, &t, &share, "cw.txt", "CLIENT_WINS").await;
    assert_eq!(b.body["results"][0]["status"], "applied", "{}", b.body);
    assert_eq!(content(&app, &t, &file).await, b"from B");

    // SERVER_WINS: A's content stays; B is told so.
    let (file, _, va, b) =
        two_devices_edit_one_file(&app, &t, &share, "sw.txt", "SERVER_WINS").await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["results"][0]["status"], "conflict");
    assert_eq!(b.body["results"][0]["version_id"], va.as_str());
    assert_eq!(content(&app, &t, &file).await, b"from A");

    // KEEP_BOTH: A's content stays, B's is saved as a conflicted copy.
    let (file, _, _, b) = two_devices_edit_one_file(&app, &t, &share, "kb.txt", "KEEP_BOTH").await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["results"][0]["status"], "conflict");
    let copy = b.body["results"][0]["resource_id"]
        .as_str()
        .expect("copy")
        .to_owned();
    assert_ne!(copy, file);
    assert_eq!(content(&app, &t, &file).await, b"from A");
    assert_eq!(content(&app, &t, &copy).await, b"from B");
    let copy_row = app.get(&format!("/files/{copy}"), &t).await;
    let copy_name = copy_row.body["name"].as_str().expect("name");
    assert!(
        copy_name.starts_with("kb (conflicted copy Laptop "),
        "{copy_name}"
    );
    assert!(copy_name.ends_with(").txt"), "{copy_name}");

    // Both devices page the feed from where they started: the same story,
    // ending in the states above.
    let (seen_a, _) = feed(&app, &t, &share, &start, 3).await;
    let b_cursor = app
        .get(
            &format!("/sync/status?share_id={share}&device_id=dev-b"),
            &t,
        )
        .await
        .body["cursor_position"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let (seen_b, _) = feed(&app, &t, &share, &b_cursor, 1000).await;
    assert_eq!(seen_a, seen_b);
    let story: Vec<(String, String, Option<String>)> = seen_a
        .iter()
        .map(|c| {
            (
                c["new_path"].as_str().unwrap_or_default().to_owned(),
                c["change_type"].as_str().unwrap_or_default().to_owned(),
                c["device_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let s = |p: &str, c: &str, d: Option<&str>| (p.to_owned(), c.to_owned(), d.map(str::to_owned));
    assert_eq!(
        story,
        vec![
            s("/manual.txt", "created", None),
            s("/manual.txt", "updated", Some("dev-a")),
            s("/manual.txt", "updated", Some("dev-b")),
            s("/lww.txt", "created", None),
            s("/lww.txt", "updated", Some("dev-a")),
            s("/lww.txt", "updated", Some("dev-b")),
            s("/cw.txt", "created", None),
            s("/cw.txt", "updated", Some("dev-a")),
            s("/cw.txt", "updated", Some("dev-b")),
            s("/sw.txt", "created", None),
            s("/sw.txt", "updated", Some("dev-a")),
            s("/kb.txt", "created", None),
            s("/kb.txt", "updated", Some("dev-a")),
            s(
                copy_row.body["path"].as_str().expect("path"),
                "created",
                Some("dev-b")
            ),
        ]
    );
    // The last version in the feed of each file is what the server holds.
    for c in seen_a.iter().filter(|c| c["resource_type"] == "file") {
        let id = c["resource_id"].as_str().expect("id");
        let last = seen_a
            .iter()
            .rfind(|x| x["resource_id"] == id)
            .expect("last");
        let now = app.get(&format!("/files/{id}"), &t).await;
        assert_eq!(now.body["version_id"], last["version_id"]);
    }
    let metrics = app
        .raw(Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("scaidrive_sync_conflicts_total 5"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("conflict"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn sync_download_serves_ranges() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let f = upload_file(&app, &t, &share, "d.bin", &data).await;
    let id = f["id"].as_str().expect("id");
    let r = app
        .raw(Method::GET, &format!("/sync/download/{id}"))
        .bearer_auth(&t)
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/10000");
    assert_eq!(r.bytes().await.expect("bytes").to_vec(), &data[10..20]);
    app.get("/sync/download/nope", &t).await.assert_detail(400);
    let other = app.token("acme", "mallory", "");
    app.get(&format!("/sync/download/{id}"), &other)
        .await
        .assert_detail(404);
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn ws_connect(app: &TestApp, path: &str) -> Ws {
    let url = format!("{}{}", app.base.replacen("http://", "ws://", 1), path);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// The next JSON text frame (or the close code), waiting at most 20 s.
pub(crate) async fn next_frame(ws: &mut Ws) -> Result<Value, Option<u16>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(&t).expect("json")),
            Ok(Some(Ok(Message::Close(c)))) => return Err(c.map(|c| u16::from(c.code))),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return Err(None),
            Err(_) => panic!("no frame within 20 s"),
        }
    }
}

pub(crate) async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

#[tokio::test]
async fn websockets_push_changes_to_subscribers_and_refuse_bad_tokens() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Live").await;
    register(&app, &t, "ws-dev", "WS").await;
    app.get(
        &format!("/sync/status?share_id={share}&device_id=ws-dev"),
        &t,
    )
    .await;

    let mut bad = ws_connect(&app, "/sync/ws/ws-dev?token=garbage").await;
    assert_eq!(next_frame(&mut bad).await, Err(Some(4401)));
    let mut none = ws_connect(&app, "/realtime/ws").await;
    assert_eq!(next_frame(&mut none).await, Err(Some(4401)));

    // Sync socket: subscribe (to every share the caller can read), ping.
    let mut sync = ws_connect(&app, &format!("/sync/ws/ws-dev?token={t}")).await;
    send_json(&mut sync, json!({"type": "subscribe"})).await;
    let sub = next_frame(&mut sync).await.expect("subscribed");
    assert_eq!(sub["type"], "subscribed");
    assert_eq!(sub["all"], true);
    let listed = sub["share_ids"].as_array().expect("share_ids");
    assert!(listed.contains(&json!(share)), "{sub}");
    send_json(&mut sync, json!({"type": "ping"})).await;
    assert_eq!(next_frame(&mut sync).await.expect("pong")["type"], "pong");

    // Realtime socket with the token in the header.
    let url = format!("{}/realtime/ws", app.base.replacen("http://", "ws://", 1));
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {t}").parse().expect("header"),
    );
    let mut rt = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect")
        .0;
    assert_eq!(
        next_frame(&mut rt).await.expect("hello")["type"],
        "connected"
    );
    send_json(&mut rt, json!({"type": "subscribe", "share_id": share})).await;
    assert_eq!(
        next_frame(&mut rt).await.expect("sub")["type"],
        "subscribed"
    );
    // Another tenant's share looks like no share at all.
    let stranger = new_share(&app, &app.token("globex", "bob", ""), "Bob's").await;
    send_json(&mut rt, json!({"type": "subscribe", "share_id": stranger})).await;
    let refused = next_frame(&mut rt).await.expect("subscribed");
    assert_eq!(refused["share_ids"], json!([]));
    let err = next_frame(&mut rt).await.expect("error");
    assert_eq!(err["status"], 404);

    let f = upload_file(&app, &t, &share, "live.txt", b"hi").await;
    let change = next_frame(&mut sync).await.expect("change");
    assert_eq!(change["event_type"], "change");
    assert_eq!(change["share_id"], share.as_str());
    assert_eq!(change["data"]["resource_id"], f["id"]);
    assert_eq!(change["data"]["change_type"], "created");
    let rt_frame = next_frame(&mut rt).await.expect("file_created");
    assert_eq!(rt_frame["type"], "file_created");
    assert_eq!(rt_frame["path"], "/live.txt");
    // The frame's change is the feed's change.
    let (feed_now, _) = feed(&app, &t, &share, "0", 100).await;
    assert_eq!(feed_now.last().expect("last"), &change["data"]);

    app.delete(&format!("/files/{}", f["id"].as_str().expect("id")), &t)
        .await;
    assert_eq!(
        next_frame(&mut rt).await.expect("deleted")["type"],
        "file_deleted"
    );
    send_json(&mut rt, json!({"type": "unsubscribe", "share_id": share})).await;
    assert_eq!(
        next_frame(&mut rt).await.expect("unsub")["type"],
        "unsubscribed"
    );
}

/// 16 writers mutate one share while a reader pages the feed with a small
/// limit; afterwards the reader's changes equal the full feed: every change
/// exactly once, in order, one per successful write.
#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (scripts/test)"]
async fn the_feed_never_skips_or_repeats_under_concurrent_writers_on_postgres() {
    let app = spawn_on(Backend::Postgres).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Busy").await;
    let start = "0".to_owned();
    const WRITERS: usize = 16;
    const EACH: usize = 12;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = app.client.clone();
            let base = app.base.clone();
            let (t, share) = (t.clone(), share.clone());
            tokio::spawn(async move {
                let mut ok = 0usize;
                for i in 0..EACH {
                    let r = client
                        .post(format!("{base}/folders"))
                        .bearer_auth(&t)
                        .json(&json!({"share_id": share, "name": format!("w{w}-{i}")}))
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(r.status(), 201);
                    ok += 1;
                    let id = r.json::<Value>().await.expect("json")["id"]
                        .as_str()
                        .expect("id")
                        .to_owned();
                    if i % 3 == 0 {
                        let r = client
                            .patch(format!("{base}/folders/{id}"))
                            .bearer_auth(&t)
                            .json(&json!({"name": format!("w{w}-{i}-r")}))
                            .send()
                            .await
                            .expect("send");
                        assert_eq!(r.status(), 200);
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();

    // The reader pages concurrently, from the start, 7 at a time.
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor = start.clone();
    let mut done = false;
    let mut writes = 0usize;
    let mut handles = Some(writers);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = app
            .get(
                &format!("/sync/changes?share_id={share}&cursor={cursor}&limit=7"),
                &t,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(
            r.body["changes"]
                .as_array()
                .expect("changes")
                .iter()
                .cloned(),
        );
        cursor = r.body["cursor"].as_str().expect("cursor").to_owned();
        if handles
            .as_ref()
            .is_some_and(|h| h.iter().all(|j| j.is_finished()))
        {
            for h in handles.take().unwrap_or_default() {
                writes += h.await.expect("writer");
            }
            done = true;
        }
        // One change for the share's creation plus one per write.
        if done && seen.len() > writes && r.body["has_more"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "feed did not catch up: {} of {}",
            seen.len(),
            writes + 1
        );
        if r.body["has_more"] == false {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (full, _) = feed(&app, &t, &share, "0", 5000).await;
    assert_eq!(full.len(), WRITERS * EACH + WRITERS * EACH.div_ceil(3) + 1);
    assert_eq!(full.len(), writes + 1);
    let ids: Vec<&str> = seen.iter().map(|c| c["id"].as_str().expect("id")).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a change was repeated");
    assert_eq!(seen, full, "the concurrent reader saw a different story");
    // Every write's events are there exactly once, in log order.
    let positions: Vec<(i64, i64)> = full
        .iter()
        .map(|c| {
            let (a, b) = c["cursor"]
                .as_str()
                .expect("cursor")
                .split_once('.')
                .expect("dot");
            (a.parse().expect("commit"), b.parse().expect("pos"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn stale_deletes_and_renames_settle_by_strategy() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    register(&app, &t, "pc", "PC").await;
    let f = upload_file(&app, &t, &share, "keep.txt", b"one").await;
    let file = f["id"].as_str().expect("id").to_owned();
    let v1 = f["version_id"].as_str().expect("v1").to_owned();
    let sid = staged(&app, &t, &share, "keep.txt", b"two").await;
    let up = app
        .post(
            "/sync/apply",
            &t,
            json!({"device_id": "pc", "share_id": share, "changes": [
                {"change_type": "updated", "resource_type": "file", "resource_id": file, "base_version_id": v1, "upload_session_id": sid}]}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.body);

    // A delete based on v1 meets v2: KEEP_BOTH keeps the edited file.
    let del = app
        .post(
            "/sync/apply",
            &t,
            json!({"device_id": "pc", "share_id": share, "conflict_resolution": "KEEP_BOTH", "changes": [
                {"change_type": "deleted", "resource_type": "file", "resource_id": file, "base_version_id": v1}]}),
        )
        .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(del.body["results"][0]["status"], "conflict");
    assert_eq!(app.get(&format!("/files/{file}"), &t).await.status, 200);

    // A stale rename under MANUAL is stored; resolving it KEEP_BOTH applies it.
    let ren = app
        .post(
            "/sync/apply",
            &t,
            json!({"device_id": "pc", "share_id": share, "changes": [
                {"change_type": "renamed", "resource_type": "file", "resource_id": file, "base_version_id": v1, "name": "kept.txt"}]}),
        )
        .await;
    ren.assert_detail(409);
    let cid = ren.body["conflict_id"].as_str().expect("cid").to_owned();
    assert_eq!(
        app.get(&format!("/files/{file}"), &t).await.body["name"],
        "keep.txt"
    );
    let res = app
        .post(
            &format!("/sync/conflicts/{cid}/resolve?resolution=KEEP_BOTH"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["resolution"], "KEEP_BOTH");
    assert_eq!(
        app.get(&format!("/files/{file}"), &t).await.body["name"],
        "kept.txt"
    );
    // Someone else's conflict is not there for another user.
    let bob = app.token("acme", "bob", "");
    app.post(
        &format!("/sync/conflicts/{cid}/resolve?resolution=SERVER_WINS"),
        &bob,
        json!({}),
    )
    .await
    .assert_detail(404);

    // A socket for an unknown device closes with 4404.
    let mut ws = ws_connect(&app, &format!("/sync/ws/ghost?token={t}")).await;
    assert_eq!(next_frame(&mut ws).await, Err(Some(4404)));
}
