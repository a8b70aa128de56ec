-- The event log and what commits with it: stream heads, set-constraint
-- claims, idempotency outcomes.

CREATE TABLE events (
    position        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL,
    event_id        UUID        NOT NULL UNIQUE,
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL,
    tenant_id       TEXT,
    data            JSONB       NOT NULL,
    metadata        JSONB       NOT NULL,
    -- the writing transaction; readers stay below the oldest running one
    transaction_id  XID8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    hash            TEXT        NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_log ON events (transaction_id, position);
CREATE INDEX events_tenant_log ON events (tenant_id, transaction_id, position);

CREATE TABLE streams (
    stream_id  TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    last_hash  TEXT   NOT NULL,
    tenant_id  TEXT
);

CREATE TABLE claims (
    scope       TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    owner       TEXT        NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,
    outcome     JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
