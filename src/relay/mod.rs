//! The Kafka relay (SPEC §4.10): publishes every event of the log, in log
//! order, to one topic with key = stream id (so one stream's events share a
//! partition and keep their order) and value = the event envelope, the same
//! JSON `GET /events` answers with. It reads the log through the gap-safe
//! `EventStore::read_all` from its own checkpoint and stores the checkpoint
//! only after the broker acknowledged every event up to it: delivery is
//! at-least-once, and consumers dedupe on `event_id`.

use scaidrive_domain::LogPosition;
use scaidrive_projections::checkpoint::{self, Checkpoint};
use scaidrive_projections::db::Db;

pub mod cloudevents;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
pub use kafka::{spawn, tail, KafkaProbe};

/// The relay's row in `projection_checkpoints` (it is a consumer of the log
/// like any projection, only its effect lives outside the database).
pub const CHECKPOINT: &str = "kafka-relay";

/// Where the relay resumes.
pub async fn load_checkpoint(db: &Db) -> Result<LogPosition, sqlx::Error> {
    Ok(checkpoint::read(db, CHECKPOINT)
        .await?
        .map(|c| c.position)
        .unwrap_or(LogPosition::START))
}

/// Records that everything up to `position` was delivered.
pub async fn store_checkpoint(db: &Db, position: LogPosition) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    checkpoint::store(
        &mut tx,
        CHECKPOINT,
        Checkpoint {
            version: 1,
            position,
        },
    )
    .await?;
    tx.commit().await
}

/// The Kafka record value of one event: its public envelope, the JSON
/// `GET /events` answers with, secrets in the clear redacted (see
/// `scaidrive_domain::secret`).
pub fn value(e: &scaidrive_domain::RecordedEvent) -> String {
    e.envelope().to_string()
}

/// The Kafka record headers of one event.
pub fn headers(e: &scaidrive_domain::RecordedEvent) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("event_type", e.event_type.clone()),
        (
            "event_id",
            scaidrive_domain::id::EventId::from_uuid(e.event_id).to_string(),
        ),
        ("schema_version", e.schema_version.to_string()),
    ];
    if let Some(t) = &e.tenant_id {
        h.push(("tenant_id", t.clone()));
    }
    h.extend(cloudevents::headers(e));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use scaidrive_domain::{EventMetadata, RecordedEvent};
    use serde_json::json;

    fn event(event_type: &str, data: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            log: LogPosition::new(1, 1),
            stream_id: "lnk_1".into(),
            stream_version: 1,
            event_id: uuid::Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            tenant_id: Some("ten_1".into()),
            data,
            metadata: EventMetadata {
                occurred_at: Utc::now(),
                actor: Default::default(),
                correlation_id: None,
                causation_id: None,
            },
            recorded_at: Utc::now(),
            hash: "00".into(),
        }
    }

    #[test]
    fn the_record_value_never_carries_a_secret_in_the_clear() {
        let old = event(
            "link-regenerated",
            json!({
                "token": "tok-plain", "short_code": "CODEPLN2",
                "old_token": "tok-old", "old_short_code": "CODEOLD2",
            }),
        );
        let v = value(&old);
        for s in ["tok-plain", "CODEPLN2", "tok-old", "CODEOLD2"] {
            assert!(!v.contains(s), "{s} leaked: {v}");
        }
        let hook = event(
            "webhook-created",
            json!({"secret": "hook-secret", "options": {"password_hash": "$argon2id$x"}}),
        );
        let v = value(&hook);
        assert!(!v.contains("hook-secret") && !v.contains("argon2id"), "{v}");
    }

    #[test]
    fn a_sealed_event_is_published_as_stored() {
        let data = json!({"token": "sealed:v1:AAAA", "short_code": "sealed:v1:BBBB"});
        let published: serde_json::Value =
            serde_json::from_str(&value(&event("link-created", data.clone()))).unwrap();
        assert_eq!(published["data"], data);
    }
}
