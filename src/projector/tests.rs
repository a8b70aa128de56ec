//! The joint runner against both backends: every projection this process
//! holds gets each event once, a projection that cannot apply an event
//! stalls alone, and a checkpoint moved by someone else is taken over.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use scaidrive_domain::{Actor, DecodedEvent, EventMetadata, LogPosition, NewEvent};
use scaidrive_projections::checkpoint::{self, Checkpoint};
use scaidrive_projections::db::{ConnectOptions, Db, Tx};
use scaidrive_projections::{tx_execute, Projection, ProjectionError};
use serde_json::json;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Projector;
use crate::lease::Leases;
use crate::store::{AppendRequest, DynStore, ExpectedVersion, StreamAppend};

/// Counts the events of the types it handles in `t_seen`, one row per
/// (projection, event): applying an event twice fails on the primary key.
/// With `poison`, it cannot apply events of that type.
struct Counter {
    name: &'static str,
    handles: &'static [&'static str],
    poison: Option<&'static str>,
}

#[async_trait]
impl Projection for Counter {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> i32 {
        1
    }
    fn handles(&self, event_type: &str) -> bool {
        self.handles.contains(&event_type)
    }
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    async fn apply(&self, tx: &mut Tx, e: &DecodedEvent) -> Result<(), ProjectionError> {
        if self.poison == Some(e.event_type.as_str()) {
            tx_execute!(tx, "INSERT INTO no_such_table VALUES (1)")?;
        }
        tx_execute!(
            tx,
            "INSERT INTO t_seen (projection, event_id) VALUES ($1, $2)",
            self.name,
            e.event_id.to_string()
        )?;
        Ok(())
    }
}

fn counters(poison: Option<&'static str>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(Counter {
            name: "t-a",
            handles: &["a-happened"],
            poison: None,
        }),
        Arc::new(Counter {
            name: "t-ab",
            handles: &["a-happened", "b-happened"],
            poison: None,
        }),
        Arc::new(Counter {
            name: "t-b",
            handles: &["b-happened", "poison"],
            poison,
        }),
        Arc::new(Counter {
            name: "t-none",
            handles: &[],
            poison: None,
        }),
    ]
}

struct Fixture {
    db: Db,
    store: DynStore,
    _dir: Option<tempfile::TempDir>,
    drop_db: Option<(String, String)>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, &ConnectOptions::default())
            .await
            .expect("connect");
        Self::ready(db, Some(dir), None).await
    }

    async fn postgres() -> Fixture {
        let url = std::env::var("SCAIDRIVE_TEST_DATABASE_URL")
            .expect("SCAIDRIVE_TEST_DATABASE_URL must be set (scripts/test sets it)");
        let name = format!("sd_joint_{}", Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create db");
        admin.close().await.ok();
        let mut u = url::Url::parse(&url).expect("url");
        u.set_path(&format!("/{name}"));
        let db = Db::connect(u.as_str(), &ConnectOptions::default())
            .await
            .expect("connect");
        Self::ready(db, None, Some((url, name))).await
    }

    async fn ready(
        db: Db,
        dir: Option<tempfile::TempDir>,
        drop_db: Option<(String, String)>,
    ) -> Fixture {
        db.migrate().await.expect("migrate");
        let mut tx = db.begin().await.expect("begin");
        tx_execute!(
            &mut tx,
            "CREATE TABLE t_seen (projection TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (projection, event_id))"
        )
        .expect("table");
        tx.commit().await.expect("commit");
        let store = crate::store::open(&db).await.expect("store");
        Fixture {
            db,
            store,
            _dir: dir,
            drop_db,
        }
    }

    async fn append(&self, types: &[&str]) -> LogPosition {
        let events = types
            .iter()
            .map(|t| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: (*t).to_owned(),
                schema_version: 1,
                tenant_id: Some("tnt_t".into()),
                data: json!({}),
                metadata: EventMetadata {
                    occurred_at: Utc::now(),
                    actor: Actor::default(),
                    correlation_id: None,
                    causation_id: None,
                },
            })
            .collect();
        let outcome = self
            .store
            .append(AppendRequest {
                streams: vec![StreamAppend {
                    stream_id: format!("s-{}", Uuid::now_v7().simple()),
                    expected: ExpectedVersion::NoStream,
                    events,
                }],
                claims: vec![],
                idempotency: None,
            })
            .await
            .expect("append");
        match outcome {
            crate::store::AppendOutcome::Committed(a) => a.last.expect("events"),
            crate::store::AppendOutcome::Duplicate(_) => unreachable!("no idempotency key"),
        }
    }

    async fn seen(&self, projection: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM t_seen WHERE projection = $1";
        match &self.db {
            Db::Sqlite(d) => {
                sqlx::query_scalar(sql)
                    .bind(projection)
                    .fetch_one(&d.read)
                    .await
            }
            Db::Postgres(p) => sqlx::query_scalar(sql).bind(projection).fetch_one(p).await,
        }
        .expect("count")
    }

    async fn stored(&self, projection: &str) -> LogPosition {
        checkpoint::read(&self.db, projection)
            .await
            .expect("read")
            .map_or(LogPosition::START, |c| c.position)
    }

    async fn close(self) {
        self.db.close().await;
        if let Some((url, name)) = self.drop_db {
            let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .ok();
        }
    }
}

