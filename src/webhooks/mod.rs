//! The outbound webhook sender: drains `webhook_deliveries` (queued by the
//! webhooks projection), POSTs each event's audit JSON signed with the
//! webhook's secret, follows the retry schedule, keeps paused queues within
//! their bound, and records every given-up delivery as a SECURITY event.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use scaidrive_domain::id::WebhookId;
use scaidrive_domain::webhook::{Webhook, WebhookCommand, RETRY_SCHEDULE_SECS};
use scaidrive_domain::Actor;
use scaidrive_projections::db::Db;
use scaidrive_projections::webhooks::{self, Attempt, DueDelivery};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::command::CommandContext;
pub use crate::config::WebhookSettings as Settings;
use crate::services::AppState;

/// How long one delivery attempt may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight at once.
const CONCURRENCY: usize = 16;
/// The service account dropped-delivery events are recorded under.
pub const SERVICE_ACCOUNT: &str = "scaidrive-webhooks";

/// Addresses a webhook must not reach unless allowed: loopback, private,
/// link-local, carrier-grade NAT, unique-local, unspecified, multicast and
/// documentation ranges (IPv4-mapped IPv6 judged as IPv4).
pub fn is_private(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (s[0] & 0xfe00) == 0xfc00
                    || (s[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Refuses a destination whose host resolves to a private address.
async fn destination_allowed(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("bad url: {e}"))?;
    let host = parsed.host_str().ok_or("url has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| is_private(a.ip())) {
        return Err(format!(
            "destination {host} is a private, loopback or link-local address (SCAIDRIVE_WEBHOOK_ALLOW_PRIVATE is off)"
        ));
    }
    Ok(())
}

/// Hex HMAC-SHA256 of `body` under `secret` (the `X-ScaiDrive-Signature`).
pub fn signature(secret: &str, body: &[u8]) -> String {
    match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mut m) => {
            m.update(body);
            hex::encode(m.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => String::new(),
    }
}

/// A queued body as it may leave: entries queued before secrets were sealed
/// in the log may hold one in the clear in `details`.
pub fn outward_body(payload: &str) -> String {
    let Ok(mut entry) = serde_json::from_str::<serde_json::Value>(payload) else {
        return payload.to_owned();
    };
    let event_type = entry["event_type"].as_str().unwrap_or_default().to_owned();
    let details = &entry["details"];
    if !scaidrive_domain::secret::needs_redaction(&event_type, details) {
        return payload.to_owned();
    }
    entry["details"] = scaidrive_domain::secret::outward(&event_type, details);
    entry.to_string()
}

/// When the retry after failed attempt number `attempts` (1-based) is due;
/// `None` once the schedule is used up.
pub fn next_attempt(attempts: i32, now: DateTime<Utc>, scale: u32) -> Option<DateTime<Utc>> {
    let idx = usize::try_from(attempts).ok()?.checked_sub(1)?;
    let secs = *RETRY_SCHEDULE_SECS.get(idx)?;
    let delay = Duration::from_secs(secs) / scale.max(1);
    Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()))
}

/// The sender.
pub struct Sender {
    state: AppState,
    db: Db,
    client: reqwest::Client,
    settings: Settings,
}

