//! Rate limits: headers on every authenticated answer, 429 with Retry-After
//! when a budget is spent, tenant-adjustable budgets.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn;

#[tokio::test]
async fn answers_carry_rate_limit_headers() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let a = app.get("/users/me", &t).await;
    assert_eq!(a.header("x-ratelimit-limit"), Some("1000"));
    let first: u64 = a
        .header("x-ratelimit-remaining")
        .expect("remaining")
        .parse()
        .expect("number");
    let b = app.get("/shares", &t).await;
    let second: u64 = b
        .header("x-ratelimit-remaining")
        .expect("remaining")
        .parse()
        .expect("number");
    assert_eq!(first - second, 2, "a list costs 2 units");
    let reset: i64 = b
        .header("x-ratelimit-reset")
        .expect("reset")
        .parse()
        .expect("number");
    assert!(reset > chrono::Utc::now().timestamp() && reset <= chrono::Utc::now().timestamp() + 61);
}

#[tokio::test]
async fn a_spent_token_budget_answers_429_until_the_window_slides() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let p = app
        .patch(
            "/admin/tenant",
            &admin,
            json!({"settings": {"rate_limits": {"per_token": 10}}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let t = app.token("acme", "bob", "");
    let mut refused = None;
    for _ in 0..20 {
        let a = app.get("/users/me", &t).await;
        if a.status == 429 {
            refused = Some(a);
            break;
        }
    }
    let r = refused.expect("the 11th unit is refused");
    assert_eq!(r.body["code"], "RATE_LIMITED");
    assert_eq!(r.body["dimension"], "token");
    assert_eq!(r.body["detail"], "Per-token rate limit exceeded");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    assert_eq!(r.body["retry_after"], retry);
    // Another token (of another user) has its own budget.
    let carol = app.token("acme", "carol", "");
    assert_eq!(app.get("/users/me", &carol).await.status, 200);
    let metrics = app
        .raw(Method::GET, "/metrics")
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(r#"scaidrive_rate_limit_rejections_total{dimension="token"} 1"#),
        "{metrics}"
    );
}

fn redis_url() -> String {
    std::env::var("SCAIDRIVE_TEST_REDIS_URL")
        .expect("SCAIDRIVE_TEST_REDIS_URL must be set (scripts/test sets it)")
}

#[tokio::test]
#[ignore = "needs Redis (scripts/test)"]
async fn two_instances_sharing_redis_spend_one_budget_together() {
    // One key prefix for both instances, unique to this test.
    let prefix = format!("test:{}:", uuid::Uuid::now_v7().simple());
    let shared = |c: &mut scaidrive::config::Config| {
        c.redis_url = Some(redis_url());
        c.redis_prefix = prefix.clone();
        c.rate_limits.per_user = 10;
    };
    let a = crate::helpers::spawn_with(crate::helpers::Backend::Sqlite, shared).await;
    let b = crate::helpers::spawn_with(crate::helpers::Backend::Sqlite, shared).await;
    // Each instance has its own signing key, so the tokens differ; the user
    // (the same tenant and subject map to the same ids) is shared.
    let ta = a.token("acme", "bob", "");
    let tb = b.token("acme", "bob", "");
    let mut served = 0;
    let mut refused = None;
    for i in 0..20 {
        let (app, t) = if i % 2 == 0 { (&a, &ta) } else { (&b, &tb) };
        let r = app.get("/users/me", t).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        served += 1;
    }
    let r = refused.expect("the shared user budget runs out");
    // Provisioning on first sight costs nothing extra; ten units in all.
    assert_eq!(served, 10, "both instances together spend ten units");
    assert_eq!(r.body["dimension"], "user");
    assert_eq!(r.body["detail"], "Per-user rate limit exceeded");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    let ready = a.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.body["checks"]["redis"], true, "{}", ready.body);
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_and_shows_in_readiness() {
    let app = crate::helpers::spawn_with(crate::helpers::Backend::Sqlite, |c| {
        // Nothing listens on port 1: connections are refused at once.
        c.redis_url = Some("redis://127.0.0.1:1/".into());
        c.rate_limits.per_token = 3;
    })
    .await;
    let t = app.token("acme", "alice", "");
    let a = app.get("/users/me", &t).await;
    assert_eq!(a.status, 200, "requests are served without Redis");
    assert!(a.header("x-ratelimit-remaining").is_some());
    // Limits still hold, per instance.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.get("/users/me", &t).await.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.body["checks"]["redis"], false, "{}", ready.body);
}
