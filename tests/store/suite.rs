//! The guarantees, each as one async function over any backend.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use scaidrive::store::{
    AppendOutcome, AppendRequest, Appended, ClaimOp, DynStore, ExpectedVersion, Idempotency,
    StoreError, StreamAppend, VerifyRange,
};
use scaidrive_domain::{Actor, EventMetadata, LogPosition, NewEvent, RecordedEvent};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::Harness;

fn event(kind: &str, data: Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: kind.to_owned(),
        schema_version: 1,
        tenant_id: Some("tnt_test".into()),
        data,
        metadata: EventMetadata {
            occurred_at: Utc::now(),
            actor: Actor {
                user_id: Some("usr_x".into()),
                ..Default::default()
            },
            correlation_id: Some("req-1".into()),
            causation_id: None,
        },
    }
}

fn one(stream: &str, expected: ExpectedVersion, n: usize) -> AppendRequest {
    AppendRequest {
        streams: vec![StreamAppend {
            stream_id: stream.to_owned(),
            expected,
            events: (0..n)
                .map(|i| event("thing-happened", json!({ "i": i })))
                .collect(),
        }],
        ..Default::default()
    }
}

async fn committed(store: &DynStore, req: AppendRequest) -> Appended {
    match store.append(req).await {
        Ok(AppendOutcome::Committed(a)) => a,
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn is_conflict(r: &Result<AppendOutcome, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

/// Reads the whole log in small batches until it has passed `target` (the
/// last position the test committed). On Postgres an open transaction anywhere
/// in the cluster (other tests run beside this one) holds the read watermark
/// back for a moment, so this polls instead of taking one empty read as the end.
async fn read_everything(store: &DynStore, target: LogPosition) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut after = LogPosition::START;
    loop {
        let batch = store.read_all(after, 7).await.expect("read_all");
        match batch.last() {
            Some(last) => after = last.log,
            None if after >= target => return out,
            None => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "log never reached {target:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        out.extend(batch);
    }
}

pub async fn expected_version_rules_hold(h: &Harness) {
    let s = &h.store;
    let a = committed(s, one("s-1", ExpectedVersion::NoStream, 1)).await;
    assert_eq!(a.events[0].stream_version, 1);
    let r = s.append(one("s-1", ExpectedVersion::NoStream, 1)).await;
    assert!(
        matches!(&r, Err(StoreError::Conflict { stream, actual: Some(1), .. }) if stream == "s-1"),
        "NoStream on an existing stream: {r:?}"
    );
    let b = committed(s, one("s-1", ExpectedVersion::Exact(1), 2)).await;
    assert_eq!(
        b.events
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    let r = s.append(one("s-1", ExpectedVersion::Exact(1), 1)).await;
    assert!(
        matches!(
            &r,
            Err(StoreError::Conflict {
                actual: Some(3),
                ..
            })
        ),
        "stale Exact: {r:?}"
    );
    assert!(is_conflict(
        &s.append(one("s-missing", ExpectedVersion::Exact(1), 1))
            .await
    ));
    let c = committed(s, one("s-1", ExpectedVersion::Any, 1)).await;
    assert_eq!(c.events[0].stream_version, 4);
    let d = committed(s, one("s-any-new", ExpectedVersion::Any, 1)).await;
    assert_eq!(d.events[0].stream_version, 1);
    assert_eq!(s.stream_version("s-1").await.expect("version"), Some(4));
    assert_eq!(s.stream_version("s-nope").await.expect("version"), None);
    assert!(matches!(
        s.append(one("s-1", ExpectedVersion::Exact(0), 1)).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn racing_appends_to_one_stream_have_one_winner(h: &Harness) {
    committed(&h.store, one("race", ExpectedVersion::NoStream, 1)).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = h.store.clone();
            tokio::spawn(async move { s.append(one("race", ExpectedVersion::Exact(1), 1)).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(AppendOutcome::Committed(_)) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(h.store.stream_version("race").await.expect("v"), Some(2));
}

pub async fn multi_stream_appends_are_all_or_nothing(h: &Harness) {
    let s = &h.store;
    committed(s, one("acct-a", ExpectedVersion::NoStream, 1)).await;
    committed(s, one("acct-b", ExpectedVersion::NoStream, 1)).await;
    let req = AppendRequest {
        streams: vec![
            StreamAppend {
                stream_id: "acct-a".into(),
                expected: ExpectedVersion::Exact(1),
                events: vec![event("x", json!({}))],
            },
            StreamAppend {
                stream_id: "acct-new".into(),
                expected: ExpectedVersion::NoStream,
                events: vec![event("x", json!({}))],
            },
            StreamAppend {
                stream_id: "acct-b".into(),
                expected: ExpectedVersion::Exact(7),
                events: vec![event("x", json!({}))],
            },
        ],
        claims: vec![ClaimOp::Claim {
            scope: "names".into(),
            key: "k".into(),
            owner: "o".into(),
        }],
        idempotency: Some(Idempotency {
            key: "idem-atomic".into(),
            outcome: json!({"ok": true}),
        }),
    };
    assert!(is_conflict(&s.append(req.clone()).await));
    assert_eq!(s.stream_version("acct-a").await.expect("v"), Some(1));
    assert_eq!(s.stream_version("acct-new").await.expect("v"), None);
    assert_eq!(s.claim_holder("names", "k").await.expect("claim"), None);
    assert_eq!(
        s.idempotent_outcome("idem-atomic").await.expect("idem"),
        None
    );
    let b = s
        .read_stream("acct-b", 0, 1)
        .await
        .expect("read")
        .remove(0)
        .log;
    assert_eq!(read_everything(s, b).await.len(), 2);

    let mut ok = req;
    ok.streams[2].expected = ExpectedVersion::Exact(1);
    let a = committed(s, ok).await;
    assert_eq!(a.events.len(), 3);
    let ids: Vec<_> = a.events.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["acct-a", "acct-new", "acct-b"],
        "events come back in the order given"
    );
    assert!(
        a.events
            .windows(2)
            .all(|w| w[0].log.commit == w[1].log.commit),
        "one transaction"
    );
    assert_eq!(a.last, a.events.iter().map(|e| e.log).max());
}

pub async fn a_stream_without_events_is_a_version_check(h: &Harness) {
    let s = &h.store;
    committed(s, one("guard", ExpectedVersion::NoStream, 2)).await;
    let guarded = |v| AppendRequest {
        streams: vec![
            StreamAppend {
                stream_id: "guarded-write".into(),
                expected: ExpectedVersion::Any,
                events: vec![event("x", json!({}))],
            },
            StreamAppend {
                stream_id: "guard".into(),
                expected: ExpectedVersion::Exact(v),
                events: vec![],
            },
        ],
        ..Default::default()
    };
    assert!(is_conflict(&s.append(guarded(1)).await));
    assert_eq!(s.stream_version("guarded-write").await.expect("v"), None);
    committed(s, guarded(2)).await;
    assert_eq!(
        s.stream_version("guard").await.expect("v"),
        Some(2),
        "a check appends nothing"
    );
    let missing = AppendRequest {
        streams: vec![StreamAppend {
            stream_id: "never".into(),
            expected: ExpectedVersion::Exact(1),
            events: vec![],
        }],
        ..Default::default()
    };
    assert!(is_conflict(&s.append(missing).await));
}

pub async fn claims_are_set_constraints_in_the_append_transaction(h: &Harness) {
    let s = &h.store;
    let claim = |owner: &str, stream: &str| AppendRequest {
        streams: vec![StreamAppend {
            stream_id: stream.into(),
            expected: ExpectedVersion::Any,
            events: vec![event("named", json!({}))],
        }],
        claims: vec![ClaimOp::Claim {
            scope: "fld_1".into(),
            key: "report.pdf".into(),
            owner: owner.into(),
        }],
        ..Default::default()
    };
    committed(s, claim("fil_a", "fil_a")).await;
    let r = s.append(claim("fil_b", "fil_b")).await;
    assert!(
        matches!(&r, Err(StoreError::ClaimTaken { holder, .. }) if holder == "fil_a"),
        "a taken claim fails the append: {r:?}"
    );
    assert_eq!(
        s.stream_version("fil_b").await.expect("v"),
        None,
        "nothing of a failed append commits"
    );
    committed(s, claim("fil_a", "fil_a")).await;
    // A release by someone else changes nothing.
    let foreign = AppendRequest {
        claims: vec![ClaimOp::Release {
            scope: "fld_1".into(),
            key: "report.pdf".into(),
            owner: "fil_b".into(),
        }],
        ..Default::default()
    };
    committed(s, foreign).await;
    assert_eq!(
        s.claim_holder("fld_1", "report.pdf")
            .await
            .expect("h")
            .as_deref(),
        Some("fil_a")
    );
    // Rename: release and claim in one append.
    let rename = AppendRequest {
        streams: vec![StreamAppend {
            stream_id: "fil_a".into(),
            expected: ExpectedVersion::Exact(2),
            events: vec![event("renamed", json!({}))],
        }],
        claims: vec![
            ClaimOp::Release {
                scope: "fld_1".into(),
                key: "report.pdf".into(),
                owner: "fil_a".into(),
            },
            ClaimOp::Claim {
                scope: "fld_1".into(),
                key: "final.pdf".into(),
                owner: "fil_a".into(),
            },
        ],
        ..Default::default()
    };
    committed(s, rename).await;
    committed(s, claim("fil_b", "fil_b")).await;
    assert_eq!(
        s.claim_holder("fld_1", "report.pdf")
            .await
            .expect("h")
            .as_deref(),
        Some("fil_b")
    );
    assert_eq!(
        s.claim_holder("fld_1", "final.pdf")
            .await
            .expect("h")
            .as_deref(),
        Some("fil_a")
    );
}

pub async fn fifty_racing_claims_of_one_key_have_one_winner(h: &Harness) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = h.store.clone();
            tokio::spawn(async move {
                let req = AppendRequest {
                    streams: vec![StreamAppend {
                        stream_id: format!("fil_{i}"),
                        expected: ExpectedVersion::NoStream,
                        events: vec![event("file-created", json!({ "i": i }))],
                    }],
                    claims: vec![ClaimOp::Claim {
                        scope: "root".into(),
                        key: "same-name".into(),
                        owner: format!("fil_{i}"),
                    }],
                    ..Default::default()
                };
                s.append(req).await
            })
        })
        .collect();
    let mut wins = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            Ok(AppendOutcome::Committed(a)) => wins.push(a),
            Err(StoreError::ClaimTaken { .. }) | Err(StoreError::Conflict { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins.len(), 1);
    let target = wins[0].last.expect("position");
    assert_eq!(
        read_everything(&h.store, target).await.len(),
        1,
        "losers appended nothing"
    );
}

pub async fn idempotency_keys_return_the_stored_outcome(h: &Harness) {
    let s = &h.store;
    let mut req = one("idem", ExpectedVersion::Any, 1);
    req.idempotency = Some(Idempotency {
        key: "tnt_1:usr_1:key-1".into(),
        outcome: json!({"id": "fil_1", "n": 1}),
    });
    committed(s, req.clone()).await;
    match s.append(req).await.expect("retry") {
        AppendOutcome::Duplicate(v) => assert_eq!(v, json!({"id": "fil_1", "n": 1})),
        other => panic!("expected the stored outcome, got {other:?}"),
    }
    assert_eq!(
        s.stream_version("idem").await.expect("v"),
        Some(1),
        "the retry appended nothing"
    );
    assert_eq!(
        s.idempotent_outcome("tnt_1:usr_1:key-1").await.expect("o"),
        Some(json!({"id": "fil_1", "n": 1}))
    );
}

pub async fn racing_duplicates_of_one_idempotency_key_commit_once(h: &Harness) {
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = h.store.clone();
            tokio::spawn(async move {
                let mut req = one(&format!("idem-race-{i}"), ExpectedVersion::NoStream, 1);
                req.idempotency = Some(Idempotency {
                    key: "same-key".into(),
                    outcome: json!({ "winner": i }),
                });
                s.append(req).await
            })
        })
        .collect();
    let mut commits = 0;
    let mut target = LogPosition::START;
    let mut outcomes = HashSet::new();
    for t in tasks {
        match t.await.expect("join").expect("append") {
            AppendOutcome::Committed(a) => {
                commits += 1;
                target = a.last.expect("position");
            }
            AppendOutcome::Duplicate(v) => {
                outcomes.insert(v.to_string());
            }
        }
    }
    assert_eq!(commits, 1);
    assert!(
        outcomes.len() <= 1,
        "every duplicate sees the one stored outcome"
    );
    assert_eq!(read_everything(&h.store, target).await.len(), 1);
}

pub async fn streams_and_the_log_read_back_in_order(h: &Harness) {
    let s = &h.store;
    assert_eq!(s.head().await.expect("head"), LogPosition::START);
    let mut target = LogPosition::START;
    for i in 0..5 {
        target = committed(s, one(&format!("r-{}", i % 2), ExpectedVersion::Any, 3))
            .await
            .last
            .expect("pos");
    }
    let r0 = s.read_stream("r-0", 0, 100).await.expect("stream");
    assert_eq!(
        r0.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    let tail = s.read_stream("r-0", 7, 100).await.expect("stream");
    assert_eq!(
        tail.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![8, 9]
    );
    assert_eq!(s.read_stream("r-0", 0, 2).await.expect("stream").len(), 2);
    let all = read_everything(s, target).await;
    assert_eq!(all.len(), 15);
    assert!(
        all.windows(2).all(|w| w[0].log < w[1].log),
        "strictly increasing log order"
    );
    assert_eq!(all.last().map(|e| e.log), Some(target));
    assert!(s.head().await.expect("head") >= target);
    let ev = &all[0];
    assert_eq!(ev.event_type, "thing-happened");
    assert_eq!(ev.tenant_id.as_deref(), Some("tnt_test"));
    assert_eq!(ev.metadata.actor.user_id.as_deref(), Some("usr_x"));
    assert_eq!(ev.metadata.correlation_id.as_deref(), Some("req-1"));
}

pub async fn subscribers_are_woken_by_new_commits(h: &Harness) {
    let mut rx = h.store.subscribe();
    let s = h.store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.append(one("live", ExpectedVersion::Any, 1))
            .await
            .expect("append");
    });
    // The wake-up arrives; then catch-up reads (which a consumer also repeats
    // on a timer, as the watermark may still hold the event back) return it.
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("woken")
        .ok();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.is_empty() {
        seen = h
            .store
            .read_all(LogPosition::START, 10)
            .await
            .expect("read");
        if seen.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the event never became visible"
            );
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
        }
    }
    assert_eq!(seen[0].stream_id, "live");
}

pub async fn hash_chains_verify_and_expose_tampering(h: &Harness) {
    let s = &h.store;
    let tricky = json!({"name": "Überweisung 📄 ü", "nested": {"z": [1, 2, {"b": null, "a": "x"}], "a": 1.5}, "n": -3});
    for i in 0..3 {
        let mut req = one("chain-a", ExpectedVersion::Any, 2);
        req.streams[0].events[0].data = tricky.clone();
        committed(s, req).await;
        committed(s, one(&format!("chain-b{i}"), ExpectedVersion::Any, 1)).await;
    }
    let report = s.verify(None).await.expect("verify");
    assert_eq!(report.first_broken, None, "{report:?}");
    assert_eq!(report.events_checked, 9);
    assert_eq!(report.streams_checked, 4);
    assert_eq!(
        s.verify(Some("tnt_other"))
            .await
            .expect("verify")
            .events_checked,
        0
    );

    let victim = s
        .read_stream("chain-a", 2, 1)
        .await
        .expect("read")
        .remove(0);
    let sql = match h.pg {
        Some(_) => format!(
            "UPDATE events SET data = '{{\"i\": 999}}'::jsonb WHERE position = {}",
            victim.log.position
        ),
        None => format!(
            "UPDATE events SET data = '{{\"i\": 999}}' WHERE position = {}",
            victim.log.position
        ),
    };
    assert_eq!(h.execute(&sql).await, 1);
    let broken = s
        .verify(None)
        .await
        .expect("verify")
        .first_broken
        .expect("tampering is found");
    assert_eq!(broken.stream_id, "chain-a");
    assert_eq!(broken.stream_version, 3);
    assert_eq!(broken.position, victim.log.position);
    assert_ne!(broken.expected_hash, broken.stored_hash);
}

pub async fn hash_chain_verification_checks_only_its_range(h: &Harness) {
    let s = &h.store;
    let day = |d: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, 1, d)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("date")
            .and_utc()
    };
    let mut req = one("range-a", ExpectedVersion::Any, 4);
    for (i, e) in req.streams[0].events.iter_mut().enumerate() {
        e.metadata.occurred_at = day(i as u32 + 1);
    }
    committed(s, req).await;
    let mut req = one("range-b", ExpectedVersion::Any, 1);
    req.streams[0].events[0].metadata.occurred_at = day(3);
    committed(s, req).await;

    // The first event of range-a is forged.
    let victim = s
        .read_stream("range-a", 0, 1)
        .await
        .expect("read")
        .remove(0);
    let sql = match h.pg {
        Some(_) => format!(
            "UPDATE events SET data = '{{\"i\": 999}}'::jsonb WHERE position = {}",
            victim.log.position
        ),
        None => format!(
            "UPDATE events SET data = '{{\"i\": 999}}' WHERE position = {}",
            victim.log.position
        ),
    };
    assert_eq!(h.execute(&sql).await, 1);
    let tenant = Some("tnt_test");
    let whole = s.verify(tenant).await.expect("verify");
    assert_eq!(whole.events_checked, 5);
    assert_eq!(
        whole.first_broken.map(|b| b.stream_version),
        Some(1),
        "the whole log includes the forgery"
    );

    let range = |from: Option<u32>, to: Option<u32>| VerifyRange {
        from: from.map(day),
        to: to.map(day),
    };
    // From the second day on: the forged event is not looked at, and the
    // second event links to its stored hash.
    let later = s
        .verify_range(tenant, range(Some(2), None))
        .await
        .expect("verify");
    assert_eq!(later.first_broken, None, "{later:?}");
    assert_eq!(later.events_checked, 4);
    assert_eq!(later.streams_checked, 2);
    assert_eq!(later.first_occurred_at, Some(day(2)));
    assert_eq!(later.last_occurred_at, Some(day(4)));

    // Both ends inclusive.
    let middle = s
        .verify_range(tenant, range(Some(2), Some(3)))
        .await
        .expect("verify");
    assert_eq!(middle.events_checked, 3);
    assert_eq!(middle.last_occurred_at, Some(day(3)));

    let first_day = s
        .verify_range(tenant, range(None, Some(1)))
        .await
        .expect("verify");
    assert_eq!(first_day.events_checked, 1);
    assert_eq!(first_day.first_broken.map(|b| b.stream_version), Some(1));

    let none = s
        .verify_range(tenant, range(Some(20), None))
        .await
        .expect("verify");
    assert_eq!(none.events_checked, 0);
    assert_eq!(none.streams_checked, 0);
    assert_eq!(none.first_occurred_at, None);
}

