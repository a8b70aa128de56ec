//! Draining the notification outbox. Delivery goes to the log (target
//! `scaidrive::mail`: recipient and subject, never the body, which can carry
//! a one-time code) until an SMTP relay is configured; a message is marked
//! sent only after delivery, so a crash resends rather than loses it.

use std::time::Duration;

use chrono::Utc;
use scaidrive_projections::db::Db;
use scaidrive_projections::outbox;
use tokio_util::sync::CancellationToken;

/// Sends every pending message once; returns how many went out.
pub async fn drain(db: &Db) -> Result<usize, sqlx::Error> {
    let mut sent = 0;
    loop {
        let batch = outbox::pending(db, 100).await?;
        if batch.is_empty() {
            return Ok(sent);
        }
        for m in &batch {
            tracing::info!(
                target: "scaidrive::mail",
                id = %m.id,
                kind = %m.kind,
                to = %m.recipient,
                subject = %m.subject,
                // Never the body: it can carry a one-time code.
                body_bytes = m.body.len(),
                "notification delivered"
            );
            outbox::mark(db, &m.id, None, Utc::now()).await?;
            sent += 1;
        }
    }
}

/// Drains the outbox every `every` until cancelled.
pub fn spawn(db: Db, every: Duration, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = drain(&db).await {
                tracing::warn!(error = %e, "draining the notification outbox failed");
            }
        }
    })
}
