//! `POST /webhooks/scaikey`: ScaiKey's directory pushes user and group
//! changes. The raw body is authenticated with HMAC-SHA256 under
//! `SCAIDRIVE_SCAIKEY_WEBHOOK_SECRET` (hex in `X-ScaiKey-Signature`, an
//! optional `sha256=` prefix accepted). Every event is applied idempotently,
//! so a redelivered webhook changes nothing the second time.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use scaidrive_domain::group::Group;
use scaidrive_domain::id::{GroupId, TenantId, UserId};
use scaidrive_domain::tenancy::{AdminRole, User, UserStatus};
use scaidrive_domain::{Actor, DomainError, LogPosition};
use scaidrive_projections::groups;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_json_body, Validate, Violations};
use super::respond::Respond;
use super::schema as doc;
use super::state::AppState;
use super::RequestContext;
use crate::command::admin::change_user;
use crate::command::groups::{GroupChange, NewGroup};
use crate::command::provision::{ensure_tenant, provision_as, Identity, Origin};
use crate::command::CommandContext;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/scaikey", post(receive))
}

/// Who the webhook's events are recorded as.
const SERVICE_ACCOUNT: &str = "scaikey-webhook";

/// The events this endpoint understands.
const SUPPORTED: [&str; 8] = [
    "user.created",
    "user.updated",
    "user.deleted",
    "group.created",
    "group.updated",
    "group.deleted",
    "group.member_added",
    "group.member_removed",
];

fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The envelope every delivery has.
#[derive(Debug, Deserialize)]
struct Delivery {
    #[serde(alias = "type")]
    event: String,
    tenant_id: String,
    partner_id: Option<String>,
    #[serde(default)]
    data: Value,
}

impl Validate for Delivery {
    const REQUIRED: &'static [&'static str] = &["event", "tenant_id"];

    fn validate(&self, v: &mut Violations) {
        v.length("tenant_id", &self.tenant_id, 1, 255);
    }
}

/// `data` of `user.*` events; `id` is the user's ScaiKey subject (`sub`).
#[derive(Debug, Deserialize)]
struct UserData {
    #[serde(alias = "user_id", alias = "sub")]
    id: String,
    email: Option<String>,
    name: Option<String>,
    status: Option<UserStatus>,
    #[serde(default, deserialize_with = "present")]
    admin_role: Option<Option<AdminRole>>,
}

impl Validate for UserData {
    const REQUIRED: &'static [&'static str] = &["id"];

    fn validate(&self, v: &mut Violations) {
        v.length("id", &self.id, 1, 255);
    }
}

/// `data` of `group.created|updated|deleted`; `id` is ScaiKey's group id.
#[derive(Debug, Deserialize)]
struct GroupData {
    #[serde(alias = "group_id")]
    id: String,
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

impl Validate for GroupData {
    const REQUIRED: &'static [&'static str] = &["id"];

    fn validate(&self, v: &mut Violations) {
        v.length("id", &self.id, 1, scaidrive_domain::group::MAX_EXTERNAL_ID);
        if let Some(n) = &self.name {
            v.length("name", n.trim(), 1, scaidrive_domain::group::MAX_NAME);
        }
    }
}

/// `data` of `group.member_added|member_removed`.
#[derive(Debug, Deserialize)]
struct MemberData {
    group_id: String,
    user_id: String,
    email: Option<String>,
    name: Option<String>,
}

impl Validate for MemberData {
    const REQUIRED: &'static [&'static str] = &["group_id", "user_id"];
}

