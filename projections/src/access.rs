//! The permission index: memberships (owner included), invitations and ACL
//! entries as rows, and the queries a permission check runs on them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaidrive_domain::access::{
    Ace, AceType, AclLevel, Membership, Permission, Permissions, PrincipalType, ShareRole,
};
use scaidrive_domain::drive::share::ShareEvent;
use scaidrive_domain::drive::Owner;
use scaidrive_domain::sharing::{AclEvent, InvitationEvent};
use scaidrive_domain::{AnyEvent, DecodedEvent, RecordedEvent};

use crate::db::{placeholders, Arg, Db, Tx};
use crate::outbox::{self, Message};
use crate::projection::{typed, Projection, ProjectionError};
use crate::{db_fetch_all, db_fetch_optional, db_fetch_scalar, tx_execute};

pub struct AccessProjection;

fn owner_type(o: &Owner) -> &'static str {
    match o {
        Owner::User(_) => "user",
        Owner::Group(_) => "group",
    }
}

fn bits(list: &[Permission]) -> i32 {
    i32::from(Permissions::of(list).0)
}

#[async_trait]
impl Projection for AccessProjection {
    fn name(&self) -> &'static str {
        "access"
    }

    fn version(&self) -> i32 {
        1
    }

    fn handles(&self, t: &str) -> bool {
        matches!(
            t,
            "share-created" | "share-ownership-transferred" | "share-purged"
        ) || t.starts_with("share-member-")
            || t.starts_with("invitation-")
            || t.starts_with("acl-")
    }

    async fn apply(&self, tx: &mut Tx, event: &DecodedEvent) -> Result<(), ProjectionError> {
        let tenant = event.tenant_id.clone().unwrap_or_default();
        match typed(event)? {
            AnyEvent::Share(e) => match e.clone() {
                ShareEvent::ShareCreated {
                    share_id,
                    owner_id,
                    by,
                    at,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_share_members (share_id, tenant_id, principal_type, principal_id, role, expires_at, added_by, added_at) \
                         VALUES ($1, $2, $3, $4, 'owner', NULL, $5, $6) ON CONFLICT (share_id, principal_id) DO NOTHING",
                        share_id.to_string(),
                        &tenant,
                        owner_type(&owner_id),
                        owner_id.to_string(),
                        by.to_string(),
                        at
                    )?;
                }
                ShareEvent::ShareMemberAdded {
                    share_id,
                    principal_type,
                    principal_id,
                    role,
                    expires_at,
                    by,
                    at,
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_share_members (share_id, tenant_id, principal_type, principal_id, role, expires_at, added_by, added_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (share_id, principal_id) DO UPDATE SET role = $5, expires_at = $6",
                        share_id.to_string(),
                        &tenant,
                        principal_type.as_str(),
                        &principal_id,
                        role.as_str(),
                        expires_at,
                        by.to_string(),
                        at
                    )?;
                    if principal_type == PrincipalType::User && by.to_string() != principal_id {
                        notify_member(
                            tx,
                            event,
                            &tenant,
                            &share_id.to_string(),
                            &principal_id,
                            role,
                        )
                        .await?;
                    }
                }
                ShareEvent::ShareMemberUpdated {
                    share_id,
                    principal_id,
                    role,
                    expires_at,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "UPDATE rm_share_members SET role = $3, expires_at = $4 WHERE share_id = $1 AND principal_id = $2",
                        share_id.to_string(),
                        principal_id,
                        role.as_str(),
                        expires_at
                    )?;
                }
                ShareEvent::ShareMemberRemoved {
                    share_id,
                    principal_id,
                    ..
                } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_share_members WHERE share_id = $1 AND principal_id = $2",
                        share_id.to_string(),
                        principal_id
                    )?;
                }
                ShareEvent::ShareOwnershipTransferred {
                    share_id,
                    previous_owner,
                    new_owner,
                    by,
                    at,
                } => {
                    let sid = share_id.to_string();
                    tx_execute!(
                        tx,
                        "UPDATE rm_share_members SET role = 'admin', expires_at = NULL WHERE share_id = $1 AND principal_id = $2",
                        &sid,
                        previous_owner.to_string()
                    )?;
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_share_members (share_id, tenant_id, principal_type, principal_id, role, expires_at, added_by, added_at) \
                         VALUES ($1, $2, $3, $4, 'owner', NULL, $5, $6) ON CONFLICT (share_id, principal_id) DO UPDATE SET role = 'owner', expires_at = NULL",
                        &sid,
                        &tenant,
                        owner_type(&new_owner),
                        new_owner.to_string(),
                        by.to_string(),
                        at
                    )?;
                }
                // A purged share grants nothing any more.
                ShareEvent::SharePurged { share_id, .. } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_share_members WHERE share_id = $1",
                        share_id.to_string()
                    )?;
                }
                _ => {}
            },
            AnyEvent::Invitation(e) => match e.clone() {
                InvitationEvent::InvitationCreated {
                    invitation_id,
                    share_id,
                    email,
                    role,
                    message,
                    expires_at,
                    by,
                    at,
                } => {
                    tx_execute!(
                        tx,
                        "INSERT INTO rm_invitations (id, tenant_id, share_id, email, role, message, status, expires_at, invited_by, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                        invitation_id.to_string(),
                        &tenant,
                        share_id.to_string(),
                        &email,
                        role.as_str(),
                        &message,
                        expires_at,
                        by.to_string(),
                        at
                    )?;
                    let share_name = db_share_name(tx, &share_id.to_string()).await?;
                    let body = format!(
                        "You have been invited to the share '{share_name}' as {role}.{}\n\
                         Invitation {invitation_id}; accept it in ScaiDrive before {expires_at}.",
                        message
                            .as_deref()
                            .map(|m| format!("\n\n{m}"))
                            .unwrap_or_default(),
                        role = role.as_str(),
                    );
                    let event_id = event.event_id.to_string();
                    outbox::enqueue(
                        tx,
                        &Message {
                            id: format!("{event_id}:invitation"),
                            tenant_id: Some(&tenant),
                            kind: "invitation",
                            recipient: &email,
                            subject: &format!("Invitation to '{share_name}'"),
                            body: &body,
                            link_path: Some("/api/v1/users/me/invitations"),
                            source_event_id: Some(&event_id),
                            at,
                        },
                    )
                    .await?;
                }
                InvitationEvent::InvitationAccepted {
                    invitation_id, at, ..
                } => set_invitation(tx, &invitation_id.to_string(), "accepted", Some(at)).await?,
                InvitationEvent::InvitationDeclined {
                    invitation_id, at, ..
                } => set_invitation(tx, &invitation_id.to_string(), "declined", Some(at)).await?,
                InvitationEvent::InvitationRevoked {
                    invitation_id, at, ..
                } => set_invitation(tx, &invitation_id.to_string(), "revoked", Some(at)).await?,
            },
            AnyEvent::Acl(e) => match e.clone() {
                AclEvent::AclEntryAdded {
                    resource_type,
                    resource_id,
                    share_id,
                    entry,
                    at,
                } => {
                    touch_acl(
                        tx,
                        &tenant,
                        &share_id.to_string(),
                        resource_type.as_str(),
                        &resource_id,
                    )
                    .await?;
                    insert_entry(
                        tx,
                        &tenant,
                        &share_id.to_string(),
                        resource_type.as_str(),
                        &resource_id,
                        &entry,
                        at,
                    )
                    .await?;
                }
                AclEvent::AclEntryRemoved { entry_id, .. } => {
                    tx_execute!(
                        tx,
                        "DELETE FROM rm_acl_entries WHERE id = $1",
                        entry_id.to_string()
                    )?;
                }
                AclEvent::AclInheritanceChanged {
                    resource_type,
                    resource_id,
                    share_id,
                    inherit_from_parent,
                    copied,
                    at,
                } => {
                    let sid = share_id.to_string();
                    touch_acl(tx, &tenant, &sid, resource_type.as_str(), &resource_id).await?;
                    tx_execute!(
                        tx,
                        "UPDATE rm_acls SET inherit_from_parent = $2 WHERE resource_id = $1",
                        &resource_id,
                        inherit_from_parent
                    )?;
                    for entry in &copied {
                        insert_entry(
                            tx,
                            &tenant,
                            &sid,
                            resource_type.as_str(),
                            &resource_id,
                            entry,
                            at,
                        )
                        .await?;
                    }
                }
            },
            _ => {}
        }
        Ok(())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_share_members",
            "rm_invitations",
            "rm_acls",
            "rm_acl_entries",
        ]
    }
}

