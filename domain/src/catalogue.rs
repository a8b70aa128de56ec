//! The event catalogue: one JSON Schema (draft-07) per event type and schema
//! version, generated from the aggregates' event enums with `schemars`, so a
//! schema can never drift from the Rust type that writes the event.
//!
//! A schema describes the whole published record (the envelope `GET /events`
//! answers with and the Kafka relay publishes), with `event_type` and
//! `schema_version` fixed to their values and `data` described by the
//! variant's fields. Every family (event enum) is listed once in
//! [`families`]; a test scans the sources for `impl DomainEvent for ...` so a
//! new family cannot be left out, and another compares every schema with its
//! committed snapshot in `domain/schemas/` (see ARCHITECTURE.md, "Event schema
//! evolution").

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::event::{Actor, DomainEvent};
use crate::id::EventId;

/// The JSON Schema dialect every catalogue schema is written in.
pub const DIALECT: &str = "http://json-schema.org/draft-07/schema#";

/// The CloudEvents `type` (and AsyncAPI message name) prefix.
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "ai.scailabs.scaidrive.";

/// One event type at one schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// Kebab-case, e.g. `share-created`.
    pub event_type: String,
    pub schema_version: i32,
    /// The event enum it belongs to, e.g. `ShareEvent`.
    pub family: &'static str,
    /// The variant's doc comment, if any.
    pub description: Option<String>,
    /// The JSON Schema of the whole envelope (a self-contained document).
    pub schema: Value,
}

/// An event enum: how to describe it and how to decode its data.
struct Family {
    name: &'static str,
    /// The enum's generated schema (adjacently tagged: `{type, data}`).
    schema: fn() -> Value,
    version: fn(&str) -> i32,
    /// Decodes stored data (upcasting) and encodes it again as the current version.
    roundtrip: fn(&str, i32, Value) -> Result<Value, serde_json::Error>,
}

fn family<E: DomainEvent + JsonSchema>(name: &'static str) -> Family {
    Family {
        name,
        schema: || {
            SchemaSettings::draft07()
                .with(|s| s.inline_subschemas = true)
                .into_generator()
                .into_root_schema_for::<E>()
                .to_value()
        },
        version: E::schema_version,
        roundtrip: |ty, version, data| E::decode(ty, version, data).map(|e| e.encode().1),
    }
}

/// Every event enum of the domain. A new aggregate's enum is added here
/// (a test fails until it is).
fn families() -> Vec<Family> {
    use crate::{access_log, drive, group, notification, quota, sharing, sync, tenancy, webhook};
    vec![
        family::<tenancy::PartnerEvent>("PartnerEvent"),
        family::<tenancy::TenantEvent>("TenantEvent"),
        family::<tenancy::UserEvent>("UserEvent"),
        family::<group::GroupEvent>("GroupEvent"),
        family::<drive::share::ShareEvent>("ShareEvent"),
        family::<drive::folder::FolderEvent>("FolderEvent"),
        family::<drive::file::FileEvent>("FileEvent"),
        family::<drive::upload::UploadEvent>("UploadEvent"),
        family::<sharing::InvitationEvent>("InvitationEvent"),
        family::<sharing::AclEvent>("AclEvent"),
        family::<crate::link::LinkEvent>("LinkEvent"),
        family::<access_log::AccessLogEvent>("AccessLogEvent"),
        family::<quota::account::QuotaEvent>("QuotaEvent"),
        family::<sync::DeviceEvent>("DeviceEvent"),
        family::<sync::ConflictEvent>("ConflictEvent"),
        family::<webhook::WebhookEvent>("WebhookEvent"),
        family::<notification::NotificationEvent>("NotificationEvent"),
        family::<crate::connector::ConnectorEvent>("ConnectorEvent"),
        family::<crate::log::LogEvent>("LogEvent"),
    ]
}

/// Names of the enums [`families`] lists (for the completeness test).
pub fn family_names() -> Vec<&'static str> {
    families().iter().map(|f| f.name).collect()
}

/// Schemas of versions no longer written, kept verbatim so consumers of old
/// events (which the log keeps, and `/events` and Kafka publish as stored)
/// can still read them: `(event_type, schema_version, schema)`. When an event
/// type's version is bumped, its previous snapshot is added here.
const FROZEN: &[(&str, i32, &str)] = &[];

/// Every event type at its current schema version, sorted by type.
pub fn current() -> Vec<EventSchema> {
    let mut out = Vec::new();
    for f in families() {
        let root = (f.schema)();
        let definitions = root.get("definitions").cloned();
        for variant in root
            .get("oneOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(event_type) = variant_type(variant) else {
                continue;
            };
            let data = variant
                .pointer("/properties/data")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let description = variant
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let version = (f.version)(&event_type);
            let schema = envelope_schema(
                &event_type,
                version,
                description.as_deref(),
                data,
                definitions.clone(),
            );
            out.push(EventSchema {
                event_type,
                schema_version: version,
                family: f.name,
                description,
                schema,
            });
        }
    }
    out.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    out
}

