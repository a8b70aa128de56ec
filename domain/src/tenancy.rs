//! Partner, Tenant and User aggregates, with just-in-time provisioning.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{PartnerId, TenantId, UserId};

// ---------------------------------------------------------------- partner

#[derive(Debug, Clone, Default)]
pub struct Partner {
    pub id: Option<PartnerId>,
    pub name: String,
}

#[derive(Debug, Clone)]
pub enum PartnerCommand {
    Provision {
        partner_id: PartnerId,
        name: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum PartnerEvent {
    PartnerProvisioned {
        partner_id: PartnerId,
        name: String,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for PartnerEvent {}

impl Aggregate for Partner {
    type Command = PartnerCommand;
    type Event = PartnerEvent;

    fn decide(&self, command: &PartnerCommand) -> Result<Vec<PartnerEvent>, DomainError> {
        match command {
            PartnerCommand::Provision {
                partner_id,
                name,
                at,
            } => {
                if self.id.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![PartnerEvent::PartnerProvisioned {
                    partner_id: *partner_id,
                    name: name.clone(),
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &PartnerEvent) {
        match event {
            PartnerEvent::PartnerProvisioned {
                partner_id, name, ..
            } => {
                self.id = Some(*partner_id);
                self.name = name.clone();
            }
        }
    }
}

// ---------------------------------------------------------------- tenant

/// Tenant-wide policy for external links (SPEC §4.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct SharingPolicy {
    pub external_sharing_enabled: bool,
    pub require_password: bool,
    pub require_expiry: bool,
    pub max_expiry_days: Option<u32>,
    pub allowed_link_types: Vec<String>,
    pub max_downloads_ceiling: Option<u64>,
}

impl Default for SharingPolicy {
    fn default() -> Self {
        Self {
            external_sharing_enabled: true,
            require_password: false,
            require_expiry: false,
            max_expiry_days: None,
            allowed_link_types: vec!["VIEW".into(), "DOWNLOAD".into(), "UPLOAD".into()],
            max_downloads_ceiling: None,
        }
    }
}

/// Per-tenant rate limits (units per 60 s window); `None` = server default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct RateLimits {
    pub per_token: Option<u64>,
    pub per_user: Option<u64>,
    pub per_tenant: Option<u64>,
}

/// The largest per-file cap a tenant may set (4 TiB).
pub const MAX_FILE_SIZE_CEILING: u64 = 4 << 40;

/// Tenant settings with the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct TenantSettings {
    pub max_file_size_bytes: u64,
    pub default_share_quota_bytes: Option<u64>,
    pub trash_retention_days: u32,
    pub version_retention_days: u32,
    pub vectorization_enabled: bool,
    pub require_mfa: bool,
    pub sharing: SharingPolicy,
    pub rate_limits: RateLimits,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            max_file_size_bytes: 5_368_709_120,
            default_share_quota_bytes: None,
            trash_retention_days: 30,
            version_retention_days: 365,
            vectorization_enabled: false,
            require_mfa: false,
            sharing: SharingPolicy::default(),
            rate_limits: RateLimits::default(),
        }
    }
}

impl TenantSettings {
    /// Applies a partial JSON object (`settings` of `PATCH /admin/tenant`)
    /// and checks the result; unknown keys and bad values are refused.
    pub fn merged(&self, patch: &Value) -> Result<TenantSettings, DomainError> {
        let Value::Object(patch_map) = patch else {
            return Err(DomainError::invalid("settings", "must be an object"));
        };
        let mut current = serde_json::to_value(self)
            .map_err(|e| DomainError::invalid("settings", e.to_string()))?;
        let Value::Object(cur_map) = &mut current else {
            return Err(DomainError::invalid("settings", "must be an object"));
        };
        for (k, v) in patch_map {
            let Some(slot) = cur_map.get_mut(k) else {
                return Err(DomainError::invalid(
                    format!("settings.{k}"),
                    "unknown setting",
                ));
            };
            merge_json(slot, v, &format!("settings.{k}"))?;
        }
        let merged: TenantSettings = serde_json::from_value(current)
            .map_err(|e| DomainError::invalid("settings", e.to_string()))?;
        merged.validate()?;
        Ok(merged)
    }

    pub fn validate(&self) -> Result<(), DomainError> {
        if self.max_file_size_bytes == 0 || self.max_file_size_bytes > MAX_FILE_SIZE_CEILING {
            return Err(DomainError::invalid(
                "settings.max_file_size_bytes",
                format!("must be between 1 and {MAX_FILE_SIZE_CEILING}"),
            ));
        }
        if self.trash_retention_days == 0 || self.trash_retention_days > 3650 {
            return Err(DomainError::invalid(
                "settings.trash_retention_days",
                "must be between 1 and 3650",
            ));
        }
        if self.version_retention_days == 0 || self.version_retention_days > 36500 {
            return Err(DomainError::invalid(
                "settings.version_retention_days",
                "must be between 1 and 36500",
            ));
        }
        for t in &self.sharing.allowed_link_types {
            if !matches!(t.as_str(), "VIEW" | "DOWNLOAD" | "UPLOAD") {
                return Err(DomainError::invalid(
                    "settings.sharing.allowed_link_types",
                    format!("unknown link type '{t}' (VIEW, DOWNLOAD or UPLOAD)"),
                ));
            }
        }
        if let Some(0) = self.sharing.max_expiry_days {
            return Err(DomainError::invalid(
                "settings.sharing.max_expiry_days",
                "must be at least 1",
            ));
        }
        for (name, v) in [
            ("per_token", self.rate_limits.per_token),
            ("per_user", self.rate_limits.per_user),
            ("per_tenant", self.rate_limits.per_tenant),
        ] {
            if v == Some(0) {
                return Err(DomainError::invalid(
                    format!("settings.rate_limits.{name}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

/// Merges `patch` into `slot`; a key the settings do not have, at any depth,
/// is refused (it would be dropped silently otherwise).
fn merge_json(slot: &mut Value, patch: &Value, path: &str) -> Result<(), DomainError> {
    match (slot, patch) {
        (Value::Object(s), Value::Object(p)) => {
            for (k, v) in p {
                let inner = s.get_mut(k).ok_or_else(|| {
                    DomainError::invalid(format!("{path}.{k}"), "unknown setting")
                })?;
                merge_json(inner, v, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (slot, patch) => {
            *slot = patch.clone();
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tenant {
    pub id: Option<TenantId>,
    pub partner_id: Option<PartnerId>,
    pub name: String,
    pub display_name: Option<String>,
    pub settings: TenantSettings,
    /// Created without a signing-in user (by a partner admin or the ScaiKey
    /// webhook): the next new user to sign in becomes its tenant admin.
    pub awaiting_admin: bool,
}

#[derive(Debug, Clone)]
pub enum TenantCommand {
    Provision {
        tenant_id: TenantId,
        partner_id: PartnerId,
        name: String,
        /// No user is signing in with this provisioning (see [`Tenant::awaiting_admin`]).
        awaiting_admin: bool,
        at: DateTime<Utc>,
    },
    /// Gives the admin seat of a tenant that waits for one to `user_id`.
    SeatAdmin { user_id: UserId, at: DateTime<Utc> },
    Update {
        name: Option<String>,
        display_name: Option<String>,
        settings: Option<Value>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum TenantEvent {
    TenantProvisioned {
        tenant_id: TenantId,
        partner_id: PartnerId,
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        awaiting_admin: bool,
        at: DateTime<Utc>,
    },
    /// The first user of a tenant created without one took its admin seat.
    TenantAdminSeated { user_id: UserId, at: DateTime<Utc> },
    TenantUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<TenantSettings>,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for TenantEvent {}

fn check_display_text(field: &str, v: &str) -> Result<(), DomainError> {
    let n = v.chars().count();
    if n == 0 || n > 255 {
        return Err(DomainError::invalid(field, "must be 1 to 255 characters"));
    }
    Ok(())
}

impl Aggregate for Tenant {
    type Command = TenantCommand;
    type Event = TenantEvent;

    fn decide(&self, command: &TenantCommand) -> Result<Vec<TenantEvent>, DomainError> {
        match command {
            TenantCommand::Provision {
                tenant_id,
                partner_id,
                name,
                awaiting_admin,
                at,
            } => {
                if self.id.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![TenantEvent::TenantProvisioned {
                    tenant_id: *tenant_id,
                    partner_id: *partner_id,
                    name: name.clone(),
                    awaiting_admin: *awaiting_admin,
                    at: *at,
                }])
            }
            TenantCommand::SeatAdmin { user_id, at } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("tenant"));
                }
                if !self.awaiting_admin {
                    return Ok(vec![]);
                }
                Ok(vec![TenantEvent::TenantAdminSeated {
                    user_id: *user_id,
                    at: *at,
                }])
            }
            TenantCommand::Update {
                name,
                display_name,
                settings,
                at,
            } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("tenant"));
                }
                if let Some(n) = name {
                    check_display_text("name", n)?;
                }
                if let Some(n) = display_name {
                    check_display_text("display_name", n)?;
                }
                let settings = match settings {
                    Some(patch) => Some(self.settings.merged(patch)?),
                    None => None,
                };
                let name = name.clone().filter(|n| *n != self.name);
                let display_name = display_name
                    .clone()
                    .filter(|n| Some(n) != self.display_name.as_ref());
                let settings = settings.filter(|s| *s != self.settings);
                if name.is_none() && display_name.is_none() && settings.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![TenantEvent::TenantUpdated {
                    name,
                    display_name,
                    settings,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &TenantEvent) {
        match event {
            TenantEvent::TenantProvisioned {
                tenant_id,
                partner_id,
                name,
                awaiting_admin,
                ..
            } => {
                self.id = Some(*tenant_id);
                self.partner_id = Some(*partner_id);
                self.name = name.clone();
                self.awaiting_admin = *awaiting_admin;
            }
            TenantEvent::TenantAdminSeated { .. } => self.awaiting_admin = false,
            TenantEvent::TenantUpdated {
                name,
                display_name,
                settings,
                ..
            } => {
                if let Some(n) = name {
                    self.name = n.clone();
                }
                if let Some(n) = display_name {
                    self.display_name = Some(n.clone());
                }
                if let Some(s) = settings {
                    self.settings = s.clone();
                }
            }
        }
    }
}

// ---------------------------------------------------------------- user

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    #[default]
    Active,
    Inactive,
    Suspended,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Suspended => "suspended",
        }
    }
}

/// The stored administrative role of a user inside its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    TenantAdmin,
}

#[derive(Debug, Clone, Default)]
pub struct User {
    pub id: Option<UserId>,
    pub tenant_id: Option<TenantId>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: UserStatus,
    pub admin_role: Option<AdminRole>,
}

#[derive(Debug, Clone)]
pub enum UserCommand {
    /// First sign-in, or a later sign-in whose profile claims changed.
    Provision {
        user_id: UserId,
        tenant_id: TenantId,
        email: Option<String>,
        name: Option<String>,
        admin_role: Option<AdminRole>,
        at: DateTime<Utc>,
    },
    ChangeStatus {
        status: UserStatus,
        at: DateTime<Utc>,
    },
    SetAdminRole {
        admin_role: Option<AdminRole>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum UserEvent {
    UserProvisioned {
        user_id: UserId,
        tenant_id: TenantId,
        email: Option<String>,
        name: Option<String>,
        admin_role: Option<AdminRole>,
        at: DateTime<Utc>,
    },
    UserProfileUpdated {
        email: Option<String>,
        name: Option<String>,
        at: DateTime<Utc>,
    },
    UserStatusChanged {
        status: UserStatus,
        at: DateTime<Utc>,
    },
    UserAdminRoleChanged {
        admin_role: Option<AdminRole>,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for UserEvent {}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;

    fn decide(&self, command: &UserCommand) -> Result<Vec<UserEvent>, DomainError> {
        match command {
            UserCommand::Provision {
                user_id,
                tenant_id,
                email,
                name,
                admin_role,
                at,
            } => {
                if self.id.is_none() {
                    return Ok(vec![UserEvent::UserProvisioned {
                        user_id: *user_id,
                        tenant_id: *tenant_id,
                        email: email.clone(),
                        name: name.clone(),
                        admin_role: *admin_role,
                        at: *at,
                    }]);
                }
                // Later sign-ins refresh the profile from the token's claims.
                let email_changed = email.is_some() && *email != self.email;
                let name_changed = name.is_some() && *name != self.name;
                if email_changed || name_changed {
                    return Ok(vec![UserEvent::UserProfileUpdated {
                        email: email.clone().or_else(|| self.email.clone()),
                        name: name.clone().or_else(|| self.name.clone()),
                        at: *at,
                    }]);
                }
                Ok(vec![])
            }
            UserCommand::ChangeStatus { status, at } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("user"));
                }
                if self.status == *status {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::UserStatusChanged {
                    status: *status,
                    at: *at,
                }])
            }
            UserCommand::SetAdminRole { admin_role, at } => {
                if self.id.is_none() {
                    return Err(DomainError::NotFound("user"));
                }
                if self.admin_role == *admin_role {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::UserAdminRoleChanged {
                    admin_role: *admin_role,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserProvisioned {
                user_id,
                tenant_id,
                email,
                name,
                admin_role,
                ..
            } => {
                self.id = Some(*user_id);
                self.tenant_id = Some(*tenant_id);
                self.email = email.clone();
                self.name = name.clone();
                self.admin_role = *admin_role;
            }
            UserEvent::UserProfileUpdated { email, name, .. } => {
                self.email = email.clone();
                self.name = name.clone();
            }
            UserEvent::UserStatusChanged { status, .. } => self.status = *status,
            UserEvent::UserAdminRoleChanged { admin_role, .. } => self.admin_role = *admin_role,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-04-23T10:15:02Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn provisioned() -> TenantEvent {
        TenantEvent::TenantProvisioned {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            partner_id: PartnerId::from_uuid(Uuid::from_u128(2)),
            name: "acme".into(),
            awaiting_admin: false,
            at: at(),
        }
    }

    #[test]
    fn provisioning_an_existing_tenant_is_a_no_op() {
        Scenario::<Tenant>::given([provisioned()])
            .when(TenantCommand::Provision {
                tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
                partner_id: PartnerId::from_uuid(Uuid::from_u128(2)),
                name: "acme".into(),
                awaiting_admin: false,
                at: at(),
            })
            .then([]);
    }

    #[test]
    fn a_tenant_created_without_a_user_seats_exactly_one_admin() {
        let waiting = TenantEvent::TenantProvisioned {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            partner_id: PartnerId::from_uuid(Uuid::from_u128(2)),
            name: "acme".into(),
            awaiting_admin: true,
            at: at(),
        };
        let seated = TenantEvent::TenantAdminSeated {
            user_id: UserId::from_uuid(Uuid::from_u128(3)),
            at: at(),
        };
        Scenario::<Tenant>::given([waiting.clone()])
            .when(TenantCommand::SeatAdmin {
                user_id: UserId::from_uuid(Uuid::from_u128(3)),
                at: at(),
            })
            .then([seated.clone()]);
        Scenario::<Tenant>::given([waiting, seated])
            .when(TenantCommand::SeatAdmin {
                user_id: UserId::from_uuid(Uuid::from_u128(4)),
                at: at(),
            })
            .then([]);
        Scenario::<Tenant>::given([provisioned()])
            .when(TenantCommand::SeatAdmin {
                user_id: UserId::from_uuid(Uuid::from_u128(4)),
                at: at(),
            })
            .then([]);
    }

    #[test]
    fn settings_patch_merges_partially() {
        let state = Scenario::<Tenant>::given([provisioned()])
            .when(TenantCommand::Update {
                name: None,
                display_name: None,
                settings: Some(serde_json::json!({"trash_retention_days": 7, "sharing": {"require_password": true}})),
                at: at(),
            })
            .then_types(&["tenant-updated"]);
        let TenantEvent::TenantUpdated {
            settings: Some(s), ..
        } = &state[0]
        else {
            panic!("no settings")
        };
        assert_eq!(s.trash_retention_days, 7);
        assert!(s.sharing.require_password);
        assert!(
            s.sharing.external_sharing_enabled,
            "untouched nested keys keep their value"
        );
        assert_eq!(s.max_file_size_bytes, 5_368_709_120);
    }

    #[test]
    fn unknown_or_bad_settings_are_refused() {
        Scenario::<Tenant>::given([provisioned()])
            .when(TenantCommand::Update {
                name: None,
                display_name: None,
                settings: Some(serde_json::json!({"nope": 1})),
                at: at(),
            })
            .then_error_matches(
                |e| matches!(e, DomainError::Invalid { field, .. } if field == "settings.nope"),
            );
        Scenario::<Tenant>::given([provisioned()])
            .when(TenantCommand::Update {
                name: None,
                display_name: None,
                settings: Some(serde_json::json!({"max_file_size_bytes": 0})),
                at: at(),
            })
            .then_error_matches(|e| matches!(e, DomainError::Invalid { .. }));
        Scenario::<Tenant>::given([provisioned()])
            .when(TenantCommand::Update {
                name: None,
                display_name: None,
                settings: Some(serde_json::json!({"rate_limits": {"per_token": 5, "per_hour": 1}})),
                at: at(),
            })
            .then_error_matches(|e| {
                matches!(e, DomainError::Invalid { field, .. } if field == "settings.rate_limits.per_hour")
            });
    }

    #[test]
    fn updating_an_unknown_tenant_is_not_found() {
        Scenario::<Tenant>::given_nothing()
            .when(TenantCommand::Update {
                name: Some("x".into()),
                display_name: None,
                settings: None,
                at: at(),
            })
            .then_error(DomainError::NotFound("tenant"));
    }

    #[test]
    fn a_returning_user_with_changed_claims_gets_a_profile_update() {
        let uid = UserId::from_uuid(Uuid::from_u128(3));
        let tid = TenantId::from_uuid(Uuid::from_u128(1));
        let first = UserEvent::UserProvisioned {
            user_id: uid,
            tenant_id: tid,
            email: Some("a@x.test".into()),
            name: None,
            admin_role: None,
            at: at(),
        };
        Scenario::<User>::given([first.clone()])
            .when(UserCommand::Provision {
                user_id: uid,
                tenant_id: tid,
                email: Some("a@x.test".into()),
                name: None,
                admin_role: None,
                at: at(),
            })
            .then([]);
        Scenario::<User>::given([first])
            .when(UserCommand::Provision {
                user_id: uid,
                tenant_id: tid,
                email: Some("b@x.test".into()),
                name: None,
                admin_role: None,
                at: at(),
            })
            .then_types(&["user-profile-updated"]);
    }

    #[test]
    fn status_changes_are_idempotent() {
        let uid = UserId::from_uuid(Uuid::from_u128(3));
        let first = UserEvent::UserProvisioned {
            user_id: uid,
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            email: None,
            name: None,
            admin_role: None,
            at: at(),
        };
        Scenario::<User>::given([first.clone()])
            .when(UserCommand::ChangeStatus {
                status: UserStatus::Active,
                at: at(),
            })
            .then([]);
        Scenario::<User>::given([first])
            .when(UserCommand::ChangeStatus {
                status: UserStatus::Suspended,
                at: at(),
            })
            .then([UserEvent::UserStatusChanged {
                status: UserStatus::Suspended,
                at: at(),
            }]);
    }
}
