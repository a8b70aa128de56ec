//! The contract between read models and the runner that feeds them.

use async_trait::async_trait;
use scaidrive_domain::{AnyEvent, DecodedEvent, RecordedEvent};

use crate::db::Tx;
use crate::tx_execute;

/// Tables projections write without owning them: the notification outbox and
/// the webhook delivery queue. Senders drain and update them; they are never
/// reset, and every insert into them is keyed by the causing event
/// (`ON CONFLICT DO NOTHING`), so a replay queues nothing twice.
///
/// A rebuild's replay writes into throwaway copies of these: every event's
/// messages were queued by the live runner when it applied the event, and a
/// rebuild lets the live runner reach the replay's position before it swaps
/// (ARCHITECTURE.md, "Projections").
pub const QUEUE_TABLES: &[&str] = &["notification_outbox", "webhook_deliveries"];

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("cannot decode {event_type} at position {position}: {message}")]
    Decode {
        event_type: String,
        position: i64,
        message: String,
    },
}

impl ProjectionError {
    pub fn decode(event: &RecordedEvent, err: impl std::fmt::Display) -> Self {
        Self::Decode {
            event_type: event.event_type.clone(),
            position: event.log.position,
            message: err.to_string(),
        }
    }
}

/// The typed payload of an event a projection handles; an event of a known
/// family that did not decode is the projection's error (it stops there, and
/// the runner tries again), as it was when each projection decoded the JSON
/// itself.
pub fn typed(event: &DecodedEvent) -> Result<&AnyEvent, ProjectionError> {
    match &event.event {
        AnyEvent::Undecodable(message) => Err(ProjectionError::decode(event, message)),
        known => Ok(known),
    }
}

/// A read model folded from the log.
///
/// The runner decodes each batch it reads once ([`DecodedEvent`]) and calls
/// `apply_all` with it, in log order, inside the transaction that also moves
/// the checkpoint, so each event is applied exactly once. Projections
/// `match` on the typed payload ([`AnyEvent`], through [`typed`]); the raw
/// JSON stays on the event for the few that store it as it is (audit).
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name; the checkpoint row's key.
    fn name(&self) -> &'static str;
    /// Bump when `apply` changes meaning: the read model is rebuilt from zero.
    fn version(&self) -> i32;
    /// Whether this projection cares about an event type.
    fn handles(&self, event_type: &str) -> bool;
    /// The tables this projection owns: only its `apply` writes them, `reset`
    /// empties them, and a rebuild builds fresh copies of exactly these beside
    /// the live ones and swaps them in. Not listed: tables it only reads (the
    /// event log, another projection's) and the [`QUEUE_TABLES`] it queues
    /// into.
    fn tables(&self) -> &'static [&'static str];
    /// Those of [`tables`](Self::tables) whose rows each belong to one
    /// tenant (a `tenant_id` column) and are written only by that tenant's
    /// own events (events whose `tenant_id` it is), so one tenant's rows can
    /// be recomputed from its events alone. Empty: no tenant recompute.
    fn tenant_tables(&self) -> &'static [&'static str] {
        &[]
    }
    /// Folds one event into the read model.
    ///
    /// It may read its own tables and other projections' tables (never the
    /// event log: what it needs to know is on the events), but what it writes into its own tables must not
    /// depend on another projection's tables (those are at that projection's
    /// position, not this event's); reading them to word a queued message is
    /// fine. A rebuild's replay sees the live versions of every table it does
    /// not own.
    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError>;
    /// Folds a run of events, in order, skipping the ones it does not
    /// handle: the same as [`apply`](Self::apply) on each, which is what it
    /// does unless a projection can share work across the run (a lookup
    /// every event repeats).
    async fn apply_all(&self, tx: &mut Tx, events: &[DecodedEvent]) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| self.handles(&e.event_type)) {
            self.apply(tx, event).await?;
        }
        Ok(())
    }
    /// Empties the read model's tables (before a replay from zero).
    async fn reset(&self, tx: &mut Tx) -> Result<(), ProjectionError> {
        for table in self.tables() {
            tx_execute!(tx, &format!("DELETE FROM {table}"))?;
        }
        Ok(())
    }
}