impl Sender {
    pub fn new(state: AppState, settings: Settings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ScaiDrive-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            db: state.db.clone(),
            state,
            client,
            settings,
        })
    }

    /// One pass: enforce queue bounds, send what is due, record drops.
    /// Returns how many attempts were made.
    pub async fn tick(&self) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        webhooks::enforce_bound(&self.db, self.settings.queue_max).await?;
        let due = webhooks::due(&self.db, Utc::now(), 200).await?;
        let n = due.len();
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |d| async move {
                if let Err(e) = self.attempt(&d).await {
                    tracing::warn!(delivery = %d.id, error = %e, "recording a webhook delivery attempt failed");
                }
            })
            .await;
        self.record_drops().await?;
        Ok(n)
    }

    async fn attempt(&self, d: &DueDelivery) -> Result<(), sqlx::Error> {
        let body = outward_body(&d.payload).into_bytes();
        let secret = self.state.secrets.open(&d.secret);
        let headers: BTreeMap<String, String> =
            serde_json::from_str(&d.headers).unwrap_or_default();
        let mut req = self.client.post(&d.url);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-ScaiDrive-Event", d.action.as_str())
            .header("X-ScaiDrive-Delivery-Id", d.id.as_str())
            .header(
                "X-ScaiDrive-Signature",
                signature(secret.as_deref().unwrap_or_default(), &body),
            )
            .body(body);
        let at = Utc::now();
        let started = std::time::Instant::now();
        let guard = if let Err(e) = &secret {
            Err(format!("cannot open the webhook's secret: {e}"))
        } else if self.settings.allow_private {
            Ok(())
        } else {
            destination_allowed(&d.url).await
        };
        let result = match guard {
            Ok(()) => Ok(req.send().await),
            Err(refused) => Err(refused),
        };
        let now = Utc::now();
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let result = match result {
            Ok(r) => r,
            Err(refused) => {
                let next = next_attempt(d.attempts + 1, now, self.settings.retry_scale);
                let attempt = Attempt {
                    number: d.attempts + 1,
                    at,
                    response_code: None,
                    error: Some(&refused),
                    duration_ms,
                };
                return webhooks::mark_failed(&self.db, &d.id, &attempt, next).await;
            }
        };
        let (code, error) = match result {
            Ok(resp) if resp.status().is_success() => {
                let attempt = Attempt {
                    number: d.attempts + 1,
                    at,
                    response_code: Some(i32::from(resp.status().as_u16())),
                    error: None,
                    duration_ms,
                };
                return webhooks::mark_delivered(&self.db, &d.id, &attempt).await;
            }
            Ok(resp) => (
                Some(i32::from(resp.status().as_u16())),
                format!("receiver answered {}", resp.status()),
            ),
            Err(e) if e.is_timeout() => (None, "timed out".to_owned()),
            Err(e) => (None, format!("request failed: {e}")),
        };
        let next = next_attempt(d.attempts + 1, now, self.settings.retry_scale);
        tracing::debug!(delivery = %d.id, webhook = %d.webhook_id, attempts = d.attempts + 1, %error, "webhook delivery failed");
        let attempt = Attempt {
            number: d.attempts + 1,
            at,
            response_code: code,
            error: Some(&error),
            duration_ms,
        };
        webhooks::mark_failed(&self.db, &d.id, &attempt, next).await
    }

    /// Appends a `webhook-delivery-dropped` (SECURITY) event for every
    /// given-up delivery, then marks it dropped. A crash in between records
    /// the drop twice rather than never.
    async fn record_drops(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for d in webhooks::dropping(&self.db, 500).await? {
            let Ok(webhook_id) = WebhookId::parse(&d.webhook_id) else {
                webhooks::mark_dropped(&self.db, &d.id).await?;
                continue;
            };
            let mut ctx = CommandContext::system(Some(d.tenant_id.clone()));
            ctx.actor = Actor {
                service_account: Some(SERVICE_ACCOUNT.to_owned()),
                ..Actor::default()
            };
            let cmd = WebhookCommand::RecordDrop {
                delivery_id: d.id.clone(),
                event_id: d.event_id.clone(),
                action: d.action.clone(),
                attempts: i64::from(d.attempts),
                reason: d.drop_reason.clone().unwrap_or_else(|| "dropped".into()),
                at: ctx.now,
            };
            // One row that cannot be recorded must not hold up the others.
            if let Err(e) = self
                .state
                .bus
                .execute::<Webhook, _>(&webhook_id.to_string(), &ctx, |w| {
                    scaidrive_domain::Aggregate::decide(&w.state, &cmd)
                })
                .await
            {
                tracing::warn!(delivery = %d.id, error = %e, "recording a dropped webhook delivery failed");
                continue;
            }
            tracing::warn!(delivery = %d.id, webhook = %d.webhook_id, reason = ?d.drop_reason, "webhook delivery dropped");
            webhooks::mark_dropped(&self.db, &d.id).await?;
        }
        Ok(())
    }
}

/// Runs the sender every `settings.poll` until cancelled.
pub fn spawn(sender: Sender, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(sender.settings.poll) => {}
            }
            if let Err(e) = sender.tick().await {
                tracing::warn!(error = %e, "webhook sender pass failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_destinations_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_schedule_runs_out_after_seven_retries() {
        let now = Utc::now();
        let secs: Vec<i64> = (1..=7)
            .filter_map(|a| next_attempt(a, now, 1))
            .map(|t| (t - now).num_seconds())
            .collect();
        assert_eq!(secs, vec![30, 60, 300, 900, 3600, 21600, 86400]);
        assert_eq!(next_attempt(8, now, 1), None);
        assert_eq!(
            next_attempt(1, now, 30).map(|t| (t - now).num_seconds()),
            Some(1)
        );
    }

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
