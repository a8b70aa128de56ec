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
