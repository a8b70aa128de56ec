//! The contract between read models and the runner that feeds them.

use async_trait::async_trait;
use scaidrive_domain::RecordedEvent;

use crate::db::Tx;

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

/// A read model folded from the log.
///
/// The runner calls `apply` for every event whose type `handles` accepts, in
/// log order, inside the transaction that also moves the checkpoint, so each
/// event is applied exactly once.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name; the checkpoint row's key.
    fn name(&self) -> &'static str;
    /// Bump when `apply` changes meaning: the read model is rebuilt from zero.
    fn version(&self) -> i32;
    /// Whether this projection cares about an event type.
    fn handles(&self, event_type: &str) -> bool;
    /// Folds one event into the read model.
    async fn apply(&self, tx: &mut Tx, event: &RecordedEvent) -> Result<(), ProjectionError>;
    /// Empties the read model's tables (before a rebuild from zero).
    async fn reset(&self, tx: &mut Tx) -> Result<(), ProjectionError>;
}
