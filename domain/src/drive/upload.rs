//! The UploadSession aggregate: a resumable upload, chunk by chunk, in any
//! order, completed into a new file or a new version of one.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::chunking::{expected_chunk_len, total_chunks, validate_chunk_size};
use super::ChunkRef;
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::id::{FileId, FolderId, ShareId, TenantId, UploadId, UserId, VersionId};

/// The most chunks one session tracks (4 TiB at the default chunk size).
pub const MAX_CHUNKS: u64 = 1 << 20;

/// Sessions expire after this long without activity.
pub const IDLE_EXPIRY_HOURS: i64 = 24;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    #[default]
    Active,
    Completed,
    Aborted,
    Expired,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Active => "active",
            UploadStatus::Completed => "completed",
            UploadStatus::Aborted => "aborted",
            UploadStatus::Expired => "expired",
        }
    }
}

/// What the session will produce, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UploadPlan {
    pub tenant_id: TenantId,
    pub share_id: ShareId,
    pub folder_id: Option<FolderId>,
    pub file_name: String,
    pub file_size: u64,
    pub chunk_size: u64,
    pub mime_type: String,
    pub checksum_sha256: Option<String>,
    pub replace_file_id: Option<FileId>,
    pub base_version_id: Option<VersionId>,
    pub chunk_hashes: Option<Vec<String>>,
    /// Quota accounts (stream ids) that may hold a reservation for this
    /// session; completion commits and abort/expiry release on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quota_accounts: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UploadSession {
    pub id: Option<UploadId>,
    pub plan: Option<UploadPlan>,
    /// The hash received (or already known) for each index.
    pub received: Vec<Option<String>>,
    pub status: UploadStatus,
    pub last_activity: Option<DateTime<Utc>>,
    pub created_by: Option<UserId>,
    pub result: Option<(FileId, VersionId)>,
}

impl UploadSession {
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.last_activity
            .map(|t| t + Duration::hours(IDLE_EXPIRY_HOURS))
    }

    /// The status as of `now` (an idle active session is expired).
    pub fn status_at(&self, now: DateTime<Utc>) -> UploadStatus {
        match (self.status, self.expires_at()) {
            (UploadStatus::Active, Some(exp)) if now >= exp => UploadStatus::Expired,
            (s, _) => s,
        }
    }

    pub fn missing(&self) -> Vec<u64> {
        self.received
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_none())
            .map(|(i, _)| i as u64)
            .collect()
    }

    pub fn received_count(&self) -> u64 {
        self.received.iter().filter(|h| h.is_some()).count() as u64
    }

    /// The chunks in file order, once all are present.
    pub fn chunk_list(&self) -> Option<Vec<ChunkRef>> {
        let plan = self.plan.as_ref()?;
        self.received
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let size = expected_chunk_len(plan.file_size, plan.chunk_size, i as u64)?;
                h.clone().map(|hash| ChunkRef { hash, size })
            })
            .collect()
    }

    fn ensure_active(&self, now: DateTime<Utc>) -> Result<(), DomainError> {
        match self.status_at(now) {
            UploadStatus::Active => Ok(()),
            UploadStatus::Aborted => Err(DomainError::Gone("upload session was aborted".into())),
            UploadStatus::Expired => Err(DomainError::Gone("upload session expired".into())),
            UploadStatus::Completed => Err(DomainError::InvalidTransition(
                "upload session is already completed".into(),
            )),
        }
    }
}

/// Whether a string is a lowercase or uppercase hex SHA-256.
pub fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

// Commands are built once per request and never stored; boxing the plan buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum UploadCommand {
    Start {
        upload_id: UploadId,
        plan: UploadPlan,
        /// Per announced hash: does the tenant already store that chunk?
        known_chunks: Vec<bool>,
        max_file_size: u64,
        by: UserId,
        at: DateTime<Utc>,
    },
    ReceiveChunk {
        index: u64,
        sha256: String,
        size: u64,
        deduplicated: bool,
        at: DateTime<Utc>,
    },
    /// `computed_checksum`: SHA-256 of the assembled content, by the caller.
    Complete {
        computed_checksum: String,
        file_id: FileId,
        version_id: VersionId,
        at: DateTime<Utc>,
    },
    Abort {
        at: DateTime<Utc>,
    },
    Expire {
        at: DateTime<Utc>,
    },
}

