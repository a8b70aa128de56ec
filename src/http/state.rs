//! What every handler can reach.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scaidrive_domain::LogPosition;
use scaidrive_projections::db::Db;

use crate::auth::Authenticator;
use crate::blob::BlobStore;
use crate::command::CommandBus;
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
    pub auth: Authenticator,
    pub blob: BlobStore,
    pub limiter: crate::ratelimit::RateLimiter,
    /// The configured Kafka cluster, for readiness.
    #[cfg(feature = "kafka")]
    pub kafka: Option<crate::relay::KafkaProbe>,
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

impl Services {
    /// Waits (bounded) until the read models include `position`.
    pub async fn caught_up(&self, position: Option<LogPosition>) {
        if let Some(p) = position {
            if !self
                .projector
                .wait_for(p, self.config.consistency_wait)
                .await
            {
                // The runners may be backing off after a database outage that
                // outlasted the wait: drive the projections here once, so a
                // write committed just before the outage is not answered from
                // a read model that lacks it (a 404 for a create). If the
                // database is still down, the read that follows answers 503.
                let driven =
                    tokio::time::timeout(self.config.consistency_wait, self.projector.catch_up())
                        .await;
                if !matches!(driven, Ok(Ok(())))
                    || !self.projector.wait_for(p, Duration::ZERO).await
                {
                    tracing::warn!(position = %p.to_token(), "read models did not catch up in time");
                }
            }
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn consistency_wait(&self) -> Duration {
        self.config.consistency_wait
    }
}
