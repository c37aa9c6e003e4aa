//! Scale targets: attach, read, detach, the worker's claim and its record.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::webhooks::subscribers;
use super::{SqliteStore, micros};
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
    tx: &mut sqlx::SqliteConnection,
    notices: &[&ActuationNotice],
) -> StoreResult<()> {
    if notices.is_empty() {
        return Ok(());
    }
    let instances: Vec<Uuid> = notices.iter().map(|n| n.instance).collect();
    let subscribers = subscribers(tx, &instances).await?;
    let rows: Vec<serde_json::Value> = fan_out(notices, &subscribers)
        .iter()
        .map(|r| {
            serde_json::json!([
                r.id.to_string(),
                r.webhook.to_string(),
                r.event.actuation.to_string(),
                r.event.kind.event_type(),
                r.event.payload,
                micros(r.event.at)
            ])
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_events (id, webhook, actuation, event_type, payload,
                next_attempt_at, created_at)
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>5
         FROM json_each(?1)",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(tx)
    .await?;
    Ok(())
}

/// Moves the desired level of the targets of instances whose enforced change took
/// effect, in the scaling write's transaction: due at once, and pending unless the
/// target only observes.
pub(super) async fn move_targets(
    tx: &mut sqlx::SqliteConnection,
    levels: &[TargetLevel],
) -> StoreResult<()> {
    for l in levels {
        sqlx::query(
            "UPDATE scale_targets SET desired_level = ?2, due_at = ?3,
                 state = CASE WHEN state = 'observing' THEN state ELSE 'pending' END
             WHERE instance = ?1 AND desired_level <> ?2",
        )
        .bind(l.instance.to_string())
        .bind(l.level)
        .bind(micros(l.at))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Targets for SqliteStore {
    async fn put_target(
        &self,
        instance: Uuid,
        spec: &TargetSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<ScaleTarget> {
        let row: Option<TargetRow> = sqlx::query_as(concat!(
            "INSERT INTO scale_targets (id, instance, target_key, kind, spec, state,
                    desired_level, progress, due_at, created_at, updated_at)
             SELECT ?1, i.id, ?3, ?4, ?5, 'pending', i.scale_level, ?6, ?7, ?7, ?7
             FROM instances i WHERE i.id = ?2
             ON CONFLICT (instance) DO UPDATE SET id = excluded.id,
                 target_key = excluded.target_key, kind = excluded.kind, spec = excluded.spec,
                 state = 'pending', desired_level = excluded.desired_level,
                 progress = CASE WHEN scale_targets.target_key = excluded.target_key
                                 THEN scale_targets.progress ELSE excluded.progress END,
                 due_at = excluded.due_at, lease_until = NULL,
                 created_at = excluded.created_at, updated_at = excluded.updated_at
             RETURNING ",
            target_columns!("scale_targets")
        ))
        .bind(Uuid::now_v7().to_string())
        .bind(instance.to_string())
        .bind(spec.target.key())
        .bind(spec.target.kind().as_str())
        .bind(spec_text(spec))
        .bind(progress_text(&Progress::default()))
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.and_then(TargetRow::into_target).ok_or(StoreError::Gone)
    }

    async fn target_of(&self, instance: Uuid) -> StoreResult<Option<ScaleTarget>> {
        let row: Option<TargetRow> = sqlx::query_as(concat!(
            "SELECT ",
            target_columns!("t"),
            " FROM scale_targets t WHERE t.instance = ?1"
        ))
        .bind(instance.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(TargetRow::into_target))
    }

    async fn delete_target(&self, instance: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM scale_targets WHERE instance = ?1")
            .bind(instance.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn actuations(&self, instance: Uuid, limit: i64) -> StoreResult<Vec<ActuationRecord>> {
        let rows: Vec<ActuationRow> = sqlx::query_as(
            "SELECT id, ts, event, desired_capacity, observed_capacity, message FROM actuations
             WHERE instance = ?1 ORDER BY ts DESC, id DESC LIMIT ?2 + 0",
        )
        .bind(instance.to_string())
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
        // One writer at a time on SQLite: the UPDATE is the claim.
        let mut tx = self.pool.begin().await?;
        let claimed: Vec<(String,)> = sqlx::query_as(
            "UPDATE scale_targets SET lease_until = ?2
             WHERE id IN (SELECT id FROM scale_targets
                          WHERE due_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)
                          ORDER BY due_at LIMIT ?3 + 0)
             RETURNING id",
        )
        .bind(micros(now))
        .bind(micros(lease_until))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(&claimed.iter().map(|(id,)| id).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into());
        let rows: Vec<DueRow> = sqlx::query_as(concat!(
            "SELECT ",
            target_columns!("t"),
            ", i.instance_id, u.email, i.policy, t.lease_until
             FROM json_each(?1) AS c
             JOIN scale_targets t ON t.id = c.value
             JOIN instances i ON i.id = t.instance
             JOIN users u ON u.id = i.user_id
             ORDER BY t.due_at"
        ))
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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
        let mut landed = HashSet::new();
        for u in updates {
            let done = sqlx::query(
                "UPDATE scale_targets SET
                     state = CASE WHEN desired_level <> ?5 THEN state ELSE ?3 END,
                     desired_level = CASE WHEN desired_level <> ?5 THEN desired_level ELSE ?4 END,
                     progress = ?6,
                     due_at = CASE WHEN desired_level <> ?5 THEN ?8 ELSE ?7 END,
                     lease_until = NULL, updated_at = ?8
                 WHERE id = ?1 AND lease_until = ?2",
            )
            .bind(u.target.to_string())
            .bind(micros(u.lease_until))
            .bind(u.state.as_str())
            .bind(u.desired_level)
            .bind(u.claimed_level)
            .bind(progress_text(&u.progress))
            .bind(u.due_at.map(micros))
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                landed.insert(u.target);
            }
        }

        let events: Vec<(&Update, &ActuationRecord)> = landed_events(updates, &landed).collect();
        for (u, e) in &events {
            sqlx::query(
                "INSERT INTO actuations (id, instance, ts, event, desired_capacity,
                        observed_capacity, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(e.id.to_string())
            .bind(u.instance.to_string())
            .bind(micros(e.at))
            .bind(e.event.as_str())
            .bind(e.desired_capacity)
            .bind(e.observed_capacity)
            .bind(&e.message)
            .execute(&mut *tx)
            .await?;
        }
        let written: HashSet<Uuid> = events.iter().map(|(_, e)| e.id).collect();
        let notices: Vec<&ActuationNotice> = notices
            .iter()
            .filter(|n| written.contains(&n.actuation))
            .collect();
        queue_actuation_events(&mut tx, &notices).await?;

        for (instance, at) in cooldowns(updates, &landed) {
            sqlx::query("UPDATE instances SET last_action_at = ?2 WHERE id = ?1")
                .bind(instance.to_string())
                .bind(micros(at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(landed.into_iter().collect())
    }

    async fn targets_of(&self, instances: &[Uuid]) -> StoreResult<Vec<ScaleTarget>> {
        let ids = serde_json::to_string(&instances.iter().map(Uuid::to_string).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into());
        let rows: Vec<TargetRow> = sqlx::query_as(concat!(
            "SELECT ",
            target_columns!("t"),
            " FROM json_each(?1) AS c JOIN scale_targets t ON t.instance = c.value"
        ))
        .bind(ids)
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
