//! SPEC §2 422s for every JSON body the API accepts: each failing field is
//! one entry with Pydantic's `type`, the full `loc`, a readable `msg` and the
//! offending `input`, and every fault of a body is reported, not only the first.

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::both_backends;
use crate::helpers::{spawn, spawn_on, spawn_with, Answer, Backend, TestApp};

const FILE: &str = "fil_00000000000000000000000000";
const FOLDER: &str = "fld_00000000000000000000000000";
const SHARE: &str = "shr_00000000000000000000000000";
const USER: &str = "usr_00000000000000000000000000";
const GROUP: &str = "grp_00000000000000000000000000";
const LINK: &str = "lnk_00000000000000000000000000";
const PARTNER: &str = "prt_00000000000000000000000000";
const TENANT: &str = "tnt_00000000000000000000000000";
const WEBHOOK: &str = "whk_00000000000000000000000000";

/// One request and the (type, loc) of every entry its 422 must have.
struct Case {
    method: Method,
    path: String,
    body: Value,
    expect: Vec<(&'static str, Value)>,
}

fn case(method: Method, path: &str, body: Value, expect: &[(&'static str, Value)]) -> Case {
    Case {
        method,
        path: path.to_owned(),
        body,
        expect: expect.to_vec(),
    }
}

/// Every handler with a JSON body, each with wrong primitives (exact `type`
/// and full `loc`) and, where the body has one, a missing required field.
fn table() -> Vec<Case> {
    use Method as M;
    let mut cases = vec![
        // admin.rs
        case(
            M::PATCH,
            "/admin/tenant",
            json!({"name": 5, "settings": {
                "trash_retention_days": "x",
                "sharing": {"allowed_link_types": ["VIEW", 3]},
                "rate_limits": {"per_user": true},
                "nope": 1
            }}),
            &[
                ("string_type", json!(["body", "name"])),
                (
                    "int_type",
                    json!(["body", "settings", "trash_retention_days"]),
                ),
                (
                    "enum",
                    json!(["body", "settings", "sharing", "allowed_link_types", 1]),
                ),
                (
                    "int_type",
                    json!(["body", "settings", "rate_limits", "per_user"]),
                ),
                ("extra_forbidden", json!(["body", "settings", "nope"])),
            ],
        ),
        case(
            M::PATCH,
            &format!("/admin/users/{USER}"),
            json!({"status": 5, "admin_role": "boss"}),
            &[
                ("enum", json!(["body", "status"])),
                ("enum", json!(["body", "admin_role"])),
            ],
        ),
        case(
            M::POST,
            "/admin/groups",
            json!({"description": 5}),
            &[
                ("missing", json!(["body", "name"])),
                ("string_type", json!(["body", "description"])),
            ],
        ),
        case(
            M::PATCH,
            &format!("/admin/groups/{GROUP}"),
            json!({"name": [], "external_id": 1}),
            &[
                ("string_type", json!(["body", "name"])),
                ("string_type", json!(["body", "external_id"])),
            ],
        ),
        case(
            M::POST,
            &format!("/admin/partners/{PARTNER}/tenants"),
            json!({"display_name": true, "settings": 5}),
            &[
                ("missing", json!(["body", "name"])),
                ("string_type", json!(["body", "display_name"])),
                ("dict_type", json!(["body", "settings"])),
            ],
        ),
        // files.rs
        case(
            M::PATCH,
            &format!("/files/{FILE}"),
            json!({"name": 5, "restore": "yes"}),
            &[
                ("string_type", json!(["body", "name"])),
                ("bool_type", json!(["body", "restore"])),
            ],
        ),
        case(
            M::POST,
            &format!("/files/{FILE}/copy"),
            json!({"target_folder_id": 5, "new_name": false}),
            &[
                ("string_type", json!(["body", "target_folder_id"])),
                ("string_type", json!(["body", "new_name"])),
            ],
        ),
        case(
            M::POST,
            &format!("/files/{FILE}/move"),
            json!({"target_share_id": "shr_nope", "target_folder_id": FOLDER}),
            &[("value_error", json!(["body", "target_share_id"]))],
        ),
        // folders.rs
        case(
            M::POST,
            "/folders",
            json!({"name": 5}),
            &[
                ("missing", json!(["body", "share_id"])),
                ("string_type", json!(["body", "name"])),
            ],
        ),
        case(
            M::PATCH,
            &format!("/folders/{FOLDER}"),
            json!({"restore": 1}),
            &[("bool_type", json!(["body", "restore"]))],
        ),
        case(
            M::POST,
            &format!("/folders/{FOLDER}/move"),
            json!({"target_folder_id": []}),
            &[("string_type", json!(["body", "target_folder_id"]))],
        ),
        // links.rs
        case(
            M::POST,
            "/external/links",
            json!({"resource_type": "file", "share_id": SHARE, "link_type": "VIEW",
                   "max_downloads": "many", "allowed_ips": ["10.0.0.1", 7]}),
            &[
                ("missing", json!(["body", "resource_id"])),
                ("int_type", json!(["body", "max_downloads"])),
                ("string_type", json!(["body", "allowed_ips", 1])),
            ],
        ),
        case(
            M::PATCH,
            &format!("/external/links/{LINK}"),
            json!({"require_email": "no", "is_active": 1}),
            &[
                ("bool_type", json!(["body", "require_email"])),
                ("bool_type", json!(["body", "is_active"])),
            ],
        ),
        // permissions.rs
        case(
            M::POST,
            "/permissions/check",
            json!({"resource_type": "file", "resource_id": 5}),
            &[
                ("string_type", json!(["body", "resource_id"])),
                ("missing", json!(["body", "permission"])),
            ],
        ),
        case(
            M::POST,
            "/permissions/check/batch",
            json!({"checks": [
                {"resource_type": "file", "resource_id": FILE, "permission": "READ"},
                {"resource_type": "disk", "resource_id": FILE}
            ]}),
            &[
                ("enum", json!(["body", "checks", 1, "resource_type"])),
                ("missing", json!(["body", "checks", 1, "permission"])),
            ],
        ),
        case(
            M::POST,
            &format!("/permissions/acl/file/{FILE}"),
            json!({"permissions": ["READ", 2], "inherit_to_children": "yes"}),
            &[
                ("missing", json!(["body", "principal_type"])),
                ("string_type", json!(["body", "permissions", 1])),
                ("bool_type", json!(["body", "inherit_to_children"])),
            ],
        ),
        case(
            M::DELETE,
            &format!("/permissions/acl/file/{FILE}"),
            json!({"principal_type": "robot", "principal_id": 5}),
            &[
                ("enum", json!(["body", "principal_type"])),
                ("string_type", json!(["body", "principal_id"])),
                ("missing", json!(["body", "ace_type"])),
            ],
        ),
        case(
            M::PUT,
            &format!("/permissions/acl/file/{FILE}/inheritance"),
            json!({"copy_inherited": "x"}),
            &[
                ("missing", json!(["body", "inherit_from_parent"])),
                ("bool_type", json!(["body", "copy_inherited"])),
            ],
        ),
        case(
            M::POST,
            &format!("/permissions/ownership/file/{FILE}/transfer"),
            json!({"new_owner_id": 5}),
            &[("string_type", json!(["body", "new_owner_id"]))],
        ),
        case(
            M::POST,
            &format!("/permissions/ownership/file/{FILE}/transfer"),
            json!({}),
            &[("missing", json!(["body", "new_owner_id"]))],
        ),
        // public_links.rs
        case(
            M::POST,
            "/public/links/no-such-token/email-code",
            json!({"email": 5}),
            &[("string_type", json!(["body", "email"]))],
        ),
        case(
            M::POST,
            "/public/links/no-such-token/email-code",
            json!({}),
            &[("missing", json!(["body", "email"]))],
        ),
        case(
            M::POST,
            "/public/links/no-such-token/unlock",
            json!({"password": 5, "code": []}),
            &[
                ("string_type", json!(["body", "password"])),
                ("string_type", json!(["body", "code"])),
            ],
        ),
        // quotas.rs: exemptions
        case(
            M::POST,
            &format!("/quotas/users/{USER}/exempt"),
            json!({"reason": 5}),
            &[
                ("missing", json!(["body", "exempt"])),
                ("string_type", json!(["body", "reason"])),
            ],
        ),
        case(
            M::POST,
            &format!("/quotas/groups/{GROUP}/exempt"),
            json!({"exempt": "yes"}),
            &[("bool_type", json!(["body", "exempt"]))],
        ),
        // shares.rs
        case(
            M::POST,
            "/shares",
            json!({"name": "x", "share_type": "team", "quota_bytes": -5}),
            &[
                ("enum", json!(["body", "share_type"])),
                ("missing", json!(["body", "owner_id"])),
                ("greater_than_equal", json!(["body", "quota_bytes"])),
            ],
        ),
        case(
            M::PATCH,
            &format!("/shares/{SHARE}"),
            json!({"description": 5}),
            &[("string_type", json!(["body", "description"]))],
        ),
        // sharing.rs
        case(
            M::POST,
            &format!("/shares/{SHARE}/members"),
            json!({"principal_type": "user", "role": 7, "expires_at": "soon"}),
            &[
                ("missing", json!(["body", "principal_id"])),
                ("enum", json!(["body", "role"])),
                ("value_error", json!(["body", "expires_at"])),
            ],
        ),
        case(
            M::PATCH,
            &format!("/shares/{SHARE}/members/{USER}"),
            json!({"role": "boss", "expires_at": 5}),
            &[
                ("enum", json!(["body", "role"])),
                ("datetime_type", json!(["body", "expires_at"])),
            ],
        ),
        case(
            M::POST,
            &format!("/shares/{SHARE}/invitations"),
            json!({"role": "reader", "expires_in_days": "x"}),
            &[
                ("missing", json!(["body", "email"])),
                ("int_type", json!(["body", "expires_in_days"])),
            ],
        ),
        // sync.rs
        case(
            M::POST,
            "/sync/devices",
            json!({"device_name": 5}),
            &[
                ("missing", json!(["body", "device_id"])),
                ("string_type", json!(["body", "device_name"])),
            ],
        ),
        case(
            M::POST,
            "/sync/apply",
            json!({"device_id": "d1", "share_id": SHARE, "changes": [
                {"change_type": "created", "resource_type": "folder", "name": 5},
                {"resource_type": "file", "modified_at": false}
            ]}),
            &[
                ("string_type", json!(["body", "changes", 0, "name"])),
                (
                    "datetime_type",
                    json!(["body", "changes", 1, "modified_at"]),
                ),
                ("missing", json!(["body", "changes", 1, "change_type"])),
            ],
        ),
        // uploads.rs
        case(
            M::POST,
            "/uploads",
            json!({"share_id": SHARE, "file_name": "a.txt", "file_size": "5",
                   "chunk_hashes": ["ab", 1]}),
            &[
                ("int_type", json!(["body", "file_size"])),
                ("string_type", json!(["body", "chunk_hashes", 1])),
            ],
        ),
        case(
            M::POST,
            "/uploads",
            json!({"share_id": 7}),
            &[
                ("string_type", json!(["body", "share_id"])),
                ("missing", json!(["body", "file_name"])),
                ("missing", json!(["body", "file_size"])),
            ],
        ),
        // webhooks_out.rs
        case(
            M::POST,
            "/admin/webhooks",
            json!({"name": "w", "url": "https://example.com/h", "categories": "all",
                   "headers": {"x-a": 1}}),
            &[
                ("missing", json!(["body", "secret"])),
                ("list_type", json!(["body", "categories"])),
                ("string_type", json!(["body", "headers", "x-a"])),
            ],
        ),
        case(
            M::PATCH,
            &format!("/admin/webhooks/{WEBHOOK}"),
            json!({"status": "on", "headers": []}),
            &[
                ("enum", json!(["body", "status"])),
                ("dict_type", json!(["body", "headers"])),
            ],
        ),
    ];
    // quotas.rs: every route that takes a limit.
    for path in [
        "/quotas/tenant".to_owned(),
        "/quotas/partner".to_owned(),
        format!("/quotas/partners/{PARTNER}"),
        format!("/quotas/tenants/{TENANT}"),
        format!("/quotas/users/{USER}"),
        format!("/quotas/groups/{GROUP}"),
        format!("/quotas/shares/{SHARE}"),
    ] {
        cases.push(case(
            M::PUT,
            &path,
            json!({"limit_type": 1, "warning_threshold_1": 1.5, "grace_period_days": "x"}),
            &[
                ("missing", json!(["body", "limit_bytes"])),
                ("enum", json!(["body", "limit_type"])),
                ("int_from_float", json!(["body", "warning_threshold_1"])),
                ("int_type", json!(["body", "grace_period_days"])),
            ],
        ));
    }
    cases
}

/// Sorted (type, loc) pairs, to compare regardless of order.
fn pairs(entries: &[(&str, Value)]) -> Vec<String> {
    let mut out: Vec<String> = entries.iter().map(|(k, l)| format!("{k} {l}")).collect();
    out.sort();
    out
}

/// Checks one 422 against what it must hold; returns the entries.
#[track_caller]
fn check(case: &Case, a: &Answer) -> Vec<Value> {
    let what = format!("{} {} {}", case.method, case.path, case.body);
    assert_eq!(a.status, 422, "{what}: {}", a.body);
    let detail = a.body["detail"]
        .as_array()
        .expect("detail is an array")
        .clone();
    let got: Vec<(&str, Value)> = detail
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or(""), e["loc"].clone()))
        .collect();
    assert_eq!(pairs(&got), pairs(&case.expect), "{what}: {}", a.body);
    for e in &detail {
        let msg = e["msg"].as_str().expect("msg");
        assert!(
            !msg.is_empty() && !msg.contains('`') && !msg.contains("invalid type"),
            "{what}: msg must be a sentence, not serde's: {msg}"
        );
        assert!(e.get("input").is_some(), "{what}: no input in {e}");
    }
    detail
}

fn entry<'a>(detail: &'a [Value], kind: &str, loc: Value) -> &'a Value {
    detail
        .iter()
        .find(|e| e["type"] == kind && e["loc"] == loc)
        .expect("entry")
}

