//! Secrets in events: which payload fields hold one, the protected forms a
//! secret takes in the log, and the one function every outward channel
//! (`/events`, its SSE tail, the audit view and export, webhook bodies, the
//! Kafka relay, `events tail`) passes an event's data through.
//!
//! New events never hold a secret in the clear: a value the service must read
//! back (a link token, a password hash, a webhook signing secret) is sealed
//! under the server key (`sealed:v1:...`), and a value only ever compared (an
//! emailed one-time code) is a keyed digest (`hmac:v1:...`). Both are safe to
//! publish, so outward views of new events equal the stored events and their
//! hashes can be recomputed. Events written before sealing existed hold the
//! plaintext; replay still reads it, and [`outward`] replaces it with
//! [`REDACTED`].

use serde_json::Value;

/// What an outward view shows instead of a secret.
pub const REDACTED: &str = "[redacted]";
/// Prefix of a value sealed (AEAD) under the server key.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// Prefix of a keyed digest (HMAC-SHA256 under the server key).
pub const MAC_PREFIX: &str = "hmac:v1:";

/// Fields that hold a secret in any event, at any depth. A connector's
/// credentials go in a field named here (sealed), so they are covered the
/// day connectors exist.
pub const SECRET_FIELDS: &[&str] = &[
    "password_hash",
    "code_hash",
    "secret",
    "credentials",
    "client_secret",
    "refresh_token",
    "api_key",
    "private_key",
];

/// Top-level fields that hold a secret only in the given event type (the
/// name alone would say too little: `token` is a capability in a link event).
pub fn event_secret_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "link-created" => &["token", "short_code"],
        "link-regenerated" => &["token", "short_code", "old_token", "old_short_code"],
        _ => &[],
    }
}

/// Whether a stored value is in a protected form (sealed or a keyed digest).
pub fn is_protected(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX) || value.starts_with(MAC_PREFIX)
}

/// An event's data as it may leave the service: every secret field whose
/// value is not in a protected form becomes [`REDACTED`]; everything else
/// is unchanged.
pub fn outward(event_type: &str, data: &Value) -> Value {
    let top = event_secret_fields(event_type);
    match data {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if top.contains(&k.as_str()) || SECRET_FIELDS.contains(&k.as_str()) {
                        guarded(v)
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => redacted(other),
    }
}

/// Whether [`outward`] changes this event's data (only events written
/// before sealing existed, which hold a secret in the clear).
pub fn needs_redaction(event_type: &str, data: &Value) -> bool {
    outward(event_type, data) != *data
}

/// Applies [`SECRET_FIELDS`] at every depth.
fn redacted(data: &Value) -> Value {
    match data {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if SECRET_FIELDS.contains(&k.as_str()) {
                        guarded(v)
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// A secret field's value: kept when absent or protected, else the marker.
fn guarded(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) if is_protected(s) => v.clone(),
        _ => Value::String(REDACTED.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plaintext_secrets_are_redacted_and_protected_forms_kept() {
        let data = json!({
            "token": "plain-token",
            "short_code": "sealed:v1:abc",
            "options": {"password_hash": "$argon2id$v=19$...", "custom_name": "x"},
            "hooks": [{"secret": "s3cret"}, {"secret": null}],
            "code_hash": "hmac:v1:00ff",
            "secret": "top-level",
        });
        let out = outward("link-created", &data);
        assert_eq!(out["token"], REDACTED);
        assert_eq!(out["short_code"], "sealed:v1:abc");
        assert_eq!(out["options"]["password_hash"], REDACTED);
        assert_eq!(out["options"]["custom_name"], "x");
        assert_eq!(out["hooks"][0]["secret"], REDACTED);
        assert_eq!(out["hooks"][1]["secret"], Value::Null);
        assert_eq!(out["code_hash"], "hmac:v1:00ff");
        assert_eq!(out["secret"], REDACTED);
        assert!(needs_redaction("link-created", &data));
    }

    #[test]
    fn a_token_is_only_secret_where_its_event_type_says_so() {
        let data = json!({"token": "not-a-capability"});
        assert_eq!(outward("folder-created", &data), data);
        assert_eq!(outward("link-regenerated", &data)["token"], REDACTED);
    }

    #[test]
    fn nested_credentials_of_any_shape_are_redacted() {
        let data = json!({"connector": {"credentials": {"user": "u", "password": "p"}}});
        assert_eq!(
            outward("connector-created", &data)["connector"]["credentials"],
            REDACTED
        );
        assert!(!needs_redaction("connector-created", &json!({"name": "n"})));
    }
}
