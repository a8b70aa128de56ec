//! Share members and invitations, and the invitee's side of invitations.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use scaidrive_domain::access::{Permission, PrincipalType, ShareRole};
use scaidrive_domain::drive::share::{Share, ShareCommand};
use scaidrive_domain::id::{GroupId, InvitationId, ShareId, UserId};
use scaidrive_domain::sharing::{Invitation, InvitationCommand};
use scaidrive_domain::{Aggregate, DomainError};
use scaidrive_projections::access::{self, InvitationRow, MemberRow};
use scaidrive_projections::drive_queries as q;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use uuid::Uuid;

use super::drive::{live_share, path_id, require_perm, require_read, require_write, On, Page};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::openapi as doc;
use super::principal::Principal;
use super::state::AppState;
use super::{ts, Positioned};
use crate::command::sharing::accept_invitation;

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

async fn member_json(state: &AppState, tenant: &str, m: &MemberRow) -> ApiResult<Value> {
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
    Ok(json!({
        "share_id": m.share_id,
        "principal_type": m.principal_type,
        "principal_id": m.principal_id,
        "name": name,
        "email": email,
        "role": m.role,
        "expires_at": m.expires_at.map(ts),
        "is_expired": m.expires_at.is_some_and(|e| e <= Utc::now()),
        "added_by": m.added_by,
        "added_at": ts(m.added_at),
    }))
}

