//! Scale-out: three `scaidrive serve` processes on one PostgreSQL database,
//! one blob directory and one token issuer. Each projection (and the Kafka
//! relay) runs only where its worker lease is held; killing the holder with
//! SIGKILL hands the work to another process within seconds, and no event is
//! lost or applied twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use scaidrive::app::Core;
use scaidrive::auth::{DevIssuer, MintRequest};
use scaidrive::config::Config;
use scaidrive_projections::db::Db;
use serde_json::{json, Value};
use sqlx::Row;

use crate::dbfault::until;
use crate::helpers::{Answer, ScratchDatabase, TestApp};
use crate::procs::Server;
use crate::rebuild::{snapshot, TABLES};

const INSTANCES: usize = 3;
const WRITERS_PER_INSTANCE: usize = 3;
/// The quota projection's tables: running counters, so a batch applied
/// twice would show in them (the other read models mostly upsert).
const QUOTA_TABLES: [&str; 6] = [
    "rm_quota_files",
    "rm_quota_folders",
    "rm_quota_shares",
    "rm_quota_tenants",
    "rm_quota_reservations",
    "rm_quota_accounts",
];

/// Three servers sharing a database, a data directory (blobs, dev issuer key)
/// and therefore tokens.
struct Fleet {
    servers: Vec<Server>,
    client: reqwest::Client,
    issuer: DevIssuer,
    /// The test's own handle on the database and the log.
    core: Core,
    _database: ScratchDatabase,
    _dir: tempfile::TempDir,
}

impl Fleet {
    async fn start(extra: &[(&str, String)]) -> Fleet {
        let database = ScratchDatabase::create().await;
        let dir = tempfile::tempdir().expect("tempdir");
        // The key exists before the servers start, so all of them load it
        // instead of racing to create one each.
        let issuer = DevIssuer::load_or_create(dir.path(), None).expect("dev issuer");
        let servers: Vec<Server> = (0..INSTANCES)
            .map(|_| Server::start(dir.path(), &database.url, extra))
            .collect();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        for s in &servers {
            s.wait_ready(&client, Duration::from_secs(120)).await;
        }
        let mut config = Config::embedded(dir.path().to_path_buf());
        config.database_url = database.url.clone();
        let core = Core::open(&config).await.expect("open the test database");
        Fleet {
            servers,
            client,
            issuer,
            core,
            _database: database,
            _dir: dir,
        }
    }

    fn token(&self, user: &str) -> String {
        self.issuer
            .mint(&MintRequest {
                email: Some(format!("{user}@acme.test")),
                name: Some(user.to_owned()),
                ..MintRequest::new("acme", user)
            })
            .expect("mint")
    }

    async fn post(&self, i: usize, path: &str, t: &str, body: Value) -> Answer {
        let req = self
            .client
            .post(format!("{}{path}", self.servers[i].base))
            .bearer_auth(t)
            .json(&body);
        TestApp::answer(req.send().await.expect("request")).await
    }

    async fn get(&self, i: usize, path: &str, t: &str) -> Answer {
        let req = self
            .client
            .get(format!("{}{path}", self.servers[i].base))
            .bearer_auth(t);
        TestApp::answer(req.send().await.expect("request")).await
    }

