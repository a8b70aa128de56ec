//! Sync: devices with a cursor per share, what a device's change becomes when
//! the server moved on meanwhile (conflict strategies), and recorded conflicts.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::{DomainEvent, LogPosition};
use crate::id::{ConflictId, ShareId, TenantId, UserId};

/// Longest accepted client-generated device id (SPEC §1).
pub const MAX_DEVICE_ID: usize = 128;

/// The stream a user's device lives in (device ids are chosen by clients, so
/// they are only unique per user).
pub fn device_stream(user: UserId, device_id: &str) -> String {
    format!("device:{user}:{device_id}")
}

/// Checks a client-generated device id: 1–128 characters, no control characters.
pub fn validate_device_id(id: &str) -> Result<(), &'static str> {
    let n = id.chars().count();
    if n == 0 || n > MAX_DEVICE_ID {
        return Err("must be 1 to 128 characters");
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeType {
    Created,
    Updated,
    Deleted,
    Moved,
    Renamed,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Created => "created",
            ChangeType::Updated => "updated",
            ChangeType::Deleted => "deleted",
            ChangeType::Moved => "moved",
            ChangeType::Renamed => "renamed",
        }
    }
}

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    File,
    Folder,
    Share,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::File => "file",
            ResourceType::Folder => "folder",
            ResourceType::Share => "share",
        }
    }
}

/// How a stale change (its base version is no longer current) is settled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictStrategy {
    /// Store the conflict and let a person decide (the request answers 409).
    #[default]
    Manual,
    /// The newer of the two writes wins (the client's, unless it says it is older).
    LastWriterWins,
    /// The server's version stays; the client's content becomes a conflicted copy.
    KeepBoth,
    ServerWins,
    ClientWins,
}

impl ConflictStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictStrategy::Manual => "MANUAL",
            ConflictStrategy::LastWriterWins => "LAST_WRITER_WINS",
            ConflictStrategy::KeepBoth => "KEEP_BOTH",
            ConflictStrategy::ServerWins => "SERVER_WINS",
            ConflictStrategy::ClientWins => "CLIENT_WINS",
        }
    }

    /// Parses the upper-case wire form (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "MANUAL" => ConflictStrategy::Manual,
            "LAST_WRITER_WINS" => ConflictStrategy::LastWriterWins,
            "KEEP_BOTH" => ConflictStrategy::KeepBoth,
            "SERVER_WINS" => ConflictStrategy::ServerWins,
            "CLIENT_WINS" => ConflictStrategy::ClientWins,
            _ => return None,
        })
    }
}

/// What settling a conflict does to the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The client's change is applied over the server's state.
    ApplyClient,
    /// The server's state stays; the client's change is dropped.
    KeepServer,
    /// The server's state stays and the client's content is saved beside it.
    KeepBoth,
}

/// How `strategy` settles a stale `change` (`None` for MANUAL: a person
/// decides). `client_modified_at` is when the client says it made the change;
/// `server_modified_at` when the server's current version was written.
pub fn settle(
    strategy: ConflictStrategy,
    change: ChangeType,
    client_modified_at: Option<DateTime<Utc>>,
    server_modified_at: DateTime<Utc>,
) -> Option<Settlement> {
    Some(match strategy {
        ConflictStrategy::Manual => return None,
        ConflictStrategy::ClientWins => Settlement::ApplyClient,
        ConflictStrategy::ServerWins => Settlement::KeepServer,
        // Without a client timestamp the client's write is the later one: it
        // reaches the server after the version it conflicts with.
        ConflictStrategy::LastWriterWins => match client_modified_at {
            Some(c) if c < server_modified_at => Settlement::KeepServer,
            _ => Settlement::ApplyClient,
        },
        ConflictStrategy::KeepBoth => match change {
            // Only content can be kept twice; a delete of a file someone has
            // since edited keeps the edit, and a rename or move loses nothing.
            ChangeType::Updated | ChangeType::Created => Settlement::KeepBoth,
            ChangeType::Deleted => Settlement::KeepServer,
            ChangeType::Renamed | ChangeType::Moved => Settlement::ApplyClient,
        },
    })
}

