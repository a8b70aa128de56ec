//! Shares, folders, files, content and resumable uploads end to end.

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{spawn, TestApp};

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) async fn new_share(app: &TestApp, t: &str, name: &str) -> String {
    let me = app.get("/users/me", t).await;
    let a = app
        .post(
            "/shares",
            t,
            json!({"name": name, "share_type": "project", "owner_id": me.body["id"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn upload(
    app: &TestApp,
    t: &str,
    share: &str,
    folder: Option<&str>,
    name: &str,
    data: Vec<u8>,
) -> crate::helpers::Answer {
    upload_as(app, t, share, folder, name, "text/plain", data).await
}

/// `POST /files` (multipart) with a MIME type of the caller's choosing.
pub(crate) async fn upload_as(
    app: &TestApp,
    t: &str,
    share: &str,
    folder: Option<&str>,
    name: &str,
    mime: &str,
    data: Vec<u8>,
) -> crate::helpers::Answer {
    let mut form = reqwest::multipart::Form::new()
        .text("share_id", share.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(data)
                .file_name(name.to_owned())
                .mime_str(mime)
                .expect("mime"),
        );
    if let Some(f) = folder {
        form = form.text("folder_id", f.to_owned());
    }
    let resp = app
        .raw(Method::POST, "/files")
        .bearer_auth(t)
        .multipart(form)
        .send()
        .await
        .expect("send");
    TestApp::answer(resp).await
}

async fn download(
    app: &TestApp,
    t: &str,
    path: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.raw(Method::GET, path).bearer_auth(t);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn a_personal_share_exists_after_first_sign_in() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let list = app.get("/shares", &t).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["shares"][0]["share_type"], "personal");
    assert_eq!(
        list.body["shares"][0]["owner_id"],
        app.get("/users/me", &t).await.body["id"]
    );
}

#[tokio::test]
async fn shares_are_created_listed_renamed_trashed_and_restored() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let id = new_share(&app, &t, "Team").await;
    let g = app.get(&format!("/shares/{id}"), &t).await;
    assert_eq!(g.body["name"], "Team");
    assert_eq!(g.body["used_bytes"], 0);
    let p = app
        .patch(
            &format!("/shares/{id}"),
            &t,
            json!({"name": "Team 2", "description": "d"}),
        )
        .await;
    assert_eq!(p.body["name"], "Team 2");
    assert_eq!(app.delete(&format!("/shares/{id}"), &t).await.status, 204);
    app.get(&format!("/shares/{id}"), &t)
        .await
        .assert_detail(410);
    app.delete(&format!("/shares/{id}"), &t)
        .await
        .assert_detail(410);
    assert_eq!(
        app.get("/shares", &t).await.body["total"],
        1,
        "trashed shares are hidden by default"
    );
    assert_eq!(
        app.get("/shares?include_trashed=true", &t).await.body["total"],
        2
    );
    let r = app
        .post(&format!("/shares/{id}/restore"), &t, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.get(&format!("/shares/{id}"), &t).await.status, 200);

    // Another (non-admin) user of the tenant does not see it at all.
    let bob = app.token("acme", "bob", "");
    app.get(&format!("/shares/{id}"), &bob)
        .await
        .assert_detail(404);
    app.delete(&format!("/shares/{id}"), &bob)
        .await
        .assert_detail(404);
    // Nor does a user of another tenant.
    let eve = app.token("other", "eve", "");
    app.get(&format!("/shares/{id}"), &eve)
        .await
        .assert_detail(404);
    app.get("/shares/not-an-id", &t).await.assert_detail(400);
    let bad = app
        .post("/shares", &t, json!({"name": "", "share_type": "nope"}))
        .await;
    let d = bad.assert_422();
    assert!(d
        .iter()
        .any(|e| e["loc"] == json!(["body", "owner_id"]) && e["type"] == "missing"));
}

#[tokio::test]
async fn folder_names_are_unique_case_insensitively_and_nfc_normalised() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let a = app
        .post(
            "/folders",
            &t,
            json!({"share_id": share, "name": "Caf\u{e9}"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["path"], "/Caf\u{e9}");
    let dup = app
        .post(
            "/folders",
            &t,
            json!({"share_id": share, "name": "CAFE\u{301}"}),
        )
        .await;
    dup.assert_detail(409);
    assert_eq!(dup.body["code"], "NAME_CONFLICT");
    for bad in ["", ".", "..", "a/b"] {
        app.post("/folders", &t, json!({"share_id": share, "name": bad}))
            .await
            .assert_422();
    }
    let long = "x".repeat(256);
    app.post("/folders", &t, json!({"share_id": share, "name": long}))
        .await
        .assert_422();
}

#[tokio::test]
async fn fifty_concurrent_creates_of_one_name_yield_exactly_one_folder() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let futs =
        (0..50).map(|_| app.post("/folders", &t, json!({"share_id": share, "name": "Same"})));
    let statuses: Vec<u16> = futures::future::join_all(futs)
        .await
        .iter()
        .map(|a| a.status.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(
        app.get(&format!("/shares/{share}/children"), &t).await.body["total"],
        1
    );
}

/// `Prefer: return=minimal`: the write answers its id and position without
/// waiting for the read models; the position sent back reads it.
#[tokio::test]
async fn writes_answer_minimally_when_asked() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let minimal = |method: Method, path: &str| {
        app.raw(method, path)
            .bearer_auth(&t)
            .header("Prefer", "respond-async, return=minimal")
    };
    let send = |req: reqwest::RequestBuilder| async move {
        TestApp::answer(req.send().await.expect("send")).await
    };
    let created =
        send(minimal(Method::POST, "/folders").json(&json!({"share_id": share, "name": "Quick"})))
            .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("preference-applied"), Some("return=minimal"));
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body, json!({ "id": id }));
    let position = created.header("x-scaidrive-position").expect("position");
    let read = send(
        app.raw(Method::GET, &format!("/folders/{id}"))
            .bearer_auth(&t)
            .header("X-ScaiDrive-Position", position),
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "Quick");
    assert_eq!(read.body["path"], "/Quick");

    // Errors are the same as ever, and change nothing.
    let taken =
        send(minimal(Method::POST, "/folders").json(&json!({"share_id": share, "name": "quick"})))
            .await;
    taken.assert_detail(409);
    assert_eq!(taken.header("preference-applied"), None);

    let trashed = send(minimal(Method::DELETE, &format!("/folders/{id}"))).await;
    assert_eq!(trashed.status, 204);
    assert_eq!(trashed.header("preference-applied"), Some("return=minimal"));
    assert!(trashed.header("x-scaidrive-position").is_some());

    // Without the preference: the whole item, and no Preference-Applied.
    let full = app
        .post("/folders", &t, json!({"share_id": share, "name": "Full"}))
        .await;
    assert_eq!(full.status, 201);
    assert_eq!(full.body["path"], "/Full");
    assert_eq!(full.header("preference-applied"), None);
}

/// Two folders side by side, as ids (through the API: the read models have them).
async fn two_folders(app: &TestApp, t: &str, share: &str, run: usize) -> (String, String) {
    let mut ids = Vec::new();
    for name in ["A", "B"] {
        let f = app
            .post(
                "/folders",
                t,
                json!({"share_id": share, "name": format!("{name}{run}")}),
            )
            .await;
        assert_eq!(f.status, 201, "{}", f.body);
        ids.push(f.body["id"].as_str().expect("id").to_owned());
    }
    (ids.remove(0), ids.remove(0))
}

/// The cycle check reads the folders' own streams, not the read model: a
/// move that has committed but is not yet projected still stops the move
/// that would close a loop with it.
#[tokio::test]
async fn a_move_not_yet_projected_still_stops_a_cycle() {
    use scaidrive::command::drive::{move_folder, Target};
    use scaidrive::command::CommandContext;
    use scaidrive_domain::id::{FolderId, ShareId};

    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let (a, b) = two_folders(&app, &t, &share, 0).await;
    let tenant = app.get("/users/me", &t).await.body["tenant_id"]
        .as_str()
        .expect("tenant")
        .to_owned();
    let ctx = CommandContext::system(Some(tenant));
    let share_id: ShareId = share.parse().expect("share id");
    let (a_id, b_id): (FolderId, FolderId) = (a.parse().expect("a"), b.parse().expect("b"));
    let into = |folder| Target {
        share_id,
        folder_id: Some(folder),
        parent_path: "/".into(),
    };
    // B into A, straight on the bus: nothing waits for the read models.
    move_folder(&app.state.bus, &ctx, b_id, into(a_id), "/B0", &[], &[])
        .await
        .expect("B into A");
    // A into B would close the loop, whatever the read models show yet.
    let err = move_folder(&app.state.bus, &ctx, a_id, into(b_id), "/A0", &[], &[])
        .await
        .expect_err("A into B must be refused");
    assert!(err.to_string().contains("own subtree"), "{err}");
}

/// Crossing moves sent at the same time: at most one of them lands, and the
/// tree is still a tree.
#[tokio::test]
async fn crossing_moves_never_make_a_cycle() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    for run in 0..10 {
        let (a, b) = two_folders(&app, &t, &share, run).await;
        let (a_move, b_move) = (format!("/folders/{a}/move"), format!("/folders/{b}/move"));
        let (ab, ba) = tokio::join!(
            app.post(&a_move, &t, json!({"target_folder_id": b})),
            app.post(&b_move, &t, json!({"target_folder_id": a})),
        );
        let landed = [ab.status, ba.status].iter().filter(|s| **s == 200).count();
        assert!(
            landed <= 1,
            "both crossing moves landed: {} / {}",
            ab.body,
            ba.body
        );
        for refused in [&ab, &ba].into_iter().filter(|r| r.status != 200) {
            refused.assert_detail(409);
        }
        let parent_of = |id: &str| {
            let (app, t, id) = (&app, &t, id.to_owned());
            async move { app.get(&format!("/folders/{id}"), t).await.body["parent_id"].clone() }
        };
        let (pa, pb) = (parent_of(&a).await, parent_of(&b).await);
        assert!(
            !(pa == json!(b) && pb == json!(a)),
            "A and B are each other's parent"
        );
    }
}

