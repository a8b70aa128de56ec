//! Quotas (SPEC §4.8): limits per partner, tenant, group, user and share,
//! exemptions, and usage from the quota read model (`recalculate` recomputes
//! the caller's tenant's rows of it from the tenant's events first).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use scaidrive_domain::access::Permission;
use scaidrive_domain::id::{GroupId, PartnerId, TenantId, UserId};
use scaidrive_domain::quota::account::QuotaTarget;
use scaidrive_domain::quota::{LimitType, QuotaAccount, QuotaLevel, QuotaLimit};
use scaidrive_projections::checkpoint;
use scaidrive_projections::quota as rm;
use serde::Deserialize;

use super::drive::{live_share, path_id, require_perm, On, Page};
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Validate, Violations};
use super::principal::Principal;
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use crate::auth::Scope;
use crate::command::quota as cmd;
use crate::command::Committed;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/quotas/tenant", get(get_own_tenant).put(put_own_tenant))
        .route("/quotas/partner", get(get_own_partner).put(put_own_partner))
        .route("/quotas/partners/{id}", get(get_partner).put(put_partner))
        .route("/quotas/tenants/{id}", get(get_tenant).put(put_tenant))
        .route("/quotas/users", get(list_users))
        .route(
            "/quotas/users/{id}",
            get(get_user).put(put_user).delete(delete_user),
        )
        .route("/quotas/users/{id}/exempt", post(exempt_user))
        .route("/quotas/groups", get(list_groups))
        .route(
            "/quotas/groups/{id}",
            get(get_group).put(put_group).delete(delete_group),
        )
        .route("/quotas/groups/{id}/exempt", post(exempt_group))
        .route("/quotas/shares/{id}", get(get_share).put(put_share))
        .route("/quotas/usage/tenant", get(usage_tenant))
        .route("/quotas/usage/users", get(usage_users))
        .route("/quotas/usage/users/{id}", get(usage_user))
        .route("/quotas/usage/shares/{id}", get(usage_share))
}

/// 403 unless the caller is a tenant admin: a token that explicitly names an
/// admin scope, or a stored tenant admin with an admin-capable token.
pub(crate) fn require_tenant_admin(p: &Principal) -> ApiResult<()> {
    p.require(Scope::TenantAdmin)?;
    if !(p.is_tenant_admin || p.scopes.explicit_tenant_admin()) {
        return Err(ApiError::Forbidden(
            "tenant administrator role required".into(),
        ));
    }
    Ok(())
}

/// When the quota read model's figures were computed: when it was last
/// brought up to date with the log (its checkpoint last moved), not the time
/// of the request. Before its first batch, now.
async fn figures_at(state: &AppState) -> ApiResult<DateTime<Utc>> {
    Ok(checkpoint::updated_at(&state.db, "quota")
        .await?
        .unwrap_or_else(Utc::now))
}

async fn show(state: &AppState, t: &QuotaTarget, default: Option<u64>) -> ApiResult<dto::Quota> {
    let acc = state
        .bus
        .load::<QuotaAccount>(&t.quota_id.to_string())
        .await?;
    let at = figures_at(state).await?;
    let u = rm::usage(&state.db, t.target_type, &t.target_id).await?;
    // An account created by another tenant's writes keeps its own tenant.
    let t = acc.state.target.clone().unwrap_or_else(|| t.clone());
    Ok(dto::Quota::new(&t, &acc.state, default, &u, at))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct QuotaBody {
    #[schema(minimum = 0)]
    limit_bytes: i64,
    /// Default `hard`.
    #[serde(default)]
    #[schema(value_type = doc::LimitTypeDoc)]
    limit_type: LimitType,
    /// Percent; default 70. The three thresholds must ascend strictly.
    #[schema(minimum = 1, maximum = 100)]
    warning_threshold_1: Option<i64>,
    /// Percent; default 85.
    #[schema(minimum = 1, maximum = 100)]
    warning_threshold_2: Option<i64>,
    /// Percent; default 95.
    #[schema(minimum = 1, maximum = 100)]
    warning_threshold_3: Option<i64>,
    /// Soft limits: days over the limit before it blocks; default 7.
    #[schema(minimum = 0, maximum = 365)]
    grace_period_days: Option<i64>,
    /// Soft limits: how far over the limit writes may go; default 10.
    #[schema(minimum = 0, maximum = 100)]
    grace_extra_percent: Option<i64>,
}

impl Validate for QuotaBody {
    const REQUIRED: &'static [&'static str] = &["limit_bytes"];
    fn validate(&self, v: &mut Violations) {
        v.range("limit_bytes", self.limit_bytes, 0, i64::MAX);
        for (name, value) in [
            ("warning_threshold_1", self.warning_threshold_1),
            ("warning_threshold_2", self.warning_threshold_2),
            ("warning_threshold_3", self.warning_threshold_3),
        ] {
            if let Some(x) = value {
                v.range(name, x, 1, 100);
            }
        }
        if let Some(x) = self.grace_period_days {
            v.range("grace_period_days", x, 0, 365);
        }
        if let Some(x) = self.grace_extra_percent {
            v.range("grace_extra_percent", x, 0, 100);
        }
    }
}

