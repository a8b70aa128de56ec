//! The mail sender: drains the notification outbox (filled by projections)
//! through SMTP or into `.eml` files, with retries and backoff, and records
//! every message it gives up as a SECURITY event (`notification-dead-lettered`).
//!
//! Exactly one process sends (the holder of the `mail` lease). A message is
//! claimed before it is sent and marked sent after; its `Message-ID` derives
//! from its outbox id. A claim left by a sender that died mid-send is never
//! sent again: written files are recognised by name, and a message a relay
//! may have taken is given up with its Message-ID in the dead letter, so a
//! restart never sends a message twice. No log line carries a message's
//! subject, body, code or link.

pub mod templates;
pub mod transport;

use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart};
use scaidrive_domain::notification::{Notification, NotificationCommand};
use scaidrive_domain::Actor;
use scaidrive_projections::db::Db;
use scaidrive_projections::outbox::{self, OutboxRow};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::command::CommandContext;
pub use crate::config::MailSettings as Settings;
use crate::lease::Lease;
use crate::services::AppState;
pub use transport::{SendError, Transport};

/// The service account dead letters are recorded under.
pub const SERVICE_ACCOUNT: &str = "scaidrive-mail";
/// The worker lease of the sender.
pub const LEASE: &str = "mail";
/// Retry delays as multiples of the base: 30 s, 2 min, 10 min, 1 h, 3 h,
/// 6 h with the default base; the last repeats.
const BACKOFF: [u32; 6] = [1, 4, 20, 120, 360, 720];
/// Messages looked at per pass.
const BATCH: i64 = 100;

/// The delay after failed attempt number `attempts` (1-based).
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    let factor = BACKOFF.get(i).or(BACKOFF.last()).copied().unwrap_or(1);
    base.saturating_mul(factor)
}

/// The `Message-ID` of outbox message `id`: the same for every attempt, so a
/// relay, a mailbox or an operator recognises a message sent twice.
pub fn message_id(id: &str, domain: &str) -> String {
    let digest = hex::encode(Sha256::digest(id.as_bytes()));
    format!("<{}@{domain}>", &digest[..32])
}

/// The event stream of outbox message `id` (no address in stream ids).
pub fn stream_id(id: &str) -> String {
    let digest = hex::encode(Sha256::digest(id.as_bytes()));
    format!("ntf_{}", &digest[..32])
}

/// What happened to one message in one pass (for the log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retry,
    Dead,
    /// Another sender took it first.
    Skipped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Checks the mail settings of `config` (relay URL, sender address), so a
/// server with a wrong one does not start.
pub fn check(config: &crate::config::Config) -> Result<(), String> {
    Transport::from_config(config)?;
    sender_mailbox(config).map(|_| ())
}

fn sender_mailbox(config: &crate::config::Config) -> Result<Mailbox, String> {
    config.mail_from.parse().map_err(|e| {
        format!(
            "SCAIDRIVE_MAIL_FROM {} is no address: {e}",
            config.mail_from
        )
    })
}

/// The sender.
pub struct Sender {
    state: AppState,
    db: Db,
    transport: Transport,
    from: Mailbox,
    base_url: String,
    settings: Settings,
    /// This sender's claims carry this id.
    claim: String,
}

impl Sender {
    /// A sender for `state`'s configuration; `base_url` is used for links
    /// when no public URL is configured.
    pub fn new(state: AppState, base_url: String) -> Result<Self, String> {
        let config = &state.config;
        let transport = Transport::from_config(config)?;
        let from = sender_mailbox(config)?;
        let base_url = config.public_url.clone().unwrap_or(base_url);
        Ok(Sender {
            db: state.db.clone(),
            settings: config.mail,
            transport,
            from,
            base_url,
            claim: uuid::Uuid::now_v7().to_string(),
            state,
        })
    }

    /// One pass: settle abandoned claims, send what is due, record what was
    /// given up. Returns how many messages were attempted.
    pub async fn tick(&self) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        self.settle_abandoned().await?;
        let mut attempted = 0;
        loop {
            let due = outbox::due(&self.db, Utc::now(), BATCH).await?;
            if due.is_empty() {
                break;
            }
            let mut progressed = false;
            for m in &due {
                let outcome = self.attempt(m).await?;
                if outcome != Outcome::Skipped {
                    attempted += 1;
                    progressed = true;
                }
            }
            if !progressed || due.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        self.record_dead().await?;
        Ok(attempted)
    }

    /// Claims, sends and settles one message.
    pub async fn attempt(&self, m: &OutboxRow) -> Result<Outcome, sqlx::Error> {
        if !outbox::claim(&self.db, &m.id, &self.claim, Utc::now()).await? {
            return Ok(Outcome::Skipped);
        }
        let attempts = u32::try_from(m.attempts.saturating_add(1)).unwrap_or(u32::MAX);
        let result = match self.envelope(m) {
            Ok(message) => self.transport.send(&m.id, &message).await,
            Err(e) => Err(e),
        };
        let now = Utc::now();
        let outcome = match result {
            Ok(()) => {
                outbox::mark_sent(&self.db, &m.id, &self.claim, now).await?;
                Outcome::Sent
            }
            Err(e) => {
                let next = match &e {
                    SendError::Permanent(_) => None,
                    SendError::Transient(_) if attempts >= self.settings.max_attempts => None,
                    SendError::Transient(_) => {
                        Some(later(now, retry_delay(self.settings.retry_base, attempts)))
                    }
                };
                outbox::mark_failed(&self.db, &m.id, &self.claim, &e.to_string(), next, now)
                    .await?;
                tracing::debug!(target: "scaidrive::mail", id = %m.id, kind = %m.kind, attempt = attempts, error = %e, "mail attempt failed");
                if next.is_some() {
                    Outcome::Retry
                } else {
                    Outcome::Dead
                }
            }
        };
        tracing::info!(target: "scaidrive::mail", id = %m.id, kind = %m.kind, outcome = outcome.as_str(), "notification mail");
        Ok(outcome)
    }