#[tokio::test]
async fn folders_rename_move_trash_restore_and_refuse_cycles() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let a = app
        .post("/folders", &t, json!({"share_id": share, "name": "A"}))
        .await
        .body["id"]
        .as_str()
        .expect("a")
        .to_owned();
    let b = app
        .post(
            "/folders",
            &t,
            json!({"share_id": share, "parent_id": a, "name": "B"}),
        )
        .await;
    assert_eq!(b.body["path"], "/A/B");
    let b = b.body["id"].as_str().expect("b").to_owned();
    let f = upload(&app, &t, &share, Some(&b), "x.txt", b"hello".to_vec()).await;
    assert_eq!(f.body["path"], "/A/B/x.txt");
    let fid = f.body["id"].as_str().expect("f").to_owned();

    let kids = app.get(&format!("/folders/{a}/children"), &t).await;
    assert_eq!(kids.body["items"][0]["name"], "B");
    assert_eq!(kids.body["items"][0]["type"], "folder");
    assert_eq!(kids.body["path"], "/A");

    // Renaming a folder moves every path below it.
    let r = app
        .patch(&format!("/folders/{a}"), &t, json!({"name": "Alpha"}))
        .await;
    assert_eq!(r.body["path"], "/Alpha");
    assert_eq!(
        app.get(&format!("/files/{fid}"), &t).await.body["path"],
        "/Alpha/B/x.txt"
    );

    // No cycles.
    app.post(
        &format!("/folders/{a}/move"),
        &t,
        json!({"target_folder_id": b}),
    )
    .await
    .assert_detail(409);
    app.post(
        &format!("/folders/{a}/move"),
        &t,
        json!({"target_folder_id": a}),
    )
    .await
    .assert_detail(409);
    let m = app
        .post(
            &format!("/folders/{b}/move"),
            &t,
            json!({"target_share_id": share}),
        )
        .await;
    assert_eq!(m.body["path"], "/B");
    assert_eq!(
        app.get(&format!("/files/{fid}"), &t).await.body["path"],
        "/B/x.txt"
    );

    // Trash a subtree: the folder and everything below answer 410.
    assert_eq!(app.delete(&format!("/folders/{b}"), &t).await.status, 204);
    app.get(&format!("/folders/{b}"), &t)
        .await
        .assert_detail(410);
    app.get(&format!("/files/{fid}"), &t)
        .await
        .assert_detail(410);
    let trash = app.get(&format!("/shares/{share}/trash"), &t).await;
    assert_eq!(
        trash.body["total"], 1,
        "only the trashed folder itself is listed: {}",
        trash.body
    );
    // Its name is free again; restoring into a taken name is a conflict.
    let taken = app
        .post("/folders", &t, json!({"share_id": share, "name": "b"}))
        .await;
    assert_eq!(taken.status, 201);
    app.patch(&format!("/folders/{b}"), &t, json!({"restore": true}))
        .await
        .assert_detail(409);
    app.delete(
        &format!("/folders/{}", taken.body["id"].as_str().expect("id")),
        &t,
    )
    .await;
    let back = app
        .patch(&format!("/folders/{b}"), &t, json!({"restore": true}))
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(app.get(&format!("/files/{fid}"), &t).await.status, 200);

    // Permanent delete removes the subtree.
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/folders/{b}?permanent=true"),
            Some(&t),
            None
        )
        .await
        .status,
        204
    );
    app.get(&format!("/folders/{b}"), &t)
        .await
        .assert_detail(404);
    app.get(&format!("/files/{fid}"), &t)
        .await
        .assert_detail(404);
}

