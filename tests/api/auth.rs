use reqwest::Method;
use scaidrive::command::CommandContext;
use scaidrive_domain::tenancy::{User, UserCommand, UserStatus};

use crate::helpers::spawn;

#[tokio::test]
async fn a_missing_or_garbage_token_is_401_with_detail() {
    let app = spawn().await;
    app.call(Method::GET, "/users/me", None, None)
        .await
        .assert_detail(401);
    app.call(Method::GET, "/users/me", Some("not-a-jwt"), None)
        .await
        .assert_detail(401);
    let resp = app
        .raw(Method::GET, "/users/me")
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("send");
    crate::helpers::TestApp::answer(resp)
        .await
        .assert_detail(401);
}

#[tokio::test]
async fn a_token_with_a_bad_signature_is_401() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    app.get("/users/me", &parts.join("."))
        .await
        .assert_detail(401);
}

#[tokio::test]
async fn the_first_token_provisions_partner_tenant_and_user() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let a = app.get("/users/me", &t).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body["id"].as_str().is_some_and(|s| s.starts_with("usr_")));
    assert!(a.body["tenant_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("tnt_")));
    assert!(a.body["partner_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("prt_")));
    assert_eq!(a.body["email"], "alice@acme.test");
    assert_eq!(
        a.body["is_admin"], true,
        "the user who creates a tenant is its first admin"
    );
    let again = app.get("/users/me", &t).await;
    assert_eq!(again.body["id"], a.body["id"]);

    let bob = app.token("acme", "bob", "files:read");
    let b = app.get("/users/me", &bob).await;
    assert_eq!(b.body["tenant_id"], a.body["tenant_id"]);
    assert_eq!(b.body["is_admin"], false);
    assert_eq!(b.body["scopes"], serde_json::json!(["files:read"]));
}

#[tokio::test]
async fn concurrent_first_sign_ins_provision_once() {
    let app = spawn().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let t = app.token("raceco", &format!("u{}", i % 4), "");
        let client = app.client.clone();
        let url = format!("{}/users/me", app.base);
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("send"), 200);
    }
    let admins = futures::future::join_all((0..4).map(|i| {
        let t = app.token("raceco", &format!("u{i}"), "");
        let app = &app;
        async move { app.get("/users/me", &t).await.body["is_admin"].as_bool() }
    }))
    .await;
    assert_eq!(
        admins.iter().filter(|a| **a == Some(true)).count(),
        1,
        "exactly one first admin"
    );
}

#[tokio::test]
async fn a_suspended_user_is_refused_everywhere_with_403() {
    let app = spawn().await;
    let t = app.token("acme", "mallory", "");
    let me = app.get("/users/me", &t).await;
    let uid = me.body["id"].as_str().expect("id").to_owned();
    let ctx = CommandContext::system(me.body["tenant_id"].as_str().map(str::to_owned));
    app.state
        .bus
        .execute::<User, _>(&uid, &ctx, |u| {
            scaidrive_domain::Aggregate::decide(
                &u.state,
                &UserCommand::ChangeStatus {
                    status: UserStatus::Suspended,
                    at: ctx.now,
                },
            )
        })
        .await
        .expect("suspend");
    app.get("/users/me", &t).await.assert_detail(403);
    app.get("/admin/tenant", &t).await.assert_detail(403);
}

#[tokio::test]
async fn tenants_are_isolated_by_token() {
    let app = spawn().await;
    let a = app.token("tenant-a", "alice", "");
    let b = app.token("tenant-b", "alice", "");
    let ma = app.get("/users/me", &a).await;
    let mb = app.get("/users/me", &b).await;
    assert_ne!(
        ma.body["id"], mb.body["id"],
        "same subject in two tenants is two users"
    );
    assert_ne!(ma.body["tenant_id"], mb.body["tenant_id"]);
    app.patch(
        "/admin/tenant",
        &a,
        serde_json::json!({"display_name": "Tenant A"}),
    )
    .await;
    let tb = app.get("/admin/tenant", &b).await;
    assert_ne!(tb.body["display_name"], "Tenant A");
}
