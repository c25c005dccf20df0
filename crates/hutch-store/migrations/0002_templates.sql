-- Built templates (the built-in ones live in code and are never stored). `id` is the public
-- template id (a string on the wire); numbering starts at 100, clear of the built-in ids.
CREATE TABLE templates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    -- building | active | failed: active once any version is built, else the latest build's.
    status     TEXT NOT NULL,
    -- The directory (<data_dir>/templates/<name>/<version>) sandboxes start from; NULL until a
    -- build succeeds.
    version    INTEGER,
    -- JSON: descriptive fields, env, working directory, start command, default resources.
    meta       TEXT NOT NULL,
    -- The most recent build.
    build_id   TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO sqlite_sequence (name, seq) VALUES ('templates', 99);

-- One row per build request. A build that was running when the server stopped is marked failed
-- at the next start.
CREATE TABLE template_builds (
    id            TEXT PRIMARY KEY,
    template_id   INTEGER NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    progress      INTEGER NOT NULL,
    current_step  TEXT,
    error_message TEXT,
    -- JSON metadata the template takes on if this build succeeds.
    meta          TEXT NOT NULL,
    -- The request as submitted (the TOML spec, or the HopX build request as JSON).
    source        TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    completed_at  INTEGER,
    duration_ms   INTEGER
);
CREATE INDEX template_builds_template ON template_builds(template_id);
CREATE INDEX template_builds_status ON template_builds(status);
