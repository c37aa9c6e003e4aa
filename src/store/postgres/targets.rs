//! Scale targets: attach, read, detach, the worker's claim and its record.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::webhooks::subscribers;
use super::{Locked, PostgresStore};
use crate::actuate::reconcile::ActuationRecord;
use crate::actuate::{Progress, TargetSpec, TargetState, Update};
use crate::events::fan_out;
use crate::scaling::record::TargetLevel;
use crate::store::targets::{
    ActuationNotice, ActuationRow, DueRow, DueTarget, ScaleTarget, TargetRow, Targets, cooldowns,
    landed_events, progress_text, spec_text, state_counts,
};
use crate::store::{StoreError, StoreResult};

/// Inserts the webhook events of `notices` whose history line landed: one per
/// subscribed webhook of the instance's owner ([`fan_out`]), as decisions' are.
async fn queue_actuation_events(
    tx: &mut sqlx::PgConnection,
    notices: &[&ActuationNotice],
) -> StoreResult<()> {
    if notices.is_empty() {
        return Ok(());
    }
    let instances: Vec<Uuid> = notices.iter().map(|n| n.instance).collect();
    let subscribers = subscribers(tx, &instances).await?;
    let rows = fan_out(notices, &subscribers);
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_events (id, webhook, actuation, event_type, payload,
                next_attempt_at, created_at)
         SELECT u.id, u.webhook, u.actuation, u.t, u.p, u.at, u.at
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[])
              AS u(id, webhook, actuation, t, p, at)",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.webhook).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event.actuation).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.event.kind.event_type())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.event.payload.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.event.at).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// Moves the desired level of the targets of instances whose enforced change took