/// Every projection sees each of its events once, through the runner.
async fn each_event_once(f: Fixture) {
    let projector = Projector::new(f.db.clone(), f.store.clone(), counters(None));
    projector.prepare().await.expect("prepare");
    let stop = CancellationToken::new();
    let tasks = projector.spawn(&Leases::in_process(), stop.clone());
    let mut head = LogPosition::START;
    for i in 0..30 {
        let types: &[&str] = match i % 3 {
            0 => &["a-happened"],
            1 => &["b-happened", "a-happened"],
            _ => &["other"],
        };
        head = f.append(types).await;
    }
    assert!(projector.wait_for(head, Duration::from_secs(10)).await);
    assert_eq!(f.seen("t-a").await, 20);
    assert_eq!(f.seen("t-ab").await, 30);
    assert_eq!(f.seen("t-b").await, 10);
    assert_eq!(f.seen("t-none").await, 0);
    for name in ["t-a", "t-ab", "t-b", "t-none"] {
        assert_eq!(f.stored(name).await, head, "{name}'s stored checkpoint");
    }
    stop.cancel();
    for t in tasks {
        t.await.ok();
    }
    f.close().await;
}

/// A projection that cannot apply an event stops there; the others go on.
async fn failing_projection_stalls_alone(f: Fixture) {
    let projector = Projector::new(f.db.clone(), f.store.clone(), counters(Some("poison")));
    projector.prepare().await.expect("prepare");
    let stop = CancellationToken::new();
    let tasks = projector.spawn(&Leases::in_process(), stop.clone());
    let before = f.append(&["a-happened", "b-happened"]).await;
    assert!(projector.wait_for(before, Duration::from_secs(10)).await);
    let poison = f.append(&["poison"]).await;
    let mut head = poison;
    for _ in 0..5 {
        head = f.append(&["a-happened", "b-happened"]).await;
    }
    let healthy = [true, true, false, true];
    assert!(
        projector
            .wait_for_some(head, Some(&healthy), Duration::from_secs(10))
            .await,
        "the healthy projections reach the head"
    );
    assert_eq!(f.seen("t-a").await, 6);
    assert_eq!(f.seen("t-ab").await, 12);
    // The failing one applied what came before the poison, nothing after.
    assert_eq!(f.seen("t-b").await, 1);
    assert_eq!(
        projector.position_of("t-b"),
        Some(before),
        "t-b stopped before the poison"
    );
    assert_eq!(f.stored("t-b").await, before);
    stop.cancel();
    for t in tasks {
        t.await.ok();
    }
    f.close().await;
}

