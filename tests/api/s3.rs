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
        c.blob_url = Some(format!("s3://{bucket}"))
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
