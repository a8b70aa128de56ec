-- Mail delivery from the notification outbox: a message is claimed
-- (status 'sending', claimed_by the sender) before it is sent and marked
-- 'sent' after, so a restart recognises an interrupted send instead of
-- sending twice; failures wait until next_attempt_at (exponential backoff)
-- and the last one leaves the message 'dead', recorded in the log once
-- (dead_recorded_at). link_path is the path the message's link points to,
-- joined to the public URL when the message is rendered.
ALTER TABLE notification_outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE notification_outbox ADD COLUMN next_attempt_at TIMESTAMPTZ;
ALTER TABLE notification_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE notification_outbox ADD COLUMN claimed_at TIMESTAMPTZ;
ALTER TABLE notification_outbox ADD COLUMN dead_at TIMESTAMPTZ;
ALTER TABLE notification_outbox ADD COLUMN dead_recorded_at TIMESTAMPTZ;
ALTER TABLE notification_outbox ADD COLUMN link_path TEXT;
UPDATE notification_outbox SET status = 'sent' WHERE sent_at IS NOT NULL;
CREATE INDEX notification_outbox_due ON notification_outbox (status, next_attempt_at);
