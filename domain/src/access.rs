//! Who may do what: share roles, permission bits, ACL entries and the one
//! resolution algorithm of SPEC §3.
//!
//! effective = (role permissions ∪ matching allow entries) − matching deny
//! entries, where an entry matches the user, one of the user's groups or
//! everyone; entries are collected from the resource up through its
//! ancestors until one breaks inheritance; deny beats allow. Tenant admins
//! get everything.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One permission (SPEC §3 bit values).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    Read,
    Write,
    Delete,
    Create,
    Share,
    ManagePermissions,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Self::Read,
        Self::Write,
        Self::Delete,
        Self::Create,
        Self::Share,
        Self::ManagePermissions,
    ];

    pub fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Write => 2,
            Self::Delete => 4,
            Self::Create => 8,
            Self::Share => 16,
            Self::ManagePermissions => 32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Delete => "DELETE",
            Self::Create => "CREATE",
            Self::Share => "SHARE",
            Self::ManagePermissions => "MANAGE_PERMISSIONS",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = ();

    /// Accepts the SPEC names in any case (`READ`, `read`, `manage_permissions`).
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

/// A set of permissions as its bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(pub u8);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions(63);

    pub fn of(list: &[Permission]) -> Self {
        Permissions(list.iter().fold(0, |m, p| m | p.bit()))
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn union(self, o: Permissions) -> Self {
        Permissions(self.0 | o.0)
    }

    pub fn minus(self, o: Permissions) -> Self {
        Permissions(self.0 & !o.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn list(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.contains(*p))
            .collect()
    }
}

/// A share role (SPEC §3).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ShareRole {
    Owner,
    Admin,
    Contributor,
    Reader,
}

impl ShareRole {
    pub fn permissions(self) -> Permissions {
        match self {
            Self::Owner | Self::Admin => Permissions::ALL,
            Self::Contributor => Permissions::of(&[
                Permission::Read,
                Permission::Write,
                Permission::Delete,
                Permission::Create,
            ]),
            Self::Reader => Permissions::of(&[Permission::Read]),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Contributor => "contributor",
            Self::Reader => "reader",
        }
    }

    /// The stronger of two roles.
    pub fn max(self, o: ShareRole) -> ShareRole {
        // Declared strongest first.
        if self <= o {
            self
        } else {
            o
        }
    }
}

impl FromStr for ShareRole {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "contributor" => Ok(Self::Contributor),
            "reader" => Ok(Self::Reader),
            _ => Err(()),
        }
    }
}

/// Whom an ACL entry or membership names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalType {
    User,
    Group,
    Everyone,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Everyone => "everyone",
        }
    }
}

impl FromStr for PrincipalType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "user" => Ok(Self::User),
            "group" => Ok(Self::Group),
            "everyone" => Ok(Self::Everyone),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AceType {
    Allow,
    Deny,
}

impl AceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One access-control entry as resolution needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    pub principal_type: PrincipalType,
    /// `usr_…` or `grp_…`; empty for everyone.
    pub principal_id: String,
    pub permissions: Permissions,
    pub ace_type: AceType,
    /// Whether descendants inherit this entry.
    pub inherit_to_children: bool,
}

/// One level of the path from a resource up to its share root: the entries
/// set on it and whether it takes its parent's.
#[derive(Debug, Clone, Default)]
pub struct AclLevel {
    pub entries: Vec<Ace>,
    pub inherit_from_parent: bool,
}

/// A share membership as resolution needs it.
#[derive(Debug, Clone)]
pub struct Membership {
    pub principal_type: PrincipalType,
    pub principal_id: String,
    pub role: ShareRole,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The caller as resolution sees them.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub groups: &'a [String],
    pub is_tenant_admin: bool,
}

impl Subject<'_> {
    fn matches(&self, principal_type: PrincipalType, principal_id: &str) -> bool {
        match principal_type {
            PrincipalType::Everyone => true,
            PrincipalType::User => principal_id == self.user_id,
            PrincipalType::Group => self.groups.iter().any(|g| g == principal_id),
        }
    }
}

/// The strongest live role the subject holds on a share, through its owner
/// (user or group) or a membership not yet expired at `now`.
pub fn share_role(
    subject: &Subject<'_>,
    owner_id: &str,
    members: &[Membership],
    now: DateTime<Utc>,
) -> Option<ShareRole> {
    let owner = (owner_id == subject.user_id || subject.groups.iter().any(|g| g == owner_id))
        .then_some(ShareRole::Owner);
    members
        .iter()
        .filter(|m| m.expires_at.is_none_or(|e| e > now))
        .filter(|m| subject.matches(m.principal_type, &m.principal_id))
        .map(|m| m.role)
        .chain(owner)
        .reduce(ShareRole::max)
}

