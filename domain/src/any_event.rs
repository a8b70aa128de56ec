//! Every event the service writes, as one typed enum, and a recorded event
//! decoded into it once.
//!
//! The projector decodes each batch it reads into [`DecodedEvent`]s, and the
//! read models `match` on [`AnyEvent`] instead of each decoding the JSON
//! payload again. An event's type name picks its aggregate's enum by the
//! name's family (`share-…`, `folder-…`, …), and the enum's serde tag picks
//! the variant, so a type name means the same thing here as in the
//! aggregates.
//!
//! The log may hold types this build does not know: events of another
//! service sharing the database, or of a newer version. Their family is
//! unknown, so they decode as [`AnyEvent::Foreign`] and every read model
//! skips them. A type of a known family that does not decode (an unknown
//! variant, a payload of the wrong shape) is [`AnyEvent::Undecodable`]: a
//! read model that handles that type stops on it with the decoding error,
//! exactly as when it decoded the payload itself.

use std::ops::Deref;

use serde_json::Value;

use crate::access_log::AccessLogEvent;
use crate::connector::ConnectorEvent;
use crate::drive::file::FileEvent;
use crate::drive::folder::FolderEvent;
use crate::drive::share::ShareEvent;
use crate::drive::upload::UploadEvent;
use crate::event::{DomainEvent, RecordedEvent};
use crate::group::GroupEvent;
use crate::link::LinkEvent;
use crate::log::LogEvent;
use crate::notification::NotificationEvent;
use crate::quota::QuotaEvent;
use crate::sharing::{AclEvent, InvitationEvent};
use crate::sync::{ConflictEvent, DeviceEvent};
use crate::tenancy::{PartnerEvent, TenantEvent, UserEvent};
use crate::webhook::WebhookEvent;

/// One event of any aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    Partner(PartnerEvent),
    Tenant(TenantEvent),
    User(UserEvent),
    Group(GroupEvent),
    Share(ShareEvent),
    Folder(FolderEvent),
    File(FileEvent),
    Upload(UploadEvent),
    Quota(QuotaEvent),
    Invitation(InvitationEvent),
    Acl(AclEvent),
    Device(DeviceEvent),
    Conflict(ConflictEvent),
    Link(LinkEvent),
    Webhook(WebhookEvent),
    AccessLog(AccessLogEvent),
    Notification(NotificationEvent),
    Connector(ConnectorEvent),
    Log(LogEvent),
    /// A type of no family this build knows; skipped by every read model.
    Foreign,
    /// A type of a known family that did not decode, with serde's reason.
    Undecodable(String),
}

/// The aggregate families, by the prefix their type names share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Partner,
    Tenant,
    User,
    Group,
    Share,
    Folder,
    File,
    Upload,
    Quota,
    Invitation,
    Acl,
    Device,
    Conflict,
    Link,
    Webhook,
    AccessLog,
    Notification,
    Connector,
    Log,
}

const FAMILIES: &[(&str, Family)] = &[
    ("partner-", Family::Partner),
    ("tenant-", Family::Tenant),
    ("user-", Family::User),
    ("group-", Family::Group),
    ("share-", Family::Share),
    ("folder-", Family::Folder),
    ("file-", Family::File),
    ("upload-", Family::Upload),
    ("quota-", Family::Quota),
    ("invitation-", Family::Invitation),
    ("acl-", Family::Acl),
    ("device-", Family::Device),
    ("sync-", Family::Device),
    ("conflict-", Family::Conflict),
    ("link-", Family::Link),
    ("webhook-", Family::Webhook),
    ("access-", Family::AccessLog),
    ("notification-", Family::Notification),
    ("connector-", Family::Connector),
    ("log-", Family::Log),
];

fn typed<E: DomainEvent>(
    event_type: &str,
    schema_version: i32,
    data: &Value,
    wrap: fn(E) -> AnyEvent,
) -> AnyEvent {
    match E::decode(event_type, schema_version, data.clone()) {
        Ok(e) => wrap(e),
        Err(err) => AnyEvent::Undecodable(err.to_string()),
    }
}

impl AnyEvent {
    /// Decodes a stored payload (upcasting older schemas, as
    /// [`DomainEvent::decode`] does).
    pub fn decode(event_type: &str, schema_version: i32, data: &Value) -> AnyEvent {
        let Some(family) = FAMILIES
            .iter()
            .find(|(prefix, _)| event_type.starts_with(prefix))
            .map(|(_, f)| *f)
        else {
            return AnyEvent::Foreign;
        };
        let (t, v) = (event_type, schema_version);
        match family {
            Family::Partner => typed(t, v, data, AnyEvent::Partner),
            Family::Tenant => typed(t, v, data, AnyEvent::Tenant),
            Family::User => typed(t, v, data, AnyEvent::User),
            Family::Group => typed(t, v, data, AnyEvent::Group),
            Family::Share => typed(t, v, data, AnyEvent::Share),
            Family::Folder => typed(t, v, data, AnyEvent::Folder),
            Family::File => typed(t, v, data, AnyEvent::File),
            Family::Upload => typed(t, v, data, AnyEvent::Upload),
            Family::Quota => typed(t, v, data, AnyEvent::Quota),
            Family::Invitation => typed(t, v, data, AnyEvent::Invitation),
            Family::Acl => typed(t, v, data, AnyEvent::Acl),
            Family::Device => typed(t, v, data, AnyEvent::Device),
            Family::Conflict => typed(t, v, data, AnyEvent::Conflict),
            Family::Link => typed(t, v, data, AnyEvent::Link),
            Family::Webhook => typed(t, v, data, AnyEvent::Webhook),
            Family::AccessLog => typed(t, v, data, AnyEvent::AccessLog),
            Family::Notification => typed(t, v, data, AnyEvent::Notification),
            Family::Connector => typed(t, v, data, AnyEvent::Connector),
            Family::Log => typed(t, v, data, AnyEvent::Log),
        }
    }
}

/// A recorded event with its payload decoded: the envelope and metadata
/// (position, stream, tenant, actor, times, raw payload) through `Deref`,
/// the typed payload in [`event`](Self::event).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    pub recorded: RecordedEvent,
    pub event: AnyEvent,
}

impl DecodedEvent {
    pub fn new(recorded: RecordedEvent) -> Self {
        let event = AnyEvent::decode(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.data,
        );
        Self { recorded, event }
    }

    /// Decodes a batch, in order.
    pub fn all(recorded: impl IntoIterator<Item = RecordedEvent>) -> Vec<Self> {
        recorded.into_iter().map(Self::new).collect()
    }
}

impl From<RecordedEvent> for DecodedEvent {
    fn from(recorded: RecordedEvent) -> Self {
        Self::new(recorded)
    }
}

impl Deref for DecodedEvent {
    type Target = RecordedEvent;

    fn deref(&self) -> &RecordedEvent {
        &self.recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn families_decode_to_their_enums() {
        let e = AnyEvent::decode("group-deleted", 1, &json!({"at": "2026-01-01T00:00:00Z"}));
        assert!(
            matches!(e, AnyEvent::Group(GroupEvent::GroupDeleted { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn foreign_types_are_skipped_and_bad_payloads_are_reported() {
        assert_eq!(
            AnyEvent::decode("a-happened", 1, &json!({})),
            AnyEvent::Foreign
        );
        assert!(matches!(
            AnyEvent::decode("share-frobbed", 1, &json!({})),
            AnyEvent::Undecodable(_)
        ));
        assert!(matches!(
            AnyEvent::decode("group-deleted", 1, &json!({"at": 3})),
            AnyEvent::Undecodable(_)
        ));
    }
}
