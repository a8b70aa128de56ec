//! The access log: what signed-in callers read and were refused, recorded
//! for the audit trail (SPEC §4.10 categories AUTHORIZATION and FILE_ACCESS).
//!
//! These events change no aggregate's state, so they live in a stream of
//! their own per user ([`stream_id`]) that is appended without a version
//! check: recording never contends with the resources' own streams.

use serde::{Deserialize, Serialize};

use crate::event::DomainEvent;
use crate::id::{FileId, ShareId, UserId};

/// The access-log stream of one user.
pub fn stream_id(user: &UserId) -> String {
    format!("access-log:{user}")
}

/// A byte range served, `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Which endpoint served a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadVia {
    /// `GET /files/{id}/content`.
    Files,
    /// `GET /sync/download/{file_id}`.
    Sync,
}

/// One content read of a file version by a signed-in caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileRead {
    pub file_id: FileId,
    pub share_id: ShareId,
    /// The version number served.
    pub version: u64,
    /// The range served, when the request asked for one.
    #[serde(default)]
    pub range: Option<ByteRange>,
    pub via: ReadVia,
    /// Reads of the same version by the same caller left out since the
    /// previous entry (a player's range requests, repeated downloads).
    #[serde(default)]
    pub suppressed: u64,
}

/// Entries of the access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum AccessLogEvent {
    /// A caller who can see a resource was refused a permission on it (403).
    AccessDenied {
        /// `share`, `folder` or `file`.
        resource_type: String,
        resource_id: String,
        /// The permission lacked (`WRITE`, `DELETE`, ...), or `OWNER` for an
        /// owner-only action.
        permission: String,
        method: String,
        /// The route template (`/api/v1/files/{id}`), never the raw path.
        route: String,
        /// Refusals of the same permission on the same resource to the same
        /// caller left out since the previous entry.
        #[serde(default)]
        suppressed: u64,
    },
    /// File content served as a download (`Content-Disposition: attachment`).
    AccessFileDownloaded(FileRead),
    /// File content served for inline display (a preview).
    AccessFilePreviewed(FileRead),
}

impl DomainEvent for AccessLogEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_stable_kebab_case_types() {
        let denied = AccessLogEvent::AccessDenied {
            resource_type: "file".into(),
            resource_id: "fil_x".into(),
            permission: "DELETE".into(),
            method: "DELETE".into(),
            route: "/api/v1/files/{id}".into(),
            suppressed: 3,
        };
        let (ty, data) = denied.encode();
        assert_eq!(ty, "access-denied");
        assert_eq!(data["suppressed"], 3);
        let read = FileRead {
            file_id: FileId::from_external("a"),
            share_id: ShareId::from_external("b"),
            version: 2,
            range: Some(ByteRange { start: 0, end: 10 }),
            via: ReadVia::Files,
            suppressed: 0,
        };
        let (ty, data) = AccessLogEvent::AccessFileDownloaded(read.clone()).encode();
        assert_eq!(ty, "access-file-downloaded");
        assert_eq!(data["via"], "files");
        assert_eq!(data["range"]["end"], 10);
        let back = AccessLogEvent::decode(&ty, 1, data).expect("decodes");
        assert_eq!(back, AccessLogEvent::AccessFileDownloaded(read.clone()));
        let (ty, _) = AccessLogEvent::AccessFilePreviewed(read).encode();
        assert_eq!(ty, "access-file-previewed");
    }
}
