//! The authenticated caller: token verified, partner/tenant/user provisioned
//! just in time, status checked.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::Utc;
use scaidrive_domain::id::{PartnerId, TenantId, UserId};
use scaidrive_domain::tenancy::{AdminRole, UserStatus};
use scaidrive_domain::Actor;
use sha2::Digest;

use super::error::ApiError;
use super::state::AppState;
use super::RequestContext;
use crate::auth::{Scope, Scopes};
use crate::command::provision::{provision, Identity, SignIn};
use crate::command::CommandContext;

/// A signed-in user of one tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub partner_id: PartnerId,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `grp_` ids of every group the caller belongs to: stored memberships
    /// and the token's `groups` claims that name a stored group (by external
    /// id or name); claims naming no stored group are left out.
    pub groups: Vec<String>,
    pub scopes: Scopes,
    /// The stored tenant-admin role (not just a token claim).
    pub is_tenant_admin: bool,
    pub actor: Actor,
    pub correlation_id: Option<String>,
    /// Permissions already resolved in this request, by resource id.
    pub access: AccessCache,
}

/// Per-request memo of resolved permissions (a handler checks visibility and
/// then a permission on the same resource).
#[derive(Debug, Clone, Default)]
pub struct AccessCache(
    std::sync::Arc<
        parking_lot::Mutex<
            std::collections::HashMap<String, scaidrive_domain::access::Permissions>,
        >,
    >,
);

impl AccessCache {
    pub fn get(&self, id: &str) -> Option<scaidrive_domain::access::Permissions> {
        self.0.lock().get(id).copied()
    }

    pub fn put(&self, id: &str, p: scaidrive_domain::access::Permissions) {
        self.0.lock().insert(id.to_owned(), p);
    }
}

impl Principal {
    /// The same caller with nothing resolved yet: what a long-lived
    /// connection checks each new question with (a resolved permission is
    /// only valid for the request that resolved it).
    pub fn afresh(&self) -> Principal {
        Principal {
            access: AccessCache::default(),
            ..self.clone()
        }
    }

    /// 403 unless the token's scopes allow `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "insufficient scope: '{}' required",
                scope.as_str()
            )))
        }
    }

    /// The ids an ACL entry or membership may name for this caller: the
    /// user and each of their groups.
    pub fn principal_ids(&self) -> Vec<String> {
        std::iter::once(self.user_id.to_string())
            .chain(self.groups.iter().cloned())
            .collect()
    }

    /// 403 unless the caller may administer its tenant (SPEC §3 "Admin
    /// gate"): a token whose scope claim explicitly names `tenant:admin`,
    /// `admin:*` or `*`; the implicit `tenant:admin` of a token without
    /// application scopes together with the stored tenant-admin role; or a
    /// `partner:admin` token of the tenant's partner.
    pub fn require_tenant_admin(&self) -> Result<(), ApiError> {
        self.require(Scope::TenantAdmin)?;
        if self.scopes.explicit_tenant_admin()
            || self.is_tenant_admin
            || self.scopes.allows(Scope::PartnerAdmin)
        {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "tenant administrator role required".into(),
            ))
        }
    }

    /// A command context stamped with this caller.
    pub fn context(&self) -> CommandContext {
        CommandContext {
            tenant_id: Some(self.tenant_id.to_string()),
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: None,
            now: Utc::now(),
        }
    }
}

