//! Crashes under load, through the real server binary: 32 writers create
//! folders and upload files over HTTP while the server is killed with
//! SIGKILL (on SQLite and on PostgreSQL) or while PostgreSQL itself crashes
//! and comes back. Afterwards every acknowledged create is readable and was
//! created by exactly one event, the log has unique event ids, gap-free
//! stream versions and intact hash chains, and rebuilding every read model
//! from the log gives exactly the live tables.
//!
//! A writer whose request got no answer (the server died under it) or a 503
//! retries the same name: a 409 then means the lost request had committed,
//! and the name constraint guarantees it was not created twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use scaidrive::app::Core;
use scaidrive::auth::{DevIssuer, MintRequest};
use scaidrive::config::Config;
use scaidrive_domain::LogPosition;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::dbfault::until;
use crate::helpers::ScratchDatabase;
use crate::procs::{blocking, server_binaries, Cluster, Server};
use crate::rebuild::{snapshot, TABLES};

const WRITERS: usize = 32;

#[derive(Debug, Clone)]
struct Acked {
    kind: &'static str,
    id: String,
    name: String,
}

#[derive(Default)]
struct Load {
    acked: Mutex<Vec<Acked>>,
    /// Answers other than a 201 (or a 409 to a retry): status and body.
    refused: Mutex<Vec<(u16, Value)>>,
    acked_n: AtomicUsize,
    refused_n: AtomicUsize,
    no_answer: AtomicUsize,
    /// Retries that found their name taken: the unanswered request had
    /// committed.
    committed_unanswered: AtomicUsize,
}

/// The server under test as the writers see it.
struct Target {
    base: String,
    client: reqwest::Client,
    token: String,
    share: String,
}

impl Target {
    /// One create: `Err` when no answer arrived.
    async fn create(&self, kind: &str, name: &str) -> Result<(u16, Value), String> {
        let req = if kind == "folders" {
            self.client
                .post(format!("{}/folders", self.base))
                .json(&json!({"share_id": self.share, "name": name}))
        } else {
            let form = reqwest::multipart::Form::new()
                .text("share_id", self.share.clone())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(format!("content of {name}\n").into_bytes())
                        .file_name(name.to_owned()),
                );
            self.client
                .post(format!("{}/files", self.base))
                .multipart(form)
        };
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

async fn writer(target: Arc<Target>, w: usize, load: Arc<Load>, stop: Arc<AtomicBool>) {
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let kind = if i % 5 == 4 { "files" } else { "folders" };
        let name = format!("w{w}-{i}");
        i += 1;
        let mut retry = false;
        while !stop.load(Ordering::SeqCst) {
            match target.create(kind, &name).await {
                Err(_) => {
                    load.no_answer.fetch_add(1, Ordering::SeqCst);
                }
                Ok((201, body)) => {
                    let id = body["id"].as_str().expect("created id").to_owned();
                    load.acked.lock().push(Acked {
                        kind,
                        id,
                        name: name.clone(),
                    });
                    load.acked_n.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok((409, _)) if retry => {
                    load.committed_unanswered.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok((status, body)) => {
                    load.refused.lock().push((status, body));
                    load.refused_n.fetch_add(1, Ordering::SeqCst);
                    if status != 503 {
                        break;
                    }
                }
            }
            retry = true;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Writers {
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(target: &Arc<Target>) -> Writers {
        let load = Arc::new(Load::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..WRITERS)
            .map(|w| tokio::spawn(writer(target.clone(), w, load.clone(), stop.clone())))
            .collect();
        Writers { load, stop, tasks }
    }

    fn acked(&self) -> usize {
        self.load.acked_n.load(Ordering::SeqCst)
    }

    /// Waits for `n` more acknowledgements than `since`.
    async fn more_acked(&self, since: usize, n: usize, what: &str) {
        let load = self.load.clone();
        assert!(
            until(Duration::from_secs(30), || load
                .acked_n
                .load(Ordering::SeqCst)
                >= since + n)
            .await,
            "{what}: fewer than {n} writes acknowledged within 30 s"
        );
    }

    async fn finish(self) -> Arc<Load> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("writer");
        }
        self.load
    }
}

fn token(issuer: &DevIssuer) -> String {
    issuer
        .mint(&MintRequest {
            email: Some("alice@acme.test".into()),
            name: Some("alice".into()),
            ..MintRequest::new("acme", "alice")
        })
        .expect("mint")
}

async fn setup(server: &Server, issuer: &DevIssuer) -> Arc<Target> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    server.wait_ready(&client, Duration::from_secs(60)).await;
    let token = token(issuer);
    let me: Value = client
        .get(format!("{}/users/me", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me json");
    let share: Value = client
        .post(format!("{}/shares", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "Load", "share_type": "project", "owner_id": me["id"]}))
        .send()
        .await
        .expect("share")
        .json()
        .await
        .expect("share json");
    Arc::new(Target {
        base: server.base.clone(),
        client,
        token,
        share: share["id"].as_str().expect("share id").to_owned(),
    })
}

async fn open_core(data_dir: &Path, database_url: &str) -> Core {
    let mut config = Config::embedded(data_dir.to_path_buf());
    if !database_url.is_empty() {
        config.database_url = database_url.to_owned();
    }
    Core::open(&config).await.expect("open the database")
}

/// Everything the log holds, in log order.
async fn whole_log(core: &Core) -> Vec<scaidrive_domain::RecordedEvent> {
    let mut out = Vec::new();
    let mut after = LogPosition::START;
    loop {
        let batch = core
            .store
            .read_all(after, 1000)
            .await
            .expect("read the log");
        let Some(last) = batch.last() else {
            return out;
        };
        after = last.log;
        out.extend(batch);
    }
}

/// The checks after a fault; stops `server` before replaying the log.
async fn check_nothing_lost(
    target: &Target,
    server: &Server,
    data_dir: &Path,
    database_url: &str,
    load: &Load,
) {
    // Answers: 201, a 409 to a retry whose first try went unanswered, or 503
    // with a detail. Never a 500.
    let refused = load.refused.lock().clone();
    for (status, body) in &refused {
        assert_eq!(*status, 503, "refusal other than 503: {body}");
        assert!(body["detail"].is_string(), "503 without a detail: {body}");
    }
    let acked = load.acked.lock().clone();
    println!(
        "{} acknowledged, {} answered 503, {} without an answer, {} committed without an answer",
        acked.len(),
        refused.len(),
        load.no_answer.load(Ordering::SeqCst),
        load.committed_unanswered.load(Ordering::SeqCst)
    );
    let ids: BTreeSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), acked.len(), "an id was acknowledged twice");

    // Every acknowledged create is readable through the API.
    let missing: Vec<String> = futures::stream::iter(acked.iter())
        .map(|a| async move {
            let r = target
                .client
                .get(format!("{}/{}/{}", target.base, a.kind, a.id))
                .bearer_auth(&target.token)
                .send()
                .await
                .expect("read back");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status == 200 && body["name"] == a.name.as_str() {
                None
            } else {
                Some(format!("{a:?}: {status} {body}"))
            }
        })
        .buffer_unordered(16)
        .filter_map(|m| async move { m })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "acknowledged but not readable: {missing:?}"
    );

