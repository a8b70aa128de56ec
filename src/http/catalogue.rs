//! The event catalogue over HTTP: the JSON Schema of every event type and
//! version (`GET /events/schemas`, `GET /events/schemas/{event_type}` and
//! `.../{version}`), and the AsyncAPI 3.0 document of the Kafka topic the
//! relay publishes to (`GET /asyncapi.json`).
//!
//! All three are public, like `/openapi.json`: they describe the contract
//! and hold no tenant's data, and a consumer resolving a record's
//! `ce_dataschema` should not need a user token.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;

use scaidrive_domain::catalogue::{self, EventSchema, CLOUDEVENTS_TYPE_PREFIX, DIALECT};
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::ApiPath;
use super::state::AppState;
use crate::relay::cloudevents::schema_url;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events/schemas", get(index))
        .route("/events/schemas/{event_type}", get(current))
        .route("/events/schemas/{event_type}/{version}", get(versioned))
        .route("/asyncapi.json", get(asyncapi))
}

/// The schemas are built from the domain's types once, on first use.
static ALL: LazyLock<Vec<EventSchema>> = LazyLock::new(catalogue::all);
static CURRENT: LazyLock<Vec<EventSchema>> = LazyLock::new(catalogue::current);

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(index, current, versioned, asyncapi))]
pub struct CatalogueDoc;

fn json_response(content_type: &'static str, body: &Value) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

/// Every event type and schema version, with where its schema is.
#[utoipa::path(get, path = "/events/schemas", tag = "catalogue", security(()), responses(
    (status = 200, description = "The event types, each with its schema versions and URL", body = Object),
))]
async fn index() -> Response {
    let schemas: Vec<Value> = ALL
        .iter()
        .map(|s| {
            json!({
                "event_type": s.event_type,
                "schema_version": s.schema_version,
                "family": s.family,
                "description": s.description,
                "cloudevents_type": format!("{CLOUDEVENTS_TYPE_PREFIX}{}", s.event_type),
                "url": schema_url(&s.event_type, s.schema_version),
            })
        })
        .collect();
    json_response(
        "application/json",
        &json!({ "dialect": DIALECT, "schemas": schemas }),
    )
}

fn unknown(event_type: &str) -> ApiError {
    ApiError::NotFound(format!("no event type '{event_type}'"))
}

/// The JSON Schema of an event type's current version: the whole published
/// record (envelope and data).
#[utoipa::path(get, path = "/events/schemas/{event_type}", tag = "catalogue", security(()),
    params(("event_type" = String, Path, description = "e.g. `share-created`")),
    responses(
        (status = 200, description = "A JSON Schema (draft-07)", body = Object,
            content_type = "application/schema+json"),
    ),
)]
async fn current(ApiPath(event_type): ApiPath<String>) -> ApiResult<Response> {
    let s = CURRENT
        .iter()
        .find(|s| s.event_type == event_type)
        .ok_or_else(|| unknown(&event_type))?;
    Ok(json_response("application/schema+json", &s.schema))
}

/// The JSON Schema of one version of an event type (events keep the version
/// they were written with; `/events` and Kafka publish them as stored).
#[utoipa::path(get, path = "/events/schemas/{event_type}/{version}", tag = "catalogue",
    security(()),
    params(
        ("event_type" = String, Path, description = "e.g. `share-created`"),
        ("version" = i32, Path, minimum = 1, description = "A `schema_version`"),
    ),
    responses(
        (status = 200, description = "A JSON Schema (draft-07)", body = Object,
            content_type = "application/schema+json"),
    ),
)]
async fn versioned(ApiPath((event_type, version)): ApiPath<(String, i32)>) -> ApiResult<Response> {
    let s = ALL
        .iter()
        .find(|s| s.event_type == event_type && s.schema_version == version)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no schema version {version} of event type '{event_type}'"
            ))
        })?;
    Ok(json_response("application/schema+json", &s.schema))
}

/// The AsyncAPI 3.0 document of the event topic.
#[utoipa::path(get, path = "/asyncapi.json", tag = "catalogue", security(()), responses(
    (status = 200, description = "An AsyncAPI 3.0 document", body = Object),
))]
async fn asyncapi(State(state): State<AppState>) -> Response {
    let (brokers, topic) = match &state.config.kafka {
        Some(k) => (Some(k.brokers.clone()), k.topic.clone()),
        None => (None, "scaidrive.events".to_owned()),
    };
    json_response(
        "application/json",
        &asyncapi_document(&topic, brokers.as_deref()),
    )
}

/// Kafka headers every record carries, as a JSON Schema object.
fn headers_schema() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    json!({
        "type": "object",
        "required": ["event_type", "event_id", "schema_version", "ce_specversion", "ce_id",
            "ce_source", "ce_type", "ce_time", "ce_subject", "ce_dataschema", "content-type"],
        "properties": {
            "event_type": string("The event type, e.g. `share-created` (as in the value)."),
            "event_id": string("The event id (as in the value): dedupe on it."),
            "schema_version": string("The schema version of `data`, as decimal text."),
            "tenant_id": string("The tenant, when the event has one."),
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": string("CloudEvents id = `event_id`."),
            "ce_source": string("`/tenants/{tenant_id}/streams/{stream_id}` (`/streams/{stream_id}` for events of no tenant)."),
            "ce_type": string(&format!("`{CLOUDEVENTS_TYPE_PREFIX}{{event_type}}`.")),
            "ce_time": {"type": "string", "format": "date-time",
                "description": "When the event occurred (= `occurred_at`)."},
            "ce_subject": string("The stream id (= the record key)."),
            "ce_dataschema": string("The URL of this event type's JSON Schema at its version."),
            "content-type": {"type": "string", "const": "application/json"},
        },
    })
}

