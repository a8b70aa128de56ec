//! Administration (SPEC §4.1): the tenant (`/admin/tenant`), its users
//! (search, status, admin role), its groups and their members — all for
//! tenant admins — and a partner's tenants (`/admin/partners/{id}/tenants`,
//! for partner admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use scaidrive_domain::id::{GroupId, PartnerId, TenantId, UserId};
use scaidrive_domain::tenancy::{AdminRole, UserStatus};
use scaidrive_domain::DomainError;
use scaidrive_projections::{groups, tenancy};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use uuid::Uuid;

use super::drive::{path_id, Page};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Found, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::auth::Scope;
use crate::command::admin as cmd;
use crate::command::groups::{GroupChange, NewGroup};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tenant", get(get_tenant).patch(patch_tenant))
        .route("/admin/users", get(list_users))
        .route("/admin/users/{user_id}", get(get_user).patch(patch_user))
        .route("/admin/users/{user_id}/activate", post(activate_user))
        .route("/admin/groups", get(list_groups).post(create_group))
        .route(
            "/admin/groups/{group_id}",
            get(get_group).patch(patch_group).delete(delete_group),
        )
        .route("/admin/groups/{group_id}/members", get(list_members))
        .route(
            "/admin/groups/{group_id}/members/{user_id}",
            post(add_member).delete(remove_member),
        )
        .route(
            "/admin/partners/{partner_id}/tenants",
            get(list_partner_tenants).post(create_partner_tenant),
        )
}

/// A field that is present (possibly `null`) becomes `Some`, so `null`
/// (clear) and absent (leave alone) stay apart.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `settings` stays as sent (a partial patch the domain merges), but its
/// shape is checked here against the documented patch, each key in place.
fn check_settings(body: &mut Value, found: &mut Found) {
    match body.get_mut("settings") {
        None | Some(Value::Null) => {}
        Some(settings @ Value::Object(_)) => {
            found.check_as::<doc::TenantSettingsPatch>(settings, &[Value::from("settings")]);
        }
        Some(other) => {
            let input = other.clone();
            found.report(
                vec![Value::from("settings")],
                "dict_type",
                "Input should be a valid dictionary",
                input,
            );
        }
    }
}

/// A tenant as stored (404 when it is not).
async fn tenant_dto(state: &AppState, id: TenantId) -> ApiResult<dto::Tenant> {
    let row = tenancy::tenant(&state.db, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(dto::Tenant::from(&row))
}

/// The caller's tenant (tenant admins).
#[utoipa::path(get, path = "/admin/tenant", responses(
    (status = 200, description = "The tenant with its settings", body = dto::Tenant),
))]
async fn get_tenant(State(state): State<AppState>, p: Principal) -> ApiResult<Json<dto::Tenant>> {
    p.require_tenant_admin()?;
    Ok(Json(tenant_dto(&state, p.tenant_id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PatchTenant {
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    display_name: Option<String>,
    #[schema(value_type = Option<doc::TenantSettingsPatch>)]
    settings: Option<Value>,
}

impl Validate for PatchTenant {
    fn check_json(body: &mut Value, found: &mut Found) {
        check_settings(body, found);
    }

    fn validate(&self, v: &mut Violations) {
        if let Some(n) = &self.name {
            v.length("name", n, 1, 255);
        }
        if let Some(n) = &self.display_name {
            v.length("display_name", n, 1, 255);
        }
    }
}

/// Renames the tenant or changes some of its settings.
#[utoipa::path(patch, path = "/admin/tenant", request_body = PatchTenant, responses(
    (status = 200, description = "The tenant as changed", body = dto::Tenant),
))]
async fn patch_tenant(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<PatchTenant>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let committed = cmd::update_tenant(
        &state.bus,
        &p.context(),
        p.tenant_id,
        body.name,
        body.display_name,
        body.settings,
    )
    .await?;
    let id = p.tenant_id.to_string();
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &id, || {
            tenant_dto(&state, p.tenant_id)
        })
        .await
}