/// Queues the "you were added" message for a user added to a share, when
/// the directory knows their email (users appear there once they sign in).
async fn notify_member(
    tx: &mut Tx,
    event: &RecordedEvent,
    tenant: &str,
    share_id: &str,
    user_id: &str,
    role: ShareRole,
) -> Result<(), sqlx::Error> {
    let email = crate::tx_fetch_optional!(
        tx,
        (Option<String>,),
        "SELECT email FROM rm_users WHERE id = $1",
        user_id.to_owned()
    )?
    .and_then(|r| r.0)
    .filter(|e| !e.is_empty());
    let Some(email) = email else {
        return Ok(());
    };
    let share_name = db_share_name(tx, share_id).await?;
    let role = role.as_str();
    let event_id = event.event_id.to_string();
    let link_path = format!("/api/v1/shares/{share_id}");
    outbox::enqueue(
        tx,
        &Message {
            id: format!("{event_id}:{email}"),
            tenant_id: Some(tenant),
            kind: "member-added",
            recipient: &email,
            subject: &format!("You were added to '{share_name}'"),
            body: &format!("You now have access to the share '{share_name}' as {role}."),
            link_path: Some(&link_path),
            source_event_id: Some(&event_id),
            at: event.metadata.occurred_at,
        },
    )
    .await
}

