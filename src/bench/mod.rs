//! Load generators, apart from the server: `scaidrive-bench` (built with the
//! cargo feature `bench`, see `src/bin/scaidrive-bench.rs`) runs them; the
//! `scaidrive` binary carries none of this code. BENCHMARKS.md records the
//! figures.
//!
//! Each benchmark is one module here with one entry function, switched on by
//! one flag of [`BenchArgs`] and called from [`run`]. [`support`] holds what
//! they share: a server on loopback, scratch PostgreSQL databases, a load
//! loop with latency histograms, table printing.

use std::process::ExitCode;

pub mod commands;
pub mod downloads;
pub mod drive;
pub mod feed;
pub mod http;
pub mod links;
pub mod proofs;
pub mod quota;
pub mod rebuild;
pub mod search;
pub mod smb;
pub mod support;
pub mod sync;

/// Which benchmarks to run and how hard.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Writer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    pub writers: Vec<usize>,
    /// A PostgreSQL server URL (a scratch database is created and dropped);
    /// without it only SQLite is measured.
    #[arg(long, env = "SCAIDRIVE_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Also run the drive benchmarks (upload/download vs raw disk, dedup,
    /// metadata operations) through a server on loopback.
    #[arg(long)]
    pub drive: bool,
    /// Size of the file the drive benchmark moves, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub drive_size_mb: u64,
    /// Items created in (and listed from) one folder by the drive benchmark.
    #[arg(long, default_value_t = 10_000)]
    pub drive_items: usize,
    /// Also measure commit → WebSocket frame latency with many sockets open.
    #[arg(long)]
    pub sync: bool,
    /// Sockets the sync benchmark keeps open.
    #[arg(long, default_value_t = 100)]
    pub sync_sockets: usize,
    /// Writes the sync benchmark commits (one at a time).
    #[arg(long, default_value_t = 200)]
    pub sync_writes: usize,
    /// Also run the quota hot-path benchmark: uploads/s into one tenant with
    /// 32 writers against 32 writers over 32 tenants, hard quota in force.
    #[arg(long)]
    pub quota: bool,
    /// Skip the command/INSERT measurements (only with --drive, --sync or --quota).
    #[arg(long)]
    pub skip_commands: bool,
    #[command(flatten)]
    pub downloads: downloads::DownloadsArgs,
    /// Also measure HTTP requests/s (read and write endpoints) beside a bare
    /// axum handler and the create-folder command (see BENCHMARKS.md).
    #[arg(long)]
    pub http: bool,
    /// Keep-alive connections the HTTP load generator keeps busy.
    #[arg(long, default_value_t = 16)]
    pub http_connections: usize,
    /// Also measure projection rebuild speed (events/s) over a large log.
    #[arg(long)]
    pub rebuild: bool,
    /// Events in the log the rebuild benchmark replays.
    #[arg(long, default_value_t = 100_000)]
    pub rebuild_events: usize,
    /// Also measure how fast the sync feed of one busy share is read.
    #[arg(long)]
    pub feed: bool,
    /// Changes in the share the feed benchmark reads.
    #[arg(long, default_value_t = 50_000)]
    pub feed_changes: usize,
    /// Also measure downloads/s through one link against 32 links.
    #[arg(long)]
    pub links: bool,
    /// Run every part: commands, drive (at --all-drive-size-mb, at most 2000
    /// items), sync, quota, http, rebuild (at most 20 000 events), feed (at
    /// most 10 000 changes) and links.
    #[arg(long)]
    pub all: bool,
    /// Only measure the Merkle log: append rate, proof generation p50/p99
    /// and checkpoint signing (see BENCHMARKS.md "Proofs").
    #[arg(long)]
    pub proofs: bool,
    /// Leaves in the synthetic tree of --proofs.
    #[arg(long, default_value_t = 1_000_000)]
    pub proofs_leaves: u64,
    /// Also run the search benchmark: the keyword index beside PostgreSQL
    /// FTS and SQLite FTS5 over `--search-files` documents, then uploads,
    /// indexing, HTTP search and a rebuild through a server.
    #[arg(long)]
    pub search: bool,
    /// Documents in the search benchmark's corpus.
    #[arg(long, default_value_t = 100_000)]
    pub search_files: usize,
    /// Files the search benchmark uploads through a server (0: skip).
    #[arg(long, default_value_t = 5_000)]
    pub search_server_files: usize,
    /// Chunks in the search benchmark's vector index (semantic query
    /// latency; embedding speed too with SCAIDRIVE_EMBEDDING_MODEL_DIR; 0: skip).
    #[arg(long, default_value_t = 100_000)]
    pub search_chunks: usize,
    /// Also run the SMB connector benchmark against a local Samba (started
    /// with scripts/samba; needs root and Debian's samba + smbclient).
    #[arg(long)]
    pub smb: bool,
    /// Small files the SMB benchmark imports.
    #[arg(long, default_value_t = 10_000)]
    pub smb_files: usize,
    /// Size of the SMB benchmark's large file, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub smb_big_mb: u64,
    /// The drive file size --all uses, in MiB.
    #[arg(long, default_value_t = 64)]
    pub all_drive_size_mb: u64,
}

