//! Retention: trash older than the tenant's `trash_retention_days` is purged
//! and versions superseded longer ago than `version_retention_days` are
//! pruned by the system, freeing quota. The job takes `now`, so the tests
//! run it "in the future" instead of waiting.

use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use scaidrive::maintenance::{apply_retention, RetentionReport};
use serde_json::{json, Value};

use crate::both_backends;
use crate::drive::{new_share, upload};
use crate::helpers::{spawn_on, Backend, TestApp};

/// Runs one retention pass as of `now` and waits until the read models
/// have applied what it wrote.
async fn retain(app: &TestApp, now: DateTime<Utc>) -> RetentionReport {
    let report = apply_retention(&app.state.db, &app.state.bus, now)
        .await
        .expect("retention pass");
    app.state.caught_up(report.last_position).await;
    report
}

fn id(a: &crate::helpers::Answer) -> String {
    a.body["id"].as_str().expect("id").to_owned()
}

async fn set_share_limit(app: &TestApp, t: &str, share: &str, bytes: u64) {
    let set = app
        .call(
            Method::PUT,
            &format!("/quotas/shares/{share}"),
            Some(t),
            Some(json!({ "limit_bytes": bytes })),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
}

async fn trash_purge_frees_quota_and_is_audited_with_the_system_actor(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    let share = new_share(&app, &admin, "docs").await;
    set_share_limit(&app, &admin, &share, 100).await;
    let folder = app
        .post(
            "/folders",
            &admin,
            json!({"share_id": share, "name": "old"}),
        )
        .await;
    assert_eq!(folder.status, 201, "{}", folder.body);
    let folder = id(&folder);
    let a = upload(&app, &admin, &share, None, "a.bin", vec![b'a'; 40]).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let b = upload(&app, &admin, &share, Some(&folder), "b.bin", vec![b'b'; 30]).await;
    assert_eq!(b.status, 201, "{}", b.body);
    let kept = upload(&app, &admin, &share, None, "kept.bin", vec![b'k'; 20]).await;
    assert_eq!(kept.status, 201, "{}", kept.body);
    let (a, b, kept) = (id(&a), id(&b), id(&kept));
    for path in [format!("/files/{a}"), format!("/folders/{folder}")] {
        assert_eq!(app.delete(&path, &admin).await.status, 204, "{path}");
    }
    // Trash counts against the limit: 90 of 100 bytes are used.
    let full = upload(&app, &admin, &share, None, "c.bin", vec![b'c'; 20]).await;
    assert_eq!(full.status, 507, "{}", full.body);

    // Not yet 30 days (the default) in the trash: nothing goes.
    let early = retain(&app, Utc::now() + Duration::days(29)).await;
    assert_eq!(
        (early.files_purged, early.folders_purged, early.bytes_freed),
        (0, 0, 0),
        "{early:?}"
    );
    assert_eq!(
        app.patch(&format!("/files/{a}"), &admin, json!({"restore": true}))
            .await
            .status,
        200
    );
    assert_eq!(app.delete(&format!("/files/{a}"), &admin).await.status, 204);

    let report = retain(&app, Utc::now() + Duration::days(31)).await;
    assert_eq!(report.folders_purged, 1, "{report:?}");
    assert_eq!(report.files_purged, 2, "{report:?}");
    assert_eq!(report.bytes_freed, 70, "{report:?}");
    assert_eq!(report.versions_pruned, 0, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    let mut removed: Vec<(&str, String)> = report
        .removed
        .iter()
        .map(|r| (r.resource_type, r.resource_id.clone()))
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        vec![("file", a.clone()), ("folder", folder.clone())]
    );

    // The bytes are free again; the live file is untouched.
    let usage = app
        .get(&format!("/quotas/usage/shares/{share}"), &admin)
        .await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(
        (
            usage.body["used_bytes"].clone(),
            usage.body["trash_bytes"].clone()
        ),
        (json!(20), json!(0)),
        "{}",
        usage.body
    );
    let c = upload(&app, &admin, &share, None, "c.bin", vec![b'c'; 79]).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(app.get(&format!("/files/{kept}"), &admin).await.status, 200);

    // Purged items are gone for good: no restore, no reading.
    for path in [format!("/files/{a}"), format!("/files/{b}")] {
        app.get(&path, &admin).await.assert_detail(404);
        app.patch(&path, &admin, json!({"restore": true}))
            .await
            .assert_detail(404);
    }
    app.get(&format!("/folders/{folder}"), &admin)
        .await
        .assert_detail(404);
    app.patch(
        &format!("/folders/{folder}"),
        &admin,
        json!({"restore": true}),
    )
    .await
    .assert_detail(404);
    // The names are free again.
    let again = upload(&app, &admin, &share, None, "a.bin", vec![b'a'; 1]).await;
    assert_eq!(again.status, 201, "{}", again.body);

    // Ordinary events with the system actor (no user), audited as such.
    let events = app.get("/events?type=file-purged&limit=100", &admin).await;
    assert_eq!(events.status, 200, "{}", events.body);
    let purged: Vec<&Value> = events.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .collect();
    assert_eq!(purged.len(), 2, "{}", events.body);
    for e in &purged {
        assert!(e["actor"]["user_id"].is_null(), "{e}");
        assert!(e["data"]["by"].is_null(), "{e}");
    }
    let freed = app.get("/events?type=quota-freed&limit=100", &admin).await;
    let freed: u64 = freed.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["data"]["bytes"].as_u64())
        .sum();
    assert_eq!(freed, 70);
    let audit = app.get("/audit/events?action=file.purged", &admin).await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let rows = audit.body["events"].as_array().expect("events");
    assert_eq!(rows.len(), 2, "{}", audit.body);
    assert!(
        rows.iter().all(|r| r["user_id"].is_null()),
        "{}",
        audit.body
    );

    // A second pass finds nothing left to do.
    let again = retain(&app, Utc::now() + Duration::days(31)).await;
    assert!(again.removed.is_empty(), "{again:?}");
}

