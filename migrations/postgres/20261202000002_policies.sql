-- Per-instance policies and dry runs.
--
-- `policy` holds the fields a user set (a JSON object of the API's policy fields);
-- NULL means the server defaults, and omitted fields follow the defaults too, so a
-- changed default reaches every instance that did not set that field.
--
-- In dry-run mode the engine decides against a shadow state instead of the real
-- one: the level it recommends and when it last recommended an action. Switching
-- modes resets the shadow to the real level.
ALTER TABLE instances
    ADD COLUMN policy                text,
    ADD COLUMN recommended_level     integer NOT NULL DEFAULT 1 CHECK (recommended_level >= 1),
    ADD COLUMN recommended_action_at timestamptz;
UPDATE instances SET recommended_level = scale_level, recommended_action_at = last_action_at;

-- A dry-run decision changed the shadow level, not the real one.
ALTER TABLE scaling_decisions ADD COLUMN dry_run boolean NOT NULL DEFAULT false;
