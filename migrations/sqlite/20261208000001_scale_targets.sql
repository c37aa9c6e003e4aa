-- The SQLite twin of migrations/postgres/20261208000001_scale_targets.sql.
CREATE TABLE scale_targets (
    id            TEXT PRIMARY KEY,
    instance      TEXT NOT NULL UNIQUE REFERENCES instances (id) ON DELETE CASCADE,
    target_key    TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    state         TEXT NOT NULL,
    desired_level INTEGER NOT NULL,
    progress      TEXT NOT NULL,
    due_at        INTEGER,
    lease_until   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX scale_targets_due_idx ON scale_targets (due_at) WHERE due_at IS NOT NULL;

CREATE TABLE actuations (
    id                TEXT PRIMARY KEY,
    instance          TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    ts                INTEGER NOT NULL,
    event             TEXT NOT NULL,
    desired_capacity  INTEGER,
    observed_capacity INTEGER,
    message           TEXT NOT NULL
);
CREATE INDEX actuations_instance_idx ON actuations (instance, ts DESC, id DESC);
CREATE INDEX actuations_ts_idx ON actuations (ts);

ALTER TABLE webhook_events ADD COLUMN actuation TEXT REFERENCES actuations (id) ON DELETE CASCADE;
CREATE INDEX webhook_events_actuation_idx ON webhook_events (actuation) WHERE actuation IS NOT NULL;
