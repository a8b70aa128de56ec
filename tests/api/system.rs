use reqwest::Method;

use crate::helpers::spawn;

#[tokio::test]
async fn health_answers_without_auth() {
    let app = spawn().await;
    let a = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "healthy");
    assert!(a.body["version"].is_string());
}

#[tokio::test]
async fn ready_reports_its_checks() {
    let app = spawn().await;
    let a = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "ready");
    assert_eq!(a.body["checks"]["database"], true);
    assert_eq!(a.body["checks"]["scaikey"], true);
}

#[tokio::test]
async fn config_lists_features_and_limits() {
    let app = spawn().await;
    let a = app.call(Method::GET, "/config", None, None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["limits"]["max_file_size_bytes"], 5_368_709_120u64);
    assert_eq!(
        a.body["limits"]["max_upload_chunk_size_bytes"],
        5_242_880u64
    );
    assert!(a.body["features"]["semantic_search"].is_boolean());
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let app = spawn().await;
    let a = app.call(Method::GET, "/health", None, None).await;
    assert!(a.header("x-request-id").is_some_and(|v| !v.is_empty()));
    let resp = app
        .raw(Method::GET, "/health")
        .header("X-Request-ID", "abc-123")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app
        .raw(Method::GET, "/nope")
        .header("X-Request-ID", "r-404")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["x-request-id"], "r-404");
}