#[tokio::test]
async fn every_json_body_names_each_fault_pydantic_style() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    app.get("/users/me", &t).await;
    for c in table() {
        let a = app
            .call(c.method.clone(), &c.path, Some(&t), Some(c.body.clone()))
            .await;
        let detail = check(&c, &a);
        if c.path == "/shares" {
            let e = entry(&detail, "enum", json!(["body", "share_type"]));
            assert_eq!(
                e["msg"],
                "Input should be 'central', 'personal' or 'project'"
            );
            assert_eq!(e["input"], "team");
            let e = entry(&detail, "missing", json!(["body", "owner_id"]));
            assert_eq!(e["msg"], "Field required");
            assert_eq!(e["input"], c.body, "missing shows the enclosing object");
            let e = entry(
                &detail,
                "greater_than_equal",
                json!(["body", "quota_bytes"]),
            );
            assert_eq!(e["msg"], "Input should be greater than or equal to 0");
            assert_eq!(e["input"], -5);
        }
        if c.path == "/admin/tenant" {
            let e = entry(
                &detail,
                "extra_forbidden",
                json!(["body", "settings", "nope"]),
            );
            assert_eq!(e["msg"], "Extra inputs are not permitted");
            assert_eq!(e["input"], 1);
            let e = entry(
                &detail,
                "int_type",
                json!(["body", "settings", "trash_retention_days"]),
            );
            assert_eq!(e["msg"], "Input should be a valid integer");
            assert_eq!(e["input"], "x");
        }
    }
    // Nothing above changed anything: the tenant keeps its defaults.
    let tenant = app.get("/admin/tenant", &t).await;
    assert_eq!(
        tenant.body["settings"]["trash_retention_days"], 30,
        "{}",
        tenant.body
    );
}

