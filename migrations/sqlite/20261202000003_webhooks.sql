-- The SQLite twin of migrations/postgres/20261202000001_webhooks.sql.
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    description TEXT,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX webhooks_user_idx ON webhooks (user_id, created_at);

CREATE TABLE webhook_events (
    id              TEXT PRIMARY KEY,
    webhook         TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    decision        TEXT REFERENCES scaling_decisions (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_events_webhook_idx ON webhook_events (webhook, created_at DESC, id DESC);
CREATE INDEX webhook_events_decision_idx ON webhook_events (decision);
