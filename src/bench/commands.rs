//! The command table: single-event commands per second and latency at
//! several writer counts on each backend, beside a raw single-row INSERT into
//! an equivalent table measured in the same run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use scaidrive_domain::{Aggregate, DomainError, DomainEvent};
use scaidrive_projections::db::{ConnectOptions, Db};
use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use uuid::Uuid;

use super::BenchArgs;
use crate::command::{CommandBus, CommandContext};
use crate::store;

/// A minimal aggregate: one counter per stream.
#[derive(Debug, Clone, Default)]
struct Counter {
    value: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
enum CounterEvent {
    CounterIncremented { value: u64 },
}
impl DomainEvent for CounterEvent {}

impl Aggregate for Counter {
    type Command = ();
    type Event = CounterEvent;
    fn decide(&self, _: &()) -> Result<Vec<CounterEvent>, DomainError> {
        Ok(vec![CounterEvent::CounterIncremented {
            value: self.value + 1,
        }])
    }
    fn evolve(&mut self, e: &CounterEvent) {
        let CounterEvent::CounterIncremented { value } = e;
        self.value = *value;
    }
}

struct Row {
    backend: &'static str,
    kind: &'static str,
    writers: usize,
    ops: u64,
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
}

/// The command table: single-event commands against raw INSERTs at each
/// writer count, on SQLite and (with a URL) PostgreSQL.
pub async fn run(args: &BenchArgs) -> Result<(), String> {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    rows.extend(bench_backend("sqlite", &sqlite_url, args).await?);
    if let Some(url) = &args.postgres_url {
        let pg = super::support::with_scratch_postgres(url, "sd_bench", |u| async move {
            bench_backend("postgres", &u, args).await
        })
        .await?;
        rows.extend(pg);
    }
    println!();
    println!(
        "{:<9} {:<22} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "backend", "operation", "writers", "ops", "ops/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for r in &rows {
        println!(
            "{:<9} {:<22} {:>7} {:>9} {:>10.0} {:>9} {:>9} {:>9}",
            r.backend, r.kind, r.writers, r.ops, r.per_sec, r.p50_us, r.p99_us, r.p999_us
        );
    }
    println!();
    println!(
        "{:<9} {:>7} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "backend", "writers", "commands/s", "hot/s", "INSERTs/s", "command/raw", "hot/spread"
    );
    for backend in ["sqlite", "postgres"] {
        for w in &args.writers {
            let find = |k: &str| {
                rows.iter()
                    .find(|r| r.backend == backend && r.kind == k && r.writers == *w)
            };
            let (Some(c), Some(b)) = (find("command (1 event)"), find("raw INSERT baseline"))
            else {
                continue;
            };
            let hot = find("command, hot stream").map_or(0.0, |h| h.per_sec);
            println!(
                "{:<9} {:>7} {:>12.0} {:>12.0} {:>12.0} {:>11.0}% {:>9.2}x",
                backend,
                w,
                c.per_sec,
                hot,
                b.per_sec,
                100.0 * c.per_sec / b.per_sec,
                hot / c.per_sec
            );
        }
    }
    Ok(())
}

async fn bench_backend(
    backend: &'static str,
    url: &str,
    args: &BenchArgs,
) -> Result<Vec<Row>, String> {
    let db = Db::connect(
        url,
        &ConnectOptions {
            max_connections: 40,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    create_baseline_table(&db).await?;
    let store = store::open(&db).await.map_err(|e| e.to_string())?;
    let bus = Arc::new(CommandBus::new(store, 100_000));
    let mut rows = Vec::new();
    for &writers in &args.writers {
        let dur = Duration::from_secs(args.seconds.max(1));
        eprintln!("{backend}: raw INSERT, {writers} writers …");
        let raw_db = db.clone();
        // On PostgreSQL each writer keeps one connection for the whole run
        // (up to HELD_WRITERS writers; more share the pool), so the baseline
        // pays neither the pool's hand-over nor the test the pool runs on
        // every connection given back: the fastest way to send single-row
        // INSERTs from 32 writers.
        let held: Arc<Vec<tokio::sync::Mutex<Option<PoolConnection<Postgres>>>>> = Arc::new(
            (0..writers)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
        );
        let (ops, hist, elapsed) = measure(writers, dur, move |w| {
            let db = raw_db.clone();
            let held = held.clone();
            async move {
                match &db {
                    Db::Postgres(pool) if held.len() <= HELD_WRITERS => {
                        let mut slot = held[w].lock().await;
                        let conn = match slot.as_mut() {
                            Some(conn) => conn,
                            None => slot.insert(pool.acquire().await.map_err(|e| e.to_string())?),
                        };
                        raw_insert_pg(&mut **conn).await
                    }
                    _ => raw_insert(&db).await,
                }
            }
        })
        .await?;
        rows.push(row(
            backend,
            "raw INSERT baseline",
            writers,
            ops,
            &hist,
            elapsed,
        ));
        eprintln!("{backend}: commands, {writers} writers …");
        let run_id = Uuid::now_v7().simple().to_string();
        let cmd_bus = bus.clone();
        let (ops, hist, elapsed) = measure(writers, dur, move |w| {
            let bus = cmd_bus.clone();
            let stream = format!("bench-{run_id}-{w}");
            async move {
                let ctx = CommandContext::system(Some("tnt_bench".into()));
                bus.execute::<Counter, _>(&stream, &ctx, |c| c.state.decide(&()))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        rows.push(row(
            backend,
            "command (1 event)",
            writers,
            ops,
            &hist,
            elapsed,
        ));
        eprintln!("{backend}: commands on one hot stream, {writers} writers …");
        let hot = format!("bench-hot-{}", Uuid::now_v7().simple());
        let cmd_bus = bus.clone();
        let (ops, hist, elapsed) = measure(writers, dur, move |_| {
            let bus = cmd_bus.clone();
            let stream = hot.clone();
            async move {
                let ctx = CommandContext::system(Some("tnt_bench".into()));
                bus.execute::<Counter, _>(&stream, &ctx, |c| c.state.decide(&()))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        rows.push(row(
            backend,
            "command, hot stream",
            writers,
            ops,
            &hist,
            elapsed,
        ));
    }
    db.close().await;
    Ok(rows)
}

fn row(
    backend: &'static str,
    kind: &'static str,
    writers: usize,
    ops: u64,
    h: &Histogram<u64>,
    elapsed: Duration,
) -> Row {
    Row {
        backend,
        kind,
        writers,
        ops,
        per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
    }
}

/// Runs `writers` loops calling `op(writer)` for `dur`; returns count,
/// latency histogram (µs) and wall time.
async fn measure<F, Fut>(
    writers: usize,
    dur: Duration,
    op: F,
) -> Result<(u64, Histogram<u64>, Duration), String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let stop = stop.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                op(w).await?;
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                n += 1;
            }
            Ok::<_, String>((n, hist))
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    for t in tasks {
        let (n, h) = t.await.map_err(|e| e.to_string())??;
        total += n;
        hist.add(h).map_err(|e| e.to_string())?;
    }
    Ok((total, hist, start.elapsed()))
}

/// The baseline: a table shaped like `events`, with its columns, keys and
/// the two log indexes every event row also pays for, written one row per
/// statement. It lives only in the scratch database the bench creates.
async fn create_baseline_table(db: &Db) -> Result<(), String> {
    let table = match db {
        Db::Sqlite(_) => {
            "CREATE TABLE IF NOT EXISTS bench_raw_events (position INTEGER PRIMARY KEY AUTOINCREMENT, \
             stream_id TEXT NOT NULL, stream_version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, \
             event_type TEXT NOT NULL, schema_version INTEGER NOT NULL, tenant_id TEXT, data TEXT NOT NULL, \
             metadata TEXT NOT NULL, transaction_id INTEGER NOT NULL DEFAULT 0, recorded_at TEXT NOT NULL, \
             hash TEXT NOT NULL, UNIQUE (stream_id, stream_version))"
        }
        Db::Postgres(_) => {
            "CREATE TABLE IF NOT EXISTS bench_raw_events (position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             stream_id TEXT NOT NULL, stream_version BIGINT NOT NULL, event_id UUID NOT NULL UNIQUE, \
             event_type TEXT NOT NULL, schema_version INT NOT NULL, tenant_id TEXT, data JSONB NOT NULL, \
             metadata JSONB NOT NULL, transaction_id XID8 NOT NULL DEFAULT pg_current_xact_id(), \
             recorded_at TIMESTAMPTZ NOT NULL, hash TEXT NOT NULL, UNIQUE (stream_id, stream_version))"
        }
    };
    for sql in [
        table,
        "CREATE INDEX IF NOT EXISTS bench_raw_events_log ON bench_raw_events (transaction_id, position)",
        "CREATE INDEX IF NOT EXISTS bench_raw_events_tenant_log ON bench_raw_events (tenant_id, transaction_id, position)",
    ] {
        match db {
            Db::Sqlite(d) => sqlx::query(sql).execute(&d.write).await.map(|_| ()),
            Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writer counts up to this keep a connection each in the raw INSERT
/// baseline (the bench's pool has 40; the committers need a few).
const HELD_WRITERS: usize = 32;

const RAW_INSERT: &str = "INSERT INTO bench_raw_events (stream_id, stream_version, event_id, event_type, schema_version, \
     tenant_id, data, metadata, recorded_at, hash) VALUES ($1, 1, $2, 'counter-incremented', 1, $3, $4, $5, $6, $7)";

/// One baseline row on PostgreSQL, on a connection of its own or the pool.
async fn raw_insert_pg<'e>(conn: impl sqlx::PgExecutor<'e>) -> Result<(), String> {
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    sqlx::query(RAW_INSERT)
        .bind(id.to_string())
        .bind(id)
        .bind("tnt_bench")
        .bind(serde_json::json!({"value": 1}))
        .bind(serde_json::json!({"occurred_at": now}))
        .bind(now)
        .bind("0".repeat(64))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn raw_insert(db: &Db) -> Result<(), String> {
    let d = match db {
        Db::Sqlite(d) => d,
        Db::Postgres(p) => return raw_insert_pg(p).await,
    };
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    sqlx::query(RAW_INSERT)
        .bind(id.to_string())
        .bind(id.to_string())
        .bind("tnt_bench")
        .bind(serde_json::json!({"value": 1}).to_string())
        .bind(serde_json::json!({"occurred_at": now}).to_string())
        .bind(now)
        .bind("0".repeat(64))
        .execute(&d.write)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
