//! The same server on PostgreSQL: provisioning, writes and read-your-writes.

use serde_json::json;

use crate::helpers::{spawn_on, Backend};

#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn provisioning_and_tenant_admin_work_on_postgres() {
    let app = spawn_on(Backend::Postgres).await;
    let t = app.token("acme", "alice", "");
    let me = app.get("/users/me", &t).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["is_admin"], true);
    let p = app
        .patch(
            "/admin/tenant",
            &t,
            json!({"display_name": "Acme", "settings": {"trash_retention_days": 9}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["settings"]["trash_retention_days"], 9);
    assert_eq!(app.get("/admin/tenant", &t).await.body, p.body);
}

#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn concurrent_first_sign_ins_provision_once_on_postgres() {
    let app = spawn_on(Backend::Postgres).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let t = app.token("raceco", &format!("u{}", i % 6), "");
        let client = app.client.clone();
        let url = format!("{}/users/me", app.base);
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).bearer_auth(t).send().await.expect("send");
            (
                r.status(),
                r.json::<serde_json::Value>().await.expect("json"),
            )
        }));
    }
    let mut admins = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.expect("join");
        assert_eq!(status, 200, "{body}");
        if body["is_admin"] == true {
            admins.insert(body["id"].as_str().map(str::to_owned));
        }
    }
    assert_eq!(admins.len(), 1, "exactly one first admin");
    let report = app.state.store.verify(None).await.expect("verify");
    assert!(report.first_broken.is_none());
}

#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn concurrent_settings_patches_all_land_on_postgres() {
    let app = spawn_on(Backend::Postgres).await;
    let t = app.token("acme", "alice", "");
    app.get("/users/me", &t).await;
    let futs = (1..=16).map(|d| {
        let app = &app;
        let t = t.clone();
        async move {
            app.patch(
                "/admin/tenant",
                &t,
                json!({"settings": {"trash_retention_days": d}}),
            )
            .await
            .status
        }
    });
    for s in futures::future::join_all(futs).await {
        assert_eq!(s, 200);
    }
    let tenant_stream = app.get("/users/me", &t).await.body["tenant_id"]
        .as_str()
        .expect("tid")
        .to_owned();
    let version = app
        .state
        .store
        .stream_version(&tenant_stream)
        .await
        .expect("version");
    assert_eq!(
        version,
        Some(17),
        "provisioning + 16 distinct updates, none lost"
    );
}

#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn the_drive_works_end_to_end_on_postgres() {
    let app = spawn_on(Backend::Postgres).await;
    let t = app.token("acme", "alice", "");
    let me = app.get("/users/me", &t).await;
    let list = app.get("/shares", &t).await;
    assert_eq!(list.body["total"], 1, "personal share: {}", list.body);
    let share = app
        .post(
            "/shares",
            &t,
            json!({"name": "S", "share_type": "project", "owner_id": me.body["id"]}),
        )
        .await;
    assert_eq!(share.status, 201, "{}", share.body);
    let share = share.body["id"].as_str().expect("share").to_owned();
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
        .await
        .body["id"]
        .as_str()
        .expect("b")
        .to_owned();
    let form = reqwest::multipart::Form::new()
        .text("share_id", share.clone())
        .text("folder_id", b.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"hello postgres".to_vec()).file_name("x.txt"),
        );
    let resp = app
        .raw(reqwest::Method::POST, "/files")
        .bearer_auth(&t)
        .multipart(form)
        .send()
        .await
        .expect("send");
    let f = crate::helpers::TestApp::answer(resp).await;
    assert_eq!(f.status, 201, "{}", f.body);
    let fid = f.body["id"].as_str().expect("fid").to_owned();
    app.patch(&format!("/folders/{a}"), &t, json!({"name": "Alpha"}))
        .await;
    assert_eq!(
        app.get(&format!("/files/{fid}"), &t).await.body["path"],
        "/Alpha/B/x.txt"
    );
    app.post(
        &format!("/folders/{a}/move"),
        &t,
        json!({"target_folder_id": b}),
    )
    .await
    .assert_detail(409);
    app.delete(&format!("/folders/{a}"), &t).await;
    app.get(&format!("/files/{fid}"), &t)
        .await
        .assert_detail(410);
    assert_eq!(
        app.patch(&format!("/folders/{a}"), &t, json!({"restore": true}))
            .await
            .status,
        200
    );
    let kids = app.get(&format!("/folders/{b}/children"), &t).await;
    assert_eq!(kids.body["total"], 1, "{}", kids.body);

    let futs =
        (0..20).map(|_| app.post("/folders", &t, json!({"share_id": share, "name": "Race"})));
    let created = futures::future::join_all(futs)
        .await
        .iter()
        .filter(|a| a.status == 201)
        .count();
    assert_eq!(created, 1);

    let s = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "r.bin", "file_size": 3}),
        )
        .await;
    let sid = s.body["session_id"].as_str().expect("sid").to_owned();
    app.raw(reqwest::Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(&t)
        .body(b"abc".to_vec())
        .send()
        .await
        .expect("send");
    let done = app
        .post(&format!("/uploads/{sid}/complete"), &t, json!({}))
        .await;
    assert_eq!(done.status, 201, "{}", done.body);
    let report = app.state.store.verify(None).await.expect("verify");
    assert!(report.first_broken.is_none());
    let audit = app
        .get(
            "/audit/events?category=SHARING&q=share.created&from=2000-01-01T00:00:00Z",
            &t,
        )
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert_eq!(
        audit.body["events"].as_array().map(Vec::len),
        Some(2),
        "{}",
        audit.body
    );
    let export = app
        .raw(reqwest::Method::GET, "/audit/export?format=csv")
        .bearer_auth(&t)
        .send()
        .await
        .expect("send");
    assert_eq!(export.status(), 200);
    assert_eq!(app.get("/audit/verify", &t).await.body["ok"], true);
    let created = app.get("/events?type=share-created&limit=10", &t).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(
        created.body["events"].as_array().map(Vec::len),
        Some(2),
        "personal + project share"
    );
}