/// A share's members (the owner included).
#[utoipa::path(get, path = "/shares/{id}/members", params(("id" = inline(doc::ShareId), Path), Page), responses(
    (status = 200, description = "A page of members", body = doc::MemberList),
    (status = 410, description = "The share is in the trash"),
))]
async fn list_members(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Value>> {
    let _: ShareId = path_id(&id, "share")?;
    let (limit, offset) = page.resolve()?;
    live_share(&state, &p, &id).await?;
    require_read(&p)?;
    let (rows, total) = access::members(&state.db, &id, limit, offset).await?;
    let tenant = p.tenant_id.to_string();
    let mut members = Vec::with_capacity(rows.len());
    for m in &rows {
        members.push(member_json(&state, &tenant, m).await?);
    }
    Ok(Json(json!({ "members": members, "total": total })))
}

/// One member of a share.
#[utoipa::path(get, path = "/shares/{id}/members/{principal_id}", params(("id" = inline(doc::ShareId), Path), ("principal_id" = inline(doc::OwnerId), Path)),
    responses(
        (status = 200, description = "The membership", body = doc::Member),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn read_member(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((id, principal_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let _: ShareId = path_id(&id, "share")?;
    live_share(&state, &p, &id).await?;
    require_read(&p)?;
    let m = access::member(&state.db, &id, &principal_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(Json(
        member_json(&state, &p.tenant_id.to_string(), &m).await?,
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
                json!("owner"),
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
                json!("everyone"),
            );
            return;
        }
    };
    if !ok {
        v.push(
            "value_error",
            "principal_id",
            format!("not a valid {} id", t.as_str()),
            json!(id),
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
async fn managed_share(state: &AppState, p: &Principal, id: &str) -> ApiResult<ShareId> {
    let share_id: ShareId = path_id(id, "share")?;
    let share = live_share(state, p, id).await?;
    require_write(p)?;
    require_perm(state, p, On::Share(&share), Permission::ManagePermissions).await?;
    Ok(share_id)
}

/// Adds a user or group to a share (MANAGE_PERMISSIONS).
#[utoipa::path(post, path = "/shares/{id}/members", request_body = AddMember, params(("id" = inline(doc::ShareId), Path)),
    responses(
        (status = 201, description = "The new membership", body = doc::Member),
        (status = 409, description = "Already a member"),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn add_member(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddMember>,
) -> ApiResult<impl IntoResponse> {
    let share_id = managed_share(&state, &p, &id).await?;
    principal_exists(&state, &p, body.principal_type, &body.principal_id).await?;
    let ctx = p.context();
    let cmd = ShareCommand::AddMember {
        principal_type: body.principal_type,
        principal_id: body.principal_id.clone(),
        role: body.role,
        expires_at: body.expires_at,
        by: p.user_id,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Share, _>(&share_id.to_string(), &ctx, |s| s.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    let m = access::member(&state.db, &id, &body.principal_id)
        .await?
        .ok_or_else(|| ApiError::internal("membership not projected"))?;
    let body = member_json(&state, &p.tenant_id.to_string(), &m).await?;
    Ok(Positioned(
        committed.position,
        (StatusCode::CREATED, Json(body)),
    ))
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
                json!("owner"),
            );
        }
    }
}

/// Changes a member's role or expiry (MANAGE_PERMISSIONS).
#[utoipa::path(patch, path = "/shares/{id}/members/{principal_id}", request_body = UpdateMember,
    params(("id" = inline(doc::ShareId), Path), ("principal_id" = inline(doc::OwnerId), Path)),
    responses(
        (status = 200, description = "The membership as changed", body = doc::Member),
        (status = 409, description = "The owner's role changes only by ownership transfer"),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn update_member(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((id, principal_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> ApiResult<Positioned<Json<Value>>> {
    let share_id = managed_share(&state, &p, &id).await?;
    let ctx = p.context();
    let cmd = ShareCommand::UpdateMember {
        principal_id: principal_id.clone(),
        role: body.role,
        expires_at: body.expires_at,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Share, _>(&share_id.to_string(), &ctx, |s| s.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    let m = access::member(&state.db, &id, &principal_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(Positioned(
        committed.position,
        Json(member_json(&state, &p.tenant_id.to_string(), &m).await?),
    ))
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
    ApiPath((id, principal_id)): ApiPath<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let share_id: ShareId = path_id(&id, "share")?;
    let share = live_share(&state, &p, &id).await?;
    require_write(&p)?;
    // Anyone may leave a share; removing others needs MANAGE_PERMISSIONS.
    if principal_id != p.user_id.to_string() {
        require_perm(&state, &p, On::Share(&share), Permission::ManagePermissions).await?;
    }
    let ctx = p.context();
    let cmd = ShareCommand::RemoveMember {
        principal_id,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Share, _>(&share_id.to_string(), &ctx, |s| s.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    Ok(Positioned(committed.position, StatusCode::NO_CONTENT))
}

// ---------------------------------------------------------------- invitations

fn invitation_json(r: &InvitationRow) -> Value {
    // Expiry is evaluated when read: no job needs to flip the status.
    let status = if r.status == "pending" && r.expires_at <= Utc::now() {
        "expired"
    } else {
        r.status.as_str()
    };
    json!({
        "id": r.id,
        "share_id": r.share_id,
        "email": r.email,
        "role": r.role,
        "message": r.message,
        "status": status,
        "expires_at": ts(r.expires_at),
        "invited_by": r.invited_by,
        "created_at": ts(r.created_at),
        "responded_at": r.responded_at.map(ts),
    })
}

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
                json!(self.email),
            );
        }
        if self.role == ShareRole::Owner {
            v.push(
                "enum",
                "role",
                "Input should be 'admin', 'contributor' or 'reader'",
                json!("owner"),
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
        (status = 201, description = "The pending invitation", body = doc::Invitation),
        (status = 409, description = "A pending invitation for this email exists"),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn invite(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Invite>,
) -> ApiResult<impl IntoResponse> {
    let share_id = managed_share(&state, &p, &id).await?;
    let ctx = p.context();
    let invitation_id = InvitationId::from_uuid(Uuid::now_v7());
    let cmd = InvitationCommand::Create {
        invitation_id,
        share_id,
        email: body.email.trim().to_owned(),
        role: body.role,
        message: body.message,
        expires_at: ctx.now + Duration::days(body.expires_in_days.unwrap_or(14)),
        by: p.user_id,
        at: ctx.now,
    };
    let (_, committed) = state
        .bus
        .execute::<Invitation, _>(&invitation_id.to_string(), &ctx, |s| s.state.decide(&cmd))
        .await?;
    state.caught_up_to(&committed).await;
    let row = access::invitation(
        &state.db,
        &p.tenant_id.to_string(),
        &invitation_id.to_string(),
    )
    .await?
    .ok_or_else(|| ApiError::internal("invitation not projected"))?;
    Ok(Positioned(
        committed.position,
        (StatusCode::CREATED, Json(invitation_json(&row))),
    ))
}

/// A share's invitations (MANAGE_PERMISSIONS).
#[utoipa::path(get, path = "/shares/{id}/invitations", params(("id" = inline(doc::ShareId), Path), Page), responses(
    (status = 200, description = "A page of invitations", body = doc::InvitationList),
    (status = 410, description = "The share is in the trash"),
))]
async fn list_invitations(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Value>> {
    let _: ShareId = path_id(&id, "share")?;
    let (limit, offset) = page.resolve()?;
    let share = live_share(&state, &p, &id).await?;
    require_read(&p)?;
    require_perm(&state, &p, On::Share(&share), Permission::ManagePermissions).await?;
    let (rows, total) = access::share_invitations(&state.db, &id, limit, offset).await?;
    Ok(Json(json!({
        "invitations": rows.iter().map(invitation_json).collect::<Vec<_>>(),
        "total": total,
    })))
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
    ApiPath((id, inv_id)): ApiPath<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let _: ShareId = path_id(&id, "share")?;
    let _: InvitationId = path_id(&inv_id, "invitation")?;
    let share = live_share(&state, &p, &id).await?;
    require_write(&p)?;
    require_perm(&state, &p, On::Share(&share), Permission::ManagePermissions).await?;
    let row = access::invitation(&state.db, &p.tenant_id.to_string(), &inv_id)
        .await?
        .filter(|r| r.share_id == id)
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    let ctx = p.context();
    let (_, committed) = state
        .bus
        .execute::<Invitation, _>(&row.id, &ctx, |s| {
            s.state.decide(&InvitationCommand::Revoke { at: ctx.now })
        })
        .await?;
    state.caught_up_to(&committed).await;
    Ok(Positioned(committed.position, StatusCode::NO_CONTENT))
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
    (status = 200, description = "The caller's invitations", body = doc::InvitationList),
))]
async fn my_invitations(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<MineQuery>,
) -> ApiResult<Json<Value>> {
    let Some(email) = &p.email else {
        return Ok(Json(json!({ "invitations": [], "total": 0 })));
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
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut v = invitation_json(r);
        if let Some(s) = state.share_row(&r.tenant_id, &r.share_id).await? {
            v["share_name"] = json!(s.name);
        }
        out.push(v);
    }
    let total = out.len();
    Ok(Json(json!({ "invitations": out, "total": total })))
}

/// The caller's own invitation (404 for anyone else's).
async fn own_invitation(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> ApiResult<(InvitationId, String)> {
    let inv_id: InvitationId = path_id(id, "invitation")?;
    let email = p
        .email
        .clone()
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    access::invitation(&state.db, &p.tenant_id.to_string(), id)
        .await?
        .filter(|r| r.email.eq_ignore_ascii_case(&email))
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok((inv_id, email))
}

/// Accepts an invitation: the caller becomes a member.
#[utoipa::path(post, path = "/users/me/invitations/{id}/accept",
    params(("id" = inline(doc::InvitationId), Path)),
    responses(
        (status = 200, description = "Accepted", body = doc::InvitationAnswer),
        (status = 409, description = "Already accepted or declined"),
        (status = 410, description = "Expired or revoked"),
    ),
)]
async fn accept(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Positioned<Json<Value>>> {
    let (inv_id, email) = own_invitation(&state, &p, &id).await?;
    let ctx = p.context();
    let (inv, committed) = accept_invitation(&state.bus, &ctx, inv_id, &email, p.user_id).await?;
    state.caught_up_to(&committed).await;
    Ok(Positioned(
        committed.position,
        Json(json!({
            "id": id,
            "status": "accepted",
            "share_id": inv.share_id,
            "role": inv.role.map(ShareRole::as_str),
        })),
    ))
}

/// Declines an invitation.
#[utoipa::path(post, path = "/users/me/invitations/{id}/decline",
    params(("id" = inline(doc::InvitationId), Path)),
    responses(
        (status = 200, description = "Declined", body = doc::InvitationAnswer),
        (status = 409, description = "Already accepted or declined"),
        (status = 410, description = "Expired or revoked"),
    ),
)]
async fn decline(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Positioned<Json<Value>>> {
    let (inv_id, email) = own_invitation(&state, &p, &id).await?;
    let ctx = p.context();
    let (loaded, committed) = state
        .bus
        .execute::<Invitation, _>(&inv_id.to_string(), &ctx, |s| {
            s.state.decide(&InvitationCommand::Decline {
                email: email.clone(),
                user_id: p.user_id,
                at: ctx.now,
            })
        })
        .await?;
    state.caught_up_to(&committed).await;
    Ok(Positioned(
        committed.position,
        Json(json!({ "id": id, "status": "declined", "share_id": loaded.share_id })),
    ))
}

// ------------------------------------------------------------ the caller's shares

/// The shares the caller holds a role on, with that role.
#[utoipa::path(get, path = "/users/me/shares", params(super::shares::ListQuery), responses(
    (status = 200, description = "A page of the caller's shares", body = doc::MyShareList),
))]
async fn my_shares(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<super::shares::ListQuery>,
) -> ApiResult<Json<Value>> {
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
        shares.push(json!({
            "id": r.id,
            "name": r.name,
            "type": r.share_type,
            "share_type": r.share_type,
            "role": role.map(ShareRole::as_str),
            "owner_id": r.owner_id,
            "quota_bytes": r.quota_bytes,
            "used_bytes": used_bytes,
            "is_deleted": r.is_deleted,
            "created_at": ts(r.created_at),
        }));
    }
    Ok(Json(json!({ "shares": shares, "total": total })))
}
