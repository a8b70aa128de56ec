//! The admin gate (SPEC §3 "Admin gate (pinned)"): a token that explicitly
//! names an admin scope opens the tenant-admin endpoints and seats its user
//! as tenant admin; the implicit `tenant:admin` needs the stored role; with
//! ScaiKey configured, being first makes nobody an admin.

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{spawn_on, spawn_with, Answer, Backend, TestApp};

/// Tenant-admin endpoints a plain GET reaches.
const ADMIN_PATHS: [&str; 8] = [
    "/admin/tenant",
    "/admin/users",
    "/admin/webhooks",
    "/events",
    "/audit/events",
    "/audit/verify",
    "/quotas/tenant",
    "/quotas/usage/tenant",
];

async fn me(app: &TestApp, token: &str) -> Answer {
    let me = app.get("/users/me", token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    me
}

#[track_caller]
fn assert_status(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status.as_u16(), status, "{what}: {}", a.body);
}

async fn assert_admin(app: &TestApp, token: &str, who: &str) {
    for path in ADMIN_PATHS {
        assert_status(
            &app.get(path, token).await,
            200,
            &format!("{who} GET {path}"),
        );
    }
}

async fn assert_not_admin(app: &TestApp, token: &str, who: &str) {
    for path in ADMIN_PATHS {
        app.get(path, token).await.assert_detail(403);
    }
    assert_eq!(me(app, token).await.body["is_admin"], false, "{who}");
}

async fn explicit_admin_scopes_open_the_gate_and_seat_the_user(backend: Backend) {
    let app = spawn_on(backend).await;
    // The development issuer seats the user who creates the tenant.
    let alice = app.token("acme", "alice", "");
    assert_eq!(me(&app, &alice).await.body["is_admin"], true);

    // bob signs in as a plain user; his implicit tenant:admin (a token
    // without application scopes) is not enough without the stored role.
    let bob_reader = app.token("acme", "bob", "files:read");
    assert_eq!(me(&app, &bob_reader).await.body["is_admin"], false);
    let bob_implicit = app.token("acme", "bob", "openid");
    assert_not_admin(&app, &bob_implicit, "bob, implicit scope").await;

    // ScaiKey's word: an explicit tenant:admin opens every admin endpoint,
    // and the role is recorded for the existing user.
    let bob_admin = app.token("acme", "bob", "openid tenant:admin");
    assert_admin(&app, &bob_admin, "bob, explicit tenant:admin").await;
    let bob = me(&app, &bob_admin).await;
    assert_eq!(bob.body["is_admin"], true, "{}", bob.body);
    assert_eq!(bob.body["admin_role"], "tenant_admin");
    // Recorded: his implicit token now finds the stored role.
    assert_admin(&app, &bob_implicit, "bob, implicit scope after the seat").await;
    let bob_id = bob.body["id"].as_str().expect("id").to_owned();
    let users = app.get("/admin/users?is_admin=true", &alice).await;
    assert!(
        users.body["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["id"] == bob_id.as_str()),
        "{}",
        users.body
    );

    // A first sign-in with admin:* or * is seated at once, in the same
    // append as the provisioning.
    for (user, scope) in [("carol", "admin:*"), ("dave", "*")] {
        let t = app.token("acme", user, scope);
        let m = me(&app, &t).await;
        assert_eq!(m.body["is_admin"], true, "{user}: {}", m.body);
        assert_admin(&app, &t, user).await;
        let events = app
            .get(
                &format!("/events?stream_id={}", m.body["id"].as_str().expect("id")),
                &alice,
            )
            .await;
        let events = events.body["events"].as_array().expect("events").clone();
        assert_eq!(events.len(), 1, "{user}: one event, {events:?}");
        assert_eq!(events[0]["event_type"], "user-provisioned");
        assert_eq!(events[0]["data"]["admin_role"], "tenant_admin");
    }

    // partner:admin alone is not an explicit tenant admin scope, and a
    // user who never had an admin scope stays refused.
    let erin = app.token("acme", "erin", "");
    assert_not_admin(&app, &erin, "erin, implicit scope").await;
    let fred = app.token("acme", "fred", "files:write");
    assert_not_admin(&app, &fred, "fred, files:write").await;
}

both_backends!(explicit_admin_scopes_open_the_gate_and_seat_the_user
    => explicit_admin_scopes_open_the_gate_and_seat_the_user_sqlite,
       explicit_admin_scopes_open_the_gate_and_seat_the_user_postgres);

// ---------------------------------------------------------------------------
// With ScaiKey configured

const RSA_PRIVATE_PEM: &[u8] = include_bytes!("../../src/auth/testdata/rsa-private.pem");
const RSA_PUBLIC_JWK: &str = include_str!("../../src/auth/testdata/rsa-public.jwk.json");

/// ScaiKey played by a JWKS endpoint on port 0 and its signing key.
struct FakeScaiKey {
    base: String,
    key: EncodingKey,
    kid: String,
}

impl FakeScaiKey {
    async fn start() -> FakeScaiKey {
        let jwk: Value = serde_json::from_str(RSA_PUBLIC_JWK).expect("jwk");
        let kid = jwk["kid"].as_str().expect("kid").to_owned();
        let jwks = json!({ "keys": [jwk] });
        let router = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeScaiKey {
            base: format!("http://{addr}"),
            key: EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM).expect("key"),
            kid,
        }
    }

    fn token(&self, tenant: &str, user: &str, scope: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let claims = json!({
            "iss": self.base, "sub": user, "tenant_id": tenant, "scope": scope,
            "email": format!("{user}@{tenant}.test"), "name": user,
            "exp": chrono::Utc::now().timestamp() + 3600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }
}

async fn with_scaikey_the_first_user_is_not_an_admin(backend: Backend) {
    let scaikey = FakeScaiKey::start().await;
    let url = url::Url::parse(&scaikey.base).expect("url");
    let app = spawn_with(backend, |c| c.scaikey_url = Some(url)).await;
    assert!(!app.state.auth.is_development());

    // The user whose sign-in creates the tenant: no admin, implicit scope or not.
    let ann = scaikey.token("globex", "ann", "");
    assert_not_admin(&app, &ann, "ann, first user").await;
    let bea = scaikey.token("globex", "bea", "openid files:write");
    assert_not_admin(&app, &bea, "bea").await;

    // An explicit tenant:admin from ScaiKey seats its user at first sign-in.
    let cid = scaikey.token("globex", "cid", "openid tenant:admin");
    assert_admin(&app, &cid, "cid, explicit tenant:admin").await;
    assert_eq!(me(&app, &cid).await.body["is_admin"], true);

    // ann is still refused; once an admin grants her the role, her implicit
    // token passes.
    assert_not_admin(&app, &ann, "ann, before the grant").await;
    let ann_id = me(&app, &ann).await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let granted = app
        .patch(
            &format!("/admin/users/{ann_id}"),
            &cid,
            json!({"admin_role": "tenant_admin"}),
        )
        .await;
    assert_status(&granted, 200, "grant");
    assert_admin(&app, &ann, "ann, after the grant").await;
}

both_backends!(with_scaikey_the_first_user_is_not_an_admin
    => with_scaikey_the_first_user_is_not_an_admin_sqlite,
       with_scaikey_the_first_user_is_not_an_admin_postgres);
