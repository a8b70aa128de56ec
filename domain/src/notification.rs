//! The Notification aggregate: one stream per outbox message that was given
//! up. Sending mail is not an event; losing one is, because a recipient who
//! never got an invitation or a one-time code is a security-relevant fact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;

/// What is known of one outbox message: whether it was dead-lettered.
#[derive(Debug, Clone, Default)]
pub struct Notification {
    pub dead_lettered: bool,
}

#[derive(Debug, Clone)]
pub enum NotificationCommand {
    /// Records that delivery was given up; a second record is a no-op, so a
    /// sender that crashed after recording may record again.
    RecordDeadLetter {
        outbox_id: String,
        kind: String,
        recipient: String,
        attempts: i64,
        reason: String,
        at: DateTime<Utc>,
    },
}

/// Never carries the message's subject, body, code or link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum NotificationEvent {
    NotificationDeadLettered {
        outbox_id: String,
        kind: String,
        recipient: String,
        attempts: i64,
        reason: String,
        at: DateTime<Utc>,
    },
}
impl DomainEvent for NotificationEvent {}

impl Aggregate for Notification {
    type Command = NotificationCommand;
    type Event = NotificationEvent;

    fn decide(&self, command: &NotificationCommand) -> Result<Vec<NotificationEvent>, DomainError> {
        match command {
            NotificationCommand::RecordDeadLetter {
                outbox_id,
                kind,
                recipient,
                attempts,
                reason,
                at,
            } => {
                if self.dead_lettered {
                    return Ok(Vec::new());
                }
                Ok(vec![NotificationEvent::NotificationDeadLettered {
                    outbox_id: outbox_id.clone(),
                    kind: kind.clone(),
                    recipient: recipient.clone(),
                    attempts: *attempts,
                    reason: reason.clone(),
                    at: *at,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &NotificationEvent) {
        match event {
            NotificationEvent::NotificationDeadLettered { .. } => self.dead_lettered = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scenario;

    fn record() -> NotificationCommand {
        NotificationCommand::RecordDeadLetter {
            outbox_id: "evt:bob@ext.test".into(),
            kind: "invitation".into(),
            recipient: "bob@ext.test".into(),
            attempts: 3,
            reason: "connection refused".into(),
            at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_given_up_message_is_recorded_once() {
        let events = Scenario::<Notification>::given_nothing()
            .when(record())
            .then_types(&["notification-dead-lettered"]);
        Scenario::<Notification>::given(events)
            .when(record())
            .then([]);
    }
}
