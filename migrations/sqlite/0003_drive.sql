-- Read models of shares, folders, files and their versions, plus chunk
-- reference counts and upload-session bookkeeping.

CREATE TABLE rm_shares (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    share_type   TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    is_public    BOOLEAN NOT NULL DEFAULT FALSE,
    is_deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    quota_bytes  BIGINT,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    modified_at  TEXT NOT NULL,
    deleted_at   TEXT
);
CREATE INDEX rm_shares_tenant ON rm_shares (tenant_id, created_at);

CREATE TABLE rm_folders (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    share_id     TEXT NOT NULL,
    parent_id    TEXT,
    name         TEXT NOT NULL,
    path         TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    modified_at  TEXT NOT NULL,
    is_deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    deleted_at   TEXT,
    -- the trashed ancestor folder hiding this one, if any
    trashed_via  TEXT
);
CREATE INDEX rm_folders_parent ON rm_folders (share_id, parent_id, name);
CREATE INDEX rm_folders_path ON rm_folders (share_id, path);

CREATE TABLE rm_files (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    share_id         TEXT NOT NULL,
    folder_id        TEXT,
    name             TEXT NOT NULL,
    path             TEXT NOT NULL,
    mime_type        TEXT NOT NULL,
    size             BIGINT NOT NULL,
    checksum_sha256  TEXT NOT NULL,
    version          BIGINT NOT NULL,
    version_id       TEXT NOT NULL,
    version_bytes    BIGINT NOT NULL,
    owner_id         TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    modified_by      TEXT NOT NULL,
    modified_at      TEXT NOT NULL,
    is_deleted       BOOLEAN NOT NULL DEFAULT FALSE,
    deleted_at       TEXT,
    trashed_via      TEXT
);
CREATE INDEX rm_files_folder ON rm_files (share_id, folder_id, name);
CREATE INDEX rm_files_path ON rm_files (share_id, path);

CREATE TABLE rm_file_versions (
    file_id          TEXT NOT NULL,
    number           BIGINT NOT NULL,
    version_id       TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL,
    size             BIGINT NOT NULL,
    checksum_sha256  TEXT NOT NULL,
    mime_type        TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (file_id, number)
);

CREATE TABLE rm_chunk_refs (
    tenant_id    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    refs         BIGINT NOT NULL,
    released_at  TEXT,
    PRIMARY KEY (tenant_id, hash)
);
CREATE INDEX rm_chunk_refs_unreferenced ON rm_chunk_refs (refs, released_at);

CREATE TABLE rm_uploads (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    share_id      TEXT NOT NULL,
    status        TEXT NOT NULL,
    file_size     BIGINT NOT NULL,
    last_activity TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX rm_uploads_expiry ON rm_uploads (status, expires_at);