    /// One gauge of `/metrics` per label value, or None if the server is gone.
    async fn gauge(&self, i: usize, metric: &str, label: &str) -> Option<BTreeMap<String, i64>> {
        let resp = self
            .client
            .get(format!("{}/metrics", self.servers[i].base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let text = resp.text().await.ok()?;
        let prefix = format!("{metric}{{{label}=\"");
        Some(
            text.lines()
                .filter_map(|l| {
                    let (name, value) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
                    Some((name.to_owned(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// Which of the servers `among` holds each worker lease, once every
    /// lease has exactly one holder there (None until then).
    async fn holders(&self, among: &[usize]) -> Option<BTreeMap<String, usize>> {
        let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in among {
            for (worker, held) in self
                .gauge(i, "scaidrive_worker_lease_held", "worker")
                .await?
            {
                let entry = holders.entry(worker).or_default();
                if held == 1 {
                    entry.push(i);
                }
            }
        }
        holders
            .into_iter()
            .map(|(w, h)| (h.len() == 1).then(|| (w, h[0])))
            .collect()
    }

    async fn settled_holders(&self, within: Duration) -> BTreeMap<String, usize> {
        let deadline = Instant::now() + within;
        let all: Vec<usize> = (0..self.servers.len()).collect();
        loop {
            if let Some(h) = self.holders(&all).await {
                if !h.is_empty() {
                    return h;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the worker leases never settled on one holder each"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn db(&self) -> &Db {
        &self.core.db
    }

    fn pool(&self) -> &sqlx::PgPool {
        match self.db() {
            Db::Postgres(p) => p,
            Db::Sqlite(_) => unreachable!("the fleet runs on PostgreSQL"),
        }
    }

    /// The newest committed event, read without the watermark.
    async fn head(&self) -> scaidrive_domain::LogPosition {
        let (commit, position): (i64, i64) = sqlx::query_as(
            "SELECT transaction_id::text::bigint, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_one(self.pool())
        .await
        .expect("head");
        scaidrive_domain::LogPosition::new(commit, position)
    }
}

/// What the writers got acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    id: String,
    name: String,
    kind: &'static str,
    instance: usize,
}

#[derive(Default)]
struct Load {
    acked: Mutex<Vec<Acked>>,
    /// Anything but a 201 followed by a 200 read, from a live server.
    failures: Mutex<Vec<String>>,
    /// Per server: how long each acknowledged create took.
    latencies: Mutex<BTreeMap<usize, Vec<Duration>>>,
    count: AtomicUsize,
}

/// Creates folders and uploads files through server `i` until `stop`; each
/// acknowledged create is read back at once through the same server.
#[allow(clippy::too_many_arguments)]
async fn writer(
    fleet: Arc<Fleet>,
    i: usize,
    w: usize,
    token: String,
    share: String,
    folder: String,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
    killed: Arc<Vec<AtomicBool>>,
) {
    let base = fleet.servers[i].base.clone();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let name = format!("s{i}-w{w}-{n}");
        let kind = if n % 3 == 0 { "files" } else { "folders" };
        let started = Instant::now();
        let req = if kind == "files" {
            let form = reqwest::multipart::Form::new()
                .text("share_id", share.clone())
                .text("folder_id", folder.clone())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(format!("content of {name}").into_bytes())
                        .file_name(name.clone()),
                );
            fleet
                .client
                .post(format!("{base}/files"))
                .bearer_auth(&token)
                .multipart(form)
        } else {
            fleet
                .client
                .post(format!("{base}/folders"))
                .bearer_auth(&token)
                .json(&json!({"share_id": share, "name": name}))
        };
        // An answer cut off by the kill says nothing; one that arrived is
        // an acknowledgement like any other.
        let dead = || killed[i].load(Ordering::SeqCst);
        let answer = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(bytes) => (
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    ),
                    Err(_) if dead() => return,
                    Err(e) => {
                        load.failures.lock().push(format!("server {i}: {e}"));
                        continue;
                    }
                }
            }
            Err(_) if dead() => return,
            Err(e) => {
                load.failures.lock().push(format!("server {i}: {e}"));
                continue;
            }
        };
        let (status, body) = answer;
        if status != 201 {
            load.failures
                .lock()
                .push(format!("server {i}: {status} {body}"));
            continue;
        }
        let took = started.elapsed();
        let id = body["id"].as_str().expect("created id").to_owned();
        load.latencies.lock().entry(i).or_default().push(took);
        load.acked.lock().push(Acked {
            id: id.clone(),
            name,
            kind,
            instance: i,
        });
        load.count.fetch_add(1, Ordering::SeqCst);
        // Read-your-writes, through the same server (a follower for most
        // projections, or the holder).
        let read = fleet
            .client
            .get(format!("{base}/{kind}/{id}"))
            .bearer_auth(&token)
            .send()
            .await;
        match read {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => load.failures.lock().push(format!(
                "server {i}: {kind} {id} acknowledged but reads {}",
                r.status()
            )),
            Err(_) if dead() => return,
            Err(e) => load.failures.lock().push(format!("server {i}: {e}")),
        }
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Every row of the quota tables as text, sorted.
async fn quota_snapshot(pool: &sqlx::PgPool) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for t in QUOTA_TABLES {
        let mut rows: Vec<String> =
            sqlx::query(&format!("SELECT to_jsonb(x)::text AS line FROM {t} x"))
                .fetch_all(pool)
                .await
                .expect("rows")
                .iter()
                .map(|r| r.get::<String, _>("line"))
                .collect();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

/// The user, share and upload folder every writer uses, made through server 0
/// (provisioning included).
struct Setup {
    token: String,
    share: String,
    uploads: String,
}

impl Setup {
    async fn make(fleet: &Fleet) -> Setup {
        let token = fleet.token("alice");
        let me = fleet.get(0, "/users/me", &token).await;
        assert_eq!(me.status, 200, "{}", me.body);
        let share = fleet
            .post(
                0,
                "/shares",
                &token,
                json!({"name": "Load", "share_type": "project", "owner_id": me.body["id"]}),
            )
            .await;
        assert_eq!(share.status, 201, "{}", share.body);
        let share = share.body["id"].as_str().expect("share").to_owned();
        let uploads = fleet
            .post(
                0,
                "/folders",
                &token,
                json!({"share_id": share, "name": "Uploads"}),
            )
            .await;
        assert_eq!(uploads.status, 201, "{}", uploads.body);
        let uploads = uploads.body["id"].as_str().expect("folder").to_owned();
        Setup {
            token,
            share,
            uploads,
        }
    }
}

/// Writers on every server, all at once.
struct Writers {
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
    killed: Arc<Vec<AtomicBool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(fleet: &Arc<Fleet>, setup: &Setup) -> Writers {
        let load = Arc::new(Load::default());
        let stop = Arc::new(AtomicBool::new(false));
        let killed: Arc<Vec<AtomicBool>> =
            Arc::new((0..INSTANCES).map(|_| AtomicBool::new(false)).collect());
        let mut tasks = Vec::new();
        for i in 0..INSTANCES {
            for w in 0..WRITERS_PER_INSTANCE {
                tasks.push(tokio::spawn(writer(
                    fleet.clone(),
                    i,
                    w,
                    setup.token.clone(),
                    setup.share.clone(),
                    setup.uploads.clone(),
                    load.clone(),
                    stop.clone(),
                    killed.clone(),
                )));
            }
        }
        Writers {
            load,
            stop,
            killed,
            tasks,
        }
    }

    fn count(&self) -> usize {
        self.load.count.load(Ordering::SeqCst)
    }

    /// Waits until each server acknowledged `n` writes.
    async fn each_acked(&self, n: usize) {
        let acked_by = |i: usize| {
            self.load
                .acked
                .lock()
                .iter()
                .filter(|a| a.instance == i)
                .count()
        };
        assert!(
            until(Duration::from_secs(60), || (0..INSTANCES)
                .all(|i| acked_by(i) >= n))
            .await,
            "the load never got going: {:?}",
            self.load.failures.lock()
        );
    }

    /// Waits until `n` more writes than `since` were acknowledged.
    async fn more_acked(&self, since: usize, n: usize) {
        assert!(
            until(Duration::from_secs(60), || self.count() >= since + n).await,
            "writes did not go on after the takeover: {:?}",
            self.load.failures.lock()
        );
    }

    /// Stops the writers; every failure (on a live server) fails the test.
    async fn finish(self) -> (Vec<Acked>, BTreeMap<usize, Vec<Duration>>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("writer");
        }
        let failures = self.load.failures.lock().clone();
        assert!(failures.is_empty(), "{failures:#?}");
        let acked = self.load.acked.lock().clone();
        let ids: BTreeSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids.len(), acked.len(), "an id acknowledged twice");
        let latencies = self.load.latencies.lock().clone();
        (acked, latencies)
    }
}

impl Fleet {
    /// SIGKILLs server `victim` and waits until each of `workers` is held by
    /// exactly one survivor; returns how long that took and the new holders.
    async fn kill_and_take_over(
        &self,
        victim: usize,
        writers: &Writers,
        workers: &[String],
    ) -> (Duration, BTreeMap<String, usize>) {
        writers.killed[victim].store(true, Ordering::SeqCst);
        let killed_at = Instant::now();
        self.servers[victim].kill();
        let survivors: Vec<usize> = (0..INSTANCES).filter(|i| *i != victim).collect();
        loop {
            if let Some(h) = self.holders(&survivors).await {
                if workers.iter().all(|w| h.contains_key(w)) {
                    let took = killed_at.elapsed();
                    println!("leases taken over {took:?} after SIGKILL: {h:?}");
                    return (took, h);
                }
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(10),
                "no survivor took the leases over within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn killing_the_projection_lease_holder_hands_its_work_over_without_losing_or_repeating_an_event(
) {
    let fleet = Arc::new(Fleet::start(&[]).await);
    let setup = Setup::make(&fleet).await;
    let t = setup.token.clone();

    // One holder per lease; the projections' holder is the one to kill.
    let before = fleet.settled_holders(Duration::from_secs(10)).await;
    println!("lease holders before: {before:?}");
    let victim = before["drive"];
    // The projections' leases (the others: retention, mail, the relay).
    let names: Vec<&str> = scaidrive_projections::all()
        .iter()
        .map(|p| p.name())
        .collect();
    let projections: Vec<String> = before
        .keys()
        .filter(|k| names.contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(projections.len(), names.len(), "{before:?}");

    let writers = Writers::start(&fleet, &setup);
    writers.each_acked(15).await;
    let acked_at_kill = writers.count();
    let (takeover, moved) = fleet
        .kill_and_take_over(victim, &writers, &projections)
        .await;
    assert!(takeover < Duration::from_secs(10), "{takeover:?}");
    // Writes keep being acknowledged, and read back, through the survivors.
    writers.more_acked(acked_at_kill, 60).await;
    let (acked, mut latencies) = writers.finish().await;
    for (i, l) in latencies.iter_mut() {
        let role = if *i == victim {
            "killed holder"
        } else if moved.values().any(|h| h == i) {
            "new holder"
        } else {
            "follower"
        };
        println!(
            "server {i} ({role}): {} creates, median {:?}",
            l.len(),
            median(l)
        );
    }
    let survivors: Vec<usize> = (0..INSTANCES).filter(|i| *i != victim).collect();

    // Every projection reaches the head; the followers report no lag.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let head = fleet.head().await;
        let cps = scaidrive_projections::checkpoint::all(fleet.db())
            .await
            .expect("checkpoints");
        if projections
            .iter()
            .all(|p| cps.iter().any(|(n, c)| n == p && c.position == head))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "projections never reached {head:?}: {cps:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &i in &survivors {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lag = fleet
                .gauge(i, "scaidrive_projection_lag_events", "projection")
                .await
                .expect("metrics");
            if lag.len() == projections.len() && lag.values().all(|l| *l == 0) {
                break;
            }
            assert!(Instant::now() < deadline, "server {i} reports lag {lag:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // No acknowledged write lost: each is readable through every survivor.
    for a in &acked {
        for &i in &survivors {
            let r = fleet.get(i, &format!("/{}/{}", a.kind, a.id), &t).await;
            assert_eq!(r.status, 200, "{a:?} through server {i}: {}", r.body);
            assert_eq!(r.body["name"], a.name.as_str(), "{a:?}");
        }
    }
    // ... and created exactly once in the log.
    let created: BTreeMap<String, i64> = sqlx::query_as(
        "SELECT CASE event_type WHEN 'folder-created' THEN data->>'folder_id' ELSE data->>'file_id' END, \
                count(*) FROM events WHERE event_type IN ('folder-created', 'file-created') GROUP BY 1",
    )
    .fetch_all(fleet.pool())
    .await
    .expect("creations")
    .into_iter()
    .collect();
    for a in &acked {
        assert_eq!(created.get(&a.id), Some(&1), "creation events of {a:?}");
    }

    // No event applied twice: one audit row per event, one feed entry per
    // created folder, and the live read models equal a fresh replay.
    let (events, audited, distinct, unaudited): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rm_audit), \
                (SELECT count(DISTINCT event_id) FROM rm_audit), \
                (SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM rm_audit a WHERE a.position = e.position))",
    )
    .fetch_one(fleet.pool())
    .await
    .expect("audit counts");
    assert_eq!((audited, distinct, unaudited), (events, events, 0));
    let feed: BTreeMap<String, i64> =
        sqlx::query_as("SELECT resource_id, count(*) FROM rm_changes GROUP BY resource_id")
            .fetch_all(fleet.pool())
            .await
            .expect("feed")
            .into_iter()
            .collect();
    for a in acked.iter().filter(|a| a.kind == "folders") {
        assert_eq!(feed.get(&a.id), Some(&1), "feed entries of {a:?}");
    }
    let live = (
        snapshot(fleet.db()).await,
        quota_snapshot(fleet.pool()).await,
    );
    let replay = scaidrive::projector::Projector::new(
        fleet.core.db.clone(),
        fleet.core.store.clone(),
        scaidrive_projections::all(),
    );
    for name in replay.names() {
        replay.rebuild(name, |_| {}).await.expect("rebuild");
    }
    let rebuilt = (
        snapshot(fleet.db()).await,
        quota_snapshot(fleet.pool()).await,
    );
    for t in TABLES {
        assert_eq!(live.0[t], rebuilt.0[t], "table {t} differs from a replay");
    }
    for t in QUOTA_TABLES {
        assert_eq!(live.1[t], rebuilt.1[t], "table {t} differs from a replay");
    }
    println!(
        "{} writes acknowledged ({acked_at_kill} before the kill), {events} events, takeover {takeover:?}",
        acked.len()
    );
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL and Kafka (run by scripts/test)"]
async fn killing_the_relay_lease_holder_hands_publishing_over_and_every_event_arrives_in_stream_order(
) {
    use crate::kafka::relay::{all_arrive, brokers, collect, create_topic, envelopes, topic_name};

    let brokers = brokers();
    let topic = topic_name();
    create_topic(&brokers, &topic).await;
    let (got, stop_collecting) = collect(&brokers, &topic);
    let fleet = Arc::new(
        Fleet::start(&[
            ("SCAIDRIVE_KAFKA_BROKERS", brokers.clone()),
            ("SCAIDRIVE_KAFKA_TOPIC", topic.clone()),
        ])
        .await,
    );
    let setup = Setup::make(&fleet).await;
    let before = fleet.settled_holders(Duration::from_secs(10)).await;
    println!("lease holders before: {before:?}");
    let victim = before[scaidrive::relay::CHECKPOINT];

    let writers = Writers::start(&fleet, &setup);
    writers.each_acked(10).await;
    assert!(
        until(Duration::from_secs(60), || got.lock().len() >= 20).await,
        "nothing was published"
    );
    let acked_at_kill = writers.count();
    // One relay published so far: no event went out twice.
    let published: Vec<String> = got
        .lock()
        .iter()
        .filter_map(|g| g.envelope["event_id"].as_str().map(str::to_owned))
        .collect();
    let distinct: BTreeSet<&String> = published.iter().collect();
    assert_eq!(
        distinct.len(),
        published.len(),
        "duplicates from one holder"
    );

    let (takeover, _) = fleet
        .kill_and_take_over(victim, &writers, &[scaidrive::relay::CHECKPOINT.to_owned()])
        .await;
    assert!(takeover < Duration::from_secs(10), "{takeover:?}");
    writers.more_acked(acked_at_kill, 40).await;
    let (acked, _) = writers.finish().await;

    // Every event of the log arrives, each stream's in order; the new holder
    // re-sends at most what the old one had not yet checkpointed.
    let log = envelopes(&fleet.core.store).await;
    let records = all_arrive(&log, &got, Duration::from_secs(60)).await;
    stop_collecting.cancel();
    println!(
        "{} writes acknowledged, {} events, {} records ({} re-sent), relay taken over {takeover:?} after SIGKILL",
        acked.len(),
        log.len(),
        records.len(),
        records.len().saturating_sub(log.len())
    );
}

/// Two lease sets on one database behave as two processes: one holds, and
/// when its lease connection dies (killed by the server here) it gives the
/// lease up at its next check and the other takes it.
#[tokio::test]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn a_lease_whose_connection_dies_is_given_up_and_taken_by_another_process() {
    use scaidrive::lease::Leases;
    use sqlx::ConnectOptions;
    use std::str::FromStr;

    let database = ScratchDatabase::create().await;
    let options = sqlx::postgres::PgConnectOptions::from_str(&database.url).expect("url");
    let stop = tokio_util::sync::CancellationToken::new();
    let (first, keeper_a) = Leases::postgres(options.clone(), stop.clone());
    let a = first.lease("worker");
    tokio::time::timeout(Duration::from_secs(10), a.acquired())
        .await
        .expect("the first process takes the free lease");
    let (second, keeper_b) = Leases::postgres(options.clone(), stop.clone());
    let b = second.lease("worker");
    tokio::time::sleep(scaidrive::lease::TICK * 3).await;
    assert!(a.is_held() && !b.is_held(), "one holder at a time");

    // The holder's lease connection goes away under it.
    let mut admin = options.connect().await.expect("connect");
    let pid: i32 = sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut admin)
    .await
    .expect("the lease's lock");
    let lost_at = Instant::now();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut admin)
        .await
        .expect("terminate");
    tokio::time::timeout(Duration::from_secs(5), a.lost())
        .await
        .expect("the old holder notices at its next check");
    let noticed = lost_at.elapsed();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if a.is_held() != b.is_held() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("someone holds it again");
    println!(
        "lease connection killed: given up after {noticed:?}, held again after {:?} (by the {})",
        lost_at.elapsed(),
        if b.is_held() {
            "other process"
        } else {
            "same process"
        }
    );
    assert_eq!(first.held().len(), 1);
    stop.cancel();
    keeper_a.await.expect("keeper");
    keeper_b.await.expect("keeper");
    assert!(!a.is_held() && !b.is_held(), "stopping gives the leases up");
}

/// Search with several processes: each keeps its own keyword index from the
/// log (here all share one data directory, so two of them keep private
/// ones). A file uploaded through one process is found through every
/// process by a search that sends the upload's position; a trash through
/// another process hides it everywhere; a killed process does not stop the
/// others from indexing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SCAIDRIVE_TEST_DATABASE_URL (run by scripts/test)"]
async fn every_process_keeps_its_own_search_index_from_the_log() {
    let fleet = Fleet::start(&[]).await;
    let t = fleet.token("sara");
    let me = fleet.get(0, "/users/me", &t).await;
    let share = fleet
        .post(
            0,
            "/shares",
            &t,
            json!({"name": "Search", "share_type": "project", "owner_id": me.body["id"]}),
        )
        .await;
    assert_eq!(share.status, 201, "{}", share.body);
    let share = share.body["id"].as_str().expect("share").to_owned();
    let upload = |i: usize, name: &'static str, text: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("share_id", share.clone())
            .part(
                "file",
                reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
                    .file_name(name)
                    .mime_str("text/plain")
                    .expect("mime"),
            );
        fleet
            .client
            .post(format!("{}/files", fleet.servers[i].base))
            .bearer_auth(&t)
            .multipart(form)
            .send()
    };
    let search = |i: usize, q: &'static str, pos: String| {
        fleet
            .client
            .get(format!("{}/search", fleet.servers[i].base))
            .query(&[("q", q)])
            .header("x-scaidrive-position", pos)
            .bearer_auth(&t)
            .send()
    };
    let up = TestApp::answer(
        upload(0, "animals.txt", "the okapi is shy")
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = up.body["id"].as_str().expect("id").to_owned();
    let pos = up
        .header("x-scaidrive-position")
        .expect("position")
        .to_owned();
    for i in 0..INSTANCES {
        let a = TestApp::answer(search(i, "okapi", pos.clone()).await.expect("search")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["total"], 1, "server {i}: {}", a.body);
        assert_eq!(a.body["results"][0]["id"], id.as_str());
    }
    // Trash through server 1: gone through all of them.
    let d = fleet
        .client
        .delete(format!("{}/files/{id}", fleet.servers[1].base))
        .bearer_auth(&t)
        .send()
        .await
        .expect("delete");
    assert_eq!(d.status(), 204);
    let pos = d
        .headers()
        .get("x-scaidrive-position")
        .and_then(|v| v.to_str().ok())
        .expect("position")
        .to_owned();
    for i in 0..INSTANCES {
        let a = TestApp::answer(search(i, "okapi", pos.clone()).await.expect("search")).await;
        assert_eq!(a.body["total"], 0, "server {i}: {}", a.body);
    }
    // Kill server 0; the others go on indexing what comes through them.
    fleet.servers[0].kill();
    let up = TestApp::answer(
        upload(2, "more.txt", "an okapi again")
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    let pos = up
        .header("x-scaidrive-position")
        .expect("position")
        .to_owned();
    for i in 1..INSTANCES {
        let a = TestApp::answer(search(i, "okapi", pos.clone()).await.expect("search")).await;
        assert_eq!(a.body["total"], 1, "server {i}: {}", a.body);
    }
    for i in 1..INSTANCES {
        let h = fleet.get(i, "/search/health", &t).await;
        assert_eq!(h.body["keyword"]["documents"], 2, "server {i}: {}", h.body);
    }
}
