-- Persistent execution contexts (docs/sessions-api.md): the session, its saved state (opaque
-- bytes the kernel inside a sandbox wrote; never unpickled here), its execution history and the
-- artifacts its executions produced.
CREATE TABLE sessions (
    session_id      TEXT PRIMARY KEY,
    sandbox_id      TEXT,
    owns_sandbox    INTEGER NOT NULL DEFAULT 0,
    template        TEXT NOT NULL,
    env_vars        TEXT NOT NULL DEFAULT '{}',
    timeout_seconds INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    execution_count INTEGER NOT NULL DEFAULT 0,
    variables       TEXT NOT NULL DEFAULT '[]',
    state           BLOB
);

CREATE TABLE session_history (
    session_id     TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id   TEXT NOT NULL,
    timestamp      TEXT NOT NULL,
    code           TEXT NOT NULL,
    code_digest    TEXT NOT NULL,
    execution_time REAL NOT NULL,
    success        INTEGER NOT NULL,
    cache_hit      INTEGER NOT NULL,
    error_type     TEXT,
    artifacts      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX session_history_by_session ON session_history(session_id, seq);

CREATE TABLE session_artifacts (
    session_id   TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    artifact_id  TEXT NOT NULL,
    sandbox_id   TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    record       TEXT NOT NULL,
    PRIMARY KEY (session_id, artifact_id)
);
