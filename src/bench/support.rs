//! Pieces shared by the loopback benchmarks (`--http`, `--rebuild`, `--feed`,
//! `--links`): a real server on loopback against a fresh database, scratch
//! PostgreSQL databases, setup calls, and a time-bounded load generator.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use scaidrive_projections::db::{ConnectOptions, Db};

use crate::app::Application;
use crate::auth::{DevIssuer, MintRequest};
use crate::config::Config;
use crate::services::AppState;

/// A server running in this process on a loopback port, with its own
/// temporary data directory (and database, unless a URL was given).
pub struct Server {
    pub base: String,
    pub state: AppState,
    pub issuer: DevIssuer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server; `database_url` None = SQLite in the temporary
    /// directory. Rate limits are lifted (the benchmarks measure throughput,
    /// not limits; the limiter itself still runs on every request).
    pub async fn start(database_url: Option<&str>) -> Result<Server, String> {
        Self::start_with(database_url, |_| {}).await
    }

    /// [`Server::start`] with `adjust` applied to the configuration last.
    pub async fn start_with(
        database_url: Option<&str>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Server, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = Config::embedded(dir.path().to_path_buf());
        if let Some(url) = database_url {
            config.database_url = url.to_owned();
        }
        // What `scaidrive serve` runs with (tests start from fewer).
        config.database_max_connections = std::env::var("SCAIDRIVE_DATABASE_MAX_CONNECTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(crate::config::DEFAULT_MAX_CONNECTIONS);
        config.consistency_wait = Duration::from_secs(30);
        config.rate_limits = crate::ratelimit::Limits {
            per_token: u64::MAX / 4,
            per_user: u64::MAX / 4,
            per_tenant: u64::MAX / 4,
        };
        adjust(&mut config);
        let app = Application::build(config)
            .await
            .map_err(|e| e.to_string())?;
        let base = format!("http://{}/api/v1", app.local_addr());
        let state = app.state();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stop_rx.await;
        }));
        let issuer = DevIssuer::load_or_create(dir.path(), None).map_err(|e| e.to_string())?;
        Ok(Server {
            base,
            state,
            issuer,
            stop: Some(stop_tx),
            task: Some(task),
            _dir: dir,
        })
    }

    /// A token for `user` in `tenant` with the default scopes.
    pub fn token(&self, tenant: &str, user: &str) -> Result<String, String> {
        self.issuer
            .mint(&MintRequest {
                ttl: Duration::from_secs(7200),
                ..MintRequest::new(tenant, user)
            })
            .map_err(|e| e.to_string())
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// A client keeping up to `connections` keep-alive connections per host.
pub fn client(connections: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections.max(1) * 2)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}

