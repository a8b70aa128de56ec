-- Outbound webhooks (SPEC §4.10): the webhooks of each tenant as the
-- projection folds them (the signing secret included: the sender needs it),
-- and the delivery queue/log. A delivery is queued by the projection in the
-- same transaction as its checkpoint, once per (webhook, event); the sender
-- updates its status, attempts and next attempt.
CREATE TABLE rm_webhooks (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    categories  TEXT NOT NULL,
    secret      TEXT NOT NULL,
    headers     TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX rm_webhooks_tenant ON rm_webhooks (tenant_id);

-- status: pending (queued or waiting for a retry), delivered, dropping (given
-- up; its SECURITY event is not yet recorded), dropped, cancelled (webhook deleted).
CREATE TABLE webhook_deliveries (
    id                 TEXT PRIMARY KEY,
    webhook_id         TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    event_id           TEXT NOT NULL,
    commit_id          BIGINT NOT NULL,
    position           BIGINT NOT NULL,
    action             TEXT NOT NULL,
    payload            TEXT NOT NULL,
    status             TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    last_response_code INTEGER,
    last_error         TEXT,
    drop_reason        TEXT,
    created_at         TEXT NOT NULL,
    next_attempt_at    TEXT,
    last_attempt_at    TEXT,
    delivered_at       TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, commit_id, position);

-- Every attempt of a delivery, for the delivery's detail view.
CREATE TABLE webhook_delivery_attempts (
    delivery_id   TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    attempted_at  TEXT NOT NULL,
    response_code INTEGER,
    error         TEXT,
    duration_ms   BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
