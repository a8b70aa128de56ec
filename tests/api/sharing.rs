//! Members, invitations, ownership, ACLs and permission checks: who sees
//! what (404), who may do what (403), end to end.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::drive::{new_share, upload};
use crate::helpers::{spawn, TestApp};

const RW: &str = "files:read files:write";

/// A tenant whose first user (the tenant admin) exists, and three regular
/// users: the share owner, a colleague and an outsider.
struct Cast {
    owner: String,
    bea: String,
    bea_id: String,
    cal: String,
    cal_id: String,
}

async fn cast(app: &TestApp) -> Cast {
    let admin = app.token("acme", "root", "");
    app.get("/users/me", &admin).await;
    let owner = app.token("acme", "olga", RW);
    let bea = app.token("acme", "bea", RW);
    let cal = app.token("acme", "cal", RW);
    app.get("/users/me", &owner).await;
    let bea_id = app.get("/users/me", &bea).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cal_id = app.get("/users/me", &cal).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Cast {
        owner,
        bea,
        bea_id,
        cal,
        cal_id,
    }
}

async fn add_member(app: &TestApp, t: &str, share: &str, who: &str, role: &str) -> Value {
    let a = app
        .post(
            &format!("/shares/{share}/members"),
            t,
            json!({"principal_type": "user", "principal_id": who, "role": role}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
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

#[tokio::test]
async fn roles_decide_what_members_may_do_and_removal_cuts_access_at_once() {
    let app = spawn().await;
    let c = cast(&app).await;
    let share = new_share(&app, &c.owner, "Team").await;
    let file = upload(&app, &c.owner, &share, None, "a.txt", b"hello".to_vec()).await;
    let file = file.body["id"].as_str().unwrap().to_owned();

    // Not a member: the share and its contents do not exist for Bea.
    app.get(&format!("/shares/{share}"), &c.bea)
        .await
        .assert_detail(404);
    app.get(&format!("/files/{file}"), &c.bea)
        .await
        .assert_detail(404);

    add_member(&app, &c.owner, &share, &c.bea_id, "reader").await;
    assert_eq!(
        app.get(&format!("/shares/{share}"), &c.bea).await.status,
        200
    );
    assert_eq!(
        app.get(&format!("/files/{file}/content"), &c.bea)
            .await
            .status,
        200
    );
    // Her personal share and this one.
    let listed = app.get("/shares", &c.bea).await;
    assert_eq!(listed.body["total"], 2, "{}", listed.body);
    let mine = app.get("/users/me/shares", &c.bea).await;
    let team = mine.body["shares"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == share.as_str())
        .cloned();
    assert_eq!(team.unwrap()["role"], "reader", "{}", mine.body);
    // A reader may not write, delete or manage.
    let up = upload(&app, &c.bea, &share, None, "b.txt", b"x".to_vec()).await;
    up.assert_detail(403);
    app.delete(&format!("/files/{file}"), &c.bea)
        .await
        .assert_detail(403);
    app.patch(&format!("/shares/{share}"), &c.bea, json!({"name": "Mine"}))
        .await
        .assert_detail(403);
    app.post(
        &format!("/shares/{share}/members"),
        &c.bea,
        json!({"principal_type": "user", "principal_id": c.cal_id, "role": "reader"}),
    )
    .await
    .assert_detail(403);

    // A second add of the same principal conflicts.
    app.post(
        &format!("/shares/{share}/members"),
        &c.owner,
        json!({"principal_type": "user", "principal_id": c.bea_id, "role": "admin"}),
    )
    .await
    .assert_detail(409);

    // Promoted to contributor: uploads and deletes work.
    let p = app
        .patch(
            &format!("/shares/{share}/members/{}", c.bea_id),
            &c.owner,
            json!({"role": "contributor"}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let up = upload(&app, &c.bea, &share, None, "b.txt", b"x".to_vec()).await;
    assert_eq!(up.status, 201, "{}", up.body);

    // Removed: the very next request is refused.
    let r = app
        .delete(&format!("/shares/{share}/members/{}", c.bea_id), &c.owner)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    app.get(&format!("/files/{file}"), &c.bea)
        .await
        .assert_detail(404);
    assert_eq!(app.get("/shares", &c.bea).await.body["total"], 1);

    let members = app.get(&format!("/shares/{share}/members"), &c.owner).await;
    assert_eq!(members.body["total"], 1, "{}", members.body);
    assert_eq!(members.body["members"][0]["role"], "owner");
}

#[tokio::test]
async fn expired_memberships_stop_granting_access() {
    let app = spawn().await;
    let c = cast(&app).await;
    let share = new_share(&app, &c.owner, "Short").await;
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let a = app
        .post(
            &format!("/shares/{share}/members"),
            &c.owner,
            json!({"principal_type": "user", "principal_id": c.bea_id, "role": "reader", "expires_at": soon}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        app.get(&format!("/shares/{share}"), &c.bea).await.status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = app.get(&format!("/shares/{share}"), &c.bea).await.status;
        if s == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "membership never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    app.post(
        &format!("/shares/{share}/members"),
        &c.owner,
        json!({"principal_type": "user", "principal_id": c.cal_id, "role": "reader", "expires_at": past}),
    )
    .await
    .assert_422();
}

#[tokio::test]
async fn a_share_has_exactly_one_owner_and_only_they_delete_or_transfer_it() {
    let app = spawn().await;
    let c = cast(&app).await;
    let share = new_share(&app, &c.owner, "Owned").await;
    let owner_id = app.get("/users/me", &c.owner).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    add_member(&app, &c.owner, &share, &c.bea_id, "admin").await;

    // Not even an admin member removes the owner, deletes or transfers.
    app.delete(&format!("/shares/{share}/members/{owner_id}"), &c.bea)
        .await
        .assert_detail(409);
    app.delete(&format!("/shares/{share}"), &c.bea)
        .await
        .assert_detail(403);
    app.post(
        &format!("/permissions/ownership/share/{share}/transfer"),
        &c.bea,
        json!({"new_owner_id": c.bea_id}),
    )
    .await
    .assert_detail(403);

    // The owner hands over; the old owner stays on as an admin.
    let t = app
        .post(
            &format!("/permissions/ownership/share/{share}/transfer"),
            &c.owner,
            json!({"new_owner_id": c.cal_id}),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["owner_id"], c.cal_id.as_str());
    let members = app.get(&format!("/shares/{share}/members"), &c.cal).await;
    let roles: Vec<(String, String)> = members.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["principal_id"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles.iter().filter(|r| r.1 == "owner").count(),
        1,
        "{roles:?}"
    );
    assert!(
        roles.contains(&(c.cal_id.clone(), "owner".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&(owner_id.clone(), "admin".into())),
        "{roles:?}"
    );
    app.delete(&format!("/shares/{share}"), &c.owner)
        .await
        .assert_detail(403);
    assert_eq!(
        app.delete(&format!("/shares/{share}"), &c.cal).await.status,
        204
    );

    // Another tenant's user is no principal here.
    let other = app.token("globex", "gus", RW);
    let gus = app.get("/users/me", &other).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let share2 = new_share(&app, &c.owner, "Second").await;
    app.post(
        &format!("/shares/{share2}/members"),
        &c.owner,
        json!({"principal_type": "user", "principal_id": gus, "role": "reader"}),
    )
    .await
    .assert_422();
}

#[tokio::test]
async fn invitations_add_the_invitee_once_and_refuse_replays() {
    let app = spawn().await;
    let c = cast(&app).await;
    let share = new_share(&app, &c.owner, "Invited").await;
    let inv = app
        .post(
            &format!("/shares/{share}/invitations"),
            &c.owner,
            json!({"email": "bea@acme.test", "role": "contributor", "message": "welcome"}),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    assert_eq!(inv.body["status"], "pending");
    let id = inv.body["id"].as_str().unwrap().to_owned();

    // The email went to the outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mail = scaidrive_projections::outbox::to_recipient(&app.state.db, "bea@acme.test")
            .await
            .unwrap();
        if mail
            .iter()
            .any(|m| m.kind == "invitation" && m.body.contains(&id))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no invitation email queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Someone else cannot see or answer it.
    app.post(
        &format!("/users/me/invitations/{id}/accept"),
        &c.cal,
        json!({}),
    )
    .await
    .assert_detail(404);
    let mine = app.get("/users/me/invitations", &c.bea).await;
    assert_eq!(mine.body["total"], 1, "{}", mine.body);
    let a = app
        .post(
            &format!("/users/me/invitations/{id}/accept"),
            &c.bea,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["share_id"], share.as_str());
    assert_eq!(a.body["role"], "contributor");
    let m = app
        .get(&format!("/shares/{share}/members/{}", c.bea_id), &c.owner)
        .await;
    assert_eq!(m.body["role"], "contributor", "{}", m.body);
    app.post(
        &format!("/users/me/invitations/{id}/accept"),
        &c.bea,
        json!({}),
    )
    .await
    .assert_detail(409);
    app.post(
        &format!("/users/me/invitations/{id}/decline"),
        &c.bea,
        json!({}),
    )
    .await
    .assert_detail(409);

    // Revoked invitations are gone.
    let inv2 = app
        .post(
            &format!("/shares/{share}/invitations"),
            &c.owner,
            json!({"email": "cal@acme.test", "role": "reader"}),
        )
        .await;
    let id2 = inv2.body["id"].as_str().unwrap().to_owned();
    let r = app
        .delete(&format!("/shares/{share}/invitations/{id2}"), &c.owner)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    app.post(
        &format!("/users/me/invitations/{id2}/accept"),
        &c.cal,
        json!({}),
    )
    .await
    .assert_detail(410);
    app.get(&format!("/shares/{share}"), &c.cal)
        .await
        .assert_detail(404);

    // Bad input changes nothing.
    app.post(
        &format!("/shares/{share}/invitations"),
        &c.owner,
        json!({"email": "not-an-email", "role": "boss"}),
    )
    .await
    .assert_422();
    let list = app
        .get(&format!("/shares/{share}/invitations"), &c.owner)
        .await;
    assert_eq!(list.body["total"], 2, "{}", list.body);
}

#[tokio::test]
async fn acls_deny_beats_allow_inherit_down_and_stop_where_inheritance_breaks() {
    let app = spawn().await;
    let c = cast(&app).await;
    let share = new_share(&app, &c.owner, "Tree").await;
    let open = folder(&app, &c.owner, &share, None, "open").await;
    let secret = folder(&app, &c.owner, &share, None, "secret").await;
    let deep = folder(&app, &c.owner, &share, Some(&secret), "deep").await;
    add_member(&app, &c.owner, &share, &c.bea_id, "contributor").await;

    // Deny Bea READ on /secret: it and everything below vanish for her.
    let d = app
        .post(
            &format!("/permissions/acl/folder/{secret}"),
            &c.owner,
            json!({"principal_type": "user", "principal_id": c.bea_id, "permissions": ["READ"], "ace_type": "deny"}),
        )
        .await;
    assert_eq!(d.status, 201, "{}", d.body);
    app.get(&format!("/folders/{secret}"), &c.bea)
        .await
        .assert_detail(404);
    app.get(&format!("/folders/{deep}"), &c.bea)
        .await
        .assert_detail(404);
    assert_eq!(
        app.get(&format!("/folders/{open}"), &c.bea).await.status,
        200
    );
    let root = app.get(&format!("/shares/{share}/children"), &c.bea).await;
    let names: Vec<&str> = root.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["open"], "{}", root.body);
    assert_eq!(root.body["total"], 1);
    // The owner still sees both.
    let root = app
        .get(&format!("/shares/{share}/children"), &c.owner)
        .await;
    assert_eq!(root.body["total"], 2);

    // Cal has no role; an allow on /secret lets him read it and below.
    let g = app
        .post(
            &format!("/permissions/acl/folder/{secret}"),
            &c.owner,
            json!({"principal_type": "user", "principal_id": c.cal_id, "permissions": ["READ", "CREATE"]}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.body);
    assert_eq!(
        app.get(&format!("/folders/{deep}"), &c.cal).await.status,
        200
    );
    app.get(&format!("/shares/{share}"), &c.cal)
        .await
        .assert_detail(404);
    let eff = app
        .get(
            &format!("/permissions/effective?resource_type=folder&resource_id={deep}"),
            &c.cal,
        )
        .await;
    assert_eq!(eff.body["can_read"], true, "{}", eff.body);
    assert_eq!(eff.body["can_create"], true);
    assert_eq!(eff.body["can_delete"], false);
    // Cal may create in /secret/deep but not delete it.
    folder(&app, &c.cal, &share, Some(&deep), "mine").await;
    app.delete(&format!("/folders/{deep}"), &c.cal)
        .await
        .assert_detail(403);

    // Breaking inheritance on /secret/deep without copying cuts Cal off ...
    let b = app
        .client
        .put(format!(
            "{}/permissions/acl/folder/{deep}/inheritance",
            app.base
        ))
        .bearer_auth(&c.owner)
        .json(&json!({"inherit_from_parent": false, "copy_inherited": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(b.status(), 200);
    app.get(&format!("/folders/{deep}"), &c.cal)
        .await
        .assert_detail(404);
    // ... and stops the deny reaching Bea there (her role still applies).
    assert_eq!(
        app.get(&format!("/folders/{deep}"), &c.bea).await.status,
        200
    );

    // Breaking with a copy keeps what was inherited.
    let other = folder(&app, &c.owner, &share, Some(&secret), "other").await;
    let b = app
        .client
        .put(format!(
            "{}/permissions/acl/folder/{other}/inheritance",
            app.base
        ))
        .bearer_auth(&c.owner)
        .json(&json!({"inherit_from_parent": false, "copy_inherited": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(b.status(), 200);
    let acl: Value = b.json().await.unwrap();
    assert_eq!(acl["entries"].as_array().unwrap().len(), 2, "{acl}");
    assert_eq!(
        app.get(&format!("/folders/{other}"), &c.cal).await.status,
        200
    );
    app.get(&format!("/folders/{other}"), &c.bea)
        .await
        .assert_detail(404);

    // Removing the deny gives /secret back to Bea.
    let r = app
        .client
        .delete(format!("{}/permissions/acl/folder/{secret}", app.base))
        .bearer_auth(&c.owner)
        .json(&json!({"principal_type": "user", "principal_id": c.bea_id, "ace_type": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get(&format!("/folders/{secret}"), &c.bea).await.status,
        200
    );

    // Only MANAGE_PERMISSIONS edits ACLs; contributors cannot.
    app.post(
        &format!("/permissions/acl/folder/{open}"),
        &c.bea,
        json!({"principal_type": "everyone", "permissions": ["READ"]}),
    )
    .await
    .assert_detail(403);
}

#[tokio::test]
async fn permission_checks_answer_per_resource_and_in_batches() {
    let app = spawn().await;
    let c = cast(&app).await;
    let share = new_share(&app, &c.owner, "Checks").await;
    add_member(&app, &c.owner, &share, &c.bea_id, "reader").await;
    let q = format!("/permissions/check?resource_type=share&resource_id={share}&permission=READ");
    assert_eq!(app.get(&q, &c.bea).await.body["allowed"], true);
    assert_eq!(app.get(&q, &c.cal).await.body["allowed"], false);
    let w = app
        .post(
            "/permissions/check",
            &c.bea,
            json!({"resource_type": "share", "resource_id": share, "permission": "WRITE"}),
        )
        .await;
    assert_eq!(w.body["allowed"], false, "{}", w.body);
    let checks: Vec<Value> = [
        "READ",
        "WRITE",
        "DELETE",
        "CREATE",
        "SHARE",
        "MANAGE_PERMISSIONS",
    ]
    .iter()
    .map(|p| json!({"resource_type": "share", "resource_id": share, "permission": p}))
    .collect();
    let b = app
        .post(
            "/permissions/check/batch",
            &c.bea,
            json!({"checks": checks}),
        )
        .await;
    let allowed: Vec<bool> = b.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(
        allowed,
        [true, false, false, false, false, false],
        "{}",
        b.body
    );
    let b = app
        .post(
            "/permissions/check/batch",
            &c.owner,
            json!({"checks": checks}),
        )
        .await;
    assert!(b.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["allowed"] == true));
    let many: Vec<Value> = (0..101).map(|_| checks[0].clone()).collect();
    app.post("/permissions/check/batch", &c.bea, json!({"checks": many}))
        .await
        .assert_422();
    app.get(
        &format!("/permissions/check?resource_type=share&resource_id={share}&permission=FLY"),
        &c.bea,
    )
    .await
    .assert_detail(400);
    app.get(
        &format!("/permissions/effective?resource_type=share&resource_id={share}"),
        &c.cal,
    )
    .await
    .assert_detail(404);
}

#[tokio::test]
async fn groups_grant_through_memberships_and_acls() {
    let app = spawn().await;
    let c = cast(&app).await;
    let admin = app.token("acme", "root", "");
    let g = app
        .post("/admin/groups", &admin, json!({"name": "Design"}))
        .await;
    assert_eq!(g.status, 201, "{}", g.body);
    let group = g.body["id"].as_str().unwrap().to_owned();
    let m = app
        .post(
            &format!("/admin/groups/{group}/members/{}", c.bea_id),
            &admin,
            json!({}),
        )
        .await;
    assert!(m.status == 201 || m.status == 200, "{}", m.body);

    let share = new_share(&app, &c.owner, "Design docs").await;
    app.get(&format!("/shares/{share}"), &c.bea)
        .await
        .assert_detail(404);
    let a = app
        .post(
            &format!("/shares/{share}/members"),
            &c.owner,
            json!({"principal_type": "group", "principal_id": group, "role": "contributor"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["name"], "Design");
    assert_eq!(
        app.get(&format!("/shares/{share}"), &c.bea).await.status,
        200
    );
    app.get(&format!("/shares/{share}"), &c.cal)
        .await
        .assert_detail(404);

    // A deny for the group beats the group's own role.
    let f = folder(&app, &c.owner, &share, None, "drafts").await;
    let d = app
        .post(
            &format!("/permissions/acl/folder/{f}"),
            &c.owner,
            json!({"principal_type": "group", "principal_id": group, "permissions": ["READ"], "ace_type": "deny"}),
        )
        .await;
    assert_eq!(d.status, 201, "{}", d.body);
    app.get(&format!("/folders/{f}"), &c.bea)
        .await
        .assert_detail(404);

    // Leaving the group takes the access with it.
    let r = app
        .delete(
            &format!("/admin/groups/{group}/members/{}", c.bea_id),
            &admin,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    app.get(&format!("/shares/{share}"), &c.bea)
        .await
        .assert_detail(404);
}
