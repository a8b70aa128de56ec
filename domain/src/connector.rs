//! The Connector aggregate: an SMB file server kept in step with a folder of
//! a share. Its stream records the configuration and every sync run (start
//! and outcome); what each side held at the last run is the engine's working
//! state, not an event.
//!
//! The password is sealed under the server key before it reaches a command;
//! events carry it in the field `credentials`, which every outward channel
//! treats as a secret (see `secret`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{ConnectorId, ShareId, TenantId, UserId};

pub const MAX_NAME: usize = 255;
pub const MAX_TEXT: usize = 1024;
pub const MAX_PATTERNS: usize = 100;
/// Longest schedule: a week.
pub const MAX_INTERVAL_MINUTES: i64 = 10_080;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SyncDirection {
    #[default]
    Bidirectional,
    SmbToScaidrive,
    ScaidriveToSmb,
}

impl SyncDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bidirectional => "bidirectional",
            Self::SmbToScaidrive => "smb_to_scaidrive",
            Self::ScaidriveToSmb => "scaidrive_to_smb",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bidirectional" => Some(Self::Bidirectional),
            "smb_to_scaidrive" => Some(Self::SmbToScaidrive),
            "scaidrive_to_smb" => Some(Self::ScaidriveToSmb),
            _ => None,
        }
    }
    pub fn pulls(self) -> bool {
        matches!(self, Self::Bidirectional | Self::SmbToScaidrive)
    }
    pub fn pushes(self) -> bool {
        matches!(self, Self::Bidirectional | Self::ScaidriveToSmb)
    }
}

/// Who wins when both sides changed a file since the last run. "Server" is
/// ScaiDrive, "client" the SMB source.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictResolution {
    #[default]
    LastWriterWins,
    KeepBoth,
    ServerWins,
    ClientWins,
    Manual,
}

impl ConflictResolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastWriterWins => "LAST_WRITER_WINS",
            Self::KeepBoth => "KEEP_BOTH",
            Self::ServerWins => "SERVER_WINS",
            Self::ClientWins => "CLIENT_WINS",
            Self::Manual => "MANUAL",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "LAST_WRITER_WINS" => Some(Self::LastWriterWins),
            "KEEP_BOTH" => Some(Self::KeepBoth),
            "SERVER_WINS" => Some(Self::ServerWins),
            "CLIENT_WINS" => Some(Self::ClientWins),
            "MANUAL" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// The configuration fields (everything but identity, target share and the
/// password). Create carries all of them; update carries the changed ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct ConnectorSettings {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub server_host: String,
    pub server_port: i64,
    pub share_name: String,
    #[serde(default)]
    pub base_path: String,
    #[serde(default)]
    pub domain: String,
    pub username: String,
    #[serde(default)]
    pub target_path: String,
    pub sync_direction: SyncDirection,
    #[serde(default)]
    pub include_patterns: Vec<String>,
    #[serde(default)]
    pub exclude_patterns: Vec<String>,
    pub conflict_resolution: ConflictResolution,
    pub sync_interval_minutes: i64,
    pub enabled: bool,
}

/// A partial change of [`ConnectorSettings`]; `None` leaves a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct SettingsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_direction: Option<SyncDirection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_patterns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_patterns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_resolution: Option<ConflictResolution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl SettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == SettingsPatch::default()
    }

    /// The patch applied to `s`.
    pub fn applied_to(&self, s: &ConnectorSettings) -> ConnectorSettings {
        let mut s = s.clone();
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { s.$f = v.clone(); } )* };
        }
        take!(
            name,
            description,
            server_host,
            server_port,
            share_name,
            base_path,
            domain,
            username,
            target_path,
            sync_direction,
            include_patterns,
            exclude_patterns,
            conflict_resolution,
            sync_interval_minutes,
            enabled
        );
        s
    }
}

/// A path inside the SMB share or the drive share: `/`-separated, no `..`,
/// no leading or trailing slash ("" = the root).
pub fn checked_rel_path(field: &str, p: &str) -> Result<String, DomainError> {
    let t = p.trim().replace('\\', "/");
    let parts: Vec<&str> = t.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == ".." || *s == ".") || t.len() > MAX_TEXT {
        return Err(DomainError::invalid(field, "must be a plain relative path"));
    }
    if t.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(parts.join("/"))
}

