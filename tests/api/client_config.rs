//! `GET /config`: the features this process really has on, and the caller's
//! tenant limits when a valid token comes along (else the defaults).

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{spawn_with, Answer, Backend, TestApp};

async fn config(app: &TestApp, token: Option<&str>) -> Answer {
    let c = app.call(Method::GET, "/config", token, None).await;
    assert_eq!(c.status, 200, "{}", c.body);
    c
}

#[track_caller]
fn assert_defaults(c: &Answer) {
    assert_eq!(c.body["tenant_id"], json!(null), "{}", c.body);
    assert_eq!(c.body["features"]["external_sharing"], true);
    let limits = &c.body["limits"];
    assert_eq!(
        limits["max_file_size_bytes"], 5_368_709_120u64,
        "{}",
        c.body
    );
    assert_eq!(limits["max_upload_chunk_size_bytes"], 5_242_880);
    assert_eq!(
        limits["rate_limits"],
        json!({"per_token": 1000, "per_user": 4321, "per_tenant": 50000, "window_seconds": 60})
    );
}

async fn config_reflects_the_process_and_the_callers_tenant(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.smtp_url = Some("smtp://127.0.0.1:2525".into());
        c.rate_limits.per_user = 4321;
    })
    .await;

    let anonymous = config(&app, None).await;
    assert_eq!(
        anonymous.body["features"],
        json!({
            "semantic_search": app.state.semantic.is_ok(),
            "external_sharing": true,
            "smb_connector": true,
            "sharepoint_connector": false,
            "search": true,
            "kafka": false,
            "redis": false,
            "smtp": true,
            "connectors": true,
        })
    );
    assert!(anonymous.body["version"].is_string());
    assert_defaults(&anonymous);

    // The tenant's own settings show for its users.
    let admin = app.token("acme", "alice", "");
    let patched = app
        .patch(
            "/admin/tenant",
            &admin,
            json!({"settings": {
                "max_file_size_bytes": 1_048_576,
                "rate_limits": {"per_token": 77},
                "sharing": {"external_sharing_enabled": false}
            }}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let reader = app.token("acme", "bob", "files:read");
    let tenant_id = app.get("/users/me", &reader).await.body["tenant_id"].clone();
    for token in [&admin, &reader] {
        let c = config(&app, Some(token)).await;
        assert_eq!(c.body["tenant_id"], tenant_id, "{}", c.body);
        assert_eq!(c.body["limits"]["max_file_size_bytes"], 1_048_576);
        assert_eq!(
            c.body["limits"]["rate_limits"],
            json!({"per_token": 77, "per_user": 4321, "per_tenant": 50000, "window_seconds": 60})
        );
        assert_eq!(c.body["features"]["external_sharing"], false);
    }

    // Another tenant, and a token of a tenant nobody signed in to yet, see
    // their own (default) settings.
    let other = app.token("globex", "gina", "");
    app.get("/users/me", &other).await;
    let c = config(&app, Some(&other)).await;
    assert_ne!(c.body["tenant_id"], tenant_id);
    assert_eq!(c.body["limits"]["max_file_size_bytes"], 5_368_709_120u64);
    assert_defaults(&config(&app, Some(&app.token("initech", "ian", ""))).await);

    // Bad tokens are no error here: the defaults, never a 500.
    let mut forged: Vec<String> = admin.split('.').map(str::to_owned).collect();
    forged[2] = forged[2].chars().rev().collect();
    for bad in ["garbage", "a.b.c", forged.join(".").as_str()] {
        assert_defaults(&config(&app, Some(bad)).await);
    }
    let basic = app
        .raw(Method::GET, "/config")
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("send");
    assert_defaults(&TestApp::answer(basic).await);
}

both_backends!(config_reflects_the_process_and_the_callers_tenant
    => config_reflects_the_process_and_the_callers_tenant_sqlite,
       config_reflects_the_process_and_the_callers_tenant_postgres);