#[tokio::test]
async fn files_upload_download_with_ranges_and_keep_versions() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let f = upload(&app, &t, &share, None, "data.bin", data.clone()).await;
    assert_eq!(f.status, 201, "{}", f.body);
    assert_eq!(f.body["size"], 300_000);
    assert_eq!(f.body["checksum_sha256"], sha(&data));
    assert_eq!(f.body["version"], 1);
    let id = f.body["id"].as_str().expect("id").to_owned();

    let (status, headers, body) = download(&app, &t, &format!("/files/{id}/content"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, data);
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers["content-disposition"]
        .to_str()
        .expect("cd")
        .starts_with("attachment"));
    let (status, headers, body) = download(
        &app,
        &t,
        &format!("/files/{id}/content"),
        Some("bytes=100-199"),
    )
    .await;
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], "bytes 100-199/300000");
    assert_eq!(body, &data[100..200]);
    let (_, _, tail) = download(&app, &t, &format!("/files/{id}/content"), Some("bytes=-10")).await;
    assert_eq!(tail, &data[299_990..]);
    let (status, _, _) = download(
        &app,
        &t,
        &format!("/files/{id}/content"),
        Some("bytes=400000-"),
    )
    .await;
    assert_eq!(status, 416);

    // Same name again → conflict; rename, copy, move.
    upload(&app, &t, &share, None, "DATA.bin", b"x".to_vec())
        .await
        .assert_detail(409);
    let r = app
        .patch(&format!("/files/{id}"), &t, json!({"name": "renamed.bin"}))
        .await;
    assert_eq!(r.body["name"], "renamed.bin");
    let folder = app
        .post("/folders", &t, json!({"share_id": share, "name": "F"}))
        .await
        .body["id"]
        .as_str()
        .expect("f")
        .to_owned();
    let c = app
        .post(
            &format!("/files/{id}/copy"),
            &t,
            json!({"target_folder_id": folder}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["path"], "/F/renamed.bin");
    assert_ne!(c.body["id"], r.body["id"]);
    let (_, _, copied) = download(
        &app,
        &t,
        &format!("/files/{}/content", c.body["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!(copied, data);
    app.post(
        &format!("/files/{id}/move"),
        &t,
        json!({"target_folder_id": folder}),
    )
    .await
    .assert_detail(409);
    let m = app
        .post(
            &format!("/files/{id}/move"),
            &t,
            json!({"target_folder_id": folder, "new_name": "moved.bin"}),
        )
        .await;
    assert_eq!(m.body["path"], "/F/moved.bin");

    // Trash and restore.
    assert_eq!(app.delete(&format!("/files/{id}"), &t).await.status, 204);
    app.get(&format!("/files/{id}"), &t)
        .await
        .assert_detail(410);
    assert_eq!(
        app.patch(&format!("/files/{id}"), &t, json!({"restore": true}))
            .await
            .status,
        200
    );
    assert_eq!(app.get(&format!("/files/{id}"), &t).await.status, 200);
}

#[tokio::test]
async fn resumable_uploads_send_only_missing_chunks_and_version_files() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let cs = 65_536usize;
    let data: Vec<u8> = (0..(cs * 3 + 1000)).map(|i| (i * 7 % 251) as u8).collect();
    let hashes: Vec<String> = data.chunks(cs).map(sha).collect();
    let s = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "big.bin", "file_size": data.len(), "chunk_size": cs,
                   "checksum_sha256": sha(&data), "chunk_hashes": hashes}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    assert_eq!(s.body["total_chunks"], 4);
    assert_eq!(s.body["missing_chunks"], json!([0, 1, 2, 3]));
    let sid = s.body["session_id"].as_str().expect("sid").to_owned();

    // Completing early is a conflict.
    app.post(&format!("/uploads/{sid}/complete"), &t, json!({}))
        .await
        .assert_detail(409);
    // Out of order, with a checksum header; a wrong one is refused.
    let bad = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/1"))
        .bearer_auth(&t)
        .header("x-chunk-sha256", sha(b"nope"))
        .body(data[cs..2 * cs].to_vec())
        .send()
        .await
        .expect("send");
    TestApp::answer(bad).await.assert_detail(400);
    for i in [3usize, 1, 0, 2] {
        let part = data[i * cs..((i + 1) * cs).min(data.len())].to_vec();
        let resp = app
            .raw(Method::PUT, &format!("/uploads/{sid}/chunks/{i}"))
            .bearer_auth(&t)
            .header("x-chunk-sha256", sha(&part))
            .body(part)
            .send()
            .await
            .expect("send");
        let a = TestApp::answer(resp).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["index"], i);
    }
    let prog = app.get(&format!("/uploads/{sid}"), &t).await;
    assert_eq!(prog.body["received_chunks"], 4);
    assert_eq!(prog.body["status"], "active");
    let done = app
        .post(&format!("/uploads/{sid}/complete"), &t, json!({}))
        .await;
    assert_eq!(done.status, 201, "{}", done.body);
    assert_eq!(done.body["checksum_sha256"], sha(&data));
    let fid = done.body["id"].as_str().expect("fid").to_owned();
    assert_eq!(
        app.get(&format!("/uploads/{sid}"), &t).await.body["status"],
        "completed"
    );

    // Delta sync: a new version that changes one chunk sends only that chunk.
    let mut v2 = data.clone();
    v2[cs + 5] ^= 0xff;
    let hashes2: Vec<String> = v2.chunks(cs).map(sha).collect();
    let s2 = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "big.bin", "file_size": v2.len(), "chunk_size": cs,
                   "replace_file_id": fid, "base_version_id": done.body["version_id"], "chunk_hashes": hashes2}),
        )
        .await;
    assert_eq!(s2.body["missing_chunks"], json!([1]), "{}", s2.body);
    let sid2 = s2.body["session_id"].as_str().expect("sid").to_owned();
    let resp = app
        .raw(Method::PUT, &format!("/uploads/{sid2}/chunks/1"))
        .bearer_auth(&t)
        .body(v2[cs..2 * cs].to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let v = app
        .post(&format!("/uploads/{sid2}/complete"), &t, json!({}))
        .await;
    assert_eq!(v.status, 201, "{}", v.body);
    assert_eq!(v.body["version"], 2);
    assert_eq!(v.body["id"], fid);
    let (_, _, body) = download(&app, &t, &format!("/files/{fid}/content"), None).await;
    assert_eq!(body, v2);
    let (_, _, old) = download(&app, &t, &format!("/files/{fid}/content?version=1"), None).await;
    assert_eq!(old, data);

    // Identical re-upload needs no chunk at all.
    let s3 = app
        .post("/uploads", &t, json!({"share_id": share, "file_name": "copy.bin", "file_size": v2.len(), "chunk_size": cs,
                                   "chunk_hashes": v2.chunks(cs).map(sha).collect::<Vec<_>>()}))
        .await;
    assert_eq!(s3.body["missing_chunks"], json!([]));
    let sid3 = s3.body["session_id"].as_str().expect("sid");
    assert_eq!(
        app.post(&format!("/uploads/{sid3}/complete"), &t, json!({}))
            .await
            .status,
        201
    );

    // Restoring version 1 adds version 3 with v1's bytes; history stays.
    let rv = app
        .post(&format!("/files/{fid}/versions/1/restore"), &t, json!({}))
        .await;
    assert_eq!(rv.status, 201, "{}", rv.body);
    assert_eq!(rv.body["version"], 3);
    let versions = app.get(&format!("/files/{fid}/versions"), &t).await;
    assert_eq!(versions.body["total"], 3);
    let (_, _, now) = download(&app, &t, &format!("/files/{fid}/content"), None).await;
    assert_eq!(now, data);

    // A stale base version is a conflict.
    let stale = app
        .post("/uploads", &t, json!({"share_id": share, "file_name": "big.bin", "file_size": 1, "chunk_size": cs,
                                   "replace_file_id": fid, "base_version_id": done.body["version_id"]}))
        .await;
    let ss = stale.body["session_id"].as_str().expect("sid").to_owned();
    app.raw(Method::PUT, &format!("/uploads/{ss}/chunks/0"))
        .bearer_auth(&t)
        .body(vec![1u8])
        .send()
        .await
        .expect("send");
    app.post(&format!("/uploads/{ss}/complete"), &t, json!({}))
        .await
        .assert_detail(409);
}