/// A checkpoint someone else moved (a runner in another process) is taken
/// over, not applied again; the generation of that projection moves.
async fn moved_checkpoint_is_taken_over(f: Fixture) {
    let projector = Projector::new(f.db.clone(), f.store.clone(), counters(None));
    projector.prepare().await.expect("prepare");
    let first = f.append(&["a-happened"]).await;
    // "Elsewhere": t-a's row moves past the event without this process.
    checkpoint::advance(
        &f.db,
        "t-a",
        LogPosition::START,
        Checkpoint {
            version: 1,
            position: first,
        },
    )
    .await
    .expect("advance");
    let index = projector.index_of("t-a").expect("t-a");
    let generation = projector.generation(index);
    let held: Vec<usize> = (0..4).collect();
    // Until every projection stands at the event: on PostgreSQL it becomes
    // readable only once older transactions elsewhere in the cluster (other
    // tests) have ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while projector.positions().iter().any(|(_, at)| *at < first) {
        assert!(
            std::time::Instant::now() < deadline,
            "the projections never reached the event"
        );
        let stepped = projector.step_held(&held).await.expect("step");
        if stepped.read == 0 && !stepped.more {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(projector.position_of("t-a"), Some(first));
    assert_eq!(f.seen("t-a").await, 0, "t-a's event was applied elsewhere");
    assert_eq!(f.seen("t-ab").await, 1);
    assert_ne!(projector.generation(index), generation);
    f.close().await;
}

/// A count of some event kinds moves when a batch with such an event is
/// applied, not with other batches of the same projection, and whenever the
/// projection is moved without this process seeing its events.
async fn kind_generation_moves_with_its_kinds(f: Fixture) {
    let projector = Projector::new(f.db.clone(), f.store.clone(), counters(None));
    projector.prepare().await.expect("prepare");
    let b_only = projector
        .generation_of("t-ab", &["b-"])
        .expect("t-ab exists");
    let whole = projector.index_of("t-ab").expect("t-ab");
    let (kind_before, whole_before) = (b_only.get(), projector.generation(whole));
    let stop = CancellationToken::new();
    let tasks = projector.spawn(&Leases::in_process(), stop.clone());
    let head = f.append(&["a-happened"]).await;
    assert!(projector.wait_for(head, Duration::from_secs(10)).await);
    assert_ne!(projector.generation(whole), whole_before);
    assert_eq!(b_only.get(), kind_before, "an a-event leaves the b-count");
    let head = f.append(&["b-happened"]).await;
    assert!(projector.wait_for(head, Duration::from_secs(10)).await);
    assert_ne!(b_only.get(), kind_before, "a b-event moves it");
    stop.cancel();
    for t in tasks {
        t.await.ok();
    }
    // Moved elsewhere: what changed is unknown, so every count moves.
    let at = b_only.get();
    let next = f.append(&["a-happened"]).await;
    checkpoint::advance(
        &f.db,
        "t-ab",
        head,
        Checkpoint {
            version: 1,
            position: next,
        },
    )
    .await
    .expect("advance");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while projector.position_of("t-ab") != Some(next) {
        assert!(
            std::time::Instant::now() < deadline,
            "never took the move over"
        );
        let stepped = projector.step_held(&[whole]).await.expect("step");
        if stepped.read == 0 && !stepped.more {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_ne!(b_only.get(), at);
    assert_eq!(
        f.seen("t-ab").await,
        2,
        "the moved-over event was not applied here"
    );
    f.close().await;
}

#[tokio::test]
async fn sqlite_kind_generation_moves_with_its_kinds() {
    kind_generation_moves_with_its_kinds(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn sqlite_each_event_once() {
    each_event_once(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn sqlite_failing_projection_stalls_alone() {
    failing_projection_stalls_alone(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn sqlite_moved_checkpoint_is_taken_over() {
    moved_checkpoint_is_taken_over(Fixture::sqlite().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (SCAIDRIVE_TEST_DATABASE_URL; scripts/test sets it)"]
async fn postgres_each_event_once() {
    each_event_once(Fixture::postgres().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (SCAIDRIVE_TEST_DATABASE_URL; scripts/test sets it)"]
async fn postgres_failing_projection_stalls_alone() {
    failing_projection_stalls_alone(Fixture::postgres().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (SCAIDRIVE_TEST_DATABASE_URL; scripts/test sets it)"]
async fn postgres_moved_checkpoint_is_taken_over() {
    moved_checkpoint_is_taken_over(Fixture::postgres().await).await;
}

/// Projection batches commit without waiting for the log flush; every other
/// transaction keeps the server's setting.
#[tokio::test]
#[ignore = "needs PostgreSQL (SCAIDRIVE_TEST_DATABASE_URL; scripts/test sets it)"]
async fn postgres_only_derived_transactions_skip_the_flush() {
    let f = Fixture::postgres().await;
    let setting = |tx: Tx| async move {
        let Tx::Postgres(mut t) = tx else {
            panic!("a PostgreSQL transaction")
        };
        let v: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *t)
            .await
            .expect("show");
        t.rollback().await.expect("rollback");
        v
    };
    let derived = f.db.begin_derived().await.expect("begin derived");
    assert_eq!(setting(derived).await, "off");
    let Db::Postgres(pool) = &f.db else {
        panic!("a PostgreSQL database")
    };
    let server: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await
        .expect("show");
    let plain = f.db.begin().await.expect("begin");
    assert_eq!(setting(plain).await, server);
    f.close().await;
}
