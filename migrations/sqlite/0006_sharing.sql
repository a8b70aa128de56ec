-- Who may do what: share memberships (the owner included, as role 'owner'),
-- invitations, and ACL entries on shares, folders and files. Together they
-- are the permission index: a check reads the caller's memberships of one
-- share and, only when the share has ACLs at all, the entries on the
-- resource's ancestor chain.

CREATE TABLE rm_share_members (
    share_id       TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    principal_type TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    role           TEXT NOT NULL,
    expires_at     TEXT,
    added_by       TEXT,
    added_at       TEXT NOT NULL,
    PRIMARY KEY (share_id, principal_id)
);
CREATE INDEX rm_share_members_principal ON rm_share_members (tenant_id, principal_id);

CREATE TABLE rm_invitations (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    share_id     TEXT NOT NULL,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL,
    message      TEXT,
    status       TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    invited_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    responded_at TEXT
);
CREATE INDEX rm_invitations_share ON rm_invitations (share_id, created_at);
CREATE INDEX rm_invitations_email ON rm_invitations (tenant_id, email);

-- One row per resource whose ACL was ever touched.
CREATE TABLE rm_acls (
    resource_id         TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    share_id            TEXT NOT NULL,
    resource_type       TEXT NOT NULL,
    inherit_from_parent BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX rm_acls_share ON rm_acls (share_id);

CREATE TABLE rm_acl_entries (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    share_id            TEXT NOT NULL,
    resource_type       TEXT NOT NULL,
    resource_id         TEXT NOT NULL,
    principal_type      TEXT NOT NULL,
    principal_id        TEXT NOT NULL,
    permissions         INTEGER NOT NULL,
    ace_type            TEXT NOT NULL,
    inherit_to_children BOOLEAN NOT NULL,
    created_at          TEXT NOT NULL
);
CREATE INDEX rm_acl_entries_resource ON rm_acl_entries (resource_id);
CREATE INDEX rm_acl_entries_share ON rm_acl_entries (share_id);