/// Checks `X-ScaiKey-Signature` against the HMAC of the raw body (constant time).
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> ApiResult<()> {
    let given = headers
        .get("x-scaikey-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("missing X-ScaiKey-Signature".into()))?;
    let hex_sig = given.strip_prefix("sha256=").unwrap_or(given);
    let sig = hex::decode(hex_sig)
        .map_err(|_| ApiError::Unauthorized("X-ScaiKey-Signature is not hex".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| ApiError::internal(format!("webhook key: {e}")))?;
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| ApiError::Unauthorized("X-ScaiKey-Signature does not match the body".into()))
}

/// ScaiKey's directory webhook: applies a user or group change (idempotent).
#[utoipa::path(post, path = "/webhooks/scaikey", security(()),
    request_body = doc::ScaiKeyDelivery,
    params(("X-ScaiKey-Signature" = String, Header,
        description = "Hex HMAC-SHA256 of the raw body (optionally `sha256=`-prefixed)")),
    responses(
        (status = 200, description = "Applied", body = dto::WebhookApplied),
        (status = 400, description = "Unsupported event"),
        (status = 401, description = "Signature missing or wrong"),
        (status = 403, description = "The delivery's tenant belongs to another partner"),
        (status = 404, description = "The webhook is not configured"),
        (status = 422, description = "The delivery or its data fails validation"),
    ),
)]
async fn receive(
    State(state): State<AppState>,
    Extension(rc): Extension<RequestContext>,
    respond: Respond,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let Some(secret) = &state.config.scaikey_webhook_secret else {
        return Err(ApiError::NotFound(
            "the ScaiKey webhook is not configured".into(),
        ));
    };
    verify(secret.expose(), &headers, &body)?;
    let delivery: Delivery = parse_json_body(&body)?;
    if !SUPPORTED.contains(&delivery.event.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "unsupported event '{}' (supported: {})",
            delivery.event,
            SUPPORTED.join(", ")
        )));
    }
    let tenant_id = TenantId::from_external(&delivery.tenant_id);
    let ctx = CommandContext {
        tenant_id: Some(tenant_id.to_string()),
        actor: Actor {
            user_id: None,
            service_account: Some(SERVICE_ACCOUNT.into()),
            ip: rc.ip.clone(),
            user_agent: rc.user_agent.clone(),
            device_id: None,
        },
        correlation_id: rc.request_id.clone(),
        causation_id: None,
        now: chrono::Utc::now(),
    };
    let hook = Hook {
        state: &state,
        ctx,
        partner: delivery.partner_id.clone(),
        tenant: delivery.tenant_id.clone(),
        tenant_id,
    };
    let data = delivery.data;
    let (resource, position) = match delivery.event.as_str() {
        "user.created" | "user.updated" => hook.upsert_user(parse(data)?).await?,
        "user.deleted" => hook.deactivate_user(parse(data)?).await?,
        "group.created" | "group.updated" => hook.upsert_group(parse(data)?).await?,
        "group.deleted" => hook.delete_group(parse(data)?).await?,
        "group.member_added" => hook.membership(parse(data)?, true).await?,
        _ => hook.membership(parse(data)?, false).await?,
    };
    let applied = dto::WebhookApplied {
        status: "applied".into(),
        event: delivery.event,
        resource_id: resource,
        changed: position.is_some(),
    };
    respond
        .after(&state, position, StatusCode::OK, || async { Ok(applied) })
        .await
}

/// Parses `data` with the body's 422 rules (`loc` starts at `data`).
fn parse<T: serde::de::DeserializeOwned + Validate>(data: Value) -> ApiResult<T> {
    super::extract::parse_json_value(data).map_err(|e| match e {
        ApiError::Validation(mut errors) => {
            for err in &mut errors {
                err.loc.insert(1, Value::from("data"));
            }
            ApiError::Validation(errors)
        }
        other => other,
    })
}

/// One delivery being applied.
struct Hook<'a> {
    state: &'a AppState,
    ctx: CommandContext,
    partner: Option<String>,
    tenant: String,
    tenant_id: TenantId,
}

type Applied = (Option<String>, Option<LogPosition>);