    // The log: unique event ids, stream versions 1, 2, … without a gap or a
    // repeat, one creation event per acknowledged id and per name.
    let core = open_core(data_dir, database_url).await;
    let log = whole_log(&core).await;
    let mut event_ids = BTreeSet::new();
    let mut versions: BTreeMap<&str, i64> = BTreeMap::new();
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut created_names: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &log {
        assert!(event_ids.insert(e.event_id), "event {} twice", e.event_id);
        let v = versions.entry(e.stream_id.as_str()).or_insert(0);
        assert_eq!(
            e.stream_version,
            *v + 1,
            "stream {} jumps from version {v}",
            e.stream_id
        );
        *v = e.stream_version;
        let key = match e.event_type.as_str() {
            "folder-created" => "folder_id",
            "file-created" => "file_id",
            _ => continue,
        };
        if let Some(id) = e.data[key].as_str() {
            *created.entry(id.to_owned()).or_default() += 1;
        }
        if let Some(name) = e.data["name"].as_str() {
            *created_names
                .entry((e.event_type.clone(), name.to_owned()))
                .or_default() += 1;
        }
    }
    for a in &acked {
        assert_eq!(created.get(&a.id), Some(&1), "creation events of {a:?}");
    }
    let twice: Vec<_> = created_names.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "created twice: {twice:?}");

    // The hash chains, from the store and through the API.
    let report = core.store.verify(None).await.expect("verify");
    assert!(report.first_broken.is_none(), "{report:?}");
    assert_eq!(report.events_checked as usize, log.len(), "{report:?}");
    let v: Value = target
        .client
        .get(format!("{}/audit/verify", target.base))
        .bearer_auth(&target.token)
        .send()
        .await
        .expect("audit verify")
        .json()
        .await
        .expect("audit verify json");
    assert_eq!(v["ok"], true, "{v}");

    // The restarted server's projections reach the head; then the live read
    // models must equal a replay of the log.
    let replay = scaidrive::projector::Projector::new(
        core.db.clone(),
        core.store.clone(),
        scaidrive_projections::all(),
    );
    let head = log.last().map(|e| e.log).unwrap_or(LogPosition::START);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cps = scaidrive_projections::checkpoint::all(&core.db)
            .await
            .expect("checkpoints");
        let caught_up = replay.names().iter().all(|p| {
            cps.iter()
                .any(|(n, c)| n.as_str() == *p && c.position == head)
        });
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "projections never reached {head:?}: {cps:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let live = snapshot(&core.db).await;
    for name in replay.names() {
        replay.rebuild(name, |_| {}).await.expect("rebuild");
    }
    let rebuilt = snapshot(&core.db).await;
    for t in TABLES {
        assert_eq!(live[t], rebuilt[t], "table {t} differs from a replay");
    }
    println!(
        "{} events in {} streams; read models equal a replay",
        log.len(),
        versions.len()
    );
    core.db.close().await;
}