async fn db_share_name(tx: &mut Tx, share_id: &str) -> Result<String, sqlx::Error> {
    let name = crate::tx_fetch_optional!(
        tx,
        (String,),
        "SELECT name FROM rm_shares WHERE id = $1",
        share_id.to_owned()
    )?;
    Ok(name.map(|n| n.0).unwrap_or_else(|| "a share".into()))
}

async fn set_invitation(
    tx: &mut Tx,
    id: &str,
    status: &str,
    at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "UPDATE rm_invitations SET status = $2, responded_at = $3 WHERE id = $1",
        id.to_owned(),
        status.to_owned(),
        at
    )?;
    Ok(())
}

async fn touch_acl(
    tx: &mut Tx,
    tenant: &str,
    share_id: &str,
    resource_type: &str,
    resource_id: &str,
) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO rm_acls (resource_id, tenant_id, share_id, resource_type, inherit_from_parent) \
         VALUES ($1, $2, $3, $4, TRUE) ON CONFLICT (resource_id) DO NOTHING",
        resource_id.to_owned(),
        tenant.to_owned(),
        share_id.to_owned(),
        resource_type.to_owned()
    )?;
    Ok(())
}

async fn insert_entry(
    tx: &mut Tx,
    tenant: &str,
    share_id: &str,
    resource_type: &str,
    resource_id: &str,
    e: &scaidrive_domain::sharing::AceRecord,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    tx_execute!(
        tx,
        "INSERT INTO rm_acl_entries (id, tenant_id, share_id, resource_type, resource_id, principal_type, principal_id, permissions, ace_type, inherit_to_children, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
        e.id.to_string(),
        tenant.to_owned(),
        share_id.to_owned(),
        resource_type.to_owned(),
        resource_id.to_owned(),
        e.principal_type.as_str(),
        e.principal_id.clone(),
        bits(&e.permissions),
        e.ace_type.as_str(),
        e.inherit_to_children,
        at
    )?;
    Ok(())
}

// ------------------------------------------------------------------- queries

/// A membership row (the owner appears with role `owner`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub share_id: String,
    pub principal_type: String,
    pub principal_id: String,
    pub role: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub added_by: Option<String>,
    pub added_at: DateTime<Utc>,
}

impl MemberRow {
    pub fn membership(&self) -> Option<Membership> {
        Some(Membership {
            principal_type: self.principal_type.parse().ok()?,
            principal_id: self.principal_id.clone(),
            role: self.role.parse().ok()?,
            expires_at: self.expires_at,
        })
    }
}

const MEMBER_COLS: &str =
    "share_id, principal_type, principal_id, role, expires_at, added_by, added_at";

/// The memberships of a share that name one of `principals` (a user id and
/// that user's group ids).
pub async fn memberships_of(
    db: &Db,
    share_id: &str,
    principals: &[String],
) -> Result<Vec<Membership>, sqlx::Error> {
    let sql = format!(
        "SELECT {MEMBER_COLS} FROM rm_share_members WHERE share_id = $1 AND principal_id IN ({})",
        placeholders(2, principals.len())
    );
    let mut args = vec![Arg::Text(share_id.to_owned())];
    args.extend(principals.iter().cloned().map(Arg::Text));
    let rows: Vec<MemberRow> = db.fetch_all_args(&sql, &args).await?;
    Ok(rows.iter().filter_map(MemberRow::membership).collect())
}

/// Every member of a share, owner first.
pub async fn members(
    db: &Db,
    share_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<MemberRow>, i64), sqlx::Error> {
    let rows = db_fetch_all!(
        db,
        MemberRow,
        &format!(
            "SELECT {MEMBER_COLS} FROM rm_share_members WHERE share_id = $1 \
             ORDER BY CASE WHEN role = 'owner' THEN 0 ELSE 1 END, added_at, principal_id LIMIT $2 OFFSET $3"
        ),
        share_id.to_owned(),
        limit,
        offset
    )?;
    let total = db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_share_members WHERE share_id = $1",
        share_id.to_owned()
    )?;
    Ok((rows, total))
}

