-- Scale targets: the Auto Scaling group or Kubernetes workload an instance's level
-- drives, one per instance, and the history of what was done to it.
CREATE TABLE scale_targets (
    id            uuid PRIMARY KEY,
    instance      uuid NOT NULL UNIQUE REFERENCES instances (id) ON DELETE CASCADE,
    -- Which group or workload ("aws_asg/us-east-1/web"): two instances never drive one.
    target_key    text NOT NULL UNIQUE,
    kind          text NOT NULL,
    -- The spec and the progress are JSON written by Rust (actuate::target and
    -- actuate::reconcile), the same bytes on both databases.
    spec          text NOT NULL,
    state         text NOT NULL,
    -- The level to actuate; moved by an enforced decision in its own transaction,
    -- one value rather than a queue, so a burst collapses to the newest.
    desired_level integer NOT NULL,
    progress      text NOT NULL,
    -- When the worker should look again (NULL: only after a change), and until when
    -- a claimant holds it.
    due_at        timestamptz,
    lease_until   timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- The worker's claim: due targets, oldest due first.
CREATE INDEX scale_targets_due_idx ON scale_targets (due_at) WHERE due_at IS NOT NULL;

CREATE TABLE actuations (
    id                uuid PRIMARY KEY,
    instance          uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    ts                timestamptz NOT NULL,
    event             text NOT NULL,
    desired_capacity  integer,
    observed_capacity integer,
    message           text NOT NULL
);
CREATE INDEX actuations_instance_idx ON actuations (instance, ts DESC, id DESC);
-- Retention.
CREATE INDEX actuations_ts_idx ON actuations (ts);

-- An actuation's webhook event points at its history row; deleting the instance
-- deletes both.
ALTER TABLE webhook_events ADD COLUMN actuation uuid REFERENCES actuations (id) ON DELETE CASCADE;
CREATE INDEX webhook_events_actuation_idx ON webhook_events (actuation) WHERE actuation IS NOT NULL;
