//! Quotas: limits per level, reservations in the write's append, usage from
//! the read model, exactness under concurrency, permission gates.

use reqwest::Method;
use serde_json::{json, Value};

use crate::drive::new_share;
use crate::helpers::{spawn, spawn_on, Answer, Backend, TestApp};

async fn upload(app: &TestApp, t: &str, share: &str, name: &str, size: usize) -> Answer {
    let data = vec![b'q'; size];
    crate::drive::upload_as(app, t, share, None, name, "application/octet-stream", data).await
}

async fn put(app: &TestApp, path: &str, t: &str, body: Value) -> Answer {
    app.call(Method::PUT, path, Some(t), Some(body)).await
}

/// Polls a usage endpoint until `key` equals `want` (the read model catches
/// up shortly after a write that does not wait for it).
async fn eventually(app: &TestApp, path: &str, t: &str, key: &str, want: Value) -> Answer {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let a = app.get(path, t).await;
        if a.body[key] == want || std::time::Instant::now() > deadline {
            return a;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn me(app: &TestApp, t: &str) -> String {
    app.get("/users/me", t).await.body["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn concurrent_uploads_never_overshoot(app: TestApp) {
    let admin = app.token("acme", "alice", "");
    let partner = app.token("acme", "alice", "partner:admin");
    let share = new_share(&app, &admin, "big").await;
    assert_eq!(
        upload(&app, &admin, &share, "seed.bin", 1000).await.status,
        201
    );
    // Room for exactly 10 more uploads of 100 bytes.
    let set = put(
        &app,
        "/quotas/tenant",
        &partner,
        json!({"limit_bytes": 2000}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["used_bytes"], 1000);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (app, admin, share) = (&app, admin.clone(), share.clone());
            async move { upload(app, &admin, &share, &format!("f{i}.bin"), 100).await }
        })
        .collect();
    let answers = futures::future::join_all(tasks).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    for a in answers.iter().filter(|a| a.status != 201) {
        a.assert_detail(507);
        assert_eq!(a.body["detail"], "Tenant quota exceeded");
        assert_eq!(a.body["code"], "QUOTA_EXCEEDED");
    }
    assert_eq!(created, 10);
    let usage = app.get("/quotas/usage/tenant", &admin).await;
    assert_eq!(usage.body["used_bytes"], 2000, "{}", usage.body);
    let recalculated = app
        .get("/quotas/usage/tenant?recalculate=true", &admin)
        .await;
    assert_eq!(recalculated.body["used_bytes"], 2000);
    assert_eq!(recalculated.body["file_count"], usage.body["file_count"]);
}

#[tokio::test]
async fn sixty_four_concurrent_uploads_never_overshoot_a_nearly_full_hard_quota() {
    concurrent_uploads_never_overshoot(spawn().await).await;
}

#[tokio::test]
#[ignore = "needs postgres (scripts/test)"]
async fn sixty_four_concurrent_uploads_never_overshoot_on_postgres() {
    concurrent_uploads_never_overshoot(spawn_on(Backend::Postgres).await).await;
}

#[tokio::test]
async fn the_507_names_the_most_specific_refusing_level() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let share = new_share(&app, &admin, "s").await;
    let alice = me(&app, &admin).await;
    let a = put(
        &app,
        &format!("/quotas/shares/{share}"),
        &admin,
        json!({"limit_bytes": 150}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = put(
        &app,
        &format!("/quotas/users/{alice}"),
        &admin,
        json!({"limit_bytes": 100}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let refused = upload(&app, &admin, &share, "a.bin", 200).await;
    refused.assert_detail(507);
    assert_eq!(refused.body["detail"], "Share quota exceeded");
    let refused = upload(&app, &admin, &share, "a.bin", 120).await;
    assert_eq!(refused.body["detail"], "User quota exceeded");
    assert_eq!(upload(&app, &admin, &share, "a.bin", 100).await.status, 201);
    // Exempting the user leaves the share's limit.
    let ex = app
        .post(
            &format!("/quotas/users/{alice}/exempt"),
            &admin,
            json!({"exempt": true, "reason": "ceo"}),
        )
        .await;
    assert_eq!(ex.status, 200, "{}", ex.body);
    assert_eq!(ex.body["exempt"], true);
    assert_eq!(upload(&app, &admin, &share, "b.bin", 50).await.status, 201);
    let refused = upload(&app, &admin, &share, "c.bin", 1).await;
    assert_eq!(refused.body["detail"], "Share quota exceeded");
    let q = app.get(&format!("/quotas/shares/{share}"), &admin).await;
    assert_eq!(q.body["limit_bytes"], 150);
    assert_eq!(q.body["used_bytes"], 150);
}

#[tokio::test]
async fn upload_sessions_reserve_at_creation_and_abort_releases() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let share = new_share(&app, &admin, "s").await;
    let alice = me(&app, &admin).await;
    put(
        &app,
        &format!("/quotas/users/{alice}"),
        &admin,
        json!({"limit_bytes": 1000}),
    )
    .await;
    let start = |size: u64, name: &str| {
        app.post(
            "/uploads",
            &admin,
            json!({"share_id": share, "file_name": name, "file_size": size}),
        )
    };
    let first = start(800, "a.bin").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let refused = start(300, "b.bin").await;
    refused.assert_detail(507);
    assert_eq!(refused.body["detail"], "User quota exceeded");
    let usage = eventually(
        &app,
        &format!("/quotas/usage/users/{alice}"),
        &admin,
        "reserved_bytes",
        json!(800),
    )
    .await;
    assert_eq!(usage.body["reserved_bytes"], 800, "{}", usage.body);
    let id = first.body["session_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.delete(&format!("/uploads/{id}"), &admin).await.status,
        204
    );
    let second = start(300, "b.bin").await;
    assert_eq!(second.status, 201, "{}", second.body);
    // Completing commits: the bytes move from reserved to used.
    let sid = second.body["session_id"].as_str().expect("id").to_owned();
    let chunk = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(&admin)
        .body(vec![b'z'; 300])
        .send()
        .await
        .expect("send");
    assert_eq!(chunk.status(), 200);
    let done = app
        .post(&format!("/uploads/{sid}/complete"), &admin, json!({}))
        .await;
    assert_eq!(done.status, 201, "{}", done.body);
    let mine = app.get("/users/me/quota", &admin).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["user_id"], alice.as_str());
    assert_eq!(mine.body["used_bytes"], 300);
    assert_eq!(mine.body["quota_bytes"], 1000);
    assert_eq!(mine.body["percent_used"], 30.0);
    assert_eq!(mine.body["reserved_bytes"], 0);
    assert_eq!(start(701, "c.bin").await.status, 507);
    assert_eq!(start(700, "c.bin").await.status, 201);
}

#[tokio::test]
async fn trash_keeps_bytes_counted_purge_frees_them_and_versions_count() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let share = new_share(&app, &admin, "s").await;
    let alice = me(&app, &admin).await;
    put(
        &app,
        &format!("/quotas/users/{alice}"),
        &admin,
        json!({"limit_bytes": 300}),
    )
    .await;
    let a = upload(&app, &admin, &share, "a.bin", 150).await;
    let b = upload(&app, &admin, &share, "b.bin", 50).await;
    let a_id = a.body["id"].as_str().expect("id").to_owned();
    let b_id = b.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.delete(&format!("/files/{a_id}"), &admin).await.status,
        204
    );
    let u = app
        .get(&format!("/quotas/usage/shares/{share}"), &admin)
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(
        (u.body["used_bytes"].clone(), u.body["trash_bytes"].clone()),
        (json!(200), json!(150))
    );
    assert_eq!(u.body["file_count"], 1);
    // Trash still counts against the limit.
    assert_eq!(upload(&app, &admin, &share, "c.bin", 101).await.status, 507);
    assert_eq!(
        app.delete(&format!("/files/{a_id}?permanent=true"), &admin)
            .await
            .status,
        204
    );
    let c = upload(&app, &admin, &share, "c.bin", 101).await;
    assert_eq!(c.status, 201, "{}", c.body);
    // A restored version adds version bytes.
    let r = app
        .post(
            &format!("/files/{b_id}/versions/1/restore"),
            &admin,
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let u = app
        .get(&format!("/quotas/usage/users/{alice}"), &admin)
        .await;
    assert_eq!(u.body["used_bytes"], 201, "{}", u.body);
    assert_eq!(u.body["version_bytes"], 50);
    // ...and are charged: 201 of 300 used, so 99 more fit and 100 do not.
    assert_eq!(upload(&app, &admin, &share, "d.bin", 100).await.status, 507);
    assert_eq!(upload(&app, &admin, &share, "d.bin", 99).await.status, 201);
    let r = app
        .post(
            &format!("/files/{b_id}/versions/1/restore"),
            &admin,
            json!({}),
        )
        .await;
    r.assert_detail(507);
    assert_eq!(r.body["detail"], "User quota exceeded");
    let live = app.get("/quotas/usage/tenant", &admin).await;
    let rebuilt = app
        .get("/quotas/usage/tenant?recalculate=true", &admin)
        .await;
    for k in [
        "used_bytes",
        "file_count",
        "folder_count",
        "version_bytes",
        "trash_bytes",
        "reserved_bytes",
    ] {
        assert_eq!(live.body[k], rebuilt.body[k], "{k}");
    }
}

#[tokio::test]
async fn crossing_a_threshold_appends_an_event_and_queues_an_email() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let share = new_share(&app, &admin, "s").await;
    let alice = me(&app, &admin).await;
    put(
        &app,
        &format!("/quotas/users/{alice}"),
        &admin,
        json!({"limit_bytes": 1000}),
    )
    .await;
    assert_eq!(upload(&app, &admin, &share, "a.bin", 720).await.status, 201);
    let events = app.get("/events?type=quota-warning-reached", &admin).await;
    assert_eq!(events.status, 200, "{}", events.body);
    let list = events.body["events"].as_array().expect("events");
    assert_eq!(list.len(), 1, "{}", events.body);
    assert_eq!(list[0]["data"]["threshold"], 70);
    let mail = scaidrive_projections::outbox::to_recipient(&app.state.db, "alice@acme.test")
        .await
        .expect("outbox");
    assert!(
        mail.iter()
            .any(|m| m.kind == "quota-warning" && m.subject.contains("70%")),
        "{mail:?}"
    );
}

#[tokio::test]
async fn quota_endpoints_keep_their_permission_gates_and_validate_input() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let bob = app.token("acme", "bob", "files:write");
    let other = app.token("other", "olga", "");
    let alice = me(&app, &admin).await;
    let bob_id = me(&app, &bob).await;
    let olga = me(&app, &other).await;

    assert_eq!(app.get("/quotas/tenant", &admin).await.status, 200);
    app.get("/quotas/tenant", &bob).await.assert_detail(403);
    put(&app, "/quotas/tenant", &admin, json!({"limit_bytes": 5}))
        .await
        .assert_detail(403);
    app.get("/quotas/partner", &admin).await.assert_detail(403);
    let partner = app.token("acme", "alice", "partner:admin");
    assert_eq!(app.get("/quotas/partner", &partner).await.status, 200);
    let pid = app.get("/users/me", &partner).await.body["partner_id"]
        .as_str()
        .expect("p")
        .to_owned();
    put(
        &app,
        &format!("/quotas/partners/{pid}"),
        &partner,
        json!({"limit_bytes": 5}),
    )
    .await
    .assert_detail(403);
    let star = app.token("acme", "alice", "*");
    let p = put(
        &app,
        &format!("/quotas/partners/{pid}"),
        &star,
        json!({"limit_bytes": 1_000_000}),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["target_type"], "partner");
    let tid = app.get("/users/me", &admin).await.body["tenant_id"]
        .as_str()
        .expect("t")
        .to_owned();
    let t = put(
        &app,
        &format!("/quotas/tenants/{tid}"),
        &partner,
        json!({"limit_bytes": 500_000, "limit_type": "soft"}),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["limit_type"], "soft");
    let other_tid = app.get("/users/me", &other).await.body["tenant_id"]
        .as_str()
        .expect("t")
        .to_owned();
    let other_partner = app.token("other", "olga", "partner:admin");
    // Same default partner in tests: visible; a made-up tenant id is not.
    assert_eq!(
        app.get(&format!("/quotas/tenants/{other_tid}"), &other_partner)
            .await
            .status,
        200
    );
    app.get("/quotas/tenants/tnt_00000000000000000000000000", &partner)
        .await
        .assert_detail(404);

    // Users: admins manage, a user reads their own, other tenants' users are invisible.
    assert_eq!(
        app.get(&format!("/quotas/users/{bob_id}"), &bob)
            .await
            .status,
        200
    );
    app.get(&format!("/quotas/users/{alice}"), &bob)
        .await
        .assert_detail(403);
    put(
        &app,
        &format!("/quotas/users/{bob_id}"),
        &bob,
        json!({"limit_bytes": 5}),
    )
    .await
    .assert_detail(403);
    app.get(&format!("/quotas/users/{olga}"), &admin)
        .await
        .assert_detail(404);
    app.get("/quotas/users/nonsense", &admin)
        .await
        .assert_detail(400);
    let set = put(
        &app,
        &format!("/quotas/users/{bob_id}"),
        &admin,
        json!({"limit_bytes": 5000}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let list = app.get("/quotas/users", &admin).await;
    assert_eq!(list.body["total"], 1, "{}", list.body);
    assert_eq!(
        app.delete(&format!("/quotas/users/{bob_id}"), &admin)
            .await
            .status,
        204
    );
    let after = app.get(&format!("/quotas/users/{bob_id}"), &admin).await;
    assert_eq!(after.body["limit_bytes"], Value::Null);
    app.get("/quotas/usage/users", &bob)
        .await
        .assert_detail(403);
    assert_eq!(
        app.get("/quotas/usage/users", &admin).await.body["total"],
        2
    );

    // Groups (only the tenant's own) and shares.
    put(
        &app,
        "/quotas/groups/grp_01J3KXQ0N6R8V2T4Y6W8Z0B2C4",
        &admin,
        json!({"limit_bytes": 10}),
    )
    .await
    .assert_detail(404);
    let group = app
        .post("/admin/groups", &admin, json!({"name": "Ops"}))
        .await;
    let gid = group.body["id"].as_str().expect("group").to_owned();
    let g = put(
        &app,
        &format!("/quotas/groups/{gid}"),
        &admin,
        json!({"limit_bytes": 10}),
    )
    .await;
    assert_eq!(g.status, 200, "{}", g.body);
    app.get(&format!("/quotas/groups/{gid}"), &other)
        .await
        .assert_detail(404);
    let share = new_share(&app, &admin, "s").await;
    app.get(&format!("/quotas/shares/{share}"), &bob)
        .await
        .assert_detail(404);
    app.get(&format!("/quotas/shares/{share}"), &other)
        .await
        .assert_detail(404);

    // Validation.
    let bad = put(
        &app,
        &format!("/quotas/users/{alice}"),
        &admin,
        json!({"limit_bytes": -1}),
    )
    .await;
    bad.assert_422();
    put(&app, &format!("/quotas/users/{alice}"), &admin, json!({}))
        .await
        .assert_422();
    put(
        &app,
        &format!("/quotas/users/{alice}"),
        &admin,
        json!({"limit_bytes": 1, "limit_type": "fuzzy"}),
    )
    .await
    .assert_422();
    put(
        &app,
        &format!("/quotas/users/{alice}"),
        &admin,
        json!({"limit_bytes": 1, "warning_threshold_1": 90, "warning_threshold_2": 80}),
    )
    .await
    .assert_422();
}

#[tokio::test]
async fn share_limits_default_to_the_share_quota_then_the_tenant_setting() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let alice = me(&app, &admin).await;
    let created = app
        .post(
            "/shares",
            &admin,
            json!({"name": "small", "share_type": "project", "owner_id": alice, "quota_bytes": 100}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let small = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(upload(&app, &admin, &small, "a.bin", 60).await.status, 201);
    let refused = upload(&app, &admin, &small, "b.bin", 41).await;
    refused.assert_detail(507);
    assert_eq!(refused.body["detail"], "Share quota exceeded");
    let q = app.get(&format!("/quotas/shares/{small}"), &admin).await;
    assert_eq!(q.body["limit_bytes"], 100, "{}", q.body);
    assert_eq!(q.body["limit_source"], "default");

    // The tenant's default applies to shares created without a quota.
    let patched = app
        .patch(
            "/admin/tenant",
            &admin,
            json!({"settings": {"default_share_quota_bytes": 50}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let other = new_share(&app, &admin, "other").await;
    assert_eq!(upload(&app, &admin, &other, "a.bin", 51).await.status, 507);
    assert_eq!(upload(&app, &admin, &other, "a.bin", 50).await.status, 201);

    // An explicit limit wins and shows in the share itself.
    let set = put(
        &app,
        &format!("/quotas/shares/{other}"),
        &admin,
        json!({"limit_bytes": 80}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["limit_source"], "explicit");
    let share = app.get(&format!("/shares/{other}"), &admin).await;
    assert_eq!(share.body["quota_bytes"], 80, "{}", share.body);
    assert_eq!(share.body["used_bytes"], 50);
    // The listing shows each share's own usage.
    let list = app.get("/shares", &admin).await;
    let used_of = |id: &str| {
        list.body["shares"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .map(|s| s["used_bytes"].clone())
    };
    assert_eq!(used_of(&other), Some(json!(50)), "{}", list.body);
    assert_eq!(upload(&app, &admin, &other, "b.bin", 30).await.status, 201);
    assert_eq!(upload(&app, &admin, &other, "c.bin", 1).await.status, 507);
}

#[tokio::test]
async fn copies_are_charged_and_moves_carry_bytes_between_share_limits() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let a = new_share(&app, &admin, "a").await;
    let b = new_share(&app, &admin, "b").await;
    for s in [&a, &b] {
        let set = put(
            &app,
            &format!("/quotas/shares/{s}"),
            &admin,
            json!({"limit_bytes": 100}),
        )
        .await;
        assert_eq!(set.status, 200, "{}", set.body);
    }
    let f = upload(&app, &admin, &a, "f.bin", 60).await;
    let f_id = f.body["id"].as_str().expect("id").to_owned();
    let copy = app
        .post(
            &format!("/files/{f_id}/copy"),
            &admin,
            json!({"target_share_id": b}),
        )
        .await;
    assert_eq!(copy.status, 201, "{}", copy.body);
    let again = app
        .post(
            &format!("/files/{f_id}/copy"),
            &admin,
            json!({"target_share_id": b, "new_name": "g.bin"}),
        )
        .await;
    again.assert_detail(507);
    assert_eq!(again.body["detail"], "Share quota exceeded");
    // Moving the original into b would need 120 of b's 100 bytes.
    let moved = app
        .post(
            &format!("/files/{f_id}/move"),
            &admin,
            json!({"target_share_id": b, "new_name": "h.bin"}),
        )
        .await;
    assert_eq!(moved.status, 507, "{}", moved.body);
    // Once the original is purged, moving the copy out of b frees b and fills a.
    let purged = app
        .delete(&format!("/files/{f_id}?permanent=true"), &admin)
        .await;
    assert_eq!(purged.status, 204);
    let copy_id = copy.body["id"].as_str().expect("id").to_owned();
    let back = app
        .post(
            &format!("/files/{copy_id}/move"),
            &admin,
            json!({"target_share_id": a}),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(upload(&app, &admin, &b, "x.bin", 100).await.status, 201);
    assert_eq!(upload(&app, &admin, &a, "y.bin", 41).await.status, 507);
    assert_eq!(upload(&app, &admin, &a, "y.bin", 40).await.status, 201);
}

/// Sets every quota file row's sizes (both tenants): drift the recompute must
/// repair.
async fn drift_usage(app: &TestApp) {
    let sql = "UPDATE rm_quota_files SET size = 999999, version_bytes = 999999";
    match &app.state.db {
        scaidrive_projections::db::Db::Sqlite(db) => sqlx::query(sql)
            .execute(&db.write)
            .await
            .map(|r| r.rows_affected()),
        scaidrive_projections::db::Db::Postgres(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .expect("drift");
}

/// Sets the quota read model's checkpoint time, as if it last moved then.
async fn set_figures_time(app: &TestApp, at: &str) {
    let sql = format!("UPDATE projection_checkpoints SET updated_at = '{at}' WHERE name = 'quota'");
    match &app.state.db {
        scaidrive_projections::db::Db::Sqlite(db) => sqlx::query(&sql)
            .execute(&db.write)
            .await
            .map(|r| r.rows_affected()),
        scaidrive_projections::db::Db::Postgres(pool) => sqlx::query(&sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .expect("checkpoint time");
}

async fn recalculate_recomputes_only_the_callers_tenant(backend: Backend) {
    let app = spawn_on(backend).await;
    let acme = app.token("acme", "alice", "");
    let globex = app.token("globex", "gina", "");
    for (t, size) in [(&acme, 100), (&globex, 300)] {
        let share = new_share(&app, t, "Data").await;
        assert_eq!(upload(&app, t, &share, "a.bin", size).await.status, 201);
        let trashed = upload(&app, t, &share, "b.bin", size).await;
        let id = trashed.body["id"].as_str().expect("id").to_owned();
        assert_eq!(app.delete(&format!("/files/{id}"), t).await.status, 204);
    }
    let usage = |t: &str| {
        let t = t.to_owned();
        let app = &app;
        async move { app.get("/quotas/usage/tenant", &t).await }
    };
    let before = usage(&acme).await;
    assert_eq!(before.body["used_bytes"], 200, "{}", before.body);
    assert_eq!(before.body["trash_bytes"], 100);

    // No write since: the figures are as old as the read model's last
    // catch-up, not the time of the request.
    let head = scaidrive::store::EventStore::head(app.state.store.as_ref())
        .await
        .expect("head");
    assert!(
        app.state
            .projector
            .wait_for(head, std::time::Duration::from_secs(60))
            .await
    );
    set_figures_time(&app, "2020-01-02T03:04:05Z").await;
    for path in [
        "/quotas/usage/tenant".to_owned(),
        "/quotas/usage/users".to_owned(),
        "/quotas/tenant".to_owned(),
    ] {
        let a = app.get(&path, &acme).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let at = if path == "/quotas/usage/users" {
            a.body["usage"][0]["calculated_at"].clone()
        } else if path == "/quotas/tenant" {
            a.body["usage"]["calculated_at"].clone()
        } else {
            a.body["calculated_at"].clone()
        };
        assert_eq!(at, "2020-01-02T03:04:05Z", "{path}: {}", a.body);
    }

    drift_usage(&app).await;
    assert_eq!(usage(&acme).await.body["used_bytes"], 1_999_998);
    assert_eq!(usage(&globex).await.body["used_bytes"], 1_999_998);

    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let recalculated = app
        .get("/quotas/usage/tenant?recalculate=true", &acme)
        .await;
    assert_eq!(recalculated.status, 200, "{}", recalculated.body);
    assert_eq!(
        recalculated.body["used_bytes"], 200,
        "{}",
        recalculated.body
    );
    assert_eq!(recalculated.body["trash_bytes"], 100);
    assert_eq!(recalculated.body["file_count"], before.body["file_count"]);
    let at = chrono::DateTime::parse_from_rfc3339(
        recalculated.body["calculated_at"]
            .as_str()
            .expect("calculated_at"),
    )
    .expect("timestamp");
    assert!(at >= started, "computed now: {at}");
    assert_eq!(usage(&acme).await.body["used_bytes"], 200);
    // The other tenant's figures were not touched.
    assert_eq!(usage(&globex).await.body["used_bytes"], 1_999_998);

    // And the live model goes on from the recomputed rows.
    let share = new_share(&app, &acme, "More").await;
    assert_eq!(upload(&app, &acme, &share, "c.bin", 50).await.status, 201);
    assert_eq!(usage(&acme).await.body["used_bytes"], 250);
    let g = app
        .get("/quotas/usage/tenant?recalculate=true", &globex)
        .await;
    assert_eq!(g.body["used_bytes"], 600, "{}", g.body);
    assert_eq!(usage(&acme).await.body["used_bytes"], 250);
}

crate::both_backends!(recalculate_recomputes_only_the_callers_tenant
    => recalculate_recomputes_only_the_callers_tenant_sqlite,
       recalculate_recomputes_only_the_callers_tenant_postgres);

async fn move_to(app: &TestApp, t: &str, kind: &str, id: &str, body: Value) -> Answer {
    app.post(&format!("/{kind}/{id}/move"), t, body).await
}

async fn used(app: &TestApp, t: &str, share: &str) -> Value {
    let u = app.get(&format!("/quotas/usage/shares/{share}"), t).await;
    assert_eq!(u.status, 200, "{}", u.body);
    u.body["used_bytes"].clone()
}

async fn concurrent_moves_into_a_nearly_full_share_never_overshoot(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    let partner = app.token("acme", "alice", "partner:admin");
    let src = new_share(&app, &admin, "src").await;
    let dst = new_share(&app, &admin, "dst").await;
    let set = put(
        &app,
        &format!("/quotas/shares/{dst}"),
        &admin,
        json!({"limit_bytes": 100}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(upload(&app, &admin, &dst, "seed.bin", 50).await.status, 201);
    let mut files = Vec::new();
    for i in 0..16 {
        let f = upload(&app, &admin, &src, &format!("f{i}.bin"), 10).await;
        assert_eq!(f.status, 201, "{}", f.body);
        files.push(f.body["id"].as_str().expect("id").to_owned());
    }
    // The tenant is limited too, to exactly what it holds: a move between
    // two of its shares must not be charged on it a second time.
    let set = put(
        &app,
        "/quotas/tenant",
        &partner,
        json!({"limit_bytes": 210}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["used_bytes"], 210, "{}", set.body);
    // Room for exactly 5 of the 16 racing moves.
    let tasks: Vec<_> = files
        .iter()
        .map(|f| {
            let (app, admin, dst) = (&app, admin.clone(), dst.clone());
            async move { move_to(app, &admin, "files", f, json!({"target_share_id": dst})).await }
        })
        .collect();
    let answers = futures::future::join_all(tasks).await;
    let moved = answers.iter().filter(|a| a.status == 200).count();
    for a in answers.iter().filter(|a| a.status != 200) {
        a.assert_detail(507);
        assert_eq!(a.body["detail"], "Share quota exceeded", "{}", a.body);
    }
    assert_eq!(moved, 5);
    assert_eq!(
        eventually(
            &app,
            &format!("/quotas/usage/shares/{dst}"),
            &admin,
            "used_bytes",
            json!(100)
        )
        .await
        .body["used_bytes"],
        100
    );
    assert_eq!(used(&app, &admin, &src).await, json!(110));
    assert_eq!(upload(&app, &admin, &dst, "one.bin", 1).await.status, 507);
}

crate::both_backends!(concurrent_moves_into_a_nearly_full_share_never_overshoot
    => concurrent_moves_into_a_nearly_full_share_never_overshoot_sqlite,
       concurrent_moves_into_a_nearly_full_share_never_overshoot_postgres);

async fn folder_moves_carry_their_subtree_bytes_between_shares(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    let src = new_share(&app, &admin, "src").await;
    let small = new_share(&app, &admin, "small").await;
    let big = new_share(&app, &admin, "big").await;
    for (s, limit) in [(&small, 40), (&big, 60), (&src, 1000)] {
        let set = put(
            &app,
            &format!("/quotas/shares/{s}"),
            &admin,
            json!({"limit_bytes": limit}),
        )
        .await;
        assert_eq!(set.status, 200, "{}", set.body);
    }
    let top = app
        .post("/folders", &admin, json!({"share_id": src, "name": "top"}))
        .await;
    assert_eq!(top.status, 201, "{}", top.body);
    let top = top.body["id"].as_str().expect("id").to_owned();
    let sub = app
        .post(
            "/folders",
            &admin,
            json!({"share_id": src, "parent_id": top, "name": "sub"}),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    let sub = sub.body["id"].as_str().expect("id").to_owned();
    let a = crate::drive::upload(&app, &admin, &src, Some(&top), "a.bin", vec![1; 20]).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let b = crate::drive::upload(&app, &admin, &src, Some(&sub), "b.bin", vec![2; 30]).await;
    assert_eq!(b.status, 201, "{}", b.body);
    let b = b.body["id"].as_str().expect("id").to_owned();
    assert_eq!(used(&app, &admin, &src).await, json!(50));

    // 50 bytes do not fit in 40: refused, nothing moved.
    let refused = move_to(
        &app,
        &admin,
        "folders",
        &top,
        json!({"target_share_id": small}),
    )
    .await;
    refused.assert_detail(507);
    assert_eq!(refused.body["detail"], "Share quota exceeded");
    assert_eq!(
        app.get(&format!("/folders/{top}"), &admin).await.body["share_id"],
        json!(src)
    );
    let moved = move_to(
        &app,
        &admin,
        "folders",
        &top,
        json!({"target_share_id": big}),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(used(&app, &admin, &big).await, json!(50));
    assert_eq!(used(&app, &admin, &src).await, json!(0));
    assert_eq!(upload(&app, &admin, &big, "x.bin", 11).await.status, 507);

    // Purging a file deep in the moved subtree frees the share it is in now.
    assert_eq!(
        app.delete(&format!("/files/{b}?permanent=true"), &admin)
            .await
            .status,
        204
    );
    assert_eq!(used(&app, &admin, &big).await, json!(20));
    assert_eq!(upload(&app, &admin, &big, "x.bin", 40).await.status, 201);
    assert_eq!(upload(&app, &admin, &big, "y.bin", 1).await.status, 507);
    // And moving the rest back frees it there.
    let back = move_to(
        &app,
        &admin,
        "folders",
        &top,
        json!({"target_share_id": src}),
    )
    .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(used(&app, &admin, &big).await, json!(40));
    assert_eq!(upload(&app, &admin, &big, "y.bin", 20).await.status, 201);
}

crate::both_backends!(folder_moves_carry_their_subtree_bytes_between_shares
    => folder_moves_carry_their_subtree_bytes_between_shares_sqlite,
       folder_moves_carry_their_subtree_bytes_between_shares_postgres);