// ---------------------------------------------------------------- users

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// Case-insensitive substring of the email, the name or the display name.
    #[param(max_length = 200)]
    search: Option<String>,
    /// The same as `search` (give one of the two).
    #[param(max_length = 200)]
    q: Option<String>,
    #[param(value_type = Option<doc::UserStatusDoc>, inline)]
    status: Option<String>,
    is_admin: Option<bool>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// The tenant's users, filtered.
#[utoipa::path(get, path = "/admin/users", params(UserQuery), responses(
    (status = 200, description = "A page of users", body = dto::UserList),
))]
async fn list_users(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<Json<dto::UserList>> {
    p.require_tenant_admin()?;
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .resolve()?;
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "active" | "inactive" | "suspended") {
            return Err(ApiError::BadRequest(
                "status must be active, inactive or suspended".into(),
            ));
        }
    }
    let (param, raw) = match (&q.search, &q.q) {
        (Some(s), Some(alias)) if s.trim() != alias.trim() => {
            return Err(ApiError::BadRequest(
                "search and q are the same filter; give one of them".into(),
            ));
        }
        (Some(s), _) => ("search", Some(s)),
        (None, alias) => ("q", alias.as_ref()),
    };
    let q_text = raw.map(|t| t.trim()).filter(|t| !t.is_empty());
    if q_text.is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::BadRequest(format!(
            "{param} must be at most 200 characters"
        )));
    }
    let filter = tenancy::UserFilter {
        q: q_text.map(str::to_owned),
        status: q.status,
        is_admin: q.is_admin,
    };
    let (rows, total) =
        tenancy::users(&state.db, &p.tenant_id.to_string(), &filter, limit, offset).await?;
    Ok(Json(dto::UserList {
        users: rows.iter().map(dto::AdminUser::from).collect(),
        total,
    }))
}

/// A user of the caller's tenant (404 for any other).
async fn tenant_user(state: &AppState, p: &Principal, raw: &str) -> ApiResult<tenancy::UserRow> {
    let id: UserId = path_id(raw, "user")?;
    tenancy::user(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// One user of the tenant.
#[utoipa::path(get, path = "/admin/users/{user_id}",
    params(("user_id" = inline(doc::UserId), Path)),
    responses((status = 200, description = "The user", body = dto::AdminUser)),
)]
async fn get_user(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<Json<dto::AdminUser>> {
    p.require_tenant_admin()?;
    let row = tenant_user(&state, &p, &user_id).await?;
    Ok(Json(dto::AdminUser::from(&row)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PatchUser {
    #[schema(value_type = Option<doc::UserStatusDoc>)]
    status: Option<UserStatus>,
    /// `null` takes the admin role away.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<doc::AdminRoleDoc>)]
    admin_role: Option<Option<AdminRole>>,
}

impl Validate for PatchUser {}

/// Changes a user's status or admin role (never the last active admin's).
#[utoipa::path(patch, path = "/admin/users/{user_id}", request_body = PatchUser,
    params(("user_id" = inline(doc::UserId), Path)),
    responses(
        (status = 200, description = "The user as changed", body = dto::AdminUser),
        (status = 409, description = "The tenant's last active admin would be lost"),
    ),
)]
async fn patch_user(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchUser>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    change_user(&state, &p, respond, &user_id, body.status, body.admin_role).await
}

/// Sets a user active again.
#[utoipa::path(post, path = "/admin/users/{user_id}/activate",
    params(("user_id" = inline(doc::UserId), Path)),
    responses((status = 200, description = "The user, active", body = dto::AdminUser)),
)]
async fn activate_user(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let active = Some(UserStatus::Active);
    change_user(&state, &p, respond, &user_id, active, None).await
}

