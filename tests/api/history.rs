//! Time travel: resources as they were at a log position or a timestamp.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn, TestApp};

#[tokio::test]
async fn files_folders_and_shares_can_be_read_as_they_were() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let me = app.get("/users/me", &t).await;
    let share = app
        .post(
            "/shares",
            &t,
            json!({"name": "Before", "share_type": "project", "owner_id": me.body["id"]}),
        )
        .await;
    let sid = share.body["id"].as_str().expect("share").to_owned();
    let folder = app
        .post("/folders", &t, json!({"share_id": sid, "name": "Docs"}))
        .await;
    let fid = folder.body["id"].as_str().expect("folder").to_owned();
    let form = reqwest::multipart::Form::new()
        .text("share_id", sid.clone())
        .text("folder_id", fid.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"one".to_vec()).file_name("a.txt"),
        );
    let resp = app
        .raw(Method::POST, "/files")
        .bearer_auth(&t)
        .multipart(form)
        .send()
        .await
        .expect("send");
    let file = TestApp::answer(resp).await;
    let file_id = file.body["id"].as_str().expect("file").to_owned();
    let after_create = file
        .header("x-scaidrive-position")
        .expect("position")
        .to_owned();
    let moment = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // Later: rename, new version, rename the share.
    app.patch(&format!("/files/{file_id}"), &t, json!({"name": "b.txt"}))
        .await;
    let s = app.post("/uploads", &t, json!({"share_id": sid, "file_name": "b.txt", "file_size": 3, "replace_file_id": file_id})).await;
    let session = s.body["session_id"].as_str().expect("sid").to_owned();
    app.raw(Method::PUT, &format!("/uploads/{session}/chunks/0"))
        .bearer_auth(&t)
        .body(b"two".to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(
        app.post(&format!("/uploads/{session}/complete"), &t, json!({}))
            .await
            .status,
        201
    );
    app.patch(&format!("/shares/{sid}"), &t, json!({"name": "After"}))
        .await;

    let then = app
        .get(&format!("/history/file/{file_id}?at={after_create}"), &t)
        .await;
    assert_eq!(then.status, 200, "{}", then.body);
    assert_eq!(then.body["name"], "a.txt");
    assert_eq!(then.body["version"], 1);
    let now = app.get(&format!("/history/file/{file_id}"), &t).await;
    assert_eq!(now.body["name"], "b.txt");
    assert_eq!(now.body["version"], 2);
    let by_time = app
        .get(
            &format!("/history/file/{file_id}?at={}", urlencode(&moment)),
            &t,
        )
        .await;
    assert_eq!(by_time.body["name"], "a.txt", "{}", by_time.body);

    let listing = app
        .get(&format!("/history/folder/{fid}?at={after_create}"), &t)
        .await;
    assert_eq!(
        listing.body["items"],
        json!([{"id": file_id, "name": "a.txt", "type": "file"}])
    );
    let before_file = app
        .get(
            &format!(
                "/history/folder/{fid}?at={}",
                folder.header("x-scaidrive-position").expect("pos")
            ),
            &t,
        )
        .await;
    assert_eq!(before_file.body["total"], 0);
    let old_share = app
        .get(&format!("/history/share/{sid}?at={after_create}"), &t)
        .await;
    assert_eq!(old_share.body["name"], "Before");

    app.get(&format!("/history/file/{file_id}?at=yesterday"), &t)
        .await
        .assert_detail(400);
    app.get(&format!("/history/link/{file_id}"), &t)
        .await
        .assert_detail(400);
    app.get(&format!("/history/file/{file_id}?at=1.1"), &t)
        .await
        .assert_detail(404);
    let other = app.token("globex", "gina", "");
    app.get(&format!("/history/file/{file_id}"), &other)
        .await
        .assert_detail(404);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
