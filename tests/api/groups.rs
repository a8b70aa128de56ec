//! Groups, their members, principal search, the ScaiKey directory webhook and
//! the caller's resolved groups.

use hmac::{Hmac, Mac};
use reqwest::Method;
use scaidrive::auth::MintRequest;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::admin::my_id;
use crate::both_backends;
use crate::helpers::{spawn, spawn_on, spawn_with, Answer, Backend, TestApp};

const SECRET: &str = "whsec-test-0123456789";

async fn spawn_hooked(backend: Backend) -> TestApp {
    spawn_with(backend, |c| {
        c.scaikey_webhook_secret = Some(scaidrive::config::Secret::new(SECRET));
    })
    .await
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn hook(app: &TestApp, body: &Value, signature: Option<String>) -> Answer {
    let raw = serde_json::to_vec(body).unwrap();
    let mut req = app
        .raw(Method::POST, "/webhooks/scaikey")
        .header("content-type", "application/json");
    if let Some(s) = signature {
        req = req.header("x-scaikey-signature", s);
    }
    TestApp::answer(req.body(raw).send().await.unwrap()).await
}

async fn signed(app: &TestApp, body: Value) -> Answer {
    let sig = sign(&serde_json::to_vec(&body).unwrap());
    hook(app, &body, Some(sig)).await
}

fn token_with_groups(app: &TestApp, tenant: &str, user: &str, groups: &[&str]) -> String {
    let mut req = MintRequest::new(tenant, user);
    req.email = Some(format!("{user}@{tenant}.test"));
    req.name = Some(user.to_owned());
    req.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    app.mint(&req)
}

async fn create_group(app: &TestApp, token: &str, body: Value) -> Value {
    let a = app.post("/admin/groups", token, body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

async fn groups_are_created_read_renamed_and_deleted(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    let g = create_group(
        &app,
        &admin,
        json!({"name": " Engineering ", "description": "builders", "external_id": "eng-1"}),
    )
    .await;
    let id = g["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("grp_"), "{g}");
    assert_eq!(g["name"], "Engineering");
    assert_eq!(g["description"], "builders");
    assert_eq!(g["external_id"], "eng-1");
    assert_eq!(g["member_count"], 0);
    for f in ["tenant_id", "created_at", "modified_at"] {
        assert!(g[f].is_string(), "{f}: {g}");
    }
    let got = app.get(&format!("/admin/groups/{id}"), &admin).await;
    assert_eq!(got.body, g);

    // Names are unique per tenant, case-insensitively; so are external ids.
    app.post("/admin/groups", &admin, json!({"name": "engineering"}))
        .await
        .assert_detail(409);
    let dup = app
        .post(
            "/admin/groups",
            &admin,
            json!({"name": "Other", "external_id": "eng-1"}),
        )
        .await;
    dup.assert_detail(409);
    assert!(dup.body["detail"].as_str().unwrap().contains("external_id"));
    // Another tenant may use the same name.
    let other = app.token("other", "olga", "");
    create_group(&app, &other, json!({"name": "Engineering"})).await;

    create_group(&app, &admin, json!({"name": "Sales"})).await;
    app.patch(
        &format!("/admin/groups/{id}"),
        &admin,
        json!({"name": "SALES"}),
    )
    .await
    .assert_detail(409);
    let p = app
        .patch(
            &format!("/admin/groups/{id}"),
            &admin,
            json!({"name": "Platform", "description": null}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["name"], "Platform");
    assert_eq!(p.body["description"], Value::Null);
    assert_eq!(p.body["external_id"], "eng-1", "absent fields stay");
    // The old name is free again.
    create_group(&app, &admin, json!({"name": "Engineering"})).await;

    let list = app.get("/admin/groups", &admin).await;
    assert_eq!(list.body["total"], 3, "{}", list.body);
    let names: Vec<&str> = list.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Engineering", "Platform", "Sales"]);
    let q = app.get("/admin/groups?q=plat", &admin).await;
    assert_eq!(q.body["total"], 1);

    let d = app.delete(&format!("/admin/groups/{id}"), &admin).await;
    assert_eq!(d.status, 204);
    app.get(&format!("/admin/groups/{id}"), &admin)
        .await
        .assert_detail(404);
    app.delete(&format!("/admin/groups/{id}"), &admin)
        .await
        .assert_detail(404);
    create_group(
        &app,
        &admin,
        json!({"name": "Platform", "external_id": "eng-1"}),
    )
    .await;

    app.post("/admin/groups", &admin, json!({}))
        .await
        .assert_422();
    app.post("/admin/groups", &admin, json!({"name": "   "}))
        .await
        .assert_422();
    app.get("/admin/groups/nope", &admin)
        .await
        .assert_detail(400);
}

#[tokio::test]
async fn members_are_added_once_and_removed() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let bob = app.token("acme", "bob", "files:read");
    let bob_id = my_id(&app, &bob).await;
    let eve_id = my_id(&app, &app.token("other", "eve", "")).await;
    let g = create_group(&app, &admin, json!({"name": "Eng"})).await;
    let gid = g["id"].as_str().unwrap();

    let a = app
        .post(
            &format!("/admin/groups/{gid}/members/{bob_id}"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["user_id"], bob_id.as_str());
    app.post(
        &format!("/admin/groups/{gid}/members/{bob_id}"),
        &admin,
        json!({}),
    )
    .await
    .assert_detail(409);
    app.post(
        &format!("/admin/groups/{gid}/members/{eve_id}"),
        &admin,
        json!({}),
    )
    .await
    .assert_detail(404);

    let got = app.get(&format!("/admin/groups/{gid}"), &admin).await;
    assert_eq!(got.body["member_count"], 1);
    let m = app
        .get(&format!("/admin/groups/{gid}/members"), &admin)
        .await;
    assert_eq!(m.body["total"], 1);
    assert_eq!(m.body["members"][0]["email"], "bob@acme.test");

    // Bob's own view lists the group.
    let me = app.get("/users/me", &bob).await;
    assert_eq!(me.body["groups"], json!([gid]));

    let r = app
        .delete(&format!("/admin/groups/{gid}/members/{bob_id}"), &admin)
        .await;
    assert_eq!(r.status, 204);
    app.delete(&format!("/admin/groups/{gid}/members/{bob_id}"), &admin)
        .await
        .assert_detail(404);
    assert_eq!(app.get("/users/me", &bob).await.body["groups"], json!([]));
    assert_eq!(
        app.get(&format!("/admin/groups/{gid}"), &admin).await.body["member_count"],
        0
    );

    // Deleting a group ends its memberships.
    app.post(
        &format!("/admin/groups/{gid}/members/{bob_id}"),
        &admin,
        json!({}),
    )
    .await;
    app.delete(&format!("/admin/groups/{gid}"), &admin).await;
    assert_eq!(app.get("/users/me", &bob).await.body["groups"], json!([]));
}

#[tokio::test]
async fn groups_of_other_tenants_are_not_found() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    let alice_id = my_id(&app, &admin).await;
    let other = app.token("other", "olga", "");
    let g = create_group(&app, &other, json!({"name": "Theirs"})).await;
    let gid = g["id"].as_str().unwrap();
    app.get(&format!("/admin/groups/{gid}"), &admin)
        .await
        .assert_detail(404);
    app.patch(
        &format!("/admin/groups/{gid}"),
        &admin,
        json!({"name": "Mine"}),
    )
    .await
    .assert_detail(404);
    app.delete(&format!("/admin/groups/{gid}"), &admin)
        .await
        .assert_detail(404);
    app.post(
        &format!("/admin/groups/{gid}/members/{alice_id}"),
        &admin,
        json!({}),
    )
    .await
    .assert_detail(404);
    assert_eq!(app.get("/admin/groups", &admin).await.body["total"], 0);
}

async fn token_group_claims_count_only_for_stored_groups(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let eng = create_group(&app, &admin, json!({"name": "Engineering"})).await;
    let ops = create_group(
        &app,
        &admin,
        json!({"name": "Ops", "external_id": "sk-ops"}),
    )
    .await;
    let stored = create_group(&app, &admin, json!({"name": "Stored"})).await;

    let t = token_with_groups(
        &app,
        "acme",
        "bob",
        &["ENGINEERING", "sk-ops", "unknown-group"],
    );
    let bob_id = my_id(&app, &t).await;
    app.post(
        &format!(
            "/admin/groups/{}/members/{bob_id}",
            stored["id"].as_str().unwrap()
        ),
        &admin,
        json!({}),
    )
    .await;
    let me = app.get("/users/me", &t).await;
    let mut got: Vec<String> = serde_json::from_value(me.body["groups"].clone()).unwrap();
    got.sort();
    let mut want: Vec<String> = [&eng, &ops, &stored]
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    want.sort();
    assert_eq!(
        got, want,
        "claims matched by name and external id, plus stored membership"
    );

    // Another tenant's group of the same name is not the caller's.
    let other = app.token("other", "olga", "");
    create_group(&app, &other, json!({"name": "Finance"})).await;
    let t = token_with_groups(&app, "acme", "carl", &["Finance"]);
    assert_eq!(app.get("/users/me", &t).await.body["groups"], json!([]));
}

async fn principal_search_finds_users_and_groups_of_the_tenant(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let reader = app.token("acme", "marta", "files:read");
    my_id(&app, &reader).await;
    my_id(&app, &app.token("acme", "mark", "files:read")).await;
    let other = app.token("other", "maria", "");
    my_id(&app, &other).await;
    create_group(&app, &admin, json!({"name": "Marketing"})).await;
    create_group(&app, &other, json!({"name": "Marketing EU"})).await;

    let r = app.get("/shares/search/principals?q=mar", &reader).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let emails: Vec<&str> = r.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["mark@acme.test", "marta@acme.test"]);
    assert!(r.body["users"][0]["display_name"].is_string());
    assert_eq!(r.body["groups"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["groups"][0]["name"], "Marketing");
    assert_eq!(r.body["groups"][0]["member_count"], 0);

    let only_groups = app
        .get(
            "/shares/search/principals?q=mar&principal_type=group",
            &reader,
        )
        .await;
    assert_eq!(only_groups.body["users"], json!([]));
    assert_eq!(only_groups.body["groups"].as_array().unwrap().len(), 1);
    let one = app
        .get(
            "/shares/search/principals?q=mar&principal_type=user&limit=1",
            &reader,
        )
        .await;
    assert_eq!(one.body["users"].as_array().unwrap().len(), 1);
    assert_eq!(one.body["groups"], json!([]));

    app.get("/shares/search/principals?limit=51", &reader)
        .await
        .assert_detail(400);
    app.get("/shares/search/principals?principal_type=robot", &reader)
        .await
        .assert_detail(400);
    app.call(Method::GET, "/shares/search/principals", None, None)
        .await
        .assert_detail(401);
}

#[tokio::test]
async fn the_webhook_checks_its_signature_and_event_type() {
    let app = spawn_hooked(Backend::Sqlite).await;
    let body = json!({"event": "user.created", "tenant_id": "acme",
                      "data": {"id": "u-1", "email": "u1@acme.test", "name": "U One"}});
    hook(&app, &body, None).await.assert_detail(401);
    hook(&app, &body, Some("00".repeat(32)))
        .await
        .assert_detail(401);
    hook(&app, &body, Some("not hex".into()))
        .await
        .assert_detail(401);
    // A signature over other bytes does not match.
    hook(&app, &body, Some(sign(b"{}")))
        .await
        .assert_detail(401);

    let raw = serde_json::to_vec(&body).unwrap();
    let ok = hook(&app, &body, Some(format!("sha256={}", sign(&raw)))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["status"], "applied");
    assert!(ok.header("x-scaidrive-position").is_some());

    let unsupported = signed(
        &app,
        json!({"event": "user.teleported", "tenant_id": "acme", "data": {}}),
    )
    .await;
    unsupported.assert_detail(400);
    assert!(unsupported.body["detail"]
        .as_str()
        .unwrap()
        .contains("user.teleported"));
    signed(&app, json!({"tenant_id": "acme"}))
        .await
        .assert_422();
    let missing = signed(
        &app,
        json!({"event": "user.created", "tenant_id": "acme", "data": {}}),
    )
    .await;
    assert_eq!(
        missing.assert_422()[0]["loc"],
        json!(["body", "data", "id"])
    );
}

#[tokio::test]
async fn without_a_secret_the_webhook_is_not_there() {
    let app = spawn().await;
    let body = json!({"event": "user.created", "tenant_id": "acme", "data": {"id": "x"}});
    let sig = sign(&serde_json::to_vec(&body).unwrap());
    hook(&app, &body, Some(sig)).await.assert_detail(404);
}

async fn webhook_users_are_provisioned_updated_and_deactivated(backend: Backend) {
    let app = spawn_hooked(backend).await;
    // An unknown tenant is provisioned on the way; nobody signed in yet.
    let c = signed(
        &app,
        json!({"event": "user.created", "tenant_id": "initech", "partner_id": "resellerco",
               "data": {"id": "peter", "email": "peter@initech.test", "name": "Peter"}}),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let peter_id = c.body["resource_id"].as_str().unwrap().to_owned();

    // Redelivery changes nothing.
    let again = signed(
        &app,
        json!({"event": "user.created", "tenant_id": "initech", "partner_id": "resellerco",
               "data": {"id": "peter", "email": "peter@initech.test", "name": "Peter"}}),
    )
    .await;
    assert_eq!(again.body["changed"], false, "{}", again.body);

    // The first to sign in takes the admin seat of the tenant the webhook made.
    let mut req = MintRequest::new("initech", "bill");
    req.partner_id = Some("resellerco".into());
    req.email = Some("bill@initech.test".into());
    let bill = app.mint(&req);
    assert_eq!(app.get("/users/me", &bill).await.body["is_admin"], true);

    let mut req = MintRequest::new("initech", "peter");
    req.partner_id = Some("resellerco".into());
    let peter = app.mint(&req);
    let me = app.get("/users/me", &peter).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(
        me.body["id"],
        peter_id.as_str(),
        "same user as the token's subject"
    );
    assert_eq!(me.body["email"], "peter@initech.test");
    assert_eq!(me.body["is_admin"], false);

    let u = signed(
        &app,
        json!({"event": "user.updated", "tenant_id": "initech", "partner_id": "resellerco",
               "data": {"id": "peter", "name": "Peter Gibbons", "admin_role": "tenant_admin"}}),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let me = app.get("/users/me", &peter).await;
    assert_eq!(me.body["name"], "Peter Gibbons");
    assert_eq!(me.body["email"], "peter@initech.test", "absent fields stay");
    assert_eq!(me.body["is_admin"], true);

    let s = signed(
        &app,
        json!({"event": "user.updated", "tenant_id": "initech", "partner_id": "resellerco",
               "data": {"id": "peter", "status": "suspended"}}),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    app.get("/users/me", &peter).await.assert_detail(403);

    let d = signed(
        &app,
        json!({"event": "user.deleted", "tenant_id": "initech", "partner_id": "resellerco",
               "data": {"id": "peter"}}),
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let r = app.get("/users/me", &peter).await;
    r.assert_detail(403);
    assert!(r.body["detail"].as_str().unwrap().contains("inactive"));
    // Deactivated, not removed: the admin still sees the user and their data.
    let listed = app.get(&format!("/admin/users/{peter_id}"), &bill).await;
    assert_eq!(listed.body["status"], "inactive", "{}", listed.body);

    let unknown = signed(
        &app,
        json!({"event": "user.deleted", "tenant_id": "initech", "data": {"id": "nobody"}}),
    )
    .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.body["changed"], false);
}

async fn webhook_groups_and_memberships_feed_the_callers_groups(backend: Backend) {
    let app = spawn_hooked(backend).await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let c = signed(
        &app,
        json!({"event": "group.created", "tenant_id": "acme",
               "data": {"id": "sk-grp-9", "name": "Design", "description": "pixels"}}),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let gid = c.body["resource_id"].as_str().unwrap().to_owned();
    assert!(gid.starts_with("grp_"));
    let g = app.get(&format!("/admin/groups/{gid}"), &admin).await;
    assert_eq!(g.body["external_id"], "sk-grp-9");
    assert_eq!(g.body["description"], "pixels");

    let u = signed(
        &app,
        json!({"event": "group.updated", "tenant_id": "acme",
               "data": {"id": "sk-grp-9", "name": "Product Design"}}),
    )
    .await;
    assert_eq!(u.body["resource_id"], gid.as_str());
    let g = app.get(&format!("/admin/groups/{gid}"), &admin).await;
    assert_eq!(g.body["name"], "Product Design");
    assert_eq!(g.body["description"], "pixels");

    // A member ScaiKey names before they ever signed in is provisioned.
    let m = signed(
        &app,
        json!({"event": "group.member_added", "tenant_id": "acme",
               "data": {"group_id": "sk-grp-9", "user_id": "dana", "email": "dana@acme.test"}}),
    )
    .await;
    assert_eq!(m.status, 200, "{}", m.body);
    let again = signed(
        &app,
        json!({"event": "group.member_added", "tenant_id": "acme",
               "data": {"group_id": "sk-grp-9", "user_id": "dana"}}),
    )
    .await;
    assert_eq!(
        again.status, 200,
        "redelivery is not a conflict: {}",
        again.body
    );
    let dana = app.token("acme", "dana", "files:read");
    assert_eq!(
        app.get("/users/me", &dana).await.body["groups"],
        json!([gid])
    );
    assert_eq!(
        app.get(&format!("/admin/groups/{gid}"), &admin).await.body["member_count"],
        1
    );

    let r = signed(
        &app,
        json!({"event": "group.member_removed", "tenant_id": "acme",
               "data": {"group_id": "sk-grp-9", "user_id": "dana"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.get("/users/me", &dana).await.body["groups"], json!([]));

    let missing = signed(
        &app,
        json!({"event": "group.member_added", "tenant_id": "acme",
               "data": {"group_id": "no-such", "user_id": "dana"}}),
    )
    .await;
    missing.assert_detail(404);

    let d = signed(
        &app,
        json!({"event": "group.deleted", "tenant_id": "acme", "data": {"id": "sk-grp-9"}}),
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    app.get(&format!("/admin/groups/{gid}"), &admin)
        .await
        .assert_detail(404);
    // ScaiKey may create a group with the same id again: a new group.
    let again = signed(
        &app,
        json!({"event": "group.created", "tenant_id": "acme",
               "data": {"id": "sk-grp-9", "name": "Design"}}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_ne!(again.body["resource_id"], gid.as_str());

    // Every change is in the audit view, recorded as the webhook.
    let audit = app
        .get("/audit/events?action=group.member_added", &admin)
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let e = &audit.body["events"][0];
    assert_eq!(e["category"], "SECURITY", "{e}");
    assert_eq!(e["service_account"], "scaikey-webhook", "{e}");
}

both_backends!(groups_are_created_read_renamed_and_deleted => groups_are_created_read_renamed_and_deleted_sqlite, groups_are_created_read_renamed_and_deleted_postgres);

both_backends!(token_group_claims_count_only_for_stored_groups => token_group_claims_count_only_for_stored_groups_sqlite, token_group_claims_count_only_for_stored_groups_postgres);

both_backends!(principal_search_finds_users_and_groups_of_the_tenant => principal_search_finds_users_and_groups_of_the_tenant_sqlite, principal_search_finds_users_and_groups_of_the_tenant_postgres);

both_backends!(webhook_groups_and_memberships_feed_the_callers_groups => webhook_groups_and_memberships_feed_the_callers_groups_sqlite, webhook_groups_and_memberships_feed_the_callers_groups_postgres);

both_backends!(webhook_users_are_provisioned_updated_and_deactivated => webhook_users_are_provisioned_updated_and_deactivated_sqlite, webhook_users_are_provisioned_updated_and_deactivated_postgres);

#[tokio::test]
async fn racing_creates_of_one_group_name_make_one_group() {
    let app = spawn().await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = format!("{}/admin/groups", app.base);
        let token = admin.clone();
        // Different spellings of one name: the claim is case-folded.
        let name = if i % 2 == 0 { "Ops" } else { "OPS" };
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"name": name}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(app.get("/admin/groups", &admin).await.body["total"], 1);
}
