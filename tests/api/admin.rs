use serde_json::json;

use crate::both_backends;
use crate::helpers::{spawn, spawn_on, Backend};

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

/// The caller's own user id (`GET /users/me`).
pub async fn my_id(app: &crate::helpers::TestApp, token: &str) -> String {
    let me = app.get("/users/me", token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    me.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn admin_endpoints_need_the_stored_admin_role_not_just_the_scope() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    // bob's token has tenant:admin (no application scope), but bob is not a
    // stored tenant admin: the first sign-in made alice the admin.
    let bob = app.token("acme", "bob", "");
    let me = app.get("/users/me", &bob).await;
    assert_eq!(me.body["is_admin"], false);
    for path in ["/admin/tenant", "/admin/users", "/admin/groups"] {
        app.get(path, &bob).await.assert_detail(403);
    }
    app.post("/admin/groups", &bob, json!({"name": "x"}))
        .await
        .assert_detail(403);
    // And alice without the scope is refused too.
    let alice_reader = app.token("acme", "alice", "files:read");
    app.get("/admin/users", &alice_reader)
        .await
        .assert_detail(403);
    assert_eq!(app.get("/admin/users", &admin).await.status, 200);
}

async fn admins_search_users_by_text_status_and_role(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    for u in ["bob", "carol", "dave"] {
        my_id(&app, &app.token("acme", u, "files:read")).await;
    }
    my_id(&app, &app.token("other", "eve", "")).await;

    let all = app.get("/admin/users", &admin).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        all.body["total"], 4,
        "only this tenant's users: {}",
        all.body
    );
    let u = &all.body["users"][0];
    for field in [
        "id",
        "email",
        "name",
        "display_name",
        "status",
        "is_admin",
        "admin_role",
        "created_at",
    ] {
        assert!(u.get(field).is_some(), "user has {field}: {u}");
    }

    let q = app.get("/admin/users?q=CAR", &admin).await;
    assert_eq!(q.body["total"], 1, "{}", q.body);
    assert_eq!(q.body["users"][0]["email"], "carol@acme.test");
    let q = app.get("/admin/users?q=acme.test", &admin).await;
    assert_eq!(q.body["total"], 4);
    let q = app.get("/admin/users?q=%25", &admin).await;
    assert_eq!(q.body["total"], 0, "LIKE wildcards are literal: {}", q.body);

    let admins = app.get("/admin/users?is_admin=true", &admin).await;
    assert_eq!(admins.body["total"], 1);
    assert_eq!(admins.body["users"][0]["admin_role"], "tenant_admin");
    let page = app
        .get("/admin/users?is_admin=false&limit=2&offset=1", &admin)
        .await;
    assert_eq!(page.body["total"], 3);
    assert_eq!(page.body["users"].as_array().unwrap().len(), 2);

    app.get("/admin/users?status=bogus", &admin)
        .await
        .assert_detail(400);
    app.get("/admin/users?limit=0", &admin)
        .await
        .assert_detail(400);
    let none = app.get("/admin/users?status=suspended", &admin).await;
    assert_eq!(none.body["total"], 0);
}

#[tokio::test]
async fn suspension_locks_a_user_out_until_activation() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let bob = app.token("acme", "bob", "files:write");
    let bob_id = my_id(&app, &bob).await;

    let s = app
        .patch(
            &format!("/admin/users/{bob_id}"),
            &admin,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["status"], "suspended");
    let r = app.get("/users/me", &bob).await;
    r.assert_detail(403);
    assert!(r.body["detail"].as_str().unwrap().contains("suspended"));
    app.get("/shares", &bob).await.assert_detail(403);
    let listed = app.get("/admin/users?status=suspended", &admin).await;
    assert_eq!(listed.body["users"][0]["id"], bob_id.as_str());

    let a = app
        .post(
            &format!("/admin/users/{bob_id}/activate"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "active");
    assert_eq!(app.get("/users/me", &bob).await.status, 200);

    let i = app
        .patch(
            &format!("/admin/users/{bob_id}"),
            &admin,
            json!({"status": "inactive"}),
        )
        .await;
    assert_eq!(i.body["status"], "inactive");
    app.get("/users/me", &bob).await.assert_detail(403);

    let bad = app
        .patch(
            &format!("/admin/users/{bob_id}"),
            &admin,
            json!({"status": "gone"}),
        )
        .await;
    assert_eq!(bad.assert_422()[0]["type"], "enum");
}

