//! The OpenAPI 3.1 document, `GET /api/v1/openapi.json`: assembled from the
//! handlers' `#[utoipa::path]` annotations and the types they answer with
//! (`dto`), which refer to the shared vocabulary in `schema`.
//!
//! [`Finish`] adds what every operation shares instead of repeating it on
//! each: the `/api/v1` prefix, operation ids (`{module}_{handler}`), bearer
//! security, the `{"detail"}` error body on every 4xx/5xx answer, and the
//! errors any request can meet (SPEC §2: 401/403/429 once authenticated, 400
//! for malformed path, query or `X-ScaiDrive-Position`, 404 for a path that
//! names something, 415/422/413 for JSON bodies, 503/504).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ErrorBody;
use super::state::AppState;
use super::{
    admin, audit, connectors, events, files, folders, history, links, permissions, principals,
    public_links, quotas, realtime, shares, sharing, sync, system, uploads, users, webhooks_in,
    webhooks_out,
};

/// Every route is served under this prefix.
pub const BASE: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ScaiDrive API",
        description = "Enterprise file sync-and-share: tenants, shares, folders, files, \
            resumable uploads, ACLs, sync, external links, quotas, events and audit. \
            Errors answer `{\"detail\": ...}` (an array of field errors for 422) with an optional \
            stable `code`. Send `X-ScaiDrive-Position` (from a write's response) to read your \
            own writes. Single-item folder and file writes take `Prefer: return=minimal`: \
            they then answer only `{\"id\": ...}` and the position, without waiting for \
            the read models (`Preference-Applied: return=minimal`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        document,
        system::health, system::ready, system::config, system::metrics,
        users::me, users::my_quota,
        admin::get_tenant, admin::patch_tenant, admin::list_users, admin::get_user,
        admin::patch_user, admin::activate_user, admin::list_groups, admin::create_group,
        admin::get_group, admin::patch_group, admin::delete_group, admin::list_members,
        admin::add_member, admin::remove_member, admin::list_partner_tenants,
        admin::create_partner_tenant,
        shares::list, shares::create, shares::read, shares::update, shares::remove,
        shares::restore, shares::children, shares::trash,
        sharing::list_members, sharing::add_member, sharing::read_member,
        sharing::update_member, sharing::remove_member, sharing::list_invitations,
        sharing::invite, sharing::revoke, sharing::my_shares, sharing::my_invitations,
        sharing::accept, sharing::decline,
        principals::search,
        permissions::check_query, permissions::check_body, permissions::check_batch,
        permissions::effective_permissions, permissions::read_acl, permissions::add_entry,
        permissions::remove_entry, permissions::set_inheritance, permissions::transfer,
        folders::create, folders::read, folders::update, folders::remove, folders::children,
        folders::move_to,
        files::upload, files::read, files::update, files::remove, files::download, files::copy,
        files::move_to, files::versions, files::restore_version,
        uploads::start, uploads::progress, uploads::abort, uploads::chunk, uploads::complete,
        quotas::get_own_tenant, quotas::put_own_tenant, quotas::get_own_partner,
        quotas::put_own_partner, quotas::get_partner, quotas::put_partner, quotas::get_tenant,
        quotas::put_tenant, quotas::list_users, quotas::get_user, quotas::put_user,
        quotas::delete_user, quotas::exempt_user, quotas::list_groups, quotas::get_group,
        quotas::put_group, quotas::delete_group, quotas::exempt_group, quotas::get_share,
        quotas::put_share, quotas::usage_tenant, quotas::usage_users, quotas::usage_user,
        quotas::usage_share,
        events::list, events::stream,
        audit::list, audit::export, audit::verify,
        history::history,
        links::create, links::list, links::read, links::update, links::revoke,
        links::regenerate, links::sessions,
        public_links::landing, public_links::email_code, public_links::unlock,
        public_links::download, public_links::preview, public_links::children,
        public_links::upload, public_links::short_code,
        realtime::device_socket, realtime::realtime_socket,
        sync::changes, sync::devices, sync::register, sync::status, sync::move_cursor,
        sync::apply, sync::conflicts, sync::resolve, sync::download,
        webhooks_in::receive,
        webhooks_out::list, webhooks_out::create, webhooks_out::read, webhooks_out::patch,
        webhooks_out::remove, webhooks_out::deliveries, webhooks_out::delivery,
        connectors::list, connectors::create, connectors::read, connectors::patch, connectors::remove, connectors::test, connectors::sync, connectors::runs,
    ),
    nest(
        (path = ROOT, api = super::catalogue::CatalogueDoc),
        (path = ROOT, api = super::search::SearchApi),
        (path = ROOT, api = super::proofs::ProofsApi)
    ),
    modifiers(&Finish),
)]
pub struct ApiDoc;

/// Where a module's own OpenAPI part is nested: at the root, its paths are
/// already whole.
const ROOT: &str = "";

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_default());

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

// ------------------------------------------------------------ finishing

/// Properties of answer schemas that are left out when they do not apply
/// (every other property of an answer schema is always present, possibly
/// `null`, and is marked required).
const OPTIONAL: &[(&str, &str)] = &[
    ("ErrorBody", "code"),
    ("FieldError", "ctx"),
    ("Actor", "*"),
    ("FolderEntry", "is_deleted"),
    ("FolderEntry", "deleted_at"),
    ("FileEntry", "is_deleted"),
    ("FileEntry", "deleted_at"),
    ("Invitation", "share_name"),
    ("InvitationAnswer", "role"),
    ("AclEntry", "inherited_from"),
    ("Landing", "token"),
    ("Conflict", "result"),
    ("MemberThen", "principal_type"),
    ("MemberThen", "expires_at"),
    ("Delivery", "attempt_log"),
];