/// Many writers, some holding their transaction open before COMMIT, while a
/// consumer tails the log from its checkpoint: it must see every event exactly
/// once, and each stream in order.
pub async fn concurrent_writers_with_slow_commits_are_seen_exactly_once(h: &Harness) {
    if let Some(pg) = &h.pg {
        pg.set_commit_delay_for_tests(Some(("slow-".into(), Duration::from_millis(150))));
    }
    let writers = 16;
    let per_writer = 25;
    // Set once every writer is done: the newest position any append got.
    // The consumer stops only after passing it (an open transaction anywhere
    // in the cluster, e.g. another test's, may hold the watermark back a while).
    let target: Arc<parking_lot::Mutex<Option<LogPosition>>> =
        Arc::new(parking_lot::Mutex::new(None));
    let consumer = {
        let s = h.store.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let mut after = LogPosition::START;
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let goal = *target.lock();
                let batch = s.read_all(after, 50).await.expect("read_all");
                if let Some(last) = batch.last() {
                    after = last.log;
                }
                let empty = batch.is_empty();
                seen.extend(batch);
                if empty && goal.is_some_and(|g| after >= g) {
                    return seen;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the consumer never reached the last commit"
                );
                if empty {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let s = h.store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut newest = LogPosition::START;
                for i in 0..per_writer {
                    // Every fourth writer is slow; streams are shared in pairs
                    // so writers also contend on stream heads.
                    let prefix = if w % 4 == 0 { "slow" } else { "fast" };
                    let stream = format!("{prefix}-{}", w / 2);
                    let req = one(&stream, ExpectedVersion::Any, 1 + i % 2);
                    ids.extend(req.streams[0].events.iter().map(|e| e.event_id));
                    loop {
                        match s.append(req.clone()).await {
                            Ok(AppendOutcome::Committed(a)) => {
                                newest = newest.max(a.last.unwrap_or_default());
                                break;
                            }
                            Ok(other) => panic!("unexpected {other:?}"),
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                }
                (ids, newest)
            })
        })
        .collect();
    let mut written = HashSet::new();
    let mut newest = LogPosition::START;
    for t in tasks {
        let (ids, n) = t.await.expect("join");
        written.extend(ids);
        newest = newest.max(n);
    }
    *target.lock() = Some(newest);
    let seen = consumer.await.expect("consumer");
    if let Some(pg) = &h.pg {
        pg.set_commit_delay_for_tests(None);
    }
    let seen_ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    let unique: HashSet<Uuid> = seen_ids.iter().copied().collect();
    assert_eq!(unique.len(), seen_ids.len(), "no event delivered twice");
    assert_eq!(unique, written, "every committed event delivered");
    let mut last_version: HashMap<&str, i64> = HashMap::new();
    for e in &seen {
        let prev = last_version
            .insert(e.stream_id.as_str(), e.stream_version)
            .unwrap_or(0);
        assert_eq!(
            e.stream_version,
            prev + 1,
            "stream {} out of order",
            e.stream_id
        );
    }
}