/// "report (conflicted copy Alice's laptop 2026-04-23).txt": the name a
/// client's content is saved under beside the server's version. `who` is the
/// device or user name; the result is a valid item name of at most 255 chars.
pub fn conflicted_copy_name(name: &str, who: &str, date: NaiveDate) -> String {
    let who: String = who
        .chars()
        .filter(|c| *c != '/' && !c.is_control())
        .take(64)
        .collect();
    let who = who.trim();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let tag = if who.is_empty() {
        format!(" (conflicted copy {date})")
    } else {
        format!(" (conflicted copy {who} {date})")
    };
    let room = 255usize.saturating_sub(tag.chars().count() + ext.chars().count());
    let stem: String = stem.chars().take(room.max(1)).collect();
    format!("{stem}{tag}{ext}")
}

/// A change as a device sent it (kept with a conflict, to apply it later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClientChange {
    pub change_type: ChangeType,
    pub resource_type: ResourceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<DateTime<Utc>>,
}

/// A user's device and where it has read each share's change feed up to.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub device_id: Option<String>,
    pub user_id: Option<UserId>,
    pub tenant_id: Option<TenantId>,
    pub device_name: String,
    pub platform: String,
    pub client_version: String,
    pub cursors: BTreeMap<ShareId, LogPosition>,
}

/// The descriptive fields of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceInfo {
    pub device_name: String,
    pub platform: String,
    pub client_version: String,
}

