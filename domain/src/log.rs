//! Events about the log itself: its signed checkpoints (the Merkle tree
//! head, stream `log-checkpoints`, no tenant) and the alarms a witness or
//! verifier raises about them (stream `log-alarms-{tenant}`).

use serde::{Deserialize, Serialize};

use crate::event::DomainEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum LogEvent {
    /// The tree head signed as a C2SP checkpoint.
    LogCheckpointSigned {
        /// The checkpoint's origin line (also the key name).
        origin: String,
        /// Leaves in the tree.
        tree_size: u64,
        /// Base64 of the 32-byte root hash.
        root_hash: String,
        /// The whole signed note.
        note: String,
        /// The C2SP verifier key that checks the note.
        key: String,
    },
    /// A witness or verifier saw a fork, rollback, bad signature or bad proof.
    LogWitnessAlarm {
        /// `fork`, `rollback`, `bad-signature`, `bad-proof` or `inconsistent`.
        kind: String,
        /// What was seen.
        detail: String,
        /// The last checkpoint the reporter trusted (a signed note).
        trusted: Option<String>,
        /// The checkpoint that failed (a signed note).
        seen: Option<String>,
    },
}

impl DomainEvent for LogEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_events_encode_to_their_type_and_fields() {
        let (t, data) = LogEvent::LogWitnessAlarm {
            kind: "fork".into(),
            detail: "two roots at one size".into(),
            trusted: None,
            seen: Some("note".into()),
        }
        .encode();
        assert_eq!(t, "log-witness-alarm");
        assert_eq!(data["kind"], "fork");
        assert_eq!(data["seen"], "note");
    }
}
