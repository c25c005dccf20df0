-- Sandboxes the control plane knows. `seq` orders listings and backs the paging cursor.
CREATE TABLE sandboxes (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    template_name   TEXT NOT NULL,
    template_id     TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    timeout_seconds INTEGER,
    expires_at      INTEGER,
    internet_access INTEGER NOT NULL,
    env_vars        TEXT NOT NULL,
    resources       TEXT NOT NULL
);
CREATE INDEX sandboxes_expires ON sandboxes(expires_at) WHERE expires_at IS NOT NULL;

-- Agent tokens, stored as SHA-256 digests: a copy of the database cannot be used to call agents.
CREATE TABLE tokens (
    digest     TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE INDEX tokens_sandbox ON tokens(sandbox_id);
