//! The event catalogue: every event type has a JSON Schema, a replayed log
//! that covers every type validates against the schemas on both backends
//! (read from `/events` and, with the `kafka` feature, from the topic), and
//! the AsyncAPI document describes every message and passes the reference
//! AsyncAPI parser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use chrono::Utc;
use reqwest::Method;
use scaidrive::store::{AppendRequest, ExpectedVersion, StreamAppend};
use scaidrive_domain::{Actor, EventMetadata, NewEvent};
use serde_json::{json, Value};

use crate::both_backends;
use crate::drive::{new_share, upload};
use crate::helpers::{spawn, spawn_on, Backend, TestApp};

/// A public GET (the catalogue needs no token).
async fn public_get(app: &TestApp, path: &str) -> (u16, Value) {
    let a = app.call(Method::GET, path, None, None).await;
    (a.status.as_u16(), a.body)
}

/// The schema index, as `(event_type, version) -> schema` fetched one by one.
async fn schemas(app: &TestApp) -> BTreeMap<(String, i64), Value> {
    let (status, index) = public_get(app, "/events/schemas").await;
    assert_eq!(status, 200, "{index}");
    let mut out = BTreeMap::new();
    for e in index["schemas"].as_array().expect("schemas") {
        let ty = e["event_type"].as_str().expect("type").to_owned();
        let v = e["schema_version"].as_i64().expect("version");
        let url = e["url"].as_str().expect("url");
        assert_eq!(url, format!("/api/v1/events/schemas/{ty}/{v}"));
        let (status, schema) = public_get(app, &format!("/events/schemas/{ty}/{v}")).await;
        assert_eq!(status, 200, "{ty} v{v}: {schema}");
        out.insert((ty, v), schema);
    }
    out
}

/// Makes events through the API, then appends one event of every type the
/// API run did not produce (its data an example built from the schema, so
/// the log covers the whole catalogue). Returns the types the API produced.
pub(crate) async fn log_covering_every_type(
    app: &TestApp,
    catalogue: &BTreeMap<(String, i64), Value>,
) -> BTreeSet<String> {
    let t = app.token("acme", "alice", "");
    let share = new_share(app, &t, "Catalogue").await;
    let f = app
        .post(
            "/folders",
            &t,
            json!({"share_id": share, "name": "Reports"}),
        )
        .await;
    assert_eq!(f.status, 201, "{}", f.body);
    let up = upload(app, &t, &share, None, "a.txt", b"hello".to_vec()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let file = up.body["id"].as_str().expect("file id").to_owned();
    let renamed = app
        .patch(&format!("/files/{file}"), &t, json!({"name": "b.txt"}))
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let link = app
        .post(
            "/external/links",
            &t,
            json!({"resource_type": "file", "resource_id": file, "share_id": share,
                   "link_type": "DOWNLOAD"}),
        )
        .await;
    assert!(link.status.as_u16() < 300, "{}", link.body);
    let g = app
        .post("/admin/groups", &t, json!({"name": "Analysts"}))
        .await;
    assert!(g.status.as_u16() < 300, "{}", g.body);
    let removed = app.delete(&format!("/files/{file}"), &t).await;
    assert!(removed.status.as_u16() < 300, "{}", removed.body);

    let me = app.get("/users/me", &t).await;
    let tenant = me.body["tenant_id"].as_str().map(str::to_owned);
    let from_api: BTreeSet<String> = app
        .state
        .store
        .read_all(scaidrive_domain::LogPosition::START, 100_000)
        .await
        .expect("log")
        .into_iter()
        // Only the tenant's own: `/events` shows nothing else (the log's
        // signed checkpoints, for one, belong to no tenant).
        .filter(|e| e.tenant_id == tenant)
        .map(|e| e.event_type)
        .collect();
    let mut streams = Vec::new();
    for ((ty, version), schema) in catalogue {
        if from_api.contains(ty) {
            continue;
        }
        let data = scaidrive_domain::catalogue::example(&schema["properties"]["data"], schema);
        streams.push(StreamAppend {
            stream_id: format!("catalogue-{ty}-{}", uuid::Uuid::now_v7().simple()),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: ty.clone(),
                schema_version: i32::try_from(*version).expect("version"),
                tenant_id: tenant.clone(),
                data,
                metadata: EventMetadata {
                    occurred_at: Utc::now(),
                    actor: Actor {
                        user_id: me.body["id"].as_str().map(str::to_owned),
                        ..Actor::default()
                    },
                    correlation_id: Some("catalogue-test".into()),
                    causation_id: None,
                },
            }],
        });
    }
    app.state
        .store
        .append(AppendRequest {
            streams,
            ..Default::default()
        })
        .await
        .expect("append the rest of the catalogue");
    from_api
}

/// Checks `value` against `schema`, formats included; the failures as text.
pub(crate) fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("a valid JSON Schema");
    v.iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Validates every envelope against its schema; returns the types seen.