/// Checks and normalises every field.
pub fn checked_settings(s: &ConnectorSettings) -> Result<ConnectorSettings, DomainError> {
    let mut s = s.clone();
    let text = |field: &str, v: &str, min: usize, max: usize| -> Result<String, DomainError> {
        let t = v.trim();
        let n = t.chars().count();
        if n < min || n > max {
            return Err(DomainError::invalid(
                field,
                format!("must be {min} to {max} characters"),
            ));
        }
        if t.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                field,
                "must not contain control characters",
            ));
        }
        Ok(t.to_owned())
    };
    s.name = text("name", &s.name, 1, MAX_NAME)?;
    s.description = text("description", &s.description, 0, MAX_TEXT)?;
    s.server_host = text("server_host", &s.server_host, 1, 253)?;
    if s.server_host.contains(['/', '\\', ' ', '@']) {
        return Err(DomainError::invalid(
            "server_host",
            "must be a host name or address",
        ));
    }
    if !(1..=65_535).contains(&s.server_port) {
        return Err(DomainError::invalid(
            "server_port",
            "must be between 1 and 65535",
        ));
    }
    s.share_name = text("share_name", &s.share_name, 1, 80)?;
    if s.share_name.contains(['/', '\\']) {
        return Err(DomainError::invalid(
            "share_name",
            "must be a share name, not a path",
        ));
    }
    s.base_path = checked_rel_path("base_path", &s.base_path)?;
    s.domain = text("domain", &s.domain, 0, 255)?;
    s.username = text("username", &s.username, 1, 255)?;
    s.target_path = checked_rel_path("target_path", &s.target_path)?;
    for (field, list) in [
        ("include_patterns", &s.include_patterns),
        ("exclude_patterns", &s.exclude_patterns),
    ] {
        if list.len() > MAX_PATTERNS {
            return Err(DomainError::invalid(
                field,
                format!("at most {MAX_PATTERNS} patterns"),
            ));
        }
        if list
            .iter()
            .any(|p| p.trim().is_empty() || p.len() > 512 || p.chars().any(char::is_control))
        {
            return Err(DomainError::invalid(
                field,
                "each pattern must be 1 to 512 printable characters",
            ));
        }
    }
    if !(0..=MAX_INTERVAL_MINUTES).contains(&s.sync_interval_minutes) {
        return Err(DomainError::invalid(
            "sync_interval_minutes",
            format!("must be between 0 and {MAX_INTERVAL_MINUTES}"),
        ));
    }
    Ok(s)
}

/// What one run did.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
pub struct RunCounts {
    pub files_created: i64,
    pub files_updated: i64,
    pub files_deleted: i64,
    pub bytes_transferred: i64,
    pub conflicts: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Connector {
    pub id: Option<ConnectorId>,
    pub tenant_id: Option<TenantId>,
    pub share_id: Option<ShareId>,
    pub created_by: Option<UserId>,
    pub settings: ConnectorSettings,
    /// Sealed password.
    pub credentials: String,
    pub running: Option<String>,
    pub deleted: bool,
}

impl Connector {
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }
    fn live(&self) -> Result<(), DomainError> {
        if self.is_live() {
            Ok(())
        } else {
            Err(DomainError::NotFound("connector"))
        }
    }
}

