-- SMB connectors: the connectors as the projection folds them (without the
-- password, which only the aggregate's stream holds, sealed), their sync
-- runs, and the sync engine's working state: what each side held, per path,
-- at the end of the last run that touched it.
CREATE TABLE rm_connectors (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    share_id              TEXT NOT NULL,
    created_by            TEXT NOT NULL,
    settings              TEXT NOT NULL,
    status                TEXT NOT NULL,
    running_run_id        TEXT,
    last_sync_at          TEXT,
    last_error            TEXT,
    created_at            TEXT NOT NULL,
    modified_at           TEXT NOT NULL
);
CREATE INDEX rm_connectors_tenant ON rm_connectors (tenant_id);

CREATE TABLE rm_connector_runs (
    id                TEXT PRIMARY KEY,
    connector_id      TEXT NOT NULL,
    tenant_id         TEXT NOT NULL,
    status            TEXT NOT NULL,
    trigger_kind      TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
    files_created     BIGINT NOT NULL DEFAULT 0,
    files_updated     BIGINT NOT NULL DEFAULT 0,
    files_deleted     BIGINT NOT NULL DEFAULT 0,
    bytes_transferred BIGINT NOT NULL DEFAULT 0,
    conflicts         BIGINT NOT NULL DEFAULT 0,
    error             TEXT,
    error_status      INTEGER
);
CREATE INDEX rm_connector_runs_connector ON rm_connector_runs (connector_id, started_at);

-- Written by the sync engine as each file is settled, so a run cut short
-- resumes where it stopped. kind: file | dir. drive_id: the fil_/fld_ it maps to.
CREATE TABLE connector_items (
    connector_id     TEXT NOT NULL,
    path             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    smb_size         BIGINT NOT NULL DEFAULT 0,
    smb_mtime        BIGINT NOT NULL DEFAULT 0,
    drive_id         TEXT NOT NULL,
    drive_version_id TEXT NOT NULL DEFAULT '',
    hash             TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (connector_id, path)
);
