//! Share members and invitations, and the invitee's side of invitations.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use scaidrive_domain::access::{Permission, PrincipalType, ShareRole};
use scaidrive_domain::id::{GroupId, InvitationId, ShareId, UserId};
use scaidrive_domain::DomainError;
use scaidrive_projections::access::{self, MemberRow};
use scaidrive_projections::drive_queries as q;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::drive::{self, path_id, require_perm, require_read, Need, On, Page};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::command::sharing as cmd;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/shares/{id}/members", get(list_members).post(add_member))
        .route(
            "/shares/{id}/members/{principal_id}",
            get(read_member).patch(update_member).delete(remove_member),
        )
        .route(
            "/shares/{id}/invitations",
            get(list_invitations).post(invite),
        )
        .route("/shares/{id}/invitations/{inv_id}", delete(revoke))
        .route("/users/me/shares", get(my_shares))
        .route("/users/me/invitations", get(my_invitations))
        .route("/users/me/invitations/{id}/accept", post(accept))
        .route("/users/me/invitations/{id}/decline", post(decline))
}

/// A request field that may be absent, null (clear) or set.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A membership as the API shows it, with the member's name and email.
async fn member_dto(state: &AppState, tenant: &str, m: &MemberRow) -> ApiResult<dto::Member> {
    let (name, email) = match m.principal_type.as_str() {
        "user" => {
            match scaidrive_projections::tenancy::user(&state.db, tenant, &m.principal_id).await? {
                Some(u) => (u.name.or(u.email.clone()), u.email),
                None => (None, None),
            }
        }
        _ => (
            access::group_name(&state.db, tenant, &m.principal_id).await?,
            None,
        ),
    };
    Ok(dto::Member::of(m, name, email, Utc::now()))
}

/// A membership read back after a write of the caller's (`missing` when
/// the read model does not show it).
async fn member_read_back(
    state: &AppState,
    p: &Principal,
    share: &str,
    principal_id: &str,
    missing: fn() -> ApiError,
) -> ApiResult<dto::Member> {
    let m = access::member(&state.db, share, principal_id)
        .await?
        .ok_or_else(missing)?;
    member_dto(state, &p.tenant_id.to_string(), &m).await
}

