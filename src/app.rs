//! Building the application (bind, connect, migrate, start workers) apart from
//! running it, so tests can start it on port 0 and stop it on demand.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use scaidrive_projections::db::{ConnectOptions, Db};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthConfig, Authenticator};
use crate::command::CommandBus;
use crate::config::Config;
use crate::http;
use crate::projector::Projector;
use crate::read_cache::ReadCache;
use crate::services::{AppState, Services, SHARE_ROW_SOURCES, SIGNED_IN_SOURCES};
use crate::store;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot open the event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot start authentication: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot start projections: {0}")]
    Projector(#[from] crate::projector::ProjectorError),
    #[error("cannot open the blob store: {0}")]
    Blob(#[from] crate::blob::BlobError),
    #[error("cannot start the Kafka relay: {0}")]
    Kafka(String),
    #[error("cannot send mail: {0}")]
    Mail(String),
    #[error("cannot load the secret key: {0}")]
    SecretKey(#[from] crate::secrets::SecretError),
    #[error("cannot start the Merkle log: {0}")]
    LogKey(#[from] crate::proofs::ProofError),
    #[error("cannot use Redis: {0}")]
    Redis(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The database, store and command bus, without HTTP: what the CLI needs.
pub struct Core {
    pub db: Db,
    pub store: store::DynStore,
}

impl Core {
    pub async fn open(config: &Config) -> Result<Core, StartError> {
        if config.database_url.starts_with("sqlite:") {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
        }
        let opts = ConnectOptions {
            max_connections: config.database_max_connections,
            ..Default::default()
        };
        let db = Db::connect(&config.database_url, &opts).await?;
        db.migrate().await?;
        let store = store::open(&db).await?;
        Ok(Core { db, store })
    }
}

/// A built application: bound, connected, workers running.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    workers: Vec<JoinHandle<()>>,
    stop_workers: CancellationToken,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartError> {
        crate::mail::check(&config).map_err(StartError::Mail)?;
        let core = Core::open(&config).await?;
        let secrets = crate::secrets::SecretKey::load(
            config.secret_key.as_ref().map(|s| s.expose()),
            &config.data_dir,
        )?;
        let auth = Authenticator::new(AuthConfig {
            scaikey_url: config.scaikey_url.clone(),
            jwt_issuer: config.jwt_issuer.clone(),
            ..AuthConfig::new(config.data_dir.clone())
        })
        .await?;
        let blob = crate::blob::BlobStore::open(&config.blob, &config.data_dir)?;
        let projector = Projector::new(
            core.db.clone(),
            core.store.clone(),
            scaidrive_projections::all(),
        );
        projector.prepare().await?;
        let stop_workers = CancellationToken::new();
        crate::relay::cloudevents::set_public_url(config.public_url.as_deref());
        let (leases, keeper) = crate::lease::Leases::start(&core.db, stop_workers.clone());
        let mut workers = projector.spawn(&leases, stop_workers.clone());
        workers.extend(keeper);
        #[cfg(not(feature = "kafka"))]
        if config.kafka.is_some() {
            return Err(StartError::Kafka(
                "SCAIDRIVE_KAFKA_BROKERS is set but this build has no Kafka support (cargo feature `kafka`)".into(),
            ));
        }
        #[cfg(feature = "kafka")]
        let kafka = match &config.kafka {
            None => None,
            Some(k) => {
                let probe = crate::relay::KafkaProbe::new(k)
                    .map_err(|e| StartError::Kafka(e.to_string()))?;
                workers.push(crate::relay::spawn(
                    core.db.clone(),
                    core.store.clone(),
                    k.clone(),
                    leases.lease(crate::relay::CHECKPOINT),
                    stop_workers.clone(),
                ));
                Some(probe)
            }
        };
        let limiter = match &config.redis_url {
            None => crate::ratelimit::RateLimiter::new(config.rate_limit_window),
            Some(url) => crate::ratelimit::RateLimiter::shared(
                crate::ratelimit::RedisLimiter::new(
                    url,
                    &config.redis_prefix,
                    config.rate_limit_window,
                )
                .map_err(|e| StartError::Redis(e.to_string()))?,
            ),
        };
        let log_key = Arc::new(crate::proofs::load_key(
            &config.proofs,
            &crate::proofs::origin(&config.proofs, config.public_url.as_deref()),
            &config.data_dir,
        )?);
        if config.proofs.enabled {
            let publish = config
                .proofs
                .publish_url
                .as_deref()
                .map(|u| crate::proofs::Publisher::open(u, &config.blob, &config.data_dir))
                .transpose()?;
            workers.push(crate::proofs::spawn(
                core.db.clone(),
                core.store.clone(),
                log_key.clone(),
                config.proofs.clone(),
                publish,
                leases.lease(crate::proofs::FOLLOWER),
                stop_workers.clone(),
            ));
        }
        let hub = Arc::new(crate::hub::Hub::default());
        workers.push(hub.spawn(core.db.clone(), projector.clone(), stop_workers.clone()));
        let search = match crate::search::indexer::Indexer::open(
            crate::search::Settings::from_env(&config.data_dir),
            core.store.clone(),
            blob.clone(),
        ) {
            Ok(ix) => {
                workers.push(tokio::spawn(ix.clone().run(stop_workers.clone())));
                Some(ix)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the search index; search answers 502");
                None
            }
        };
        let semantic = open_semantic(&config, &core.store, &blob);
        if let Ok(ix) = &semantic {
            workers.push(tokio::spawn(ix.clone().run(stop_workers.clone())));
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        let services = Services {
            bus: CommandBus::new(core.store.clone(), 100_000),
            access_log: crate::access_log::AccessLog::new(config.access_log),
            db: core.db,
            store: core.store,
            groups: ReadCache::new(&projector, "groups"),
            memberships: ReadCache::new(&projector, "access"),
            share_acls: ReadCache::new(&projector, "access"),
            shares: ReadCache::for_events(&projector, SHARE_ROW_SOURCES),
            signed_in: ReadCache::for_events(&projector, SIGNED_IN_SOURCES),
            projector,
            leases,
            auth,
            blob,
            config,
            limiter,
            secrets,
            log_key,
            #[cfg(feature = "kafka")]
            kafka,
            hub,
            search,
            semantic,
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            started: AtomicBool::new(true),
        };
        Ok(Application {
            listener,
            state: AppState(Arc::new(services)),
            workers,
            stop_workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.bind)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves: readiness turns 503 at once,
    /// in-flight requests finish, workers stop, then it returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.local_addr();
        let state = self.state.clone();
        let mut workers = self.workers;
        workers.push(crate::maintenance::spawn(
            state.clone(),
            state.config.maintenance_every,
            state.config.gc_grace,
            self.stop_workers.clone(),
        ));
        let host = if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        match crate::mail::Sender::new(state.clone(), format!("http://{host}")) {
            Ok(sender) => workers.push(crate::mail::spawn(
                sender,
                state.leases.lease(crate::mail::LEASE),
                self.stop_workers.clone(),
            )),
            Err(e) => tracing::error!(error = %e, "notification mail is off"),
        }
        match crate::webhooks::Sender::new(state.clone(), state.config.webhooks) {
            Ok(sender) => workers.push(crate::webhooks::spawn(sender, self.stop_workers.clone())),
            Err(e) => tracing::error!(error = %e, "outbound webhooks are off: no HTTP client"),
        }
        workers.push(crate::connector::spawn(
            state.clone(),
            state.leases.lease(crate::connector::LEASE),
            self.stop_workers.clone(),
        ));
        let app = http::router(self.state.clone());
        let drain_state = state.clone();
        let serve = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Readiness turns 503 at once; the listener stays open for the
            // drain delay so load balancers see it and stop sending traffic,
            // then in-flight requests finish and the process exits.
            drain_state.draining.store(true, Ordering::SeqCst);
            drain_state.shutdown.cancel();
            let delay = drain_state.config.drain_delay;
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "draining: readiness is now 503"
            );
            tokio::time::sleep(delay).await;
            tracing::info!("draining: finishing in-flight requests");
        });
        let result = serve.await;
        self.stop_workers.cancel();
        for w in workers {
            let _ = w.await;
        }
        state.db.close().await;
        tracing::info!("stopped");
        result
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The semantic indexer when an embedding provider is configured and
/// loads; otherwise why semantic search is unavailable.
fn open_semantic(
    config: &Config,
    store: &crate::store::DynStore,
    blob: &crate::blob::BlobStore,
) -> Result<Arc<crate::search::semantic::SemanticIndexer>, String> {
    use crate::search::embed::Embedder;
    let embedder = match Embedder::open(&config.embedding) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return Err(
                "semantic search is not available: no embedding provider is configured \
                 (set SCAIDRIVE_EMBEDDING_MODEL_DIR or SCAIDRIVE_EMBEDDING_URL)"
                    .into(),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot load the embedding provider; semantic search answers 501");
            return Err(format!(
                "semantic search is not available: the embedding provider could not be loaded ({e})"
            ));
        }
    };
    crate::search::semantic::SemanticIndexer::open(
        crate::search::Settings::from_env(&config.data_dir),
        store.clone(),
        blob.clone(),
        embedder,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "cannot open the vector index; semantic search answers 501");
        format!("semantic search is not available: the vector index could not be opened ({e})")
    })
}
