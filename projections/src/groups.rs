//! Groups and memberships as rows, and the queries that read them (including
//! the one that resolves a caller's groups on every request).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::group::GroupEvent;
use scaidrive_domain::name::name_key;
use scaidrive_domain::{AnyEvent, DecodedEvent};

use crate::db::{Db, Tx};
use crate::projection::{typed, Projection, ProjectionError};
use crate::{db_fetch_all, db_fetch_optional, db_fetch_scalar, tx_execute};

/// Folds group events into `rm_groups` and `rm_group_members`.
pub struct GroupsProjection;

/// The event types this projection folds (listed, so a future `group-quota-*`
/// of another area is not mistaken for ours).
const TYPES: [&str; 5] = [
    "group-created",
    "group-updated",
    "group-deleted",
    "group-member-added",
    "group-member-removed",
];

#[async_trait]
impl Projection for GroupsProjection {
    fn name(&self) -> &'static str {
        "groups"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, event_type: &str) -> bool {
        TYPES.contains(&event_type)
    }

    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let id = event.stream_id.as_str();
        let AnyEvent::Group(group) = typed(event)? else {
            return Ok(());
        };
        match group.clone() {
            GroupEvent::GroupCreated {
                group_id,
                tenant_id,
                name,
                description,
                external_id,
                at,
            } => {
                tx_execute!(
                    tx,
                    "INSERT INTO rm_groups (id, tenant_id, name, name_key, description, external_id, member_count, created_at, modified_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT (id) DO NOTHING",
                    group_id.to_string(),
                    tenant_id.to_string(),
                    &name,
                    name_key(&name),
                    description,
                    external_id,
                    at
                )?;
            }
            GroupEvent::GroupUpdated {
                name,
                description,
                external_id,
                at,
            } => {
                let key = name.as_deref().map(name_key);
                // A flag per optional field tells "clear" from "unchanged".
                tx_execute!(
                    tx,
                    "UPDATE rm_groups SET name = COALESCE($2, name), name_key = COALESCE($3, name_key), \
                     description = CASE WHEN $4 THEN $5 ELSE description END, \
                     external_id = CASE WHEN $6 THEN $7 ELSE external_id END, modified_at = $8 WHERE id = $1",
                    id,
                    name,
                    key,
                    description.is_some(),
                    description.flatten(),
                    external_id.is_some(),
                    external_id.flatten(),
                    at
                )?;
            }
            GroupEvent::GroupDeleted { .. } => {
                tx_execute!(tx, "DELETE FROM rm_group_members WHERE group_id = $1", id)?;
                tx_execute!(tx, "DELETE FROM rm_groups WHERE id = $1", id)?;
            }
            GroupEvent::GroupMemberAdded { user_id, at } => {
                let added = tx_execute!(
                    tx,
                    "INSERT INTO rm_group_members (group_id, user_id, tenant_id, added_at) \
                     SELECT id, $2, tenant_id, $3 FROM rm_groups WHERE id = $1 ON CONFLICT (group_id, user_id) DO NOTHING",
                    id,
                    user_id.to_string(),
                    at
                )?;
                if added > 0 {
                    tx_execute!(
                        tx,
                        "UPDATE rm_groups SET member_count = member_count + 1, modified_at = $2 WHERE id = $1",
                        id,
                        at
                    )?;
                }
            }
            GroupEvent::GroupMemberRemoved { user_id, at } => {
                let removed = tx_execute!(
                    tx,
                    "DELETE FROM rm_group_members WHERE group_id = $1 AND user_id = $2",
                    id,
                    user_id.to_string()
                )?;
                if removed > 0 {
                    tx_execute!(
                        tx,
                        "UPDATE rm_groups SET member_count = member_count - 1, modified_at = $2 WHERE id = $1",
                        id,
                        at
                    )?;
                }
            }
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_groups", "rm_group_members"]
    }
}

/// A group row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub external_id: Option<String>,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

const GROUP_COLS: &str =
    "id, tenant_id, name, description, external_id, member_count, created_at, modified_at";

/// A live group of the tenant.
pub async fn group(db: &Db, tenant_id: &str, id: &str) -> Result<Option<GroupRow>, sqlx::Error> {
    let sql = format!("SELECT {GROUP_COLS} FROM rm_groups WHERE id = $1 AND tenant_id = $2");
    db_fetch_optional!(db, GroupRow, &sql, id, tenant_id)
}