/// SIGKILL mid-load, a restart on the same data, and the checks.
async fn sigkill_under_load(database_url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = DevIssuer::load_or_create(dir.path(), None).expect("dev issuer");
    let server = Server::start(dir.path(), database_url, &[]);
    let target = setup(&server, &issuer).await;
    let writers = Writers::start(&target);
    writers.more_acked(0, 100, "before the kill").await;

    server.kill();
    let at_kill = writers.acked();
    let killed_at = Instant::now();
    // The writers hammer a closed port for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = Server::start_on(server.port, dir.path(), database_url, &[]);
    server
        .wait_ready(&target.client, Duration::from_secs(30))
        .await;
    println!(
        "{at_kill} acknowledged before SIGKILL; ready again after {:?}",
        killed_at.elapsed()
    );
    writers
        .more_acked(writers.acked(), 2 * WRITERS, "after the restart")
        .await;
    let load = writers.finish().await;
    assert!(
        load.no_answer.load(Ordering::SeqCst) > 0,
        "no request noticed the crash"
    );
    check_nothing_lost(&target, &server, dir.path(), database_url, &load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_32_writers_on_sqlite_loses_no_acknowledged_write_and_replays_to_the_live_read_models(
) {
    sigkill_under_load("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (scripts/test)"]
async fn sigkill_under_32_writers_on_postgres_loses_no_acknowledged_write_and_replays_to_the_live_read_models(
) {
    let database = ScratchDatabase::create().await;
    sigkill_under_load(&database.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL binaries (scripts/test)"]
async fn postgres_restarted_under_32_writers_answers_503_and_loses_no_acknowledged_write() {
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
    // A database of its own on the private cluster.
    let url = {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&cluster.url())
            .await
            .expect("connect to the cluster");
        let name = format!("sd_crash_{}", Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let mut u = url::Url::parse(&cluster.url()).expect("url");
        u.set_path(&format!("/{name}"));
        u.to_string()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = DevIssuer::load_or_create(dir.path(), None).expect("dev issuer");
    let server = Server::start(
        dir.path(),
        &url,
        &[("SCAIDRIVE_CONSISTENCY_WAIT_MS", "10000".to_owned())],
    );
    let target = setup(&server, &issuer).await;
    let writers = Writers::start(&target);
    writers.more_acked(0, 100, "before the outage").await;

    blocking(&cluster, Cluster::kill).await;
    let down_at = Instant::now();
    let ready = target
        .client
        .get(format!("{}/ready", target.base))
        .send()
        .await
        .expect("/ready answers while the database is down");
    assert_eq!(ready.status(), 503);
    let refused_before = writers.load.refused_n.load(Ordering::SeqCst);
    let load = writers.load.clone();
    assert!(
        until(Duration::from_secs(30), || load
            .refused_n
            .load(Ordering::SeqCst)
            >= refused_before + 3)
        .await,
        "requests kept hanging while the database was down"
    );
    blocking(&cluster, Cluster::start).await;
    println!("PostgreSQL down for {:?}", down_at.elapsed());
    server
        .wait_ready(&target.client, Duration::from_secs(15))
        .await;
    writers
        .more_acked(writers.acked(), 2 * WRITERS, "after PostgreSQL returned")
        .await;
    let load = writers.finish().await;
    assert!(
        !load.refused.lock().is_empty(),
        "no request saw the outage as a 503"
    );
    check_nothing_lost(&target, &server, dir.path(), &url, &load).await;
}