/// The negative control for the test above: with the watermark switched off,
/// a reader that advances past a slow transaction's events loses them.
pub async fn without_the_watermark_readers_skip_late_commits(h: &Harness) {
    let pg = h.pg.as_ref().expect("postgres only");
    pg.disable_watermark_for_tests(true);
    pg.set_commit_delay_for_tests(Some(("slow-".into(), Duration::from_millis(1500))));
    let s = h.store.clone();
    let slow = tokio::spawn(async move { s.append(one("slow-1", ExpectedVersion::Any, 1)).await });
    // Let the slow writer take its transaction id and position first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fast = committed(&h.store, one("fast-1", ExpectedVersion::Any, 1))
        .await
        .last
        .expect("pos");
    let mut after = LogPosition::START;
    let mut seen = Vec::new();
    let batch = h.store.read_all(after, 100).await.expect("read");
    if let Some(l) = batch.last() {
        after = l.log;
    }
    seen.extend(batch);
    let slow_pos = match slow.await.expect("join").expect("slow append") {
        AppendOutcome::Committed(a) => a.last.expect("pos"),
        other => panic!("{other:?}"),
    };
    seen.extend(h.store.read_all(after, 100).await.expect("read"));
    let streams: Vec<&str> = seen.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(
        streams,
        vec!["fast-1"],
        "without the watermark the late commit is skipped"
    );

    // With the watermark the same reader gets both.
    pg.disable_watermark_for_tests(false);
    let all = read_everything(&h.store, fast.max(slow_pos)).await;
    assert_eq!(all.len(), 2);
    pg.set_commit_delay_for_tests(None);
}