both_backends!(trash_purge_frees_quota_and_is_audited_with_the_system_actor
    => trash_purge_frees_quota_and_is_audited_with_the_system_actor_sqlite,
       trash_purge_frees_quota_and_is_audited_with_the_system_actor_postgres);

async fn version_numbers(app: &TestApp, t: &str, file: &str) -> Vec<u64> {
    let v = app.get(&format!("/files/{file}/versions"), t).await;
    assert_eq!(v.status, 200, "{}", v.body);
    v.body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["number"].as_u64())
        .collect()
}

async fn restore_version(app: &TestApp, t: &str, file: &str, n: u64) -> crate::helpers::Answer {
    app.post(&format!("/files/{file}/versions/{n}/restore"), t, json!({}))
        .await
}

async fn version_pruning_keeps_the_current_version_and_newer_ones(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    let share = new_share(&app, &admin, "docs").await;
    let f = upload(&app, &admin, &share, None, "f.txt", vec![b'1'; 10]).await;
    assert_eq!(f.status, 201, "{}", f.body);
    let f = id(&f);
    // v2 supersedes v1 before `mid`, v3 supersedes v2 after it.
    assert_eq!(restore_version(&app, &admin, &f, 1).await.status, 201);
    let mid = Utc::now();
    while Utc::now() <= mid {
        tokio::task::yield_now().await;
    }
    assert_eq!(restore_version(&app, &admin, &f, 1).await.status, 201);
    let mut numbers = version_numbers(&app, &admin, &f).await;
    numbers.sort();
    assert_eq!(numbers, vec![1, 2, 3]);
    let usage = app
        .get(&format!("/quotas/usage/shares/{share}"), &admin)
        .await;
    assert_eq!(usage.body["used_bytes"], 30, "{}", usage.body);

    // The default keeps versions 365 days after they stop being current.
    let report = retain(&app, mid + Duration::days(365)).await;
    assert_eq!(
        (report.versions_pruned, report.bytes_freed),
        (1, 10),
        "{report:?}"
    );
    let mut numbers = version_numbers(&app, &admin, &f).await;
    numbers.sort();
    assert_eq!(numbers, vec![2, 3]);
    let usage = app
        .get(&format!("/quotas/usage/shares/{share}"), &admin)
        .await;
    assert_eq!(usage.body["used_bytes"], 20, "{}", usage.body);
    // A pruned version can be neither read nor restored.
    app.get(&format!("/files/{f}/content?version=1"), &admin)
        .await
        .assert_detail(404);
    restore_version(&app, &admin, &f, 1)
        .await
        .assert_detail(404);
    let events = app
        .get("/events?type=file-version-pruned&limit=100", &admin)
        .await;
    let pruned = events.body["events"].as_array().expect("events");
    assert_eq!(pruned.len(), 1, "{}", events.body);
    assert!(pruned[0]["actor"]["user_id"].is_null(), "{}", events.body);
    assert_eq!(pruned[0]["data"]["number"], 1);

    // However far ahead, the current version stays and still downloads.
    let report = retain(&app, Utc::now() + Duration::days(10_000)).await;
    assert_eq!(report.versions_pruned, 1, "{report:?}");
    assert_eq!(version_numbers(&app, &admin, &f).await, vec![3]);
    let file = app.get(&format!("/files/{f}"), &admin).await;
    assert_eq!(file.body["version"], 3, "{}", file.body);
    let content = app
        .raw(Method::GET, &format!("/files/{f}/content"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.expect("body").len(), 10);
    let usage = app
        .get(&format!("/quotas/usage/shares/{share}"), &admin)
        .await;
    assert_eq!(usage.body["used_bytes"], 10, "{}", usage.body);
}

both_backends!(version_pruning_keeps_the_current_version_and_newer_ones
    => version_pruning_keeps_the_current_version_and_newer_ones_sqlite,
       version_pruning_keeps_the_current_version_and_newer_ones_postgres);

async fn a_trashed_share_is_purged_with_everything_in_it(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    let keep = new_share(&app, &admin, "keep").await;
    let gone = new_share(&app, &admin, "gone").await;
    let folder = app
        .post("/folders", &admin, json!({"share_id": gone, "name": "f"}))
        .await;
    assert_eq!(folder.status, 201, "{}", folder.body);
    let folder = id(&folder);
    let inner = upload(&app, &admin, &gone, Some(&folder), "in.bin", vec![1; 25]).await;
    assert_eq!(inner.status, 201, "{}", inner.body);
    let root = upload(&app, &admin, &gone, None, "root.bin", vec![2; 15]).await;
    assert_eq!(root.status, 201, "{}", root.body);
    let kept = upload(&app, &admin, &keep, None, "k.bin", vec![3; 10]).await;
    assert_eq!(kept.status, 201, "{}", kept.body);
    assert_eq!(
        app.delete(&format!("/shares/{gone}"), &admin).await.status,
        204
    );

    let early = retain(&app, Utc::now() + Duration::days(29)).await;
    assert!(early.removed.is_empty(), "{early:?}");
    let report = retain(&app, Utc::now() + Duration::days(31)).await;
    assert_eq!(
        (
            report.shares_purged,
            report.folders_purged,
            report.files_purged,
            report.bytes_freed
        ),
        (1, 1, 2, 40),
        "{report:?}"
    );
    app.get(&format!("/shares/{gone}"), &admin)
        .await
        .assert_detail(404);
    app.post(&format!("/shares/{gone}/restore"), &admin, json!({}))
        .await
        .assert_detail(404);
    for path in [
        format!("/folders/{folder}"),
        format!("/files/{}", id(&inner)),
        format!("/files/{}", id(&root)),
    ] {
        app.get(&path, &admin).await.assert_detail(404);
    }
    let listed = app.get("/shares?include_trashed=true", &admin).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(!listed.body.to_string().contains(&gone), "{}", listed.body);
    let usage = app.get("/quotas/usage/tenant", &admin).await;
    assert_eq!(usage.body["used_bytes"], 10, "{}", usage.body);
    let purged = app.get("/events?type=share-purged", &admin).await;
    let purged = purged.body["events"].as_array().expect("events");
    assert_eq!(purged.len(), 1);
    assert!(purged[0]["actor"]["user_id"].is_null(), "{}", purged[0]);
    // The other share is untouched.
    assert_eq!(
        app.get(&format!("/files/{}", id(&kept)), &admin)
            .await
            .status,
        200
    );
}

both_backends!(a_trashed_share_is_purged_with_everything_in_it
    => a_trashed_share_is_purged_with_everything_in_it_sqlite,
       a_trashed_share_is_purged_with_everything_in_it_postgres);

#[test]
fn maintenance_run_prints_a_json_summary() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scaidrive"))
        .args(["maintenance", "run", "--data-dir"])
        .arg(dir.path())
        .env("SCAIDRIVE_LOG", "warn")
        .env_remove("SCAIDRIVE_DATABASE_URL")
        .output()
        .expect("run scaidrive");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(summary["retention"]["tenants"], 0, "{summary}");
    assert_eq!(summary["retention"]["removed"], json!([]), "{summary}");
    assert_eq!(summary["expired_uploads"], 0, "{summary}");
    assert_eq!(summary["gc"]["chunks_deleted"], 0, "{summary}");
}

async fn the_retention_job_runs_under_its_worker_lease(backend: Backend) {
    let app = spawn_on(backend).await;
    // On PostgreSQL the lease keeper takes it at its next tick; on SQLite
    // the one process holds it from the start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let held = loop {
        let held = app
            .state
            .leases
            .held()
            .into_iter()
            .any(|(name, held)| name == scaidrive::maintenance::RETENTION_LEASE && held);
        if held || std::time::Instant::now() > deadline {
            break held;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(held, "{:?}", app.state.leases.held());
}

both_backends!(the_retention_job_runs_under_its_worker_lease
    => the_retention_job_runs_under_its_worker_lease_sqlite,
       the_retention_job_runs_under_its_worker_lease_postgres);
