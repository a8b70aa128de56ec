//! The event log and the audit view as the API shows them. Entries and
//! envelopes are built by their owners (the audit projection, the domain's
//! envelope) because webhooks and the relay send the same shapes; their
//! schemas are described in `openapi.rs`.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::schema::{AuditEntry, Event, Timestamp};
use crate::store::BrokenLink;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<Event>)]
    pub events: Vec<Value>,
    /// Pass as `after` for the next page.
    pub next_after: String,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    #[schema(value_type = Vec<AuditEntry>)]
    pub events: Vec<Value>,
    pub next_after: String,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    pub events_checked: u64,
    pub streams_checked: u64,
    pub first_broken: Option<BrokenLink>,
    pub range: VerifiedRange,
}

/// The range a verification checked: events whose `occurred_at` lies in
/// `[from, to]` (null = open end), and the earliest and latest `occurred_at`
/// among the events it checked (null when none).
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifiedRange {
    #[schema(value_type = Option<Timestamp>)]
    pub from: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub to: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub first_occurred_at: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub last_occurred_at: Option<String>,
}