/// Two stores on one database (as two processes), each with caches of its
/// own: appends alternate between them, with multi-stream requests mixing
/// streams the writer knows, streams it has never seen, new streams and
/// version checks; a stale expectation is still a conflict that writes
/// nothing, and versions and hash chains stay right.
pub async fn two_stores_on_one_database_keep_versions_and_chains(h: &Harness) {
    use ExpectedVersion::{Any, Exact, NoStream};
    let a = h.store.clone();
    let b = h.another_store().await;
    let stream = |id: &str, expected, n: usize| one(id, expected, n).streams.remove(0);

    committed(&a, one("shared", NoStream, 2)).await;
    // b has never seen the stream; then a's idea of the head is behind.
    committed(&b, one("shared", Exact(2), 1)).await;
    committed(&a, one("shared", Exact(3), 2)).await;
    committed(&b, one("shared", Any, 1)).await;
    assert!(is_conflict(&a.append(one("shared", Exact(5), 1)).await));
    assert!(is_conflict(&a.append(one("shared", NoStream, 1)).await));

    committed(&b, one("other", NoStream, 1)).await;
    committed(&b, one("checked", NoStream, 1)).await;
    let mixed = AppendRequest {
        streams: vec![
            stream("shared", Exact(6), 1),
            stream("other", Exact(1), 2),
            stream("fresh", NoStream, 1),
            stream("checked", Exact(1), 0),
        ],
        ..Default::default()
    };
    let appended = committed(&a, mixed).await;
    assert_eq!(
        appended
            .events
            .iter()
            .map(|e| (e.stream_id.as_str(), e.stream_version))
            .collect::<Vec<_>>(),
        vec![("shared", 7), ("other", 2), ("other", 3), ("fresh", 1)]
    );

    // One wrong expectation among right ones: nothing is written.
    let wrong = AppendRequest {
        streams: vec![stream("shared", Exact(7), 1), stream("other", Exact(1), 1)],
        ..Default::default()
    };
    assert!(is_conflict(&b.append(wrong).await));
    assert_eq!(b.stream_version("shared").await.expect("v"), Some(7));
    assert_eq!(b.stream_version("other").await.expect("v"), Some(3));
    committed(&b, one("shared", Exact(7), 1)).await;
    committed(&a, one("other", Any, 1)).await;

    let versions: Vec<i64> = a
        .read_stream("shared", 0, 100)
        .await
        .expect("read")
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    for s in [&a, &b] {
        let report = s.verify(None).await.expect("verify");
        assert_eq!(report.first_broken, None, "{report:?}");
        assert_eq!(report.events_checked, 8 + 4 + 1 + 1);
        assert_eq!(report.streams_checked, 4);
    }
}