pub(crate) fn validate_all(
    envelopes: &[Value],
    catalogue: &BTreeMap<(String, i64), Value>,
    asyncapi: &Value,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut failures = Vec::new();
    for e in envelopes {
        let ty = e["event_type"].as_str().expect("event_type").to_owned();
        let v = e["schema_version"].as_i64().expect("schema_version");
        let Some(schema) = catalogue.get(&(ty.clone(), v)) else {
            failures.push(format!("{ty} v{v}: no schema in the index"));
            continue;
        };
        for why in violations(schema, e) {
            failures.push(format!("{ty} v{v}: {why}: {e}"));
        }
        // A consumer that knows only the AsyncAPI document finds the
        // message by name and its payload schema in the components.
        let key = format!("{ty}.v{v}");
        let name = asyncapi["components"]["messages"][&key]["name"].as_str();
        if name != Some(&format!("ai.scailabs.scaidrive.{ty}")) {
            failures.push(format!("{key}: no AsyncAPI message"));
        }
        let payload = &asyncapi["components"]["schemas"][&key];
        for why in violations(payload, e) {
            failures.push(format!("{key} (AsyncAPI): {why}"));
        }
        seen.insert(ty);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    seen
}

async fn every_envelope_of_a_full_replay_matches_its_schema(backend: Backend) {
    let app = spawn_on(backend).await;
    let catalogue = schemas(&app).await;
    assert!(catalogue.len() >= 80, "{} schemas", catalogue.len());
    let from_api = log_covering_every_type(&app, &catalogue).await;
    let (status, asyncapi) = public_get(&app, "/asyncapi.json").await;
    assert_eq!(status, 200);
    // Replay the log from the start through GET /events.
    let t = app.token("acme", "alice", "");
    let mut envelopes = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let page = app
            .get(&format!("/events?after={after}&limit=1000"), &t)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        envelopes.extend(page.body["events"].as_array().expect("events").clone());
        after = page.body["next_after"].as_str().expect("next").to_owned();
        if page.body["has_more"] != true {
            break;
        }
    }
    let seen = validate_all(&envelopes, &catalogue, &asyncapi);
    let all: BTreeSet<String> = catalogue.keys().map(|(t, _)| t.clone()).collect();
    assert_eq!(seen, all, "the replay covers every event type");
    assert!(from_api.len() >= 10, "the API made {from_api:?}");
}

both_backends!(every_envelope_of_a_full_replay_matches_its_schema =>
    every_envelope_of_a_full_replay_matches_its_schema_sqlite,
    every_envelope_of_a_full_replay_matches_its_schema_pg);

#[tokio::test]
async fn the_schema_index_lists_every_event_type_of_the_domain() {
    let app = spawn().await;
    let (status, index) = public_get(&app, "/events/schemas").await;
    assert_eq!(status, 200);
    let served: BTreeSet<(String, i64)> = index["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().expect("t").to_owned(),
                e["schema_version"].as_i64().expect("v"),
            )
        })
        .collect();
    let domain: BTreeSet<(String, i64)> = scaidrive_domain::catalogue::current()
        .into_iter()
        .map(|s| (s.event_type, i64::from(s.schema_version)))
        .collect();
    assert!(domain.is_subset(&served), "every current type is served");
    let current = public_get(&app, "/events/schemas/share-created").await;
    assert_eq!(current.0, 200);
    assert_eq!(
        current.1["properties"]["event_type"]["const"],
        "share-created"
    );
    let r = app
        .call(Method::GET, "/events/schemas/no-such-event", None, None)
        .await;
    r.assert_detail(404);
    let r = app
        .call(Method::GET, "/events/schemas/share-created/99", None, None)
        .await;
    r.assert_detail(404);
    let r = app
        .call(Method::GET, "/events/schemas/share-created/one", None, None)
        .await;
    r.assert_detail(400);
}

