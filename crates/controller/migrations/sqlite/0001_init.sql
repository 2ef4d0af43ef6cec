-- The controller's schema on SQLite. JSON-ish values are JSON text; everything a query
-- filters or orders by is a real column. Times are milliseconds since the epoch.

CREATE TABLE applications (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE app_versions (
    application TEXT NOT NULL REFERENCES applications (name),
    label       TEXT NOT NULL,
    source      TEXT NOT NULL,
    sha256      TEXT,
    description TEXT NOT NULL,
    size_bytes  INTEGER,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (application, label)
);

CREATE TABLE environments (
    -- AUTOINCREMENT: an id is never reused, since the API shows it (`e-<id>`).
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL UNIQUE,
    application         TEXT NOT NULL REFERENCES applications (name),
    tier                TEXT NOT NULL,
    options             TEXT NOT NULL,
    status              TEXT NOT NULL,
    expected_version    TEXT,
    expected_deployment INTEGER,
    desired_serial      INTEGER NOT NULL,
    desired_version     TEXT,
    health              TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL
);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    environment TEXT NOT NULL REFERENCES environments (name),
    uses_left   INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE instances (
    id                  TEXT PRIMARY KEY,
    environment         TEXT NOT NULL REFERENCES environments (name),
    enrolled_ms         INTEGER NOT NULL,
    machine_fingerprint TEXT NOT NULL,
    facts               TEXT NOT NULL,
    agent_version       TEXT NOT NULL,
    credential          TEXT NOT NULL,
    revoked_ms          INTEGER,
    last_seen_ms        INTEGER,
    status              TEXT NOT NULL,
    metrics             TEXT,
    applied_serial      INTEGER NOT NULL,
    events_cursor       INTEGER NOT NULL,
    desired_results     TEXT NOT NULL,
    -- Enrollment order, assigned at insert under the write lock (a rowid is not stable: VACUUM
    -- may renumber the rowids of a table without an INTEGER PRIMARY KEY).
    seq                 INTEGER NOT NULL
);
CREATE INDEX instances_environment ON instances (environment);
CREATE INDEX instances_seq ON instances (seq);

CREATE TABLE events (
    -- AUTOINCREMENT: seq is a page token, so it must never go back after a prune.
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    environment   TEXT NOT NULL,
    instance_id   TEXT,
    source_id     INTEGER,
    time_ms       INTEGER NOT NULL,
    -- The severity's rank (TRACE 0 … FATAL 5), so "at least this severe" is a comparison.
    severity      INTEGER NOT NULL,
    source        TEXT NOT NULL,
    message       TEXT NOT NULL,
    deployment_id INTEGER
);
-- A host's journal id is stored once: a report sent twice does not duplicate its events.
CREATE UNIQUE INDEX events_host_source ON events (instance_id, source_id)
    WHERE source_id IS NOT NULL;
CREATE INDEX events_environment ON events (environment, seq);
CREATE INDEX events_instance ON events (instance_id, seq);
CREATE INDEX events_time ON events (time_ms);

CREATE TABLE deployments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    environment   TEXT NOT NULL REFERENCES environments (name),
    kind          TEXT NOT NULL,
    version_label TEXT,
    serial        INTEGER NOT NULL,
    policy        TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    finished_ms   INTEGER,
    message       TEXT,
    members       TEXT NOT NULL
);
-- At most one unfinished deployment per environment, enforced by the database itself so
-- that no interleaving of writers can start two.
CREATE UNIQUE INDEX deployments_one_unfinished ON deployments (environment)
    WHERE status IN ('Pending', 'InProgress');
CREATE INDEX deployments_environment ON deployments (environment, id);

CREATE TABLE commands (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    kind          TEXT NOT NULL,
    deployment_id INTEGER,
    created_ms    INTEGER NOT NULL,
    result        TEXT
);
CREATE INDEX commands_pending ON commands (instance_id, created_ms) WHERE result IS NULL;

CREATE TABLE admin_tokens (
    hash       TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL
);

CREATE TABLE leases (
    name     TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);

-- Secrets every replica must share (the bundle URLs' signing key). The database is already
-- the controller's whole trust: whoever can write it can enroll hosts.
CREATE TABLE shared_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
