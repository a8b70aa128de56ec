//! Notification mail: through a real SMTP server (`scripts/test` starts an
//! aiosmtpd sink that stores each message as a file), into `.eml` files
//! without one, retried and dead-lettered when the relay is down, and never
//! sent twice across a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use scaidrive::app::Application;
use scaidrive::config::Config;
use scaidrive::http::AppState;
use scaidrive_projections::outbox;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::helpers::{spawn_with, Backend, ScratchDatabase, TestApp};

/// The tests that need the SMTP sink, on SQLite and PostgreSQL.
macro_rules! with_smtp {
    ($body:ident => $sqlite:ident, $pg:ident) => {
        #[tokio::test]
        #[ignore = "needs an SMTP server (scripts/test starts one)"]
        async fn $sqlite() {
            $body(Backend::Sqlite).await
        }

        #[tokio::test]
        #[ignore = "needs an SMTP server (scripts/test starts one)"]
        async fn $pg() {
            $body(Backend::Postgres).await
        }
    };
}

/// The sink's port and directory.
fn sink() -> (u16, PathBuf) {
    let port = std::env::var("SCAIDRIVE_TEST_SMTP_PORT")
        .expect("SCAIDRIVE_TEST_SMTP_PORT (scripts/test sets it)")
        .parse()
        .expect("a port");
    let dir = std::env::var("SCAIDRIVE_TEST_SMTP_DIR").expect("SCAIDRIVE_TEST_SMTP_DIR");
    (port, PathBuf::from(dir))
}

/// An address no other test uses, so tests can share the sink.
fn unique(local: &str) -> String {
    format!("{local}-{}@ext.test", uuid::Uuid::now_v7().simple())
}

/// Quick retries, for tests.
fn fast(c: &mut Config) {
    c.mail.poll = Duration::from_millis(20);
    c.mail.retry_base = Duration::from_millis(20);
    c.mail.max_attempts = 3;
}

fn via_sink(c: &mut Config) {
    fast(c);
    c.smtp_url = Some(format!("smtp://127.0.0.1:{}", sink().0));
    c.mail_from = "ScaiDrive <drive@acme.test>".into();
    c.public_url = Some("https://drive.acme.test".into());
}

/// Every message in `dir` addressed to `to` (sink files or `.eml` files).
fn received(dir: &Path, to: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, String)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "eml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|s| (p, s)))
        .filter(|(_, s)| s.contains(to))
        .collect();
    out.sort();
    out.into_iter().map(|(_, s)| s).collect()
}

