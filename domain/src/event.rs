//! Events as stored and as published: the envelope, its metadata, the canonical
//! bytes behind the tamper-evident hash chain, and the trait that turns an
//! aggregate's event enum into (type, data) pairs and back.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::id::EventId;

/// Who caused an event, as far as the service knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `act.client_id` or `act.sub` of a delegated (RFC 8693) token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// Context stored beside every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

/// An event on its way into the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub tenant_id: Option<String>,
    pub data: Value,
    pub metadata: EventMetadata,
}

/// A position in the global log.
///
/// `commit` orders transactions (Postgres: the writing transaction's xid8;
/// SQLite: a counter taken under the single writer lock) and `position`
/// orders events inside and across them. Readers order by the pair; a
/// checkpoint is the pair of the last event applied.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    pub commit: i64,
    pub position: i64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: LogPosition = LogPosition {
        commit: 0,
        position: 0,
    };

    pub const fn new(commit: i64, position: i64) -> Self {
        Self { commit, position }
    }

    /// Opaque text form for cursors and headers: `"{commit}.{position}"`,
    /// and `"0"` for the start of the log.
    pub fn to_token(self) -> String {
        if self == Self::START {
            "0".to_owned()
        } else {
            format!("{}.{}", self.commit, self.position)
        }
    }

    /// Parses what [`to_token`](Self::to_token) wrote.
    pub fn parse_token(s: &str) -> Option<Self> {
        if s == "0" {
            return Some(Self::START);
        }
        let (c, p) = s.split_once('.')?;
        let commit = c.parse().ok().filter(|v: &i64| *v >= 0)?;
        let position = p.parse().ok().filter(|v: &i64| *v >= 0)?;
        Some(Self { commit, position })
    }
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub log: LogPosition,
    pub stream_id: String,
    /// 1 for the first event of a stream.
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub tenant_id: Option<String>,
    pub data: Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
    /// Hex SHA-256 over the previous event's hash of this stream and this
    /// event's canonical bytes.
    pub hash: String,
}

impl RecordedEvent {
    /// The public envelope (SPEC §4.10); secrets in the clear (events
    /// written before sealing) are redacted, see [`crate::secret`].
    pub fn envelope(&self) -> Value {
        serde_json::json!({
            "event_id": EventId::from_uuid(self.event_id).to_string(),
            "position": self.log.position,
            "stream_id": self.stream_id,
            "stream_version": self.stream_version,
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "tenant_id": self.tenant_id,
            "occurred_at": self.metadata.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "actor": self.metadata.actor,
            "correlation_id": self.metadata.correlation_id,
            "causation_id": self.metadata.causation_id,
            "data": crate::secret::outward(&self.event_type, &self.data),
            "hash": self.hash,
        })
    }

    /// Decodes the payload into an aggregate's event type, upcasting old schemas.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, serde_json::Error> {
        E::decode(&self.event_type, self.schema_version, self.data.clone())
    }
}

/// The fields covered by the hash, in a fixed order with sorted object keys.
pub struct HashInput<'a> {
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub tenant_id: Option<&'a str>,
    pub data: &'a Value,
    pub metadata: &'a EventMetadata,
}

/// The hash-chain link for one event: hex(SHA-256(prev_hash ‖ canonical bytes)).
pub fn chain_hash(prev_hash: &str, input: &HashInput<'_>) -> String {
    let mut canonical = String::with_capacity(256);
    let meta = serde_json::to_value(input.metadata).unwrap_or(Value::Null);
    let doc = serde_json::json!({
        "stream_id": input.stream_id,
        "stream_version": input.stream_version,
        "event_id": input.event_id.to_string(),
        "event_type": input.event_type,
        "schema_version": input.schema_version,
        "tenant_id": input.tenant_id,
        "data": input.data,
        "metadata": meta,
    });
    write_canonical(&doc, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// JSON with object keys sorted at every level, independent of how the map
/// type orders them, so bytes survive a round trip through jsonb.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// For an optional field whose value may itself be `null`
/// (`Option<Option<T>>` with `#[serde(default, deserialize_with = "present")]`):
/// a field that is there, `null` included, is `Some`; only a missing field
/// (an event written before the field existed) is `None`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// An aggregate's event enum, serialised as `{"type": "kebab-name", "data": {..}}`.
///
/// Implementors derive serde with `#[serde(tag = "type", content = "data",
/// rename_all = "kebab-case")]`; the default methods do the rest.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The schema version new events of this type are written with.
    fn schema_version(_event_type: &str) -> i32 {
        1
    }

    /// Lifts stored data of an older schema to the current one.
    fn upcast(_event_type: &str, _from_version: i32, data: Value) -> Value {
        data
    }

    /// Splits the event into its type name and payload.
    fn encode(&self) -> (String, Value) {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => {
                let ty = match map.remove("type") {
                    Some(Value::String(s)) => s,
                    _ => String::new(),
                };
                let data = map
                    .remove("data")
                    .unwrap_or(Value::Object(Default::default()));
                (ty, data)
            }
            _ => (String::new(), Value::Null),
        }
    }

    /// The kebab-case type name.
    fn event_type(&self) -> String {
        self.encode().0
    }

    /// Rebuilds the event from stored parts.
    fn decode(
        event_type: &str,
        schema_version: i32,
        data: Value,
    ) -> Result<Self, serde_json::Error> {
        let current = Self::schema_version(event_type);
        let data = if schema_version < current {
            Self::upcast(event_type, schema_version, data)
        } else {
            data
        };
        let mut map = serde_json::Map::new();
        map.insert("type".into(), Value::String(event_type.to_owned()));
        if !data.is_null() {
            map.insert("data".into(), data);
        }
        serde_json::from_value(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": null}});
        let mut s = String::new();
        write_canonical(&v, &mut s);
        assert_eq!(s, r#"{"a":{"c":null,"z":[1,{"x":3,"y":2}]},"b":1}"#);
    }

    #[test]
    fn log_position_tokens_round_trip() {
        for p in [LogPosition::START, LogPosition::new(7, 42)] {
            assert_eq!(LogPosition::parse_token(&p.to_token()), Some(p));
        }
        assert_eq!(LogPosition::parse_token("x"), None);
        assert_eq!(LogPosition::parse_token("-1.3"), None);
    }
}
