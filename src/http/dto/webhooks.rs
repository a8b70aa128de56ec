//! Outbound webhooks and their deliveries as the admin API shows them.

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use scaidrive_projections::webhooks::{AttemptRow, DeliveryRow, WebhookRow};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::schema::{Timestamp, WebhookStatusDoc};
use crate::http::ts;

// The signing secret never leaves the service (`has_secret` only).
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub url: String,
    pub categories: Vec<String>,
    pub headers: BTreeMap<String, String>,
    #[schema(value_type = WebhookStatusDoc)]
    pub status: String,
    /// The secret itself is write-only.
    pub has_secret: bool,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Timestamp)]
    pub modified_at: String,
}

impl From<&WebhookRow> for Webhook {
    fn from(r: &WebhookRow) -> Self {
        Self {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            name: r.name.clone(),
            url: r.url.clone(),
            categories: r.category_list(),
            headers: r.header_map(),
            status: r.status.clone(),
            has_secret: !r.secret.is_empty(),
            created_at: ts(r.created_at),
            modified_at: ts(r.modified_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    #[schema(value_type = Timestamp)]
    pub attempted_at: String,
    pub response_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl From<&AttemptRow> for DeliveryAttempt {
    fn from(a: &AttemptRow) -> Self {
        Self {
            attempt: a.attempt,
            attempted_at: a.attempted_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            response_code: a.response_code,
            error: a.error.clone(),
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub action: String,
    pub status: String,
    pub attempts: i32,
    pub last_response_code: Option<i32>,
    pub last_error: Option<String>,
    pub drop_reason: Option<String>,
    #[schema(value_type = Timestamp)]
    pub created_at: String,
    #[schema(value_type = Option<Timestamp>)]
    pub last_attempt_at: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub next_attempt_at: Option<String>,
    #[schema(value_type = Option<Timestamp>)]
    pub delivered_at: Option<String>,
    /// Every attempt (single delivery only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<DeliveryAttempt>)]
    pub attempt_log: Option<Vec<DeliveryAttempt>>,
}

/// A delivery without its attempts (as listed).
impl From<&DeliveryRow> for Delivery {
    fn from(d: &DeliveryRow) -> Self {
        Self {
            id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            event_id: d.event_id.clone(),
            action: d.action.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            last_response_code: d.last_response_code,
            last_error: d.last_error.clone(),
            drop_reason: d.drop_reason.clone(),
            created_at: ts(d.created_at),
            last_attempt_at: d.last_attempt_at.map(ts),
            next_attempt_at: d.next_attempt_at.map(ts),
            delivered_at: d.delivered_at.map(ts),
            attempt_log: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

// What a ScaiKey directory delivery did.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookApplied {
    /// `applied`.
    pub status: String,
    pub event: String,
    pub resource_id: Option<String>,
    /// False when the delivery changed nothing (a redelivery).
    pub changed: bool,
}
