//! What every handler can reach.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scaidrive_domain::access::Membership;
use scaidrive_domain::tenancy::User;
use scaidrive_domain::LogPosition;
use scaidrive_projections::db::Db;
use scaidrive_projections::drive_queries::ShareRow;

use super::read_cache::{self, ReadCache};
use crate::auth::Authenticator;
use crate::blob::BlobStore;
use crate::command::{CommandBus, Committed};
use crate::config::Config;
use crate::projector::Projector;
use crate::store::DynStore;

/// The services behind the HTTP layer.
pub struct Services {
    pub config: Config,
    pub db: Db,
    pub store: DynStore,
    pub bus: CommandBus,
    pub projector: Arc<Projector>,
    /// Callers' groups, kept while the groups read model is unchanged.
    pub groups: ReadCache<read_cache::GroupKey, Vec<String>>,
    /// Callers' memberships of shares, kept while the access read model is unchanged.
    pub memberships: ReadCache<read_cache::MembershipKey, Vec<Membership>>,
    /// Whether a share has ACLs, likewise.
    pub share_acls: ReadCache<String, bool>,
    /// Signed-in users by tenant, user and profile claims: the state their
    /// sign-in found (and the position of what it appended), kept until a
    /// user event is applied.
    pub signed_in: ReadCache<read_cache::SignInKey, (User, Option<LogPosition>)>,
    /// Share rows by tenant and id, kept while no share or quota event is
    /// applied (see [`share_row`](Self::share_row)).
    pub shares: ReadCache<(String, String), Option<ShareRow>>,
    pub auth: Authenticator,
    pub blob: BlobStore,
    pub limiter: crate::ratelimit::RateLimiter,
    /// How often refusals and content reads reach the access log.
    pub access_log: crate::access_log::AccessLog,
    /// Seals and opens the secrets kept in the log.
    pub secrets: crate::secrets::SecretKey,
    /// The configured Kafka cluster, for readiness.
    #[cfg(feature = "kafka")]
    pub kafka: Option<crate::relay::KafkaProbe>,
    /// Which background workers this process runs now.
    pub leases: crate::lease::Leases,
    /// Live changes for WebSockets.
    pub hub: Arc<crate::hub::Hub>,
    pub draining: AtomicBool,
    /// Cancelled when the server starts draining; long-lived responses end.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub started: AtomicBool,
}

/// Cheap to clone; handed to every handler.
#[derive(Clone)]
pub struct AppState(pub Arc<Services>);

impl Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What a signed-in user's state is made of: their user events, which the
/// tenancy read model applies.
pub const SIGNED_IN_SOURCES: &[(&str, &[&str])] = &[("tenancy", &["user-"])];

/// What a share's row is made of: the drive read model's share events and
/// the quota read model's account settings (its limit).
pub const SHARE_ROW_SOURCES: &[(&str, &[&str])] = &[("drive", &["share-"]), ("quota", &["quota-"])];

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
