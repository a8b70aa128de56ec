//! The OpenAPI document: served without a token, OpenAPI 3.1, and naming
//! exactly the routes the routers register (read from `src/http/*.rs`), so an
//! endpoint added without documentation fails here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::helpers::spawn;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every `(method, path)` a `.route("...", get(..).post(..))` call in
/// `src/http` registers, paths as written there (under `/api/v1`).
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut out = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("src/http")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let (path, args) = route_call(rest)
                .unwrap_or_else(|| panic!("unreadable .route( call in {}", file.display()));
            let methods = methods_in(args);
            assert!(
                !methods.is_empty(),
                "{}: route {path} registers no method this test knows",
                file.display()
            );
            for m in methods {
                out.insert((m, path.clone()));
            }
        }
    }
    out
}

/// The path literal and the rest of the argument list of one `.route(` call.
fn route_call(after_paren: &str) -> Option<(String, &str)> {
    let s = after_paren.trim_start();
    let s = s.strip_prefix('"')?;
    let end = s.find('"')?;
    let path = s[..end].to_owned();
    let mut depth = 1usize;
    for (i, c) in s[end..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((path, &s[end + 1..end + i]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Method routers named in a route's arguments: `get(`, `.post(`, ...
fn methods_in(args: &str) -> Vec<String> {
    let mut found = Vec::new();
    for m in METHODS {
        let pat = format!("{m}(");
        let mut from = 0;
        while let Some(i) = args[from..].find(&pat) {
            let at = from + i;
            let before = args[..at].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                found.push(m.to_owned());
            }
            from = at + pat.len();
        }
    }
    found
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let path = path
            .strip_prefix("/api/v1")
            .unwrap_or_else(|| panic!("{path} is not under /api/v1"));
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_owned(), path.to_owned()));
            }
        }
    }
    out
}

async fn fetch_document() -> Value {
    let app = spawn().await;
    let resp = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json")));
    resp.json().await.expect("json")
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_served_without_a_token() {
    let doc = fetch_document().await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "openapi = {version}");
    assert_eq!(doc["info"]["title"], "ScaiDrive API");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn every_registered_route_is_documented_and_nothing_else() {
    let doc = fetch_document().await;
    let registered = registered_routes();
    // A sanity floor: the scan found the routers at all.
    assert!(registered.len() > 100, "found {} routes", registered.len());
    let documented = documented(&doc);
    let missing: Vec<_> = registered.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "routes without documentation: {missing:?}"
    );
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

#[tokio::test]
async fn every_operation_has_an_id_answers_and_error_bodies() {
    let doc = fetch_document().await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut ids = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let id = op["operationId"].as_str().expect("operationId").to_owned();
            if let Some(other) = ids.insert(id.clone(), format!("{m} {path}")) {
                panic!("operationId {id} is used by {other} and {m} {path}");
            }
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('1') || s.starts_with('2')),
                "{m} {path} documents no success answer"
            );
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        r["content"]["application/json"]["schema"].is_object(),
                        "{m} {path} {status} has no JSON error body"
                    );
                }
            }
            let public = path.contains("/public/")
                || path.ends_with("/ws")
                || path.contains("/ws/")
                || [
                    "/api/v1/health",
                    "/api/v1/ready",
                    "/api/v1/config",
                    "/api/v1/metrics",
                    "/api/v1/openapi.json",
                    "/api/v1/webhooks/scaikey",
                    "/api/v1/.well-known/scaidrive-log-key",
                    "/api/v1/events/schemas",
                    "/api/v1/events/schemas/{event_type}",
                    "/api/v1/events/schemas/{event_type}/{version}",
                    "/api/v1/asyncapi.json",
                ]
                .contains(&path.as_str());
            if !public {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"bearer": []}]),
                    "{m} {path} must require the bearer token"
                );
                assert!(responses.contains_key("401"), "{m} {path} lacks 401");
            }
            // A link recipient's access token is optional: links without a
            // password or email check are served without one.
            let optional_token = ["", "/content", "/preview", "/children", "/upload"]
                .iter()
                .any(|tail| *path == format!("/api/v1/public/links/{{token}}{tail}"));
            if optional_token {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{}, {"bearer": []}]),
                    "{m} {path} takes the link access token optionally"
                );
            }
            if path.contains('{') {
                assert!(responses.contains_key("404"), "{m} {path} lacks 404");
            }
        }
    }
    // Every reference resolves.
    let text = doc.to_string();
    for piece in text.split("\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().expect("name");
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
}

#[tokio::test]
async fn request_bodies_carry_their_fields_and_bounds() {
    let doc = fetch_document().await;
    let body = |path: &str, method: &str| -> Value {
        let schema = &doc["paths"][format!("/api/v1{path}")][method]["requestBody"]["content"]
            ["application/json"]["schema"];
        resolve(&doc, schema)
    };
    let folder = body("/folders", "post");
    assert_eq!(folder["required"], serde_json::json!(["share_id", "name"]));
    assert_eq!(folder["properties"]["name"]["maxLength"], 255);
    let share = body("/shares", "post");
    let mut required: Vec<&str> = share["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort();
    assert_eq!(required, ["name", "owner_id", "share_type"]);
    let share_type = resolve(&doc, &share["properties"]["share_type"]);
    assert_eq!(
        share_type["enum"],
        serde_json::json!(["central", "personal", "project"])
    );
    let invite = body("/shares/{id}/invitations", "post");
    assert_eq!(invite["properties"]["expires_in_days"]["maximum"], 365);
}

/// Follows a `$ref` to its component schema.
fn resolve(doc: &Value, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            doc["components"]["schemas"][name].clone()
        }
        None => schema.clone(),
    }
}

#[test]
fn the_route_scanner_reads_multi_method_and_multi_line_calls() {
    let src = r#"Router::new()
        .route("/a/{id}", get(read).patch(update).delete(remove))
        .route(
            "/b",
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )"#;
    let mut found = BTreeSet::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + 7..];
        let (path, args) = route_call(rest).expect("call");
        for m in methods_in(args) {
            found.insert((m, path.clone()));
        }
    }
    let want: BTreeSet<(String, String)> = [
        ("get", "/a/{id}"),
        ("patch", "/a/{id}"),
        ("delete", "/a/{id}"),
        ("post", "/b"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(found, want);
}