#[derive(Debug, Clone)]
pub enum ConnectorCommand {
    Create {
        connector_id: ConnectorId,
        tenant_id: TenantId,
        share_id: ShareId,
        by: UserId,
        settings: ConnectorSettings,
        credentials: String,
        at: DateTime<Utc>,
    },
    Update {
        patch: SettingsPatch,
        credentials: Option<String>,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
    /// `takeover`: a run recorded as going is known to be dead (its process
    /// lost the connector's lease); it is recorded as failed first.
    StartRun {
        run_id: String,
        trigger: String,
        takeover: bool,
        at: DateTime<Utc>,
    },
    FinishRun {
        run_id: String,
        counts: RunCounts,
        /// `Some((status, message))` for a failed run.
        failure: Option<(u16, String)>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum ConnectorEvent {
    ConnectorCreated {
        connector_id: ConnectorId,
        tenant_id: TenantId,
        share_id: ShareId,
        created_by: UserId,
        settings: ConnectorSettings,
        /// The password, sealed under the server key.
        credentials: String,
        at: DateTime<Utc>,
    },
    ConnectorUpdated {
        changes: SettingsPatch,
        /// A new password, sealed; absent = unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials: Option<String>,
        at: DateTime<Utc>,
    },
    ConnectorDeleted {
        at: DateTime<Utc>,
    },
    ConnectorSyncStarted {
        run_id: String,
        trigger: String,
        at: DateTime<Utc>,
    },
    ConnectorSyncCompleted {
        run_id: String,
        #[serde(flatten)]
        counts: RunCounts,
        at: DateTime<Utc>,
    },
    ConnectorSyncFailed {
        run_id: String,
        #[serde(flatten)]
        counts: RunCounts,
        status: u16,
        error: String,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for ConnectorEvent {}

impl Aggregate for Connector {
    type Command = ConnectorCommand;
    type Event = ConnectorEvent;

    fn decide(&self, command: &ConnectorCommand) -> Result<Vec<ConnectorEvent>, DomainError> {
        match command {
            ConnectorCommand::Create {
                connector_id,
                tenant_id,
                share_id,
                by,
                settings,
                credentials,
                at,
            } => {
                if self.id.is_some() {
                    return Err(DomainError::AlreadyExists(
                        "the connector already exists".into(),
                    ));
                }
                Ok(vec![ConnectorEvent::ConnectorCreated {
                    connector_id: *connector_id,
                    tenant_id: *tenant_id,
                    share_id: *share_id,
                    created_by: *by,
                    settings: checked_settings(settings)?,
                    credentials: credentials.clone(),
                    at: *at,
                }])
            }
            ConnectorCommand::Update {
                patch,
                credentials,
                at,
            } => {
                self.live()?;
                let next = checked_settings(&patch.applied_to(&self.settings))?;
                let cur = &self.settings;
                let mut changes = SettingsPatch::default();
                macro_rules! diff {
                    ($($f:ident),*) => { $( if next.$f != cur.$f { changes.$f = Some(next.$f.clone()); } )* };
                }
                diff!(
                    name,
                    description,
                    server_host,
                    server_port,
                    share_name,
                    base_path,
                    domain,
                    username,
                    target_path,
                    sync_direction,
                    include_patterns,
                    exclude_patterns,
                    conflict_resolution,
                    sync_interval_minutes,
                    enabled
                );
                if changes.is_empty() && credentials.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ConnectorEvent::ConnectorUpdated {
                    changes,
                    credentials: credentials.clone(),
                    at: *at,
                }])
            }
            ConnectorCommand::Delete { at } => {
                self.live()?;
                Ok(vec![ConnectorEvent::ConnectorDeleted { at: *at }])
            }
            ConnectorCommand::StartRun {
                run_id,
                trigger,
                takeover,
                at,
            } => {
                self.live()?;
                let mut events = Vec::new();
                if let Some(running) = &self.running {
                    if !takeover {
                        return Err(DomainError::InvalidTransition(
                            "a sync of this connector is already running".into(),
                        ));
                    }
                    events.push(ConnectorEvent::ConnectorSyncFailed {
                        run_id: running.clone(),
                        counts: RunCounts::default(),
                        status: 500,
                        error:
                            "the run was interrupted (its process stopped); the next run resumes it"
                                .into(),
                        at: *at,
                    });
                }
                events.push(ConnectorEvent::ConnectorSyncStarted {
                    run_id: run_id.clone(),
                    trigger: trigger.clone(),
                    at: *at,
                });
                Ok(events)
            }
            ConnectorCommand::FinishRun {
                run_id,
                counts,
                failure,
                at,
            } => {
                if self.running.as_deref() != Some(run_id.as_str()) {
                    return Err(DomainError::InvalidTransition(
                        "this run is not the one going".into(),
                    ));
                }
                Ok(vec![match failure {
                    None => ConnectorEvent::ConnectorSyncCompleted {
                        run_id: run_id.clone(),
                        counts: *counts,
                        at: *at,
                    },
                    Some((status, error)) => ConnectorEvent::ConnectorSyncFailed {
                        run_id: run_id.clone(),
                        counts: *counts,
                        status: *status,
                        error: error.clone(),
                        at: *at,
                    },
                }])
            }
        }
    }

    fn evolve(&mut self, event: &ConnectorEvent) {
        match event {
            ConnectorEvent::ConnectorCreated {
                connector_id,
                tenant_id,
                share_id,
                created_by,
                settings,
                credentials,
                ..
            } => {
                self.id = Some(*connector_id);
                self.tenant_id = Some(*tenant_id);
                self.share_id = Some(*share_id);
                self.created_by = Some(*created_by);
                self.settings = settings.clone();
                self.credentials = credentials.clone();
            }
            ConnectorEvent::ConnectorUpdated {
                changes,
                credentials,
                ..
            } => {
                self.settings = changes.applied_to(&self.settings);
                if let Some(c) = credentials {
                    self.credentials = c.clone();
                }
            }
            ConnectorEvent::ConnectorDeleted { .. } => {
                self.deleted = true;
                self.running = None;
            }
            ConnectorEvent::ConnectorSyncStarted { run_id, .. } => {
                self.running = Some(run_id.clone())
            }
            ConnectorEvent::ConnectorSyncCompleted { run_id, .. }
            | ConnectorEvent::ConnectorSyncFailed { run_id, .. } => {
                if self.running.as_deref() == Some(run_id.as_str()) {
                    self.running = None;
                }
            }
        }
    }
}

/// Whether `path` (relative, `/`-separated) passes the include and exclude
/// globs: `*` matches within one segment, `**` across segments, `?` one
/// character. A pattern without `/` is matched against the file name too.
/// No include pattern = everything is included; exclude wins.
pub fn path_selected(path: &str, include: &[String], exclude: &[String]) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let hit = |p: &String| {
        let p = p.trim().trim_start_matches('/');
        glob_match(p.as_bytes(), path.as_bytes())
            || (!p.contains('/') && glob_match(p.as_bytes(), name.as_bytes()))
    };
    (include.is_empty() || include.iter().any(hit)) && !exclude.iter().any(hit)
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
            (0..=s.len()).any(|i| glob_match(rest, &s[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob_match(rest, &s[i..]) {
                    return true;
                }
                if s.get(i) == Some(&b'/') {
                    break;
                }
            }
            false
        }
        Some(b'?') => matches!(s.first(), Some(c) if *c != b'/') && glob_match(&p[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && glob_match(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_select_paths() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(path_selected("a/b.txt", &[], &[]));
        assert!(path_selected("a/b.txt", &v(&["*.txt"]), &[]));
        assert!(!path_selected("a/b.tmp", &v(&["*.txt"]), &[]));
        assert!(!path_selected("a/b.txt", &[], &v(&["a/**"])));
        assert!(path_selected("x/a/b.txt", &[], &v(&["a/**"])));
        assert!(path_selected("docs/x/y.pdf", &v(&["docs/**"]), &[]));
        assert!(!path_selected("docs/x/~y.pdf", &[], &v(&["~*"])));
        assert!(path_selected("a1", &v(&["a?"]), &[]));
    }

    #[test]
    fn a_second_run_is_refused_unless_taking_over() {
        let at = Utc::now();
        let mut c = Connector {
            id: Some(ConnectorId::from_uuid(uuid::Uuid::now_v7())),
            ..Connector::default()
        };
        let start = |takeover| ConnectorCommand::StartRun {
            run_id: "r2".into(),
            trigger: "manual".into(),
            takeover,
            at,
        };
        c.evolve(&ConnectorEvent::ConnectorSyncStarted {
            run_id: "r1".into(),
            trigger: "manual".into(),
            at,
        });
        assert!(matches!(
            c.decide(&start(false)),
            Err(DomainError::InvalidTransition(_))
        ));
        assert_eq!(c.decide(&start(true)).map(|e| e.len()), Ok(2));
    }
}
