//! What every handler can reach: the services built by the composition root
//! ([`crate::app`], defined in [`crate::services`]), and the read-your-writes
//! wait handlers use after a write.

use std::sync::atomic::Ordering;
use std::time::Duration;

use scaidrive_domain::LogPosition;
use scaidrive_projections::drive_queries::ShareRow;

use crate::command::Committed;

pub use crate::services::{AppState, Services, SHARE_ROW_SOURCES, SIGNED_IN_SOURCES};

impl Services {
    /// A share's row in the caller's tenant: every permission check of a
    /// share, folder or file needs it, and it changes far less often than
    /// what the share holds.
    pub async fn share_row(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<ShareRow>, sqlx::Error> {
        self.shares
            .get_or_load((tenant_id.to_owned(), id.to_owned()), || {
                scaidrive_projections::drive_queries::share(&self.db, tenant_id, id)
            })
            .await
    }

    /// Waits (bounded) until the read models include `position`.
    pub async fn caught_up(&self, position: Option<LogPosition>) {
        self.caught_up_in(position, None).await
    }

    /// Waits (bounded) until the read models that apply `committed`'s events
    /// include them: what the answer to the write, and the caller's next
    /// read, must see. The others are not waited for.
    pub async fn caught_up_to(&self, committed: &Committed) {
        let mask = self
            .projector
            .concerned(committed.events.iter().map(|e| e.event_type.as_str()));
        self.caught_up_in(committed.position, Some(&mask)).await
    }

    async fn caught_up_in(&self, position: Option<LogPosition>, mask: Option<&[bool]>) {
        let Some(p) = position else { return };
        let wait = self.config.consistency_wait;
        if self.projector.wait_for_some(p, mask, wait).await {
            return;
        }
        // The runners may be stalled by a database outage that outlasted the
        // wait. Drive the projections from here until they pass `p` (or a
        // second wait is over), so a write committed just before the outage
        // is not answered from a read model that lacks it (a 404 for a
        // create) once the database is back; while it is still down, the
        // read that follows answers 503.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let driven = tokio::time::timeout(left, self.projector.catch_up()).await;
            if matches!(driven, Ok(Ok(())))
                && self.projector.wait_for_some(p, mask, Duration::ZERO).await
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(position = %p.to_token(), "read models did not catch up in time");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn consistency_wait(&self) -> Duration {
        self.config.consistency_wait
    }
}
