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
    h
}
