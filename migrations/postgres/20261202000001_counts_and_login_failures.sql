-- How many metrics and decisions each instance has, kept by the store in the same
-- transaction as every insert and delete, so a paged read reports its total without
-- counting up to 100,000 index entries per request.
ALTER TABLE instances
    ADD COLUMN metric_count   bigint NOT NULL DEFAULT 0,
    ADD COLUMN decision_count bigint NOT NULL DEFAULT 0;
UPDATE instances i
SET metric_count   = (SELECT count(*) FROM metrics m WHERE m.instance = i.id),
    decision_count = (SELECT count(*) FROM scaling_decisions d WHERE d.instance = i.id);

-- Failed logins per email and per client address, shared by every replica so that
-- N replicas give an attacker the allowance of one. A counter restarts when its
-- window has passed; the retention job deletes expired ones.
CREATE TABLE login_failures (
    key          text PRIMARY KEY,
    failures     integer NOT NULL,
    window_start timestamptz NOT NULL
);
CREATE INDEX login_failures_window_idx ON login_failures (window_start);