/// Pulls the bearer token from the `Authorization` header.
pub fn bearer_token(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    None
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::Unauthorized("Not authenticated".into()))?;
        let claims = state.auth.verify(&token).await?;
        let rc = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default();
        let identity = Identity::from_claims(
            claims.partner_id.as_deref(),
            &claims.tenant_id,
            &claims.subject,
            claims.email.clone(),
            claims.name.clone(),
        );
        let actor = Actor {
            user_id: Some(identity.user_id.to_string()),
            service_account: claims.service_account.clone(),
            ip: rc.ip.clone(),
            user_agent: rc.user_agent.clone(),
            device_id: rc.device_id.clone(),
        };
        let ctx = CommandContext {
            tenant_id: Some(identity.tenant_id.to_string()),
            actor: actor.clone(),
            correlation_id: rc.request_id.clone(),
            causation_id: None,
            now: Utc::now(),
        };
        let sign_in = SignIn {
            explicit_admin: claims.scopes.explicit_tenant_admin(),
            bootstrap: state.auth.is_development(),
        };
        // A user already signed in with these claims needs no read of their
        // stream until a user event is applied (a suspension, a new role).
        let known = (
            identity.tenant_id.to_string(),
            identity.user_id.to_string(),
            identity.email.clone(),
            identity.name.clone(),
            sign_in.explicit_admin,
        );
        let (user, position) = state
            .signed_in
            .get_or_load(known, || provision(&state.bus, &ctx, &identity, sign_in))
            .await?;
        state.caught_up(position).await;
        rate_limit(state, parts, &token, &identity).await?;
        match user.status {
            UserStatus::Active => {}
            other => {
                return Err(ApiError::Forbidden(format!(
                    "user account is {}",
                    other.as_str()
                )))
            }
        }
        let (tenant_id, user_id) = (identity.tenant_id.to_string(), identity.user_id.to_string());
        let key = (tenant_id.clone(), user_id.clone(), claims.groups.clone());
        let groups = state
            .groups
            .get_or_load(key, || {
                scaidrive_projections::groups::user_group_ids(
                    &state.db,
                    &tenant_id,
                    &user_id,
                    &claims.groups,
                )
            })
            .await?;
        let principal = Principal {
            user_id: identity.user_id,
            tenant_id: identity.tenant_id,
            partner_id: identity.partner_id,
            email: user.email.clone(),
            name: user.name.clone(),
            groups,
            scopes: claims.scopes,
            is_tenant_admin: user.admin_role == Some(AdminRole::TenantAdmin),
            actor,
            correlation_id: rc.request_id,
            access: AccessCache::default(),
        };
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// Where the rate-limit decision of a request is left for the response headers.
#[derive(Clone, Default)]
pub struct RateSlot(pub std::sync::Arc<parking_lot::Mutex<Option<crate::ratelimit::Decision>>>);

/// Checks and counts the request against the token, user and tenant budgets
/// (the tenant's own settings override the server defaults).
async fn rate_limit(
    state: &AppState,
    parts: &Parts,
    token: &str,
    who: &Identity,
) -> Result<(), ApiError> {
    let tenant_stream = who.tenant_id.to_string();
    let tenant = match state
        .bus
        .peek::<scaidrive_domain::tenancy::Tenant>(&tenant_stream)
    {
        Some(t) => t,
        None => {
            state
                .bus
                .load::<scaidrive_domain::tenancy::Tenant>(&tenant_stream)
                .await?
                .state
        }
    };
    let defaults = state.config.rate_limits;
    let own = &tenant.settings.rate_limits;
    let limits = crate::ratelimit::Limits {
        per_token: own.per_token.unwrap_or(defaults.per_token),
        per_user: own.per_user.unwrap_or(defaults.per_user),
        per_tenant: own.per_tenant.unwrap_or(defaults.per_tenant),
    };
    // Budgets are keyed by a digest, never by the bearer token itself.
    let token_key = hex::encode(&sha2::Sha256::digest(token.as_bytes())[..16]);
    let cost = crate::ratelimit::cost(parts.method.as_str(), parts.uri.path());
    let decision = state
        .limiter
        .check(
            &token_key,
            &who.user_id.to_string(),
            &tenant_stream,
            limits,
            cost,
        )
        .await;
    if let Some(slot) = parts.extensions.get::<RateSlot>() {
        *slot.0.lock() = Some(decision);
    }
    match decision.refused {
        None => Ok(()),
        Some(dimension) => {
            state.bus.metrics().rate_limited(dimension.as_str());
            Err(ApiError::RateLimited {
                dimension,
                retry_after: decision.reset_after,
                limit: decision.limit,
            })
        }
    }
}