/// The entry point of `scaidrive-bench`: logs to stderr, runs [`run`] on a
/// multi-threaded runtime, and turns its error into the exit code.
pub fn main(args: BenchArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCAIDRIVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every benchmark `args` asks for, each printing its own table; the
/// command table last unless `--skip-commands`.
pub async fn run(mut args: BenchArgs) -> Result<(), String> {
    if args.all {
        args.drive_size_mb = args.all_drive_size_mb;
        args.drive_items = args.drive_items.min(2_000);
        args.rebuild_events = args.rebuild_events.min(20_000);
        args.feed_changes = args.feed_changes.min(10_000);
        (args.drive, args.sync, args.quota) = (true, true, true);
        (args.http, args.rebuild, args.feed, args.links) = (true, true, true, true);
        args.skip_commands = false;
    }
    if args.proofs {
        proofs::run(args.proofs_leaves, 10_000)?;
        return proofs::tree_cost(args.postgres_url.as_deref(), args.seconds).await;
    }
    if args.smb {
        return smb::run(args.smb_files, args.smb_big_mb).await;
    }
    let pg = args.postgres_url.as_deref();
    if args.search {
        search::run(
            pg,
            args.search_files,
            args.search_server_files,
            args.seconds,
        )
        .await?;
        if args.search_chunks > 0 {
            search::semantic(args.search_chunks, args.seconds).await?;
        }
    }
    if args.http {
        http::run(pg, args.http_connections, args.seconds).await?;
    }
    if args.rebuild {
        rebuild::run(pg, args.rebuild_events).await?;
    }
    if args.feed {
        feed::run(pg, args.feed_changes).await?;
    }
    if args.links {
        links::run(pg, args.seconds).await?;
    }
    if args.drive {
        drive::run(args.drive_size_mb, args.drive_items).await?;
    }
    if args.sync {
        eprintln!(
            "sync: {} sockets, {} writes …",
            args.sync_sockets, args.sync_writes
        );
        let f = sync::run(args.sync_sockets, args.sync_writes).await?;
        println!();
        println!(
            "{:<34} {:>7} {:>7} {:>9} {:>9} {:>9}",
            "operation", "sockets", "writes", "p50 µs", "p99 µs", "max µs"
        );
        println!(
            "{:<34} {:>7} {:>7} {:>9} {:>9} {:>9}",
            "sync: commit → WebSocket frame", f.sockets, f.writes, f.p50_us, f.p99_us, f.max_us
        );
    }
    if args.quota {
        quota::run(args.postgres_url.as_deref(), args.seconds).await?;
    }
    if args.downloads.downloads {
        downloads::run(&args.downloads).await?;
    }
    let extra = args.search
        || args.http
        || args.rebuild
        || args.feed
        || args.links
        || args.downloads.downloads;
    if (args.drive || args.sync || args.quota || extra) && args.skip_commands {
        return Ok(());
    }
    commands::run(&args).await
}