impl QuotaBody {
    fn limit(&self) -> QuotaLimit {
        let d = QuotaLimit::hard(self.limit_bytes.max(0) as u64);
        let pct = |v: Option<i64>, dflt: u8| v.map(|x| x.clamp(0, 100) as u8).unwrap_or(dflt);
        QuotaLimit {
            limit_type: self.limit_type,
            warning_thresholds: [
                pct(self.warning_threshold_1, d.warning_thresholds[0]),
                pct(self.warning_threshold_2, d.warning_thresholds[1]),
                pct(self.warning_threshold_3, d.warning_thresholds[2]),
            ],
            grace_period_days: self
                .grace_period_days
                .map(|x| x.clamp(0, 365) as u32)
                .unwrap_or(d.grace_period_days),
            grace_extra_percent: self
                .grace_extra_percent
                .map(|x| x.clamp(0, 100) as u32)
                .unwrap_or(d.grace_extra_percent),
            ..d
        }
    }
}

/// Sets a limit once the read model includes every write so far (the
/// baseline the account starts tracking from), then answers the quota.
async fn put_limit(
    state: &AppState,
    p: &Principal,
    respond: Respond,
    t: QuotaTarget,
    body: &QuotaBody,
    default: Option<u64>,
) -> ApiResult<Response> {
    let head = state.store.head().await?;
    state.caught_up(Some(head)).await;
    let (_, committed) =
        cmd::set_limit(&state.bus, &state.db, &p.context(), t.clone(), body.limit()).await?;
    answer(state, respond, &committed, &t, default).await
}

/// Answers a write of `t`'s account with the quota as it now stands.
async fn answer(
    state: &AppState,
    respond: Respond,
    committed: &Committed,
    t: &QuotaTarget,
    default: Option<u64>,
) -> ApiResult<Response> {
    let id = t.quota_id.to_string();
    let read = || show(state, t, default);
    respond
        .full()
        .item(state, committed, StatusCode::OK, &id, read)
        .await
}

// Tenant and partner levels.

fn tenant_target(id: TenantId) -> QuotaTarget {
    cmd::target(QuotaLevel::Tenant, &id.to_string(), Some(id))
}

fn partner_target(id: &str) -> QuotaTarget {
    cmd::target(QuotaLevel::Partner, id, None)
}

