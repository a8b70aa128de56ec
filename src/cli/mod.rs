//! The command line: `serve`, `token`, `audit verify`, `maintenance run`, `events tail`, `ws`.
//! (The load generators are another program, `scaidrive-bench`: see [`crate::bench`].)

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::{shutdown_signal, Application, Core};
use crate::auth::{DevIssuer, MintRequest};
use crate::config::{Config, ServeArgs, StoreArgs};

pub mod audit_proofs;
pub mod events;
pub mod ws;

#[derive(Debug, Parser)]
#[command(
    name = "scaidrive",
    version,
    about = "ScaiDrive server: event-sourced file sync and share"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(Box<ServeArgs>),
    /// Mint a token from the development issuer (only without ScaiKey).
    Token(TokenArgs),
    /// Audit tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Delete chunks no file version has referenced for longer than the grace period.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Blob store URL (as for serve).
        #[arg(long, env = "SCAIDRIVE_BLOB_URL")]
        blob_url: Option<String>,
        /// Keep unreferenced chunks at least this long.
        #[arg(long, default_value_t = 48)]
        grace_hours: u64,
    },
    /// Housekeeping, as the server does it periodically.
    Maintenance {
        #[command(subcommand)]
        command: MaintenanceCommand,
    },
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Rebuild every read model from the log (same as `projections rebuild`).
    Replay {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The event log for operators.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Connect to a WebSocket (sync or realtime), send frames, print what arrives.
    Ws(ws::WsArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild one read model (or all) from the start of the log, beside the
    /// live one: writes, live projection runners and readers carry on, and the
    /// rebuilt tables replace the live ones once the replay has caught up.
    Rebuild {
        #[command(flatten)]
        store: StoreArgs,
        /// Projection name (tenancy, drive, access, audit, groups, sync, links,
        /// quota, webhooks, `search` for the keyword index or `semantic` for
        /// the vector index in the data directory); all when omitted (the
        /// vector index only when an embedding provider is configured).
        name: Option<String>,
    },
    /// List projections and how far each has got.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Run every chore once: retention (purge trash older than each tenant's
    /// `trash_retention_days`, prune versions superseded longer ago than its
    /// `version_retention_days`), upload-session expiry, chunk collection.
    /// Prints a JSON summary of what was removed.
    Run {
        #[command(flatten)]
        store: StoreArgs,
        /// Blob store URL (as for serve).
        #[arg(long, env = "SCAIDRIVE_BLOB_URL")]
        blob_url: Option<String>,
        /// Keep unreferenced chunks at least this long.
        #[arg(long, default_value_t = 48)]
        grace_hours: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as they are appended, one JSON envelope per line.
    Tail(events::TailArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every stream's hash chain and report the first broken link.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this tenant's streams.
        #[arg(long)]
        tenant: Option<String>,
        /// Only events that occurred at or after this ISO-8601 time.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events that occurred at or before this ISO-8601 time.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Check a signed checkpoint, consistency with the last trusted one and
    /// an export's inclusion, offline (no database).
    VerifyProof(audit_proofs::VerifyArgs),
    /// Poll checkpoints, check consistency, cosign; alarm on fork or rollback.
    Witness(audit_proofs::WitnessArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Tenant id or name (names are mapped onto ids deterministically).
    #[arg(long)]
    pub tenant: String,
    /// User subject (id or name).
    #[arg(long)]
    pub user: String,
    /// Partner id or name.
    #[arg(long)]
    pub partner: Option<String>,
    /// Space- or comma-separated scopes; none = tenant:admin.
    #[arg(long)]
    pub scope: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Comma-separated group names.
    #[arg(long)]
    pub groups: Option<String>,
    /// Lifetime in hours.
    #[arg(long, default_value_t = 24)]
    pub ttl_hours: u64,
    /// Directory holding the development key (same as the server's).
    #[arg(long, env = "SCAIDRIVE_DATA_DIR", default_value = "./scaidrive-data")]
    pub data_dir: std::path::PathBuf,
    #[arg(long, env = "SCAIDRIVE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    #[arg(long, env = "SCAIDRIVE_SCAIKEY_URL", hide = true)]
    pub scaikey_url: Option<String>,
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCAIDRIVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,pavao=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_json);
            serve((*args).into())
        }
        Command::Token(args) => token(args),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    store,
                    tenant,
                    from,
                    to,
                },
        } => {
            init_tracing(false);
            verify(store, tenant, crate::store::VerifyRange { from, to })
        }
        Command::Audit {
            command: AuditCommand::VerifyProof(a),
        } => return audit_proofs::verify_proof(a),
        Command::Audit {
            command: AuditCommand::Witness(a),
        } => return audit_proofs::witness(a),
        Command::Gc {
            store,
            blob_url,
            grace_hours,
        } => {
            init_tracing(false);
            gc(store, blob_url, grace_hours)
        }
        Command::Maintenance {
            command:
                MaintenanceCommand::Run {
                    store,
                    blob_url,
                    grace_hours,
                },
        } => {
            init_tracing(false);
            maintenance_run(store, blob_url, grace_hours)
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { store, name },
        } => {
            init_tracing(false);
            rebuild(store, name)
        }
        Command::Replay { store } => {
            init_tracing(false);
            rebuild(store, None)
        }
        Command::Projections {
            command: ProjectionsCommand::Status { store },
        } => {
            init_tracing(false);
            projection_status(store)
        }
        Command::Events {
            command: EventsCommand::Tail(args),
        } => {
            init_tracing(false);
            runtime().and_then(|rt| rt.block_on(events::tail(args)))
        }
        Command::Ws(args) => runtime().and_then(|rt| rt.block_on(ws::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> Result<(), String> {
    runtime()?.block_on(async move {
        let app = Application::build(config)
            .await
            .map_err(|e| e.to_string())?;
        let addr = app.local_addr();
        tracing::info!(%addr, "listening");
        app.run_until(shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

fn token(args: TokenArgs) -> Result<(), String> {
    if args.scaikey_url.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(
            "SCAIDRIVE_SCAIKEY_URL is set: tokens come from ScaiKey, the development issuer is off"
                .into(),
        );
    }
    let issuer = DevIssuer::load_or_create(&args.data_dir, args.jwt_issuer.clone())
        .map_err(|e| e.to_string())?;
    let split = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or_default()
            .split([' ', ','])
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let token = issuer
        .mint(&MintRequest {
            tenant_id: args.tenant.clone(),
            user_id: args.user.clone(),
            partner_id: args.partner.clone(),
            scopes: split(&args.scope),
            email: args.email.clone(),
            name: args.name.clone(),
            groups: split(&args.groups),
            ttl: Duration::from_secs(args.ttl_hours.max(1) * 3600),
            act: None,
        })
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

fn verify(
    store: StoreArgs,
    tenant: Option<String>,
    range: crate::store::VerifyRange,
) -> Result<(), String> {
    runtime()?.block_on(async move {
        let mut config = Config::embedded(store.data_dir.clone());
        config.database_url = store.database_url();
        let core = Core::open(&config).await.map_err(|e| e.to_string())?;
        let report = core
            .store
            .verify_range(tenant.as_deref(), range)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        match report.first_broken {
            None => Ok(()),
            Some(b) => Err(format!(
                "hash chain broken at stream {} version {}",
                b.stream_id, b.stream_version
            )),
        }
    })
}

/// The store, blob store and a command bus for a one-off chore run beside
/// (or without) a server.
async fn open_for_chores(
    store: &StoreArgs,
    blob_url: Option<String>,
) -> Result<(Core, crate::blob::BlobStore, crate::command::CommandBus), String> {
    let mut config = Config::embedded(store.data_dir.clone());
    config.database_url = store.database_url();
    let core = Core::open(&config).await.map_err(|e| e.to_string())?;
    let settings = crate::blob::BlobSettings {
        url: blob_url,
        ..crate::blob::BlobSettings::local()
    };
    let blob =
        crate::blob::BlobStore::open(&settings, &store.data_dir).map_err(|e| e.to_string())?;
    let bus = crate::command::CommandBus::new(core.store.clone(), 10_000);
    Ok((core, blob, bus))
}

fn gc(store: StoreArgs, blob_url: Option<String>, grace_hours: u64) -> Result<(), String> {
    runtime()?.block_on(async move {
        let (core, blob, bus) = open_for_chores(&store, blob_url).await?;
        let expired = crate::maintenance::expire_uploads(&core.db, &bus)
            .await
            .map_err(|e| e.to_string())?;
        let report = crate::maintenance::collect_garbage(
            &core.db,
            &bus,
            &blob,
            Duration::from_secs(grace_hours * 3600),
        )
        .await?;
        println!("expired upload sessions: {expired}");
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        Ok(())
    })
}

/// What `maintenance run` did, printed as JSON.
#[derive(Debug, serde::Serialize)]
struct MaintenanceSummary {
    retention: crate::maintenance::RetentionReport,
    expired_uploads: u64,
    gc: crate::maintenance::GcReport,
}

fn maintenance_run(
    store: StoreArgs,
    blob_url: Option<String>,
    grace_hours: u64,
) -> Result<(), String> {
    runtime()?.block_on(async move {
        let (core, blob, bus) = open_for_chores(&store, blob_url).await?;
        let retention = crate::maintenance::apply_retention(&core.db, &bus, chrono::Utc::now())
            .await
            .map_err(|e| e.to_string())?;
        let expired_uploads = crate::maintenance::expire_uploads(&core.db, &bus)
            .await
            .map_err(|e| e.to_string())?;
        let gc = crate::maintenance::collect_garbage(
            &core.db,
            &bus,
            &blob,
            Duration::from_secs(grace_hours * 3600),
        )
        .await?;
        let summary = MaintenanceSummary {
            retention,
            expired_uploads,
            gc,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
        );
        core.db.close().await;
        Ok(())
    })
}

async fn open_projector(
    store: &StoreArgs,
) -> Result<(Core, std::sync::Arc<crate::projector::Projector>), String> {
    let mut config = Config::embedded(store.data_dir.clone());
    config.database_url = store.database_url();
    let core = Core::open(&config).await.map_err(|e| e.to_string())?;
    let projector = crate::projector::Projector::new(
        core.db.clone(),
        core.store.clone(),
        scaidrive_projections::all(),
    );
    Ok((core, projector))
}

fn rebuild(store: StoreArgs, name: Option<String>) -> Result<(), String> {
    runtime()?.block_on(async move {
        let (core, projector) = open_projector(&store).await?;
        let search_too = matches!(name.as_deref(), None | Some("search"));
        let embedding = crate::search::embed::EmbeddingSettings::from_env();
        let semantic_too = match name.as_deref() {
            Some("semantic") => {
                if !embedding.configured() {
                    return Err("the vector index needs an embedding provider: set \
                         SCAIDRIVE_EMBEDDING_MODEL_DIR or SCAIDRIVE_EMBEDDING_URL"
                        .into());
                }
                true
            }
            None => embedding.configured(),
            _ => false,
        };
        let names: Vec<String> = match name {
            Some(n) if n == "search" || n == "semantic" => vec![],
            Some(n) => vec![n],
            None => projector.names().into_iter().map(str::to_owned).collect(),
        };
        let head = core.store.head().await.map_err(|e| e.to_string())?;
        for n in names {
            let bar = indicatif::ProgressBar::new(head.position.max(1) as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>10} [{bar:40}] {pos}/{len} events {per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(n.clone());
            let started = std::time::Instant::now();
            let events = projector
                .rebuild(&n, |read| bar.set_position(read))
                .await
                .map_err(|e| e.to_string())?;
            bar.finish();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{n}: rebuilt from {events} events in {secs:.2} s ({:.0} events/s)",
                events as f64 / secs.max(1e-9)
            );
        }
        if search_too {
            rebuild_search(&store, &core, head.position).await?;
        }
        if semantic_too {
            rebuild_semantic(&store, &core, &embedding, head.position).await?;
        }
        core.db.close().await;
        Ok(())
    })
}

/// Rebuilds the keyword search index beside the live one (a running server
/// on this data directory switches to it on its next step).
async fn rebuild_search(store: &StoreArgs, core: &Core, head: i64) -> Result<(), String> {
    let settings = crate::search::Settings::from_env(&store.data_dir);
    let blob = cli_blob(store)?;
    let bar = indicatif::ProgressBar::new(head.max(1) as u64);
    bar.set_prefix("search");
    let started = std::time::Instant::now();
    let events = crate::search::indexer::rebuild(&settings, &core.store, &blob, |at| {
        bar.set_position(at.max(0) as u64)
    })
    .await
    .map_err(|e| e.to_string())?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "search: rebuilt from {events} events in {secs:.2} s ({:.0} events/s)",
        events as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Rebuilds the vector index beside the live one (embedding every file of
/// the tenants with vectorization on; a running server switches to it).
async fn rebuild_semantic(
    store: &StoreArgs,
    core: &Core,
    embedding: &crate::search::embed::EmbeddingSettings,
    head: i64,
) -> Result<(), String> {
    let embedder = crate::search::embed::Embedder::open(embedding)
        .map_err(|e| e.to_string())?
        .ok_or("no embedding provider is configured")?;
    let settings = crate::search::Settings::from_env(&store.data_dir);
    let blob = cli_blob(store)?;
    let bar = indicatif::ProgressBar::new(head.max(1) as u64);
    bar.set_prefix("semantic");
    let started = std::time::Instant::now();
    let events = crate::search::semantic::rebuild(&settings, &core.store, &blob, &embedder, |at| {
        bar.set_position(at.max(0) as u64)
    })
    .await
    .map_err(|e| e.to_string())?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "semantic: rebuilt from {events} events in {secs:.2} s ({:.0} events/s)",
        events as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// The blob store the CLI reads content through.
fn cli_blob(store: &StoreArgs) -> Result<crate::blob::BlobStore, String> {
    let blob_settings = crate::blob::BlobSettings {
        url: std::env::var("SCAIDRIVE_BLOB_URL")
            .ok()
            .filter(|u| !u.trim().is_empty()),
        ..crate::blob::BlobSettings::local()
    };
    crate::blob::BlobStore::open(&blob_settings, &store.data_dir).map_err(|e| e.to_string())
}

fn projection_status(store: StoreArgs) -> Result<(), String> {
    runtime()?.block_on(async move {
        let (core, projector) = open_projector(&store).await?;
        let head = core.store.head().await.map_err(|e| e.to_string())?;
        println!("log head: {}", head.to_token());
        let stored = scaidrive_projections::checkpoint::all(&core.db)
            .await
            .map_err(|e| e.to_string())?;
        let mut names = projector.names();
        if stored.iter().any(|(n, _)| n == crate::relay::CHECKPOINT) {
            names.push(crate::relay::CHECKPOINT);
        }
        // Who works on what, when several servers share PostgreSQL.
        let holders = crate::lease::holders(&core.db, &names)
            .await
            .map_err(|e| e.to_string())?;
        for name in names {
            let pos = stored
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.position)
                .unwrap_or_default();
            let lease = match (&core.db, holders.iter().find(|(n, _)| n == name)) {
                (scaidrive_projections::db::Db::Sqlite(_), _) => String::new(),
                (_, Some((_, holder))) => format!("  lease: {holder}"),
                (_, None) => "  lease: free".to_owned(),
            };
            println!(
                "{name:<11} at {:<14} behind by ~{} events{lease}",
                pos.to_token(),
                (head.position - pos.position).max(0)
            );
        }
        Ok(())
    })
}
