//! Invitations to a share and access-control lists on shares, folders and
//! files. (Memberships live on the Share aggregate, which guards the
//! one-owner rule.)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::{Ace, AceType, AclLevel, Permission, Permissions, PrincipalType, ShareRole};
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{AceId, InvitationId, ShareId, UserId};

// ---------------------------------------------------------------- invitations

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Declined => "declined",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Invitation {
    pub id: Option<InvitationId>,
    pub share_id: Option<ShareId>,
    pub email: String,
    pub role: Option<ShareRole>,
    pub status: Option<InvitationStatus>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum InvitationCommand {
    Create {
        invitation_id: InvitationId,
        share_id: ShareId,
        email: String,
        role: ShareRole,
        message: Option<String>,
        expires_at: DateTime<Utc>,
        by: UserId,
        at: DateTime<Utc>,
    },
    /// `email` is the caller's; only the invitee may answer.
    Accept {
        email: String,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    Decline {
        email: String,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    Revoke {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum InvitationEvent {
    InvitationCreated {
        invitation_id: InvitationId,
        share_id: ShareId,
        email: String,
        role: ShareRole,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        expires_at: DateTime<Utc>,
        by: UserId,
        at: DateTime<Utc>,
    },
    InvitationAccepted {
        invitation_id: InvitationId,
        share_id: ShareId,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    InvitationDeclined {
        invitation_id: InvitationId,
        share_id: ShareId,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    InvitationRevoked {
        invitation_id: InvitationId,
        share_id: ShareId,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for InvitationEvent {}

impl Invitation {
    /// Whether the invitation can still be answered at `at`: 409 once
    /// answered, 410 when revoked or expired.
    fn answerable(&self, email: &str, at: DateTime<Utc>) -> Result<(), DomainError> {
        if !self.email.eq_ignore_ascii_case(email) {
            // Someone else's invitation: it must look as if it did not exist.
            return Err(DomainError::NotFound("invitation"));
        }
        match self.status {
            Some(InvitationStatus::Accepted) => Err(DomainError::InvalidTransition(
                "the invitation was already accepted".into(),
            )),
            Some(InvitationStatus::Declined) => Err(DomainError::InvalidTransition(
                "the invitation was already declined".into(),
            )),
            Some(InvitationStatus::Revoked) => {
                Err(DomainError::Gone("the invitation was revoked".into()))
            }
            _ if self.expires_at.is_some_and(|e| e <= at) => {
                Err(DomainError::Gone("the invitation has expired".into()))
            }
            _ => Ok(()),
        }
    }
}

impl Aggregate for Invitation {
    type Command = InvitationCommand;
    type Event = InvitationEvent;

    fn decide(&self, command: &InvitationCommand) -> Result<Vec<InvitationEvent>, DomainError> {
        if let InvitationCommand::Create {
            invitation_id,
            share_id,
            email,
            role,
            message,
            expires_at,
            by,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::AlreadyExists(
                    "invitation already exists".into(),
                ));
            }
            if *role == ShareRole::Owner {
                return Err(DomainError::invalid(
                    "role",
                    "invitations grant admin, contributor or reader",
                ));
            }
            if *expires_at <= *at {
                return Err(DomainError::invalid(
                    "expires_in_days",
                    "must be at least 1",
                ));
            }
            return Ok(vec![InvitationEvent::InvitationCreated {
                invitation_id: *invitation_id,
                share_id: *share_id,
                email: email.trim().to_owned(),
                role: *role,
                message: message.clone(),
                expires_at: *expires_at,
                by: *by,
                at: *at,
            }]);
        }
        let (Some(id), Some(share_id)) = (self.id, self.share_id) else {
            return Err(DomainError::NotFound("invitation"));
        };
        match command {
            InvitationCommand::Create { .. } => Ok(vec![]),
            InvitationCommand::Accept { email, user_id, at } => {
                self.answerable(email, *at)?;
                Ok(vec![InvitationEvent::InvitationAccepted {
                    invitation_id: id,
                    share_id,
                    user_id: *user_id,
                    at: *at,
                }])
            }
            InvitationCommand::Decline { email, user_id, at } => {
                self.answerable(email, *at)?;
                Ok(vec![InvitationEvent::InvitationDeclined {
                    invitation_id: id,
                    share_id,
                    user_id: *user_id,
                    at: *at,
                }])
            }
            InvitationCommand::Revoke { at } => match self.status {
                Some(InvitationStatus::Revoked) => Ok(vec![]),
                Some(InvitationStatus::Pending) => Ok(vec![InvitationEvent::InvitationRevoked {
                    invitation_id: id,
                    share_id,
                    at: *at,
                }]),
                _ => Err(DomainError::InvalidTransition(
                    "the invitation was already answered".into(),
                )),
            },
        }
    }

    fn evolve(&mut self, event: &InvitationEvent) {
        match event {
            InvitationEvent::InvitationCreated {
                invitation_id,
                share_id,
                email,
                role,
                expires_at,
                ..
            } => {
                self.id = Some(*invitation_id);
                self.share_id = Some(*share_id);
                self.email = email.clone();
                self.role = Some(*role);
                self.expires_at = Some(*expires_at);
                self.status = Some(InvitationStatus::Pending);
            }
            InvitationEvent::InvitationAccepted { .. } => {
                self.status = Some(InvitationStatus::Accepted)
            }
            InvitationEvent::InvitationDeclined { .. } => {
                self.status = Some(InvitationStatus::Declined)
            }
            InvitationEvent::InvitationRevoked { .. } => {
                self.status = Some(InvitationStatus::Revoked)
            }
        }
    }
}

// ----------------------------------------------------------------------- ACLs

/// What an ACL is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Share,
    Folder,
    File,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Share => "share",
            Self::Folder => "folder",
            Self::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "share" => Some(Self::Share),
            "folder" => Some(Self::Folder),
            "file" => Some(Self::File),
            _ => None,
        }
    }
}

/// The stream an ACL lives in, beside its resource's own stream.
pub fn acl_stream(resource_id: &str) -> String {
    format!("acl:{resource_id}")
}

/// One entry as stored in events and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AceRecord {
    pub id: AceId,
    pub principal_type: PrincipalType,
    /// Empty for everyone.
    #[serde(default)]
    pub principal_id: String,
    pub permissions: Vec<Permission>,
    pub ace_type: AceType,
    pub inherit_to_children: bool,
}

impl AceRecord {
    pub fn to_ace(&self) -> Ace {
        Ace {
            principal_type: self.principal_type,
            principal_id: self.principal_id.clone(),
            permissions: Permissions::of(&self.permissions),
            ace_type: self.ace_type,
            inherit_to_children: self.inherit_to_children,
        }
    }

    fn same_key(&self, t: PrincipalType, id: &str, ace_type: AceType) -> bool {
        self.principal_type == t && self.principal_id == id && self.ace_type == ace_type
    }
}

#[derive(Debug, Clone)]
pub struct Acl {
    pub resource: Option<(ResourceType, String, ShareId)>,
    pub entries: Vec<AceRecord>,
    pub inherit_from_parent: bool,
}

impl Default for Acl {
    fn default() -> Self {
        Self {
            resource: None,
            entries: vec![],
            inherit_from_parent: true,
        }
    }
}

impl Acl {
    pub fn level(&self) -> AclLevel {
        AclLevel {
            entries: self.entries.iter().map(AceRecord::to_ace).collect(),
            inherit_from_parent: self.inherit_from_parent,
        }
    }
}

#[derive(Debug, Clone)]
pub enum AclCommand {
    AddEntry {
        resource_type: ResourceType,
        resource_id: String,
        share_id: ShareId,
        entry: AceRecord,
        at: DateTime<Utc>,
    },
    RemoveEntry {
        resource_type: ResourceType,
        resource_id: String,
        share_id: ShareId,
        principal_type: PrincipalType,
        principal_id: String,
        ace_type: AceType,
        at: DateTime<Utc>,
    },
    /// Breaking inheritance may copy the entries the resource inherited so
    /// far (`copied`, computed by the caller from the ancestors' ACLs).
    SetInheritance {
        resource_type: ResourceType,
        resource_id: String,
        share_id: ShareId,
        inherit_from_parent: bool,
        copied: Vec<AceRecord>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum AclEvent {
    AclEntryAdded {
        resource_type: ResourceType,
        resource_id: String,
        share_id: ShareId,
        entry: AceRecord,
        at: DateTime<Utc>,
    },
    AclEntryRemoved {
        resource_type: ResourceType,
        resource_id: String,
        share_id: ShareId,
        entry_id: AceId,
        at: DateTime<Utc>,
    },
    AclInheritanceChanged {
        resource_type: ResourceType,
        resource_id: String,
        share_id: ShareId,
        inherit_from_parent: bool,
        #[serde(default)]
        copied: Vec<AceRecord>,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for AclEvent {}

fn check_entry(e: &AceRecord) -> Result<(), DomainError> {
    if e.permissions.is_empty() {
        return Err(DomainError::invalid(
            "permissions",
            "name at least one permission",
        ));
    }
    match (e.principal_type, e.principal_id.is_empty()) {
        (PrincipalType::Everyone, false) => Err(DomainError::invalid(
            "principal_id",
            "must be empty for principal_type everyone",
        )),
        (PrincipalType::User | PrincipalType::Group, true) => {
            Err(DomainError::invalid("principal_id", "Field required"))
        }
        _ => Ok(()),
    }
}

impl Aggregate for Acl {
    type Command = AclCommand;
    type Event = AclEvent;

    fn decide(&self, command: &AclCommand) -> Result<Vec<AclEvent>, DomainError> {
        match command {
            AclCommand::AddEntry {
                resource_type,
                resource_id,
                share_id,
                entry,
                at,
            } => {
                check_entry(entry)?;
                if self
                    .entries
                    .iter()
                    .any(|e| e.same_key(entry.principal_type, &entry.principal_id, entry.ace_type))
                {
                    return Err(DomainError::AlreadyExists(format!(
                        "an {} entry for this principal exists; remove it first",
                        entry.ace_type.as_str()
                    )));
                }
                Ok(vec![AclEvent::AclEntryAdded {
                    resource_type: *resource_type,
                    resource_id: resource_id.clone(),
                    share_id: *share_id,
                    entry: entry.clone(),
                    at: *at,
                }])
            }
            AclCommand::RemoveEntry {
                resource_type,
                resource_id,
                share_id,
                principal_type,
                principal_id,
                ace_type,
                at,
            } => {
                let Some(e) = self
                    .entries
                    .iter()
                    .find(|e| e.same_key(*principal_type, principal_id, *ace_type))
                else {
                    return Err(DomainError::NotFound("ACL entry"));
                };
                Ok(vec![AclEvent::AclEntryRemoved {
                    resource_type: *resource_type,
                    resource_id: resource_id.clone(),
                    share_id: *share_id,
                    entry_id: e.id,
                    at: *at,
                }])
            }
            AclCommand::SetInheritance {
                resource_type,
                resource_id,
                share_id,
                inherit_from_parent,
                copied,
                at,
            } => {
                if *inherit_from_parent == self.inherit_from_parent {
                    return Ok(vec![]);
                }
                // Copies that duplicate an entry already here are dropped.
                let copied = if *inherit_from_parent {
                    vec![]
                } else {
                    let mut out: Vec<AceRecord> = vec![];
                    for c in copied {
                        let dup = |e: &AceRecord| {
                            e.same_key(c.principal_type, &c.principal_id, c.ace_type)
                        };
                        if !self.entries.iter().any(dup) && !out.iter().any(dup) {
                            out.push(c.clone());
                        }
                    }
                    out
                };
                Ok(vec![AclEvent::AclInheritanceChanged {
                    resource_type: *resource_type,
                    resource_id: resource_id.clone(),
                    share_id: *share_id,
                    inherit_from_parent: *inherit_from_parent,
                    copied,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &AclEvent) {
        match event {
            AclEvent::AclEntryAdded {
                resource_type,
                resource_id,
                share_id,
                entry,
                ..
            } => {
                self.resource = Some((*resource_type, resource_id.clone(), *share_id));
                self.entries.push(entry.clone());
            }
            AclEvent::AclEntryRemoved {
                resource_type,
                resource_id,
                share_id,
                entry_id,
                ..
            } => {
                self.resource = Some((*resource_type, resource_id.clone(), *share_id));
                self.entries.retain(|e| e.id != *entry_id);
            }
            AclEvent::AclInheritanceChanged {
                resource_type,
                resource_id,
                share_id,
                inherit_from_parent,
                copied,
                ..
            } => {
                self.resource = Some((*resource_type, resource_id.clone(), *share_id));
                self.inherit_from_parent = *inherit_from_parent;
                self.entries.extend(copied.iter().cloned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn invited(expires_in: i64) -> InvitationEvent {
        InvitationEvent::InvitationCreated {
            invitation_id: InvitationId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(2)),
            email: "bea@example.com".into(),
            role: ShareRole::Reader,
            message: None,
            expires_at: Utc::now() + chrono::Duration::seconds(expires_in),
            by: UserId::from_uuid(Uuid::from_u128(3)),
            at: Utc::now(),
        }
    }

    fn accept(email: &str) -> InvitationCommand {
        InvitationCommand::Accept {
            email: email.into(),
            user_id: UserId::from_uuid(Uuid::from_u128(4)),
            at: Utc::now(),
        }
    }

    #[test]
    fn invitations_answer_once_and_expire() {
        Scenario::<Invitation>::given([invited(60)])
            .when(accept("BEA@example.com"))
            .then_types(&["invitation-accepted"]);
        Scenario::<Invitation>::given([invited(60)])
            .when(accept("eve@example.com"))
            .then_error(DomainError::NotFound("invitation"));
        let accepted = InvitationEvent::InvitationAccepted {
            invitation_id: InvitationId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(2)),
            user_id: UserId::from_uuid(Uuid::from_u128(4)),
            at: Utc::now(),
        };
        Scenario::<Invitation>::given([invited(60), accepted])
            .when(accept("bea@example.com"))
            .then_error_matches(|e| matches!(e, DomainError::InvalidTransition(_)));
        Scenario::<Invitation>::given([invited(-1)])
            .when(accept("bea@example.com"))
            .then_error_matches(|e| matches!(e, DomainError::Gone(_)));
        let revoked = InvitationEvent::InvitationRevoked {
            invitation_id: InvitationId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(2)),
            at: Utc::now(),
        };
        Scenario::<Invitation>::given([invited(60), revoked])
            .when(accept("bea@example.com"))
            .then_error_matches(|e| matches!(e, DomainError::Gone(_)));
    }

    fn entry(n: u128, ace_type: AceType) -> AceRecord {
        AceRecord {
            id: AceId::from_uuid(Uuid::from_u128(n)),
            principal_type: PrincipalType::User,
            principal_id: "usr_a".into(),
            permissions: vec![Permission::Read],
            ace_type,
            inherit_to_children: true,
        }
    }

    fn add(e: AceRecord) -> AclCommand {
        AclCommand::AddEntry {
            resource_type: ResourceType::Folder,
            resource_id: "fld_x".into(),
            share_id: ShareId::from_uuid(Uuid::from_u128(2)),
            entry: e,
            at: Utc::now(),
        }
    }

    #[test]
    fn one_entry_per_principal_and_type() {
        let events = Scenario::<Acl>::given_nothing()
            .when(add(entry(1, AceType::Allow)))
            .then_types(&["acl-entry-added"]);
        Scenario::<Acl>::given(events.clone())
            .when(add(entry(2, AceType::Allow)))
            .then_error_matches(|e| matches!(e, DomainError::AlreadyExists(_)));
        Scenario::<Acl>::given(events)
            .when(add(entry(3, AceType::Deny)))
            .then_types(&["acl-entry-added"]);
    }

    #[test]
    fn breaking_inheritance_copies_without_duplicates() {
        let given = Scenario::<Acl>::given_nothing()
            .when(add(entry(1, AceType::Allow)))
            .then_types(&["acl-entry-added"]);
        let events = Scenario::<Acl>::given(given.clone())
            .when(AclCommand::SetInheritance {
                resource_type: ResourceType::Folder,
                resource_id: "fld_x".into(),
                share_id: ShareId::from_uuid(Uuid::from_u128(2)),
                inherit_from_parent: false,
                copied: vec![entry(5, AceType::Allow), entry(6, AceType::Deny)],
                at: Utc::now(),
            })
            .then_types(&["acl-inheritance-changed"]);
        let acl = Acl::replay(given.iter().chain(events.iter()));
        assert!(!acl.inherit_from_parent);
        assert_eq!(acl.entries.len(), 2);
    }
}