/// Many appends at once (the PostgreSQL store writes those that queue up
/// together, in one transaction): each one's outcome is its own, a refused
/// one takes nothing else down, and the log and chains come out whole.
pub async fn concurrent_appends_succeed_or_fail_alone(h: &Harness) {
    let s = &h.store;
    for i in (0..64).step_by(4) {
        committed(s, one(&format!("solo-{i}"), ExpectedVersion::NoStream, 1)).await;
    }
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                // Every fourth stream exists already: "no stream" is refused there.
                let mut req = one(&format!("solo-{i}"), ExpectedVersion::NoStream, 2);
                // Pairs claim one key: the second of each pair finds it taken.
                req.claims.push(ClaimOp::Claim {
                    scope: "solo".into(),
                    key: format!("k{}", i / 2),
                    owner: format!("o{i}"),
                });
                (i, s.append(req).await)
            })
        })
        .collect();
    let (mut committed_n, mut conflicts, mut taken) = (0, 0, 0);
    let mut last = LogPosition::START;
    for t in tasks {
        let (i, outcome) = t.await.expect("join");
        match outcome {
            Ok(AppendOutcome::Committed(a)) => {
                assert_ne!(i % 4, 0, "solo-{i} exists and must be refused");
                assert_eq!(a.events.len(), 2);
                assert_eq!(a.events[0].stream_version, 1);
                assert_eq!(a.events[1].stream_version, 2);
                assert!(a.events[0].log < a.events[1].log);
                last = last.max(a.last.expect("position"));
                committed_n += 1;
            }
            Err(StoreError::Conflict { stream, .. }) => {
                assert_eq!(i % 4, 0, "only existing streams conflict, not solo-{i}");
                assert_eq!(stream, format!("solo-{i}"));
                conflicts += 1;
            }
            Err(StoreError::ClaimTaken { key, .. }) => {
                assert_eq!(key, format!("k{}", i / 2));
                taken += 1;
            }
            other => panic!("solo-{i}: unexpected {other:?}"),
        }
    }
    assert_eq!(conflicts, 16);
    // Pairs (4k, 4k+1): the first is refused, so the second gets the key;
    // pairs (4k+2, 4k+3) both try: exactly one of them wins.
    assert_eq!(taken, 16);
    assert_eq!(committed_n, 32);
    let all = read_everything(s, last).await;
    assert_eq!(all.len(), 16 + 32 * 2);
    let ids: std::collections::HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len());
    assert!(all.windows(2).all(|w| w[0].log < w[1].log));
    let report = s.verify(None).await.expect("verify");
    assert_eq!(report.first_broken, None, "{report:?}");
    assert_eq!(report.events_checked, 16 + 32 * 2);
}

