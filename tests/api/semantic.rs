//! Semantic search over HTTP: chunks embedded by the indexer and found by
//! meaning, changes to files reflected, permission filtering, hybrid
//! blending, the context budget, the remote provider's failures (502, 504)
//! and the rebuild.
//!
//! Most tests use a stand-in OpenAI-compatible provider served here (a
//! bag-of-words embedding, so a query finds the chunks that share its
//! words); the real all-MiniLM-L6-v2 test needs the model
//! (`SCAIDRIVE_EMBEDDING_MODEL_DIR`, installed by scripts/test).

use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::drive::new_share;
use crate::helpers::{spawn_with, Answer, Backend, TestApp};
use crate::search::{pdf, pos, put};

const DIMS: usize = 64;

/// A bag-of-words vector: each lower-cased word counts in one of 64 slots.
fn bag(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut h: u32 = 2166136261;
        for b in w.to_lowercase().bytes() {
            h = (h ^ b as u32).wrapping_mul(16777619);
        }
        v[(h as usize) % DIMS] += 1.0;
    }
    v
}

/// Serves `POST /v1/embeddings` on loopback; returns its URL.
async fn fake_provider() -> String {
    async fn embed(Json(body): Json<Value>) -> Json<Value> {
        let data: Vec<Value> = body["input"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"index": i, "embedding": bag(t.as_str().unwrap_or_default())}))
            .collect();
        Json(json!({"object": "list", "data": data, "model": body["model"]}))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().route("/v1/embeddings", post(embed))).await;
    });
    format!("http://{addr}/v1/embeddings")
}

