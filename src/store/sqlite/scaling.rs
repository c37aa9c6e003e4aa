//! The scaling job's claim, its windows, and the writes of its decisions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::webhooks::queue_decision_events;
use super::{SqliteStore, decode_error, micros};
use crate::scaling::Sample;
use crate::scaling::record::{ScalingCandidate, ScalingWrites, latest_decisions};
use crate::store::row::{self, Id, ScaleRow, Time};
use crate::store::{Scaling, StoreResult};

/// A window sample: position of its instance in the batch, id, ts, cpu, memory,
/// network in and out, is_outlier.
type WindowRow = (
    i64,
    Id,
    Time,
    f64,
    Option<f64>,
    Option<i64>,
    Option<i64>,
    bool,
);

#[async_trait]
impl Scaling for SqliteStore {
    async fn claim_scaling(&self, slot: i64, limit: i64) -> StoreResult<Vec<ScalingCandidate>> {
        let rows: Vec<ScaleRow> = sqlx::query_as(
            "UPDATE instances SET scale_slot = ?1
             WHERE id IN (SELECT id FROM instances
                          WHERE is_monitoring = 1 AND scale_slot < ?1 LIMIT ?2 + 0)
             RETURNING id, instance_id, scale_level, last_action_at, last_decision, policy,
                       recommended_level, recommended_action_at",
        )
        .bind(slot)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row::scaling_candidate).collect())
    }

    async fn windows(
        &self,
        instances: &[Uuid],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Sample)>> {
        let ids: Vec<String> = instances.iter().map(Uuid::to_string).collect();
        // One index range scan per instance, outer loop over the batch; each row
        // names its instance by position in the batch rather than as text to parse.
        let rows: Vec<WindowRow> = sqlx::query_as(
            "SELECT b.key, m.id, m.ts, m.cpu_utilization, m.memory_usage, m.network_in,
                    m.network_out, m.is_outlier
             FROM json_each(?1) AS b CROSS JOIN metrics AS m
             WHERE m.instance = b.value AND m.ts > ?2 AND m.ts <= ?3",
        )
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .bind(micros(since))
        .bind(micros(until))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(position, id, ts, cpu, memory, net_in, net_out, is_outlier)| {
                    let instance = usize::try_from(position)
                        .ok()
                        .and_then(|p| instances.get(p))
                        .copied()
                        .ok_or_else(|| {
                            decode_error(format!("window row for batch position {position}"))
                        })?;
                    Ok((
                        instance,
                        Sample {
                            id: id.0,
                            timestamp: ts.0,
                            cpu,
                            memory,
                            network_in: net_in.map(|v| v as f64),
                            network_out: net_out.map(|v| v as f64),
                            is_outlier,
                        },
                    ))
                },
            )
            .collect()
    }

    async fn write_scaling(&self, writes: &ScalingWrites) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // No row locks to order here: SQLite's one writer holds the whole database
        // from this transaction's first write.
        let mut applied = std::collections::HashSet::new();
        if !writes.changes.is_empty() {
            let changes: Vec<serde_json::Value> = writes
                .changes
                .iter()
                .map(|c| {
                    json!([
                        c.instance.to_string(),
                        c.before,
                        c.after,
                        micros(c.at),
                        c.dry_run
                    ])
                })
                .collect();
            let rows: Vec<(Id,)> = sqlx::query_as(
                "UPDATE instances
                 SET scale_level = CASE WHEN u.dry THEN scale_level ELSE u.after END,
                     last_action_at = CASE WHEN u.dry THEN last_action_at ELSE u.at END,
                     recommended_level = u.after,
                     recommended_action_at = u.at
                 FROM (SELECT value->>0 AS id, value->>1 AS before, value->>2 AS after,
                              value->>3 AS at, value->>4 AS dry FROM json_each(?1)) AS u
                 WHERE instances.id = u.id
                   AND CASE WHEN u.dry THEN instances.recommended_level
                            ELSE instances.scale_level END = u.before
                 RETURNING instances.id",
            )
            .bind(serde_json::Value::Array(changes).to_string())
            .fetch_all(&mut *tx)
            .await?;
            for (id,) in rows {
                applied.insert(id.0);
            }
        }
        super::targets::move_targets(&mut tx, &writes.target_levels(&applied)).await?;
        let rest = writes.after_changes(&applied);

        if !rest.decisions.is_empty() {
            let records: Vec<serde_json::Value> = rest
                .decisions
                .iter()
                .map(|d| {
                    json!([
                        d.id.to_string(),
                        d.instance.to_string(),
                        micros(d.timestamp),
                        d.cpu_utilization,
                        d.memory_usage,
                        d.network_in,
                        d.network_out,
                        d.decision.as_str(),
                        d.reason,
                        d.level_before,
                        d.level_after,
                        d.dry_run
                    ])
                })
                .collect();
            let records = serde_json::Value::Array(records).to_string();
            sqlx::query(
                "INSERT INTO scaling_decisions (id, instance, ts, cpu_utilization, memory_usage,
                        network_in, network_out, decision, reason, level_before, level_after,
                        dry_run)
                 SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5,
                        value->>6, value->>7, value->>8, value->>9, value->>10, value->>11
                 FROM json_each(?1)
                 -- an instance deleted since the tick claimed it gets nothing written
                 WHERE EXISTS (SELECT 1 FROM instances WHERE id = value->>1)",
            )
            .bind(&records)
            .execute(&mut *tx)
            .await?;
            // webhooks: the outbox events of these decisions, in the same transaction.
            queue_decision_events(&mut tx, &rest.events).await?;
            // One input row per instance (an UPDATE ... FROM applies one joined row
            // to each target); the rows are counted by trigger.
            let latest: Vec<serde_json::Value> = latest_decisions(rest.decisions.iter().copied())
                .iter()
                .map(|l| json!([l.instance.to_string(), l.decision.as_str()]))
                .collect();
            sqlx::query(
                "UPDATE instances SET last_decision = u.d
                 FROM (SELECT value->>0 AS id, value->>1 AS d FROM json_each(?1)) AS u
                 WHERE instances.id = u.id",
            )
            .bind(serde_json::Value::Array(latest).to_string())
            .execute(&mut *tx)
            .await?;
        }

        if !rest.outliers.is_empty() {
            let flags: Vec<serde_json::Value> = rest
                .outliers
                .iter()
                .map(|f| json!([f.metric.to_string(), f.kind.as_str()]))
                .collect();
            sqlx::query(
                "UPDATE metrics SET is_outlier = 1, outlier_type = u.t
                 FROM (SELECT value->>0 AS id, value->>1 AS t FROM json_each(?1)) AS u
                 WHERE metrics.id = u.id",
            )
            .bind(serde_json::Value::Array(flags).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
