//! Leases on background workers: a projection runner or the Kafka relay works
//! only in the process that holds its lease, so several server processes on
//! one database do each worker's job once and take it over from one another.
//!
//! On PostgreSQL a lease is a session-level advisory lock held on one
//! dedicated connection per process (never a pooled one, which could be
//! handed back or recycled with the lock still on it). A process that dies or
//! loses that connection frees its leases at once; the others try to take
//! every free lease every [`TICK`]. On SQLite one process owns the database
//! and holds every lease from the start.
//!
//! A lease says who should work, it does not fence: a holder learns it lost
//! its connection only at its next check, so workers keep their own guard
//! (the projector's locked checkpoint row) against applying a batch twice.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use scaidrive_projections::db::Db;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the keeper tries to take free leases and checks its connection.
pub const TICK: Duration = Duration::from_millis(500);
/// A lease query (or connect) that takes longer counts as a lost connection.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The first key of every lease's advisory lock (the second is
/// `hashtext(name)`). The two-key form never meets the one-key locks the
/// event store takes on stream ids.
const NAMESPACE: i32 = 0x5ca1_d21e;

struct Entry {
    name: String,
    held: watch::Sender<bool>,
}

struct Shared {
    entries: Mutex<Vec<Entry>>,
    /// Whether a new lease starts held (one process owns the database).
    held_from_start: bool,
    /// A lease was added: try to take it now rather than at the next tick.
    added: Notify,
}

/// This process's leases: cheap to clone.
#[derive(Clone)]
pub struct Leases {
    shared: Arc<Shared>,
}

impl Leases {
    /// Leases held from the start: the process owns the database (SQLite,
    /// or a test driving workers by hand).
    pub fn in_process() -> Leases {
        Self::with(true)
    }

    fn with(held_from_start: bool) -> Leases {
        Leases {
            shared: Arc::new(Shared {
                entries: Mutex::new(Vec::new()),
                held_from_start,
                added: Notify::new(),
            }),
        }
    }

    /// The leases for `db`: on PostgreSQL a keeper task holds them until
    /// `stop` is cancelled (then it closes its connection, freeing them).
    pub fn start(db: &Db, stop: CancellationToken) -> (Leases, Option<JoinHandle<()>>) {
        match db {
            Db::Sqlite(_) => (Self::in_process(), None),
            Db::Postgres(pool) => {
                let (leases, keeper) = Self::postgres((*pool.connect_options()).clone(), stop);
                (leases, Some(keeper))
            }
        }
    }

    /// Leases on advisory locks of the database `options` connect to.
    pub fn postgres(
        options: PgConnectOptions,
        stop: CancellationToken,
    ) -> (Leases, JoinHandle<()>) {
        let leases = Self::with(false);
        let options = options.application_name(&application_name());
        let keeper = tokio::spawn(keep(leases.shared.clone(), options, stop));
        (leases, keeper)
    }

    /// The lease called `name` (one per worker, e.g. its checkpoint name).
    pub fn lease(&self, name: &str) -> Lease {
        let mut entries = self.shared.entries.lock();
        let held = match entries.iter().find(|e| e.name == name) {
            Some(e) => e.held.subscribe(),
            None => {
                let (tx, rx) = watch::channel(self.shared.held_from_start);
                entries.push(Entry {
                    name: name.to_owned(),
                    held: tx,
                });
                rx
            }
        };
        drop(entries);
        self.shared.added.notify_one();
        Lease { held }
    }

    /// Every lease asked for, and whether this process holds it now.
    pub fn held(&self) -> Vec<(String, bool)> {
        self.shared
            .entries
            .lock()
            .iter()
            .map(|e| (e.name.clone(), *e.held.borrow()))
            .collect()
    }
}

/// One worker's lease.
#[derive(Clone)]
pub struct Lease {
    held: watch::Receiver<bool>,
}