/// Waits for `n` messages to `to` in `dir`.
async fn wait_mail(dir: &Path, to: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = received(dir, to);
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "no mail to {to} in {dir:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The message's text with quoted-printable soft breaks undone.
fn unfolded(mail: &str) -> String {
    mail.replace("=\r\n", "").replace("=\n", "")
}

/// The six-digit code after "code is " in a mail.
fn code_in(mail: &str) -> String {
    let text = unfolded(mail);
    let at = text.find("code is ").expect("a code in the mail") + "code is ".len();
    let code: String = text[at..].chars().take(6).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{code}");
    code
}

/// A share with one file; returns (owner token, share id, file id).
async fn share_with_file(app: &TestApp) -> (String, String, String) {
    let t = app.token("acme", "alice", "");
    let share = crate::drive::new_share(app, &t, "Team").await;
    let f = crate::drive::upload(app, &t, &share, None, "report.txt", b"hello mail".to_vec()).await;
    assert_eq!(f.status, 201, "{}", f.body);
    let file = f.body["id"].as_str().unwrap().to_owned();
    (t, share, file)
}

async fn public_json(app: &TestApp, path: &str, body: Value) -> crate::helpers::Answer {
    let req = app.raw(Method::POST, &format!("/public{path}")).json(&body);
    TestApp::answer(req.send().await.unwrap()).await
}

/// A require_email link for `email`; answers its token.
async fn email_link(app: &TestApp, email: &str) -> String {
    let (t, share, file) = share_with_file(app).await;
    let l = app
        .post(
            "/external/links",
            &t,
            json!({"resource_type": "file", "resource_id": file, "share_id": share,
                   "link_type": "DOWNLOAD", "require_email": true, "allowed_emails": [email]}),
        )
        .await;
    assert_eq!(l.status, 201, "{}", l.body);
    l.body["token"].as_str().unwrap().to_owned()
}

/// Asks for a code, reads it from the mail in `dir`, and unlocks with it.
async fn unlock_with_mailed_code(app: &TestApp, dir: &Path, token: &str, email: &str) -> String {
    let sent = public_json(
        app,
        &format!("/links/{token}/email-code"),
        json!({"email": email}),
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let mail = wait_mail(dir, email, 1).await.remove(0);
    let code = code_in(&mail);
    let u = public_json(
        app,
        &format!("/links/{token}/unlock"),
        json!({"email": email, "code": code}),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert!(u.body["access_token"]
        .as_str()
        .is_some_and(|a| !a.is_empty()));
    mail
}

async fn require_email_link_opens_with_the_mailed_code(backend: Backend) {
    let app = spawn_with(backend, via_sink).await;
    let email = unique("bob");
    let token = email_link(&app, &email).await;
    let mail = unlock_with_mailed_code(&app, &sink().1, &token, &email).await;
    assert!(mail.contains("From: ScaiDrive <drive@acme.test>"), "{mail}");
    assert!(mail.contains("multipart/alternative"), "{mail}");
    assert!(mail.contains("text/html"), "{mail}");
    let text = unfolded(&mail);
    assert!(
        text.contains(&format!(
            "https://drive.acme.test/api/v1/public/links/{token}"
        )),
        "{mail}"
    );
    let row = &outbox::to_recipient(&app.state.db, &email).await.unwrap()[0];
    let id = scaidrive::mail::message_id(&row.id, "acme.test");
    assert!(mail.contains(&format!("Message-ID: {id}")), "{mail}");
}
with_smtp!(require_email_link_opens_with_the_mailed_code
    => smtp_a_require_email_link_opens_with_the_code_from_the_mail,
       smtp_a_require_email_link_opens_with_the_code_from_the_mail_postgres);

async fn invitation_mail_arrives(backend: Backend) {
    let app = spawn_with(backend, via_sink).await;
    let (t, share, _) = share_with_file(&app).await;
    let email = unique("bea");
    let inv = app
        .post(
            &format!("/shares/{share}/invitations"),
            &t,
            json!({"email": email, "role": "reader", "message": "<b>welcome</b>"}),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let mail = wait_mail(&sink().1, &email, 1).await.remove(0);
    let text = unfolded(&mail);
    assert!(text.contains("Subject: Invitation to 'Team'"), "{mail}");
    assert!(text.contains(inv.body["id"].as_str().unwrap()), "{mail}");
    assert!(
        text.contains("https://drive.acme.test/api/v1/users/me/invitations"),
        "{mail}"
    );
    // The invitation's message is escaped in the HTML part.
    assert!(text.contains("&lt;b&gt;welcome&lt;/b&gt;"), "{mail}");
}
with_smtp!(invitation_mail_arrives
    => smtp_an_invitation_mail_arrives,
       smtp_an_invitation_mail_arrives_postgres);

async fn without_smtp_messages_are_eml_files(backend: Backend) {
    let app = spawn_with(backend, fast).await;
    let dir = app.state.config.data_dir.join("mail");
    let email = unique("carl");
    let token = email_link(&app, &email).await;
    let mail = unlock_with_mailed_code(&app, &dir, &token, &email).await;
    assert!(mail.contains(&format!("To: {email}")), "{mail}");
    assert!(mail.contains("Subject: Your access code for"), "{mail}");
    // The file is written before the row is marked sent: wait for the mark.
    let row = &wait_status(&app.state, &email, "sent").await;
    let file = dir.join(scaidrive::mail::transport::file_name(&row.id));
    assert!(file.is_file(), "{file:?}");
    // Written whole, by rename: no temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
crate::both_backends!(without_smtp_messages_are_eml_files
    => without_smtp_each_message_is_a_readable_eml_file,
       without_smtp_each_message_is_a_readable_eml_file_postgres);

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn a_dead_relay_ends_in_a_dead_letter(backend: Backend) {
    let port = closed_port();
    let app = spawn_with(backend, |c| {
        fast(c);
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    let (t, share, _) = share_with_file(&app).await;
    let email = unique("dora");
    let inv = app
        .post(
            &format!("/shares/{share}/invitations"),
            &t,
            json!({"email": email, "role": "reader"}),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    let entry = loop {
        let r = app
            .get(
                "/audit/events?category=SECURITY&action=notification.dead_lettered",
                &t,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        if let Some(e) = r.body["events"].as_array().and_then(|a| a.first()) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no dead letter: {}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry["severity"], "warning", "{entry}");
    let row = &outbox::to_recipient(&app.state.db, &email).await.unwrap()[0];
    assert_eq!(row.status, "dead");
    assert_eq!(row.attempts, 3, "every attempt was made: {row:?}");
    assert!(row.last_error.is_some(), "{row:?}");
    // The log has the fact once, and nothing of the message itself.
    let events = app
        .get("/events?type=notification-dead-lettered&limit=100", &t)
        .await;
    assert_eq!(events.status, 200, "{}", events.body);
    let list = events.body["events"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", events.body);
    assert_eq!(list[0]["data"]["recipient"], email.as_str());
    assert_eq!(list[0]["data"]["kind"], "invitation");
    assert_eq!(list[0]["data"]["attempts"], 3);
    assert!(!events.body.to_string().contains("You have been invited"));
}
crate::both_backends!(a_dead_relay_ends_in_a_dead_letter
    => a_failing_relay_is_retried_then_dead_lettered_with_a_security_entry,
       a_failing_relay_is_retried_then_dead_lettered_with_a_security_entry_postgres);

/// A server on a data directory and database that outlive it.
struct Server {
    state: AppState,
    stop: oneshot::Sender<()>,
    run: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Builds the application; `before_run` sees its state before any
    /// worker sends mail.
    async fn start(config: Config, before_run: impl AsyncFnOnce(&AppState)) -> Server {
        let app = Application::build(config).await.expect("build app");
        let state = app.state();
        before_run(&state).await;
        let (stop, rx) = oneshot::channel::<()>();
        let run = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Server { state, stop, run }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.run.await.expect("join").expect("run");
    }
}

async fn queue(state: &AppState, id: &str, to: &str) {
    let mut tx = state.db.begin().await.unwrap();
    outbox::enqueue(
        &mut tx,
        &outbox::Message {
            id: id.to_owned(),
            tenant_id: None,
            kind: "quota-warning",
            recipient: to,
            subject: "Tenant quota 70% used",
            body: "The tenant quota has reached 70%.",
            link_path: Some("/api/v1/quotas/usage/tenant"),
            source_event_id: None,
            at: chrono::Utc::now(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn row(state: &AppState, to: &str) -> outbox::OutboxRow {
    outbox::to_recipient(&state.db, to).await.unwrap().remove(0)
}

async fn wait_status(state: &AppState, to: &str, status: &str) -> outbox::OutboxRow {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = row(state, to).await;
        if r.status == status {
            return r;
        }
        assert!(Instant::now() < deadline, "not {status}: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes the message look claimed by a sender that died mid-send an hour ago.
async fn abandon(state: &AppState, id: &str) {
    let mut tx = state.db.begin().await.unwrap();
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    scaidrive_projections::tx_execute!(
        &mut tx,
        "UPDATE notification_outbox SET status = 'sending', claimed_by = 'gone', claimed_at = $2, attempts = 1 WHERE id = $1",
        id.to_owned(),
        at
    )
    .unwrap();
    tx.commit().await.unwrap();
}

async fn restart_sends_nothing_twice(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().to_path_buf());
    via_sink(&mut config);
    let _database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = ScratchDatabase::create().await;
            config.database_url = db.url.clone();
            Some(db)
        }
    };
    let (sent, interrupted) = (unique("erin"), unique("fred"));
    let first = Server::start(config.clone(), async |s: &AppState| {
        queue(s, "m1", &sent).await;
    })
    .await;
    wait_mail(&sink().1, &sent, 1).await;
    wait_status(&first.state, &sent, "sent").await;
    first.stop().await;

    // A second message's sender died between sending and marking it.
    let second = Server::start(config, async |s: &AppState| {
        queue(s, "m2", &interrupted).await;
        abandon(s, "m2").await;
    })
    .await;
    let dead = wait_status(&second.state, &interrupted, "dead").await;
    assert!(
        dead.last_error
            .as_deref()
            .is_some_and(|e| e.contains(&scaidrive::mail::message_id("m2", "acme.test"))),
        "{dead:?}"
    );
    // A message queued now goes out: the restarted sender works, and the
    // earlier messages were not sent again meanwhile.
    let later = unique("gina");
    queue(&second.state, "m3", &later).await;
    wait_mail(&sink().1, &later, 1).await;
    assert_eq!(received(&sink().1, &sent).len(), 1, "m1 was sent once");
    assert!(
        received(&sink().1, &interrupted).is_empty(),
        "m2 was not resent"
    );
    assert_eq!(row(&second.state, &sent).await.attempts, 1);
    second.stop().await;
}
with_smtp!(restart_sends_nothing_twice
    => smtp_a_restart_sends_no_message_twice,
       smtp_a_restart_sends_no_message_twice_postgres);

async fn interrupted_files_are_recognised(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().to_path_buf());
    fast(&mut config);
    let _database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let db = ScratchDatabase::create().await;
            config.database_url = db.url.clone();
            Some(db)
        }
    };
    let mail_dir = dir.path().join("mail");
    let (written, unwritten) = (unique("hank"), unique("ida"));
    let server = Server::start(config, async |s: &AppState| {
        // "w" was written before the crash, "u" was not.
        queue(s, "w", &written).await;
        queue(s, "u", &unwritten).await;
        abandon(s, "w").await;
        abandon(s, "u").await;
        std::fs::create_dir_all(&mail_dir).unwrap();
        std::fs::write(
            mail_dir.join(scaidrive::mail::transport::file_name("w")),
            format!("To: {written}\r\n\r\nfirst copy\r\n"),
        )
        .unwrap();
    })
    .await;
    wait_status(&server.state, &written, "sent").await;
    wait_status(&server.state, &unwritten, "sent").await;
    let w = received(&mail_dir, &written);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("first copy"),
        "the written file stays as it was"
    );
    assert_eq!(received(&mail_dir, &unwritten).len(), 1);
    server.stop().await;
}
crate::both_backends!(interrupted_files_are_recognised
    => an_interrupted_eml_write_is_recognised_after_a_restart,
       an_interrupted_eml_write_is_recognised_after_a_restart_postgres);

async fn member_added_mail(backend: Backend) {
    let app = spawn_with(backend, fast).await;
    let (t, share, _) = share_with_file(&app).await;
    // Bob signs in once, so the directory knows his address.
    let bob = app.token("acme", "bob", "");
    let me = app.get("/users/me", &bob).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let email = me.body["email"].as_str().expect("an email").to_owned();
    let added = app
        .post(
            &format!("/shares/{share}/members"),
            &t,
            json!({"principal_type": "user", "principal_id": me.body["id"], "role": "reader"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let dir = app.state.config.data_dir.join("mail");
    let mail = wait_mail(&dir, &email, 1).await.remove(0);
    let text = unfolded(&mail);
    assert!(text.contains("Subject: You were added to 'Team'"), "{mail}");
    assert!(text.contains(&format!("/api/v1/shares/{share}")), "{mail}");
    // The file is written before the row is marked sent: wait for the mark.
    let row = wait_status(&app.state, &email, "sent").await;
    assert_eq!(row.kind, "member-added");
}
crate::both_backends!(member_added_mail
    => a_user_added_to_a_share_gets_a_mail,
       a_user_added_to_a_share_gets_a_mail_postgres);