    /// The message as it goes out.
    fn envelope(&self, m: &OutboxRow) -> Result<lettre::Message, SendError> {
        let to: Mailbox = m
            .recipient
            .parse()
            .map_err(|_| SendError::Permanent("the recipient is not a mail address".into()))?;
        let r = templates::render(m, &self.base_url);
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(r.subject)
            .message_id(Some(message_id(&m.id, self.from.email.domain())))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(r.text, r.html))
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }

    /// Claims another sender left unsettled: it died (or lost its lease)
    /// mid-send. A file that exists was written; a file that does not was
    /// not, and is tried again. A relay may have taken the message, so it is
    /// given up rather than risk sending it twice.
    async fn settle_abandoned(&self) -> Result<(), sqlx::Error> {
        let timeout = chrono::Duration::from_std(self.settings.claim_timeout)
            .unwrap_or(chrono::Duration::zero());
        let now = Utc::now();
        for m in outbox::stale_claims(&self.db, &self.claim, now - timeout, BATCH).await? {
            let claim = m.claimed_by.clone().unwrap_or_default();
            let outcome = match self.transport.delivered(&m.id) {
                Some(true) => {
                    outbox::mark_sent(&self.db, &m.id, &claim, now).await?;
                    Outcome::Sent
                }
                Some(false) => {
                    outbox::mark_failed(
                        &self.db,
                        &m.id,
                        &claim,
                        "the sender stopped while writing it",
                        Some(now),
                        now,
                    )
                    .await?;
                    Outcome::Retry
                }
                None => {
                    let reason = format!(
                        "the sender stopped while sending it; the relay may have it as Message-ID {}",
                        message_id(&m.id, self.from.email.domain())
                    );
                    outbox::mark_failed(&self.db, &m.id, &claim, &reason, None, now).await?;
                    Outcome::Dead
                }
            };
            tracing::warn!(target: "scaidrive::mail", id = %m.id, kind = %m.kind, outcome = outcome.as_str(), "interrupted notification mail settled");
        }
        Ok(())
    }

    /// Appends a `notification-dead-lettered` (SECURITY) event for every
    /// given-up message, then notes it recorded. The event is idempotent per
    /// message, so a crash in between records it once, not twice.
    async fn record_dead(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for m in outbox::dead_unrecorded(&self.db, BATCH).await? {
            let mut ctx = CommandContext::system(m.tenant_id.clone());
            ctx.actor = Actor {
                service_account: Some(SERVICE_ACCOUNT.to_owned()),
                ..Actor::default()
            };
            let cmd = NotificationCommand::RecordDeadLetter {
                outbox_id: m.id.clone(),
                kind: m.kind.clone(),
                recipient: m.recipient.clone(),
                attempts: i64::from(m.attempts),
                reason: m.last_error.clone().unwrap_or_else(|| "given up".into()),
                at: m.dead_at.unwrap_or(ctx.now),
            };
            // One message that cannot be recorded must not hold up the others.
            if let Err(e) = self
                .state
                .bus
                .execute::<Notification, _>(&stream_id(&m.id), &ctx, |n| {
                    scaidrive_domain::Aggregate::decide(&n.state, &cmd)
                })
                .await
            {
                tracing::warn!(target: "scaidrive::mail", id = %m.id, kind = %m.kind, error = %e, "recording a dead notification failed");
                continue;
            }
            outbox::mark_dead_recorded(&self.db, &m.id, Utc::now()).await?;
        }
        Ok(())
    }
}

fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero())
}

/// Runs the sender every `settings.poll` while this process holds `lease`,
/// until cancelled.
pub fn spawn(sender: Sender, lease: Lease, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(sender.settings.poll) => {}
            }
            if !lease.is_held() {
                continue;
            }
            if let Err(e) = sender.tick().await {
                tracing::warn!(target: "scaidrive::mail", error = %e, "mail sender pass failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_the_base() {
        let base = Duration::from_secs(30);
        let secs: Vec<u64> = (1..=8).map(|a| retry_delay(base, a).as_secs()).collect();
        assert_eq!(secs, vec![30, 120, 600, 3600, 10800, 21600, 21600, 21600]);
    }

    #[test]
    fn message_ids_and_streams_derive_from_the_outbox_id() {
        let a = message_id("evt_1:bob@ext.test", "acme.test");
        assert_eq!(a, message_id("evt_1:bob@ext.test", "acme.test"));
        assert_ne!(a, message_id("evt_2:bob@ext.test", "acme.test"));
        assert!(a.starts_with('<') && a.ends_with("@acme.test>"));
        assert!(!stream_id("evt_1:bob@ext.test").contains('@'));
    }
}
