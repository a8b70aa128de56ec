-- The notification outbox: messages (invitation emails, link email codes,
-- quota warnings, ...) written by projections in the same transaction as
-- their checkpoint, so each is queued exactly once, and drained by a sender.
CREATE TABLE notification_outbox (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    source_event_id TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX notification_outbox_pending ON notification_outbox (sent_at, created_at);