pub async fn member(
    db: &Db,
    share_id: &str,
    principal_id: &str,
) -> Result<Option<MemberRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        MemberRow,
        &format!(
            "SELECT {MEMBER_COLS} FROM rm_share_members WHERE share_id = $1 AND principal_id = $2"
        ),
        share_id.to_owned(),
        principal_id.to_owned()
    )
}

/// Whether any resource of the share carries ACL state; when none does, a
/// check needs nothing beyond memberships.
pub async fn share_has_acls(db: &Db, share_id: &str) -> Result<bool, sqlx::Error> {
    let n = db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM (SELECT 1 FROM rm_acls WHERE share_id = $1 LIMIT 1) x",
        share_id.to_owned()
    )?;
    Ok(n > 0)
}

/// A folder and its ancestors, nearest first (one recursive query).
pub async fn folder_chain(db: &Db, folder_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = db_fetch_all!(
        db,
        (String, i64),
        "WITH RECURSIVE chain(id, parent_id, depth) AS ( \
           SELECT id, parent_id, CAST(0 AS BIGINT) FROM rm_folders WHERE id = $1 \
           UNION ALL \
           SELECT f.id, f.parent_id, c.depth + 1 FROM rm_folders f JOIN chain c ON f.id = c.parent_id WHERE c.depth < 256 \
         ) SELECT id, depth FROM chain ORDER BY depth",
        folder_id.to_owned()
    )?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// One ACL entry as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AceRow {
    pub id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub principal_type: String,
    pub principal_id: String,
    pub permissions: i32,
    pub ace_type: String,
    pub inherit_to_children: bool,
}

impl AceRow {
    pub fn ace(&self) -> Option<Ace> {
        Some(Ace {
            principal_type: self.principal_type.parse().ok()?,
            principal_id: self.principal_id.clone(),
            permissions: Permissions(u8::try_from(self.permissions).ok()?),
            ace_type: match self.ace_type.as_str() {
                "allow" => AceType::Allow,
                "deny" => AceType::Deny,
                _ => return None,
            },
            inherit_to_children: self.inherit_to_children,
        })
    }

    pub fn principal_type(&self) -> Option<PrincipalType> {
        self.principal_type.parse().ok()
    }
}

const ACE_COLS: &str = "id, resource_type, resource_id, principal_type, principal_id, permissions, ace_type, inherit_to_children";

/// The entries set directly on resources.
pub async fn entries_on(db: &Db, resource_ids: &[String]) -> Result<Vec<AceRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ACE_COLS} FROM rm_acl_entries WHERE resource_id IN ({}) ORDER BY created_at, id",
        placeholders(1, resource_ids.len())
    );
    let args: Vec<Arg> = resource_ids.iter().cloned().map(Arg::Text).collect();
    db.fetch_all_args(&sql, &args).await
}

