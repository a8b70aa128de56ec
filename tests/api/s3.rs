//! The same content paths against an S3-compatible endpoint.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_with, Backend};

#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_S3_BUCKET and AWS_ENDPOINT_URL (scripts/test starts a local S3 stand-in)"]
async fn content_round_trips_through_s3() {
    let bucket = std::env::var("SCAIDRIVE_TEST_S3_BUCKET")
        .expect("SCAIDRIVE_TEST_S3_BUCKET must be set (scripts/test sets it)");
    let app = spawn_with(Backend::Sqlite, |c| {
        c.blob.url = Some(format!("s3://{bucket}"))
    })
    .await;
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.body["checks"]["storage"], true, "{}", ready.body);
    let t = app.token("s3co", "alice", "");
    let me = app.get("/users/me", &t).await;
    let share = app
        .post(
            "/shares",
            &t,
            json!({"name": "S", "share_type": "project", "owner_id": me.body["id"]}),
        )
        .await;
    let share = share.body["id"].as_str().expect("share").to_owned();
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 241) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("share_id", share.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(data.clone()).file_name("big.bin"),
        );
    let resp = app
        .raw(Method::POST, "/files")
        .bearer_auth(&t)
        .multipart(form)
        .send()
        .await
        .expect("send");
    let f = crate::helpers::TestApp::answer(resp).await;
    assert_eq!(f.status, 201, "{}", f.body);
    let id = f.body["id"].as_str().expect("id");
    let body = app
        .raw(Method::GET, &format!("/files/{id}/content"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.as_ref(), data.as_slice());
    let part = app
        .raw(Method::GET, &format!("/files/{id}/content"))
        .bearer_auth(&t)
        .header("range", "bytes=4194300-4194309")
        .send()
        .await
        .expect("send");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.bytes().await.expect("body").as_ref(),
        &data[4_194_300..4_194_310]
    );
}

/// A server whose blob store is S3 at `endpoint`, with requests bounded to
/// `timeout_ms`.
async fn with_s3_at(endpoint: String, timeout_ms: u64) -> crate::helpers::TestApp {
    spawn_with(Backend::Sqlite, |c| {
        c.blob.url = Some("s3://nowhere".into());
        c.blob.s3_endpoint = Some(endpoint);
        c.blob.s3_credentials = Some(("testing".into(), "testing".into()));
        c.blob.timeout = std::time::Duration::from_millis(timeout_ms);
    })
    .await
}

async fn upload_small(app: &crate::helpers::TestApp) -> crate::helpers::Answer {
    let t = app.token("s3down", "alice", "");
    let share = crate::drive::new_share(app, &t, "S").await;
    crate::drive::upload(app, &t, &share, None, "a.txt", b"hello".to_vec()).await
}

#[tokio::test]
async fn an_unreachable_blob_store_answers_502_and_fails_readiness() {
    // A port nobody listens on: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let app = with_s3_at(format!("http://127.0.0.1:{port}"), 2_000).await;
    let up = upload_small(&app).await;
    up.assert_detail(502);
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.body["checks"]["storage"], false, "{}", ready.body);
}

#[tokio::test]
async fn a_blob_store_that_never_answers_answers_504() {
    // Accepts connections and never writes a byte back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
        }
    });
    let app = with_s3_at(format!("http://127.0.0.1:{port}"), 500).await;
    let started = std::time::Instant::now();
    let up = upload_small(&app).await;
    up.assert_detail(504);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the bound on blob requests held: {:?}",
        started.elapsed()
    );
    held.abort();
}

#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_S3_BUCKET and AWS_ENDPOINT_URL (scripts/test starts a local S3 stand-in)"]
async fn signed_checkpoints_are_published_to_s3() {
    let bucket = std::env::var("SCAIDRIVE_TEST_S3_BUCKET")
        .expect("SCAIDRIVE_TEST_S3_BUCKET must be set (scripts/test sets it)");
    let url = format!("s3://{bucket}/published-log");
    let target = url.clone();
    let app = spawn_with(Backend::Sqlite, move |c| {
        c.proofs.every_events = 3;
        c.proofs.every = std::time::Duration::from_secs(3600);
        c.proofs.publish_url = Some(target);
    })
    .await;
    let t = app.token("s3cp", "alice", "");
    let me = app.get("/users/me", &t).await;
    for name in ["A", "B", "C"] {
        let share = app
            .post(
                "/shares",
                &t,
                json!({"name": name, "share_type": "project", "owner_id": me.body["id"]}),
            )
            .await;
        assert_eq!(share.status, 201, "{}", share.body);
    }
    crate::proofs::published_checkpoint_holds(&app, &url, 3).await;
}
