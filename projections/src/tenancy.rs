//! Partners, tenants and users as rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::tenancy::{PartnerEvent, TenantEvent, TenantSettings, UserEvent};
use scaidrive_domain::{AnyEvent, DecodedEvent, RecordedEvent};
use sqlx::types::Json;

use crate::db::{Db, Tx};
use crate::projection::{typed, Projection, ProjectionError};
use crate::{db_fetch_all, db_fetch_optional, db_fetch_scalar, tx_execute};

/// Folds partner, tenant and user events into `rm_partners`, `rm_tenants`, `rm_users`.
pub struct TenancyProjection;

#[async_trait]
impl Projection for TenancyProjection {
    fn name(&self) -> &'static str {
        "tenancy"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, event_type: &str) -> bool {
        event_type.starts_with("partner-")
            || event_type.starts_with("tenant-")
            || event_type.starts_with("user-")
    }

    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError> {
        match typed(event)? {
            AnyEvent::Partner(e) => match e.clone() {
                PartnerEvent::PartnerProvisioned {
                    partner_id,
                    name,
                    at,
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_partners (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                        partner_id.to_string(),
                        name,
                        at
                    )?;
                }
            },
            AnyEvent::Tenant(e) => match e.clone() {
                TenantEvent::TenantProvisioned {
                    tenant_id,
                    partner_id,
                    name,
                    at,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_tenants (id, partner_id, name, display_name, settings, created_at, modified_at) \
                         VALUES ($1, $2, $3, NULL, $4, $5, $5) ON CONFLICT (id) DO NOTHING",
                        tenant_id.to_string(),
                        partner_id.to_string(),
                        name,
                        Json(TenantSettings::default()),
                        at
                    )?;
                }
                // The seat shows in the seated user's own admin-role event.
                TenantEvent::TenantAdminSeated { .. } => {}
                TenantEvent::TenantUpdated {
                    name,
                    display_name,
                    settings,
                    at,
                } => {
                    let id = stream_suffix(event);
                    tx_execute!(
                        tx,
                        "UPDATE rm_tenants SET name = COALESCE($2, name), display_name = COALESCE($3, display_name), \
                         settings = COALESCE($4, settings), modified_at = $5 WHERE id = $1",
                        id,
                        name,
                        display_name,
                        settings.map(Json),
                        at
                    )?;
                }
            },
            AnyEvent::User(e) => {
                let id = stream_suffix(event);
                match e.clone() {
                    UserEvent::UserProvisioned {
                        user_id,
                        tenant_id,
                        email,
                        name,
                        admin_role,
                        at,
                    } => {
                        tx_execute!(
                        tx,
                        "INSERT INTO rm_users (id, tenant_id, email, name, status, admin_role, created_at, modified_at) \
                         VALUES ($1, $2, $3, $4, 'active', $5, $6, $6) ON CONFLICT (id) DO NOTHING",
                        user_id.to_string(),
                        tenant_id.to_string(),
                        email,
                        name,
                        admin_role.map(|_| "tenant_admin"),
                        at
                    )?;
                    }
                    UserEvent::UserProfileUpdated { email, name, at } => {
                        tx_execute!(
                        tx,
                        "UPDATE rm_users SET email = $2, name = $3, modified_at = $4 WHERE id = $1",
                        id,
                        email,
                        name,
                        at
                    )?;
                    }
                    UserEvent::UserStatusChanged { status, at } => {
                        tx_execute!(
                            tx,
                            "UPDATE rm_users SET status = $2, modified_at = $3 WHERE id = $1",
                            id,
                            status.as_str(),
                            at
                        )?;
                    }
                    UserEvent::UserAdminRoleChanged { admin_role, at } => {
                        tx_execute!(
                            tx,
                            "UPDATE rm_users SET admin_role = $2, modified_at = $3 WHERE id = $1",
                            id,
                            admin_role.map(|_| "tenant_admin"),
                            at
                        )?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_partners", "rm_tenants", "rm_users"]
    }
}

/// The aggregate id is the stream id.
fn stream_suffix(event: &RecordedEvent) -> String {
    event.stream_id.clone()
}

/// A tenant row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: String,
    pub partner_id: String,
    pub name: String,
    pub display_name: Option<String>,
    pub settings: Json<TenantSettings>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

/// A user row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub tenant_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: String,
    pub admin_role: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

pub async fn tenant(db: &Db, id: &str) -> Result<Option<TenantRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        TenantRow,
        "SELECT id, partner_id, name, display_name, settings, created_at, modified_at FROM rm_tenants WHERE id = $1",
        id
    )
}