#[tokio::test]
async fn the_asyncapi_document_describes_the_topic_and_every_message() {
    let app = crate::helpers::spawn_with(Backend::Sqlite, |c| {
        c.kafka = None;
    })
    .await;
    let (status, doc) = public_get(&app, "/asyncapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["channels"]["events"]["address"], "scaidrive.events");
    let (_, index) = public_get(&app, "/events/schemas").await;
    let n = index["schemas"].as_array().expect("schemas").len();
    assert_eq!(
        doc["channels"]["events"]["messages"]
            .as_object()
            .expect("messages")
            .len(),
        n
    );
    assert_eq!(
        doc["operations"]["consumeEvents"]["messages"]
            .as_array()
            .expect("operation messages")
            .len(),
        n
    );
    // Every message's example is valid against its own payload schema.
    for (key, m) in doc["components"]["messages"].as_object().expect("messages") {
        let schema = &doc["components"]["schemas"][key];
        let example = &m["examples"][0]["payload"];
        assert_eq!(violations(schema, example), Vec::<String>::new(), "{key}");
    }
}

/// The reference AsyncAPI parser (`@asyncapi/parser`, installed by
/// scripts/test into scripts/asyncapi/node_modules) accepts the document.
#[tokio::test]
#[ignore = "needs node and scripts/asyncapi/node_modules (scripts/test installs them)"]
async fn the_asyncapi_document_passes_the_reference_parser() {
    let app = spawn().await;
    let (status, doc) = public_get(&app, "/asyncapi.json").await;
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("asyncapi.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/asyncapi/validate.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(&file)
            .output()
            .expect("run node")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["version"], "3.0.0");
    assert!(summary["messages"].as_u64().expect("n") >= 80, "{summary}");
}

/// The relay's records, read back from a real broker: every value matches
/// its schema, and a Python consumer using the CloudEvents SDK over
/// confluent-kafka decodes every record as a CloudEvent and validates it
/// with nothing but the AsyncAPI document.
#[cfg(feature = "kafka")]
mod kafka {
    use std::time::Duration;

    use scaidrive::config::KafkaConfig;

    use super::*;
    use crate::helpers::spawn_with;
    use crate::kafka::relay;

    fn python() -> String {
        std::env::var("SCAIDRIVE_TEST_PYTHON")
            .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")))
    }

    async fn every_record_is_a_cloudevent_matching_its_schema(backend: Backend) {
        let brokers = relay::brokers();
        let topic = relay::topic_name();
        relay::create_topic(&brokers, &topic).await;
        let (got, stop) = relay::collect(&brokers, &topic);
        let kafka = KafkaConfig {
            brokers: brokers.clone(),
            topic: topic.clone(),
        };
        // No signed checkpoints mid-test: the Python consumer stops after as
        // many records as the log held when it was read (the replay still
        // carries a checkpoint event, synthesised like every other type).
        let app = spawn_with(backend, |c| {
            c.kafka = Some(kafka);
            c.proofs.enabled = false;
        })
        .await;
        let catalogue = schemas(&app).await;
        log_covering_every_type(&app, &catalogue).await;
        // On PostgreSQL the log is read up to its gap-safe watermark, which
        // other tests' open transactions may hold back for a moment: wait
        // until the read reaches every event type just appended.
        let all: BTreeSet<String> = catalogue.keys().map(|(t, _)| t.clone()).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let log = loop {
            let log = relay::envelopes(&app.state.store).await;
            let types: BTreeSet<String> = log
                .iter()
                .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
                .collect();
            if types.is_superset(&all) || std::time::Instant::now() > deadline {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let records = relay::all_arrive(&log, &got, Duration::from_secs(120)).await;
        stop.cancel();
        let (status, asyncapi) = public_get(&app, "/asyncapi.json").await;
        assert_eq!(status, 200);
        assert_eq!(asyncapi["channels"]["events"]["address"], topic.as_str());
        let values: Vec<Value> = records.iter().map(|g| g.envelope.clone()).collect();
        let seen = validate_all(&values, &catalogue, &asyncapi);
        assert_eq!(seen, all, "the topic carries every event type");

        let dir = tempfile::tempdir().expect("tempdir");
        let doc = dir.path().join("asyncapi.json");
        std::fs::write(&doc, asyncapi.to_string()).expect("write");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cloudevents-consume.py");
        let expect = log.len().to_string();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(python())
                .arg(script)
                .args(["--brokers", &brokers, "--topic", &topic])
                .arg("--asyncapi")
                .arg(&doc)
                .args(["--expect", &expect, "--timeout", "120"])
                .output()
                .expect("run the Python consumer")
        })
        .await
        .expect("join");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_str(stdout.trim()).expect("summary");
        assert_eq!(summary["distinct"], log.len(), "{summary}");
        let types: BTreeSet<String> = summary["types"]
            .as_array()
            .expect("types")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        // Workers may append after the log was read (a resumed connector run,
        // say), so the consumer's first `expect` records need not hold every
        // type; the Rust consumer above saw them all. Every type it decoded is
        // in the catalogue.
        assert!(types.is_subset(&all), "{types:?}");
    }

    #[tokio::test]
    #[ignore = "needs Kafka and the Python CloudEvents SDK (scripts/test)"]
    async fn every_kafka_record_is_a_cloudevent_matching_its_schema_sqlite() {
        every_record_is_a_cloudevent_matching_its_schema(Backend::Sqlite).await
    }

    #[tokio::test]
    #[ignore = "needs Kafka, PostgreSQL and the Python CloudEvents SDK (scripts/test)"]
    async fn every_kafka_record_is_a_cloudevent_matching_its_schema_pg() {
        every_record_is_a_cloudevent_matching_its_schema(Backend::Postgres).await
    }
}