/// Every schema the catalogue serves: the current versions and the frozen
/// older ones, sorted by type and version.
pub fn all() -> Vec<EventSchema> {
    let mut out = current();
    for (ty, version, text) in FROZEN {
        let Ok(schema) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let family = out
            .iter()
            .find(|s| s.event_type == *ty)
            .map(|s| s.family)
            .unwrap_or("");
        out.push(EventSchema {
            event_type: (*ty).to_owned(),
            schema_version: *version,
            family,
            description: schema
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            schema,
        });
    }
    out.sort_by(|a, b| {
        (a.event_type.as_str(), a.schema_version).cmp(&(b.event_type.as_str(), b.schema_version))
    });
    out
}

/// One event type's schema: the given version, or the current one.
pub fn find(event_type: &str, version: Option<i32>) -> Option<EventSchema> {
    let current = current().into_iter().find(|s| s.event_type == event_type)?;
    match version {
        None => Some(current),
        Some(v) if v == current.schema_version => Some(current),
        Some(v) => all()
            .into_iter()
            .find(|s| s.event_type == event_type && s.schema_version == v),
    }
}

/// Decodes `data` stored as `schema_version` into the domain type (upcasting
/// old versions) and encodes it again: the current version's data. `None`
/// when no family knows the type.
pub fn roundtrip(
    event_type: &str,
    schema_version: i32,
    data: Value,
) -> Option<Result<Value, serde_json::Error>> {
    let families = families();
    let f = families.iter().find(|f| {
        let root = (f.schema)();
        root.get("oneOf")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                vs.iter()
                    .any(|v| variant_type(v).as_deref() == Some(event_type))
            })
    })?;
    Some((f.roundtrip)(event_type, schema_version, data))
}

/// The kebab-case type a `oneOf` entry of an adjacently tagged enum stands for.
fn variant_type(variant: &Value) -> Option<String> {
    let t = variant.pointer("/properties/type")?;
    if let Some(c) = t.get("const").and_then(Value::as_str) {
        return Some(c.to_owned());
    }
    t.get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn sub_schema<T: JsonSchema>() -> Value {
    let mut v = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Some(m) = v.as_object_mut() {
        m.remove("$schema");
        m.remove("title");
    }
    v
}

/// The whole published record of one event type at one version.
fn envelope_schema(
    event_type: &str,
    version: i32,
    description: Option<&str>,
    data: Value,
    definitions: Option<Value>,
) -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    let mut properties = Map::new();
    properties.insert(
        "event_id".into(),
        json!({"description": "Unique per event: consumers dedupe on it (= ce_id).",
               "allOf": [sub_schema::<EventId>()]}),
    );
    properties.insert(
        "position".into(),
        json!({"type": "integer", "description": "The event's position in the global log."}),
    );
    properties.insert(
        "stream_id".into(),
        json!({"type": "string", "minLength": 1,
               "description": "The aggregate the event belongs to (= the Kafka key)."}),
    );
    properties.insert(
        "stream_version".into(),
        json!({"type": "integer", "minimum": 1,
               "description": "1 for a stream's first event, then +1 per event."}),
    );
    properties.insert("event_type".into(), json!({"const": event_type}));
    properties.insert("schema_version".into(), json!({"const": version}));
    properties.insert("tenant_id".into(), nullable_string.clone());
    properties.insert(
        "occurred_at".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    properties.insert("actor".into(), sub_schema::<Actor>());
    properties.insert("correlation_id".into(), nullable_string.clone());
    properties.insert("causation_id".into(), nullable_string);
    properties.insert("data".into(), data);
    properties.insert(
        "hash".into(),
        json!({"type": "string", "pattern": "^[0-9a-f]{64}$",
               "description": "Hex SHA-256 link of the stream's hash chain."}),
    );
    let required: Vec<&String> = properties.keys().collect();
    let mut doc = json!({
        "$schema": DIALECT,
        "title": format!("{event_type} v{version}"),
        "description": description.unwrap_or(""),
        "type": "object",
        "required": required,
        "properties": properties,
    });
    if let (Some(defs), Some(m)) = (definitions, doc.as_object_mut()) {
        if defs.as_object().is_some_and(|d| !d.is_empty()) {
            m.insert("definitions".into(), defs);
        }
    }
    doc
}

/// Whether `new` accepts everything `old` accepted and promises everything
/// `old` promised, changes that need no version bump: only descriptions
/// differ, or an object gained properties that are not required.
pub fn compatible(old: &Value, new: &Value) -> Result<(), String> {
    compatible_at("", old, new)
}

const IGNORED: &[&str] = &["description", "title", "examples", "default", "$comment"];

fn compatible_at(at: &str, old: &Value, new: &Value) -> Result<(), String> {
    if old == new {
        return Ok(());
    }
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return Err(format!("{at}: {old} became {new}"));
    };
    let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        if IGNORED.contains(&k.as_str()) {
            continue;
        }
        let here = format!("{at}/{k}");
        match (k.as_str(), o.get(k), n.get(k)) {
            ("properties" | "definitions", Some(op), Some(np)) => {
                let empty = Map::new();
                let (op, np) = (
                    op.as_object().unwrap_or(&empty),
                    np.as_object().unwrap_or(&empty),
                );
                for (name, os) in op {
                    match np.get(name) {
                        Some(ns) => compatible_at(&format!("{here}/{name}"), os, ns)?,
                        None => return Err(format!("{here}/{name} was removed")),
                    }
                }
            }
            ("properties", None, Some(_)) => {}
            ("required", o_req, n_req) => {
                let set = |v: Option<&Value>| -> BTreeMap<String, ()> {
                    v.and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|s| (s.to_owned(), ()))
                        .collect()
                };
                let (os, ns) = (set(o_req), set(n_req));
                if os != ns {
                    return Err(format!(
                        "{here}: required {:?} became {:?} (a new field must be optional)",
                        os.keys().collect::<Vec<_>>(),
                        ns.keys().collect::<Vec<_>>()
                    ));
                }
            }
            ("oneOf" | "anyOf" | "allOf", Some(Value::Array(oa)), Some(Value::Array(na)))
                if oa.len() == na.len() =>
            {
                for (i, (a, b)) in oa.iter().zip(na).enumerate() {
                    compatible_at(&format!("{here}/{i}"), a, b)?;
                }
            }
            ("items" | "additionalProperties" | "not", Some(a), Some(b)) => {
                compatible_at(&here, a, b)?;
            }
            (_, a, b) if a == b => {}
            (_, a, b) => {
                return Err(format!(
                    "{here}: {} became {}",
                    a.map(Value::to_string).unwrap_or_else(|| "absent".into()),
                    b.map(Value::to_string).unwrap_or_else(|| "absent".into())
                ))
            }
        }
    }
    Ok(())
}