/// The effective permissions on a resource. `levels[0]` is the resource
/// itself, then its parent, up to the share root.
pub fn resolve(subject: &Subject<'_>, role: Option<ShareRole>, levels: &[AclLevel]) -> Permissions {
    if subject.is_tenant_admin {
        return Permissions::ALL;
    }
    let mut allow = role.map(ShareRole::permissions).unwrap_or_default();
    let mut deny = Permissions::NONE;
    for (depth, level) in levels.iter().enumerate() {
        for e in &level.entries {
            // An ancestor's entry reaches down only when it says so.
            if depth > 0 && !e.inherit_to_children {
                continue;
            }
            if !subject.matches(e.principal_type, &e.principal_id) {
                continue;
            }
            match e.ace_type {
                AceType::Allow => allow = allow.union(e.permissions),
                AceType::Deny => deny = deny.union(e.permissions),
            }
        }
        if !level.inherit_from_parent {
            break;
        }
    }
    allow.minus(deny)
}

/// Whether a share's contents are visible at all: with no READ, the caller
/// gets 404 rather than 403.
pub fn visible(p: Permissions) -> bool {
    !p.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Ace {
        Ace {
            principal_type: PrincipalType::User,
            principal_id: id.into(),
            permissions: Permissions::of(&[Permission::Read]),
            ace_type: AceType::Allow,
            inherit_to_children: true,
        }
    }

    #[test]
    fn roles_grant_their_documented_permissions() {
        assert_eq!(ShareRole::Owner.permissions(), Permissions::ALL);
        assert_eq!(
            ShareRole::Reader.permissions().list(),
            vec![Permission::Read]
        );
        assert!(!ShareRole::Contributor
            .permissions()
            .contains(Permission::Share));
    }

    #[test]
    fn deny_beats_allow_and_role() {
        let g = vec!["grp_a".to_string()];
        let s = Subject {
            user_id: "usr_1",
            groups: &g,
            is_tenant_admin: false,
        };
        let mut deny = user("usr_1");
        deny.ace_type = AceType::Deny;
        let level = AclLevel {
            entries: vec![deny],
            inherit_from_parent: true,
        };
        let p = resolve(&s, Some(ShareRole::Contributor), &[level]);
        assert!(!p.contains(Permission::Read));
        assert!(p.contains(Permission::Write));
    }

    #[test]
    fn broken_inheritance_stops_the_walk() {
        let s = Subject {
            user_id: "usr_1",
            groups: &[],
            is_tenant_admin: false,
        };
        let child = AclLevel {
            entries: vec![],
            inherit_from_parent: false,
        };
        let parent = AclLevel {
            entries: vec![user("usr_1")],
            inherit_from_parent: true,
        };
        assert!(resolve(&s, None, &[child.clone(), parent.clone()]).is_empty());
        let child = AclLevel {
            inherit_from_parent: true,
            ..child
        };
        assert!(resolve(&s, None, &[child, parent]).contains(Permission::Read));
    }

    #[test]
    fn expired_memberships_grant_nothing() {
        let s = Subject {
            user_id: "usr_1",
            groups: &[],
            is_tenant_admin: false,
        };
        let now = Utc::now();
        let m = Membership {
            principal_type: PrincipalType::User,
            principal_id: "usr_1".into(),
            role: ShareRole::Reader,
            expires_at: Some(now - chrono::Duration::seconds(1)),
        };
        assert_eq!(share_role(&s, "usr_9", std::slice::from_ref(&m), now), None);
        let m = Membership {
            expires_at: Some(now + chrono::Duration::seconds(60)),
            ..m
        };
        assert_eq!(share_role(&s, "usr_9", &[m], now), Some(ShareRole::Reader));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const USERS: [&str; 3] = ["usr_a", "usr_b", "usr_c"];
        const GROUPS: [&str; 3] = ["grp_x", "grp_y", "grp_z"];

        fn ace() -> impl Strategy<Value = Ace> {
            (0..3usize, 0..3usize, 1u8..64, any::<bool>(), any::<bool>()).prop_map(
                |(kind, who, bits, deny, inherit)| {
                    let (principal_type, principal_id) = match kind {
                        0 => (PrincipalType::User, USERS[who].to_string()),
                        1 => (PrincipalType::Group, GROUPS[who].to_string()),
                        _ => (PrincipalType::Everyone, String::new()),
                    };
                    Ace {
                        principal_type,
                        principal_id,
                        permissions: Permissions(bits),
                        ace_type: if deny { AceType::Deny } else { AceType::Allow },
                        inherit_to_children: inherit,
                    }
                },
            )
        }

        fn levels() -> impl Strategy<Value = Vec<AclLevel>> {
            prop::collection::vec(
                (prop::collection::vec(ace(), 0..4), any::<bool>()).prop_map(
                    |(entries, inherit)| AclLevel {
                        entries,
                        inherit_from_parent: inherit,
                    },
                ),
                1..5,
            )
        }

        fn role() -> impl Strategy<Value = Option<ShareRole>> {
            prop::option::of(prop::sample::select(vec![
                ShareRole::Owner,
                ShareRole::Admin,
                ShareRole::Contributor,
                ShareRole::Reader,
            ]))
        }

        fn groups() -> impl Strategy<Value = Vec<String>> {
            prop::sample::subsequence(GROUPS.to_vec(), 0..=3)
                .prop_map(|g| g.into_iter().map(String::from).collect())
        }

        /// The entries that reach the resource: its own, then each
        /// ancestor's inheritable ones while inheritance holds.
        fn reaching(levels: &[AclLevel]) -> Vec<&Ace> {
            let mut out = vec![];
            for (depth, l) in levels.iter().enumerate() {
                out.extend(
                    l.entries
                        .iter()
                        .filter(|e| depth == 0 || e.inherit_to_children),
                );
                if !l.inherit_from_parent {
                    break;
                }
            }
            out
        }

        proptest! {
            #[test]
            fn deny_always_beats_allow(levels in levels(), role in role(), groups in groups()) {
                let s = Subject { user_id: "usr_a", groups: &groups, is_tenant_admin: false };
                let p = resolve(&s, role, &levels);
                for e in reaching(&levels) {
                    if e.ace_type == AceType::Deny && s.matches(e.principal_type, &e.principal_id) {
                        prop_assert!(p.minus(Permissions::ALL.minus(e.permissions)) == Permissions::NONE);
                    }
                }
            }

            #[test]
            fn a_grant_comes_from_the_role_or_a_matching_reaching_allow(
                levels in levels(), role in role(), groups in groups()
            ) {
                let s = Subject { user_id: "usr_a", groups: &groups, is_tenant_admin: false };
                let p = resolve(&s, role, &levels);
                let mut granted = role.map(ShareRole::permissions).unwrap_or_default();
                for e in reaching(&levels) {
                    if e.ace_type == AceType::Allow && s.matches(e.principal_type, &e.principal_id) {
                        granted = granted.union(e.permissions);
                    }
                }
                prop_assert_eq!(p.minus(granted), Permissions::NONE);
            }

            #[test]
            fn broken_inheritance_ignores_every_ancestor(
                levels in levels(), extra in levels(), role in role(), groups in groups()
            ) {
                let s = Subject { user_id: "usr_b", groups: &groups, is_tenant_admin: false };
                let mut own = levels[..1].to_vec();
                own[0].inherit_from_parent = false;
                let mut longer = own.clone();
                longer.extend(extra);
                prop_assert_eq!(resolve(&s, role, &own), resolve(&s, role, &longer));
            }

            #[test]
            fn entries_for_groups_the_user_is_not_in_change_nothing(
                levels in levels(), role in role()
            ) {
                let none: Vec<String> = vec![];
                let s = Subject { user_id: "usr_c", groups: &none, is_tenant_admin: false };
                let stripped: Vec<AclLevel> = levels
                    .iter()
                    .map(|l| AclLevel {
                        entries: l.entries.iter().filter(|e| e.principal_type != PrincipalType::Group).cloned().collect(),
                        inherit_from_parent: l.inherit_from_parent,
                    })
                    .collect();
                prop_assert_eq!(resolve(&s, role, &levels), resolve(&s, role, &stripped));
            }

            #[test]
            fn tenant_admins_get_everything(levels in levels(), role in role(), groups in groups()) {
                let s = Subject { user_id: "usr_a", groups: &groups, is_tenant_admin: true };
                prop_assert_eq!(resolve(&s, role, &levels), Permissions::ALL);
            }
        }
    }
}
