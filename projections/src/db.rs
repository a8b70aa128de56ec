//! One database handle for both backends: the event store's tables and the
//! read models live side by side in it.
//!
//! SQLite runs with one writer connection (WAL; every write transaction is
//! `BEGIN IMMEDIATE`) shared by the event store and the projector, so writers
//! queue in-process instead of spinning on SQLITE_BUSY, and a pool of readers.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};

/// Which backend a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The SQLite pools: exactly one writer, several readers.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pub write: SqlitePool,
    pub read: SqlitePool,
}

/// A connected database of either backend.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// A write transaction on either backend.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await,
        }
    }
}

/// Options for [`Db::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            // Short: while the database is down every request waits this
            // long for a connection before answering 503.
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Db {
    /// Connects to `sqlite://path` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Db, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            // No ping before each use: it is a round trip of its own on
            // every query. A connection the server dropped fails its next
            // query instead (answered 503, retried by the runners) and is
            // not returned to the pool.
            let pool = PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(options)
                .await?;
            return Ok(Db::Postgres(pool));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(opts.acquire_timeout.max(Duration::from_secs(30)))
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 8))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options.read_only(true))
            .await;
        let read = match read {
            Ok(r) => r,
            // A brand-new file must be created (and put in WAL mode) by the
            // writer before read-only connections can open it.
            Err(_) => {
                sqlx::query("SELECT 1").execute(&write).await?;
                SqlitePoolOptions::new()
                    .max_connections(opts.max_connections.clamp(1, 8))
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(SqliteConnectOptions::from_str(url)?.read_only(true))
                    .await?
            }
        };
        Ok(Db::Sqlite(SqliteDb { write, read }))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the migrations under `migrations/<backend>/`.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Sqlite(db) => sqlx::migrate!("../migrations/sqlite").run(&db.write).await,
            Db::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await,
        }
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Db::Sqlite(db) => Ok(Tx::Sqlite(db.write.begin_with("BEGIN IMMEDIATE").await?)),
            Db::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await?)),
        }
    }

    /// Starts a write transaction for derived data only (read models and
    /// their checkpoints, all rebuilt from the log): on PostgreSQL its
    /// commit does not wait for the write-ahead log to reach the disk.
    pub async fn begin_derived(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Db::Sqlite(_) => self.begin().await,
            Db::Postgres(pool) => Ok(Tx::Postgres(
                pool.begin_with("BEGIN; SET LOCAL synchronous_commit TO OFF")
                    .await?,
            )),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(db) => {
                db.read.close().await;
                db.write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// Runs one statement on a [`Tx`] (or `&Db` reader) with the same SQL and binds
/// on either backend; evaluates to `Result<u64 rows affected, sqlx::Error>`.
///
/// Only portable SQL belongs here: `$N` placeholders, `ON CONFLICT`, `RETURNING`.
#[macro_export]
macro_rules! tx_execute {
    ($tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::db::Tx::Sqlite(t) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **t).await.map(|r| r.rows_affected()),
            $crate::db::Tx::Postgres(t) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **t).await.map(|r| r.rows_affected()),
        }
    };
}

/// A multi-row `INSERT` on a [`Tx`]:
/// `tx_insert_rows!(tx, "INSERT INTO t (a, b) ", items, |mut row, item| { row.push_bind(..); }, " ON CONFLICT ...")`
/// (the closure is that of `QueryBuilder::push_values`; `items` is a slice,
/// and an empty one inserts nothing).
#[macro_export]
macro_rules! tx_insert_rows {
    ($tx:expr, $head:expr, $items:expr, $bind:expr, $tail:expr $(,)?) => {
        match ($tx, $items) {
            (_, items) if items.is_empty() => Ok(0u64),
            ($crate::db::Tx::Sqlite(t), items) => {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new($head);
                q.push_values(items, $bind);
                q.push($tail);
                q.build().execute(&mut **t).await.map(|r| r.rows_affected())
            }
            ($crate::db::Tx::Postgres(t), items) => {
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new($head);
                q.push_values(items, $bind);
                q.push($tail);
                q.build().execute(&mut **t).await.map(|r| r.rows_affected())
            }
        }
    };
}

/// `query_as` on a [`Tx`]: `tx_fetch_all!(tx, Row, sql, args...)`.
#[macro_export]
macro_rules! tx_fetch_all {
    ($tx:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::db::Tx::Sqlite(t) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(&mut **t).await,
            $crate::db::Tx::Postgres(t) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(&mut **t).await,
        }
    };
}

/// `query_as(..).fetch_optional` on a [`Tx`].
#[macro_export]
macro_rules! tx_fetch_optional {
    ($tx:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::db::Tx::Sqlite(t) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(&mut **t).await,
            $crate::db::Tx::Postgres(t) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(&mut **t).await,
        }
    };
}

/// `query_as(..).fetch_all` on the read side of a [`Db`].
#[macro_export]
macro_rules! db_fetch_all {
    ($db:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $db {
            $crate::db::Db::Sqlite(d) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(&d.read).await,
            $crate::db::Db::Postgres(p) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_all(p).await,
        }
    };
}

/// `query_as(..).fetch_optional` on the read side of a [`Db`].
#[macro_export]
macro_rules! db_fetch_optional {
    ($db:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $db {
            $crate::db::Db::Sqlite(d) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(&d.read).await,
            $crate::db::Db::Postgres(p) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.fetch_optional(p).await,
        }
    };
}

/// `query_scalar(..).fetch_one` on the read side of a [`Db`].
#[macro_export]
macro_rules! db_fetch_scalar {
    ($db:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $db {
            $crate::db::Db::Sqlite(d) => sqlx::query_scalar::<_, $ty>($sql)$(.bind($arg))*.fetch_one(&d.read).await,
            $crate::db::Db::Postgres(p) => sqlx::query_scalar::<_, $ty>($sql)$(.bind($arg))*.fetch_one(p).await,
        }
    };
}

/// A value bound into a statement whose shape is built at run time (an
/// `IN (...)` over a list of ids).
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    /// A NULL text value.
    Null,
    Int(i64),
    Bool(bool),
    Time(chrono::DateTime<chrono::Utc>),
}

/// `$start, $start+1, ...` for `n` values (`NULL` for none, so `x IN (NULL)`
/// matches nothing).
pub fn placeholders(start: usize, n: usize) -> String {
    if n == 0 {
        return "NULL".into();
    }
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Null => q.bind(None::<String>),
                Arg::Int(i) => q.bind(*i),
                Arg::Bool(b) => q.bind(*b),
                Arg::Time(t) => q.bind(*t),
            };
        }
        q
    }};
}

impl Db {
    /// `fetch_all` on the read side with run-time binds.
    pub async fn fetch_all_args<T>(&self, sql: &str, args: &[Arg]) -> Result<Vec<T>, sqlx::Error>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        match self {
            Db::Sqlite(d) => {
                bind_args!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(&d.read)
                    .await
            }
            Db::Postgres(p) => {
                bind_args!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(p)
                    .await
            }
        }
    }

    /// A single `BIGINT` on the read side with run-time binds.
    pub async fn fetch_i64_args(&self, sql: &str, args: &[Arg]) -> Result<i64, sqlx::Error> {
        match self {
            Db::Sqlite(d) => {
                bind_args!(sqlx::query_scalar::<_, i64>(sql), args)
                    .fetch_one(&d.read)
                    .await
            }
            Db::Postgres(p) => {
                bind_args!(sqlx::query_scalar::<_, i64>(sql), args)
                    .fetch_one(p)
                    .await
            }
        }
    }
}