/// The caller's tenant quota (tenant admins).
#[utoipa::path(get, path = "/quotas/tenant", responses(
    (status = 200, description = "The quota with its usage", body = dto::Quota),
))]
async fn get_own_tenant(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<dto::Quota>> {
    require_tenant_admin(&p)?;
    Ok(Json(show(&state, &tenant_target(p.tenant_id), None).await?))
}

/// Sets the caller's tenant limit (partner admins).
#[utoipa::path(put, path = "/quotas/tenant", request_body = QuotaBody, responses(
    (status = 200, description = "The quota as set", body = dto::Quota),
))]
async fn put_own_tenant(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Response> {
    p.require(Scope::PartnerAdmin)?;
    put_limit(&state, &p, respond, tenant_target(p.tenant_id), &body, None).await
}

/// The caller's partner quota (partner admins).
#[utoipa::path(get, path = "/quotas/partner", responses(
    (status = 200, description = "The quota with its usage", body = dto::Quota),
))]
async fn get_own_partner(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<dto::Quota>> {
    p.require(Scope::PartnerAdmin)?;
    Ok(Json(
        show(&state, &partner_target(&p.partner_id.to_string()), None).await?,
    ))
}

/// Sets the caller's partner limit (`*` scope only).
#[utoipa::path(put, path = "/quotas/partner", request_body = QuotaBody, responses(
    (status = 200, description = "The quota as set", body = dto::Quota),
))]
async fn put_own_partner(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Response> {
    p.require(Scope::All)?;
    let t = partner_target(&p.partner_id.to_string());
    put_limit(&state, &p, respond, t, &body, None).await
}

/// A partner's quota (`*` scope only).
#[utoipa::path(get, path = "/quotas/partners/{id}", params(("id" = inline(doc::PartnerId), Path)), responses(
    (status = 200, description = "The quota with its usage", body = dto::Quota),
))]
async fn get_partner(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::Quota>> {
    let _: PartnerId = path_id(&id, "partner")?;
    p.require(Scope::All)?;
    Ok(Json(show(&state, &partner_target(&id), None).await?))
}

/// Sets a partner's limit (`*` scope only).
#[utoipa::path(put, path = "/quotas/partners/{id}", request_body = QuotaBody,
    params(("id" = inline(doc::PartnerId), Path)),
    responses((status = 200, description = "The quota as set", body = dto::Quota)),
)]
async fn put_partner(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Response> {
    let _: PartnerId = path_id(&id, "partner")?;
    p.require(Scope::All)?;
    put_limit(&state, &p, respond, partner_target(&id), &body, None).await
}

/// A tenant of the caller's partner (404 for any other; `*` reaches all).
async fn partner_tenant(state: &AppState, p: &Principal, id: &str) -> ApiResult<TenantId> {
    let tid: TenantId = path_id(id, "tenant")?;
    p.require(Scope::PartnerAdmin)?;
    let partner = rm::tenant_partner(&state.db, id).await?;
    match partner {
        Some(pid) if pid == p.partner_id.to_string() || p.scopes.allows(Scope::All) => Ok(tid),
        _ => Err(ApiError::not_found("tenant")),
    }
}

/// A tenant's quota (partner admins, their partner's tenants).
#[utoipa::path(get, path = "/quotas/tenants/{id}", params(("id" = inline(doc::TenantId), Path)), responses(
    (status = 200, description = "The quota with its usage", body = dto::Quota),
))]
async fn get_tenant(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::Quota>> {
    let tid = partner_tenant(&state, &p, &id).await?;
    Ok(Json(show(&state, &tenant_target(tid), None).await?))
}

/// Sets a tenant's limit (partner admins).
#[utoipa::path(put, path = "/quotas/tenants/{id}", request_body = QuotaBody,
    params(("id" = inline(doc::TenantId), Path)),
    responses((status = 200, description = "The quota as set", body = dto::Quota)),
)]
async fn put_tenant(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Response> {
    let tid = partner_tenant(&state, &p, &id).await?;
    put_limit(&state, &p, respond, tenant_target(tid), &body, None).await
}

// User and group levels.

/// A user of the caller's tenant (404 otherwise).
async fn tenant_user(state: &AppState, p: &Principal, id: &str) -> ApiResult<QuotaTarget> {
    let _: UserId = path_id(id, "user")?;
    scaidrive_projections::tenancy::user(&state.db, &p.tenant_id.to_string(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(cmd::target(QuotaLevel::User, id, Some(p.tenant_id)))
}

/// A group of the caller's tenant (404 for any other id).
async fn tenant_group(state: &AppState, p: &Principal, id: &str) -> ApiResult<QuotaTarget> {
    let _: GroupId = path_id(id, "group")?;
    if !scaidrive_projections::access::group_in_tenant(&state.db, &p.tenant_id.to_string(), id)
        .await?
    {
        return Err(ApiError::not_found("group"));
    }
    Ok(cmd::target(QuotaLevel::Group, id, Some(p.tenant_id)))
}

async fn list_level(
    state: &AppState,
    p: &Principal,
    level: QuotaLevel,
    q: &Page,
) -> ApiResult<Json<dto::QuotaList>> {
    require_tenant_admin(p)?;
    let (limit, offset) = q.resolve()?;
    let (rows, total) =
        rm::accounts(&state.db, &p.tenant_id.to_string(), level, limit, offset).await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let t = cmd::target(level, &r.target_id, Some(p.tenant_id));
        items.push(show(state, &t, None).await?);
    }
    Ok(Json(dto::QuotaList {
        quotas: items,
        total,
    }))
}

/// The tenant's user quotas (tenant admins).
#[utoipa::path(get, path = "/quotas/users", params(Page), responses(
    (status = 200, description = "A page of quotas", body = dto::QuotaList),
))]
async fn list_users(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult<Json<dto::QuotaList>> {
    list_level(&state, &p, QuotaLevel::User, &q).await
}

/// The tenant's group quotas (tenant admins).
#[utoipa::path(get, path = "/quotas/groups", params(Page), responses(
    (status = 200, description = "A page of quotas", body = dto::QuotaList),
))]
async fn list_groups(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult<Json<dto::QuotaList>> {
    list_level(&state, &p, QuotaLevel::Group, &q).await
}

/// A user's quota (the user, or tenant admins).
#[utoipa::path(get, path = "/quotas/users/{id}", params(("id" = inline(doc::UserId), Path)), responses(
    (status = 200, description = "The quota with its usage", body = dto::Quota),
))]
async fn get_user(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::Quota>> {
    let t = tenant_user(&state, &p, &id).await?;
    if id != p.user_id.to_string() {
        require_tenant_admin(&p)?;
    }
    Ok(Json(show(&state, &t, None).await?))
}

/// Sets a user's limit (tenant admins).
#[utoipa::path(put, path = "/quotas/users/{id}", request_body = QuotaBody,
    params(("id" = inline(doc::UserId), Path)),
    responses((status = 200, description = "The quota as set", body = dto::Quota)),
)]
async fn put_user(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Response> {
    let t = tenant_user(&state, &p, &id).await?;
    require_tenant_admin(&p)?;
    put_limit(&state, &p, respond, t, &body, None).await
}

async fn remove(
    state: &AppState,
    p: &Principal,
    respond: Respond,
    t: &QuotaTarget,
) -> ApiResult<Response> {
    require_tenant_admin(p)?;
    let committed = cmd::remove_limit(&state.bus, &p.context(), t).await?;
    Ok(respond.full().empty(state, &committed).await)
}

/// Removes a user's limit (tenant admins).
#[utoipa::path(delete, path = "/quotas/users/{id}", params(("id" = inline(doc::UserId), Path)), responses(
    (status = 204, description = "Unlimited again"),
))]
async fn delete_user(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let t = tenant_user(&state, &p, &id).await?;
    remove(&state, &p, respond, &t).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ExemptBody {
    exempt: bool,
    #[schema(min_length = 1, max_length = 1000)]
    reason: Option<String>,
}

impl Validate for ExemptBody {
    const REQUIRED: &'static [&'static str] = &["exempt"];
    fn validate(&self, v: &mut Violations) {
        if let Some(r) = &self.reason {
            v.length("reason", r, 1, 1000);
        }
    }
}