fn later(a: Option<LogPosition>, b: Option<LogPosition>) -> Option<LogPosition> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Hook<'_> {
    fn identity(&self, subject: &str, email: Option<String>, name: Option<String>) -> Identity {
        Identity::from_claims(self.partner.as_deref(), &self.tenant, subject, email, name)
    }

    /// Loads a user of this tenant; `None` if unknown (or of another tenant).
    async fn known_user(&self, id: UserId) -> ApiResult<Option<User>> {
        let u = self.state.bus.load::<User>(&id.to_string()).await?;
        Ok((u.exists() && u.state.tenant_id == Some(self.tenant_id)).then_some(u.state))
    }

    async fn upsert_user(&self, d: UserData) -> ApiResult<Applied> {
        let who = self.identity(&d.id, d.email.clone(), d.name.clone());
        let origin = Origin::Directory {
            admin_role: d.admin_role.flatten(),
        };
        let (_, mut position) = provision_as(&self.state.bus, &self.ctx, &who, origin).await?;
        let stream = who.user_id.to_string();
        let committed =
            change_user(&self.state.bus, &self.ctx, &stream, d.status, d.admin_role).await?;
        position = later(position, committed.position);
        Ok((Some(stream), position))
    }

    /// Deleted in ScaiKey = inactive here: the user can no longer sign in,
    /// and everything they own stays.
    async fn deactivate_user(&self, d: UserData) -> ApiResult<Applied> {
        let who = self.identity(&d.id, None, None);
        if self.known_user(who.user_id).await?.is_none() {
            return Ok((None, None));
        }
        let stream = who.user_id.to_string();
        let inactive = Some(UserStatus::Inactive);
        let committed = change_user(&self.state.bus, &self.ctx, &stream, inactive, None).await?;
        Ok((Some(stream), committed.position))
    }

    /// The group carrying this external id: the stored one, else the id
    /// derived from it (a fresh one if that id's group was deleted).
    async fn resolve_group(&self, external: &str) -> ApiResult<(GroupId, Group)> {
        let tenant = self.tenant_id.to_string();
        if let Some(row) = groups::group_by_external(&self.state.db, &tenant, external).await? {
            let id: GroupId = row
                .id
                .parse()
                .map_err(|e| ApiError::internal(format!("stored group id: {e}")))?;
            let g = self.state.bus.load::<Group>(&row.id).await?;
            return Ok((id, g.state));
        }
        let derived = GroupId::from_external(&format!("{tenant}/{external}"));
        let g = self.state.bus.load::<Group>(&derived.to_string()).await?;
        if g.state.deleted {
            return Ok((GroupId::from_uuid(Uuid::now_v7()), Group::default()));
        }
        Ok((derived, g.state))
    }

    async fn upsert_group(&self, d: GroupData) -> ApiResult<Applied> {
        let who = self.identity("scaikey", None, None);
        let mut position = ensure_tenant(&self.state.bus, &self.ctx, &who).await?;
        self.state.caught_up(position).await;
        let (id, group) = self.resolve_group(&d.id).await?;
        let committed = if group.is_live() {
            let change = GroupChange {
                name: d.name.clone(),
                description: d.description.clone(),
                external_id: None,
            };
            crate::command::groups::update(&self.state.bus, &self.ctx, self.tenant_id, id, &change)
                .await?
                .1
        } else {
            let name = d
                .name
                .clone()
                .ok_or_else(|| DomainError::invalid("data.name", "required for a new group"))?;
            let new = NewGroup {
                name,
                description: d.description.clone().flatten(),
                external_id: Some(d.id.clone()),
            };
            crate::command::groups::create(&self.state.bus, &self.ctx, self.tenant_id, id, &new)
                .await?
                .1
        };
        position = later(position, committed.position);
        Ok((Some(id.to_string()), position))
    }

    async fn delete_group(&self, d: GroupData) -> ApiResult<Applied> {
        let (id, group) = self.resolve_group(&d.id).await?;
        if !group.is_live() || group.tenant_id != Some(self.tenant_id) {
            return Ok((None, None));
        }
        let committed =
            crate::command::groups::delete(&self.state.bus, &self.ctx, self.tenant_id, id).await?;
        Ok((Some(id.to_string()), committed.position))
    }

    /// Adds or removes a member; a user ScaiKey names but we have not seen
    /// yet is provisioned from the directory first.
    async fn membership(&self, d: MemberData, member: bool) -> ApiResult<Applied> {
        let (id, group) = self.resolve_group(&d.group_id).await?;
        if !group.is_live() || group.tenant_id != Some(self.tenant_id) {
            return Err(ApiError::not_found("group"));
        }
        let who = self.identity(&d.user_id, d.email.clone(), d.name.clone());
        let mut position = None;
        if self.known_user(who.user_id).await?.is_none() {
            if !member {
                return Ok((None, None));
            }
            let origin = Origin::Directory { admin_role: None };
            position = provision_as(&self.state.bus, &self.ctx, &who, origin)
                .await?
                .1;
        }
        let committed = crate::command::groups::set_member(
            &self.state.bus,
            &self.ctx,
            self.tenant_id,
            id,
            who.user_id,
            member,
            true,
        )
        .await?;
        Ok((Some(id.to_string()), later(position, committed.position)))
    }
}
