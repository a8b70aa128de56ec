-- The log as a Merkle tree (RFC 6962): the leaves in log order and every
-- perfect subtree, written once by the lease-guarded tree follower. A node's
-- id is (level << 56) | index; its hash is hex.

CREATE TABLE merkle_nodes (
    id    INTEGER PRIMARY KEY,
    hash  TEXT    NOT NULL
);

CREATE TABLE merkle_leaves (
    leaf_index  INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    tenant_id   TEXT,
    position    INTEGER NOT NULL
);
