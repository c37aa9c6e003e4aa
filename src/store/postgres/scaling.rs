//! The scaling job's claim, its windows, and the writes of its decisions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::webhooks::queue_decision_events;
use super::{Locked, PostgresStore, WindowRow};
use crate::model::DecisionRecord;
use crate::scaling::Sample;
use crate::scaling::record::{
    LatestDecision, LevelChange, ScalingCandidate, ScalingWrites, latest_decisions,
};
use crate::store::row::{self, ScaleRow};
use crate::store::{Scaling, StoreResult};

/// Applies level changes where the level they were decided at still holds; returns
/// the instances whose change took effect.
async fn change_levels(
    tx: &mut sqlx::PgConnection,
    _: &Locked,
    changes: &[LevelChange],
) -> StoreResult<std::collections::HashSet<Uuid>> {
    if changes.is_empty() {
        return Ok(Default::default());
    }
    let c = changes;
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "UPDATE instances i
         SET scale_level = CASE WHEN u.dry THEN i.scale_level ELSE u.after END,
             last_action_at = CASE WHEN u.dry THEN i.last_action_at ELSE u.at END,
             recommended_level = u.after,
             recommended_action_at = u.at
         FROM UNNEST($1::uuid[], $2::int4[], $3::int4[], $4::timestamptz[], $5::bool[])
              AS u(id, before, after, at, dry)
         WHERE i.id = u.id AND i.id = ANY($1)
           AND CASE WHEN u.dry THEN i.recommended_level ELSE i.scale_level END = u.before
         RETURNING i.id",
    )
    .bind(c.iter().map(|c| c.instance).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.before).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.after).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.at).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.dry_run).collect::<Vec<_>>())
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Records each instance's newest decision and counts its rows: one row of the
/// UPDATE's input per instance, since an `UPDATE ... FROM` applies only one joined
/// row to each target (two decisions for one instance would count once).
async fn set_latest_decisions(
    tx: &mut sqlx::PgConnection,
    _: &Locked,
    latest: &[LatestDecision],
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE instances i SET last_decision = u.d, decision_count = i.decision_count + u.n
         FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) AS u(id, d, n)
         WHERE i.id = u.id AND i.id = ANY($1)",
    )
    .bind(latest.iter().map(|l| l.instance).collect::<Vec<_>>())
    .bind(
        latest
            .iter()
            .map(|l| l.decision.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(latest.iter().map(|l| l.rows).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Scaling for PostgresStore {
    async fn claim_scaling(&self, slot: i64, limit: i64) -> StoreResult<Vec<ScalingCandidate>> {
        let rows: Vec<ScaleRow> = self
            .claim(
                claim_statements!(
                    "scale_slot",
                    "id, instance_id, scale_level, last_action_at, last_decision, policy,
                     recommended_level, recommended_action_at"
                ),
                |c| &mut c.scale,
                slot,
                limit,
                |r: &ScaleRow| r.0.0,
            )
            .await?;
        Ok(rows.into_iter().map(row::scaling_candidate).collect())
    }

    async fn windows(
        &self,
        instances: &[Uuid],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Sample)>> {
        // One index range scan per instance (OFFSET 0 keeps the planner from
        // flattening the subquery): with `instance = ANY($1)` it may instead read
        // every instance's recent metrics through metrics_ts_idx for each batch.
        let rows: Vec<WindowRow> = sqlx::query_as(
            "SELECT m.instance, m.id, m.ts, m.cpu_utilization, m.memory_usage, m.network_in,
                    m.network_out, m.is_outlier
             FROM UNNEST($1::uuid[]) AS u(id)
             CROSS JOIN LATERAL (SELECT * FROM metrics
                                 WHERE instance = u.id AND ts > $2 AND ts <= $3
                                 OFFSET 0) AS m",
        )
        .bind(instances)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.instance, r.sample())).collect())
    }

    async fn write_scaling(&self, writes: &ScalingWrites) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let locked = Locked::take(&mut tx, &writes.instances()).await?;
        let applied = change_levels(&mut tx, &locked, &writes.changes).await?;
        super::targets::move_targets(&mut tx, &locked, &writes.target_levels(&applied)).await?;
        let rest = writes.after_changes(&applied);

        let records: Vec<&DecisionRecord> = rest
            .decisions
            .into_iter()
            .filter(|d| locked.contains(d.instance))
            .collect();
        if !records.is_empty() {
            let ids: Vec<Uuid> = records.iter().map(|d| d.id).collect();
            let instances: Vec<Uuid> = records.iter().map(|d| d.instance).collect();
            let decisions: Vec<&str> = records.iter().map(|d| d.decision.as_str()).collect();
            sqlx::query(
                "INSERT INTO scaling_decisions (id, instance, ts, cpu_utilization, memory_usage,
                        network_in, network_out, decision, reason, level_before, level_after,
                        dry_run)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::float8[],
                        $5::float8[], $6::int8[], $7::int8[], $8::text[], $9::text[], $10::int4[],
                        $11::int4[], $12::bool[])",
            )
            .bind(&ids)
            .bind(&instances)
            .bind(records.iter().map(|d| d.timestamp).collect::<Vec<_>>())
            .bind(
                records
                    .iter()
                    .map(|d| d.cpu_utilization)
                    .collect::<Vec<_>>(),
            )
            .bind(records.iter().map(|d| d.memory_usage).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.network_in).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.network_out).collect::<Vec<_>>())
            .bind(&decisions)
            .bind(
                records
                    .iter()
                    .map(|d| d.reason.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(records.iter().map(|d| d.level_before).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.level_after).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.dry_run).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            // webhooks: the outbox events of these decisions, in the same transaction.
            let events: Vec<_> = rest
                .events
                .iter()
                .copied()
                .filter(|e| locked.contains(e.instance))
                .collect();
            queue_decision_events(&mut tx, &events).await?;
            let latest = latest_decisions(records.iter().copied());
            set_latest_decisions(&mut tx, &locked, &latest).await?;
        }

        if !rest.outliers.is_empty() {
            let flags = &rest.outliers;
            sqlx::query(
                "UPDATE metrics m SET is_outlier = true, outlier_type = u.t
                 FROM UNNEST($1::uuid[], $2::text[]) AS u(id, t)
                 WHERE m.id = u.id AND m.id = ANY($1)",
            )
            .bind(flags.iter().map(|f| f.metric).collect::<Vec<_>>())
            .bind(flags.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
