//! The CloudEvents Kafka protocol binding, binary content mode: every record
//! is also a CloudEvent whose attributes travel as `ce_`-prefixed headers and
//! whose data is the record value (the event envelope, `application/json`).
//! The headers sit beside the relay's own (`event_type`, `event_id`, ...),
//! so consumers that never heard of CloudEvents see no change.

use std::sync::OnceLock;

use chrono::SecondsFormat;
use scaidrive_domain::catalogue::CLOUDEVENTS_TYPE_PREFIX;
use scaidrive_domain::id::EventId;
use scaidrive_domain::RecordedEvent;

/// The public base URL (`SCAIDRIVE_PUBLIC_URL`) that makes `ce_dataschema`
/// an absolute URI; without it the header is the server-relative path.
static PUBLIC_URL: OnceLock<String> = OnceLock::new();

/// Records the public base URL once, at startup (later calls are ignored).
pub fn set_public_url(url: Option<&str>) {
    if let Some(u) = url {
        let _ = PUBLIC_URL.set(u.trim_end_matches('/').to_owned());
    }
}

/// Where the schema of `event_type` at `version` is served.
pub fn schema_url(event_type: &str, version: i32) -> String {
    format!(
        "{}/api/v1/events/schemas/{event_type}/{version}",
        PUBLIC_URL.get().map(String::as_str).unwrap_or("")
    )
}

/// `ce_source` of an event: its tenant and stream (events of no tenant,
/// such as a partner's, have only the stream).
pub fn source(e: &RecordedEvent) -> String {
    match &e.tenant_id {
        Some(t) => format!("/tenants/{t}/streams/{}", e.stream_id),
        None => format!("/streams/{}", e.stream_id),
    }
}

/// The CloudEvents headers of one record.
pub fn headers(e: &RecordedEvent) -> Vec<(&'static str, String)> {
    vec![
        ("ce_specversion", "1.0".to_owned()),
        ("ce_id", EventId::from_uuid(e.event_id).to_string()),
        ("ce_source", source(e)),
        (
            "ce_type",
            format!("{CLOUDEVENTS_TYPE_PREFIX}{}", e.event_type),
        ),
        (
            "ce_time",
            e.metadata
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
        ("ce_subject", e.stream_id.clone()),
        ("ce_dataschema", schema_url(&e.event_type, e.schema_version)),
        ("content-type", "application/json".to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use scaidrive_domain::{EventMetadata, LogPosition};

    #[test]
    fn binary_mode_attributes_name_the_event() {
        let e = RecordedEvent {
            log: LogPosition::new(1, 1),
            stream_id: "shr_1".into(),
            stream_version: 1,
            event_id: uuid::Uuid::now_v7(),
            event_type: "share-created".into(),
            schema_version: 1,
            tenant_id: Some("tnt_1".into()),
            data: serde_json::json!({}),
            metadata: EventMetadata {
                occurred_at: Utc::now(),
                actor: Default::default(),
                correlation_id: None,
                causation_id: None,
            },
            recorded_at: Utc::now(),
            hash: "00".into(),
        };
        let h: std::collections::HashMap<_, _> = headers(&e).into_iter().collect();
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(
            h["ce_id"],
            EventId::from_uuid(e.event_id).to_string(),
            "ce_id = event_id"
        );
        assert_eq!(h["ce_source"], "/tenants/tnt_1/streams/shr_1");
        assert_eq!(h["ce_type"], "ai.scailabs.scaidrive.share-created");
        assert_eq!(h["ce_subject"], "shr_1");
        assert!(h["ce_dataschema"].ends_with("/api/v1/events/schemas/share-created/1"));
        assert_eq!(h["content-type"], "application/json");
    }
}
