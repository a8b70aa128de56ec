use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn;

#[tokio::test]
async fn unknown_routes_answer_404_with_detail() {
    let app = spawn().await;
    app.call(Method::GET, "/no/such/thing", None, None)
        .await
        .assert_detail(404);
    let resp = app
        .client
        .get(format!(
            "{}/../elsewhere",
            app.base.trim_end_matches("/api/v1")
        ))
        .send()
        .await
        .expect("send");
    let a = crate::helpers::TestApp::answer(resp).await;
    a.assert_detail(404);
}

#[tokio::test]
async fn wrong_method_answers_405_with_detail() {
    let app = spawn().await;
    app.call(Method::DELETE, "/health", None, None)
        .await
        .assert_detail(405);
}

#[tokio::test]
async fn unparsable_json_is_a_422_json_invalid() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let resp = app
        .raw(Method::PATCH, "/admin/tenant")
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    let a = crate::helpers::TestApp::answer(resp).await;
    let d = a.assert_422();
    assert_eq!(d[0]["type"], "json_invalid");
    assert_eq!(d[0]["loc"][0], "body");
}

#[tokio::test]
async fn wrong_content_type_answers_415_with_detail() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let resp = app
        .raw(Method::PATCH, "/admin/tenant")
        .bearer_auth(&t)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .expect("send");
    crate::helpers::TestApp::answer(resp)
        .await
        .assert_detail(415);
}

#[tokio::test]
async fn schema_failures_list_every_field_pydantic_style() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let a = app
        .patch("/admin/tenant", &t, json!({"name": 5, "settings": []}))
        .await;
    let d = a.assert_422();
    assert_eq!(d[0]["type"], "string_type");
    assert_eq!(d[0]["loc"], json!(["body", "name"]));
    assert!(d[0]["msg"].is_string());
    assert!(d[0].get("input").is_some());
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let before = app.get("/admin/tenant", &t).await;
    let a = app
        .patch(
            "/admin/tenant",
            &t,
            json!({"settings": {"trash_retention_days": 0}}),
        )
        .await;
    let d = a.assert_422();
    assert_eq!(d[0]["type"], "value_error");
    let after = app.get("/admin/tenant", &t).await;
    assert_eq!(before.body, after.body);
}

#[tokio::test]
async fn malformed_multipart_and_absurd_sizes_are_refused_cleanly() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let resp = app
        .raw(Method::POST, "/files")
        .bearer_auth(&t)
        .header("content-type", "multipart/form-data")
        .body("garbage")
        .send()
        .await
        .expect("send");
    crate::helpers::TestApp::answer(resp)
        .await
        .assert_detail(400);
    let d = app
        .patch(
            "/admin/tenant",
            &t,
            json!({"settings": {"max_file_size_bytes": u64::MAX}}),
        )
        .await;
    d.assert_422();
    let personal = app.get("/shares", &t).await.body["shares"][0]["id"]
        .as_str()
        .expect("share")
        .to_owned();
    app.patch(
        "/admin/tenant",
        &t,
        json!({"settings": {"max_file_size_bytes": 4u64 << 40}}),
    )
    .await;
    let a = app
        .post("/uploads", &t, json!({"share_id": personal, "file_name": "x", "file_size": 4u64 << 40, "chunk_size": 65536}))
        .await;
    a.assert_422();
}
