//! Documented shapes real clients rely on: version items, the `everyone`
//! ACE literal, the admin user search, a sync socket that follows every
//! readable share, the realtime greeting's timestamp, sync downloads by
//! version and query range, and ownership of folders and files.

use reqwest::Method;
use scaidrive::auth::MintRequest;
use serde_json::{json, Value};

use crate::admin::my_id;
use crate::both_backends;
use crate::drive::{new_share, upload};
use crate::helpers::{spawn_on, Backend, TestApp};
use crate::sync::{next_frame, register, send_json, ws_connect};

async fn uploaded(
    app: &TestApp,
    t: &str,
    share: &str,
    folder: Option<&str>,
    name: &str,
    data: &[u8],
) -> String {
    let a = upload(app, t, share, folder, name, data.to_vec()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().expect("id").to_owned()
}

/// A new version of `file` holding `data`, through a resumable upload.
async fn new_version(app: &TestApp, t: &str, share: &str, file: &str, data: &[u8]) {
    let s = app
        .post(
            "/uploads",
            t,
            json!({"share_id": share, "file_name": "ignored.txt", "file_size": data.len(),
                   "replace_file_id": file, "mime_type": "text/plain"}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let sid = s.body["session_id"].as_str().expect("sid").to_owned();
    let put = app
        .raw(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
        .bearer_auth(t)
        .body(data.to_vec())
        .send()
        .await
        .expect("chunk");
    assert_eq!(put.status(), 200);
    let done = app
        .post(&format!("/uploads/{sid}/complete"), t, json!({}))
        .await;
    assert_eq!(done.status, 201, "{}", done.body);
}

async fn add_member(app: &TestApp, t: &str, share: &str, who: &str, role: &str) {
    let a = app
        .post(
            &format!("/shares/{share}/members"),
            t,
            json!({"principal_type": "user", "principal_id": who, "role": role}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

// ------------------------------------------------------------- versions

async fn version_items_carry_the_documented_fields(backend: Backend) {
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let me = my_id(&app, &t).await;
    let share = new_share(&app, &t, "Docs").await;
    let file = uploaded(&app, &t, &share, None, "a.txt", b"one").await;
    new_version(&app, &t, &share, &file, b"second").await;
    let v = app.get(&format!("/files/{file}/versions"), &t).await;
    assert_eq!(v.status, 200, "{}", v.body);
    let items = v.body["versions"].as_array().expect("versions");
    assert_eq!(v.body["total"], 2);
    let numbers: Vec<&Value> = items.iter().map(|i| &i["version_number"]).collect();
    assert_eq!(numbers, [&json!(2), &json!(1)], "newest first: {}", v.body);
    for (item, size) in items.iter().zip([6, 3]) {
        assert!(
            item["id"].as_str().expect("id").starts_with("ver_"),
            "{item}"
        );
        assert_eq!(item["size"], size);
        assert_eq!(
            item["checksum_sha256"].as_str().expect("checksum").len(),
            64
        );
        assert_eq!(item["created_by"], me.as_str());
        let at = item["created_at"].as_str().expect("created_at");
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
            "{at}"
        );
        // What was answered before stays.
        assert_eq!(item["version_id"], item["id"]);
        assert_eq!(item["number"], item["version_number"]);
        assert_eq!(item["version"], item["version_number"]);
        assert!(item["is_current"].is_boolean() && item["mime_type"].is_string());
    }
}
both_backends!(version_items_carry_the_documented_fields
    => version_items_carry_the_documented_fields_on_sqlite,
       version_items_carry_the_documented_fields_on_postgres);

// ------------------------------------------------------------- everyone

async fn an_everyone_entry_takes_and_answers_the_documented_literal(backend: Backend) {
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Open").await;
    let folder = app
        .post("/folders", &t, json!({"share_id": share, "name": "F"}))
        .await;
    assert_eq!(folder.status, 201, "{}", folder.body);
    let folder = folder.body["id"].as_str().expect("id").to_owned();
    let file = uploaded(&app, &t, &share, None, "f.txt", b"x").await;

    // The literal, null, and absent all mean everyone; answers say "everyone".
    for (path, principal_id) in [
        (
            format!("/permissions/acl/share/{share}"),
            Some(json!("everyone")),
        ),
        (
            format!("/permissions/acl/folder/{folder}"),
            Some(Value::Null),
        ),
        (format!("/permissions/acl/file/{file}"), None),
    ] {
        let mut body = json!({"principal_type": "everyone", "permissions": ["READ"]});
        if let Some(id) = principal_id {
            body["principal_id"] = id;
        }
        let added = app.post(&path, &t, body).await;
        assert_eq!(added.status, 201, "{path}: {}", added.body);
        assert_eq!(added.body["principal_type"], "everyone");
        assert_eq!(added.body["principal_id"], "everyone");
        let acl = app.get(&path, &t).await;
        assert_eq!(acl.status, 200, "{}", acl.body);
        assert_eq!(
            acl.body["entries"][0]["principal_id"], "everyone",
            "{}",
            acl.body
        );
    }
    // Inherited entries read the same.
    let inner = uploaded(&app, &t, &share, Some(&folder), "in.txt", b"y").await;
    let acl = app.get(&format!("/permissions/acl/file/{inner}"), &t).await;
    let inherited = acl.body["inherited_entries"].as_array().expect("inherited");
    assert!(!inherited.is_empty(), "{}", acl.body);
    assert!(
        inherited.iter().all(|e| e["principal_id"] == "everyone"),
        "{}",
        acl.body
    );

    // The same entry again, by the literal, is the same entry.
    app.post(
        &format!("/permissions/acl/share/{share}"),
        &t,
        json!({"principal_type": "everyone", "principal_id": "everyone", "permissions": ["READ"]}),
    )
    .await
    .assert_detail(409);
    // Anything else is refused.
    let bad = app
        .post(
            &format!("/permissions/acl/share/{share}"),
            &t,
            json!({"principal_type": "everyone", "principal_id": "usr_01J3KXQ0N6R8V2T4Y6W8Z0B2C4", "permissions": ["READ"]}),
        )
        .await;
    assert_eq!(bad.assert_422()[0]["loc"], json!(["body", "principal_id"]));
    // Removing by the literal removes it.
    let removed = app
        .call(
            Method::DELETE,
            &format!("/permissions/acl/share/{share}"),
            Some(&t),
            Some(json!({"principal_type": "everyone", "principal_id": "everyone", "ace_type": "allow"})),
        )
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let acl = app
        .get(&format!("/permissions/acl/share/{share}"), &t)
        .await;
    assert_eq!(acl.body["entries"], json!([]));
}
both_backends!(an_everyone_entry_takes_and_answers_the_documented_literal
    => an_everyone_entry_takes_and_answers_the_documented_literal_on_sqlite,
       an_everyone_entry_takes_and_answers_the_documented_literal_on_postgres);

// ---------------------------------------------------------- user search

async fn admin_user_search_matches_email_name_and_display_name(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    for u in ["bob", "carol"] {
        my_id(&app, &app.token("acme", u, "")).await;
    }
    // A user ScaiKey knows by id only: their display name is the id.
    let bare = app.mint(&MintRequest {
        tenant_id: "acme".into(),
        user_id: "nameless".into(),
        partner_id: None,
        scopes: vec![],
        email: None,
        name: None,
        groups: vec![],
        ttl: std::time::Duration::from_secs(600),
        act: None,
    });
    let bare_id = my_id(&app, &bare).await;

    let names = |a: &crate::helpers::Answer| -> Vec<String> {
        a.body["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["display_name"].as_str().expect("display_name").to_owned())
            .collect()
    };
    // Name, any case.
    let a = app.get("/admin/users?search=BO", &admin).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(names(&a), ["bob"]);
    assert_eq!(a.body["total"], 1);
    // Email.
    let a = app.get("/admin/users?search=CAROL%40ACME", &admin).await;
    assert_eq!(names(&a), ["carol"]);
    let a = app.get("/admin/users?search=acme.test", &admin).await;
    assert_eq!(a.body["total"], 3, "{}", a.body);
    // Display name (here the id).
    let tail = &bare_id[bare_id.len() - 10..];
    let a = app
        .get(
            &format!("/admin/users?search={}", tail.to_uppercase()),
            &admin,
        )
        .await;
    assert_eq!(names(&a), [bare_id.as_str()]);
    // `q` stays an alias; both at once must agree.
    let a = app.get("/admin/users?q=carol", &admin).await;
    assert_eq!(names(&a), ["carol"]);
    let a = app.get("/admin/users?search=carol&q=carol", &admin).await;
    assert_eq!(names(&a), ["carol"]);
    app.get("/admin/users?search=carol&q=bob", &admin)
        .await
        .assert_detail(400);
    let long = "x".repeat(201);
    app.get(&format!("/admin/users?search={long}"), &admin)
        .await
        .assert_detail(400);
}
both_backends!(admin_user_search_matches_email_name_and_display_name
    => admin_user_search_matches_email_name_and_display_name_on_sqlite,
       admin_user_search_matches_email_name_and_display_name_on_postgres);

// -------------------------------------------------------------- sockets

async fn a_plain_subscribe_follows_shares_granted_later_until_removed(backend: Backend) {
    let app = spawn_on(backend).await;
    // The tenant's first user is its admin (who reads everything); the
    // others are plain users.
    my_id(&app, &app.token("acme", "alice", "")).await;
    let bob = app.token("acme", "bob", "");
    let carol = app.token("acme", "carol", "");
    let carol_id = my_id(&app, &carol).await;
    let shared = new_share(&app, &bob, "Later").await;
    let own = new_share(&app, &carol, "Mine").await;
    register(&app, &carol, "laptop", "Laptop").await;

    let mut ws = ws_connect(&app, &format!("/sync/ws/laptop?token={carol}")).await;
    send_json(&mut ws, json!({"type": "subscribe"})).await;
    let sub = next_frame(&mut ws).await.expect("subscribed");
    assert_eq!(sub["type"], "subscribed");
    assert_eq!(sub["all"], true);
    let listed = sub["share_ids"].as_array().expect("share_ids");
    assert!(listed.contains(&json!(own)), "{sub}");
    assert!(!listed.contains(&json!(shared)), "{sub}");

    // Granted after the subscribe: its changes arrive.
    add_member(&app, &bob, &shared, &carol_id, "reader").await;
    let f1 = uploaded(&app, &bob, &shared, None, "one.txt", b"1").await;
    let frame = next_frame(&mut ws).await.expect("change");
    assert_eq!(frame["event_type"], "change", "{frame}");
    assert_eq!(frame["share_id"], shared.as_str());
    assert_eq!(frame["data"]["resource_id"], f1.as_str());

    // Removed: nothing more from that share. The next frame is a later
    // change of another share, so the one in between was not sent.
    let gone = app
        .delete(&format!("/shares/{shared}/members/{carol_id}"), &bob)
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    uploaded(&app, &bob, &shared, None, "two.txt", b"2").await;
    let marker = uploaded(&app, &carol, &own, None, "mine.txt", b"3").await;
    let frame = next_frame(&mut ws).await.expect("change");
    assert_eq!(frame["share_id"], own.as_str(), "{frame}");
    assert_eq!(frame["data"]["resource_id"], marker.as_str());

    // Granted again: frames come back.
    add_member(&app, &bob, &shared, &carol_id, "reader").await;
    let f3 = uploaded(&app, &bob, &shared, None, "three.txt", b"4").await;
    let frame = next_frame(&mut ws).await.expect("change");
    assert_eq!(frame["data"]["resource_id"], f3.as_str(), "{frame}");
}
both_backends!(a_plain_subscribe_follows_shares_granted_later_until_removed
    => a_plain_subscribe_follows_shares_granted_later_until_removed_on_sqlite,
       a_plain_subscribe_follows_shares_granted_later_until_removed_on_postgres);

async fn a_share_subscribed_by_id_stops_sending_once_access_is_gone(backend: Backend) {
    let app = spawn_on(backend).await;
    my_id(&app, &app.token("acme", "alice", "")).await;
    let bob = app.token("acme", "bob", "");
    let carol = app.token("acme", "carol", "");
    let carol_id = my_id(&app, &carol).await;
    let shared = new_share(&app, &bob, "Team").await;
    let own = new_share(&app, &carol, "Mine").await;
    add_member(&app, &bob, &shared, &carol_id, "reader").await;

    let mut ws = ws_connect(&app, &format!("/realtime/ws?token={carol}")).await;
    assert_eq!(
        next_frame(&mut ws).await.expect("hello")["type"],
        "connected"
    );
    send_json(
        &mut ws,
        json!({"type": "subscribe", "share_ids": [shared, own]}),
    )
    .await;
    let sub = next_frame(&mut ws).await.expect("subscribed");
    assert_eq!(sub["share_ids"], json!([shared, own]));
    app.delete(&format!("/shares/{shared}/members/{carol_id}"), &bob)
        .await;
    uploaded(&app, &bob, &shared, None, "secret.txt", b"s").await;
    let marker = uploaded(&app, &carol, &own, None, "mine.txt", b"m").await;
    let frame = next_frame(&mut ws).await.expect("frame");
    assert_eq!(frame["resource_id"], marker.as_str(), "{frame}");
}
both_backends!(a_share_subscribed_by_id_stops_sending_once_access_is_gone
    => a_share_subscribed_by_id_stops_sending_once_access_is_gone_on_sqlite,
       a_share_subscribed_by_id_stops_sending_once_access_is_gone_on_postgres);

async fn the_realtime_greeting_carries_a_utc_timestamp(backend: Backend) {
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    let mut ws = ws_connect(&app, &format!("/realtime/ws?token={t}")).await;
    let hello = next_frame(&mut ws).await.expect("hello");
    assert_eq!(hello["type"], "connected");
    assert!(hello["user_id"].is_string() && hello["tenant_id"].is_string());
    let ts = hello["timestamp"].as_str().expect("timestamp");
    assert!(ts.ends_with('Z'), "{ts}");
    let at = chrono::DateTime::parse_from_rfc3339(ts).expect("ISO-8601");
    assert!(
        at >= before && at <= chrono::Utc::now() + chrono::Duration::seconds(2),
        "{ts}"
    );
}
both_backends!(the_realtime_greeting_carries_a_utc_timestamp
    => the_realtime_greeting_carries_a_utc_timestamp_on_sqlite,
       the_realtime_greeting_carries_a_utc_timestamp_on_postgres);

// ------------------------------------------------------- sync download

async fn fetch(
    app: &TestApp,
    t: &str,
    path: &str,
    range: Option<&str>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut req = app.raw(Method::GET, path).bearer_auth(t);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.expect("download");
    let status = resp.status().as_u16();
    let cr = resp
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, cr, resp.bytes().await.expect("body").to_vec())
}

async fn sync_download_takes_version_and_range_in_the_query(backend: Backend) {
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let share = new_share(&app, &t, "Sync").await;
    let file = uploaded(&app, &t, &share, None, "a.txt", b"hello world").await;
    new_version(&app, &t, &share, &file, b"HELLO WORLD!!").await;
    let base = format!("/sync/download/{file}");

    assert_eq!(
        fetch(&app, &t, &base, None).await,
        (200, None, b"HELLO WORLD!!".to_vec())
    );
    assert_eq!(
        fetch(&app, &t, &format!("{base}?version=1"), None).await,
        (200, None, b"hello world".to_vec())
    );
    assert_eq!(
        fetch(
            &app,
            &t,
            &format!("{base}?range_start=6&range_end=10"),
            None
        )
        .await,
        (206, Some("bytes 6-10/13".into()), b"WORLD".to_vec())
    );
    assert_eq!(
        fetch(
            &app,
            &t,
            &format!("{base}?version=1&range_start=0&range_end=4"),
            None
        )
        .await,
        (206, Some("bytes 0-4/11".into()), b"hello".to_vec())
    );
    // Open-ended, and an end past the content, read to the end.
    assert_eq!(
        fetch(&app, &t, &format!("{base}?range_start=6"), None).await,
        (206, Some("bytes 6-12/13".into()), b"WORLD!!".to_vec())
    );
    assert_eq!(
        fetch(
            &app,
            &t,
            &format!("{base}?range_start=11&range_end=99"),
            None
        )
        .await,
        (206, Some("bytes 11-12/13".into()), b"!!".to_vec())
    );
    // The header still works, with a version too.
    assert_eq!(
        fetch(&app, &t, &format!("{base}?version=1"), Some("bytes=6-")).await,
        (206, Some("bytes 6-10/11".into()), b"world".to_vec())
    );

    // Invalid combinations.
    let bad = |q: &str| format!("{base}?{q}");
    app.get(&bad("range_end=4"), &t).await.assert_detail(400);
    app.get(&bad("version=0"), &t).await.assert_detail(400);
    app.get(&bad("range_start=-1"), &t).await.assert_detail(400);
    app.get(&bad("range_start=x"), &t).await.assert_detail(400);
    let both = app
        .raw(Method::GET, &bad("range_start=1"))
        .bearer_auth(&t)
        .header("range", "bytes=1-2")
        .send()
        .await
        .expect("send");
    TestApp::answer(both).await.assert_detail(400);
    // Where a Range header would be unsatisfiable, so is the query.
    let (status, cr, _) = fetch(&app, &t, &bad("range_start=5&range_end=2"), None).await;
    assert_eq!((status, cr.as_deref()), (416, Some("bytes */13")));
    let (status, _, _) = fetch(&app, &t, &bad("range_start=13"), None).await;
    assert_eq!(status, 416);
    app.get(&bad("version=9"), &t).await.assert_detail(404);
}
both_backends!(sync_download_takes_version_and_range_in_the_query
    => sync_download_takes_version_and_range_in_the_query_on_sqlite,
       sync_download_takes_version_and_range_in_the_query_on_postgres);

// ------------------------------------------------------------ ownership

async fn transfer(
    app: &TestApp,
    t: &str,
    kind: &str,
    id: &str,
    to: &str,
) -> crate::helpers::Answer {
    app.post(
        &format!("/permissions/ownership/{kind}/{id}/transfer"),
        t,
        json!({"new_owner_id": to}),
    )
    .await
}

async fn folders_and_files_change_owner_by_their_owner_or_an_admin(backend: Backend) {
    let app = spawn_on(backend).await;
    let admin = app.token("acme", "alice", "");
    my_id(&app, &admin).await;
    let bob = app.token("acme", "bob", "");
    let bob_id = my_id(&app, &bob).await;
    let carol = app.token("acme", "carol", "");
    let carol_id = my_id(&app, &carol).await;
    let dave = app.token("acme", "dave", "");
    let dave_id = my_id(&app, &dave).await;
    let stranger = my_id(&app, &app.token("globex", "eve", "")).await;

    let share = new_share(&app, &bob, "Team").await;
    add_member(&app, &bob, &share, &carol_id, "contributor").await;
    let folder = app
        .post(
            "/folders",
            &bob,
            json!({"share_id": share, "name": "Plans"}),
        )
        .await;
    assert_eq!(folder.status, 201, "{}", folder.body);
    assert_eq!(folder.body["owner_id"], bob_id.as_str());
    let folder = folder.body["id"].as_str().expect("id").to_owned();
    let file = uploaded(&app, &carol, &share, Some(&folder), "c.txt", b"c").await;

    // Only the owner (or a tenant admin): a member who does not own it is refused.
    transfer(&app, &carol, "folder", &folder, &carol_id)
        .await
        .assert_detail(403);
    transfer(&app, &bob, "file", &file, &bob_id)
        .await
        .assert_detail(403);
    // Someone who cannot see it learns nothing.
    transfer(&app, &dave, "folder", &folder, &dave_id)
        .await
        .assert_detail(404);
    transfer(
        &app,
        &bob,
        "folder",
        "fld_01J3KXQ0N6R8V2T4Y6W8Z0B2C4",
        &carol_id,
    )
    .await
    .assert_detail(404);
    // The new owner is a user of the tenant.
    let group = transfer(
        &app,
        &bob,
        "folder",
        &folder,
        "grp_01J3KXQ0N6R8V2T4Y6W8Z0B2C4",
    )
    .await;
    assert_eq!(
        group.assert_422()[0]["loc"],
        json!(["body", "new_owner_id"])
    );
    for nobody in ["usr_01J3KXQ0N6R8V2T4Y6W8Z0B2C4", stranger.as_str()] {
        let a = transfer(&app, &bob, "folder", &folder, nobody).await;
        assert_eq!(a.assert_422()[0]["loc"], json!(["body", "new_owner_id"]));
    }

    // The owner hands the folder over.
    let a = transfer(&app, &bob, "folder", &folder, &carol_id).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], folder.as_str());
    assert_eq!(a.body["owner_id"], carol_id.as_str());
    let read = app.get(&format!("/folders/{folder}"), &bob).await;
    assert_eq!(read.body["owner_id"], carol_id.as_str());
    // ... and is no longer its owner.
    transfer(&app, &bob, "folder", &folder, &bob_id)
        .await
        .assert_detail(403);

    // The file's owner hands it over; a tenant admin may too.
    let a = transfer(&app, &carol, "file", &file, &bob_id).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["owner_id"], bob_id.as_str());
    assert_eq!(a.body["created_by"], carol_id.as_str());
    let a = transfer(&app, &admin, "file", &file, &dave_id).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let read = app.get(&format!("/files/{file}"), &carol).await;
    assert_eq!(read.body["owner_id"], dave_id.as_str());

    // Each transfer is an event on the item's stream.
    for (id, kind, n) in [
        (&folder, "folder-ownership-transferred", 1),
        (&file, "file-ownership-transferred", 2),
    ] {
        let ev = app
            .get(&format!("/events?stream_id={id}&type={kind}"), &admin)
            .await;
        assert_eq!(ev.status, 200, "{}", ev.body);
        let events = ev.body["events"].as_array().expect("events");
        assert_eq!(events.len(), n, "{}", ev.body);
        assert_eq!(events[0]["event_type"], kind);
    }

    // In the trash: restore first.
    app.delete(&format!("/files/{file}"), &carol).await;
    transfer(&app, &admin, "file", &file, &carol_id)
        .await
        .assert_detail(410);
}
both_backends!(folders_and_files_change_owner_by_their_owner_or_an_admin
    => folders_and_files_change_owner_by_their_owner_or_an_admin_on_sqlite,
       folders_and_files_change_owner_by_their_owner_or_an_admin_on_postgres);