/// A share's members (the owner included).
#[utoipa::path(get, path = "/shares/{id}/members", params(("id" = inline(doc::ShareId), Path), Page), responses(
    (status = 200, description = "A page of members", body = dto::MemberList),
    (status = 410, description = "The share is in the trash"),
))]
async fn list_members(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<ShareId>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<dto::MemberList>> {
    let (limit, offset) = page.resolve()?;
    let share = drive::share(&state, &p, id, Need::Read).await?;
    let (rows, total) = access::members(&state.db, &share.id, limit, offset).await?;
    let tenant = p.tenant_id.to_string();
    let mut members = Vec::with_capacity(rows.len());
    for m in &rows {
        members.push(member_dto(&state, &tenant, m).await?);
    }
    Ok(Json(dto::MemberList { members, total }))
}

/// One member of a share.
#[utoipa::path(get, path = "/shares/{id}/members/{principal_id}", params(("id" = inline(doc::ShareId), Path), ("principal_id" = inline(doc::OwnerId), Path)),
    responses(
        (status = 200, description = "The membership", body = dto::Member),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn read_member(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((id, principal_id)): ApiPath<(ShareId, String)>,
) -> ApiResult<Json<dto::Member>> {
    let share = drive::share(&state, &p, id, Need::Read).await?;
    let missing = || ApiError::not_found("member");
    Ok(Json(
        member_read_back(&state, &p, &share.id, &principal_id, missing).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct AddMember {
    #[schema(value_type = doc::MemberPrincipalType)]
    principal_type: PrincipalType,
    /// A `usr_` id for users, `grp_` for groups, of the caller's tenant.
    #[schema(value_type = doc::OwnerId)]
    principal_id: String,
    #[schema(value_type = doc::GrantableRole)]
    role: ShareRole,
    /// The membership stops granting access then.
    #[schema(value_type = Option<doc::DateTimeInput>)]
    expires_at: Option<DateTime<Utc>>,
}

impl Validate for AddMember {
    const REQUIRED: &'static [&'static str] = &["principal_type", "principal_id", "role"];
    fn validate(&self, v: &mut Violations) {
        principal_shape(v, self.principal_type, &self.principal_id);
        if self.role == ShareRole::Owner {
            v.push(
                "enum",
                "role",
                "Input should be 'admin', 'contributor' or 'reader' (transfer ownership to change the owner)",
                Value::from("owner"),
            );
        }
    }
}

/// A principal id must carry the prefix its type names.
pub(crate) fn principal_shape(v: &mut Violations, t: PrincipalType, id: &str) {
    let ok = match t {
        PrincipalType::User => UserId::parse(id).is_ok(),
        PrincipalType::Group => GroupId::parse(id).is_ok(),
        PrincipalType::Everyone => {
            v.push(
                "enum",
                "principal_type",
                "Input should be 'user' or 'group'",
                Value::from("everyone"),
            );
            return;
        }
    };
    if !ok {
        v.push(
            "value_error",
            "principal_id",
            format!("not a valid {} id", t.as_str()),
            Value::from(id),
        );
    }
}

/// 422 unless the principal exists in the caller's tenant (another tenant's
/// principal looks exactly like one that does not exist).
pub(crate) async fn principal_exists(
    state: &AppState,
    p: &Principal,
    t: PrincipalType,
    id: &str,
) -> ApiResult<()> {
    let tenant = p.tenant_id.to_string();
    let found = match t {
        PrincipalType::User => access::user_in_tenant(&state.db, &tenant, id).await?,
        PrincipalType::Group => access::group_in_tenant(&state.db, &tenant, id).await?,
        PrincipalType::Everyone => true,
    };
    if found {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "principal_id",
            format!("no such {} in this tenant", t.as_str()),
        )
        .into())
    }
}

/// A live share whose members and invitations the caller may manage.
async fn managed_share(state: &AppState, p: &Principal, id: ShareId) -> ApiResult<q::ShareRow> {
    drive::share(state, p, id, Need::Perm(Permission::ManagePermissions)).await
}

/// Adds a user or group to a share (MANAGE_PERMISSIONS).
#[utoipa::path(post, path = "/shares/{id}/members", request_body = AddMember, params(("id" = inline(doc::ShareId), Path)),
    responses(
        (status = 201, description = "The new membership", body = dto::Member),
        (status = 409, description = "Already a member"),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn add_member(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<ShareId>,
    ApiJson(body): ApiJson<AddMember>,
) -> ApiResult<Response> {
    let share = managed_share(&state, &p, id).await?;
    principal_exists(&state, &p, body.principal_type, &body.principal_id).await?;
    let ctx = p.context();
    let new = cmd::NewMember {
        principal_type: body.principal_type,
        principal_id: body.principal_id.clone(),
        role: body.role,
        expires_at: body.expires_at,
        by: p.user_id,
    };
    let committed = cmd::add_member(&state.bus, &ctx, id, new).await?;
    let missing = || ApiError::internal("membership not projected");
    let read = || member_read_back(&state, &p, &share.id, &body.principal_id, missing);
    respond
        .full()
        .item(
            &state,
            &committed,
            StatusCode::CREATED,
            &body.principal_id,
            read,
        )
        .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct UpdateMember {
    #[schema(value_type = Option<doc::GrantableRole>)]
    role: Option<ShareRole>,
    /// `null` makes the membership permanent.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<doc::DateTimeInput>)]
    expires_at: Option<Option<DateTime<Utc>>>,
}

impl Validate for UpdateMember {
    fn validate(&self, v: &mut Violations) {
        if self.role == Some(ShareRole::Owner) {
            v.push(
                "enum",
                "role",
                "Input should be 'admin', 'contributor' or 'reader' (transfer ownership to change the owner)",
                Value::from("owner"),
            );
        }
    }
}

/// Changes a member's role or expiry (MANAGE_PERMISSIONS).
#[utoipa::path(patch, path = "/shares/{id}/members/{principal_id}", request_body = UpdateMember,
    params(("id" = inline(doc::ShareId), Path), ("principal_id" = inline(doc::OwnerId), Path)),
    responses(
        (status = 200, description = "The membership as changed", body = dto::Member),
        (status = 409, description = "The owner's role changes only by ownership transfer"),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn update_member(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((id, principal_id)): ApiPath<(ShareId, String)>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> ApiResult<Response> {
    let share = managed_share(&state, &p, id).await?;
    let ctx = p.context();
    let committed = cmd::update_member(
        &state.bus,
        &ctx,
        id,
        principal_id.clone(),
        body.role,
        body.expires_at,
    )
    .await?;
    respond
        .full()
        .item(&state, &committed, StatusCode::OK, &principal_id, || {
            member_read_back(&state, &p, &share.id, &principal_id, || {
                ApiError::not_found("member")
            })
        })
        .await
}

/// Removes a member (anyone may remove themselves).
#[utoipa::path(delete, path = "/shares/{id}/members/{principal_id}", params(("id" = inline(doc::ShareId), Path), ("principal_id" = inline(doc::OwnerId), Path)),
    responses(
        (status = 204, description = "Removed; access ends at once"),
        (status = 409, description = "The owner cannot be removed"),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn remove_member(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((id, principal_id)): ApiPath<(ShareId, String)>,
) -> ApiResult<Response> {
    let share = drive::share(&state, &p, id, Need::Write).await?;
    // Anyone may leave a share; removing others needs MANAGE_PERMISSIONS.
    if principal_id != p.user_id.to_string() {
        require_perm(&state, &p, On::Share(&share), Permission::ManagePermissions).await?;
    }
    let ctx = p.context();
    let committed = cmd::remove_member(&state.bus, &ctx, id, principal_id).await?;
    Ok(respond.full().empty(&state, &committed).await)
}

// ---------------------------------------------------------------- invitations

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Invite {
    #[schema(min_length = 3, max_length = 320, format = Email)]
    email: String,
    #[schema(value_type = doc::GrantableRole)]
    role: ShareRole,
    #[schema(max_length = 2000)]
    message: Option<String>,
    /// Default 14.
    #[schema(minimum = 1, maximum = 365)]
    expires_in_days: Option<i64>,
}

impl Validate for Invite {
    const REQUIRED: &'static [&'static str] = &["email", "role"];
    fn validate(&self, v: &mut Violations) {
        v.length("email", &self.email, 3, 320);
        let e = self.email.trim();
        let valid = e.split_once('@').is_some_and(|(a, d)| {
            !a.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        }) && !e.contains(char::is_whitespace);
        if !valid {
            v.push(
                "value_error",
                "email",
                "not a valid email address",
                Value::from(self.email.as_str()),
            );
        }
        if self.role == ShareRole::Owner {
            v.push(
                "enum",
                "role",
                "Input should be 'admin', 'contributor' or 'reader'",
                Value::from("owner"),
            );
        }
        if let Some(m) = &self.message {
            v.length("message", m, 0, 2000);
        }
        if let Some(d) = self.expires_in_days {
            v.range("expires_in_days", d, 1, 365);
        }
    }
}

/// Invites someone by email (MANAGE_PERMISSIONS).
#[utoipa::path(post, path = "/shares/{id}/invitations", request_body = Invite, params(("id" = inline(doc::ShareId), Path)),
    responses(
        (status = 201, description = "The pending invitation", body = dto::Invitation),
        (status = 409, description = "A pending invitation for this email exists"),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn invite(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<ShareId>,
    ApiJson(body): ApiJson<Invite>,
) -> ApiResult<Response> {
    managed_share(&state, &p, id).await?;
    let ctx = p.context();
    let new = cmd::NewInvitation {
        share_id: id,
        email: body.email.trim().to_owned(),
        role: body.role,
        message: body.message,
        expires_at: ctx.now + Duration::days(body.expires_in_days.unwrap_or(14)),
        by: p.user_id,
    };
    let (invitation_id, committed) = cmd::invite(&state.bus, &ctx, new).await?;
    let inv = invitation_id.to_string();
    respond
        .full()
        .item(&state, &committed, StatusCode::CREATED, &inv, || async {
            let row = access::invitation(&state.db, &p.tenant_id.to_string(), &inv)
                .await?
                .ok_or_else(|| ApiError::internal("invitation not projected"))?;
            Ok(dto::Invitation::of(&row, Utc::now()))
        })
        .await
}

/// A share's invitations (MANAGE_PERMISSIONS).
#[utoipa::path(get, path = "/shares/{id}/invitations", params(("id" = inline(doc::ShareId), Path), Page), responses(
    (status = 200, description = "A page of invitations", body = dto::InvitationList),
    (status = 410, description = "The share is in the trash"),
))]
async fn list_invitations(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<ShareId>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<dto::InvitationList>> {
    let (limit, offset) = page.resolve()?;
    let share = drive::share(&state, &p, id, Need::Read).await?;
    require_perm(&state, &p, On::Share(&share), Permission::ManagePermissions).await?;
    let (rows, total) = access::share_invitations(&state.db, &share.id, limit, offset).await?;
    let now = Utc::now();
    Ok(Json(dto::InvitationList {
        invitations: rows.iter().map(|r| dto::Invitation::of(r, now)).collect(),
        total,
    }))
}

/// Revokes an invitation (MANAGE_PERMISSIONS).
#[utoipa::path(delete, path = "/shares/{id}/invitations/{inv_id}",
    params(("id" = inline(doc::ShareId), Path), ("inv_id" = inline(doc::InvitationId), Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 409, description = "Already accepted, declined or revoked"),
        (status = 410, description = "Expired, or the share is in the trash"),
    ),
)]
async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath((id, inv_id)): ApiPath<(ShareId, String)>,
) -> ApiResult<Response> {
    let invitation: InvitationId = path_id(&inv_id, "invitation")?;
    let share = managed_share(&state, &p, id).await?;
    access::invitation(&state.db, &p.tenant_id.to_string(), &inv_id)
        .await?
        .filter(|r| r.share_id == share.id)
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    let ctx = p.context();
    let committed = cmd::revoke_invitation(&state.bus, &ctx, invitation).await?;
    Ok(respond.full().empty(&state, &committed).await)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MineQuery {
    /// Default `pending`.
    #[param(value_type = Option<String>, pattern = "^(pending|accepted|declined|revoked)$")]
    status: Option<String>,
}

/// Invitations sent to the caller's email.
#[utoipa::path(get, path = "/users/me/invitations", params(MineQuery), responses(
    (status = 200, description = "The caller's invitations", body = dto::InvitationList),
))]
async fn my_invitations(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<MineQuery>,
) -> ApiResult<Json<dto::InvitationList>> {
    let Some(email) = &p.email else {
        return Ok(Json(dto::InvitationList {
            invitations: vec![],
            total: 0,
        }));
    };
    if let Some(s) = &q.status {
        if !["pending", "accepted", "declined", "revoked"].contains(&s.as_str()) {
            return Err(ApiError::BadRequest(
                "status must be pending, accepted, declined or revoked".into(),
            ));
        }
    }
    let rows = access::invitations_for(
        &state.db,
        &p.tenant_id.to_string(),
        email,
        Some(q.status.as_deref().unwrap_or("pending")),
    )
    .await?;
    let now = Utc::now();
    let mut invitations = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut inv = dto::Invitation::of(r, now);
        inv.share_name = state
            .share_row(&r.tenant_id, &r.share_id)
            .await?
            .map(|s| s.name);
        invitations.push(inv);
    }
    let total = invitations.len() as i64;
    Ok(Json(dto::InvitationList { invitations, total }))
}

