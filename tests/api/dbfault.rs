//! PostgreSQL going away under load: 503 while it is down, service back
//! within seconds of its return, and no acknowledged write lost.
//!
//! The test runs its own throwaway cluster (the shared one serves other
//! tests at the same time) and kills it with `pg_ctl stop -m immediate`,
//! which is what a crash looks like to the server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scaidrive_projections::db::Db;
use serde_json::{json, Value};
use sqlx::Row;

use crate::drive::new_share;
use crate::helpers::{spawn_with, Backend, TestApp};
use crate::rebuild::{settle, snapshot, TABLES};

/// The newest PostgreSQL server binaries on this machine, if any.
fn server_binaries() -> Option<PathBuf> {
    let mut dirs: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for root in ["/usr/lib/postgresql", "/usr/local/lib/postgresql"] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            let version = e
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            dirs.push((version, e.path().join("bin")));
        }
    }
    dirs.sort();
    let usable = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    dirs.into_iter()
        .rev()
        .map(|(_, d)| d)
        .find(|d| usable(d))
        .or_else(|| {
            // Elsewhere: wherever `pg_ctl` is on the PATH.
            std::env::var_os("PATH")
                .and_then(|path| std::env::split_paths(&path).find(|d| usable(d)))
        })
}

/// A private cluster in a temporary directory, stopped when dropped.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// initdb refuses to run as root: then everything runs as `postgres`.
    as_postgres: bool,
}

impl Cluster {
    fn create(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                ok.success(),
                "cannot hand the cluster directory to postgres"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let cluster = Cluster {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
            ],
        );
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
    }

    fn kill(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.dir.path().join("data/postmaster.pid");
        if pid.exists() {
            let exe = self.bin.join("pg_ctl");
            let data = self.data();
            let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
            let _ = if self.as_postgres {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&exe)
                    .args(args)
                    .output()
            } else {
                Command::new(&exe).args(args).output()
            };
        }
    }
}

/// Runs a blocking cluster command off the runtime's threads.
async fn blocking(cluster: &Arc<Cluster>, f: fn(&Cluster)) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .expect("cluster command");
}

/// What one create request got.
#[derive(Debug)]
enum Outcome {
    Created { id: String, name: String },
    Refused { status: u16, body: Value },
    NoAnswer(String),
}

#[derive(Default)]
struct Load {
    outcomes: Mutex<Vec<Outcome>>,
    created: AtomicUsize,
    refused: AtomicUsize,
}

async fn writer(
    app: Arc<TestApp>,
    token: String,
    share: String,
    w: usize,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("w{w}-{i}");
        i += 1;
        let sent = app
            .raw(reqwest::Method::POST, "/folders")
            .bearer_auth(&token)
            .json(&json!({"share_id": share, "name": name}))
            .send()
            .await;
        let outcome = match sent {
            Err(e) => Outcome::NoAnswer(e.to_string()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Err(e) => Outcome::NoAnswer(e.to_string()),
                    Ok(bytes) => {
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        if status == 201 {
                            Outcome::Created {
                                id: body["id"].as_str().expect("created id").to_owned(),
                                name,
                            }
                        } else {
                            Outcome::Refused { status, body }
                        }
                    }
                }
            }
        };
        match outcome {
            Outcome::Created { .. } => load.created.fetch_add(1, Ordering::SeqCst),
            _ => load.refused.fetch_add(1, Ordering::SeqCst),
        };
        load.outcomes.lock().expect("outcomes").push(outcome);
    }
}

/// Polls `cond` every 50 ms until it holds; false once `deadline` passes.
pub(crate) async fn until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

