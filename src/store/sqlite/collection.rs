//! The collection job's claim and what a collection records.

use async_trait::async_trait;
use serde_json::json;

use super::metrics::insert_metric_rows;
use super::{SqliteStore, micros};
use crate::collect::{CollectTarget, CollectionStatus};
use crate::model::{Metric, NewMetric};
use crate::store::row::{self, CollectRow};
use crate::store::{Collection, StoreResult};

#[async_trait]
impl Collection for SqliteStore {
    async fn claim_collection(&self, slot: i64, limit: i64) -> StoreResult<Vec<CollectTarget>> {
        // A single UPDATE takes the write lock at once, so the claim never has to
        // upgrade a read lock (which SQLite answers with SQLITE_BUSY).
        let rows: Vec<CollectRow> = sqlx::query_as(
            "UPDATE instances SET collect_slot = ?1
             WHERE id IN (SELECT id FROM instances
                          WHERE is_monitoring = 1 AND collect_slot < ?1 LIMIT ?2 + 0)
             RETURNING id, instance_id, region, is_mock, last_collected_at",
        )
        .bind(slot)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row::collect_target).collect())
    }

    async fn record_collection(
        &self,
        metrics: &[NewMetric],
        statuses: &[CollectionStatus],
    ) -> StoreResult<()> {
        let stored: Vec<Metric> = metrics.iter().map(crate::store::to_stored).collect();
        let mut tx = self.pool.begin().await?;
        if !stored.is_empty() {
            insert_metric_rows(&mut tx, &stored, metrics, true).await?;
        }
        if !statuses.is_empty() {
            let rows: Vec<serde_json::Value> = statuses
                .iter()
                .map(|s| {
                    json!([
                        s.instance.to_string(),
                        s.last_collected_at.map(micros),
                        s.error
                    ])
                })
                .collect();
            sqlx::query(
                "UPDATE instances
                 SET last_collected_at = coalesce(u.at, instances.last_collected_at),
                     last_collection_error = u.err
                 FROM (SELECT value->>0 AS id, value->>1 AS at, value->>2 AS err
                       FROM json_each(?1)) AS u
                 WHERE instances.id = u.id
                   AND (u.at IS NOT NULL OR instances.last_collection_error IS NOT u.err)",
            )
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