/// The same without claims (on PostgreSQL the groups then take the
/// set-based path, which hands a group with anything to refuse to the
/// append-by-append one): refused, duplicate, checked and plain appends
/// racing together each get their own outcome, and nothing else is lost.
pub async fn concurrent_unclaimed_appends_succeed_or_fail_alone(h: &Harness) {
    use ExpectedVersion::{Exact, NoStream};
    let s = &h.store;
    for i in (0..64).step_by(4) {
        committed(s, one(&format!("plain-{i}"), NoStream, 1)).await;
    }
    committed(s, one("plain-anchor", NoStream, 1)).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut req = one(&format!("plain-{i}"), NoStream, 2);
                match i % 4 {
                    // exists already: refused
                    0 => {}
                    // pairs (i, i + 4) share a key: one commits, one is a duplicate
                    1 => {
                        req.idempotency = Some(Idempotency {
                            key: format!("plain-key-{}", i / 8),
                            outcome: json!({ "by": i }),
                        });
                    }
                    // a second stream that is only checked
                    2 => {
                        let mut check = one("plain-anchor", Exact(1), 0);
                        req.streams.push(check.streams.remove(0));
                    }
                    _ => {}
                }
                (i, s.append(req).await)
            })
        })
        .collect();
    let (mut written, mut refused, mut duplicates) = (0, 0, 0);
    let mut last = LogPosition::START;
    for t in tasks {
        let (i, outcome) = t.await.expect("join");
        match outcome {
            Ok(AppendOutcome::Committed(a)) => {
                assert_ne!(i % 4, 0, "plain-{i} exists and must be refused");
                assert_eq!(a.events.len(), 2);
                assert_eq!(a.events[0].stream_id, format!("plain-{i}"));
                assert_eq!(
                    a.events
                        .iter()
                        .map(|e| e.stream_version)
                        .collect::<Vec<_>>(),
                    vec![1, 2]
                );
                assert!(a.events[0].log < a.events[1].log);
                last = last.max(a.last.expect("position"));
                written += 1;
            }
            Ok(AppendOutcome::Duplicate(v)) => {
                assert_eq!(i % 4, 1, "only keyed appends are duplicates, not plain-{i}");
                let by = v["by"].as_i64().expect("the stored outcome");
                assert_eq!(by / 8, i as i64 / 8, "plain-{i} got another key's outcome");
                assert_ne!(by, i as i64);
                duplicates += 1;
            }
            Err(StoreError::Conflict { stream, .. }) => {
                assert_eq!(i % 4, 0, "only existing streams conflict, not plain-{i}");
                assert_eq!(stream, format!("plain-{i}"));
                refused += 1;
            }
            other => panic!("plain-{i}: unexpected {other:?}"),
        }
    }
    assert_eq!(refused, 16);
    assert_eq!(duplicates, 8);
    assert_eq!(written, 40);
    let all = read_everything(s, last).await;
    assert_eq!(all.len(), 16 + 1 + 40 * 2);
    let ids: HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len());
    assert!(all.windows(2).all(|w| w[0].log < w[1].log));
    assert_eq!(s.stream_version("plain-anchor").await.expect("v"), Some(1));
    let report = s.verify(None).await.expect("verify");
    assert_eq!(report.first_broken, None, "{report:?}");
    assert_eq!(report.events_checked, 16 + 1 + 40 * 2);
}