/// The body of a successful answer; anything else is an error naming it.
pub async fn ok_json(resp: reqwest::Response) -> Result<Value, String> {
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("setup call failed with {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Result<Value, String> {
    ok_json(
        http.get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await
}

pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Result<Value, String> {
    ok_json(
        http.post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await
}

/// The caller's user record and a new project share they own.
pub async fn me_and_share(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
) -> Result<(Value, String), String> {
    let me = get_json(http, &format!("{base}/users/me"), token).await?;
    let share = post_json(
        http,
        &format!("{base}/shares"),
        token,
        &json!({"name": name, "share_type": "project", "owner_id": me["id"]}),
    )
    .await?;
    let id = share["id"]
        .as_str()
        .ok_or(format!("no share id in {share}"))?
        .to_owned();
    Ok((me, id))
}

/// Runs `f` against a scratch database made on the PostgreSQL server at
/// `url` (created first, dropped afterwards whatever happened).
pub async fn with_scratch_postgres<T, F, Fut>(url: &str, prefix: &str, f: F) -> Result<T, String>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let admin = Db::connect(url, &ConnectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let Db::Postgres(pool) = &admin else {
        return Err("--postgres-url must be a postgres:// URL".into());
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
    let mut scratch = url::Url::parse(url).map_err(|e| e.to_string())?;
    scratch.set_path(&format!("/{name}"));
    let result = f(scratch.to_string()).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(pool)
        .await;
    admin.close().await;
    result
}

/// What one load-generator run measured.
pub struct Load {
    pub ops: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
}

impl Load {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    pub fn p50_us(&self) -> u64 {
        self.hist.value_at_quantile(0.5)
    }
    pub fn p99_us(&self) -> u64 {
        self.hist.value_at_quantile(0.99)
    }
}

/// Runs `workers` loops calling `op(worker, n)` (n counts that worker's
/// calls) for `dur`; every call must succeed. Answers the count, the wall
/// time and a latency histogram in µs.
pub async fn load<F, Fut>(workers: usize, dur: Duration, op: F) -> Result<Load, String>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers.max(1) {
        let (stop, op) = (stop.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                op(w, n).await?;
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                n += 1;
            }
            Ok::<_, String>((n, hist))
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut first_error = None;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok((n, h)) => {
                ops += n;
                hist.add(h).map_err(|e| e.to_string())?;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Load {
        ops,
        elapsed: start.elapsed(),
        hist,
    })
}

/// Sends one request and checks its status; the body is read to the end
/// (so the connection goes back to the pool).
pub async fn expect_status(req: reqwest::RequestBuilder, want: u16) -> Result<(), String> {
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status != want {
        return Err(format!(
            "expected {want}, got {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}

/// The header line and the row format of the loopback tables.
pub fn print_header() {
    println!(
        "{:<9} {:<40} {:>5} {:>9} {:>10} {:>9} {:>9}",
        "backend", "operation", "conns", "ops", "ops/s", "p50 µs", "p99 µs"
    );
}

pub fn print_row(backend: &str, operation: &str, conns: usize, l: &Load) {
    println!(
        "{:<9} {:<40} {:>5} {:>9} {:>10.0} {:>9} {:>9}",
        backend,
        operation,
        conns,
        l.ops,
        l.per_sec(),
        l.p50_us(),
        l.p99_us()
    );
}

/// Appends, straight to the store, `folders` new top-level folders spread
/// over `shares` (round robin), each created and then renamed (two events
/// per folder stream), `batch` folders to a commit: a large log, quickly.
/// Answers the number of events appended and the head position after them.
pub async fn bulk_folders(
    state: &AppState,
    tenant: &str,
    user: &str,
    shares: &[String],
    folders: usize,
    batch: usize,
) -> Result<(u64, scaidrive_domain::LogPosition), String> {
    use scaidrive_domain::drive::folder::FolderEvent;
    use scaidrive_domain::id::{FolderId, ShareId, TenantId, UserId};
    use scaidrive_domain::{Actor, DomainEvent, EventMetadata, NewEvent};

    use crate::store::{AppendOutcome, AppendRequest, ExpectedVersion, StreamAppend};

    let tenant = TenantId::parse(tenant).map_err(|e| format!("tenant id: {e}"))?;
    let by = UserId::parse(user).map_err(|e| format!("user id: {e}"))?;
    let shares = shares
        .iter()
        .map(|s| ShareId::parse(s).map_err(|e| format!("share id: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if shares.is_empty() {
        return Err("no shares to write into".into());
    }
    let new_event = |e: FolderEvent, at| {
        let (event_type, data) = e.encode();
        NewEvent {
            event_id: uuid::Uuid::now_v7(),
            schema_version: FolderEvent::schema_version(&event_type),
            event_type,
            tenant_id: Some(tenant.to_string()),
            data,
            metadata: EventMetadata {
                occurred_at: at,
                actor: Actor {
                    user_id: Some(by.to_string()),
                    ..Default::default()
                },
                correlation_id: None,
                causation_id: None,
            },
        }
    };
    let mut made = 0;
    let mut events = 0u64;
    let mut last = None;
    while made < folders {
        let mut streams = Vec::new();
        for i in made..(made + batch.max(1)).min(folders) {
            let folder_id = FolderId::from_uuid(uuid::Uuid::now_v7());
            let share_id = shares[i % shares.len()];
            let at = chrono::Utc::now();
            let created = FolderEvent::FolderCreated {
                folder_id,
                tenant_id: tenant,
                share_id,
                parent_id: None,
                name: format!("bulk-{i}"),
                path: format!("/bulk-{i}"),
                by,
                at,
            };
            let renamed = FolderEvent::FolderRenamed {
                folder_id,
                share_id,
                name: format!("bulk-{i}-renamed"),
                old_path: format!("/bulk-{i}"),
                path: format!("/bulk-{i}-renamed"),
                at,
            };
            streams.push(StreamAppend {
                stream_id: folder_id.to_string(),
                expected: ExpectedVersion::NoStream,
                events: vec![new_event(created, at), new_event(renamed, at)],
            });
        }
        made += streams.len();
        events += 2 * streams.len() as u64;
        let outcome = state
            .store
            .append(AppendRequest {
                streams,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        if let AppendOutcome::Committed(a) = outcome {
            last = a.last.or(last);
        }
    }
    let head = last.ok_or("nothing was appended")?;
    Ok((events, head))
}

/// Waits until every projection has applied the log up to `position`.
pub async fn caught_up(
    state: &AppState,
    position: scaidrive_domain::LogPosition,
) -> Result<(), String> {
    if state
        .projector
        .wait_for(position, Duration::from_secs(600))
        .await
    {
        Ok(())
    } else {
        Err("the projections did not catch up within 10 minutes".into())
    }
}

/// The ids a bench needs to run commands as the user `me` (a `/users/me`
/// answer) in `share`.
pub fn command_ids(
    me: &Value,
    share: &str,
) -> Result<
    (
        scaidrive_domain::id::TenantId,
        scaidrive_domain::id::UserId,
        scaidrive_domain::id::ShareId,
    ),
    String,
> {
    use scaidrive_domain::id::{ShareId, TenantId, UserId};
    let tenant = TenantId::parse(me["tenant_id"].as_str().unwrap_or_default())
        .map_err(|e| format!("tenant id: {e}"))?;
    let user = UserId::parse(me["id"].as_str().unwrap_or_default())
        .map_err(|e| format!("user id: {e}"))?;
    let share = ShareId::parse(share).map_err(|e| format!("share id: {e}"))?;
    Ok((tenant, user, share))
}

/// The create-folder command straight on the bus: a folder `name` at the
/// root of `share`, as the system.
pub async fn create_root_folder(
    state: &AppState,
    (tenant, user, share): (
        scaidrive_domain::id::TenantId,
        scaidrive_domain::id::UserId,
        scaidrive_domain::id::ShareId,
    ),
    name: &str,
) -> Result<crate::command::Committed, String> {
    let ctx = crate::command::CommandContext::system(Some(tenant.to_string()));
    let target = crate::command::drive::Target {
        share_id: share,
        folder_id: None,
        parent_path: "/".into(),
    };
    crate::command::drive::create_folder(&state.bus, &ctx, tenant, target, name, user)
        .await
        .map(|(_, committed)| committed)
        .map_err(|e| e.to_string())
}