#[tokio::test]
async fn upload_sessions_refuse_bad_input_abort_and_limits() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    // Checksum mismatch on complete.
    let s = app
        .post("/uploads", &t, json!({"share_id": share, "file_name": "a", "file_size": 3, "checksum_sha256": sha(b"xyz")}))
        .await;
    let sid = s.body["session_id"].as_str().expect("sid").to_owned();
    app.raw(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(&t)
        .body(b"abc".to_vec())
        .send()
        .await
        .expect("send");
    let c = app
        .post(&format!("/uploads/{sid}/complete"), &t, json!({}))
        .await;
    c.assert_detail(400);
    assert_eq!(c.body["code"], "CHECKSUM_MISMATCH");
    // Wrong chunk size, out-of-range index.
    let r = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(&t)
        .body(b"abcd".to_vec())
        .send()
        .await
        .expect("send");
    TestApp::answer(r).await.assert_detail(400);
    let r = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/9"))
        .bearer_auth(&t)
        .body(b"a".to_vec())
        .send()
        .await
        .expect("send");
    TestApp::answer(r).await.assert_detail(400);
    // Abort → 410 afterwards.
    assert_eq!(app.delete(&format!("/uploads/{sid}"), &t).await.status, 204);
    app.post(&format!("/uploads/{sid}/complete"), &t, json!({}))
        .await
        .assert_detail(410);
    let r = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(&t)
        .body(b"abc".to_vec())
        .send()
        .await
        .expect("send");
    TestApp::answer(r).await.assert_detail(410);
    // Over the tenant's per-file cap → 413, for sessions and simple uploads.
    app.patch(
        "/admin/tenant",
        &t,
        json!({"settings": {"max_file_size_bytes": 1000}}),
    )
    .await;
    app.post(
        "/uploads",
        &t,
        json!({"share_id": share, "file_name": "big", "file_size": 5000}),
    )
    .await
    .assert_detail(413);
    upload(&app, &t, &share, None, "big.txt", vec![0u8; 5000])
        .await
        .assert_detail(413);
    // Bad chunk size and hash list → 422; someone else's session → 404.
    app.post(
        "/uploads",
        &t,
        json!({"share_id": share, "file_name": "x", "file_size": 10, "chunk_size": 1000}),
    )
    .await
    .assert_422();
    app.post(
        "/uploads",
        &t,
        json!({"share_id": share, "file_name": "x", "file_size": 10, "chunk_hashes": ["zz"]}),
    )
    .await
    .assert_422();
    let s = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "mine", "file_size": 1}),
        )
        .await;
    let bob = app.token("acme", "bob", "");
    app.get(
        &format!("/uploads/{}", s.body["session_id"].as_str().expect("sid")),
        &bob,
    )
    .await
    .assert_detail(404);
    app.get("/uploads/garbage", &t).await.assert_detail(400);
}

