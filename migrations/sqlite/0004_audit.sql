-- The audit view: every event as category / action / severity, with who,
-- from where, and on what.
CREATE TABLE rm_audit (
    position        BIGINT PRIMARY KEY,
    commit_id       BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    tenant_id       TEXT,
    occurred_at     TEXT NOT NULL,
    category        TEXT NOT NULL,
    action          TEXT NOT NULL,
    severity        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    user_id         TEXT,
    service_account TEXT,
    ip              TEXT,
    user_agent      TEXT,
    resource_type   TEXT,
    resource_id     TEXT NOT NULL,
    details         TEXT NOT NULL
);
CREATE INDEX rm_audit_tenant ON rm_audit (tenant_id, commit_id, position);
CREATE INDEX rm_audit_resource ON rm_audit (tenant_id, resource_id);
