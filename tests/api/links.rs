//! External links end to end: the owner's API, recipient access without an
//! account, the ordered refusals, exact caps under concurrency, the access
//! log, email codes through the outbox, trusted proxies and tenant policy.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn, spawn_on, spawn_with, Answer, Backend, TestApp};

struct Fixture {
    app: TestApp,
    t: String,
    share: String,
    file: String,
}

async fn share_with_file(app: TestApp) -> Fixture {
    let t = app.token("acme", "alice", "");
    let me = app.get("/users/me", &t).await;
    let s = app
        .post(
            "/shares",
            &t,
            json!({"name": "Team", "share_type": "project", "owner_id": me.body["id"]}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let share = s.body["id"].as_str().unwrap().to_owned();
    let f = upload_file(
        &app,
        &t,
        &share,
        None,
        "report.txt",
        b"hello links".to_vec(),
    )
    .await;
    assert_eq!(f.status, 201, "{}", f.body);
    let file = f.body["id"].as_str().unwrap().to_owned();
    Fixture {
        app,
        t,
        share,
        file,
    }
}

async fn upload_file(
    app: &TestApp,
    t: &str,
    share: &str,
    folder: Option<&str>,
    name: &str,
    data: Vec<u8>,
) -> Answer {
    crate::drive::upload(app, t, share, folder, name, data).await
}

async fn folder(app: &TestApp, t: &str, share: &str, parent: Option<&str>, name: &str) -> String {
    let a = app
        .post(
            "/folders",
            t,
            json!({"share_id": share, "parent_id": parent, "name": name}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

impl Fixture {
    async fn link(&self, body: Value) -> Answer {
        self.app.post("/external/links", &self.t, body).await
    }

    async fn file_link(&self, link_type: &str, extra: Value) -> Value {
        let mut body = json!({
            "resource_type": "file", "resource_id": self.file,
            "share_id": self.share, "link_type": link_type,
        });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        let a = self.link(body).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body
    }

    async fn public(&self, method: Method, path: &str, access: Option<&str>) -> Answer {
        let mut req = self.app.raw(method, &format!("/public{path}"));
        if let Some(a) = access {
            req = req.bearer_auth(a);
        }
        TestApp::answer(req.send().await.unwrap()).await
    }

    async fn public_json(&self, path: &str, body: Value) -> Answer {
        let req = self
            .app
            .raw(Method::POST, &format!("/public{path}"))
            .json(&body);
        TestApp::answer(req.send().await.unwrap()).await
    }

    async fn public_bytes(&self, path: &str, access: Option<&str>) -> (u16, Vec<u8>) {
        let mut req = self.app.raw(Method::GET, &format!("/public{path}"));
        if let Some(a) = access {
            req = req.bearer_auth(a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    async fn sessions(&self, id: &str) -> Vec<Value> {
        let s = self
            .app
            .get(&format!("/external/links/{id}/sessions?limit=100"), &self.t)
            .await;
        assert_eq!(s.status, 200, "{}", s.body);
        s.body["sessions"].as_array().unwrap().clone()
    }
}

fn tok(link: &Value) -> String {
    link["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn owners_create_list_patch_regenerate_and_revoke_links() {
    let f = share_with_file(spawn().await).await;
    let link = f
        .file_link(
            "DOWNLOAD",
            json!({"password": "s3cret!", "max_downloads": 3, "custom_name": "Q3",
                   "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"], "expires_in_days": 7}),
        )
        .await;
    let id = link["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("lnk_"));
    let token = tok(&link);
    assert!(token.len() >= 43, "128+ bits: {token}");
    let code = link["short_code"].as_str().unwrap();
    assert_eq!(code.len(), 8);
    assert!(!code.contains(['0', 'O', 'o', '1', 'I', 'l']), "{code}");
    assert!(link["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/public/links/{token}")));
    assert!(link["short_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/public/s/{code}")));
    assert_eq!(link["status"], "active");
    assert_eq!(link["password_required"], true);
    assert_eq!(link["allowed_ips"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    assert_eq!(link["download_count"], 0);
    let text = link.to_string();
    assert!(
        !text.contains("s3cret") && !text.contains("argon2"),
        "{text}"
    );

    let got = f.app.get(&format!("/external/links/{id}"), &f.t).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["token"], link["token"]);
    let list = f
        .app
        .get(
            &format!("/external/links?share_id={}&status=active", f.share),
            &f.t,
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["links"][0]["id"], id.as_str());
    assert!(!list.body.to_string().contains("argon2"));
    let none = f.app.get("/external/links?status=revoked", &f.t).await;
    assert_eq!(none.body["total"], 0);
    assert_eq!(
        f.app.get("/external/links?status=nope", &f.t).await.status,
        400
    );

    // Resource and type are fixed; other fields change.
    let bad = f
        .app
        .patch(
            &format!("/external/links/{id}"),
            &f.t,
            json!({"link_type": "VIEW"}),
        )
        .await;
    bad.assert_422();
    let p = f
        .app
        .patch(
            &format!("/external/links/{id}"),
            &f.t,
            json!({"custom_name": "Q4", "password": null, "allowed_ips": [], "max_downloads": null}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["custom_name"], "Q4");
    assert_eq!(p.body["password_required"], false);
    assert_eq!(p.body["max_downloads"], Value::Null);
    assert_eq!(
        f.public(Method::GET, &format!("/links/{token}/content"), None)
            .await
            .status,
        200
    );

    // Disabled → 410 until enabled again.
    let d = f
        .app
        .patch(
            &format!("/external/links/{id}"),
            &f.t,
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(d.body["status"], "disabled");
    f.public(Method::GET, &format!("/links/{token}"), None)
        .await
        .assert_detail(410);
    f.app
        .patch(
            &format!("/external/links/{id}"),
            &f.t,
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(
        f.public(Method::GET, &format!("/links/{token}"), None)
            .await
            .status,
        200
    );

    // Regenerate: the old token and code stop working at once.
    let r = f
        .app
        .post(&format!("/external/links/{id}/regenerate"), &f.t, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = tok(&r.body);
    assert_ne!(fresh, token);
    assert_eq!(r.body["custom_name"], "Q4", "same options");
    assert_eq!(
        f.public(Method::GET, &format!("/links/{token}"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        f.public(Method::GET, &format!("/s/{code}"), None)
            .await
            .status,
        404
    );
    let by_code = f
        .public(
            Method::GET,
            &format!("/s/{}", r.body["short_code"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(by_code.status, 200, "{}", by_code.body);
    assert_eq!(by_code.body["token"], fresh.as_str());

    // Revoke is permanent.
    let del = f.app.delete(&format!("/external/links/{id}"), &f.t).await;
    assert_eq!(del.status, 204);
    f.public(Method::GET, &format!("/links/{fresh}/content"), None)
        .await
        .assert_detail(410);
    f.app
        .patch(
            &format!("/external/links/{id}"),
            &f.t,
            json!({"status": "active"}),
        )
        .await
        .assert_detail(410);
    assert_eq!(
        f.app
            .delete(&format!("/external/links/{id}"), &f.t)
            .await
            .status,
        410
    );
    let revoked = f.app.get("/external/links?status=revoked", &f.t).await;
    assert_eq!(revoked.body["total"], 1);

    let now = f.app.get(&format!("/history/link/{id}"), &f.t).await;
    assert_eq!(now.status, 200, "{}", now.body);
    assert_eq!(now.body["status"], "revoked");
}

#[tokio::test]
async fn link_history_shows_the_state_at_a_moment() {
    let f = share_with_file(spawn().await).await;
    let link = f.file_link("VIEW", json!({})).await;
    let id = link["id"].as_str().unwrap();
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    f.app.delete(&format!("/external/links/{id}"), &f.t).await;
    let then = f
        .app
        .get(&format!("/history/link/{id}?at={}", urlencode(&at)), &f.t)
        .await;
    assert_eq!(then.status, 200, "{}", then.body);
    assert_eq!(then.body["status"], "active");
    let now = f.app.get(&format!("/history/link/{id}"), &f.t).await;
    assert_eq!(now.body["status"], "revoked");
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn create_checks_body_resource_and_permission() {
    let f = share_with_file(spawn().await).await;
    let base = json!({"resource_type": "file", "resource_id": f.file, "share_id": f.share});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let e = f.link(json!({})).await;
    assert_eq!(e.assert_422().len(), 4, "{}", e.body);
    f.link(with(json!({"link_type": "SOMETIMES"})))
        .await
        .assert_422();
    let e = f
        .link(with(
            json!({"link_type": "VIEW", "allowed_ips": ["10.0.0.0/8", "999.1.1.1"]}),
        ))
        .await;
    assert_eq!(e.assert_422()[0]["loc"], json!(["body", "allowed_ips", 1]));
    let e = f
        .link(json!({"resource_type": "share", "resource_id": f.share, "share_id": f.share, "link_type": "UPLOAD"}))
        .await;
    assert_eq!(
        e.assert_422()[0]["loc"],
        json!(["body", "upload_folder_id"])
    );
    f.link(with(
        json!({"link_type": "VIEW", "expires_at": "2001-01-01T00:00:00Z"}),
    ))
    .await
    .assert_422();
    f.link(with(json!({"link_type": "VIEW", "max_downloads": 0})))
        .await
        .assert_422();
    // Unknown resource, or one in another tenant: 404.
    let ghost = "fil_01J3KXQ0N6R8V2T4Y6W8Z0B2C4";
    let e = f
        .link(json!({"resource_type": "file", "resource_id": ghost, "share_id": f.share, "link_type": "VIEW"}))
        .await;
    e.assert_detail(404);
    let other = f.app.token("globex", "mallory", "");
    let e = f
        .app
        .post(
            "/external/links",
            &other,
            with(json!({"link_type": "VIEW"})),
        )
        .await;
    e.assert_detail(404);
    let link = f.file_link("VIEW", json!({})).await;
    let id = link["id"].as_str().unwrap();
    assert_eq!(
        f.app
            .get(&format!("/external/links/{id}"), &other)
            .await
            .status,
        404
    );
    assert_eq!(f.app.get("/external/links", &other).await.body["total"], 0);
    // Reading needs no write scope; creating does.
    let reader = f.app.token("acme", "alice", "files:read");
    assert_eq!(
        f.app
            .post(
                "/external/links",
                &reader,
                with(json!({"link_type": "VIEW"}))
            )
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn recipients_download_and_preview_and_every_attempt_is_logged() {
    let f = share_with_file(spawn().await).await;
    let dl = f
        .file_link("DOWNLOAD", json!({"custom_message": "enjoy"}))
        .await;
    let token = tok(&dl);
    let landing = f
        .public(Method::GET, &format!("/links/{token}"), None)
        .await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    assert_eq!(landing.body["name"], "report.txt");
    assert_eq!(landing.body["size"], 11);
    assert_eq!(landing.body["password_required"], false);
    assert_eq!(landing.body["custom_message"], "enjoy");
    assert!(landing.body.get("token").is_none());
    let (s, body) = f
        .public_bytes(&format!("/links/{token}/content"), None)
        .await;
    assert_eq!((s, body.as_slice()), (200, b"hello links".as_slice()));
    let resp = f
        .app
        .raw(Method::GET, &format!("/public/links/{token}/preview"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline"));
    assert_eq!(
        f.public(Method::GET, "/links/not-a-token", None)
            .await
            .status,
        404
    );

    // A VIEW link never serves a download.
    let view = f.file_link("VIEW", json!({"max_views": 1})).await;
    let vt = tok(&view);
    f.public(Method::GET, &format!("/links/{vt}/content"), None)
        .await
        .assert_detail(403);
    assert_eq!(
        f.public_bytes(&format!("/links/{vt}/preview"), None)
            .await
            .0,
        200
    );
    f.public(Method::GET, &format!("/links/{vt}/preview"), None)
        .await
        .assert_detail(429);

    let log = f.sessions(view["id"].as_str().unwrap()).await;
    let seen: Vec<(String, String, i64)> = log
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap().to_owned(),
                s["outcome"].as_str().unwrap().to_owned(),
                s["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("preview".into(), "cap-reached".into(), 429),
            ("preview".into(), "allowed".into(), 200),
            ("download".into(), "wrong-link-type".into(), 403),
        ],
        "newest first"
    );
    assert_eq!(log[0]["ip"], "127.0.0.1");
    let got = f
        .app
        .get(
            &format!("/external/links/{}", view["id"].as_str().unwrap()),
            &f.t,
        )
        .await;
    assert_eq!(got.body["view_count"], 1);
}

#[tokio::test]
async fn passwords_unlock_into_a_short_lived_token_and_failures_are_throttled() {
    let f = share_with_file(spawn().await).await;
    let link = f
        .file_link("DOWNLOAD", json!({"password": "open sesame"}))
        .await;
    let token = tok(&link);
    let landing = f
        .public(Method::GET, &format!("/links/{token}"), None)
        .await;
    assert_eq!(landing.body["password_required"], true);
    f.public(Method::GET, &format!("/links/{token}/content"), None)
        .await
        .assert_detail(401);
    f.public_json(&format!("/links/{token}/unlock"), json!({}))
        .await
        .assert_detail(401);
    f.public_json(
        &format!("/links/{token}/unlock"),
        json!({"password": "nope"}),
    )
    .await
    .assert_detail(401);
    let u = f
        .public_json(
            &format!("/links/{token}/unlock"),
            json!({"password": "open sesame"}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["expires_in"], 900);
    let access = u.body["access_token"].as_str().unwrap().to_owned();
    let (s, body) = f
        .public_bytes(&format!("/links/{token}/content"), Some(&access))
        .await;
    assert_eq!((s, body.as_slice()), (200, b"hello links".as_slice()));
    let (s, _) = f
        .public_bytes(
            &format!("/links/{token}/content?access_token={access}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "plain browser links carry the token in the query");
    // A token for one link opens no other.
    let other = tok(&f.file_link("DOWNLOAD", json!({"password": "x"})).await);
    f.public(
        Method::GET,
        &format!("/links/{other}/content"),
        Some(&access),
    )
    .await
    .assert_detail(401);
    f.public(
        Method::GET,
        &format!("/links/{token}/content"),
        Some("forged.token"),
    )
    .await
    .assert_detail(401);

    // Ten failed unlocks from one address: the next is 429, even with the
    // right password; the log holds every attempt.
    let locked = tok(&f.file_link("DOWNLOAD", json!({"password": "right"})).await);
    for _ in 0..10 {
        f.public_json(
            &format!("/links/{locked}/unlock"),
            json!({"password": "wrong"}),
        )
        .await
        .assert_detail(401);
    }
    let t = f
        .public_json(
            &format!("/links/{locked}/unlock"),
            json!({"password": "right"}),
        )
        .await;
    t.assert_detail(429);
    let id = f.app.get("/external/links?limit=100", &f.t).await.body["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["token"] == locked.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = f.sessions(&id).await;
    assert_eq!(log.len(), 11);
    assert_eq!(log[0]["outcome"], "throttled");
    assert_eq!(
        log.iter()
            .filter(|s| s["outcome"] == "password-wrong")
            .count(),
        10
    );
}

#[tokio::test]
async fn email_codes_arrive_through_the_outbox_and_verify_once() {
    let f = share_with_file(spawn().await).await;
    let link = f
        .file_link(
            "DOWNLOAD",
            json!({"require_email": true, "allowed_emails": ["Bob@Ext.test"]}),
        )
        .await;
    assert_eq!(link["allowed_emails"], json!(["bob@ext.test"]));
    let token = tok(&link);
    f.public(Method::GET, &format!("/links/{token}/content"), None)
        .await
        .assert_detail(403);
    f.public_json(
        &format!("/links/{token}/email-code"),
        json!({"email": "eve@evil.test"}),
    )
    .await
    .assert_detail(403);
    f.public_json(
        &format!("/links/{token}/email-code"),
        json!({"email": "nope"}),
    )
    .await
    .assert_422();
    let sent = f
        .public_json(
            &format!("/links/{token}/email-code"),
            json!({"email": "bob@ext.test"}),
        )
        .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let mail = scaidrive_projections::outbox::to_recipient(&f.app.state.db, "bob@ext.test")
        .await
        .unwrap();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].kind, "link-email-code");
    let code: String = mail[0]
        .body
        .split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6
                && w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit())
        })
        .unwrap()
        .trim_end_matches('.')
        .to_owned();
    // The code is in no event: only its hash is.
    let events = f.app.get("/events?limit=1000", &f.t).await;
    assert!(!events.body.to_string().contains(&format!("\"{code}\"")));

    f.public_json(
        &format!("/links/{token}/unlock"),
        json!({"email": "bob@ext.test", "code": "000000x"}),
    )
    .await
    .assert_detail(403);
    f.public_json(
        &format!("/links/{token}/unlock"),
        json!({"email": "eve@evil.test", "code": code}),
    )
    .await
    .assert_detail(403);
    let u = f
        .public_json(
            &format!("/links/{token}/unlock"),
            json!({"email": "BOB@ext.test", "code": code}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let access = u.body["access_token"].as_str().unwrap();
    assert_eq!(
        f.public_bytes(&format!("/links/{token}/content"), Some(access))
            .await
            .0,
        200
    );
    f.public_json(
        &format!("/links/{token}/unlock"),
        json!({"email": "bob@ext.test", "code": code}),
    )
    .await
    .assert_detail(403);
    let log = f.sessions(link["id"].as_str().unwrap()).await;
    assert_eq!(log[1]["email"], "bob@ext.test");
}

#[tokio::test]
async fn allowed_ips_use_the_socket_unless_a_trusted_proxy_forwards() {
    let app = spawn_with(Backend::Sqlite, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let f = share_with_file(app).await;
    let link = f
        .file_link(
            "DOWNLOAD",
            json!({"allowed_ips": ["203.0.113.0/24", "2001:db8::/32"]}),
        )
        .await;
    let token = tok(&link);
    let get = |xff: Option<&'static str>| {
        let mut req = f
            .app
            .raw(Method::GET, &format!("/public/links/{token}/content"));
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(None).await, 403, "127.0.0.1 is not allowed");
    assert_eq!(get(Some("203.0.113.77")).await, 200);
    assert_eq!(get(Some("2001:db8::42")).await, 200);
    assert_eq!(get(Some("198.51.100.1")).await, 403);
    assert_eq!(
        get(Some("203.0.113.77, 198.51.100.1")).await,
        403,
        "the hop the proxy saw counts, not what the client claimed"
    );

    // Without trusted proxies the header is ignored.
    let g = share_with_file(spawn().await).await;
    let link = g
        .file_link("DOWNLOAD", json!({"allowed_ips": ["203.0.113.0/24"]}))
        .await;
    let resp = g
        .app
        .raw(
            Method::GET,
            &format!("/public/links/{}/content", tok(&link)),
        )
        .header("x-forwarded-for", "203.0.113.77")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

async fn racing_downloads_hit_the_cap_exactly(backend: Backend) {
    let f = share_with_file(spawn_on(backend).await).await;
    let link = f.file_link("DOWNLOAD", json!({"max_downloads": 10})).await;
    let token = tok(&link);
    let url = format!("{}/public/links/{token}/content", f.app.base);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = f.app.client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client.get(&url).send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            (status, body)
        }));
    }
    let mut ok = 0;
    let mut capped = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => {
                assert_eq!(body.as_ref(), b"hello links");
                ok += 1;
            }
            429 => capped += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, capped), (10, 40));
    let id = link["id"].as_str().unwrap();
    let got = f.app.get(&format!("/external/links/{id}"), &f.t).await;
    assert_eq!(got.body["download_count"], 10);
    let log = f
        .app
        .get(&format!("/external/links/{id}/sessions?limit=100"), &f.t)
        .await;
    assert_eq!(log.body["total"], 50);
    let allowed = f
        .app
        .get(
            &format!("/external/links/{id}/sessions?outcome=allowed"),
            &f.t,
        )
        .await;
    assert_eq!(allowed.body["total"], 10);
    let listed = f
        .app
        .get(
            &format!("/external/links?share_id={}&status=active", f.share),
            &f.t,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["total"], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = f.app.get("/external/links?status=active", &f.t).await;
        if l.body["links"][0]["download_count"] == 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "read model never counted 10: {}",
            l.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn fifty_racing_downloads_of_a_ten_download_link_serve_exactly_ten() {
    racing_downloads_hit_the_cap_exactly(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs postgres (scripts/test)"]
async fn fifty_racing_downloads_of_a_ten_download_link_serve_exactly_ten_on_postgres() {
    racing_downloads_hit_the_cap_exactly(Backend::Postgres).await;
}

async fn drop_file(f: &Fixture, token: &str, name: &str, data: Vec<u8>) -> Answer {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(data).file_name(name.to_owned()),
    );
    let resp = f
        .app
        .raw(Method::POST, &format!("/public/links/{token}/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    TestApp::answer(resp).await
}

#[tokio::test]
async fn upload_links_take_files_within_limits_and_rename_on_conflict() {
    let f = share_with_file(spawn().await).await;
    let inbox = folder(&f.app, &f.t, &f.share, None, "Inbox").await;
    let link = f
        .link(json!({
            "resource_type": "share", "resource_id": f.share, "share_id": f.share,
            "link_type": "UPLOAD", "upload_folder_id": inbox,
            "max_file_size": 100, "allowed_extensions": [".TXT", "csv"],
        }))
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    assert_eq!(link.body["allowed_extensions"], json!(["txt", "csv"]));
    let token = tok(&link.body);
    let a = drop_file(&f, &token, "notes.txt", b"one".to_vec()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["name"], "notes.txt");
    let b = drop_file(&f, &token, "notes.txt", b"two".to_vec()).await;
    assert_eq!(b.status, 201, "{}", b.body);
    assert_eq!(b.body["name"], "notes (1).txt");
    assert_eq!(b.body["renamed"], true);
    drop_file(&f, &token, "virus.exe", b"MZ".to_vec())
        .await
        .assert_422();
    let big = drop_file(&f, &token, "big.csv", vec![b'x'; 101]).await;
    assert_eq!(big.status, 413, "{}", big.body);
    f.public(Method::GET, &format!("/links/{token}/content"), None)
        .await
        .assert_detail(403);
    let listing = f.app.get(&format!("/folders/{inbox}/children"), &f.t).await;
    let names: Vec<&str> = listing.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["notes (1).txt", "notes.txt"]);
    // The upload folder must be given, and inside the linked folder.
    let elsewhere = folder(&f.app, &f.t, &f.share, None, "Elsewhere").await;
    let e = f
        .link(json!({
            "resource_type": "folder", "resource_id": inbox, "share_id": f.share,
            "link_type": "UPLOAD", "upload_folder_id": elsewhere,
        }))
        .await;
    e.assert_422();
}

#[tokio::test]
async fn folder_links_list_and_serve_only_what_is_inside() {
    let f = share_with_file(spawn().await).await;
    let docs = folder(&f.app, &f.t, &f.share, None, "Docs").await;
    let sub = folder(&f.app, &f.t, &f.share, Some(&docs), "Sub").await;
    let inside = upload_file(
        &f.app,
        &f.t,
        &f.share,
        Some(&sub),
        "in.txt",
        b"inside".to_vec(),
    )
    .await;
    let inside = inside.body["id"].as_str().unwrap().to_owned();
    let link = f
        .link(json!({"resource_type": "folder", "resource_id": docs, "share_id": f.share, "link_type": "DOWNLOAD"}))
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let token = tok(&link.body);
    let top = f
        .public(Method::GET, &format!("/links/{token}/children"), None)
        .await;
    assert_eq!(top.status, 200, "{}", top.body);
    assert_eq!(top.body["total"], 1);
    assert_eq!(top.body["items"][0]["name"], "Sub");
    assert_eq!(
        top.body["items"][0]["path"], "/Sub",
        "paths are relative to the link"
    );
    let below = f
        .public(
            Method::GET,
            &format!("/links/{token}/children?folder_id={sub}"),
            None,
        )
        .await;
    assert_eq!(below.body["items"][0]["name"], "in.txt");
    let (s, body) = f
        .public_bytes(&format!("/links/{token}/content?file_id={inside}"), None)
        .await;
    assert_eq!((s, body.as_slice()), (200, b"inside".as_slice()));
    // The file at the share root is outside the linked folder.
    f.public(
        Method::GET,
        &format!("/links/{token}/content?file_id={}", f.file),
        None,
    )
    .await
    .assert_detail(404);
    f.public(Method::GET, &format!("/links/{token}/content"), None)
        .await
        .assert_detail(400);
    let outside = folder(&f.app, &f.t, &f.share, None, "Private").await;
    f.public(
        Method::GET,
        &format!("/links/{token}/children?folder_id={outside}"),
        None,
    )
    .await
    .assert_detail(404);
    // File links list nothing.
    let fl = tok(&f.file_link("DOWNLOAD", json!({})).await);
    f.public(Method::GET, &format!("/links/{fl}/children"), None)
        .await
        .assert_detail(403);
}

#[tokio::test]
async fn tenant_sharing_policy_is_enforced_at_create_and_patch() {
    let f = share_with_file(spawn().await).await;
    let link = f.file_link("DOWNLOAD", json!({})).await;
    let id = link["id"].as_str().unwrap().to_owned();
    let set = |sharing: Value| {
        let app = &f.app;
        let t = f.t.clone();
        async move {
            let a = app
                .patch(
                    "/admin/tenant",
                    &t,
                    json!({"settings": {"sharing": sharing}}),
                )
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
        }
    };
    set(json!({"require_password": true, "require_expiry": true, "max_expiry_days": 7})).await;
    let e = f
        .link(json!({"resource_type": "file", "resource_id": f.file, "share_id": f.share, "link_type": "VIEW", "expires_in_days": 3}))
        .await;
    assert_eq!(e.assert_422()[0]["loc"], json!(["body", "password"]));
    let e = f
        .link(json!({"resource_type": "file", "resource_id": f.file, "share_id": f.share, "link_type": "VIEW", "password": "pw"}))
        .await;
    assert_eq!(e.assert_422()[0]["loc"], json!(["body", "expires_at"]));
    let e = f
        .link(json!({"resource_type": "file", "resource_id": f.file, "share_id": f.share, "link_type": "VIEW", "password": "pw", "expires_in_days": 30}))
        .await;
    e.assert_422();
    f.file_link("VIEW", json!({"password": "pw", "expires_in_days": 7}))
        .await;
    // A patch of an old link must bring it in line with the policy.
    f.app
        .patch(
            &format!("/external/links/{id}"),
            &f.t,
            json!({"custom_name": "x"}),
        )
        .await
        .assert_422();

    set(
        json!({"require_password": false, "require_expiry": false, "max_expiry_days": null,
               "allowed_link_types": ["VIEW"], "max_downloads_ceiling": 5}),
    )
    .await;
    f.link(json!({"resource_type": "file", "resource_id": f.file, "share_id": f.share, "link_type": "DOWNLOAD"}))
        .await
        .assert_detail(403);
    let v = f.file_link("VIEW", json!({})).await;
    assert_eq!(
        v["max_downloads"], 5,
        "the ceiling applies when no cap is given"
    );
    f.link(json!({"resource_type": "file", "resource_id": f.file, "share_id": f.share, "link_type": "VIEW", "max_downloads": 6}))
        .await
        .assert_422();

    set(json!({"external_sharing_enabled": false})).await;
    f.link(json!({"resource_type": "file", "resource_id": f.file, "share_id": f.share, "link_type": "VIEW"}))
        .await
        .assert_detail(403);
}

#[tokio::test]
async fn expiry_is_decided_at_access_time() {
    let f = share_with_file(spawn().await).await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let link = f
        .file_link("DOWNLOAD", json!({"expires_at": soon.to_rfc3339()}))
        .await;
    let token = tok(&link);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_ok = false;
    loop {
        let a = f
            .public(Method::GET, &format!("/links/{token}"), None)
            .await;
        match a.status.as_u16() {
            200 => seen_ok = true,
            410 => break,
            other => panic!("unexpected {other}: {}", a.body),
        }
        assert!(Instant::now() < deadline, "link never expired");
        // Poll gently: every landing is an event on the link's stream.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_ok || chrono::Utc::now() >= soon);
    let got = f
        .app
        .get(
            &format!("/external/links/{}", link["id"].as_str().unwrap()),
            &f.t,
        )
        .await;
    assert_eq!(got.body["status"], "expired");
    let list = f.app.get("/external/links?status=expired", &f.t).await;
    assert_eq!(list.body["total"], 1);
}

#[tokio::test]
async fn owners_are_notified_of_downloads_when_they_ask() {
    let f = share_with_file(spawn().await).await;
    let link = f
        .file_link(
            "DOWNLOAD",
            json!({"notify_on_download": true, "notification_email": "owner@acme.test"}),
        )
        .await;
    let quiet = f.file_link("DOWNLOAD", json!({})).await;
    for l in [&link, &quiet] {
        let (s, _) = f
            .public_bytes(&format!("/links/{}/content", tok(l)), None)
            .await;
        assert_eq!(s, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mail = loop {
        let mail = scaidrive_projections::outbox::to_recipient(&f.app.state.db, "owner@acme.test")
            .await
            .unwrap();
        if !mail.is_empty() {
            break mail;
        }
        assert!(Instant::now() < deadline, "no notification queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(mail.len(), 1, "only the link that asked notifies");
    assert_eq!(mail[0].kind, "link-activity");
    assert!(mail[0].subject.contains(link["id"].as_str().unwrap()));
    assert!(!mail[0]
        .subject
        .contains(link["short_code"].as_str().unwrap()));
}