#[tokio::test]
async fn read_scoped_tokens_cannot_write() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    app.get("/users/me", &admin).await;
    let reader = app.token("acme", "alice", "files:read");
    let shares = app.get("/shares", &reader).await;
    assert_eq!(shares.status, 200);
    let personal = shares.body["shares"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.post(
        "/folders",
        &reader,
        json!({"share_id": personal, "name": "x"}),
    )
    .await
    .assert_detail(403);
    let _: Value = app
        .get(&format!("/shares/{personal}/children"), &reader)
        .await
        .body;
}

#[tokio::test]
async fn purged_content_is_collected_and_live_content_is_kept() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    let keep = upload(&app, &t, &share, None, "keep.txt", b"keep me".to_vec()).await;
    let gone = upload(&app, &t, &share, None, "gone.txt", b"delete me".to_vec()).await;
    let gone_id = gone.body["id"].as_str().expect("id");
    let tenant = app.get("/users/me", &t).await.body["tenant_id"]
        .as_str()
        .expect("tenant")
        .to_owned();
    // Trash alone keeps the bytes (the file can come back).
    app.delete(&format!("/files/{gone_id}"), &t).await;
    let zero = std::time::Duration::ZERO;
    let s = &app.state;
    let r = scaidrive::maintenance::collect_garbage(&s.db, &s.bus, &s.blob, zero)
        .await
        .expect("gc");
    assert_eq!(r.chunks_deleted, 0);
    let resp = app
        .call(
            Method::DELETE,
            &format!("/files/{gone_id}?permanent=true"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(resp.status, 204);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = scaidrive::maintenance::collect_garbage(&s.db, &s.bus, &s.blob, zero)
        .await
        .expect("gc");
    assert_eq!(r.chunks_deleted, 1, "{r:?}");
    assert!(!s
        .blob
        .has_chunk(&tenant, &sha(b"delete me"))
        .await
        .expect("head"));
    assert!(s
        .blob
        .has_chunk(&tenant, &sha(b"keep me"))
        .await
        .expect("head"));
    let (_, _, body) = download(
        &app,
        &t,
        &format!("/files/{}/content", keep.body["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!(body, b"keep me");
}

#[tokio::test]
async fn content_types_that_are_not_media_types_are_refused_or_replaced() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;

    // A multipart part may carry any header: it is stored as a byte stream.
    let boundary = "sd-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"share_id\"\r\n\r\n{share}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"odd.bin\"\r\n\
         Content-Type: 0\r\n\r\nhello\r\n--{boundary}--\r\n"
    );
    let resp = app
        .raw(Method::POST, "/files")
        .bearer_auth(&t)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("send");
    let up = TestApp::answer(resp).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(
        up.body["mime_type"], "application/octet-stream",
        "{}",
        up.body
    );
    let file = up.body["id"].as_str().expect("id");
    let (status, headers, bytes) =
        download(&app, &t, &format!("/files/{file}/content"), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(bytes, b"hello");

    // Named explicitly for a resumable upload, it must be one.
    let refused = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "x.txt", "file_size": 5, "mime_type": "0"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.body["detail"][0]["loc"],
        json!(["body", "mime_type"])
    );
    let ok = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "x.md", "file_size": 5,
                   "mime_type": "text/markdown; charset=utf-8"}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
}