/// Turns the tenant's vectorization on; returns the write's position.
async fn enable(app: &TestApp, t: &str, on: bool) -> String {
    let a = app
        .patch(
            "/admin/tenant",
            t,
            json!({"settings": {"vectorization_enabled": on}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    pos(&a)
}

async fn semantic(app: &TestApp, t: &str, body: Value, position: Option<&str>) -> Answer {
    post_at(app, t, "/search/semantic", body, position).await
}

/// A search POST that reads the caller's writes up to `position`.
async fn post_at(
    app: &TestApp,
    t: &str,
    path: &str,
    body: Value,
    position: Option<&str>,
) -> Answer {
    let mut req = app.raw(Method::POST, path).bearer_auth(t).json(&body);
    if let Some(p) = position {
        req = req.header("x-scaidrive-position", p);
    }
    TestApp::answer(req.send().await.unwrap()).await
}

/// The file names of a semantic answer, best first (one per chunk).
fn names(a: &Answer) -> Vec<String> {
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["semantic_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file_name"].as_str().unwrap().to_owned())
        .collect()
}

async fn follows_the_drive(backend: Backend) {
    let url = fake_provider().await;
    let app = spawn_with(backend, |c| {
        c.embedding.url = Some(url);
        c.embedding.model = Some("bag-of-words".into());
    })
    .await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    // Off for the tenant: 501 with a detail that says how to turn it on.
    let a = semantic(&app, &t, json!({"query": "tapir"}), None).await;
    a.assert_detail(501);
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("vectorization_enabled"),
        "{}",
        a.body
    );

    let tapir = put(
        &app,
        &t,
        &share,
        None,
        "tapir.txt",
        "text/plain",
        b"Tapirs live in the rainforest and eat leaves.".to_vec(),
    )
    .await;
    let tapir_id = tapir.body["id"].as_str().unwrap().to_owned();
    put(
        &app,
        &t,
        &share,
        None,
        "billing.md",
        "text/markdown",
        b"# Billing\n\nInvoices are paid monthly by the finance team.".to_vec(),
    )
    .await;
    put(
        &app,
        &t,
        &share,
        None,
        "atlas.pdf",
        "application/pdf",
        pdf(&["Volcano maps", "Glacier maps"]),
    )
    .await;
    // Turning it on embeds what is already there.
    let p = enable(&app, &t, true).await;
    let a = semantic(&app, &t, json!({"query": "rainforest tapirs"}), Some(&p)).await;
    assert_eq!(names(&a)[0], "tapir.txt", "{}", a.body);
    let r = &a.body["semantic_results"][0];
    assert_eq!(r["file_id"], tapir_id.as_str());
    assert_eq!(r["share_id"], share.as_str());
    assert_eq!(r["path"], "/tapir.txt");
    assert_eq!(r["chunk_index"], 0);
    assert!(r["chunk_content"].as_str().unwrap().contains("rainforest"));
    let score = r["score"].as_f64().unwrap();
    assert!(score > 0.5, "{}", a.body);
    assert!((r["distance"].as_f64().unwrap() - (1.0 - score)).abs() < 1e-5);
    // Sections and pages come along.
    let a = app
        .get("/search/semantic?q=invoices%20finance&limit=1", &t)
        .await;
    assert_eq!(names(&a), vec!["billing.md"]);
    assert_eq!(a.body["semantic_results"][0]["section"], "Billing");
    let a = semantic(&app, &t, json!({"query": "glacier", "limit": 1}), None).await;
    assert_eq!(names(&a), vec!["atlas.pdf"]);
    assert_eq!(a.body["semantic_results"][0]["page"], 2);
    // Filters: MIME types and path prefix.
    let a = semantic(
        &app,
        &t,
        json!({"query": "tapirs", "file_types": ["text/markdown"]}),
        None,
    )
    .await;
    assert!(!names(&a).contains(&"tapir.txt".to_owned()), "{}", a.body);
    let a = semantic(
        &app,
        &t,
        json!({"query": "tapirs", "path_prefix": "/nowhere"}),
        None,
    )
    .await;
    assert!(names(&a).is_empty());

    let h = app.get("/search/health", &t).await;
    assert_eq!(h.status, 200);
    let s = &h.body["semantic"];
    assert_eq!(s["enabled"], true, "{}", h.body);
    assert_eq!(s["provider"], "remote");
    assert_eq!(s["model"], "bag-of-words");
    assert_eq!(s["dimensions"], DIMS);
    assert_eq!(s["chunks"], 4, "{}", h.body);

    // Rename follows; trash hides and drops; restore embeds again.
    let r = app
        .patch(
            &format!("/files/{tapir_id}"),
            &t,
            json!({"name": "animal.txt"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = semantic(&app, &t, json!({"query": "tapirs"}), Some(&pos(&r))).await;
    assert_eq!(names(&a)[0], "animal.txt");
    let d = app.delete(&format!("/files/{tapir_id}"), &t).await;
    assert_eq!(d.status, 204);
    let a = semantic(&app, &t, json!({"query": "tapirs"}), Some(&pos(&d))).await;
    assert!(!names(&a).contains(&"animal.txt".to_owned()));
    assert_eq!(
        app.get("/search/health", &t).await.body["semantic"]["chunks"],
        3
    );
    let r = app
        .patch(&format!("/files/{tapir_id}"), &t, json!({"restore": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = semantic(&app, &t, json!({"query": "tapirs"}), Some(&pos(&r))).await;
    assert_eq!(names(&a)[0], "animal.txt");

    // Hybrid: keyword only, vector only, blended. The position makes the
    // keyword side wait for its own index too.
    let h = post_at(
        &app,
        &t,
        "/search/hybrid",
        json!({"query": "invoices", "alpha": 0}),
        Some(&pos(&r)),
    )
    .await;
    assert_eq!(h.status, 200, "{}", h.body);
    let first = &h.body["results"][0];
    assert_eq!(first["name"], "billing.md", "{}", h.body);
    assert_eq!(first["type"], "file");
    assert!(first["keyword_score"].as_f64().unwrap() > 0.0);
    assert!(first["vector_score"].is_null());
    assert_eq!(h.body["results"].as_array().unwrap().len(), 1);
    let h = app
        .post(
            "/search/hybrid",
            &t,
            json!({"query": "invoices", "alpha": 1}),
        )
        .await;
    let first = &h.body["results"][0];
    assert_eq!(first["name"], "billing.md");
    assert!(first["keyword_score"].is_null());
    assert!(first["vector_score"].as_f64().unwrap() > 0.0);
    assert!(first["chunk_content"]
        .as_str()
        .unwrap()
        .contains("Invoices"));
    let h = app
        .post("/search/hybrid", &t, json!({"query": "invoices"}))
        .await;
    assert_eq!(h.body["query"], "invoices");
    let first = &h.body["results"][0];
    assert_eq!(first["name"], "billing.md");
    assert!((first["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);

    // Context: within the budget (words, with no local model).
    let c = app
        .post(
            "/search/context",
            &t,
            json!({"query": "tapirs rainforest", "max_tokens": 2000}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let used = c.body["tokens_used"].as_u64().unwrap();
    assert!(used > 0 && used <= 2000);
    assert_eq!(c.body["context"][0]["file_name"], "animal.txt");
    let c = app
        .post(
            "/search/context",
            &t,
            json!({"query": "tapirs rainforest", "max_tokens": 5}),
        )
        .await;
    assert!(c.body["tokens_used"].as_u64().unwrap() <= 5, "{}", c.body);

    // Another user who is no member sees nothing, and not the share.
    let bea = app.token("acme", "bea", "files:read files:write");
    app.get("/users/me", &bea).await;
    let a = semantic(&app, &bea, json!({"query": "tapirs"}), None).await;
    assert!(names(&a).is_empty(), "{}", a.body);
    semantic(
        &app,
        &bea,
        json!({"query": "tapirs", "share_id": share}),
        None,
    )
    .await
    .assert_detail(404);
    let h = app
        .post("/search/hybrid", &bea, json!({"query": "invoices"}))
        .await;
    assert_eq!(h.body["results"], json!([]), "{}", h.body);

    // Purge drops the chunks for good; turning vectorization off drops all.
    let d = app
        .delete(&format!("/files/{tapir_id}?permanent=true"), &t)
        .await;
    assert_eq!(d.status, 204);
    let a = semantic(&app, &t, json!({"query": "tapirs"}), Some(&pos(&d))).await;
    assert!(!names(&a).contains(&"animal.txt".to_owned()));
    let p = enable(&app, &t, false).await;
    semantic(&app, &t, json!({"query": "tapirs"}), Some(&p))
        .await
        .assert_detail(501);
    let semantic_ix = app.state.semantic.clone().unwrap();
    assert!(
        semantic_ix
            .wait_for(
                scaidrive_domain::LogPosition::parse_token(&p).unwrap(),
                Duration::from_secs(30)
            )
            .await
    );
    assert_eq!(semantic_ix.index().chunks(&app_tenant(&app, &t).await), 0);
}
both_backends!(follows_the_drive => semantic_search_follows_the_drive, semantic_search_follows_the_drive_pg);

async fn app_tenant(app: &TestApp, t: &str) -> String {
    app.get("/users/me", t).await.body["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn semantic_validation() {
    let url = fake_provider().await;
    let app = spawn_with(Backend::Sqlite, |c| c.embedding.url = Some(url)).await;
    let t = app.token("acme", "alice", "");
    enable(&app, &t, true).await;
    app.post("/search/hybrid", &t, json!({"query": "x", "alpha": -0.1}))
        .await
        .assert_422();
    let many: Vec<String> = (0..21).map(|i| format!("text/x{i}")).collect();
    app.post(
        "/search/semantic",
        &t,
        json!({"query": "x", "file_types": many}),
    )
    .await
    .assert_422();
    app.post("/search/semantic", &t, json!({"query": "x", "limit": 51}))
        .await
        .assert_422();
    app.post(
        "/search/context",
        &t,
        json!({"query": "x", "max_tokens": 0}),
    )
    .await
    .assert_422();
    app.get("/search/semantic?q=x&limit=0", &t)
        .await
        .assert_detail(400);
    app.get("/search/semantic?q=x&share_id=shr_nope", &t)
        .await
        .assert_detail(404);
    // Nothing indexed yet: an empty answer, not an error.
    let a = semantic(&app, &t, json!({"query": "anything"}), None).await;
    assert_eq!(a.body, json!({"semantic_results": []}));
}

/// A provider that refuses connections answers 502; one that never answers
/// answers 504 after `SCAIDRIVE_EMBEDDING_TIMEOUT_MS`.
#[tokio::test]
async fn remote_provider_failures_are_502_and_504() {
    // Refused: a port nobody listens on any more.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = spawn_with(Backend::Sqlite, |c| {
        c.embedding.url = Some(format!("http://{closed}/v1/embeddings"));
        c.embedding.timeout = Duration::from_secs(5);
    })
    .await;
    let t = app.token("acme", "alice", "");
    enable(&app, &t, true).await;
    semantic(&app, &t, json!({"query": "hello"}), None)
        .await
        .assert_detail(502);
    app.post("/search/context", &t, json!({"query": "hello"}))
        .await
        .assert_detail(502);
    app.get("/search/semantic?q=hello", &t)
        .await
        .assert_detail(502);
    // Keyword only needs no embedding.
    let h = app
        .post("/search/hybrid", &t, json!({"query": "hello", "alpha": 0}))
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    drop(app);

    // Silent: accepts, reads, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let app = spawn_with(Backend::Sqlite, |c| {
        c.embedding.url = Some(format!("http://{addr}/v1/embeddings"));
        c.embedding.timeout = Duration::from_millis(300);
    })
    .await;
    let t = app.token("acme", "alice", "");
    enable(&app, &t, true).await;
    let started = std::time::Instant::now();
    semantic(&app, &t, json!({"query": "hello"}), None)
        .await
        .assert_detail(504);
    assert!(started.elapsed() < Duration::from_secs(10));
    app.post("/search/hybrid", &t, json!({"query": "hello"}))
        .await
        .assert_detail(504);
    holder.abort();
}

/// `projections rebuild semantic` builds the vector index again beside the
/// live one; the server switches to it and answers the same.
#[tokio::test]
async fn the_vector_index_rebuilds_from_the_log() {
    let url = fake_provider().await;
    let app = spawn_with(Backend::Sqlite, |c| c.embedding.url = Some(url)).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    enable(&app, &t, true).await;
    let a = put(
        &app,
        &t,
        &share,
        None,
        "okapi.txt",
        "text/plain",
        b"okapi stripes".to_vec(),
    )
    .await;
    let found = semantic(&app, &t, json!({"query": "okapi"}), Some(&pos(&a))).await;
    assert_eq!(names(&found), vec!["okapi.txt"]);

    let state = app.state.clone();
    let ix = state.semantic.clone().unwrap();
    let first = ix.index().dir().to_owned();
    let settings = scaidrive::search::Settings::from_env(&state.config.data_dir);
    let read = scaidrive::search::semantic::rebuild(
        &settings,
        &state.store,
        &state.blob,
        ix.embedder(),
        |_| {},
    )
    .await
    .expect("rebuild");
    assert!(read > 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ix.index().dir() == first {
        assert!(
            std::time::Instant::now() < deadline,
            "server did not switch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!first.exists(), "the old index is deleted");
    let again = semantic(&app, &t, json!({"query": "okapi"}), None).await;
    assert_eq!(names(&again), vec!["okapi.txt"]);
}

/// The real model: meaning, not shared words, ranks the answer.
#[tokio::test]
#[ignore = "needs SCAIDRIVE_EMBEDDING_MODEL_DIR (scripts/test installs it)"]
async fn the_local_model_ranks_by_meaning() {
    let dir = std::env::var("SCAIDRIVE_EMBEDDING_MODEL_DIR").expect("model dir");
    let app = spawn_with(Backend::Sqlite, |c| {
        c.embedding.model_dir = Some(dir.into())
    })
    .await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "S").await;
    enable(&app, &t, true).await;
    put(
        &app,
        &t,
        &share,
        None,
        "zoo.txt",
        "text/plain",
        b"Tapirs are large herbivorous mammals that live in South American jungles.".to_vec(),
    )
    .await;
    put(
        &app,
        &t,
        &share,
        None,
        "finance.txt",
        "text/plain",
        b"Invoices must be approved by the accounting department before payment.".to_vec(),
    )
    .await;
    let long: String = (0..400)
        .map(|i| format!("Sentence number {i} of a long report about quarterly budgets. "))
        .collect();
    let last = put(
        &app,
        &t,
        &share,
        None,
        "report.txt",
        "text/plain",
        long.into_bytes(),
    )
    .await;
    let a = semantic(
        &app,
        &t,
        json!({"query": "wild animals in the rainforest"}),
        Some(&pos(&last)),
    )
    .await;
    assert_eq!(names(&a)[0], "zoo.txt", "{}", a.body);
    let a = semantic(&app, &t, json!({"query": "who pays the bills?"}), None).await;
    assert_eq!(names(&a)[0], "finance.txt", "{}", a.body);
    let h = app.get("/search/health", &t).await;
    assert_eq!(h.body["semantic"]["provider"], "local");
    assert_eq!(h.body["semantic"]["model"], "all-MiniLM-L6-v2");
    assert_eq!(h.body["semantic"]["dimensions"], 384);
    // The long report is cut into overlapping chunks.
    assert!(
        h.body["semantic"]["chunks"].as_u64().unwrap() > 5,
        "{}",
        h.body
    );
    // Context counted with the tokenizer, within the budget.
    for budget in [50, 300, 2000] {
        let c = app
            .post(
                "/search/context",
                &t,
                json!({"query": "quarterly budgets", "max_tokens": budget}),
            )
            .await;
        assert_eq!(c.status, 200, "{}", c.body);
        let used = c.body["tokens_used"].as_u64().unwrap();
        assert!(used <= budget, "{used} > {budget}");
        if budget >= 300 {
            assert!(used > 0 && !c.body["context"].as_array().unwrap().is_empty());
        }
    }
}
