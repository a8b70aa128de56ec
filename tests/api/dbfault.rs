//! PostgreSQL going away under load: 503 while it is down, service back
//! within seconds of its return, and no acknowledged write lost.
//!
//! The test runs its own throwaway cluster (the shared one serves other
//! tests at the same time) and kills it with `pg_ctl stop -m immediate`,
//! which is what a crash looks like to the server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scaidrive_projections::db::Db;
use serde_json::{json, Value};
use sqlx::Row;

use crate::drive::new_share;
use crate::helpers::{spawn_with, Backend, TestApp};
use crate::procs::{blocking, server_binaries, Cluster};
use crate::rebuild::{settle, snapshot, TABLES};

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
