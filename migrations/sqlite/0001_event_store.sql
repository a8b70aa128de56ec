-- The event log and what commits with it: stream heads, set-constraint
-- claims, idempotency outcomes.

CREATE TABLE events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    tenant_id       TEXT,
    data            TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    -- commit counter taken under the single writer lock
    transaction_id  INTEGER NOT NULL,
    recorded_at     TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_log ON events (transaction_id, position);
CREATE INDEX events_tenant_log ON events (tenant_id, transaction_id, position);

CREATE TABLE streams (
    stream_id  TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    last_hash  TEXT    NOT NULL,
    tenant_id  TEXT
);

CREATE TABLE claims (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    owner       TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,
    outcome     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
