-- Quota read models: the bytes of every file (all versions, trash apart),
-- live folders, share owners, tenants' partners and open upload reservations,
-- from which usage per level is summed; and the quota accounts' settings.
CREATE TABLE rm_quota_files (
    file_id        TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    share_id       TEXT NOT NULL,
    folder_id      TEXT,
    size           BIGINT NOT NULL,
    version_bytes  BIGINT NOT NULL,
    trashed        BOOLEAN NOT NULL DEFAULT FALSE,
    -- the trashed ancestor folder hiding this file, if any
    hidden_by      TEXT
);
CREATE INDEX rm_quota_files_share ON rm_quota_files (share_id);
CREATE INDEX rm_quota_files_tenant ON rm_quota_files (tenant_id);
CREATE INDEX rm_quota_files_folder ON rm_quota_files (folder_id);

CREATE TABLE rm_quota_folders (
    folder_id  TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    share_id   TEXT NOT NULL,
    parent_id  TEXT,
    trashed    BOOLEAN NOT NULL DEFAULT FALSE,
    hidden_by  TEXT
);
CREATE INDEX rm_quota_folders_parent ON rm_quota_folders (parent_id);
CREATE INDEX rm_quota_folders_share ON rm_quota_folders (share_id);

CREATE TABLE rm_quota_shares (
    share_id   TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    owner_id   TEXT NOT NULL
);
CREATE INDEX rm_quota_shares_owner ON rm_quota_shares (owner_id);

CREATE TABLE rm_quota_tenants (
    tenant_id   TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL
);
CREATE INDEX rm_quota_tenants_partner ON rm_quota_tenants (partner_id);

CREATE TABLE rm_quota_reservations (
    upload_id  TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    share_id   TEXT NOT NULL,
    bytes      BIGINT NOT NULL
);
CREATE INDEX rm_quota_reservations_share ON rm_quota_reservations (share_id);

CREATE TABLE rm_quota_accounts (
    quota_id             TEXT PRIMARY KEY,
    tenant_id            TEXT,
    target_type          TEXT NOT NULL,
    target_id            TEXT NOT NULL,
    limit_bytes          BIGINT,
    limit_type           TEXT NOT NULL DEFAULT 'hard',
    warning_threshold_1  INTEGER NOT NULL DEFAULT 70,
    warning_threshold_2  INTEGER NOT NULL DEFAULT 85,
    warning_threshold_3  INTEGER NOT NULL DEFAULT 95,
    grace_period_days    INTEGER NOT NULL DEFAULT 7,
    grace_extra_percent  INTEGER NOT NULL DEFAULT 10,
    grace_started_at     TEXT,
    exempt               BOOLEAN NOT NULL DEFAULT FALSE,
    exempt_reason        TEXT,
    modified_at          TEXT NOT NULL,
    UNIQUE (target_type, target_id)
);
CREATE INDEX rm_quota_accounts_tenant ON rm_quota_accounts (tenant_id, target_type);