/// The finishing pass over the generated document (see the module docs).
struct Finish;

impl Modify for Finish {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A ScaiKey token (or one minted by `scaidrive token` without ScaiKey); \
                         for `/public/links/...` the link access token from `unlock`.",
                    ))
                    .build(),
            ),
        );
        let (name, schema) = (ErrorBody::name().to_string(), ErrorBody::schema());
        components.schemas.entry(name).or_insert(schema);
        let mut more = Vec::new();
        ErrorBody::schemas(&mut more);
        for (name, schema) in more {
            components.schemas.entry(name).or_insert(schema);
        }

        let paths = std::mem::take(&mut doc.paths.paths);
        for (path, mut item) in paths {
            let has_path_params = path.contains('{');
            for (method, op) in operations(&mut item) {
                finish_operation(&path, method, op, has_path_params);
            }
            doc.paths.paths.insert(format!("{BASE}{path}"), item);
        }
        let answers = answer_schemas(doc);
        if let Some(components) = doc.components.as_mut() {
            for (name, schema) in components.schemas.iter_mut() {
                if answers.contains(name) {
                    require_all(name, schema);
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

fn finish_operation(path: &str, method: &str, op: &mut Operation, has_path_params: bool) {
    // utoipa tags each operation with its module; ids are module_handler.
    let module = op
        .tags
        .as_ref()
        .and_then(|t| t.first())
        .cloned()
        .unwrap_or_else(|| "api".into());
    let handler = op.operation_id.clone().unwrap_or_else(|| method.to_owned());
    op.operation_id = Some(format!("{module}_{handler}"));

    // `security(())` marks a public operation, `security((), ("bearer" = []))`
    // one where the bearer token is optional (a link's access token);
    // everything else is bearer.
    let requirements = op.security.as_deref().unwrap_or_default();
    let public = !requirements.is_empty() && requirements.iter().all(is_empty_requirement);
    let optional = !public && requirements.iter().any(is_empty_requirement);
    let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
    op.security = if public {
        None
    } else if optional {
        Some(vec![SecurityRequirement::default(), bearer])
    } else {
        Some(vec![bearer])
    };

    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    let any_body = op.request_body.is_some();
    let mut defaults: Vec<(&str, &str)> =
        vec![("400", "Malformed path, query or X-ScaiDrive-Position")];
    if !public {
        defaults.push(("401", "Token missing, expired or not valid"));
        defaults.push((
            "403",
            "User suspended or inactive, insufficient scope, or the permission is lacking",
        ));
        defaults.push(("429", "Rate limit exceeded (see Retry-After)"));
    }
    if has_path_params {
        defaults.push(("404", "Not found, or not visible to the caller"));
    }
    if json_body {
        defaults.push(("415", "The body is not application/json"));
        defaults.push(("422", "The body fails validation (detail is an array)"));
    }
    if any_body {
        defaults.push(("413", "The body is too large"));
    }
    if !matches!(path, "/health" | "/config" | "/openapi.json") {
        defaults.push(("503", "A dependency is down or the server is draining"));
    }
    defaults.push(("504", "The request timed out"));
    let responses = &mut op.responses.responses;
    for (status, description) in defaults {
        responses.entry(status.to_owned()).or_insert_with(|| {
            RefOr::T(
                utoipa::openapi::ResponseBuilder::new()
                    .description(description)
                    .build(),
            )
        });
    }
    for (status, response) in responses.iter_mut() {
        let failing = status.starts_with('4') || status.starts_with('5');
        if let RefOr::T(r) = response {
            if failing && r.content.is_empty() {
                r.content.insert(
                    "application/json".into(),
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                );
            }
        }
    }
    // Path parameters are always required.
    for p in op.parameters.iter_mut().flatten() {
        if p.parameter_in == ParameterIn::Path {
            p.required = utoipa::openapi::Required::True;
        }
    }
}

fn is_empty_requirement(r: &SecurityRequirement) -> bool {
    serde_json::to_value(r).is_ok_and(|v| v.as_object().is_some_and(|m| m.is_empty()))
}

/// Component schemas reached from responses and never from a request.
fn answer_schemas(doc: &Doc) -> BTreeSet<String> {
    let Ok(v) = serde_json::to_value(doc) else {
        return BTreeSet::new();
    };
    let schemas = v["components"]["schemas"].clone();
    let mut answers = BTreeSet::new();
    let mut requests = BTreeSet::new();
    if let Some(paths) = v["paths"].as_object() {
        for item in paths.values() {
            for op in item.as_object().into_iter().flat_map(|m| m.values()) {
                collect_refs(&op["responses"], &schemas, &mut answers);
                collect_refs(&op["requestBody"], &schemas, &mut requests);
                collect_refs(&op["parameters"], &schemas, &mut requests);
            }
        }
    }
    answers.difference(&requests).cloned().collect()
}

fn collect_refs(v: &Value, schemas: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    if out.insert(name.to_owned()) {
                        collect_refs(&schemas[name], schemas, out);
                    }
                }
            }
            for child in m.values() {
                collect_refs(child, schemas, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                collect_refs(child, schemas, out);
            }
        }
        _ => {}
    }
}

fn require_all(name: &str, schema: &mut RefOr<Schema>) {
    let RefOr::T(Schema::Object(obj)) = schema else {
        return;
    };
    let optional: Vec<&str> = OPTIONAL
        .iter()
        .filter(|(s, _)| *s == name)
        .map(|(_, p)| *p)
        .collect();
    if optional.contains(&"*") {
        obj.required.clear();
        return;
    }
    obj.required = obj
        .properties
        .keys()
        .filter(|p| !optional.contains(&p.as_str()))
        .cloned()
        .collect();
}
