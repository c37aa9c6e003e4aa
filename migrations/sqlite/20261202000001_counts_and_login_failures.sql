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

-- Here the counts are kept by triggers, inside the statement that inserts or
-- deletes: SQLite has one writer at a time, so a separate UPDATE (and the
-- transaction around both) would hold the write lock several times as long for
-- every simulated metric. Cascaded deletes fire them too.
CREATE TRIGGER metrics_counted AFTER INSERT ON metrics BEGIN
    UPDATE instances SET metric_count = metric_count + 1 WHERE id = NEW.instance;
END;
CREATE TRIGGER metrics_uncounted AFTER DELETE ON metrics BEGIN
    UPDATE instances SET metric_count = metric_count - 1 WHERE id = OLD.instance;
END;
CREATE TRIGGER decisions_counted AFTER INSERT ON scaling_decisions BEGIN
    UPDATE instances SET decision_count = decision_count + 1 WHERE id = NEW.instance;
END;
CREATE TRIGGER decisions_uncounted AFTER DELETE ON scaling_decisions BEGIN
    UPDATE instances SET decision_count = decision_count - 1 WHERE id = OLD.instance;
END;
