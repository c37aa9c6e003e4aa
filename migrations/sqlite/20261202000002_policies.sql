-- See the PostgreSQL migration of the same name.
ALTER TABLE instances ADD COLUMN policy TEXT;
ALTER TABLE instances ADD COLUMN recommended_level INTEGER NOT NULL DEFAULT 1 CHECK (recommended_level >= 1);
ALTER TABLE instances ADD COLUMN recommended_action_at INTEGER;
UPDATE instances SET recommended_level = scale_level, recommended_action_at = last_action_at;

ALTER TABLE scaling_decisions ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
