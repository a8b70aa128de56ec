//! Outbound webhooks: a receiver inside the test (axum on 127.0.0.1:0) gets
//! signed audit JSON; retries follow the (scaled) schedule; drops and full
//! queues leave SECURITY events; the admin API is tenant-scoped and never
//! shows the secret.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_with, Backend, TestApp};

const SECRET: &str = "s3cret-for-tests";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// A local webhook receiver that answers 500 to its first `fail_first`
/// requests (all of them with `usize::MAX`) and 200 afterwards.
pub(crate) struct Receiver {
    pub(crate) url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let h = h.clone();
                let seen = seen.clone();
                async move {
                    h.lock().push(Hit {
                        headers,
                        body,
                        at: Instant::now(),
                    });
                    if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            hits,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().clone()
    }

    /// Polls until `f` holds for the hits so far.
    pub(crate) async fn wait_for(&self, what: &str, f: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let hits = self.hits();
            if f(&hits) {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {hits:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn app_with(backend: Backend, scale: u32, queue_max: i64) -> TestApp {
    spawn_with(backend, |c| {
        c.webhooks.retry_scale = scale;
        c.webhooks.queue_max = queue_max;
        c.webhooks.poll = Duration::from_millis(10);
    })
    .await
}

/// Signs in `user` of `tenant` (the first user of a tenant is its admin).
async fn admin_of(app: &TestApp, tenant: &str, user: &str) -> (String, String) {
    let t = app.token(tenant, user, "");
    let me = app.get("/users/me", &t).await;
    assert_eq!(me.status, 200, "{}", me.body);
    (t, me.body["id"].as_str().expect("id").to_owned())
}

async fn create_webhook(app: &TestApp, t: &str, body: Value) -> String {
    let r = app.post("/admin/webhooks", t, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

async fn make_share(app: &TestApp, t: &str, owner: &str, name: &str) -> String {
    let r = app
        .post(
            "/shares",
            t,
            json!({"name": name, "share_type": "project", "owner_id": owner}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().expect("share").to_owned()
}

async fn deliveries(app: &TestApp, t: &str, webhook: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/admin/webhooks/{webhook}/deliveries?limit=100"),
            t,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["deliveries"].as_array().expect("deliveries").clone()
}

/// Polls the delivery log until `f` holds.
async fn wait_deliveries(
    app: &TestApp,
    t: &str,
    webhook: &str,
    what: &str,
    f: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = deliveries(app, t, webhook).await;
        if f(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the SECURITY audit entries until `f` holds.
async fn wait_security(
    app: &TestApp,
    t: &str,
    what: &str,
    f: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app
            .get(
                "/audit/events?category=SECURITY&action=webhook.delivery_dropped",
                t,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let events = r.body["events"].as_array().expect("events").clone();
        if f(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(body);
    hex::decode(signature).is_ok_and(|sig| m.verify_slice(&sig).is_ok())
}

async fn signed_audit_json_reaches_the_receiver(backend: Backend) {
    let app = app_with(backend, 1, 10_000).await;
    let rx = Receiver::start(0).await;
    let (t, uid) = admin_of(&app, "acme", "alice").await;
    let created = app
        .post(
            "/admin/webhooks",
            &t,
            json!({"name": "SIEM", "url": rx.url, "categories": ["sharing"], "secret": SECRET,
                   "headers": {"X-Team": "blue"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let w = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["has_secret"], true);
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["categories"], json!(["SHARING"]));
    assert!(created.body.get("secret").is_none(), "{}", created.body);
    let listed = app.get("/admin/webhooks", &t).await;
    assert_eq!(listed.body["webhooks"][0]["id"], w.as_str());
    assert!(!listed.body.to_string().contains(SECRET), "{}", listed.body);

    // An ADMIN event first (filtered out), then a SHARING one.
    let patched = app
        .patch("/admin/tenant", &t, json!({"display_name": "Acme Corp"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let share = make_share(&app, &t, &uid, "Hooked").await;

    let hits = rx
        .wait_for("share.created", |h| {
            h.iter()
                .any(|h| h.header("x-scaidrive-event") == "share.created")
        })
        .await;
    let hit = hits
        .iter()
        .find(|h| h.header("x-scaidrive-event") == "share.created")
        .expect("hit");
    assert!(verify(
        SECRET,
        &hit.body,
        hit.header("x-scaidrive-signature")
    ));
    assert!(!verify(
        "another-secret",
        &hit.body,
        hit.header("x-scaidrive-signature")
    ));
    assert!(hit.header("x-scaidrive-delivery-id").starts_with("dlv_"));
    assert_eq!(hit.header("x-team"), "blue");
    assert_eq!(hit.header("content-type"), "application/json");
    let body = hit.json();
    assert_eq!(body["resource_id"], share.as_str());
    // The body is the audit entry, exactly as the audit view shows it.
    let audit = app
        .get(
            &format!("/audit/events?resource_id={share}&action=share.created"),
            &t,
        )
        .await;
    assert_eq!(audit.body["events"][0], body, "{}", audit.body);
    // Only SHARING reached this webhook.
    assert!(
        hits.iter().all(|h| h.json()["category"] == "SHARING"),
        "{hits:?}"
    );
    let log = wait_deliveries(&app, &t, &w, "delivered", |d| {
        d.iter()
            .any(|d| d["action"] == "share.created" && d["status"] == "delivered")
    })
    .await;
    let d = log
        .iter()
        .find(|d| d["action"] == "share.created")
        .expect("delivery");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last_response_code"], 200);
    assert_eq!(d["id"], hit.header("x-scaidrive-delivery-id"));
    assert!(
        log.iter().all(|d| d["action"] != "tenant.updated"),
        "{log:?}"
    );
    // The audit view of the webhook's creation shows the secret sealed.
    let mine = app.get(&format!("/audit/events?resource_id={w}"), &t).await;
    assert_eq!(mine.body["events"][0]["action"], "webhook.created");
    assert!(mine.body["events"][0]["details"]["secret"]
        .as_str()
        .unwrap()
        .starts_with("sealed:v1:"));
    assert!(!mine.body.to_string().contains(SECRET));
}

crate::both_backends!(signed_audit_json_reaches_the_receiver
    => signed_audit_json_reaches_the_receiver_sqlite, signed_audit_json_reaches_the_receiver_pg);

#[tokio::test]
async fn a_failing_receiver_gets_the_delivery_on_the_retry_after_the_schedule() {
    // 30 s, 1 min, 5 min scaled down to 3, 6 and 30 ms.
    let app = app_with(Backend::Sqlite, 10_000, 10_000).await;
    let rx = Receiver::start(3).await;
    let (t, uid) = admin_of(&app, "acme", "alice").await;
    let w = create_webhook(
        &app,
        &t,
        json!({"name": "flaky", "url": rx.url, "categories": ["SHARING"], "secret": SECRET}),
    )
    .await;
    make_share(&app, &t, &uid, "Retried").await;
    let log = wait_deliveries(&app, &t, &w, "a delivered delivery", |d| {
        d.iter().any(|d| d["status"] == "delivered")
    })
    .await;
    let done = log
        .iter()
        .find(|d| d["status"] == "delivered")
        .expect("delivered");
    assert_eq!(done["attempts"], 4, "{log:?}");
    assert_eq!(done["last_response_code"], 200);
    let id = done["id"].as_str().expect("id");
    let tries: Vec<Hit> = rx
        .hits()
        .into_iter()
        .filter(|h| h.header("x-scaidrive-delivery-id") == id)
        .collect();
    assert_eq!(tries.len(), 4);
    // The same signed body every time, spaced at least as the schedule says.
    assert!(tries.iter().all(|h| h.body == tries[0].body));
    assert!(tries
        .iter()
        .all(|h| verify(SECRET, &h.body, h.header("x-scaidrive-signature"))));
    // The server's own record of each attempt.
    let detail = app
        .get(&format!("/admin/webhooks/{w}/deliveries/{id}"), &t)
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    let codes: Vec<i64> = detail.body["attempt_log"]
        .as_array()
        .expect("attempt_log")
        .iter()
        .map(|a| a["response_code"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    app.get(&format!("/admin/webhooks/{w}/deliveries/dlv_nope"), &t)
        .await
        .assert_detail(404);
    for (i, min_ms) in [3u64, 6, 30].into_iter().enumerate() {
        let gap = tries[i + 1].at - tries[i].at;
        assert!(
            gap >= Duration::from_millis(min_ms),
            "retry {} came after {gap:?}, schedule says {min_ms} ms",
            i + 1
        );
    }
}

async fn a_receiver_that_always_fails_loses_the_delivery(backend: Backend) {
    // The whole schedule (about 31 h) in about 1.1 s.
    let app = app_with(backend, 100_000, 10_000).await;
    let rx = Receiver::start(usize::MAX).await;
    let (t, uid) = admin_of(&app, "acme", "alice").await;
    let w = create_webhook(
        &app,
        &t,
        json!({"name": "down", "url": rx.url, "categories": ["SHARING", "SECURITY"], "secret": SECRET}),
    )
    .await;
    make_share(&app, &t, &uid, "Lost").await;
    let log = wait_deliveries(&app, &t, &w, "a dropped delivery", |d| {
        d.iter()
            .any(|d| d["action"] == "share.created" && d["status"] == "dropped")
    })
    .await;
    let dropped = log
        .iter()
        .find(|d| d["action"] == "share.created")
        .expect("dropped");
    assert_eq!(dropped["attempts"], 8, "{log:?}");
    assert_eq!(dropped["last_response_code"], 500);
    assert_eq!(dropped["drop_reason"], "retries_exhausted");
    assert_eq!(dropped["next_attempt_at"], Value::Null);
    let id = dropped["id"].as_str().expect("id");
    let tries = rx
        .hits()
        .into_iter()
        .filter(|h| h.header("x-scaidrive-delivery-id") == id)
        .count();
    assert_eq!(tries, 8);
    let security = wait_security(&app, &t, "the drop event", |e| {
        e.iter().any(|e| e["details"]["delivery_id"] == id)
    })
    .await;
    let e = security
        .iter()
        .find(|e| e["details"]["delivery_id"] == id)
        .expect("event");
    assert_eq!(e["category"], "SECURITY");
    assert_eq!(e["severity"], "warning");
    assert_eq!(e["resource_type"], "webhook");
    assert_eq!(e["resource_id"], w.as_str());
    assert_eq!(e["details"]["reason"], "retries_exhausted");
    assert_eq!(e["details"]["attempts"], 8);
    assert_eq!(e["service_account"], "scaidrive-webhooks");
    // The webhook is not sent its own drop (it would feed itself forever),
    // though it subscribes to SECURITY.
    let log = deliveries(&app, &t, &w).await;
    assert!(
        log.iter()
            .all(|d| d["action"] != "webhook.delivery_dropped"),
        "{log:?}"
    );
}

crate::both_backends!(a_receiver_that_always_fails_loses_the_delivery
    => a_receiver_that_always_fails_loses_the_delivery_with_a_security_event_sqlite,
       a_receiver_that_always_fails_loses_the_delivery_with_a_security_event_pg);

#[tokio::test]
async fn a_paused_webhook_queues_and_delivers_on_resume() {
    let app = app_with(Backend::Sqlite, 1, 10_000).await;
    let rx = Receiver::start(0).await;
    let (t, uid) = admin_of(&app, "acme", "alice").await;
    let w = create_webhook(
        &app,
        &t,
        json!({"name": "later", "url": rx.url, "categories": ["SHARING"], "secret": SECRET, "status": "paused"}),
    )
    .await;
    make_share(&app, &t, &uid, "Queued").await;
    wait_deliveries(&app, &t, &w, "a queued delivery", |d| {
        d.iter()
            .any(|d| d["action"] == "share.created" && d["status"] == "pending")
    })
    .await;
    // Several sender passes happen in this time; a paused webhook sends nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.hits().is_empty(), "{:?}", rx.hits());
    let resumed = app
        .patch(
            &format!("/admin/webhooks/{w}"),
            &t,
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.body["status"], "active");
    rx.wait_for("the queued delivery", |h| {
        h.iter()
            .any(|h| h.header("x-scaidrive-event") == "share.created")
    })
    .await;
    let actions: Vec<String> = app
        .get(&format!("/audit/events?resource_id={w}"), &t)
        .await
        .body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(actions, ["webhook.created", "webhook.resumed"]);
}

async fn a_full_queue_drops_the_newest(backend: Backend) {
    let app = app_with(backend, 1, 2).await;
    let rx = Receiver::start(0).await;
    let (t, uid) = admin_of(&app, "acme", "alice").await;
    let w = create_webhook(
        &app,
        &t,
        json!({"name": "bounded", "url": rx.url, "categories": ["SHARING"], "secret": SECRET, "status": "paused"}),
    )
    .await;
    for i in 0..4 {
        make_share(&app, &t, &uid, &format!("Share {i}")).await;
    }
    // The log lists newest first; however many SHARING events four shares
    // make, the two oldest stay queued and the rest are dropped.
    let log = wait_deliveries(&app, &t, &w, "the bound to hold", |d| {
        d.len() >= 4
            && d.iter().filter(|d| d["status"] == "pending").count() == 2
            && d.iter()
                .all(|d| d["status"] == "pending" || d["status"] == "dropped")
    })
    .await;
    let total = log.len();
    let (kept, lost) = log.split_at(total - 2);
    assert!(kept.iter().all(|d| d["status"] == "dropped"), "{log:?}");
    assert!(
        kept.iter().all(|d| d["drop_reason"] == "queue_full"),
        "{log:?}"
    );
    assert!(lost.iter().all(|d| d["status"] == "pending"), "{log:?}");
    let security = wait_security(&app, &t, "one event per dropped delivery", |e| {
        e.len() == total - 2
    })
    .await;
    assert!(security
        .iter()
        .all(|e| e["details"]["reason"] == "queue_full" && e["resource_id"] == w.as_str()));
    let resumed = app
        .patch(
            &format!("/admin/webhooks/{w}"),
            &t,
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    let oldest: Vec<String> = lost
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let hits = rx
        .wait_for("the two queued deliveries", |h| h.len() >= 2)
        .await;
    let mut got: Vec<String> = hits
        .iter()
        .map(|h| h.header("x-scaidrive-delivery-id").to_owned())
        .collect();
    got.sort();
    let mut want = oldest.clone();
    want.sort();
    assert_eq!(got, want);
}

crate::both_backends!(a_full_queue_drops_the_newest
    => a_full_queue_drops_the_newest_deliveries_with_security_events_sqlite,
       a_full_queue_drops_the_newest_deliveries_with_security_events_pg);

#[tokio::test]
async fn webhooks_are_tenant_scoped_validated_and_keep_their_secret() {
    let app = app_with(Backend::Sqlite, 1, 10_000).await;
    let (t, _) = admin_of(&app, "acme", "alice").await;
    let (other, _) = admin_of(&app, "globex", "gina").await;
    let bob = app.token("acme", "bob", "");
    app.get("/users/me", &bob).await;
    let w = create_webhook(
        &app,
        &t,
        json!({"name": "mine", "url": "https://example.test/hook", "secret": SECRET}),
    )
    .await;

    for bad in [
        json!({"name": "x", "url": "ftp://example.test/x", "secret": SECRET}),
        json!({"name": "x", "url": "not a url", "secret": SECRET}),
        json!({"name": "x", "url": "https://example.test/x"}),
        json!({"name": "x", "url": "https://example.test/x", "secret": "short"}),
        json!({"name": "x", "url": "https://example.test/x", "secret": SECRET, "categories": ["NOPE"]}),
        json!({"name": "x", "url": "https://example.test/x", "secret": SECRET, "status": "sleeping"}),
        json!({"name": "x", "url": "https://example.test/x", "secret": SECRET,
               "headers": {"X-ScaiDrive-Signature": "forged"}}),
    ] {
        app.post("/admin/webhooks", &t, bad.clone())
            .await
            .assert_422();
    }
    let bad_url = app
        .post(
            "/admin/webhooks",
            &t,
            json!({"name": "x", "url": "ftp://example.test/x", "secret": SECRET}),
        )
        .await;
    assert_eq!(bad_url.assert_422()[0]["loc"], json!(["body", "url"]));
    app.patch(
        &format!("/admin/webhooks/{w}"),
        &t,
        json!({"url": "mailto:a@b.c"}),
    )
    .await
    .assert_422();

    // Another tenant's admin sees nothing of it.
    let path = format!("/admin/webhooks/{w}");
    app.get(&path, &other).await.assert_detail(404);
    app.patch(&path, &other, json!({"status": "paused"}))
        .await
        .assert_detail(404);
    app.delete(&path, &other).await.assert_detail(404);
    app.get(&format!("{path}/deliveries"), &other)
        .await
        .assert_detail(404);
    let theirs = app.get("/admin/webhooks", &other).await;
    assert_eq!(theirs.body["webhooks"], json!([]));
    // Not a tenant admin: 403.
    app.get("/admin/webhooks", &bob).await.assert_detail(403);
    app.get("/admin/webhooks/nope", &t).await.assert_detail(400);

    // A change to nothing is fine and records nothing.
    let same = app
        .patch(&path, &t, json!({"status": "active", "name": "mine"}))
        .await;
    assert_eq!(same.status, 200, "{}", same.body);
    assert_eq!(same.body["status"], "active");

    // A new secret is accepted and still never shown.
    let rotated = app
        .patch(
            &path,
            &t,
            json!({"secret": "rotated-secret-123", "name": "renamed"}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["name"], "renamed");
    assert_eq!(rotated.body["has_secret"], true);
    assert!(!rotated.body.to_string().contains("rotated-secret-123"));
    let audit = app.get("/audit/events?action=webhook.updated", &t).await;
    assert!(
        !audit.body.to_string().contains("rotated-secret-123"),
        "{}",
        audit.body
    );
    let events = app.get("/events", &t).await;
    assert!(!events.body.to_string().contains(SECRET), "{}", events.body);

    let gone = app.delete(&path, &t).await;
    assert_eq!(gone.status, 204);
    app.get(&path, &t).await.assert_detail(404);
    app.delete(&path, &t).await.assert_detail(404);
}

#[tokio::test]
async fn deliveries_to_private_addresses_are_refused_unless_allowed() {
    let app = spawn_with(Backend::Sqlite, |c| {
        c.webhooks.poll = Duration::from_millis(10);
        c.webhooks.retry_scale = 1000;
        c.webhooks.allow_private = false;
    })
    .await;
    let rx = Receiver::start(0).await;
    let (t, uid) = admin_of(&app, "acme", "alice").await;
    let w = create_webhook(
        &app,
        &t,
        json!({"name": "inside", "url": rx.url, "categories": ["SHARING"], "secret": SECRET}),
    )
    .await;
    make_share(&app, &t, &uid, "Probe").await;
    let d = wait_deliveries(&app, &t, &w, "a refused attempt", |d| {
        d.iter().any(|d| {
            d["attempts"].as_i64().unwrap_or(0) > 0
                && d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("private"))
        })
    })
    .await;
    assert!(rx.hits().is_empty(), "{:?} {d:?}", rx.hits());
}