async fn ready(app: &TestApp) -> Option<(u16, Value)> {
    let resp = app.raw(reqwest::Method::GET, "/ready").send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

const WRITERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL binaries (scripts/test)"]
async fn database_down_answers_503_recovers_and_keeps_every_acknowledged_write() {
    let Some(bin) = server_binaries() else {
        println!("skipped: no PostgreSQL server binaries installed");
        return;
    };
    let cluster = Arc::new(
        tokio::task::spawn_blocking(move || Cluster::create(bin))
            .await
            .expect("initdb"),
    );
    blocking(&cluster, Cluster::start).await;
    let url = cluster.url();
    let app = Arc::new(
        spawn_with(Backend::Sqlite, |c| {
            c.database_url = url;
            c.consistency_wait = Duration::from_secs(10);
            c.rate_limits = scaidrive::ratelimit::Limits {
                per_token: 1_000_000,
                per_user: 1_000_000,
                per_tenant: 1_000_000,
            };
        })
        .await,
    );
    assert!(matches!(app.state.db, Db::Postgres(_)));
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Load").await;

    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                app.clone(),
                t.clone(),
                share.clone(),
                w,
                load.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Under load, then the database dies.
    assert!(
        until(Duration::from_secs(60), || load
            .created
            .load(Ordering::SeqCst)
            >= 50)
        .await,
        "the load never got going"
    );
    blocking(&cluster, Cluster::kill).await;
    let refused_before = load.refused.load(Ordering::SeqCst);
    let (status, body) = ready(&app)
        .await
        .expect("/ready answers while the database is down");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["database"], false, "{body}");
    // Writers learn about it (a pool acquire times out in a few seconds;
    // writers queued behind one another in the command bus take longer).
    assert!(
        until(Duration::from_secs(30), || {
            load.refused.load(Ordering::SeqCst) >= refused_before + 3
        })
        .await,
        "requests kept hanging while the database was down"
    );

    // It comes back: so does the service, without a restart.
    blocking(&cluster, Cluster::start).await;
    let back = Instant::now();
    let mut recovered = None;
    while back.elapsed() < Duration::from_secs(15) {
        if let Some((200, _)) = ready(&app).await {
            recovered = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = recovered.expect("not ready within 15 s of the database's return");
    println!("ready again {recovered:?} after PostgreSQL restarted");
    let created_at_return = load.created.load(Ordering::SeqCst);
    assert!(
        until(Duration::from_secs(30), || {
            load.created.load(Ordering::SeqCst) >= created_at_return + 2 * WRITERS
        })
        .await,
        "writes did not succeed again after the database came back"
    );
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }

    // Refusals were 503 with a detail, or the connection dropped: never 500.
    let outcomes = std::mem::take(&mut *load.outcomes.lock().expect("outcomes"));
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let (mut unavailable, mut dropped) = (0, 0);
    for o in &outcomes {
        match o {
            Outcome::Created { id, name } => {
                assert!(
                    acked.insert(id.clone(), name.clone()).is_none(),
                    "id {id} acknowledged twice"
                );
            }
            Outcome::Refused { status, body } => {
                assert_eq!(*status, 503, "during the outage: {body}");
                assert!(body["detail"].is_string(), "503 without a detail: {body}");
                unavailable += 1;
            }
            Outcome::NoAnswer(e) => {
                dropped += 1;
                println!("no answer: {e}");
            }
        }
    }
    println!(
        "{} created, {unavailable} answered 503, {dropped} without an answer",
        acked.len()
    );
    assert!(unavailable > 0, "no request saw the outage as a 503");

    // Every acknowledged create is there, exactly once.
    for (id, name) in &acked {
        let a = app.get(&format!("/folders/{id}"), &t).await;
        assert_eq!(a.status, 200, "acknowledged folder {id} lost: {}", a.body);
        assert_eq!(a.body["name"], name.as_str());
    }
    let mut created_events: BTreeMap<String, usize> = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page = app
            .get(&format!("/events?limit=1000&after={after}"), &t)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        for e in page.body["events"].as_array().expect("events") {
            let ty = e["event_type"].as_str().unwrap_or_default().to_lowercase();
            if ty.contains("folder") && ty.contains("created") {
                let stream = e["stream_id"].as_str().unwrap_or_default();
                if let Some(id) = acked.keys().find(|id| stream.contains(id.as_str())) {
                    *created_events.entry(id.clone()).or_default() += 1;
                }
            }
        }
        after = page.body["next_after"]
            .as_str()
            .expect("next_after")
            .to_owned();
        if page.body["has_more"] != true {
            break;
        }
    }
    for id in acked.keys() {
        assert_eq!(created_events.get(id), Some(&1), "creation events of {id}");
    }
    let Db::Postgres(pool) = &app.state.db else {
        unreachable!()
    };
    let rows = sqlx::query("SELECT id, name FROM rm_folders")
        .fetch_all(pool)
        .await
        .expect("folders");
    let mut names = BTreeSet::new();
    for r in &rows {
        let name: String = r.get("name");
        assert!(names.insert(name.clone()), "folder name {name} twice");
    }
    let ids: BTreeSet<String> = rows.iter().map(|r| r.get::<String, _>("id")).collect();
    assert!(acked.keys().all(|id| ids.contains(id)));

    // The projections resumed from their checkpoints: replaying the log
    // gives exactly the live read models.
    settle(&app).await;
    let live = snapshot(&app.state.db).await;
    for name in app.state.projector.names() {
        app.state
            .projector
            .rebuild(name, |_| {})
            .await
            .expect("rebuild");
    }
    let rebuilt = snapshot(&app.state.db).await;
    for t in TABLES {
        assert_eq!(live[t], rebuilt[t], "table {t} differs after the rebuild");
    }
}