async fn exempt(
    state: &AppState,
    p: &Principal,
    respond: Respond,
    t: QuotaTarget,
    body: ExemptBody,
) -> ApiResult<Response> {
    require_tenant_admin(p)?;
    if !body.exempt {
        let head = state.store.head().await?;
        state.caught_up(Some(head)).await;
    }
    let reason = body.reason.filter(|_| body.exempt);
    let (_, committed) = cmd::set_exempt(
        &state.bus,
        &state.db,
        &p.context(),
        t.clone(),
        body.exempt,
        reason,
    )
    .await?;
    answer(state, respond, &committed, &t, None).await
}

/// Exempts a user from their limit, or not (tenant admins).
#[utoipa::path(post, path = "/quotas/users/{id}/exempt", request_body = ExemptBody,
    params(("id" = inline(doc::UserId), Path)),
    responses((status = 200, description = "The quota", body = dto::Quota)),
)]
async fn exempt_user(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ExemptBody>,
) -> ApiResult<Response> {
    let t = tenant_user(&state, &p, &id).await?;
    exempt(&state, &p, respond, t, body).await
}

/// A group's quota (tenant admins).
#[utoipa::path(get, path = "/quotas/groups/{id}", params(("id" = inline(doc::GroupId), Path)), responses(
    (status = 200, description = "The quota with its usage", body = dto::Quota),
))]
async fn get_group(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::Quota>> {
    let t = tenant_group(&state, &p, &id).await?;
    require_tenant_admin(&p)?;
    Ok(Json(show(&state, &t, None).await?))
}

/// Sets a group's limit (tenant admins).
#[utoipa::path(put, path = "/quotas/groups/{id}", request_body = QuotaBody,
    params(("id" = inline(doc::GroupId), Path)),
    responses((status = 200, description = "The quota as set", body = dto::Quota)),
)]
async fn put_group(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Response> {
    let t = tenant_group(&state, &p, &id).await?;
    require_tenant_admin(&p)?;
    put_limit(&state, &p, respond, t, &body, None).await
}

/// Removes a group's limit (tenant admins).
#[utoipa::path(delete, path = "/quotas/groups/{id}", params(("id" = inline(doc::GroupId), Path)), responses(
    (status = 204, description = "Unlimited again"),
))]
async fn delete_group(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let t = tenant_group(&state, &p, &id).await?;
    remove(&state, &p, respond, &t).await
}