pub async fn user(db: &Db, tenant_id: &str, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        UserRow,
        "SELECT id, tenant_id, email, name, status, admin_role, created_at, modified_at FROM rm_users \
         WHERE id = $1 AND tenant_id = $2",
        id,
        tenant_id
    )
}

/// The tenants of a partner, oldest first.
pub async fn partner_tenants(
    db: &Db,
    partner_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TenantRow>, i64), sqlx::Error> {
    let rows = db_fetch_all!(
        db,
        TenantRow,
        "SELECT id, partner_id, name, display_name, settings, created_at, modified_at FROM rm_tenants \
         WHERE partner_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        partner_id,
        limit,
        offset
    )?;
    let total = db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_tenants WHERE partner_id = $1",
        partner_id
    )?;
    Ok((rows, total))
}

/// Filters of `GET /admin/users`.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Case-insensitive substring of the email, the name or the display
    /// name (the name, else the email, else the id).
    pub q: Option<String>,
    pub status: Option<String>,
    pub is_admin: Option<bool>,
}

const USER_COLS: &str = "id, tenant_id, email, name, status, admin_role, created_at, modified_at";

/// A page of the tenant's users (by email, then id) and how many match.
pub async fn users(
    db: &Db,
    tenant_id: &str,
    f: &UserFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserRow>, i64), sqlx::Error> {
    let pattern = f.q.as_deref().map(crate::groups::like_pattern);
    let filter = "tenant_id = $1 \
        AND ($2 IS NULL OR lower(COALESCE(email, '')) LIKE $2 ESCAPE '\\' OR lower(COALESCE(name, '')) LIKE $2 ESCAPE '\\' \
             OR lower(COALESCE(name, email, id)) LIKE $2 ESCAPE '\\') \
        AND ($3 IS NULL OR status = $3) \
        AND ($4 IS NULL OR (admin_role IS NOT NULL) = $4)";
    let sql = format!(
        "SELECT {USER_COLS} FROM rm_users WHERE {filter} ORDER BY lower(COALESCE(email, '')), id LIMIT $5 OFFSET $6"
    );
    let rows = db_fetch_all!(
        db, UserRow, &sql, tenant_id, &pattern, &f.status, f.is_admin, limit, offset
    )?;
    let count = format!("SELECT COUNT(*) FROM rm_users WHERE {filter}");
    let total = db_fetch_scalar!(db, i64, &count, tenant_id, &pattern, &f.status, f.is_admin)?;
    Ok((rows, total))
}

/// Active tenant admins of the tenant other than `except`.
pub async fn other_active_admins(
    db: &Db,
    tenant_id: &str,
    except: &str,
) -> Result<i64, sqlx::Error> {
    db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_users WHERE tenant_id = $1 AND id <> $2 \
         AND admin_role IS NOT NULL AND status = 'active'",
        tenant_id,
        except
    )
}

/// Active users of the tenant whose email or name contains `q` (any case),
/// for sharing dialogs.
pub async fn search_users(
    db: &Db,
    tenant_id: &str,
    q: Option<&str>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let f = UserFilter {
        q: q.map(str::to_owned),
        status: Some("active".into()),
        is_admin: None,
    };
    users(db, tenant_id, &f, limit, 0)
        .await
        .map(|(rows, _)| rows)
}
