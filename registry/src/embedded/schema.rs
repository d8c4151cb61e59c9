//! The embedded store's SQLite schema. Created on first open; `user_version` records the
//! schema revision so a later change can migrate. Times are milliseconds since the epoch.

/// The schema revision this code writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// Tables and indexes (idempotent: every statement is `IF NOT EXISTS`).
pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS experiments (
    name        TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    experiment  TEXT NOT NULL REFERENCES experiments(name),
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs(experiment, start_ms);
CREATE TABLE IF NOT EXISTS run_tags (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS params (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    key         TEXT NOT NULL,
    step        INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    value       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_key ON metrics(run_id, key, step, timestamp_ms);
CREATE TABLE IF NOT EXISTS run_artifacts (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    PRIMARY KEY (run_id, path)
);
CREATE TABLE IF NOT EXISTS models (
    name        TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model       TEXT NOT NULL REFERENCES models(name),
    version     INTEGER NOT NULL,
    run_id      TEXT NOT NULL REFERENCES runs(id),
    idempotency_key TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (model, version),
    UNIQUE (model, idempotency_key)
);
CREATE TABLE IF NOT EXISTS version_artifacts (
    model       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    PRIMARY KEY (model, version, path),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE IF NOT EXISTS version_tags (
    model       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (model, version, key),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    model       TEXT NOT NULL REFERENCES models(name),
    alias       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
";