/// Exempts a group from its limit, or not (tenant admins).
#[utoipa::path(post, path = "/quotas/groups/{id}/exempt", request_body = ExemptBody,
    params(("id" = inline(doc::GroupId), Path)),
    responses((status = 200, description = "The quota", body = dto::Quota)),
)]
async fn exempt_group(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ExemptBody>,
) -> ApiResult<Response> {
    let t = tenant_group(&state, &p, &id).await?;
    exempt(&state, &p, respond, t, body).await
}

// Share level.

/// The share's target and its default limit (share `quota_bytes`, else the
/// tenant's `default_share_quota_bytes`); gated by MANAGE_PERMISSIONS (or a
/// tenant admin), or `need` for reads.
async fn share_target(
    state: &AppState,
    p: &Principal,
    id: &str,
    need: Permission,
) -> ApiResult<(QuotaTarget, Option<u64>)> {
    let share_id = path_id(id, "share")?;
    let row = live_share(state, p, id).await?;
    if !p.is_tenant_admin {
        require_perm(state, p, On::Share(&row), need).await?;
    }
    let default = cmd::levels_for_share(&state.bus, share_id)
        .await?
        .into_iter()
        .find(|r| r.target.target_type == QuotaLevel::Share)
        .and_then(|r| r.default_limit);
    Ok((
        cmd::target(QuotaLevel::Share, id, Some(p.tenant_id)),
        default,
    ))
}

/// A share's quota (MANAGE_PERMISSIONS or tenant admins).
#[utoipa::path(get, path = "/quotas/shares/{id}", params(("id" = inline(doc::ShareId), Path)), responses(
    (status = 200, description = "The quota with its usage", body = dto::Quota),
    (status = 410, description = "The share is in the trash"),
))]
async fn get_share(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::Quota>> {
    let (t, default) = share_target(&state, &p, &id, Permission::ManagePermissions).await?;
    Ok(Json(show(&state, &t, default).await?))
}

/// Sets a share's limit (MANAGE_PERMISSIONS or tenant admins).
#[utoipa::path(put, path = "/quotas/shares/{id}", request_body = QuotaBody,
    params(("id" = inline(doc::ShareId), Path)),
    responses(
        (status = 200, description = "The quota as set", body = dto::Quota),
        (status = 410, description = "The share is in the trash"),
    ),
)]
async fn put_share(
    State(state): State<AppState>,
    p: Principal,
    respond: Respond,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<QuotaBody>,
) -> ApiResult<Response> {
    let (t, default) = share_target(&state, &p, &id, Permission::ManagePermissions).await?;
    put_limit(&state, &p, respond, t, &body, default).await
}

