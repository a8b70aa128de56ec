use serde_json::json;

use crate::helpers::spawn;

#[tokio::test]
async fn tenant_admin_reads_and_patches_settings() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let a = app.get("/admin/tenant", &t).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["settings"]["max_file_size_bytes"], 5_368_709_120u64);
    assert_eq!(a.body["settings"]["trash_retention_days"], 30);
    assert_eq!(a.body["settings"]["version_retention_days"], 365);

    let p = app
        .patch(
            "/admin/tenant",
            &t,
            json!({"display_name": "Acme Inc", "settings": {"trash_retention_days": 7, "sharing": {"require_password": true}}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.header("x-scaidrive-position").is_some());
    assert_eq!(p.body["display_name"], "Acme Inc");
    assert_eq!(p.body["settings"]["trash_retention_days"], 7);
    assert_eq!(p.body["settings"]["sharing"]["require_password"], true);
    assert_eq!(
        p.body["settings"]["sharing"]["external_sharing_enabled"],
        true
    );

    let g = app.get("/admin/tenant", &t).await;
    assert_eq!(g.body, p.body, "read-your-writes");
}

#[tokio::test]
async fn tenant_admin_endpoints_need_the_scope() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    app.get("/admin/tenant", &admin).await;
    let reader = app.token("acme", "bob", "files:read");
    app.get("/admin/tenant", &reader).await.assert_detail(403);
    app.patch("/admin/tenant", &reader, json!({"name": "x"}))
        .await
        .assert_detail(403);
}

#[tokio::test]
async fn unknown_settings_are_rejected() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let a = app
        .patch(
            "/admin/tenant",
            &t,
            json!({"settings": {"no_such_setting": 1}}),
        )
        .await;
    let d = a.assert_422();
    assert_eq!(d[0]["loc"], json!(["body", "settings", "no_such_setting"]));
}
