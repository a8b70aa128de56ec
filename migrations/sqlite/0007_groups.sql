-- Groups read model: one row per live group, one per membership.
CREATE TABLE rm_groups (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    name_key      TEXT NOT NULL,
    description   TEXT,
    external_id   TEXT,
    member_count  INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    modified_at   TEXT NOT NULL
);
CREATE INDEX rm_groups_tenant_name ON rm_groups (tenant_id, name_key);
CREATE INDEX rm_groups_tenant_external ON rm_groups (tenant_id, external_id);

CREATE TABLE rm_group_members (
    group_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    added_at   TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX rm_group_members_user ON rm_group_members (tenant_id, user_id);