// Usage.

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Recalculate {
    /// Recompute the caller's tenant's usage from its events first (other
    /// tenants' figures are not touched).
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    recalculate: bool,
}

impl Validate for Recalculate {}

/// The tenant's usage (tenant admins).
#[utoipa::path(get, path = "/quotas/usage/tenant", params(Recalculate), responses(
    (status = 200, description = "Usage", body = dto::Usage),
))]
async fn usage_tenant(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<Recalculate>,
) -> ApiResult<Json<dto::Usage>> {
    require_tenant_admin(&p)?;
    let id = p.tenant_id.to_string();
    let at = if q.recalculate {
        state
            .projector
            .recompute_tenant("quota", &id)
            .await
            .map_err(|e| match e {
                crate::projector::ProjectorError::Store(e) => ApiError::from(e),
                // Logged where it failed; the live figures are untouched.
                _ => ApiError::Unavailable(
                    "the tenant's usage could not be recomputed now; try again".into(),
                ),
            })?;
        Utc::now()
    } else {
        figures_at(&state).await?
    };
    let u = rm::usage(&state.db, QuotaLevel::Tenant, &id).await?;
    Ok(Json(dto::Usage::new(QuotaLevel::Tenant, &id, &u, at)))
}

/// Every user's usage (tenant admins).
#[utoipa::path(get, path = "/quotas/usage/users", params(Page), responses(
    (status = 200, description = "A page of usage", body = dto::UsageList),
))]
async fn usage_users(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult<Json<dto::UsageList>> {
    require_tenant_admin(&p)?;
    let (limit, offset) = q.resolve()?;
    let at = figures_at(&state).await?;
    let (ids, total) = rm::user_targets(&state.db, &p.tenant_id.to_string(), limit, offset).await?;
    let mut usage = Vec::with_capacity(ids.len());
    for id in ids {
        let u = rm::usage(&state.db, QuotaLevel::User, &id).await?;
        usage.push(dto::Usage::new(QuotaLevel::User, &id, &u, at));
    }
    Ok(Json(dto::UsageList { usage, total }))
}

/// A user's usage (the user, or tenant admins).
#[utoipa::path(get, path = "/quotas/usage/users/{id}", params(("id" = inline(doc::UserId), Path)), responses(
    (status = 200, description = "Usage", body = dto::Usage),
))]
async fn usage_user(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::Usage>> {
    tenant_user(&state, &p, &id).await?;
    if id != p.user_id.to_string() {
        require_tenant_admin(&p)?;
    }
    let at = figures_at(&state).await?;
    let u = rm::usage(&state.db, QuotaLevel::User, &id).await?;
    Ok(Json(dto::Usage::new(QuotaLevel::User, &id, &u, at)))
}

/// A share's usage (READ on it).
#[utoipa::path(get, path = "/quotas/usage/shares/{id}", params(("id" = inline(doc::ShareId), Path)), responses(
    (status = 200, description = "Usage", body = dto::Usage),
    (status = 410, description = "The share is in the trash"),
))]
async fn usage_share(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<dto::Usage>> {
    share_target(&state, &p, &id, Permission::Read).await?;
    let at = figures_at(&state).await?;
    let u = rm::usage(&state.db, QuotaLevel::Share, &id).await?;
    Ok(Json(dto::Usage::new(QuotaLevel::Share, &id, &u, at)))
}

/// `GET /users/me/quota`: the caller's user-level usage and limit.
pub(crate) async fn my_quota(state: &AppState, p: &Principal) -> ApiResult<dto::MyQuota> {
    let id = p.user_id.to_string();
    let t = cmd::target(QuotaLevel::User, &id, Some(p.tenant_id));
    let acc = state
        .bus
        .load::<QuotaAccount>(&t.quota_id.to_string())
        .await?;
    let u = rm::usage(&state.db, QuotaLevel::User, &id).await?;
    Ok(dto::MyQuota::new(&id, &acc.state, &u))
}