/// A value that satisfies `schema` (every optional property filled in), for
/// documentation examples and for tests that need one event of every type.
/// `root` resolves `$ref`s.
pub fn example(schema: &Value, root: &Value) -> Value {
    example_at(schema, root, 0)
}

fn example_at(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    let Some(s) = schema.as_object() else {
        return Value::Null;
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .unwrap_or(&Value::Null);
        return example_at(target, root, depth + 1);
    }
    if let Some(e) = s
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return e.clone();
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(e) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return e.clone();
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = s.get(key).and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|x| x.get("type") != Some(&json!("null")))
                .or(a.first())
        }) {
            return example_at(first, root, depth + 1);
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ => "null",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            for (k, v) in s
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                out.insert(k.clone(), example_at(v, root, depth + 1));
            }
            Value::Object(out)
        }
        "array" => {
            let item = s
                .get("items")
                .map(|i| example_at(i, root, depth + 1))
                .unwrap_or(Value::Null);
            let n = s
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            Value::Array((0..n).map(|_| item.clone()).collect())
        }
        "string" => Value::String(example_string(s)),
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0).max(1)),
        "number" => json!(s
            .get("minimum")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            .max(1.0)),
        "boolean" => Value::Bool(true),
        _ => Value::Null,
    }
}

fn example_string(s: &Map<String, Value>) -> String {
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        // The id pattern written by `define_id!`.
        if let Some(prefix) = p
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix("[0-9A-HJKMNP-TV-Z]{26}$"))
        {
            return format!("{prefix}{}", "0".repeat(26));
        }
        if p == "^[0-9a-f]{64}$" {
            return "0".repeat(64);
        }
    }
    match s.get("format").and_then(Value::as_str) {
        Some("date-time") => "2026-01-01T00:00:00Z".into(),
        Some("date") => "2026-01-01".into(),
        Some("uuid") => "00000000-0000-7000-8000-000000000000".into(),
        _ => {
            let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(1) as usize;
            "x".repeat(min.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn schema_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
    }

    #[test]
    fn every_event_enum_of_the_domain_is_in_the_catalogue() {
        fn walk(dir: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, found);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for line in text.lines() {
                        if let Some(rest) = line.trim().strip_prefix("impl DomainEvent for ") {
                            found.push(rest.trim_end_matches(" {}").trim_end_matches(" {").into());
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        found.sort();
        let mut listed: Vec<String> = family_names().into_iter().map(String::from).collect();
        listed.sort();
        assert_eq!(
            found, listed,
            "list every event enum in catalogue::families"
        );
    }

    #[test]
    fn every_variant_has_a_schema_and_types_are_unique() {
        let all = current();
        let mut seen = std::collections::BTreeSet::new();
        for s in &all {
            assert!(seen.insert(s.event_type.clone()), "{} twice", s.event_type);
            assert!(s.schema_version >= 1);
        }
        // The number of variants, counted from the enums' serde output.
        let total: usize = families()
            .iter()
            .map(|f| (f.schema)()["oneOf"].as_array().map(Vec::len).unwrap_or(0))
            .sum();
        assert_eq!(all.len(), total);
    }

    #[test]
    fn an_example_of_every_schema_decodes_into_its_domain_event() {
        for s in current() {
            let data = example(&s.schema["properties"]["data"], &s.schema);
            let back = roundtrip(&s.event_type, s.schema_version, data.clone())
                .unwrap_or_else(|| panic!("{}: no family", s.event_type))
                .unwrap_or_else(|e| panic!("{}: {e}: {data}", s.event_type));
            assert!(back.is_object(), "{}: {back}", s.event_type);
        }
    }

    #[test]
    fn compatible_changes_are_told_from_breaking_ones() {
        let old = json!({"type": "object", "required": ["a"],
            "properties": {"a": {"type": "string"}}});
        let added_optional = json!({"type": "object", "required": ["a"],
            "properties": {"a": {"type": "string", "description": "now documented"},
                           "b": {"type": ["string", "null"]}}});
        assert!(compatible(&old, &added_optional).is_ok());
        let added_required = json!({"type": "object", "required": ["a", "b"],
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
        assert!(compatible(&old, &added_required).is_err());
        let removed = json!({"type": "object", "required": [], "properties": {}});
        assert!(compatible(&old, &removed).is_err());
        let retyped = json!({"type": "object", "required": ["a"],
            "properties": {"a": {"type": "integer"}}});
        assert!(compatible(&old, &retyped).is_err());
    }

    /// The committed snapshot of every schema (`domain/schemas/`) matches
    /// what the code generates; a change that is not backward compatible
    /// fails unless the event type's `schema_version` was raised. Set
    /// `SCAIDRIVE_UPDATE_EVENT_SCHEMAS=1` to record new types and versions
    /// and compatible changes.
    #[test]
    fn schemas_match_their_snapshots_and_evolve_compatibly() {
        let update = std::env::var_os("SCAIDRIVE_UPDATE_EVENT_SCHEMAS").is_some();
        let dir = schema_dir();
        let mut problems = Vec::new();
        let mut expected_files = std::collections::BTreeSet::new();
        for s in current() {
            let file = format!("{}.v{}.json", s.event_type, s.schema_version);
            expected_files.insert(file.clone());
            let path = dir.join(&file);
            let pretty = serde_json::to_string_pretty(&s.schema).unwrap() + "\n";
            match std::fs::read_to_string(&path) {
                Err(_) if update => std::fs::write(&path, &pretty).unwrap(),
                Err(_) => problems.push(format!(
                    "{file}: no snapshot (a new event type or version): record it with SCAIDRIVE_UPDATE_EVENT_SCHEMAS=1"
                )),
                Ok(text) => {
                    let old: Value = serde_json::from_str(&text).unwrap();
                    if old == s.schema {
                        continue;
                    }
                    match compatible(&old, &s.schema) {
                        Ok(()) if update => std::fs::write(&path, &pretty).unwrap(),
                        Ok(()) => problems.push(format!(
                            "{file}: changed compatibly; refresh it with SCAIDRIVE_UPDATE_EVENT_SCHEMAS=1"
                        )),
                        Err(why) => problems.push(format!(
                            "{file}: incompatible change ({why}); raise the event's schema_version and upcast the old data"
                        )),
                    }
                }
            }
        }
        // Older versions stay served: their snapshots must be frozen.
        for (ty, version, text) in FROZEN {
            let file = format!("{ty}.v{version}.json");
            expected_files.insert(file.clone());
            let on_disk = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
            if on_disk.trim() != text.trim() {
                problems.push(format!(
                    "{file}: the frozen schema differs from its snapshot"
                ));
            }
        }
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !expected_files.contains(&name) {
                problems.push(format!(
                    "{name}: a snapshot no type or version owns (an older version must be listed in catalogue::FROZEN; a removed type breaks consumers)"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