async fn admin_role_can_be_granted_and_the_last_admin_is_protected(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    let alice_id = my_id(&app, &admin).await;
    let bob = app.token("acme", "bob", "");
    let bob_id = my_id(&app, &bob).await;

    for body in [
        json!({"admin_role": null}),
        json!({"status": "suspended"}),
        json!({"status": "inactive", "admin_role": null}),
    ] {
        let r = app
            .patch(&format!("/admin/users/{alice_id}"), &admin, body)
            .await;
        r.assert_detail(409);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("last active tenant admin"),
            "{}",
            r.body
        );
    }

    let g = app
        .patch(
            &format!("/admin/users/{bob_id}"),
            &admin,
            json!({"admin_role": "tenant_admin"}),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.body["is_admin"], true);
    let me = app.get("/users/me", &bob).await;
    assert_eq!(me.body["is_admin"], true);
    assert_eq!(app.get("/admin/users", &bob).await.status, 200);

    // With a second admin, alice may step down; then bob is the last one.
    let d = app
        .patch(
            &format!("/admin/users/{alice_id}"),
            &bob,
            json!({"admin_role": null}),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["admin_role"], serde_json::Value::Null);
    app.get("/admin/users", &admin).await.assert_detail(403);
    app.patch(
        &format!("/admin/users/{bob_id}"),
        &bob,
        json!({"status": "suspended"}),
    )
    .await
    .assert_detail(409);

    let wrong = app
        .patch(
            &format!("/admin/users/{bob_id}"),
            &bob,
            json!({"admin_role": "root"}),
        )
        .await;
    wrong.assert_422();
}

#[tokio::test]
async fn users_of_other_tenants_are_not_found() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let eve_id = my_id(&app, &app.token("other", "eve", "")).await;
    app.get(&format!("/admin/users/{eve_id}"), &admin)
        .await
        .assert_detail(404);
    app.patch(
        &format!("/admin/users/{eve_id}"),
        &admin,
        json!({"status": "suspended"}),
    )
    .await
    .assert_detail(404);
    app.post(
        &format!("/admin/users/{eve_id}/activate"),
        &admin,
        json!({}),
    )
    .await
    .assert_detail(404);
    app.get("/admin/users/not-an-id", &admin)
        .await
        .assert_detail(400);
}

#[tokio::test]
async fn partner_admins_create_and_list_their_tenants() {
    use scaidrive::auth::MintRequest;
    let app = spawn().await;
    let mut req = MintRequest::new("acme", "pat");
    req.partner_id = Some("resellerco".into());
    req.scopes = vec!["partner:admin".into()];
    let partner_admin = app.mint(&req);
    let me = app.get("/users/me", &partner_admin).await;
    let partner_id = me.body["partner_id"].as_str().unwrap().to_owned();

    // A tenant admin without partner:admin is refused.
    let mut req2 = MintRequest::new("acme", "tina");
    req2.partner_id = Some("resellerco".into());
    let tenant_admin = app.mint(&req2);
    app.get(
        &format!("/admin/partners/{partner_id}/tenants"),
        &tenant_admin,
    )
    .await
    .assert_detail(403);

    let c = app
        .post(
            &format!("/admin/partners/{partner_id}/tenants"),
            &partner_admin,
            json!({"name": "Globex", "display_name": "Globex Corp", "tenant_id": "globex",
                   "settings": {"trash_retention_days": 10}}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["partner_id"], partner_id.as_str());
    assert_eq!(c.body["display_name"], "Globex Corp");
    assert_eq!(c.body["settings"]["trash_retention_days"], 10);
    let globex_id = c.body["id"].as_str().unwrap().to_owned();

    // The claim text of the partner id names it as well as our prt_ id.
    let l = app
        .get("/admin/partners/resellerco/tenants", &partner_admin)
        .await;
    assert_eq!(l.status, 200, "{}", l.body);
    assert_eq!(l.body["total"], 2, "acme and globex: {}", l.body);
    assert!(l.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == globex_id.as_str()));

    app.post(
        &format!("/admin/partners/{partner_id}/tenants"),
        &partner_admin,
        json!({"name": "Again", "tenant_id": "globex"}),
    )
    .await
    .assert_detail(409);
    app.post(
        &format!("/admin/partners/{partner_id}/tenants"),
        &partner_admin,
        json!({}),
    )
    .await
    .assert_422();

    // Another partner's id answers 404, whatever the caller's scopes.
    app.get("/admin/partners/someone-else/tenants", &partner_admin)
        .await
        .assert_detail(404);
    app.post(
        "/admin/partners/someone-else/tenants",
        &partner_admin,
        json!({"name": "x"}),
    )
    .await
    .assert_detail(404);

    // The first user to sign in to the new tenant becomes its admin; the next does not.
    let mut first = MintRequest::new("globex", "gina");
    first.partner_id = Some("resellerco".into());
    let gina = app.mint(&first);
    let me = app.get("/users/me", &gina).await;
    assert_eq!(me.body["tenant_id"], globex_id.as_str());
    assert_eq!(me.body["is_admin"], true, "{}", me.body);
    let mut second = MintRequest::new("globex", "gus");
    second.partner_id = Some("resellerco".into());
    let me = app.get("/users/me", &app.mint(&second)).await;
    assert_eq!(me.body["is_admin"], false);
    assert_eq!(app.get("/admin/tenant", &gina).await.body["name"], "Globex");
}

both_backends!(admins_search_users_by_text_status_and_role => admins_search_users_by_text_status_and_role_sqlite, admins_search_users_by_text_status_and_role_postgres);

both_backends!(admin_role_can_be_granted_and_the_last_admin_is_protected => admin_role_can_be_granted_and_the_last_admin_is_protected_sqlite, admin_role_can_be_granted_and_the_last_admin_is_protected_postgres);
