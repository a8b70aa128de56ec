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

#[tokio::test]
async fn metrics_expose_requests_events_uploads_and_projection_lag() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    app.call(Method::GET, "/users/me", Some(&t), None).await;
    app.call(
        Method::GET,
        "/shares/shr_00000000000000000000000000",
        Some(&t),
        None,
    )
    .await;
    let resp = app.raw(Method::GET, "/metrics").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/plain"));
    let text = resp.text().await.expect("body");
    assert!(
        text.contains(
            r#"scaidrive_requests_total{method="GET",path="/api/v1/users/me",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"path="/api/v1/shares/{id}",status="404""#),
        "route templates, not raw ids: {text}"
    );
    assert!(text.contains("scaidrive_request_duration_seconds_bucket"));
    assert!(
        text.contains(r#"scaidrive_events_appended_total{event_type="user-provisioned"} 1"#),
        "{text}"
    );
    assert!(text.contains("scaidrive_uploads_bytes_total 0"));
    assert!(text.contains(r#"scaidrive_projection_lag_events{projection="drive"}"#));
}

#[tokio::test]
async fn sigterm_turns_readiness_503_at_once_then_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scaidrive"))
        .arg("serve")
        .env("SCAIDRIVE_BIND", format!("127.0.0.1:{port}"))
        .env("SCAIDRIVE_DATA_DIR", dir.path())
        .env("SCAIDRIVE_DRAIN_DELAY_MS", "1500")
        .env("SCAIDRIVE_LOG", "warn")
        .spawn()
        .expect("start the server");
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/api/v1/ready");
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(&ready).send().await {
            if r.status() == 200 {
                up = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "server never became ready");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut saw_503 = false;
    for _ in 0..20 {
        if let Ok(r) = client.get(&ready).send().await {
            if r.status() == 503 {
                let body: serde_json::Value = r.json().await.expect("json");
                assert_eq!(body["checks"]["draining"], true);
                saw_503 = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(saw_503, "readiness must answer 503 while draining");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit after draining"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}
