-- Accounts. Emails are stored lower-cased, so uniqueness ignores case.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Watched instances. Capacities are not stored: they follow from scale_level
-- (100 x 1.5^(level - 1)), so they can never drift from it.
CREATE TABLE instances (
    id                    uuid PRIMARY KEY,
    user_id               uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The user-facing id (i-0abc..., mock-test-1): unique across all users.
    instance_id           text NOT NULL UNIQUE,
    instance_type         text NOT NULL,
    region                text NOT NULL,
    is_mock               boolean NOT NULL,
    is_monitoring         boolean NOT NULL DEFAULT false,
    scale_level           integer NOT NULL DEFAULT 1 CHECK (scale_level >= 1),
    last_action_at        timestamptz,
    -- Outcome of the latest evaluation: a decision row is written when it changes.
    last_decision         text,
    last_collected_at     timestamptz,
    last_collection_error text,
    -- The last collection / scaling tick (unix seconds / interval) that claimed this
    -- row. Replicas claim rows with FOR UPDATE SKIP LOCKED and bump these, so each
    -- instance is handled once per tick across all replicas.
    collect_slot          bigint NOT NULL DEFAULT 0,
    scale_slot            bigint NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now()
)
-- The jobs rewrite every monitored row several times a minute (the two claims,
-- the collection status, decisions). Half-empty pages let each new row version
-- stay on its page as a HOT update: no index entries to add, and the dead
-- versions are pruned as pages are read, without waiting for vacuum.
WITH (fillfactor = 50);
CREATE INDEX instances_user_idx ON instances (user_id);
-- No index on collect_slot / scale_slot, on purpose: a claim bumps them, and an
-- indexed column changing makes every claim a non-HOT update that adds an entry
-- to each index. Claims walk the primary key in id order instead (see
-- PostgresStore::claim).

CREATE TABLE metrics (
    id              uuid PRIMARY KEY,
    instance        uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    ts              timestamptz NOT NULL,
    cpu_utilization double precision NOT NULL,
    -- NULL where unknown (no CloudWatch agent): never read as 0.
    memory_usage    double precision,
    network_in      bigint,
    network_out     bigint,
    source          text NOT NULL CHECK (source IN ('mock', 'cloudwatch', 'simulated')),
    is_outlier      boolean NOT NULL DEFAULT false,
    outlier_type    text CHECK (outlier_type IN ('scale_up', 'scale_down'))
);
-- Newest-first reads per instance (in exactly the API's order, so `LIMIT n` reads
-- n entries and sorts nothing, however skewed the statistics), and the scaling
-- window of a batch of instances (one range scan per instance).
CREATE INDEX metrics_instance_ts_idx ON metrics (instance, ts DESC, id DESC);
-- Retention deletes by age.
CREATE INDEX metrics_ts_idx ON metrics (ts);
-- A CloudWatch datapoint is stored once, however often it is read back.
CREATE UNIQUE INDEX metrics_cloudwatch_point_idx ON metrics (instance, ts) WHERE source = 'cloudwatch';

CREATE TABLE scaling_decisions (
    id              uuid PRIMARY KEY,
    instance        uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    ts              timestamptz NOT NULL,
    cpu_utilization double precision,
    memory_usage    double precision,
    network_in      bigint,
    network_out     bigint,
    decision        text NOT NULL CHECK (decision IN ('scale_up', 'scale_down', 'no_action')),
    reason          text NOT NULL,
    level_before    integer NOT NULL,
    level_after     integer NOT NULL
);
CREATE INDEX scaling_decisions_instance_ts_idx ON scaling_decisions (instance, ts DESC, id DESC);
CREATE INDEX scaling_decisions_ts_idx ON scaling_decisions (ts);
