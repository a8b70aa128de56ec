-- Sync: the change feed (one row per mutation, keyed by the log position of
-- the event that carries it), devices, their cursors per share, conflicts.

CREATE TABLE rm_changes (
    commit_id      BIGINT      NOT NULL,
    position       BIGINT      NOT NULL,
    id             TEXT        NOT NULL,
    tenant_id      TEXT        NOT NULL,
    share_id       TEXT        NOT NULL,
    -- the share a cross-share move left (the change shows in both feeds)
    old_share_id   TEXT,
    resource_type  TEXT        NOT NULL,
    resource_id    TEXT        NOT NULL,
    change_type    TEXT        NOT NULL,
    changed_by     TEXT,
    device_id      TEXT,
    changed_at     TEXT        NOT NULL,
    name           TEXT,
    parent_id      TEXT,
    old_path       TEXT,
    new_path       TEXT,
    version_id     TEXT,
    size           BIGINT,
    mime_type      TEXT,
    permanent      BOOLEAN     NOT NULL DEFAULT FALSE,
    PRIMARY KEY (commit_id, position)
);
CREATE INDEX rm_changes_share ON rm_changes (share_id, commit_id, position);
CREATE INDEX rm_changes_old_share ON rm_changes (old_share_id, commit_id, position);

CREATE TABLE rm_sync_devices (
    user_id         TEXT        NOT NULL,
    device_id       TEXT        NOT NULL,
    tenant_id       TEXT        NOT NULL,
    device_name     TEXT        NOT NULL,
    platform        TEXT        NOT NULL,
    client_version  TEXT        NOT NULL,
    created_at      TEXT        NOT NULL,
    last_seen_at    TEXT        NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE rm_sync_cursors (
    user_id       TEXT        NOT NULL,
    device_id     TEXT        NOT NULL,
    share_id      TEXT        NOT NULL,
    tenant_id     TEXT        NOT NULL,
    commit_id     BIGINT      NOT NULL,
    position      BIGINT      NOT NULL,
    last_sync_at  TEXT        NOT NULL,
    PRIMARY KEY (user_id, device_id, share_id)
);

CREATE TABLE rm_sync_conflicts (
    id                  TEXT        PRIMARY KEY,
    tenant_id           TEXT        NOT NULL,
    share_id            TEXT        NOT NULL,
    device_id           TEXT        NOT NULL,
    user_id             TEXT        NOT NULL,
    resource_type       TEXT        NOT NULL,
    resource_id         TEXT        NOT NULL,
    name                TEXT        NOT NULL,
    change_type         TEXT        NOT NULL,
    client_change       TEXT        NOT NULL,
    base_version_id     TEXT,
    server_version_id   TEXT,
    strategy            TEXT        NOT NULL,
    status              TEXT        NOT NULL,
    resolution          TEXT,
    result_resource_id  TEXT,
    result_version_id   TEXT,
    resolved_by         TEXT,
    created_at          TEXT        NOT NULL,
    resolved_at         TEXT       
);
CREATE INDEX rm_sync_conflicts_device ON rm_sync_conflicts (tenant_id, user_id, device_id, created_at);
CREATE INDEX rm_sync_conflicts_share ON rm_sync_conflicts (share_id, status);