/// Applies a status and/or admin-role change, refusing (409) to take away
/// the tenant's last active admin.
async fn change_user(
    state: &AppState,
    p: &Principal,
    respond: Respond,
    raw_id: &str,
    status: Option<UserStatus>,
    admin_role: Option<Option<AdminRole>>,
) -> ApiResult<Response> {
    let row = tenant_user(state, p, raw_id).await?;
    let tenant = p.tenant_id.to_string();
    let is_active_admin = row.admin_role.is_some() && row.status == "active";
    let loses_admin =
        matches!(status, Some(s) if s != UserStatus::Active) || matches!(admin_role, Some(None));
    // Admin changes in one tenant take turns, so two admins demoting each
    // other at once cannot leave the tenant without one (in this process).
    let _guard = state.bus.locks().lock(&format!("admins:{tenant}")).await;
    if is_active_admin && loses_admin {
        let others = tenancy::other_active_admins(&state.db, &tenant, &row.id).await?;
        if others == 0 {
            return Err(DomainError::InvalidTransition(format!(
                "{} is the last active tenant admin; make another user tenant admin first",
                row.email.as_deref().unwrap_or(&row.id)
            ))
            .into());
        }
    }
    let committed = cmd::change_user(&state.bus, &p.context(), &row.id, status, admin_role).await?;
    // The lock is held until the read model shows the change.
    respond
        .full()
        .item(state, &committed, StatusCode::OK, &row.id, || {
            user_dto(state, &tenant, &row.id)
        })
        .await
}

/// A user as stored (404 when it is not).
async fn user_dto(state: &AppState, tenant: &str, id: &str) -> ApiResult<dto::AdminUser> {
    let row = tenancy::user(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(dto::AdminUser::from(&row))
}

// ---------------------------------------------------------------- groups

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct GroupQuery {
    /// Matches the name.
    #[param(max_length = 200)]
    q: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// The tenant's groups.
#[utoipa::path(get, path = "/admin/groups", params(GroupQuery), responses(
    (status = 200, description = "A page of groups", body = dto::GroupList),
))]
async fn list_groups(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<GroupQuery>,
) -> ApiResult<Json<dto::GroupList>> {
    p.require_tenant_admin()?;
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .resolve()?;
    let q_text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if q_text.is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::BadRequest(
            "q must be at most 200 characters".into(),
        ));
    }
    let (rows, total) =
        groups::groups(&state.db, &p.tenant_id.to_string(), q_text, limit, offset).await?;
    Ok(Json(dto::GroupList {
        groups: rows.iter().map(dto::Group::from).collect(),
        total,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateGroup {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: String,
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// The directory's id for the group.
    #[schema(min_length = 1, max_length = 255)]
    external_id: Option<String>,
}

impl Validate for CreateGroup {
    const REQUIRED: &'static [&'static str] = &["name"];

    fn validate(&self, v: &mut Violations) {
        v.length(
            "name",
            self.name.trim(),
            1,
            scaidrive_domain::group::MAX_NAME,
        );
        if let Some(d) = &self.description {
            v.length(
                "description",
                d,
                0,
                scaidrive_domain::group::MAX_DESCRIPTION,
            );
        }
        if let Some(e) = &self.external_id {
            v.length(
                "external_id",
                e,
                1,
                scaidrive_domain::group::MAX_EXTERNAL_ID,
            );
        }
    }
}

/// A live group of the caller's tenant (404 for any other).
async fn tenant_group(
    state: &AppState,
    p: &Principal,
    raw: &str,
) -> ApiResult<(GroupId, groups::GroupRow)> {
    let id: GroupId = path_id(raw, "group")?;
    let row = groups::group(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    Ok((id, row))
}

/// Reads a group back after a write (the handler waited for the projection).
async fn group_after(state: &AppState, p: &Principal, id: GroupId) -> ApiResult<dto::Group> {
    let row = groups::group(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    Ok(dto::Group::from(&row))
}

/// Creates a group.
#[utoipa::path(post, path = "/admin/groups", request_body = CreateGroup, responses(
    (status = 201, description = "The new group", body = dto::Group),
    (status = 409, description = "A group with this name or external id exists"),
))]
async fn create_group(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<CreateGroup>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let ctx = p.context();
    let id = GroupId::from_uuid(Uuid::now_v7());
    let new = NewGroup {
        name: body.name,
        description: body.description,
        external_id: body.external_id,
    };
    let (_, committed) =
        crate::command::groups::create(&state.bus, &ctx, p.tenant_id, id, &new).await?;
    let key = id.to_string();
    let read = || group_after(&state, &p, id);
    respond
        .full()
        .item(&state, &committed, StatusCode::CREATED, &key, read)
        .await
}

/// One group.
#[utoipa::path(get, path = "/admin/groups/{group_id}",
    params(("group_id" = inline(doc::GroupId), Path)),
    responses((status = 200, description = "The group", body = dto::Group)),
)]
async fn get_group(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(group_id): ApiPath<String>,
) -> ApiResult<Json<dto::Group>> {
    p.require_tenant_admin()?;
    let (_, row) = tenant_group(&state, &p, &group_id).await?;
    Ok(Json(dto::Group::from(&row)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PatchGroup {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    description: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    external_id: Option<Option<String>>,
}

impl Validate for PatchGroup {
    fn validate(&self, v: &mut Violations) {
        if let Some(n) = &self.name {
            v.length("name", n.trim(), 1, scaidrive_domain::group::MAX_NAME);
        }
        if let Some(Some(d)) = &self.description {
            v.length(
                "description",
                d,
                0,
                scaidrive_domain::group::MAX_DESCRIPTION,
            );
        }
        if let Some(Some(e)) = &self.external_id {
            v.length(
                "external_id",
                e,
                1,
                scaidrive_domain::group::MAX_EXTERNAL_ID,
            );
        }
    }
}

/// Renames a group or changes its description or external id.
#[utoipa::path(patch, path = "/admin/groups/{group_id}", request_body = PatchGroup,
    params(("group_id" = inline(doc::GroupId), Path)),
    responses(
        (status = 200, description = "The group as changed", body = dto::Group),
        (status = 409, description = "The name or external id is taken"),
    ),
)]
async fn patch_group(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(group_id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchGroup>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_group(&state, &p, &group_id).await?;
    let change = GroupChange {
        name: body.name,
        description: body.description,
        external_id: body.external_id,
    };
    let (_, committed) =
        crate::command::groups::update(&state.bus, &p.context(), p.tenant_id, id, &change).await?;
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &id.to_string(), || {
            group_after(&state, &p, id)
        })
        .await
}

/// Deletes a group.
#[utoipa::path(delete, path = "/admin/groups/{group_id}",
    params(("group_id" = inline(doc::GroupId), Path)),
    responses((status = 204, description = "Deleted")),
)]
async fn delete_group(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(group_id): ApiPath<String>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let (id, _) = tenant_group(&state, &p, &group_id).await?;
    let committed =
        crate::command::groups::delete(&state.bus, &p.context(), p.tenant_id, id).await?;
    Ok(respond.full().empty(&state, &committed).await)
}

