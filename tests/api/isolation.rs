//! Tenant isolation: with every id of tenant A in hand, the most powerful
//! token of tenant B reaches nothing of A's on any endpoint (404, or an
//! answer about B's own data), and no answer ever carries A's ids.

use reqwest::Method;
use serde_json::{json, Value};

use crate::drive::{new_share, upload};
use crate::helpers::{spawn, TestApp};

/// Everything tenant A owns that has an id.
struct Acme {
    ids: Vec<String>,
    share: String,
    folder: String,
    file: String,
    version: String,
    upload: String,
    invitation: String,
    user: String,
    group: String,
    link: String,
    partner: String,
    webhook: String,
}

async fn acme(app: &TestApp) -> Acme {
    let t = app.token("acme", "root", "*");
    let user = app.get("/users/me", &t).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = app.get("/users/me", &t).await.body["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let share = new_share(app, &t, "Acme secrets").await;
    let f = app
        .post("/folders", &t, json!({"share_id": share, "name": "plans"}))
        .await;
    let folder = f.body["id"].as_str().unwrap().to_owned();
    let file = upload(
        app,
        &t,
        &share,
        Some(&folder),
        "plan.txt",
        b"acme plan".to_vec(),
    )
    .await;
    let version = file.body["version_id"].as_str().unwrap().to_owned();
    let file = file.body["id"].as_str().unwrap().to_owned();
    let u = app
        .post(
            "/uploads",
            &t,
            json!({"share_id": share, "file_name": "big.bin", "file_size": 10}),
        )
        .await;
    let upload = u.body["session_id"].as_str().unwrap().to_owned();
    let inv = app
        .post(
            &format!("/shares/{share}/invitations"),
            &t,
            json!({"email": "root@globex.test", "role": "reader"}),
        )
        .await;
    let invitation = inv.body["id"].as_str().unwrap().to_owned();
    let other = app.token("acme", "ann", "files:read");
    let ann = app.get("/users/me", &other).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = app
        .post(
            &format!("/shares/{share}/members"),
            &t,
            json!({"principal_type": "user", "principal_id": ann, "role": "reader"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let a = app
        .post(
            &format!("/permissions/acl/folder/{folder}"),
            &t,
            json!({"principal_type": "user", "principal_id": ann, "permissions": ["WRITE"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let g = app
        .post("/admin/groups", &t, json!({"name": "Acme staff"}))
        .await;
    assert_eq!(g.status, 201, "{}", g.body);
    let group = g.body["id"].as_str().unwrap().to_owned();
    let l = app
        .post(
            "/external/links",
            &t,
            json!({"resource_type": "file", "resource_id": file, "share_id": share, "link_type": "DOWNLOAD"}),
        )
        .await;
    assert_eq!(l.status, 201, "{}", l.body);
    let link = l.body["id"].as_str().unwrap().to_owned();
    let d = app
        .post(
            "/sync/devices",
            &t,
            json!({"device_id": "acme-laptop", "device_name": "Laptop", "platform": "linux", "client_version": "1"}),
        )
        .await;
    assert_eq!(d.status, 201, "{}", d.body);
    let w = app
        .post(
            "/admin/webhooks",
            &t,
            json!({"name": "siem", "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    assert_eq!(w.status, 201, "{}", w.body);
    let webhook = w.body["id"].as_str().unwrap().to_owned();
    let partner = app.get("/users/me", &t).await.body["partner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    Acme {
        ids: vec![
            tenant,
            user.clone(),
            share.clone(),
            folder.clone(),
            file.clone(),
            version.clone(),
            upload.clone(),
            invitation.clone(),
            ann,
            group.clone(),
            link.clone(),
            webhook.clone(),
            l.body["token"].as_str().unwrap().to_owned(),
        ],
        share,
        folder,
        file,
        version,
        upload,
        invitation,
        user,
        group,
        link,
        partner,
        webhook,
    }
}

#[tokio::test]
async fn another_tenants_token_reaches_nothing_on_any_endpoint() {
    let app = spawn().await;
    let a = acme(&app).await;
    // Tenant B's first user: a tenant admin with every scope.
    let b = app.mint(&scaidrive::auth::MintRequest {
        partner_id: Some("rival".into()),
        scopes: vec!["*".into()],
        ..scaidrive::auth::MintRequest::new("globex", "root")
    });
    assert_eq!(app.get("/users/me", &b).await.status, 200);
    let (s, d, f, u, i, v) = (
        &a.share,
        &a.folder,
        &a.file,
        &a.upload,
        &a.invitation,
        &a.version,
    );
    let user = &a.user;
    let id_routes: Vec<(Method, String, Value)> = vec![
        (
            Method::GET,
            format!("/admin/webhooks/{}", a.webhook),
            Value::Null,
        ),
        (
            Method::PATCH,
            format!("/admin/webhooks/{}", a.webhook),
            json!({"status": "paused"}),
        ),
        (
            Method::DELETE,
            format!("/admin/webhooks/{}", a.webhook),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/admin/webhooks/{}/deliveries", a.webhook),
            Value::Null,
        ),
        (Method::GET, format!("/quotas/shares/{s}"), Value::Null),
        (
            Method::PUT,
            format!("/quotas/shares/{s}"),
            json!({"limit_bytes": 1, "limit_type": "hard"}),
        ),
        (
            Method::GET,
            format!("/quotas/usage/shares/{s}"),
            Value::Null,
        ),
        (Method::GET, format!("/quotas/users/{user}"), Value::Null),
        (
            Method::PUT,
            format!("/quotas/users/{user}"),
            json!({"limit_bytes": 1, "limit_type": "hard"}),
        ),
        (Method::DELETE, format!("/quotas/users/{user}"), Value::Null),
        (
            Method::POST,
            format!("/quotas/users/{user}/exempt"),
            json!({"exempt": true, "reason": "x"}),
        ),
        (
            Method::GET,
            format!("/quotas/usage/users/{user}"),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/quotas/groups/{}", a.group),
            Value::Null,
        ),
        (
            Method::PUT,
            format!("/quotas/groups/{}", a.group),
            json!({"limit_bytes": 1, "limit_type": "hard"}),
        ),
        (Method::GET, format!("/shares/{s}"), Value::Null),
        (
            Method::PATCH,
            format!("/shares/{s}"),
            json!({"name": "pwned"}),
        ),
        (Method::DELETE, format!("/shares/{s}"), Value::Null),
        (Method::POST, format!("/shares/{s}/restore"), json!({})),
        (Method::GET, format!("/shares/{s}/children"), Value::Null),
        (Method::GET, format!("/shares/{s}/trash"), Value::Null),
        (Method::GET, format!("/shares/{s}/members"), Value::Null),
        (
            Method::POST,
            format!("/shares/{s}/members"),
            json!({"principal_type": "user", "principal_id": user, "role": "reader"}),
        ),
        (
            Method::GET,
            format!("/shares/{s}/members/{user}"),
            Value::Null,
        ),
        (
            Method::PATCH,
            format!("/shares/{s}/members/{user}"),
            json!({"role": "reader"}),
        ),
        (
            Method::DELETE,
            format!("/shares/{s}/members/{user}"),
            Value::Null,
        ),
        (Method::GET, format!("/shares/{s}/invitations"), Value::Null),
        (
            Method::POST,
            format!("/shares/{s}/invitations"),
            json!({"email": "x@globex.test", "role": "reader"}),
        ),
        (
            Method::DELETE,
            format!("/shares/{s}/invitations/{i}"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/users/me/invitations/{i}/accept"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/users/me/invitations/{i}/decline"),
            json!({}),
        ),
        (
            Method::POST,
            "/folders".into(),
            json!({"share_id": s, "name": "x"}),
        ),
        (
            Method::POST,
            "/folders".into(),
            json!({"share_id": s, "parent_id": d, "name": "x"}),
        ),
        (Method::GET, format!("/folders/{d}"), Value::Null),
        (Method::GET, format!("/folders/{d}/children"), Value::Null),
        (Method::PATCH, format!("/folders/{d}"), json!({"name": "y"})),
        (
            Method::POST,
            format!("/folders/{d}/move"),
            json!({"target_share_id": s}),
        ),
        (Method::DELETE, format!("/folders/{d}"), Value::Null),
        (
            Method::DELETE,
            format!("/folders/{d}?permanent=true"),
            Value::Null,
        ),
        (Method::GET, format!("/files/{f}"), Value::Null),
        (Method::GET, format!("/files/{f}/content"), Value::Null),
        (
            Method::PATCH,
            format!("/files/{f}"),
            json!({"name": "y.txt"}),
        ),
        (
            Method::POST,
            format!("/files/{f}/copy"),
            json!({"target_share_id": s}),
        ),
        (
            Method::POST,
            format!("/files/{f}/move"),
            json!({"target_folder_id": d}),
        ),
        (Method::GET, format!("/files/{f}/versions"), Value::Null),
        (
            Method::POST,
            format!("/files/{f}/versions/1/restore"),
            json!({}),
        ),
        (Method::DELETE, format!("/files/{f}"), Value::Null),
        (
            Method::DELETE,
            format!("/files/{f}?permanent=true"),
            Value::Null,
        ),
        (
            Method::POST,
            "/uploads".into(),
            json!({"share_id": s, "file_name": "z", "file_size": 1}),
        ),
        (Method::GET, format!("/uploads/{u}"), Value::Null),
        (Method::POST, format!("/uploads/{u}/complete"), json!({})),
        (Method::DELETE, format!("/uploads/{u}"), Value::Null),
        (
            Method::GET,
            format!("/permissions/acl/folder/{d}"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/permissions/acl/folder/{d}"),
            json!({"principal_type": "everyone", "permissions": ["READ"]}),
        ),
        (
            Method::DELETE,
            format!("/permissions/acl/folder/{d}"),
            json!({"principal_type": "everyone", "ace_type": "allow"}),
        ),
        (
            Method::PUT,
            format!("/permissions/acl/folder/{d}/inheritance"),
            json!({"inherit_from_parent": false}),
        ),
        (
            Method::GET,
            format!("/permissions/effective?resource_type=file&resource_id={f}"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/permissions/ownership/share/{s}/transfer"),
            json!({"new_owner_id": user}),
        ),
        (Method::GET, format!("/history/file/{f}"), Value::Null),
        (Method::GET, format!("/history/folder/{d}"), Value::Null),
        (Method::GET, format!("/history/share/{s}"), Value::Null),
        (Method::GET, format!("/history/acl/{d}"), Value::Null),
        (
            Method::GET,
            format!("/history/link/{}", a.link),
            Value::Null,
        ),
        (Method::GET, format!("/admin/users/{user}"), Value::Null),
        (
            Method::PATCH,
            format!("/admin/users/{user}"),
            json!({"status": "suspended"}),
        ),
        (
            Method::POST,
            format!("/admin/users/{user}/activate"),
            json!({}),
        ),
        (
            Method::GET,
            format!("/admin/groups/{}", a.group),
            Value::Null,
        ),
        (
            Method::PATCH,
            format!("/admin/groups/{}", a.group),
            json!({"name": "pwned"}),
        ),
        (
            Method::DELETE,
            format!("/admin/groups/{}", a.group),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/admin/groups/{}/members", a.group),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/admin/groups/{}/members/{user}", a.group),
            json!({}),
        ),
        (
            Method::DELETE,
            format!("/admin/groups/{}/members/{user}", a.group),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/admin/partners/{}/tenants", a.partner),
            Value::Null,
        ),
        (
            Method::POST,
            "/external/links".into(),
            json!({"resource_type": "file", "resource_id": f, "share_id": s, "link_type": "DOWNLOAD"}),
        ),
        (
            Method::GET,
            format!("/external/links/{}", a.link),
            Value::Null,
        ),
        (
            Method::PATCH,
            format!("/external/links/{}", a.link),
            json!({"custom_name": "pwned"}),
        ),
        (
            Method::DELETE,
            format!("/external/links/{}", a.link),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/external/links/{}/regenerate", a.link),
            json!({}),
        ),
        (
            Method::GET,
            format!("/external/links/{}/sessions", a.link),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/sync/changes?share_id={s}&cursor=0"),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/sync/status?share_id={s}&device_id=acme-laptop"),
            Value::Null,
        ),
        (Method::GET, format!("/sync/download/{f}"), Value::Null),
        (
            Method::POST,
            format!("/sync/cursor?share_id={s}&device_id=acme-laptop&position=0"),
            json!({}),
        ),
        (
            Method::POST,
            "/sync/apply".into(),
            json!({"device_id": "acme-laptop", "share_id": s, "changes": [
            {"change_type": "deleted", "resource_type": "file", "resource_id": f}]}),
        ),
    ];
    for (method, path, body) in &id_routes {
        let mut req = app.raw(method.clone(), path).bearer_auth(&b);
        if !body.is_null() {
            req = req.json(body);
        }
        let answer = TestApp::answer(req.send().await.unwrap()).await;
        assert_eq!(
            answer.status, 404,
            "{method} {path} answered {}: {}",
            answer.status, answer.body
        );
        no_leak(&a, method, path, &answer.body.to_string());
    }
    // A chunk upload into A's session.
    let resp = app
        .raw(Method::PUT, &format!("/uploads/{u}/chunks/0"))
        .bearer_auth(&b)
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Answers about B's own world: fine, as long as nothing of A's is in them.
    let own_routes: Vec<(Method, String, Value)> = vec![
        (Method::GET, "/quotas/tenant".into(), Value::Null),
        (Method::GET, "/admin/webhooks".into(), Value::Null),
        (Method::GET, "/quotas/users".into(), Value::Null),
        (Method::GET, "/quotas/groups".into(), Value::Null),
        (
            Method::GET,
            "/quotas/usage/tenant?recalculate=true".into(),
            Value::Null,
        ),
        (Method::GET, "/quotas/usage/users".into(), Value::Null),
        (Method::GET, "/users/me/quota".into(), Value::Null),
        (Method::GET, "/shares".into(), Value::Null),
        (
            Method::GET,
            "/shares?include_trashed=true".into(),
            Value::Null,
        ),
        (Method::GET, "/users/me/shares".into(), Value::Null),
        (Method::GET, "/users/me/invitations".into(), Value::Null),
        (Method::GET, "/admin/tenant".into(), Value::Null),
        (Method::GET, "/events?limit=1000".into(), Value::Null),
        (Method::GET, "/audit/events?limit=100".into(), Value::Null),
        (
            Method::GET,
            format!("/audit/events?resource_id={f}"),
            Value::Null,
        ),
        (
            Method::GET,
            "/audit/export?format=ndjson".into(),
            Value::Null,
        ),
        (Method::GET, "/audit/verify".into(), Value::Null),
        (Method::GET, "/admin/users".into(), Value::Null),
        (Method::GET, "/admin/groups".into(), Value::Null),
        (Method::GET, "/external/links".into(), Value::Null),
        (
            Method::GET,
            format!("/external/links?share_id={s}"),
            Value::Null,
        ),
        (Method::GET, "/sync/devices".into(), Value::Null),
        (
            Method::GET,
            "/sync/conflicts?include_resolved=true".into(),
            Value::Null,
        ),
        (
            Method::GET,
            "/shares/search/principals?q=a".into(),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/permissions/check?resource_type=file&resource_id={f}&permission=READ"),
            Value::Null,
        ),
        (
            Method::POST,
            "/permissions/check/batch".into(),
            json!({"checks": [
            {"resource_type": "share", "resource_id": s, "permission": "READ"},
            {"resource_type": "folder", "resource_id": d, "permission": "WRITE"}]}),
        ),
    ];
    for (method, path, body) in &own_routes {
        let mut req = app.raw(method.clone(), path).bearer_auth(&b);
        if !body.is_null() {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(status < 500, "{method} {path} answered {status}");
        let redacted = text
            .replace(s.as_str(), "")
            .replace(d.as_str(), "")
            .replace(f.as_str(), "");
        // Checks echo the ids they were asked about, and must say "no".
        if path.starts_with("/permissions/check") {
            assert!(!text.contains("\"allowed\":true"), "{path}: {text}");
            no_leak(&a, method, path, &redacted);
        } else {
            no_leak(&a, method, path, &text);
        }
    }
    // A's data is untouched.
    let t = app.token("acme", "root", "*");
    let share = app.get(&format!("/shares/{s}"), &t).await;
    assert_eq!(share.body["name"], "Acme secrets");
    assert_eq!(
        app.get(&format!("/files/{f}"), &t).await.body["version_id"],
        v.as_str()
    );
}

fn no_leak(a: &Acme, method: &Method, path: &str, text: &str) {
    for id in &a.ids {
        let echoed = path.contains(id.as_str());
        assert!(
            echoed && !text.contains("\"name\"") || !text.contains(id.as_str()),
            "{method} {path} leaked {id}: {text}"
        );
    }
}