/// The caller's own invitation (404 for anyone else's).
async fn own_invitation(state: &AppState, p: &Principal, id: InvitationId) -> ApiResult<String> {
    let email = p
        .email
        .clone()
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    access::invitation(&state.db, &p.tenant_id.to_string(), &id.to_string())
        .await?
        .filter(|r| r.email.eq_ignore_ascii_case(&email))
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok(email)
}

/// Accepts an invitation: the caller becomes a member.
#[utoipa::path(post, path = "/users/me/invitations/{id}/accept",
    params(("id" = inline(doc::InvitationId), Path)),
    responses(
        (status = 200, description = "Accepted", body = dto::InvitationAnswer),
        (status = 409, description = "Already accepted or declined"),
        (status = 410, description = "Expired or revoked"),
    ),
)]
async fn accept(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<InvitationId>,
) -> ApiResult<Response> {
    answer(&state, &p, respond, id, true).await
}

/// Declines an invitation.
#[utoipa::path(post, path = "/users/me/invitations/{id}/decline",
    params(("id" = inline(doc::InvitationId), Path)),
    responses(
        (status = 200, description = "Declined", body = dto::InvitationAnswer),
        (status = 409, description = "Already accepted or declined"),
        (status = 410, description = "Expired or revoked"),
    ),
)]
async fn decline(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<InvitationId>,
) -> ApiResult<Response> {
    answer(&state, &p, respond, id, false).await
}