#[derive(Debug, Clone)]
pub enum DeviceCommand {
    Register {
        device_id: String,
        user_id: UserId,
        tenant_id: TenantId,
        info: DeviceInfo,
        at: DateTime<Utc>,
    },
    /// `head`: the end of the feed now; a cursor cannot point past it.
    MoveCursor {
        share_id: ShareId,
        to: LogPosition,
        head: LogPosition,
        at: DateTime<Utc>,
    },
    /// A device's content change became a file version.
    RecordVersion {
        share_id: ShareId,
        file_id: String,
        change_type: ChangeType,
        base_version_id: Option<String>,
        version_id: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum DeviceEvent {
    DeviceRegistered {
        device_id: String,
        user_id: UserId,
        tenant_id: TenantId,
        #[serde(flatten)]
        info: DeviceInfo,
        at: DateTime<Utc>,
    },
    DeviceUpdated {
        device_id: String,
        user_id: UserId,
        #[serde(flatten)]
        info: DeviceInfo,
        at: DateTime<Utc>,
    },
    SyncCursorMoved {
        device_id: String,
        user_id: UserId,
        share_id: ShareId,
        commit: i64,
        position: i64,
        at: DateTime<Utc>,
    },
    SyncVersioned {
        device_id: String,
        user_id: UserId,
        share_id: ShareId,
        file_id: String,
        change_type: ChangeType,
        base_version_id: Option<String>,
        version_id: String,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for DeviceEvent {}

impl Aggregate for Device {
    type Command = DeviceCommand;
    type Event = DeviceEvent;

    fn decide(&self, command: &DeviceCommand) -> Result<Vec<DeviceEvent>, DomainError> {
        if let DeviceCommand::Register {
            device_id,
            user_id,
            tenant_id,
            info,
            at,
        } = command
        {
            validate_device_id(device_id).map_err(|m| DomainError::invalid("device_id", m))?;
            for (field, value) in [
                ("device_name", &info.device_name),
                ("platform", &info.platform),
                ("client_version", &info.client_version),
            ] {
                if value.chars().count() > 255 {
                    return Err(DomainError::invalid(
                        field,
                        "must be at most 255 characters",
                    ));
                }
            }
            if self.device_id.is_none() {
                return Ok(vec![DeviceEvent::DeviceRegistered {
                    device_id: device_id.clone(),
                    user_id: *user_id,
                    tenant_id: *tenant_id,
                    info: info.clone(),
                    at: *at,
                }]);
            }
            let same = self.device_name == info.device_name
                && self.platform == info.platform
                && self.client_version == info.client_version;
            return Ok(if same {
                vec![]
            } else {
                vec![DeviceEvent::DeviceUpdated {
                    device_id: device_id.clone(),
                    user_id: *user_id,
                    info: info.clone(),
                    at: *at,
                }]
            });
        }
        let (Some(device_id), Some(user_id)) = (self.device_id.clone(), self.user_id) else {
            return Err(DomainError::NotFound("device"));
        };
        match command {
            DeviceCommand::Register { .. } => Ok(vec![]),
            DeviceCommand::MoveCursor {
                share_id,
                to,
                head,
                at,
            } => {
                if to > head {
                    return Err(DomainError::BadRequest(
                        "position is beyond the end of the change feed".into(),
                    ));
                }
                Ok(vec![DeviceEvent::SyncCursorMoved {
                    device_id,
                    user_id,
                    share_id: *share_id,
                    commit: to.commit,
                    position: to.position,
                    at: *at,
                }])
            }
            DeviceCommand::RecordVersion {
                share_id,
                file_id,
                change_type,
                base_version_id,
                version_id,
                at,
            } => Ok(vec![DeviceEvent::SyncVersioned {
                device_id,
                user_id,
                share_id: *share_id,
                file_id: file_id.clone(),
                change_type: *change_type,
                base_version_id: base_version_id.clone(),
                version_id: version_id.clone(),
                at: *at,
            }]),
        }
    }

    fn evolve(&mut self, event: &DeviceEvent) {
        match event {
            DeviceEvent::DeviceRegistered {
                device_id,
                user_id,
                tenant_id,
                info,
                ..
            } => {
                self.device_id = Some(device_id.clone());
                self.user_id = Some(*user_id);
                self.tenant_id = Some(*tenant_id);
                self.device_name = info.device_name.clone();
                self.platform = info.platform.clone();
                self.client_version = info.client_version.clone();
            }
            DeviceEvent::DeviceUpdated { info, .. } => {
                self.device_name = info.device_name.clone();
                self.platform = info.platform.clone();
                self.client_version = info.client_version.clone();
            }
            DeviceEvent::SyncCursorMoved {
                share_id,
                commit,
                position,
                ..
            } => {
                self.cursors
                    .insert(*share_id, LogPosition::new(*commit, *position));
            }
            DeviceEvent::SyncVersioned { .. } => {}
        }
    }
}

/// A device's change that met a newer server state.
#[derive(Debug, Clone, Default)]
pub struct Conflict {
    pub id: Option<ConflictId>,
    pub strategy: ConflictStrategy,
    pub resolution: Option<ConflictStrategy>,
    pub change: Option<ClientChange>,
    pub share: Option<ShareId>,
}

/// Everything known when a conflict is detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConflictFacts {
    pub conflict_id: ConflictId,
    pub tenant_id: TenantId,
    pub share_id: ShareId,
    pub device_id: String,
    pub user_id: UserId,
    pub resource_type: ResourceType,
    pub resource_id: String,
    /// The resource's name when the conflict was found.
    pub name: String,
    pub change: ClientChange,
    pub base_version_id: Option<String>,
    pub server_version_id: Option<String>,
    pub strategy: ConflictStrategy,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum ConflictCommand {
    Detect(Box<ConflictFacts>),
    /// `resolution` must not be MANUAL; the result names what the resolution produced.
    Resolve {
        resolution: ConflictStrategy,
        result_resource_id: Option<String>,
        result_version_id: Option<String>,
        by: UserId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum ConflictEvent {
    ConflictDetected(Box<ConflictFacts>),
    ConflictResolved {
        conflict_id: ConflictId,
        share_id: ShareId,
        resolution: ConflictStrategy,
        result_resource_id: Option<String>,
        result_version_id: Option<String>,
        by: UserId,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for ConflictEvent {}

impl Aggregate for Conflict {
    type Command = ConflictCommand;
    type Event = ConflictEvent;

    fn decide(&self, command: &ConflictCommand) -> Result<Vec<ConflictEvent>, DomainError> {
        match command {
            ConflictCommand::Detect(facts) => {
                if self.id.is_some() {
                    return Err(DomainError::AlreadyExists(
                        "conflict already recorded".into(),
                    ));
                }
                Ok(vec![ConflictEvent::ConflictDetected(facts.clone())])
            }
            ConflictCommand::Resolve {
                resolution,
                result_resource_id,
                result_version_id,
                by,
                at,
            } => {
                let Some(id) = self.id else {
                    return Err(DomainError::NotFound("conflict"));
                };
                if self.resolution.is_some() {
                    return Err(DomainError::InvalidTransition(
                        "conflict is already resolved".into(),
                    ));
                }
                if *resolution == ConflictStrategy::Manual {
                    return Err(DomainError::invalid(
                        "resolution",
                        "MANUAL does not resolve a conflict; choose LAST_WRITER_WINS, KEEP_BOTH, SERVER_WINS or CLIENT_WINS",
                    ));
                }
                let share_id = self.share.ok_or(DomainError::NotFound("conflict"))?;
                Ok(vec![ConflictEvent::ConflictResolved {
                    conflict_id: id,
                    share_id,
                    resolution: *resolution,
                    result_resource_id: result_resource_id.clone(),
                    result_version_id: result_version_id.clone(),
                    by: *by,
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &ConflictEvent) {
        match event {
            ConflictEvent::ConflictDetected(f) => {
                self.id = Some(f.conflict_id);
                self.strategy = f.strategy;
                self.change = Some(f.change.clone());
                self.share = Some(f.share_id);
            }
            ConflictEvent::ConflictResolved { resolution, .. } => {
                self.resolution = Some(*resolution)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    fn user() -> UserId {
        UserId::from_uuid(Uuid::from_u128(7))
    }

    fn info(name: &str) -> DeviceInfo {
        DeviceInfo {
            device_name: name.into(),
            platform: "linux".into(),
            client_version: "1.0".into(),
        }
    }

    fn registered() -> DeviceEvent {
        DeviceEvent::DeviceRegistered {
            device_id: "laptop".into(),
            user_id: user(),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            info: info("Laptop"),
            at: Utc::now(),
        }
    }

    #[test]
    fn registering_again_updates_only_what_changed() {
        let cmd = |name: &str| DeviceCommand::Register {
            device_id: "laptop".into(),
            user_id: user(),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            info: info(name),
            at: Utc::now(),
        };
        Scenario::<Device>::given_nothing()
            .when(cmd("Laptop"))
            .then_types(&["device-registered"]);
        Scenario::<Device>::given([registered()])
            .when(cmd("Laptop"))
            .then([]);
        Scenario::<Device>::given([registered()])
            .when(cmd("Work laptop"))
            .then_types(&["device-updated"]);
    }

    #[test]
    fn a_cursor_cannot_pass_the_end_of_the_feed_nor_exist_without_a_device() {
        let share = ShareId::from_uuid(Uuid::from_u128(3));
        let head = LogPosition::new(10, 40);
        let state = Scenario::<Device>::given([registered()])
            .when(DeviceCommand::MoveCursor {
                share_id: share,
                to: LogPosition::new(9, 39),
                head,
                at: Utc::now(),
            })
            .then_types(&["sync-cursor-moved"]);
        assert_eq!(state.len(), 1);
        Scenario::<Device>::given([registered()])
            .when(DeviceCommand::MoveCursor {
                share_id: share,
                to: LogPosition::new(11, 1),
                head,
                at: Utc::now(),
            })
            .then_error_matches(|e| matches!(e, DomainError::BadRequest(_)));
        Scenario::<Device>::given_nothing()
            .when(DeviceCommand::MoveCursor {
                share_id: share,
                to: LogPosition::START,
                head,
                at: Utc::now(),
            })
            .then_error(DomainError::NotFound("device"));
    }

    fn detected() -> ConflictEvent {
        ConflictEvent::ConflictDetected(Box::new(ConflictFacts {
            conflict_id: ConflictId::from_uuid(Uuid::from_u128(9)),
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(3)),
            device_id: "laptop".into(),
            user_id: user(),
            resource_type: ResourceType::File,
            resource_id: "fil_x".into(),
            name: "a.txt".into(),
            change: ClientChange {
                change_type: ChangeType::Updated,
                resource_type: ResourceType::File,
                resource_id: Some("fil_x".into()),
                parent_id: None,
                name: None,
                base_version_id: Some("ver_a".into()),
                upload_session_id: Some("upl_b".into()),
                modified_at: None,
            },
            base_version_id: Some("ver_a".into()),
            server_version_id: Some("ver_c".into()),
            strategy: ConflictStrategy::Manual,
            at: Utc::now(),
        }))
    }

    #[test]
    fn a_conflict_resolves_once_and_never_as_manual() {
        let resolve = |r| ConflictCommand::Resolve {
            resolution: r,
            result_resource_id: None,
            result_version_id: None,
            by: user(),
            at: Utc::now(),
        };
        let ev = Scenario::<Conflict>::given([detected()])
            .when(resolve(ConflictStrategy::ServerWins))
            .then_types(&["conflict-resolved"]);
        let mut history = vec![detected()];
        history.extend(ev);
        Scenario::<Conflict>::given(history)
            .when(resolve(ConflictStrategy::ClientWins))
            .then_error(DomainError::InvalidTransition(
                "conflict is already resolved".into(),
            ));
        Scenario::<Conflict>::given([detected()])
            .when(resolve(ConflictStrategy::Manual))
            .then_error_matches(|e| matches!(e, DomainError::Invalid { .. }));
        Scenario::<Conflict>::given_nothing()
            .when(resolve(ConflictStrategy::ServerWins))
            .then_error(DomainError::NotFound("conflict"));
    }

    #[test]
    fn strategies_settle_as_documented() {
        let now = Utc::now();
        let earlier = now - chrono::Duration::minutes(5);
        use ChangeType::*;
        use ConflictStrategy::*;
        assert_eq!(settle(Manual, Updated, None, now), None);
        assert_eq!(
            settle(ClientWins, Deleted, None, now),
            Some(Settlement::ApplyClient)
        );
        assert_eq!(
            settle(ServerWins, Updated, None, now),
            Some(Settlement::KeepServer)
        );
        assert_eq!(
            settle(LastWriterWins, Updated, None, now),
            Some(Settlement::ApplyClient)
        );
        assert_eq!(
            settle(LastWriterWins, Updated, Some(earlier), now),
            Some(Settlement::KeepServer)
        );
        assert_eq!(
            settle(LastWriterWins, Updated, Some(now), earlier),
            Some(Settlement::ApplyClient)
        );
        assert_eq!(
            settle(KeepBoth, Updated, None, now),
            Some(Settlement::KeepBoth)
        );
        assert_eq!(
            settle(KeepBoth, Deleted, None, now),
            Some(Settlement::KeepServer)
        );
        assert_eq!(
            settle(KeepBoth, Renamed, None, now),
            Some(Settlement::ApplyClient)
        );
    }

    #[test]
    fn conflicted_copies_keep_the_extension_and_fit_in_a_name() {
        let d = NaiveDate::from_ymd_opt(2026, 4, 23).unwrap_or_default();
        assert_eq!(
            conflicted_copy_name("report.txt", "Alice's laptop", d),
            "report (conflicted copy Alice's laptop 2026-04-23).txt"
        );
        assert_eq!(
            conflicted_copy_name("Makefile", "a/b", d),
            "Makefile (conflicted copy ab 2026-04-23)"
        );
        assert_eq!(
            conflicted_copy_name(".bashrc", "", d),
            ".bashrc (conflicted copy 2026-04-23)"
        );
        let long = "x".repeat(255);
        let n = conflicted_copy_name(&format!("{long}.md"), "pc", d);
        assert!(n.chars().count() <= 255);
        assert!(n.ends_with("2026-04-23).md"));
        assert!(crate::name::validate_item_name(&n).is_ok());
    }
}
