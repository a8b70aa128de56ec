//! The services a running server is made of (database, store, command bus,
//! projector, caches, auth, blobs, limiter, secrets, leases, hub) and
//! [`AppState`], the cheap handle to them. [`crate::app`] builds them;
//! handlers reach them through axum state and workers (mail, webhooks,
//! maintenance) receive them when they are spawned, so no worker depends on
//! the HTTP layer.

use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use scaidrive_domain::access::Membership;
use scaidrive_domain::tenancy::User;
use scaidrive_domain::LogPosition;
use scaidrive_projections::db::Db;
use scaidrive_projections::drive_queries::ShareRow;

use crate::auth::Authenticator;
use crate::blob::BlobStore;
use crate::command::CommandBus;
use crate::config::Config;
use crate::projector::Projector;
use crate::read_cache::{self, ReadCache};
use crate::store::DynStore;

/// The services the application is made of, built once by
/// [`crate::app::Application::build`]: what handlers and workers share.
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
    /// Signs the log's checkpoints; its verifier key is public.
    pub log_key: Arc<crate::proofs::NamedKey>,
    /// The configured Kafka cluster, for readiness.
    #[cfg(feature = "kafka")]
    pub kafka: Option<crate::relay::KafkaProbe>,
    /// Which background workers this process runs now.
    pub leases: crate::lease::Leases,
    /// Live changes for WebSockets.
    pub hub: Arc<crate::hub::Hub>,
    /// The keyword search index this process feeds and reads (`None`:
    /// it could not be opened; search answers 502).
    pub search: Option<Arc<crate::search::indexer::Indexer>>,
    /// The vector index and its embedding provider (`Err`: none is
    /// configured, or it could not be loaded; the detail says which).
    pub semantic: Result<Arc<crate::search::semantic::SemanticIndexer>, String>,
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