/// The live group of the tenant that carries this external (ScaiKey) id.
pub async fn group_by_external(
    db: &Db,
    tenant_id: &str,
    external_id: &str,
) -> Result<Option<GroupRow>, sqlx::Error> {
    let sql =
        format!("SELECT {GROUP_COLS} FROM rm_groups WHERE tenant_id = $1 AND external_id = $2");
    db_fetch_optional!(db, GroupRow, &sql, tenant_id, external_id)
}

/// Turns free text into a case-insensitive `LIKE` pattern (`\` escapes).
pub fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in name_key(q).chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The tenant's groups, by name, optionally filtered by a name substring.
pub async fn groups(
    db: &Db,
    tenant_id: &str,
    q: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<GroupRow>, i64), sqlx::Error> {
    let pattern = q.map(like_pattern);
    let filter = "tenant_id = $1 AND ($2 IS NULL OR name_key LIKE $2 ESCAPE '\\')";
    let sql = format!(
        "SELECT {GROUP_COLS} FROM rm_groups WHERE {filter} ORDER BY name_key, id LIMIT $3 OFFSET $4"
    );
    let rows = db_fetch_all!(db, GroupRow, &sql, tenant_id, &pattern, limit, offset)?;
    let count = format!("SELECT COUNT(*) FROM rm_groups WHERE {filter}");
    let total = db_fetch_scalar!(db, i64, &count, tenant_id, &pattern)?;
    Ok((rows, total))
}

/// One membership, with the member's profile.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub added_at: DateTime<Utc>,
}

/// The members of a group, oldest first.
pub async fn members(
    db: &Db,
    group_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        MemberRow,
        "SELECT m.user_id, u.email, u.name, u.status, m.added_at FROM rm_group_members m \
         LEFT JOIN rm_users u ON u.id = m.user_id WHERE m.group_id = $1 \
         ORDER BY m.added_at, m.user_id LIMIT $2 OFFSET $3",
        group_id,
        limit,
        offset
    )
}

/// Every group the user belongs to: stored memberships, plus the groups the
/// token's `groups` claims name (by external id or, case-insensitively, by
/// name). Claims that match no stored group are ignored. One query.
pub async fn user_group_ids(
    db: &Db,
    tenant_id: &str,
    user_id: &str,
    claims: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    // Bounded: a token naming thousands of groups should not build a huge query.
    let claims: Vec<&String> = claims.iter().filter(|c| !c.is_empty()).take(200).collect();
    let mut sql =
        String::from("SELECT group_id FROM rm_group_members WHERE tenant_id = $1 AND user_id = $2");
    if !claims.is_empty() {
        let n = claims.len();
        let ext: Vec<String> = (0..n).map(|i| format!("${}", i + 3)).collect();
        let names: Vec<String> = (0..n).map(|i| format!("${}", i + 3 + n)).collect();
        sql.push_str(&format!(
            " UNION SELECT id FROM rm_groups WHERE tenant_id = $1 AND external_id IN ({}) \
             UNION SELECT id FROM rm_groups WHERE tenant_id = $1 AND name_key IN ({})",
            ext.join(", "),
            names.join(", ")
        ));
    }
    sql.push_str(" ORDER BY 1");
    let keys: Vec<String> = claims.iter().map(|c| name_key(c)).collect();
    macro_rules! run {
        ($pool:expr) => {{
            let mut q = sqlx::query_scalar::<_, String>(&sql)
                .bind(tenant_id)
                .bind(user_id);
            for c in &claims {
                q = q.bind(c.as_str());
            }
            for k in &keys {
                q = q.bind(k.as_str());
            }
            q.fetch_all($pool).await
        }};
    }
    match db {
        Db::Sqlite(d) => run!(&d.read),
        Db::Postgres(p) => run!(p),
    }
}

/// Whether the user is a stored member of the group.
pub async fn is_member(db: &Db, group_id: &str, user_id: &str) -> Result<bool, sqlx::Error> {
    let n = db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_group_members WHERE group_id = $1 AND user_id = $2",
        group_id,
        user_id
    )?;
    Ok(n > 0)
}