/// A group's members.
#[utoipa::path(get, path = "/admin/groups/{group_id}/members",
    params(("group_id" = inline(doc::GroupId), Path), Page),
    responses((status = 200, description = "A page of members", body = dto::GroupMemberList)),
)]
async fn list_members(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(group_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<dto::GroupMemberList>> {
    p.require_tenant_admin()?;
    let (limit, offset) = page.resolve()?;
    let (_, row) = tenant_group(&state, &p, &group_id).await?;
    let members = groups::members(&state.db, &row.id, limit, offset).await?;
    Ok(Json(dto::GroupMemberList {
        members: members
            .iter()
            .map(|m| dto::GroupMember::from((row.id.as_str(), m)))
            .collect(),
        total: row.member_count,
    }))
}

/// Adds a user to a group.
#[utoipa::path(post, path = "/admin/groups/{group_id}/members/{user_id}",
    params(("group_id" = inline(doc::GroupId), Path), ("user_id" = inline(doc::UserId), Path)),
    responses(
        (status = 201, description = "The membership", body = dto::GroupMember),
        (status = 409, description = "Already a member"),
    ),
)]
async fn add_member(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((group_id, user_id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let (gid, _) = tenant_group(&state, &p, &group_id).await?;
    let user = tenant_user(&state, &p, &user_id).await?;
    let uid: UserId = path_id(&user.id, "user")?;
    let committed = crate::command::groups::set_member(
        &state.bus,
        &p.context(),
        p.tenant_id,
        gid,
        uid,
        true,
        false,
    )
    .await?;
    // The membership as it was made (the user's row, not the members' view).
    let member = dto::GroupMember {
        group_id: gid.to_string(),
        user_id: uid.to_string(),
        email: user.email,
        name: user.name,
        status: Some(user.status),
        added_at: super::ts(p.context().now),
    };
    let id = member.user_id.clone();
    respond
        .full()
        .item(&state, &committed, StatusCode::CREATED, &id, || async {
            Ok(member)
        })
        .await
}

/// Removes a user from a group.
#[utoipa::path(delete, path = "/admin/groups/{group_id}/members/{user_id}",
    params(("group_id" = inline(doc::GroupId), Path), ("user_id" = inline(doc::UserId), Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 409, description = "Not a member"),
    ),
)]
async fn remove_member(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((group_id, user_id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    p.require_tenant_admin()?;
    let (gid, _) = tenant_group(&state, &p, &group_id).await?;
    let user = tenant_user(&state, &p, &user_id).await?;
    let uid: UserId = path_id(&user.id, "user")?;
    let committed = crate::command::groups::set_member(
        &state.bus,
        &p.context(),
        p.tenant_id,
        gid,
        uid,
        false,
        false,
    )
    .await?;
    Ok(respond.full().empty(&state, &committed).await)
}

// ---------------------------------------------------------------- partners

/// The caller's partner, when the path names it (any other answers 404).
fn own_partner(p: &Principal, raw: &str) -> ApiResult<PartnerId> {
    p.require(Scope::PartnerAdmin)?;
    // Both our `prt_` id and the partner id of the token's claim name it.
    if PartnerId::from_external(raw) == p.partner_id {
        Ok(p.partner_id)
    } else {
        Err(ApiError::not_found("partner"))
    }
}

/// The tenants of the caller's partner (partner admins).
#[utoipa::path(get, path = "/admin/partners/{partner_id}/tenants",
    params(("partner_id" = String, Path, description = "The partner's `prt_` id or its ScaiKey id"), Page),
    responses((status = 200, description = "A page of tenants", body = dto::TenantList)),
)]
async fn list_partner_tenants(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(partner_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<dto::TenantList>> {
    let partner = own_partner(&p, &partner_id)?;
    let (limit, offset) = page.resolve()?;
    let (rows, total) =
        tenancy::partner_tenants(&state.db, &partner.to_string(), limit, offset).await?;
    Ok(Json(dto::TenantList {
        tenants: rows.iter().map(dto::Tenant::from).collect(),
        total,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateTenant {
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    #[schema(min_length = 1, max_length = 255)]
    display_name: Option<String>,
    #[schema(value_type = Option<doc::TenantSettingsPatch>)]
    settings: Option<Value>,
    /// ScaiKey's id for the tenant (what its tokens carry as `tenant_id`);
    /// default: a new `tnt_` id.
    #[schema(min_length = 1, max_length = 255)]
    tenant_id: Option<String>,
}

impl Validate for CreateTenant {
    const REQUIRED: &'static [&'static str] = &["name"];

    fn check_json(body: &mut Value, found: &mut Found) {
        check_settings(body, found);
    }

    fn validate(&self, v: &mut Violations) {
        v.length("name", &self.name, 1, 255);
        if let Some(n) = &self.display_name {
            v.length("display_name", n, 1, 255);
        }
        if let Some(t) = &self.tenant_id {
            v.length("tenant_id", t, 1, 255);
        }
    }
}

/// Creates a tenant under the caller's partner.
#[utoipa::path(post, path = "/admin/partners/{partner_id}/tenants", request_body = CreateTenant,
    params(("partner_id" = String, Path, description = "The partner's `prt_` id or its ScaiKey id")),
    responses(
        (status = 201, description = "The new tenant", body = dto::Tenant),
        (status = 409, description = "The tenant exists"),
    ),
)]
async fn create_partner_tenant(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(partner_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<Response> {
    let partner = own_partner(&p, &partner_id)?;
    let tenant_id = match &body.tenant_id {
        Some(t) => TenantId::from_external(t),
        None => TenantId::from_uuid(Uuid::now_v7()),
    };
    let mut ctx = p.context();
    ctx.tenant_id = Some(tenant_id.to_string());
    let (_, position) = crate::command::provision::create_tenant(
        &state.bus,
        &ctx,
        partner,
        tenant_id,
        &body.name,
        body.display_name,
        body.settings,
    )
    .await?;
    respond
        .after(&state, position, StatusCode::CREATED, || {
            tenant_dto(&state, tenant_id)
        })
        .await
}
