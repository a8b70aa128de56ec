//! A fresh store per test: a temp-file SQLite database, or a scratch
//! PostgreSQL database created from `SCAIDRIVE_TEST_DATABASE_URL` and dropped
//! afterwards.

use std::sync::Arc;

use scaidrive::store::postgres::PostgresStore;
use scaidrive::store::sqlite::SqliteStore;
use scaidrive::store::DynStore;
use scaidrive_projections::db::{ConnectOptions, Db};
use sqlx::Connection;

pub struct Harness {
    pub store: DynStore,
    pub db: Db,
    pub pg: Option<Arc<PostgresStore>>,
    _dir: Option<tempfile::TempDir>,
    drop_db: Option<(String, String)>,
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("events.db").display());
        let db = Db::connect(&url, &ConnectOptions::default())
            .await
            .expect("connect");
        db.migrate().await.expect("migrate");
        let Db::Sqlite(s) = &db else {
            unreachable!("sqlite url")
        };
        let store: DynStore = Arc::new(SqliteStore::new(s.clone()));
        Harness {
            store,
            db,
            pg: None,
            _dir: Some(dir),
            drop_db: None,
        }
    }

    pub async fn postgres() -> Harness {
        let url = std::env::var("SCAIDRIVE_TEST_DATABASE_URL")
            .expect("SCAIDRIVE_TEST_DATABASE_URL must be set for PostgreSQL conformance tests (scripts/test sets it)");
        let name = format!("sd_store_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .expect("connect admin");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create db");
        admin.close().await.ok();
        let mut u = url::Url::parse(&url).expect("url");
        u.set_path(&format!("/{name}"));
        let db = Db::connect(
            u.as_str(),
            &ConnectOptions {
                max_connections: 40,
                ..Default::default()
            },
        )
        .await
        .expect("connect");
        db.migrate().await.expect("migrate");
        let Db::Postgres(pool) = &db else {
            unreachable!("postgres url")
        };
        let pg = Arc::new(PostgresStore::new(pool.clone()).await.expect("store"));
        let store: DynStore = pg.clone();
        Harness {
            store,
            db,
            pg: Some(pg),
            _dir: None,
            drop_db: Some((url, name)),
        }
    }

    /// A second store on the same database, with caches of its own (as
    /// another process would have).
    pub async fn another_store(&self) -> DynStore {
        match &self.db {
            Db::Sqlite(s) => Arc::new(SqliteStore::new(s.clone())),
            Db::Postgres(p) => Arc::new(PostgresStore::new(p.clone()).await.expect("store")),
        }
    }

    /// Runs raw SQL against the backing database (tampering tests).
    pub async fn execute(&self, sql: &str) -> u64 {
        match &self.db {
            Db::Sqlite(s) => sqlx::query(sql)
                .execute(&s.write)
                .await
                .expect("sql")
                .rows_affected(),
            Db::Postgres(p) => sqlx::query(sql)
                .execute(p)
                .await
                .expect("sql")
                .rows_affected(),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some((url, name)) = self.drop_db.take() {
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async move {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut c)
                            .await;
                        }
                    });
                }
            });
        }
    }
}
