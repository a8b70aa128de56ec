//! Proofs for auditors: checkpoints, inclusion and consistency proofs, the
//! offline verifier and the witness, and tampering each must catch.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use scaidrive::proofs::{self, Checkpoint};
use scaidrive_domain::merkle;
use scaidrive_domain::{EventMetadata, NewEvent};
use scaidrive_projections::db::Db;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{spawn_with, Backend, TestApp};

async fn exec(db: &Db, sql: &str) -> u64 {
    match db {
        Db::Sqlite(d) => sqlx::query(sql)
            .execute(&d.write)
            .await
            .unwrap()
            .rows_affected(),
        Db::Postgres(p) => sqlx::query(sql).execute(p).await.unwrap().rows_affected(),
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    db.fetch_i64_args(sql, &[]).await.unwrap()
}

/// Waits until the tree holds every event of the log.
async fn tree_caught_up(app: &TestApp) -> u64 {
    for _ in 0..300 {
        let n = count(&app.state.db, "SELECT COUNT(*) FROM events").await as u64;
        let size = proofs::tree_size(&app.state.db).await.unwrap();
        if size >= n {
            return size;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the tree did not catch up");
}

/// Appends a checkpoint note to the log as the server does (the operator
/// holds the key: forged heads are signed with it too).
async fn publish(app: &TestApp, cp: &Checkpoint) -> String {
    let note = app.state.log_key.sign(cp);
    let e = NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: proofs::EVENT.into(),
        schema_version: 1,
        tenant_id: None,
        data: json!({"origin": cp.origin, "tree_size": cp.size, "note": note}),
        metadata: EventMetadata {
            occurred_at: chrono::Utc::now(),
            actor: Default::default(),
            correlation_id: None,
            causation_id: None,
        },
    };
    app.state
        .store
        .append(scaidrive::store::AppendRequest {
            streams: vec![scaidrive::store::StreamAppend {
                stream_id: proofs::STREAM.into(),
                expected: scaidrive::store::ExpectedVersion::Any,
                events: vec![e],
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    note
}

/// Signs the tree as it is now, as the follower does every N events.
async fn checkpoint_now(app: &TestApp) -> Checkpoint {
    let size = tree_caught_up(app).await;
    let root = proofs::with_nodes(&app.state.db, |s| merkle::root(s, size))
        .await
        .unwrap();
    let cp = Checkpoint {
        origin: app.state.log_key.name().to_owned(),
        size,
        root,
    };
    publish(app, &cp).await;
    cp
}

async fn export(app: &TestApp, t: &str, to: &Path) {
    let text = app
        .raw(Method::GET, "/audit/export?format=ndjson")
        .bearer_auth(t)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(to, text).unwrap();
}

struct Run {
    code: i32,
    out: String,
}

async fn cli(args: &[&str]) -> Run {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_scaidrive"))
        .args(args)
        .output()
        .await
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

/// `audit verify-proof` as the auditor of `dir` (its `log.key` and
/// `auditor.json`) against the server, with `extra` arguments.
async fn verify(app: &TestApp, t: &str, dir: &Path, extra: &[&str]) -> Run {
    let key = format!("@{}", dir.join("log.key").display());
    let state = dir.join("auditor.json").display().to_string();
    let mut args = vec![
        "audit",
        "verify-proof",
        "--key",
        &key,
        "--state",
        &state,
        "--url",
        &app.base,
        "--token",
        t,
    ];
    args.extend_from_slice(extra);
    cli(&args).await
}

async fn some_events(app: &TestApp, t: &str, n: usize) {
    let me = app.get("/users/me", t).await;
    let uid = me.body["id"].as_str().unwrap().to_owned();
    for i in 0..n {
        let s = app
            .post(
                "/shares",
                t,
                json!({"name": format!("Ledger {i}"), "share_type": "project", "owner_id": uid}),
            )
            .await;
        assert_eq!(s.status, 201, "{}", s.body);
        let sid = s.body["id"].as_str().unwrap();
        let r = app
            .patch(
                &format!("/shares/{sid}"),
                t,
                json!({"description": "audited"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

async fn proofs_catch_tampering(backend: Backend) {
    // Checkpoints are issued by the test (as the follower would every N
    // events), so each step knows exactly which head is the latest.
    let app = spawn_with(backend, |c| {
        c.proofs.every_events = 1_000_000;
        c.proofs.every = Duration::from_secs(3600);
    })
    .await;
    let t = app.token("acme", "alice", "");
    let other = app.token("globex", "bob", "");
    some_events(&app, &t, 3).await;
    some_events(&app, &other, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let root = app.base.trim_end_matches("/api/v1").to_owned();

    // The public key, without authentication, at the root and under /api/v1.
    let key = app
        .client
        .get(format!("{root}/.well-known/scaidrive-log-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 200);
    let key = key.text().await.unwrap();
    assert!(key.starts_with("scaidrive.local/log+"), "{key}");
    let v = proofs::Verifier::parse(&key).unwrap();
    std::fs::write(d("log.key"), &key).unwrap();

    let cp1 = checkpoint_now(&app).await;
    let note = app.get("/audit/checkpoint", &t).await;
    assert_eq!(note.status, 200);
    let note = app
        .raw(Method::GET, "/audit/checkpoint")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(v.open(&note).unwrap(), cp1);

    // Inclusion of the tenant's own events, by API, against the checkpoint.
    export(&app, &t, &dir.path().join("e1.ndjson")).await;
    let lines: Vec<Value> = std::fs::read_to_string(d("e1.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 6, "{lines:?}");
    let first = &lines[0];
    let id = first["event_id"].as_str().unwrap();
    let p = app
        .get(&format!("/audit/proof/inclusion?event_id={id}"), &t)
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["tree_size"], cp1.size);
    assert_eq!(p.body["leaf_index"], first["leaf_index"]);
    let leaf = merkle::event_leaf(first["hash"].as_str().unwrap()).unwrap();
    let hashes: Vec<merkle::Hash> = p.body["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap();
            <merkle::Hash>::try_from(b.as_slice()).unwrap()
        })
        .collect();
    assert!(merkle::verify_inclusion(
        first["leaf_index"].as_u64().unwrap(),
        cp1.size,
        &leaf,
        &hashes,
        &cp1.root
    ));
    // Another tenant's event is not found; bad input is a clear 4xx.
    assert_eq!(
        app.get(&format!("/audit/proof/inclusion?event_id={id}"), &other)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/audit/proof/inclusion?event_id=evt_nope", &t)
            .await
            .status,
        404
    );
    let big = app
        .get(
            &format!("/audit/proof/inclusion?event_id={id}&tree_size=99999999"),
            &t,
        )
        .await;
    big.assert_detail(400);
    app.get("/audit/proof/consistency?from=abc", &t)
        .await
        .assert_detail(400);
    app.get(
        &format!("/audit/proof/consistency?from={}&to=1", cp1.size),
        &t,
    )
    .await
    .assert_detail(400);
    let c = app.get("/audit/proof/consistency?from=1", &t).await;
    assert_eq!(c.status, 200, "{}", c.body);
    let member = app.token("acme", "carol", "files:read");
    assert_eq!(app.get("/audit/checkpoint", &member).await.status, 403);

    // The offline verifier accepts the genuine export and pins the head.
    let ok = verify(
        &app,
        &t,
        dir.path(),
        &["--export", &d("e1.ndjson"), "--save", &d("saved")],
    )
    .await;
    assert_eq!(ok.code, 0, "{}", ok.out);
    assert!(ok.out.contains("proven included"), "{}", ok.out);
    // ...and offline, from the saved materials alone.
    let offline = cli(&[
        "audit",
        "verify-proof",
        "--key",
        &format!("@{}", d("log.key")),
        "--state",
        &d("offline.json"),
        "--checkpoint",
        &d("saved/checkpoint.txt"),
        "--export",
        &d("e1.ndjson"),
        "--proofs",
        &d("saved/proofs.ndjson"),
    ])
    .await;
    assert_eq!(offline.code, 0, "{}", offline.out);
    // The witness cosigns the first head.
    let w = witness_once(&app, &t, dir.path(), "w.json").await;
    assert_eq!(w.code, 0, "{}", w.out);
    assert!(w.out.contains("\u{2014} witness.local/w1 "), "{}", w.out);

    // Growth is consistent: the verifier and the witness move forward.
    some_events(&app, &t, 1).await;
    let cp2 = checkpoint_now(&app).await;
    assert!(cp2.size > cp1.size);
    let ok = verify(&app, &t, dir.path(), &[]).await;
    assert_eq!(ok.code, 0, "{}", ok.out);
    assert_eq!(witness_once(&app, &t, dir.path(), "w.json").await.code, 0);

    // 1. Edit one event row (and its hash): its inclusion proof fails.
    let pos = lines[1]["position"].as_i64().unwrap();
    exec(
        &app.state.db,
        &format!(
            "UPDATE events SET data = '{{\"name\":\"forged\"}}', hash = '{}' WHERE position = {pos}",
            "ab".repeat(32)
        ),
    )
    .await;
    export(&app, &t, &dir.path().join("e2.ndjson")).await;
    let bad = verify(&app, &t, dir.path(), &["--export", &d("e2.ndjson")]).await;
    assert_eq!(bad.code, 1, "{}", bad.out);
    assert!(bad.out.contains("not included"), "{}", bad.out);

    // 2. Delete a row: the export shows the gap and the missing log row.
    let victim = &lines[2];
    exec(
        &app.state.db,
        &format!("DELETE FROM events WHERE position = {}", victim["position"]),
    )
    .await;
    export(&app, &t, &dir.path().join("e3.ndjson")).await;
    let bad = verify(&app, &t, dir.path(), &["--export", &d("e3.ndjson")]).await;
    assert_eq!(bad.code, 1, "{}", bad.out);
    assert!(bad.out.contains("missing"), "{}", bad.out);

    // 3. Rewrite the last K events and rebuild the tree over them: the new
    // head cannot be proven consistent with the one the witness cosigned.
    let size = tree_caught_up(&app).await;
    let mut forged_tree = merkle::Frontier::new();
    let genuine = proofs::load_nodes(
        &app.state.db,
        &(0..size)
            .map(|index| merkle::NodeId { level: 0, index })
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let k = 3;
    let mut forged_nodes = std::collections::HashMap::new();
    for i in 0..size {
        let leaf = if i >= size - k {
            merkle::leaf_hash(format!("rewritten {i}").as_bytes())
        } else {
            genuine[&merkle::NodeId { level: 0, index: i }]
        };
        forged_nodes.extend(forged_tree.push(leaf));
    }
    let forged = Checkpoint {
        origin: cp2.origin.clone(),
        size,
        root: forged_tree.root(),
    };
    publish(&app, &forged).await;
    let w = witness_once(&app, &t, dir.path(), "w.json").await;
    assert_eq!(w.code, 1, "{}", w.out);
    assert!(w.out.contains("ALARM (fork)"), "{}", w.out);
    // The rewritten tree cannot produce a proof either.
    let fp = merkle::consistency_proof(&forged_nodes, cp2.size, size).unwrap();
    assert!(!merkle::verify_consistency(
        cp2.size,
        size,
        &cp2.root,
        &forged.root,
        &fp
    ));

    // 4. Two different checkpoints of the same size: the witness refuses.
    let genuine_head = checkpoint_now(&app).await;
    let w = witness_once(&app, &t, dir.path(), "w.json").await;
    assert_eq!(w.code, 0, "{}", w.out);
    let twin = Checkpoint {
        root: [9; 32],
        ..genuine_head.clone()
    };
    publish(&app, &twin).await;
    let w = witness_once(&app, &t, dir.path(), "w.json").await;
    assert_eq!(w.code, 1, "{}", w.out);
    assert!(w.out.contains("two different checkpoints"), "{}", w.out);

    // 5. A rollback to a smaller tree is refused by the verifier.
    let small = Checkpoint {
        origin: cp1.origin.clone(),
        size: 2,
        root: proofs::with_nodes(&app.state.db, |s| merkle::root(s, 2))
            .await
            .unwrap(),
    };
    publish(&app, &small).await;
    let back = verify(&app, &t, dir.path(), &["--alarm"]).await;
    assert_eq!(back.code, 1, "{}", back.out);
    assert!(
        back.out.contains("refusing to move backwards"),
        "{}",
        back.out
    );

    // The alarms are SECURITY events of the tenant.
    let mut found = 0;
    for _ in 0..100 {
        let a = app.get("/audit/events?category=SECURITY", &t).await;
        found = a.body["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["action"] == "log.witness_alarm")
                    .count()
            })
            .unwrap_or(0);
        if found >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found >= 3, "alarms recorded: {found}");
}

both_backends!(proofs_catch_tampering => proofs_catch_tampering_sqlite, proofs_catch_tampering_pg);

async fn checkpoints_are_signed_every_n_events(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.proofs.every_events = 3;
        c.proofs.every = Duration::from_secs(3600);
    })
    .await;
    let t = app.token("acme", "alice", "");
    some_events(&app, &t, 3).await;
    let v = proofs::Verifier::parse(&app.state.log_key.verifier().text()).unwrap();
    let mut sizes = Vec::new();
    for _ in 0..200 {
        if let Some(s) = proofs::latest(&app.state.store).await.unwrap() {
            let cp = v.open(&s.note).unwrap();
            if sizes.last() != Some(&cp.size) {
                sizes.push(cp.size);
            }
            if cp.size >= 6 {
                // The signed root is the tree's root at that size.
                let root = proofs::with_nodes(&app.state.db, |n| merkle::root(n, cp.size))
                    .await
                    .unwrap();
                assert_eq!(root, cp.root);
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint past 6 leaves: {sizes:?}");
}

both_backends!(checkpoints_are_signed_every_n_events => checkpoints_are_signed_sqlite, checkpoints_are_signed_pg);

/// Waits until the checkpoint published at `url` covers `at_least` leaves,
/// then checks it: signed with the server's key, the tree's root at its
/// size, and the same note under its own name.
pub(crate) async fn published_checkpoint_holds(app: &TestApp, url: &str, at_least: u64) {
    let config = &app.state.config;
    let p = proofs::Publisher::open(url, &config.blob, &config.data_dir).unwrap();
    let v = proofs::Verifier::parse(&app.state.log_key.verifier().text()).unwrap();
    for _ in 0..300 {
        if let Some(note) = p.latest().await.unwrap() {
            let cp = v.open(&note).expect("signed with the server's key");
            if cp.size >= at_least {
                let root = proofs::with_nodes(&app.state.db, |n| merkle::root(n, cp.size))
                    .await
                    .unwrap();
                assert_eq!(root, cp.root);
                let own = p.read(&proofs::Publisher::name_of(cp.size)).await.unwrap();
                assert_eq!(own.as_deref(), Some(note.as_str()));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint of {at_least} leaves was published at {url}");
}

async fn checkpoints_are_published_to_storage(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("published").to_string_lossy().into_owned();
    let target = url.clone();
    let app = spawn_with(backend, move |c| {
        c.proofs.every_events = 3;
        c.proofs.every = Duration::from_secs(3600);
        c.proofs.publish_url = Some(target);
    })
    .await;
    let t = app.token("acme", "alice", "");
    some_events(&app, &t, 3).await;
    published_checkpoint_holds(&app, &url, 3).await;
    // Names sort by size: a listing shows the heads in order.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("published/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.len() == 20), "{names:?}");
}

both_backends!(checkpoints_are_published_to_storage
    => checkpoints_are_published_to_a_directory_sqlite, checkpoints_are_published_to_a_directory_pg);

/// `audit witness --once` as the witness of `dir` (its `witness.key`,
/// `log.key` and the state file `state`).
async fn witness_once(app: &TestApp, t: &str, dir: &Path, state: &str) -> Run {
    let d = |n: &str| dir.join(n).display().to_string();
    cli(&[
        "audit",
        "witness",
        "--url",
        &app.base,
        "--token",
        t,
        "--witness-key",
        &d("witness.key"),
        "--state",
        &d(state),
        "--key",
        &format!("@{}", d("log.key")),
        "--once",
    ])
    .await
}

/// An operator with database access rewrites the tail of a stream in place,
/// recomputes that stream's hash chain (so the chain check passes), rebuilds
/// the Merkle tree from the rewritten rows and signs the new head with the
/// server's own key. The chains cannot tell; the tree can: the auditor's
/// verifier and the witness, holding a head from before, both refuse.
async fn rewritten_history_is_caught(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.proofs.every_events = 1_000_000;
        c.proofs.every = Duration::from_secs(3600);
    })
    .await;
    let t = app.token("acme", "alice", "");
    some_events(&app, &t, 3).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("log.key"),
        app.state.log_key.verifier().text(),
    )
    .unwrap();
    let trusted = checkpoint_now(&app).await;
    let ok = verify(&app, &t, dir.path(), &[]).await;
    assert_eq!(ok.code, 0, "{}", ok.out);
    let w = witness_once(&app, &t, dir.path(), "w.json").await;
    assert_eq!(w.code, 0, "{}", w.out);

    // The rewrite: the last share's events (created, then updated) get
    // another name, and their chain links are recomputed from the link
    // before them, as the store computes them.
    let log = app
        .state
        .store
        .read_all(scaidrive_domain::LogPosition::START, 10_000)
        .await
        .unwrap();
    let stream = log
        .iter()
        .rev()
        .find(|e| e.event_type == "share-updated")
        .map(|e| e.stream_id.clone())
        .expect("a share stream");
    let events = app.state.store.read_stream(&stream, 0, 100).await.unwrap();
    assert!(events.len() >= 2, "{events:?}");
    let mut prev = String::new();
    for e in &events {
        let mut data = e.data.clone();
        if data.get("name").is_some() {
            data["name"] = json!("Rewritten");
        }
        if data.get("description").is_some() {
            data["description"] = json!("nothing to see");
        }
        let hash = scaidrive_domain::event::chain_hash(
            &prev,
            &scaidrive_domain::event::HashInput {
                stream_id: &e.stream_id,
                stream_version: e.stream_version,
                event_id: e.event_id,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                tenant_id: e.tenant_id.as_deref(),
                data: &data,
                metadata: &e.metadata,
            },
        );
        let text = data.to_string().replace('\'', "''");
        exec(
            &app.state.db,
            &format!(
                "UPDATE events SET data = '{text}', hash = '{hash}' WHERE position = {}",
                e.log.position
            ),
        )
        .await;
        prev = hash;
    }
    exec(
        &app.state.db,
        &format!("UPDATE streams SET last_hash = '{prev}' WHERE stream_id = '{stream}'"),
    )
    .await;
    // The hash chains check out: rewriting them whole is what they cannot see.
    let chains = app.get("/audit/verify", &t).await;
    assert_eq!(chains.status, 200, "{}", chains.body);
    assert_eq!(chains.body["ok"], true, "{}", chains.body);

    // The tree, rebuilt from the rewritten rows and stored in place of the
    // genuine nodes, and its head signed with the server's key.
    let size = tree_caught_up(&app).await;
    let rows = app
        .state
        .store
        .read_all(scaidrive_domain::LogPosition::START, 10_000)
        .await
        .unwrap();
    let hash_at: std::collections::HashMap<i64, String> = rows
        .iter()
        .map(|e| (e.log.position, e.hash.clone()))
        .collect();
    let mut order = Vec::new();
    for index in 0..size {
        let position = count(
            &app.state.db,
            &format!("SELECT position FROM merkle_leaves WHERE leaf_index = {index}"),
        )
        .await;
        order.push(position);
    }
    let mut forged_tree = merkle::Frontier::new();
    for position in order {
        let leaf = merkle::event_leaf(&hash_at[&position]).expect("a hex hash");
        for (id, h) in forged_tree.push(leaf) {
            exec(
                &app.state.db,
                &format!(
                    "UPDATE merkle_nodes SET hash = '{}' WHERE id = {}",
                    hex::encode(h),
                    proofs::node_key(id)
                ),
            )
            .await;
        }
    }
    let forged = Checkpoint {
        origin: trusted.origin.clone(),
        size,
        root: forged_tree.root(),
    };
    assert!(size > trusted.size);
    publish(&app, &forged).await;

    // The server now proves the forged head "consistent" from its forged
    // nodes; against the head the auditor kept, that proof fails.
    let bad = verify(&app, &t, dir.path(), &[]).await;
    assert_ne!(bad.code, 0, "{}", bad.out);
    assert!(bad.out.contains("history was rewritten"), "{}", bad.out);
    let w = witness_once(&app, &t, dir.path(), "w.json").await;
    assert_eq!(w.code, 1, "{}", w.out);
    assert!(w.out.contains("ALARM (fork)"), "{}", w.out);
}

both_backends!(rewritten_history_is_caught
    => a_rewritten_tail_with_recomputed_chains_is_caught_sqlite,
       a_rewritten_tail_with_recomputed_chains_is_caught_pg);
