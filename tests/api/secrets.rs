//! Secrets never leave through an outward channel: one of each secret is
//! written, then `/events`, the SSE tail, the audit view and both exports,
//! link history, a webhook delivery and the server's own log are scanned
//! for every one of them. Old events that hold a secret in the clear still
//! replay and are redacted on the way out.

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::Utc;
use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::Method;
use scaidrive::store::{AppendRequest, ClaimOp, ExpectedVersion, StreamAppend};
use scaidrive_domain::id::{LinkId, ShareId, TenantId, UserId};
use scaidrive_domain::link::{LinkEvent, LinkOptions, LinkResource, LinkType};
use scaidrive_domain::{Actor, DomainEvent, EventMetadata, NewEvent};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{spawn_with, Backend, TestApp};

/// Everything the server process logs, from the start of the test.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "trace,sqlx=info,hyper=info,hyper_util=info,reqwest=info,h2=info,tower=info,rustls=info",
            ))
            .with_writer(move || LogSink(sink.clone()))
            .with_ansi(false)
            .finish();
        // Another test in this process may have installed one first; then
        // this test's lines go there and the scan below sees fewer of them.
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A local webhook receiver that keeps every body.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let b = b.clone();
            async move {
                b.lock().push(String::from_utf8_lossy(&body).into_owned());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), bodies)
}

