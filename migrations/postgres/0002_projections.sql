CREATE TABLE projection_checkpoints (
    name        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    commit_id   BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE rm_partners (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE rm_tenants (
    id            TEXT PRIMARY KEY,
    partner_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    display_name  TEXT,
    settings      JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    modified_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX rm_tenants_partner ON rm_tenants (partner_id);

CREATE TABLE rm_users (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    email        TEXT,
    name         TEXT,
    status       TEXT NOT NULL,
    admin_role   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    modified_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX rm_users_tenant ON rm_users (tenant_id);