/// Resources among `resource_ids` whose inheritance is broken.
pub async fn not_inheriting(db: &Db, resource_ids: &[String]) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT resource_id FROM rm_acls WHERE NOT inherit_from_parent AND resource_id IN ({})",
        placeholders(1, resource_ids.len())
    );
    let args: Vec<Arg> = resource_ids.iter().cloned().map(Arg::Text).collect();
    let rows: Vec<(String,)> = db.fetch_all_args(&sql, &args).await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The ACL levels of a resource chain (`chain[0]` the resource, last the
/// share root), in the same order.
pub async fn levels(db: &Db, chain: &[String]) -> Result<Vec<AclLevel>, sqlx::Error> {
    let entries = entries_on(db, chain).await?;
    let broken = not_inheriting(db, chain).await?;
    Ok(chain
        .iter()
        .map(|id| AclLevel {
            entries: entries
                .iter()
                .filter(|e| &e.resource_id == id)
                .filter_map(AceRow::ace)
                .collect(),
            inherit_from_parent: !broken.contains(id),
        })
        .collect())
}

/// Children of a folder (or share root) with ACL state of their own: the
/// only ones whose permissions can differ from their parent's.
pub async fn children_with_acls(
    db: &Db,
    share_id: &str,
    parent: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = db_fetch_all!(
        db,
        (String,),
        "SELECT a.resource_id FROM rm_acls a WHERE a.share_id = $1 AND ( \
           a.resource_id IN (SELECT id FROM rm_folders WHERE share_id = $1 AND parent_id IS NOT DISTINCT FROM $2) \
           OR a.resource_id IN (SELECT id FROM rm_files WHERE share_id = $1 AND folder_id IS NOT DISTINCT FROM $2))",
        share_id.to_owned(),
        parent.map(str::to_owned)
    )?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The ACL of one resource, for `GET /permissions/acl`.
pub async fn acl(db: &Db, resource_id: &str) -> Result<(bool, Vec<AceRow>), sqlx::Error> {
    let inherit = db_fetch_optional!(
        db,
        (bool,),
        "SELECT inherit_from_parent FROM rm_acls WHERE resource_id = $1",
        resource_id.to_owned()
    )?
    .map(|r| r.0)
    .unwrap_or(true);
    let entries = entries_on(db, &[resource_id.to_owned()]).await?;
    Ok((inherit, entries))
}

/// Ids of shares where any of `principals` holds a live membership (owner
/// included).
pub fn member_share_filter(first_placeholder: usize, n: usize) -> String {
    format!(
        "s.id IN (SELECT m.share_id FROM rm_share_members m WHERE m.principal_id IN ({}) \
         AND (m.expires_at IS NULL OR m.expires_at > ${}))",
        placeholders(first_placeholder, n),
        first_placeholder + n
    )
}

/// An invitation row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationRow {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    pub email: String,
    pub role: String,
    pub message: Option<String>,
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub invited_by: String,
    pub created_at: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
}

const INV_COLS: &str =
    "id, tenant_id, share_id, email, role, message, status, expires_at, invited_by, created_at, responded_at";

pub async fn invitation(
    db: &Db,
    tenant_id: &str,
    id: &str,
) -> Result<Option<InvitationRow>, sqlx::Error> {
    db_fetch_optional!(
        db,
        InvitationRow,
        &format!("SELECT {INV_COLS} FROM rm_invitations WHERE tenant_id = $1 AND id = $2"),
        tenant_id.to_owned(),
        id.to_owned()
    )
}

pub async fn share_invitations(
    db: &Db,
    share_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<InvitationRow>, i64), sqlx::Error> {
    let rows = db_fetch_all!(
        db,
        InvitationRow,
        &format!("SELECT {INV_COLS} FROM rm_invitations WHERE share_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"),
        share_id.to_owned(),
        limit,
        offset
    )?;
    let total = db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_invitations WHERE share_id = $1",
        share_id.to_owned()
    )?;
    Ok((rows, total))
}

/// Invitations addressed to an email (case-insensitive) in a tenant.
pub async fn invitations_for(
    db: &Db,
    tenant_id: &str,
    email: &str,
    status: Option<&str>,
) -> Result<Vec<InvitationRow>, sqlx::Error> {
    db_fetch_all!(
        db,
        InvitationRow,
        &format!(
            "SELECT {INV_COLS} FROM rm_invitations WHERE tenant_id = $1 AND lower(email) = lower($2) \
             AND ($3 IS NULL OR status = $3) ORDER BY created_at DESC, id"
        ),
        tenant_id.to_owned(),
        email.to_owned(),
        status.map(str::to_owned)
    )
}

/// Whether a user id belongs to the tenant.
pub async fn user_in_tenant(db: &Db, tenant_id: &str, user_id: &str) -> Result<bool, sqlx::Error> {
    let n = db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_users WHERE tenant_id = $1 AND id = $2",
        tenant_id.to_owned(),
        user_id.to_owned()
    )?;
    Ok(n > 0)
}

/// Role strength for ordering (owner strongest).
pub fn role_rank(r: &str) -> u8 {
    match r.parse::<ShareRole>() {
        Ok(ShareRole::Owner) => 0,
        Ok(ShareRole::Admin) => 1,
        Ok(ShareRole::Contributor) => 2,
        Ok(ShareRole::Reader) => 3,
        Err(_) => 4,
    }
}

/// Whether a group id belongs to the tenant.
pub async fn group_in_tenant(
    db: &Db,
    tenant_id: &str,
    group_id: &str,
) -> Result<bool, sqlx::Error> {
    let n = db_fetch_scalar!(
        db,
        i64,
        "SELECT COUNT(*) FROM rm_groups WHERE tenant_id = $1 AND id = $2",
        tenant_id.to_owned(),
        group_id.to_owned()
    )?;
    Ok(n > 0)
}

/// A group's name, if it belongs to the tenant.
pub async fn group_name(
    db: &Db,
    tenant_id: &str,
    group_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    Ok(db_fetch_optional!(
        db,
        (String,),
        "SELECT name FROM rm_groups WHERE tenant_id = $1 AND id = $2",
        tenant_id.to_owned(),
        group_id.to_owned()
    )?
    .map(|r| r.0))
}