async fn text(app: &TestApp, path: &str, t: &str) -> String {
    let resp = app
        .raw(Method::GET, path)
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

/// The SSE tail read until it has sent `last` (bounded).
async fn sse_until(app: &TestApp, t: &str, last: &str) -> String {
    let resp = app
        .raw(Method::GET, "/events/stream")
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = |seen: &str| {
        seen.lines()
            .any(|l| l.strip_prefix("id:").is_some_and(|id| id.trim() == last))
    };
    while !sent(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the tail never sent {last}");
        match tokio::time::timeout(left, body.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the tail ended early: {other:?}"),
        }
    }
    seen
}

/// Whether `needle` occurs in `hay` as a whole word (a six-digit code could
/// otherwise match inside a digest by chance).
fn has_word(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[track_caller]
fn assert_clean(channel: &str, output: &str, secrets: &[(&str, String)]) {
    assert!(!output.is_empty(), "{channel} said nothing");
    for (what, s) in secrets {
        assert!(
            !has_word(output, s),
            "{channel} leaks the {what} ({s}):\n{output}"
        );
    }
    assert!(
        !output.contains("$argon2"),
        "{channel} leaks a password hash"
    );
}

async fn me(app: &TestApp, t: &str) -> Value {
    app.get("/users/me", t).await.body
}

async fn share_with_file(app: &TestApp, t: &str) -> (String, String) {
    let share = crate::drive::new_share(app, t, "Secrets").await;
    let f = crate::drive::upload(app, t, &share, None, "plan.txt", b"classified".to_vec()).await;
    assert_eq!(f.status, 201, "{}", f.body);
    (share, f.body["id"].as_str().unwrap().to_owned())
}

async fn public_post(app: &TestApp, path: &str, body: Value) -> crate::helpers::Answer {
    let resp = app
        .raw(Method::POST, &format!("/public{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    TestApp::answer(resp).await
}

async fn no_secret_leaves_through_any_channel(backend: Backend) {
    let log = captured_log();
    let app = spawn_with(backend, |c| c.webhooks.poll = Duration::from_millis(20)).await;
    let t = app.token("acme", "alice", "");
    let (hook_url, bodies) = receiver().await;
    const HOOK_SECRET: &str = "whsec-never-leaves-4242";
    const PASSWORD: &str = "correct-horse-battery-77";
    let hook = app
        .post(
            "/admin/webhooks",
            &t,
            json!({"name": "SIEM", "url": hook_url, "secret": HOOK_SECRET}),
        )
        .await;
    assert_eq!(hook.status, 201, "{}", hook.body);
    let (share, file) = share_with_file(&app, &t).await;

    // A link with a password (and its short code), then regenerated.
    let link = app
        .post(
            "/external/links",
            &t,
            json!({"resource_type": "file", "resource_id": file, "share_id": share,
                   "link_type": "DOWNLOAD", "password": PASSWORD}),
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let link_id = link.body["id"].as_str().unwrap().to_owned();
    let first_token = link.body["token"].as_str().unwrap().to_owned();
    let first_code = link.body["short_code"].as_str().unwrap().to_owned();
    let regen = app
        .post(
            &format!("/external/links/{link_id}/regenerate"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(regen.status, 200, "{}", regen.body);
    let token = regen.body["token"].as_str().unwrap().to_owned();
    let code = regen.body["short_code"].as_str().unwrap().to_owned();
    let unlocked = public_post(
        &app,
        &format!("/links/{token}/unlock"),
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(unlocked.status, 200, "{}", unlocked.body);
    let access = unlocked.body["access_token"].as_str().unwrap().to_owned();
    let landing = app
        .raw(Method::GET, &format!("/public/s/{code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(landing.status(), 200);

    // The password hash, as the server itself reads it back.
    let stream = app.state.store.read_stream(&link_id, 0, 100).await.unwrap();
    let sealed = stream[0].data["options"]["password_hash"].as_str().unwrap();
    assert!(sealed.starts_with("sealed:v1:"), "{sealed}");
    let phc = app.state.secrets.open(sealed).unwrap();
    assert!(phc.starts_with("$argon2id$"));

    // A require_email link with a one-time code issued.
    let mail_link = app
        .post(
            "/external/links",
            &t,
            json!({"resource_type": "file", "resource_id": file, "share_id": share,
                   "link_type": "DOWNLOAD", "require_email": true,
                   "allowed_emails": ["bob@ext.test"]}),
        )
        .await;
    assert_eq!(mail_link.status, 201, "{}", mail_link.body);
    let mail_token = mail_link.body["token"].as_str().unwrap().to_owned();
    let mail_code = mail_link.body["short_code"].as_str().unwrap().to_owned();
    let sent = public_post(
        &app,
        &format!("/links/{mail_token}/email-code"),
        json!({"email": "bob@ext.test"}),
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let mail = scaidrive_projections::outbox::to_recipient(&app.state.db, "bob@ext.test")
        .await
        .unwrap();
    let one_time: String = mail[0]
        .body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    let mail_link_id: LinkId = mail_link.body["id"].as_str().unwrap().parse().unwrap();
    let plain_digest = scaidrive_domain::link::code_hash(mail_link_id, "bob@ext.test", &one_time);
    let verified = public_post(
        &app,
        &format!("/links/{mail_token}/unlock"),
        json!({"email": "bob@ext.test", "code": one_time}),
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.body);

    // An upload session (it holds no secret of its own; its events are scanned too).
    let session = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "big.bin", "file_size": 10}),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.body);

    let secrets: Vec<(&str, String)> = vec![
        ("first token", first_token),
        ("first short code", first_code),
        ("token", token.clone()),
        ("short code", code),
        ("password", PASSWORD.into()),
        ("password hash", phc),
        ("link access token", access),
        ("email link token", mail_token),
        ("email link short code", mail_code),
        ("one-time code", one_time),
        ("one-time code digest", plain_digest),
        ("webhook secret", HOOK_SECRET.into()),
    ];

    let events = text(&app, "/events?limit=1000", &t).await;
    assert_clean("/events", &events, &secrets);
    let page: Value = serde_json::from_str(&events).unwrap();
    let last = page["events"].as_array().unwrap().last().unwrap().clone();
    let last_position = page["next_after"].as_str().unwrap().to_owned();
    assert_clean(
        "/events/stream",
        &sse_until(&app, &t, &last_position).await,
        &secrets,
    );

    // The audit view and the webhook queue follow the log asynchronously.
    let last_id = last["event_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let audit = loop {
        let a = text(&app, "/audit/events?limit=1000", &t).await;
        if a.contains(&last_id) {
            break a;
        }
        assert!(Instant::now() < deadline, "the audit view never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_clean("/audit/events", &audit, &secrets);
    for format in ["ndjson", "csv"] {
        let out = text(&app, &format!("/audit/export?format={format}"), &t).await;
        assert_clean(&format!("/audit/export ({format})"), &out, &secrets);
    }
    let history = text(&app, &format!("/history/link/{link_id}"), &t).await;
    assert_clean("/history/link", &history, &secrets);
    let before_regen = stream[0].log.to_token();
    let history = text(
        &app,
        &format!("/history/link/{link_id}?at={before_regen}"),
        &t,
    )
    .await;
    assert_clean("/history/link?at", &history, &secrets);
    let delivered = loop {
        let got = bodies.lock().clone();
        if got.iter().any(|b| b.contains(&last_id)) {
            break got.join("\n");
        }
        assert!(Instant::now() < deadline, "the webhook never got {last_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(delivered.contains("link-created"), "{delivered}");
    assert_clean("webhook deliveries", &delivered, &secrets);

    // The mail sender logs each message it settles (the one-time code's
    // included): wait until it has done so at least once.
    let logged = loop {
        let logged = String::from_utf8_lossy(&log.lock()).into_owned();
        if logged.contains("notification mail") {
            break logged;
        }
        assert!(
            Instant::now() < deadline,
            "the log was not captured ({} bytes)",
            logged.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_clean("the server log", &logged, &secrets);

    // The owner still gets the token back, and the recipient still gets in.
    let owner = app.get(&format!("/external/links/{link_id}"), &t).await;
    assert_eq!(owner.body["token"], token.as_str());
}

both_backends!(no_secret_leaves_through_any_channel => no_secret_leaves_through_any_channel_sqlite, no_secret_leaves_through_any_channel_postgres);

/// A link as events written before sealing existed hold it: token, short
/// code and password hash in the clear.
async fn old_plaintext_link_events_still_replay_and_are_redacted(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let t = app.token("acme", "alice", "");
    let me = me(&app, &t).await;
    let (share, file) = share_with_file(&app, &t).await;
    let link_id = LinkId::from_uuid(uuid::Uuid::now_v7());
    let stream = link_id.to_string();
    let (token, code) = ("old-plaintext-token-0123456789abcdefghijklmn", "OLDCODE2");
    let phc = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2::Argon2::default()
            .hash_password(b"legacy-pass", &salt)
            .unwrap()
            .to_string()
    };
    let created = LinkEvent::LinkCreated {
        link_id,
        tenant_id: me["tenant_id"]
            .as_str()
            .unwrap()
            .parse::<TenantId>()
            .unwrap(),
        share_id: share.parse::<ShareId>().unwrap(),
        resource_type: LinkResource::File,
        resource_id: file,
        link_type: LinkType::Download,
        token: token.into(),
        short_code: code.into(),
        options: LinkOptions {
            password_hash: Some(phc.clone()),
            show_download_button: true,
            allow_preview: true,
            ..LinkOptions::default()
        },
        by: me["id"].as_str().unwrap().parse::<UserId>().unwrap(),
        at: Utc::now(),
    };
    let (event_type, data) = created.encode();
    assert_eq!(data["token"], token, "the old form holds the plaintext");
    app.state
        .store
        .append(AppendRequest {
            streams: vec![StreamAppend {
                stream_id: stream.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event_type,
                    schema_version: 1,
                    tenant_id: me["tenant_id"].as_str().map(str::to_owned),
                    data,
                    metadata: EventMetadata {
                        occurred_at: Utc::now(),
                        actor: Actor {
                            user_id: me["id"].as_str().map(str::to_owned),
                            ..Actor::default()
                        },
                        correlation_id: None,
                        causation_id: None,
                    },
                }],
            }],
            claims: vec![
                ClaimOp::Claim {
                    scope: "link-token".into(),
                    key: token.into(),
                    owner: stream.clone(),
                },
                ClaimOp::Claim {
                    scope: "link-code".into(),
                    key: code.into(),
                    owner: stream.clone(),
                },
            ],
            idempotency: None,
        })
        .await
        .unwrap();

    // Replay reads the plaintext: the owner sees the token, the recipient
    // unlocks with the password the old hash was made from.
    let owner = app.get(&format!("/external/links/{stream}"), &t).await;
    assert_eq!(owner.status, 200, "{}", owner.body);
    assert_eq!(owner.body["token"], token);
    assert_eq!(owner.body["password_required"], true);
    let wrong = public_post(
        &app,
        &format!("/links/{token}/unlock"),
        json!({"password": "nope"}),
    )
    .await;
    wrong.assert_detail(401);
    let ok = public_post(
        &app,
        &format!("/links/{token}/unlock"),
        json!({"password": "legacy-pass"}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Outward, the old event shows markers where the secrets were.
    let events = app
        .get(&format!("/events?stream_id={stream}&limit=100"), &t)
        .await;
    let old = &events.body["events"][0];
    assert_eq!(old["event_type"], "link-created");
    assert_eq!(old["data"]["token"], "[redacted]");
    assert_eq!(old["data"]["short_code"], "[redacted]");
    assert_eq!(old["data"]["options"]["password_hash"], "[redacted]");

    // A change carries the old hash into a new event, sealed; regenerating
    // releases the old plaintext claims.
    let patched = app
        .patch(
            &format!("/external/links/{stream}"),
            &t,
            json!({"custom_name": "renamed"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let regen = app
        .post(
            &format!("/external/links/{stream}/regenerate"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(regen.status, 200, "{}", regen.body);
    let stored = app.state.store.read_stream(&stream, 1, 100).await.unwrap();
    let all = serde_json::to_string(&stored.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
    assert!(
        !all.contains(token) && !all.contains(code) && !all.contains("$argon2"),
        "{all}"
    );
    let updated = stored
        .iter()
        .find(|e| e.event_type == "link-updated")
        .unwrap();
    assert!(updated.data["options"]["password_hash"]
        .as_str()
        .unwrap()
        .starts_with("sealed:v1:"));
    let gone = app
        .raw(Method::GET, &format!("/public/links/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let new_token = regen.body["token"].as_str().unwrap();
    let ok = public_post(
        &app,
        &format!("/links/{new_token}/unlock"),
        json!({"password": "legacy-pass"}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // The hash chain is over the stored events, old and new alike.
    let verify = app.get("/audit/verify", &t).await;
    assert_eq!(verify.status, 200, "{}", verify.body);
    assert_eq!(verify.body["ok"], true, "{}", verify.body);
}

both_backends!(old_plaintext_link_events_still_replay_and_are_redacted => old_plaintext_link_events_still_replay_and_are_redacted_sqlite, old_plaintext_link_events_still_replay_and_are_redacted_postgres);