/// Accepts or declines the caller's own invitation.
async fn answer(
    state: &AppState,
    p: &Principal,
    respond: Respond,
    id: InvitationId,
    accept: bool,
) -> ApiResult<Response> {
    let email = own_invitation(state, p, id).await?;
    let ctx = p.context();
    let (inv, committed) =
        cmd::answer_invitation(&state.bus, &ctx, id, &email, p.user_id, accept).await?;
    let answer = dto::InvitationAnswer {
        id: id.to_string(),
        status: if accept { "accepted" } else { "declined" },
        share_id: inv.share_id.map(|s| s.to_string()),
        // Only an acceptance names the role it granted.
        role: accept.then(|| inv.role.map(ShareRole::as_str)),
    };
    let id = answer.id.clone();
    let read = || async { Ok(answer) };
    respond
        .full()
        .item(state, &committed, StatusCode::OK, &id, read)
        .await
}

// ------------------------------------------------------------ the caller's shares

/// The shares the caller holds a role on, with that role.
#[utoipa::path(get, path = "/users/me/shares", params(super::shares::ListQuery), responses(
    (status = 200, description = "A page of the caller's shares", body = dto::MyShareList),
))]
async fn my_shares(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<super::shares::ListQuery>,
) -> ApiResult<Json<dto::MyShareList>> {
    require_read(&p)?;
    let (limit, offset) = q.page()?;
    // Shares the caller holds a role on (tenant admins too: "my" shares).
    let principals = p.principal_ids();
    let (rows, total) = q::shares(
        &state.db,
        &p.tenant_id.to_string(),
        Some(&principals),
        q.include_trashed.unwrap_or(false),
        limit,
        offset,
    )
    .await?;
    let used = super::drive::used_bytes_of(&state, &rows).await?;
    let mut shares = Vec::with_capacity(rows.len());
    for (r, used_bytes) in rows.iter().zip(used) {
        let role = super::drive::share_role_of(&state, &p, &r.id, &r.owner_id).await?;
        shares.push(dto::MyShare::of(r, used_bytes, role.map(ShareRole::as_str)));
    }
    Ok(Json(dto::MyShareList { shares, total }))
}