/// effect, in the scaling write's transaction (after its instance locks): due at
/// once, and pending unless the target only observes.
pub(super) async fn move_targets(
    tx: &mut sqlx::PgConnection,
    _: &Locked,
    levels: &[TargetLevel],
) -> StoreResult<()> {
    if levels.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE scale_targets t SET desired_level = u.level, due_at = u.at,
             state = CASE WHEN t.state = 'observing' THEN t.state ELSE 'pending' END
         FROM UNNEST($1::uuid[], $2::int4[], $3::timestamptz[]) AS u(instance, level, at)
         WHERE t.instance = u.instance AND t.desired_level <> u.level",
    )
    .bind(levels.iter().map(|l| l.instance).collect::<Vec<_>>())
    .bind(levels.iter().map(|l| l.level).collect::<Vec<_>>())
    .bind(levels.iter().map(|l| l.at).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Targets for PostgresStore {
    async fn put_target(
        &self,
        instance: Uuid,
        spec: &TargetSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<ScaleTarget> {
        let row: Option<TargetRow> = sqlx::query_as(concat!(
            "INSERT INTO scale_targets AS t (id, instance, target_key, kind, spec, state,
                    desired_level, progress, due_at, created_at, updated_at)
             SELECT $1, i.id, $3, $4, $5, 'pending', i.scale_level, $6, $7, $7, $7
             FROM instances i WHERE i.id = $2
             ON CONFLICT (instance) DO UPDATE SET id = EXCLUDED.id,
                 target_key = EXCLUDED.target_key, kind = EXCLUDED.kind, spec = EXCLUDED.spec,
                 state = 'pending', desired_level = EXCLUDED.desired_level,
                 -- The same group or workload keeps what was written and read of it
                 -- (so an outside change is still seen as one); another starts afresh.
                 progress = CASE WHEN t.target_key = EXCLUDED.target_key THEN t.progress
                                 ELSE EXCLUDED.progress END,
                 due_at = EXCLUDED.due_at, lease_until = NULL,
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
             RETURNING ",
            target_columns!("t")
        ))
        .bind(Uuid::now_v7())
        .bind(instance)
        .bind(spec.target.key())
        .bind(spec.target.kind().as_str())
        .bind(spec_text(spec))
        .bind(progress_text(&Progress::default()))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.and_then(TargetRow::into_target).ok_or(StoreError::Gone)
    }

    async fn target_of(&self, instance: Uuid) -> StoreResult<Option<ScaleTarget>> {
        let row: Option<TargetRow> = sqlx::query_as(concat!(
            "SELECT ",
            target_columns!("t"),
            " FROM scale_targets t WHERE t.instance = $1"
        ))
        .bind(instance)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(TargetRow::into_target))
    }

    async fn delete_target(&self, instance: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM scale_targets WHERE instance = $1")
            .bind(instance)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn actuations(&self, instance: Uuid, limit: i64) -> StoreResult<Vec<ActuationRecord>> {
        let rows: Vec<ActuationRow> = sqlx::query_as(
            "SELECT id, ts, event, desired_capacity, observed_capacity, message FROM actuations
             WHERE instance = $1 ORDER BY ts DESC, id DESC LIMIT $2",
        )
        .bind(instance)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ActuationRow::into_record).collect())
    }

    async fn claim_targets(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueTarget>> {
        let rows: Vec<DueRow> = sqlx::query_as(concat!(
            "WITH due AS (
                 SELECT id FROM scale_targets
                 WHERE due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE scale_targets t SET lease_until = $2
             FROM due, instances i, users u
             WHERE t.id = due.id AND i.id = t.instance AND u.id = i.user_id
             RETURNING ",
            target_columns!("t"),
            ", i.instance_id, u.email, i.policy, t.lease_until"
        ))
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(DueRow::into_due).collect())
    }

    async fn record_targets(
        &self,
        updates: &[Update],
        notices: &[ActuationNotice],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Uuid>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        // Instances before targets, as the scaling write takes them.
        let mut instances: Vec<Uuid> = updates
            .iter()
            .filter(|u| u.cooldown_from.is_some())
            .map(|u| u.instance)
            .collect();
        instances.sort_unstable();
        instances.dedup();
        let locked = Locked::take(&mut tx, &instances).await?;
        let u = updates;
        let landed: Vec<(Uuid,)> = sqlx::query_as(
            "UPDATE scale_targets t SET
                 state = CASE WHEN t.desired_level <> u.claimed THEN t.state ELSE u.state END,
                 desired_level = CASE WHEN t.desired_level <> u.claimed THEN t.desired_level
                                      ELSE u.desired END,
                 progress = u.progress,
                 due_at = CASE WHEN t.desired_level <> u.claimed THEN $8 ELSE u.due END,
                 lease_until = NULL, updated_at = $8
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::int4[], $5::int4[],
                         $6::text[], $7::timestamptz[])
                  AS u(id, lease, state, desired, claimed, progress, due)
             WHERE t.id = u.id AND t.lease_until = u.lease
             RETURNING t.id",
        )
        .bind(u.iter().map(|u| u.target).collect::<Vec<_>>())
        .bind(u.iter().map(|u| u.lease_until).collect::<Vec<_>>())
        .bind(u.iter().map(|u| u.state.as_str()).collect::<Vec<_>>())
        .bind(u.iter().map(|u| u.desired_level).collect::<Vec<_>>())
        .bind(u.iter().map(|u| u.claimed_level).collect::<Vec<_>>())
        .bind(
            u.iter()
                .map(|u| progress_text(&u.progress))
                .collect::<Vec<_>>(),
        )
        .bind(u.iter().map(|u| u.due_at).collect::<Vec<_>>())
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let landed: HashSet<Uuid> = landed.into_iter().map(|(id,)| id).collect();

        let events: Vec<(&Update, &ActuationRecord)> = landed_events(updates, &landed).collect();
        if !events.is_empty() {
            sqlx::query(
                "INSERT INTO actuations (id, instance, ts, event, desired_capacity,
                        observed_capacity, message)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[],
                        $5::int4[], $6::int4[], $7::text[])",
            )
            .bind(events.iter().map(|(_, e)| e.id).collect::<Vec<_>>())
            .bind(events.iter().map(|(u, _)| u.instance).collect::<Vec<_>>())
            .bind(events.iter().map(|(_, e)| e.at).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|(_, e)| e.event.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|(_, e)| e.desired_capacity)
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|(_, e)| e.observed_capacity)
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|(_, e)| e.message.as_str())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
            let written: HashSet<Uuid> = events.iter().map(|(_, e)| e.id).collect();
            let notices: Vec<&ActuationNotice> = notices
                .iter()
                .filter(|n| written.contains(&n.actuation))
                .collect();
            queue_actuation_events(&mut tx, &notices).await?;
        }

        let cooldowns: Vec<(Uuid, DateTime<Utc>)> = cooldowns(updates, &landed)
            .into_iter()
            .filter(|(i, _)| locked.contains(*i))
            .collect();
        if !cooldowns.is_empty() {
            sqlx::query(
                "UPDATE instances i SET last_action_at = u.at
                 FROM UNNEST($1::uuid[], $2::timestamptz[]) AS u(id, at)
                 WHERE i.id = u.id AND i.id = ANY($1)",
            )
            .bind(cooldowns.iter().map(|c| c.0).collect::<Vec<_>>())
            .bind(cooldowns.iter().map(|c| c.1).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(landed.into_iter().collect())
    }

    async fn targets_of(&self, instances: &[Uuid]) -> StoreResult<Vec<ScaleTarget>> {
        let rows: Vec<TargetRow> = sqlx::query_as(concat!(
            "SELECT ",
            target_columns!("t"),
            " FROM scale_targets t WHERE t.instance = ANY($1)"
        ))
        .bind(instances)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(TargetRow::into_target)
            .collect())
    }

    async fn targets_by_state(&self) -> StoreResult<Vec<(TargetState, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM scale_targets GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        Ok(state_counts(rows))
    }
}
