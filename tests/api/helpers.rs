//! Spawning a server per test and talking to it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use scaidrive::app::Application;
use scaidrive::auth::{DevIssuer, MintRequest};
use scaidrive::config::Config;
use scaidrive::http::AppState;
use serde_json::Value;
use tokio::sync::oneshot;

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    issuer: DevIssuer,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    _database: Option<ScratchDatabase>,
}

/// A fresh PostgreSQL database on the test cluster, dropped with the value.
pub struct ScratchDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl ScratchDatabase {
    pub async fn create() -> ScratchDatabase {
        use sqlx::Connection;
        let admin_url = std::env::var("SCAIDRIVE_TEST_DATABASE_URL").expect(
            "SCAIDRIVE_TEST_DATABASE_URL must be set for Postgres tests (scripts/test sets it)",
        );
        let name = format!("sd_api_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to Postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.ok();
        let mut u = url::Url::parse(&admin_url).expect("url");
        u.set_path(&format!("/{name}"));
        ScratchDatabase {
            url: u.to_string(),
            admin_url,
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Best effort: drop the scratch database from a fresh thread.
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            }
        });
    }
}

/// Which database a test server uses.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test body as two tests: on SQLite, and on PostgreSQL (ignored unless
/// `scripts/test` runs the ignored ones with a database).
#[macro_export]
macro_rules! both_backends {
    ($body:ident => $sqlite:ident, $pg:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $body($crate::helpers::Backend::Sqlite).await
        }

        #[tokio::test]
        #[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
        async fn $pg() {
            $body($crate::helpers::Backend::Postgres).await
        }
    };
}

pub async fn spawn() -> TestApp {
    spawn_on(Backend::Sqlite).await
}

pub async fn spawn_on(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// Spawns a server after letting the test adjust its configuration.
pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::embedded(dir.path().to_path_buf());
    // Generous: on PostgreSQL other tests' open transactions hold the
    // cluster-wide read watermark back for a moment.
    config.consistency_wait = Duration::from_secs(30);
    adjust(&mut config);
    let mut database = None;
    if let Backend::Postgres = backend {
        let db = ScratchDatabase::create().await;
        config.database_url = db.url.clone();
        database = Some(db);
    }
    let app = Application::build(config).await.expect("build app");
    let addr = app.local_addr();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let issuer = DevIssuer::load_or_create(dir.path(), None).expect("dev issuer");
    TestApp {
        base: format!("http://{addr}/api/v1"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        state,
        issuer,
        _dir: dir,
        stop: Some(tx),
        _database: database,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An answer: status, headers and the body parsed as JSON (Null if not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the SPEC §2 error shape with a string detail.
    #[track_caller]
    pub fn assert_detail(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert!(
            self.body["detail"].is_string(),
            "detail must be a string: {}",
            self.body
        );
    }

    /// Asserts a 422 whose detail is an array; returns the entries.
    #[track_caller]
    pub fn assert_422(&self) -> &Vec<Value> {
        assert_eq!(self.status.as_u16(), 422, "body: {}", self.body);
        self.body["detail"]
            .as_array()
            .expect("422 detail must be an array")
    }
}

impl TestApp {
    /// A token for `user` in `tenant` with the given scopes ("" = default).
    pub fn token(&self, tenant: &str, user: &str, scope: &str) -> String {
        self.issuer
            .mint(&MintRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                partner_id: None,
                scopes: scope.split_whitespace().map(str::to_owned).collect(),
                email: Some(format!("{user}@{tenant}.test")),
                name: Some(user.to_owned()),
                groups: vec![],
                ttl: Duration::from_secs(3600),
                act: None,
            })
            .expect("mint")
    }

    /// A token from a full mint request (groups, partner, ...).
    pub fn mint(&self, req: &MintRequest) -> String {
        self.issuer.mint(req).expect("mint")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::answer(req.send().await.expect("request")).await
    }

    pub async fn answer(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A raw request for error-path tests.
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
    }
}
