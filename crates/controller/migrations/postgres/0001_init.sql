-- The controller's schema on PostgreSQL 15+. JSON-ish values are JSONB; everything a query
-- filters or orders by is a real column. Times are milliseconds since the epoch (BIGINT), and
-- every integer is BIGINT so both backends decode the same Rust types.

CREATE TABLE applications (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE app_versions (
    application TEXT NOT NULL REFERENCES applications (name),
    label       TEXT NOT NULL,
    source      TEXT NOT NULL,
    sha256      TEXT,
    description TEXT NOT NULL,
    size_bytes  BIGINT,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (application, label)
);

CREATE TABLE environments (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    application         TEXT NOT NULL REFERENCES applications (name),
    tier                TEXT NOT NULL,
    options             JSONB NOT NULL,
    status              TEXT NOT NULL,
    expected_version    TEXT,
    expected_deployment BIGINT,
    desired_serial      BIGINT NOT NULL,
    desired_version     TEXT,
    health              JSONB NOT NULL,
    created_ms          BIGINT NOT NULL,
    updated_ms          BIGINT NOT NULL
);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    environment TEXT NOT NULL REFERENCES environments (name),
    uses_left   BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE
);

-- The hot table: every report may touch it. fillfactor=70 leaves room on each page so that
-- an update can be HOT (no index update), which needs the updated columns to be in no index:
-- only `id` and `environment` are indexed, and reports never change either.
CREATE TABLE instances (
    id                  TEXT PRIMARY KEY,
    environment         TEXT NOT NULL REFERENCES environments (name),
    enrolled_ms         BIGINT NOT NULL,
    machine_fingerprint TEXT NOT NULL,
    facts               JSONB NOT NULL,
    agent_version       TEXT NOT NULL,
    credential          JSONB NOT NULL,
    revoked_ms          BIGINT,
    last_seen_ms        BIGINT,
    status              JSONB NOT NULL,
    metrics             JSONB,
    applied_serial      BIGINT NOT NULL,
    events_cursor       BIGINT NOT NULL,
    desired_results     JSONB NOT NULL,
    -- Enrollment order (the rowid on SQLite); not indexed, so it costs HOT nothing.
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY
) WITH (fillfactor = 70);
CREATE INDEX instances_environment ON instances (environment);

CREATE TABLE events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment   TEXT NOT NULL,
    instance_id   TEXT,
    source_id     BIGINT,
    time_ms       BIGINT NOT NULL,
    -- The severity's rank (TRACE 0 … FATAL 5), so "at least this severe" is a comparison.
    severity      BIGINT NOT NULL,
    source        TEXT NOT NULL,
    message       TEXT NOT NULL,
    deployment_id BIGINT
);
-- A host's journal id is stored once: a report sent twice does not duplicate its events.
CREATE UNIQUE INDEX events_host_source ON events (instance_id, source_id)
    WHERE source_id IS NOT NULL;
CREATE INDEX events_environment ON events (environment, seq);
CREATE INDEX events_instance ON events (instance_id, seq);
-- Pruning and time filters read events by time.
CREATE INDEX events_time ON events (time_ms);

CREATE TABLE deployments (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment   TEXT NOT NULL REFERENCES environments (name),
    kind          TEXT NOT NULL,
    version_label TEXT,
    serial        BIGINT NOT NULL,
    policy        TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    finished_ms   BIGINT,
    message       TEXT,
    members       JSONB NOT NULL
);
-- At most one unfinished deployment per environment: two replicas inserting at once
-- serialize on this index, and the second gets a unique violation.
CREATE UNIQUE INDEX deployments_one_unfinished ON deployments (environment)
    WHERE status IN ('Pending', 'InProgress');
CREATE INDEX deployments_environment ON deployments (environment, id);

CREATE TABLE commands (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    kind          TEXT NOT NULL,
    deployment_id BIGINT,
    created_ms    BIGINT NOT NULL,
    result        JSONB
);
CREATE INDEX commands_pending ON commands (instance_id, created_ms) WHERE result IS NULL;

CREATE TABLE admin_tokens (
    hash       TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE leases (
    name     TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);

-- Secrets every replica must share (the bundle URLs' signing key). The database is already
-- the controller's whole trust: whoever can write it can enroll hosts.
CREATE TABLE shared_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
