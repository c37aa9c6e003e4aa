//! The series read (issue 14): chart data for one instance over a span.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PostgresStore;
use crate::store::row::{SeriesDecisionRow, SeriesRow};
use crate::store::{Series, SeriesBucket, SeriesDecision, StoreResult};

#[async_trait]
impl Series for PostgresStore {
    async fn metric_series(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<SeriesBucket>> {
        // One range scan of metrics_instance_ts_idx, aggregated in the database:
        // date_bin puts each sample in the bucket of `step` seconds counted from `from`.
        let rows: Vec<SeriesRow> = sqlx::query_as(
            "SELECT date_bin(make_interval(secs => $4), ts, $2) AS start, count(*) AS samples,
                    avg(cpu_utilization) AS cpu_avg, max(cpu_utilization) AS cpu_max,
                    avg(memory_usage) AS memory_avg, max(memory_usage) AS memory_max,
                    avg(network_in)::float8 AS network_in_avg,
                    avg(network_out)::float8 AS network_out_avg
             FROM metrics WHERE instance = $1 AND ts >= $2 AND ts < $3
             GROUP BY 1 ORDER BY 1",
        )
        .bind(instance)
        .bind(from)
        .bind(to)
        .bind(step_seconds as f64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn decisions_between(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<SeriesDecision>> {
        let rows: Vec<SeriesDecisionRow> = sqlx::query_as(
            "SELECT id, ts, decision, reason, level_before, level_after FROM scaling_decisions
             WHERE instance = $1 AND ts >= $2 AND ts < $3 AND NOT dry_run
             ORDER BY ts, id",
        )
        .bind(instance)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn level_at(&self, instance: Uuid, at: DateTime<Utc>) -> StoreResult<Option<i32>> {
        let level: Option<(i32,)> = sqlx::query_as(
            "SELECT COALESCE(
                 (SELECT level_after FROM scaling_decisions WHERE instance = $1 AND ts < $2 AND NOT dry_run
                  ORDER BY ts DESC, id DESC LIMIT 1),
                 (SELECT level_before FROM scaling_decisions WHERE instance = $1 AND ts >= $2 AND NOT dry_run
                  ORDER BY ts, id LIMIT 1),
                 scale_level)
             FROM instances WHERE id = $1",
        )
        .bind(instance)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(level.map(|(l,)| l))
    }
}
