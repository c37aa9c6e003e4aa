-- Webhooks: where a user wants scaling decisions sent, and the outbox of events to
-- deliver. An event is written in the same transaction as the decision it reports,
-- so a decision is never lost or announced without having happened.
CREATE TABLE webhooks (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         text NOT NULL,
    -- The decisions it wants, a JSON array such as ["scale_up", "scale_down"].
    events      jsonb NOT NULL,
    description text,
    -- "whsec_" + base64 key; kept to sign each delivery, shown once at creation.
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_user_idx ON webhooks (user_id, created_at);

CREATE TABLE webhook_events (
    -- Also the `webhook-id` header: the same on every attempt, for deduplication.
    id              uuid PRIMARY KEY,
    webhook         uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- NULL for a ping. Deleting an instance deletes its decisions and so their events.
    decision        uuid REFERENCES scaling_decisions (id) ON DELETE CASCADE,
    event_type      text NOT NULL,
    -- The exact body sent (and signed).
    payload         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- When a pending event is next due. A claim moves it a lease ahead, so another
    -- replica retries it only if the claimant died mid-attempt.
    next_attempt_at timestamptz NOT NULL,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL
);
-- The worker's claim: due pending events, oldest due first.
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE status = 'pending';
-- A webhook's deliveries, newest first.
CREATE INDEX webhook_events_webhook_idx ON webhook_events (webhook, created_at DESC, id DESC);
-- Cascading deletes of decisions (retention, instance deletion).
CREATE INDEX webhook_events_decision_idx ON webhook_events (decision);