#[tokio::test]
async fn unparsable_json_is_json_invalid_with_the_parser_error_in_ctx() {
    let app = spawn().await;
    let t = app.token("acme", "alice", "");
    let a = TestApp::answer(
        app.raw(Method::POST, "/folders")
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let d = a.assert_422();
    assert_eq!(d[0]["type"], "json_invalid");
    assert_eq!(d[0]["msg"], "JSON decode error");
    assert!(d[0]["ctx"]["error"].is_string(), "{}", a.body);
}

const SECRET: &str = "whsec-validation-0123456789";

/// The ScaiKey directory webhook: the envelope and each kind of `data`.
#[tokio::test]
async fn the_directory_webhook_names_each_fault_under_body_or_data() {
    let app = spawn_with(Backend::Sqlite, |c| {
        c.scaikey_webhook_secret = Some(scaidrive::config::Secret::new(SECRET));
    })
    .await;
    let cases = [
        case(
            Method::POST,
            "/webhooks/scaikey",
            json!({"event": "user.created", "tenant_id": 5}),
            &[("string_type", json!(["body", "tenant_id"]))],
        ),
        case(
            Method::POST,
            "/webhooks/scaikey",
            json!({"tenant_id": "acme", "partner_id": []}),
            &[
                ("missing", json!(["body", "event"])),
                ("string_type", json!(["body", "partner_id"])),
            ],
        ),
        case(
            Method::POST,
            "/webhooks/scaikey",
            json!({"event": "user.updated", "tenant_id": "acme", "data": {"email": 5, "status": "gone"}}),
            &[
                ("missing", json!(["body", "data", "id"])),
                ("string_type", json!(["body", "data", "email"])),
                ("enum", json!(["body", "data", "status"])),
            ],
        ),
        case(
            Method::POST,
            "/webhooks/scaikey",
            json!({"event": "group.created", "tenant_id": "acme", "data": {"name": 5}}),
            &[
                ("missing", json!(["body", "data", "id"])),
                ("string_type", json!(["body", "data", "name"])),
            ],
        ),
        case(
            Method::POST,
            "/webhooks/scaikey",
            json!({"event": "group.member_added", "tenant_id": "acme", "data": {"group_id": 5}}),
            &[
                ("string_type", json!(["body", "data", "group_id"])),
                ("missing", json!(["body", "data", "user_id"])),
            ],
        ),
    ];
    for c in &cases {
        let raw = serde_json::to_vec(&c.body).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&raw);
        let a = TestApp::answer(
            app.raw(Method::POST, &c.path)
                .header("content-type", "application/json")
                .header(
                    "x-scaikey-signature",
                    hex::encode(mac.finalize().into_bytes()),
                )
                .body(raw)
                .send()
                .await
                .unwrap(),
        )
        .await;
        check(c, &a);
    }
}

/// The 422 comes from the request edge, before any storage: the same on
/// every backend.
async fn a_body_fault_reads_the_same_on_every_backend(backend: Backend) {
    let app = spawn_on(backend).await;
    let t = app.token("acme", "alice", "");
    let c = case(
        Method::POST,
        "/shares",
        json!({"name": 5, "share_type": "team"}),
        &[
            ("string_type", json!(["body", "name"])),
            ("enum", json!(["body", "share_type"])),
            ("missing", json!(["body", "owner_id"])),
        ],
    );
    let a = app
        .call(c.method.clone(), &c.path, Some(&t), Some(c.body.clone()))
        .await;
    check(&c, &a);
    let shares = app.get("/users/me/shares", &t).await;
    assert_eq!(shares.status, 200, "{}", shares.body);
}

both_backends!(a_body_fault_reads_the_same_on_every_backend =>
    a_body_fault_reads_the_same_on_sqlite,
    a_body_fault_reads_the_same_on_postgres);
