-- See the PostgreSQL migration of the same name.
ALTER TABLE instances ADD COLUMN metric_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN decision_count INTEGER NOT NULL DEFAULT 0;
UPDATE instances
SET metric_count   = (SELECT count(*) FROM metrics m WHERE m.instance = instances.id),
    decision_count = (SELECT count(*) FROM scaling_decisions d WHERE d.instance = instances.id);

CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start INTEGER NOT NULL
);
CREATE INDEX login_failures_window_idx ON login_failures (window_start);
