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