impl Lease {
    /// Whether this process holds the lease now (as of the keeper's last check).
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves once this process holds the lease.
    pub async fn acquired(&self) {
        if self.held.clone().wait_for(|h| *h).await.is_err() {
            // The keeper is gone: the lease never comes back.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once this process no longer holds the lease.
    pub async fn lost(&self) {
        let _ = self.held.clone().wait_for(|h| !*h).await;
    }
}

/// Names this process in `pg_stat_activity`, so an operator sees who holds what.
fn application_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    let mut name = format!("scaidrive-lease pid={}", std::process::id());
    if let Some(h) = host {
        name.push_str(" host=");
        name.push_str(&h);
    }
    // PostgreSQL keeps at most 63 bytes of it.
    name.chars().take(63).collect()
}

/// Connects, holds what it can, and starts over when the connection fails.
async fn keep(shared: Arc<Shared>, options: PgConnectOptions, stop: CancellationToken) {
    let mut failing = false;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = tokio::time::timeout(QUERY_TIMEOUT, PgConnection::connect_with(&options)) => c,
        };
        match connected {
            Ok(Ok(mut conn)) => {
                failing = false;
                let held = hold(&shared, &mut conn, &stop).await;
                // Stop the workers first: a dropped connection frees the
                // locks at once, and someone else may start working.
                release_all(&shared);
                match held {
                    Ok(()) => {
                        let _ = conn.close().await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "worker lease connection lost; leases given up");
                    }
                }
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot connect for worker leases, retrying");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("connecting for worker leases timed out, retrying");
            }
            _ => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Why holding ended: `Ok` when stopped, the error when the connection failed.
async fn hold(
    shared: &Shared,
    conn: &mut PgConnection,
    stop: &CancellationToken,
) -> Result<(), sqlx::Error> {
    loop {
        let free: Vec<String> = shared
            .entries
            .lock()
            .iter()
            .filter(|e| !*e.held.borrow())
            .map(|e| e.name.clone())
            .collect();
        let query = async {
            if free.is_empty() {
                // Nothing to take: only check the connection still works.
                sqlx::query("SELECT 1").execute(&mut *conn).await?;
                return Ok(Vec::new());
            }
            sqlx::query_as::<_, (String, bool)>(
                "SELECT name, pg_try_advisory_lock($1, hashtext(name)) FROM UNNEST($2::text[]) AS t(name)",
            )
            .bind(NAMESPACE)
            .bind(&free)
            .fetch_all(&mut *conn)
            .await
        };
        let taken = match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Ok(r) => r?,
            Err(_) => return Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())),
        };
        for (name, won) in taken {
            if won {
                if let Some(e) = shared.entries.lock().iter().find(|e| e.name == name) {
                    e.held.send_replace(true);
                }
                tracing::info!(worker = %name, "worker lease acquired");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(TICK) => {}
            _ = shared.added.notified() => {}
        }
    }
}

fn release_all(shared: &Shared) {
    for e in shared.entries.lock().iter() {
        if e.held.send_replace(false) {
            tracing::info!(worker = %e.name, "worker lease released");
        }
    }
}

/// Who holds each lease on PostgreSQL, as `pg_stat_activity` names them;
/// empty on SQLite (the one server process holds them all).
pub async fn holders(db: &Db, names: &[&str]) -> Result<Vec<(String, String)>, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    sqlx::query_as::<_, (String, String)>(
        "SELECT t.name, COALESCE(NULLIF(a.application_name, ''), 'pid ' || a.pid) \
              || COALESCE(' from ' || host(a.client_addr), '') \
         FROM UNNEST($2::text[]) AS t(name) \
         JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
              AND l.classid = $1::int4::oid AND l.objid = hashtext(t.name)::oid \
         JOIN pg_stat_activity a ON a.pid = l.pid",
    )
    .bind(NAMESPACE)
    .bind(&names)
    .fetch_all(pool)
    .await
}