/// The AsyncAPI document for the relay's topic.
pub fn asyncapi_document(topic: &str, brokers: Option<&str>) -> Value {
    let schemas = &*ALL;
    let mut components_schemas = Map::new();
    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operation_messages = Vec::new();
    components_schemas.insert("Headers".into(), headers_schema());
    for s in schemas {
        let key = message_key(s);
        let mut schema = s.schema.clone();
        if let Some(m) = schema.as_object_mut() {
            m.remove("$schema");
        }
        let example = catalogue::example(&s.schema, &s.schema);
        components_schemas.insert(key.clone(), schema);
        messages.insert(
            key.clone(),
            json!({
                "name": format!("{CLOUDEVENTS_TYPE_PREFIX}{}", s.event_type),
                "title": format!("{} (schema version {})", s.event_type, s.schema_version),
                "summary": s.description.clone().unwrap_or_else(|| format!("A {} event of the {} family.", s.event_type, s.family)),
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/Headers"},
                "payload": {
                    "schemaFormat": "application/schema+json;version=draft-07",
                    "schema": {"$ref": format!("#/components/schemas/{key}")},
                },
                "correlationId": {
                    "description": "The event id; unique per event, the key to dedupe on.",
                    "location": "$message.payload#/event_id",
                },
                "bindings": {"kafka": {
                    "key": {"type": "string", "description": "The stream id: one stream's events share a partition and keep their order."},
                    "bindingVersion": "0.5.0",
                }},
                "examples": [{"name": "example", "payload": example}],
}),
        );
        channel_messages.insert(
            key.clone(),
            json!({"$ref": format!("#/components/messages/{key}")}),
        );
        operation_messages.push(json!({"$ref": format!("#/channels/events/messages/{key}")}));
    }
    let mut doc = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "ScaiDrive events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": concat!(
                "Every event of ScaiDrive's log, published to one Kafka topic by the relay.\n\n",
                "* **Record**: key = the stream id, value = the event envelope as JSON ",
                "(the same object `GET /api/v1/events` answers with), headers = `event_type`, ",
                "`event_id`, `schema_version`, `tenant_id` and the CloudEvents Kafka binding ",
                "in binary mode (`ce_specversion` 1.0, `ce_id`, `ce_source`, `ce_type`, `ce_time`, ",
                "`ce_subject`, `ce_dataschema`, `content-type: application/json`).\n",
                "* **Ordering**: the events of one stream arrive in stream order ",
                "(`stream_version` 1, 2, ...) because they share a key and so a partition; ",
                "there is no order across streams.\n",
                "* **Delivery**: at least once. After a broker outage or a relay restart an ",
                "event may arrive again: dedupe on `event_id` (= `ce_id`).\n",
                "* **Replay**: the topic holds the whole log from its first event; read it ",
                "from the earliest offset to rebuild any state.\n",
                "* **Schemas**: each message's payload is the JSON Schema (draft-07) of its ",
                "event type at its schema version, also served at ",
                "`/api/v1/events/schemas/{event_type}/{schema_version}`. A type's schema gains ",
                "only optional fields within a version; anything else raises `schema_version`.",
            ),
        },
        "defaultContentType": "application/json",
        "channels": {
            "events": {
                "address": topic,
                "title": "The event log",
                "description": "Every event of every tenant, keyed by stream id.",
                "messages": channel_messages,
                "bindings": {"kafka": {"topic": topic, "bindingVersion": "0.5.0"}},
            },
        },
        "operations": {
            "consumeEvents": {
                "action": "receive",
                "title": "Consume the event log",
                "summary": "Read every partition from the earliest offset; dedupe on event_id.",
                "channel": {"$ref": "#/channels/events"},
                "messages": operation_messages,
            },
        },
        "components": {
            "schemas": components_schemas,
            "messages": messages,
        },
    });
    if let (Some(brokers), Some(m)) = (brokers, doc.as_object_mut()) {
        let host = brokers
            .split(',')
            .next()
            .unwrap_or(brokers)
            .trim()
            .to_owned();
        m.insert(
            "servers".into(),
            json!({"kafka": {
                "host": host,
                "protocol": "kafka",
                "description": format!("The configured brokers: {brokers}"),
            }}),
        );
        if let Some(channel) = doc.pointer_mut("/channels/events") {
            if let Some(c) = channel.as_object_mut() {
                c.insert("servers".into(), json!([{"$ref": "#/servers/kafka"}]));
            }
        }
    }
    doc
}

/// The component and message name of one event type and version.
fn message_key(s: &EventSchema) -> String {
    format!("{}.v{}", s.event_type, s.schema_version)
}
