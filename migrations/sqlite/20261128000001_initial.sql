-- The SQLite twin of migrations/postgres. Ids are hyphenated uuid text, times are
-- integer microseconds since the Unix epoch (exact, and ordered as numbers),
-- booleans are 0/1.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Capacities follow from scale_level; see the PostgreSQL migration.
CREATE TABLE instances (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instance_id           TEXT NOT NULL UNIQUE,
    instance_type         TEXT NOT NULL,
    region                TEXT NOT NULL,
    is_mock               INTEGER NOT NULL,
    is_monitoring         INTEGER NOT NULL DEFAULT 0,
    scale_level           INTEGER NOT NULL DEFAULT 1 CHECK (scale_level >= 1),
    last_action_at        INTEGER,
    last_decision         TEXT,
    last_collected_at     INTEGER,
    last_collection_error TEXT,
    collect_slot          INTEGER NOT NULL DEFAULT 0,
    scale_slot            INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL
)
-- Stored in id order: the claim indexes below end in id, so each batch a tick
-- claims is a run of neighbouring ids, and its status and decision updates (and
-- its metrics' entries in metrics_instance_ts_idx) fall on a few neighbouring
-- pages instead of one page per instance.
WITHOUT ROWID;
CREATE INDEX instances_user_idx ON instances (user_id);
CREATE INDEX instances_collect_due_idx ON instances (collect_slot) WHERE is_monitoring = 1;
CREATE INDEX instances_scale_due_idx ON instances (scale_slot) WHERE is_monitoring = 1;

CREATE TABLE metrics (
    id              TEXT PRIMARY KEY,
    instance        TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    ts              INTEGER NOT NULL,
    cpu_utilization REAL NOT NULL,
    memory_usage    REAL,
    network_in      INTEGER,
    network_out     INTEGER,
    source          TEXT NOT NULL CHECK (source IN ('mock', 'cloudwatch', 'simulated')),
    is_outlier      INTEGER NOT NULL DEFAULT 0,
    outlier_type    TEXT CHECK (outlier_type IN ('scale_up', 'scale_down'))
);
-- In the API's order (newest first, id breaking ties), so `LIMIT n` reads n
-- entries and sorts nothing; also the scaling window's range scan per instance.
CREATE INDEX metrics_instance_ts_idx ON metrics (instance, ts DESC, id DESC);
CREATE INDEX metrics_ts_idx ON metrics (ts);
CREATE UNIQUE INDEX metrics_cloudwatch_point_idx ON metrics (instance, ts) WHERE source = 'cloudwatch';

CREATE TABLE scaling_decisions (
    id              TEXT PRIMARY KEY,
    instance        TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    ts              INTEGER NOT NULL,
    cpu_utilization REAL,
    memory_usage    REAL,
    network_in      INTEGER,
    network_out     INTEGER,
    decision        TEXT NOT NULL CHECK (decision IN ('scale_up', 'scale_down', 'no_action')),
    reason          TEXT NOT NULL,
    level_before    INTEGER NOT NULL,
    level_after     INTEGER NOT NULL
);
CREATE INDEX scaling_decisions_instance_ts_idx ON scaling_decisions (instance, ts DESC, id DESC);
CREATE INDEX scaling_decisions_ts_idx ON scaling_decisions (ts);