// Events are built once per write and serialised at once; boxing the plan buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum UploadEvent {
    UploadStarted {
        upload_id: UploadId,
        plan: UploadPlan,
        known: Vec<u64>,
        by: UserId,
        at: DateTime<Utc>,
    },
    UploadChunkReceived {
        upload_id: UploadId,
        index: u64,
        sha256: String,
        size: u64,
        deduplicated: bool,
        at: DateTime<Utc>,
    },
    UploadCompleted {
        upload_id: UploadId,
        file_id: FileId,
        version_id: VersionId,
        size: u64,
        at: DateTime<Utc>,
    },
    UploadAborted {
        upload_id: UploadId,
        at: DateTime<Utc>,
    },
    UploadExpired {
        upload_id: UploadId,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for UploadEvent {}

impl Aggregate for UploadSession {
    type Command = UploadCommand;
    type Event = UploadEvent;

    fn decide(&self, command: &UploadCommand) -> Result<Vec<UploadEvent>, DomainError> {
        if let UploadCommand::Start {
            upload_id,
            plan,
            known_chunks,
            max_file_size,
            by,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(DomainError::AlreadyExists(
                    "upload session already exists".into(),
                ));
            }
            crate::name::validate_item_name(&plan.file_name)
                .map_err(|m| DomainError::invalid("file_name", m))?;
            validate_chunk_size(plan.chunk_size)
                .map_err(|m| DomainError::invalid("chunk_size", m))?;
            if plan.file_size > *max_file_size {
                return Err(DomainError::PayloadTooLarge {
                    size: plan.file_size,
                    limit: *max_file_size,
                });
            }
            if let Some(c) = &plan.checksum_sha256 {
                if !is_hex_sha256(c) {
                    return Err(DomainError::invalid(
                        "checksum_sha256",
                        "must be 64 hex characters",
                    ));
                }
            }
            let total = total_chunks(plan.file_size, plan.chunk_size);
            if total > MAX_CHUNKS {
                return Err(DomainError::invalid(
                    "file_size",
                    format!("a session holds at most {MAX_CHUNKS} chunks; use a larger chunk_size"),
                ));
            }
            let mut known = Vec::new();
            if let Some(hashes) = &plan.chunk_hashes {
                if hashes.len() as u64 != total {
                    return Err(DomainError::invalid(
                        "chunk_hashes",
                        format!(
                            "expected {total} hashes for {} bytes in chunks of {}",
                            plan.file_size, plan.chunk_size
                        ),
                    ));
                }
                if let Some(bad) = hashes.iter().position(|h| !is_hex_sha256(h)) {
                    return Err(DomainError::invalid(
                        format!("chunk_hashes.{bad}"),
                        "must be 64 hex characters",
                    ));
                }
                known = known_chunks
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| **k)
                    .map(|(i, _)| i as u64)
                    .filter(|i| *i < total)
                    .collect();
            }
            let mut plan = plan.clone();
            plan.chunk_hashes = plan
                .chunk_hashes
                .map(|h| h.into_iter().map(|x| x.to_ascii_lowercase()).collect());
            plan.checksum_sha256 = plan.checksum_sha256.map(|c| c.to_ascii_lowercase());
            return Ok(vec![UploadEvent::UploadStarted {
                upload_id: *upload_id,
                plan,
                known,
                by: *by,
                at: *at,
            }]);
        }
        let (Some(id), Some(plan)) = (self.id, self.plan.as_ref()) else {
            return Err(DomainError::NotFound("upload session"));
        };
        match command {
            UploadCommand::Start { .. } => Ok(vec![]),
            UploadCommand::ReceiveChunk {
                index,
                sha256,
                size,
                deduplicated,
                at,
            } => {
                self.ensure_active(*at)?;
                let Some(expected) = expected_chunk_len(plan.file_size, plan.chunk_size, *index)
                else {
                    return Err(DomainError::BadRequest(format!(
                        "chunk index {index} is out of range (the upload has {} chunks)",
                        self.received.len()
                    )));
                };
                if *size != expected {
                    return Err(DomainError::BadRequest(format!(
                        "chunk {index} must be {expected} bytes, got {size}"
                    )));
                }
                if let Some(announced) = plan
                    .chunk_hashes
                    .as_ref()
                    .and_then(|h| h.get(*index as usize))
                {
                    if !announced.eq_ignore_ascii_case(sha256) {
                        return Err(DomainError::ChecksumMismatch(format!(
                            "chunk {index} does not match the hash announced for it"
                        )));
                    }
                }
                Ok(vec![UploadEvent::UploadChunkReceived {
                    upload_id: id,
                    index: *index,
                    sha256: sha256.to_ascii_lowercase(),
                    size: *size,
                    deduplicated: *deduplicated,
                    at: *at,
                }])
            }
            UploadCommand::Complete {
                computed_checksum,
                file_id,
                version_id,
                at,
            } => {
                self.ensure_active(*at)?;
                let missing = self.missing();
                if !missing.is_empty() {
                    return Err(DomainError::InvalidTransition(format!(
                        "{} of {} chunks are missing (first missing index {})",
                        missing.len(),
                        self.received.len(),
                        missing[0]
                    )));
                }
                if let Some(expected) = &plan.checksum_sha256 {
                    if !expected.eq_ignore_ascii_case(computed_checksum) {
                        return Err(DomainError::ChecksumMismatch(
                            "the uploaded content does not match checksum_sha256".into(),
                        ));
                    }
                }
                Ok(vec![UploadEvent::UploadCompleted {
                    upload_id: id,
                    file_id: *file_id,
                    version_id: *version_id,
                    size: plan.file_size,
                    at: *at,
                }])
            }
            UploadCommand::Abort { at } => {
                self.ensure_active(*at)?;
                Ok(vec![UploadEvent::UploadAborted {
                    upload_id: id,
                    at: *at,
                }])
            }
            UploadCommand::Expire { at } => match self.status_at(*at) {
                UploadStatus::Expired if self.status == UploadStatus::Active => {
                    Ok(vec![UploadEvent::UploadExpired {
                        upload_id: id,
                        at: *at,
                    }])
                }
                _ => Ok(vec![]),
            },
        }
    }

    fn evolve(&mut self, event: &UploadEvent) {
        match event {
            UploadEvent::UploadStarted {
                upload_id,
                plan,
                known,
                by,
                at,
            } => {
                self.id = Some(*upload_id);
                let total = total_chunks(plan.file_size, plan.chunk_size) as usize;
                self.received = vec![None; total];
                if let Some(hashes) = &plan.chunk_hashes {
                    for i in known {
                        if let (Some(slot), Some(h)) =
                            (self.received.get_mut(*i as usize), hashes.get(*i as usize))
                        {
                            *slot = Some(h.clone());
                        }
                    }
                }
                self.plan = Some(plan.clone());
                self.created_by = Some(*by);
                self.last_activity = Some(*at);
            }
            UploadEvent::UploadChunkReceived {
                index, sha256, at, ..
            } => {
                if let Some(slot) = self.received.get_mut(*index as usize) {
                    *slot = Some(sha256.clone());
                }
                self.last_activity = Some(*at);
            }
            UploadEvent::UploadCompleted {
                file_id,
                version_id,
                at,
                ..
            } => {
                self.status = UploadStatus::Completed;
                self.result = Some((*file_id, *version_id));
                self.last_activity = Some(*at);
            }
            UploadEvent::UploadAborted { .. } => self.status = UploadStatus::Aborted,
            UploadEvent::UploadExpired { .. } => self.status = UploadStatus::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Scenario;
    use uuid::Uuid;

    const MIB: u64 = 1024 * 1024;

    fn plan(size: u64, hashes: Option<Vec<String>>) -> UploadPlan {
        UploadPlan {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            share_id: ShareId::from_uuid(Uuid::from_u128(2)),
            folder_id: None,
            file_name: "big.bin".into(),
            file_size: size,
            chunk_size: 4 * MIB,
            mime_type: "application/octet-stream".into(),
            checksum_sha256: None,
            replace_file_id: None,
            base_version_id: None,
            chunk_hashes: hashes,
            quota_accounts: vec![],
        }
    }

    fn start(p: UploadPlan, known: Vec<bool>, at: DateTime<Utc>) -> UploadEvent {
        let ev = Scenario::<UploadSession>::given_nothing()
            .when(UploadCommand::Start {
                upload_id: UploadId::from_uuid(Uuid::from_u128(9)),
                plan: p,
                known_chunks: known,
                max_file_size: 100 * MIB,
                by: UserId::from_uuid(Uuid::from_u128(3)),
                at,
            })
            .then_types(&["upload-started"]);
        ev[0].clone()
    }

    fn h(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn known_chunks_count_as_received_and_the_rest_are_missing() {
        let at = Utc::now();
        let started = start(
            plan(10 * MIB, Some(vec![h(1), h(2), h(3)])),
            vec![true, false, true],
            at,
        );
        let state = UploadSession::replay([&started]);
        assert_eq!(state.missing(), vec![1]);
        Scenario::<UploadSession>::given([started.clone()])
            .when(UploadCommand::Complete {
                computed_checksum: String::new(),
                file_id: FileId::from_uuid(Uuid::from_u128(4)),
                version_id: VersionId::from_uuid(Uuid::from_u128(5)),
                at,
            })
            .then_error_matches(
                |e| matches!(e, DomainError::InvalidTransition(m) if m.contains("1 of 3")),
            );
        Scenario::<UploadSession>::given([started.clone()])
            .when(UploadCommand::ReceiveChunk {
                index: 1,
                sha256: h(9),
                size: 4 * MIB,
                deduplicated: false,
                at,
            })
            .then_error_matches(|e| matches!(e, DomainError::ChecksumMismatch(_)));
        Scenario::<UploadSession>::given([started])
            .when(UploadCommand::ReceiveChunk {
                index: 2,
                sha256: h(3),
                size: 3 * MIB,
                deduplicated: true,
                at,
            })
            .then_error_matches(|e| matches!(e, DomainError::BadRequest(_)));
    }

    #[test]
    fn chunks_are_checked_for_index_and_size() {
        let at = Utc::now();
        let started = start(plan(5 * MIB, None), vec![], at);
        Scenario::<UploadSession>::given([started.clone()])
            .when(UploadCommand::ReceiveChunk {
                index: 2,
                sha256: h(1),
                size: MIB,
                deduplicated: false,
                at,
            })
            .then_error_matches(|e| matches!(e, DomainError::BadRequest(_)));
        Scenario::<UploadSession>::given([started])
            .when(UploadCommand::ReceiveChunk {
                index: 1,
                sha256: h(1),
                size: MIB,
                deduplicated: false,
                at,
            })
            .then_types(&["upload-chunk-received"]);
    }

    #[test]
    fn idle_sessions_expire_and_aborted_ones_are_gone() {
        let at = Utc::now();
        let started = start(plan(MIB, None), vec![], at);
        let later = at + Duration::hours(25);
        Scenario::<UploadSession>::given([started.clone()])
            .when(UploadCommand::ReceiveChunk {
                index: 0,
                sha256: h(1),
                size: MIB,
                deduplicated: false,
                at: later,
            })
            .then_error(DomainError::Gone("upload session expired".into()));
        Scenario::<UploadSession>::given([started.clone()])
            .when(UploadCommand::Expire { at: later })
            .then_types(&["upload-expired"]);
        Scenario::<UploadSession>::given([started.clone()])
            .when(UploadCommand::Expire { at })
            .then([]);
        let aborted = UploadEvent::UploadAborted {
            upload_id: UploadId::from_uuid(Uuid::from_u128(9)),
            at,
        };
        Scenario::<UploadSession>::given([started, aborted])
            .when(UploadCommand::Abort { at })
            .then_error(DomainError::Gone("upload session was aborted".into()));
    }

    #[test]
    fn oversize_uploads_and_bad_chunk_sizes_are_refused() {
        let at = Utc::now();
        Scenario::<UploadSession>::given_nothing()
            .when(UploadCommand::Start {
                upload_id: UploadId::from_uuid(Uuid::from_u128(9)),
                plan: plan(200 * MIB, None),
                known_chunks: vec![],
                max_file_size: 100 * MIB,
                by: UserId::from_uuid(Uuid::from_u128(3)),
                at,
            })
            .then_error_matches(|e| matches!(e, DomainError::PayloadTooLarge { .. }));
        let mut p = plan(MIB, None);
        p.chunk_size = 1000;
        Scenario::<UploadSession>::given_nothing()
            .when(UploadCommand::Start {
                upload_id: UploadId::from_uuid(Uuid::from_u128(9)),
                plan: p,
                known_chunks: vec![],
                max_file_size: 100 * MIB,
                by: UserId::from_uuid(Uuid::from_u128(3)),
                at,
            })
            .then_error_matches(|e| matches!(e, DomainError::Invalid { .. }));
    }
}
