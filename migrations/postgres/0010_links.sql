-- External links as rows, for the owner's list with its filters. Recipient
-- access never reads this table: it decides on the link's own stream.
CREATE TABLE rm_links (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    share_id       TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    link_type      TEXT NOT NULL,
    token          TEXT NOT NULL,
    short_code     TEXT NOT NULL,
    revoked        BOOLEAN NOT NULL DEFAULT FALSE,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at     TIMESTAMPTZ,
    download_count BIGINT NOT NULL DEFAULT 0,
    view_count     BIGINT NOT NULL DEFAULT 0,
    options        JSONB NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    modified_at    TIMESTAMPTZ NOT NULL,
    last_access_at TIMESTAMPTZ
);
CREATE INDEX rm_links_tenant ON rm_links (tenant_id, created_at, id);
CREATE INDEX rm_links_share ON rm_links (share_id);
CREATE INDEX rm_links_resource ON rm_links (resource_id);
