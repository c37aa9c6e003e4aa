//! Deleting what is past its retention.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SqliteStore, micros};
use crate::store::{Retention, StoreResult};

impl SqliteStore {
    /// Runs one batch `delete` (binding `before` and `batch`); the counts follow by
    /// trigger.
    async fn purge_rows(
        &self,
        delete: &'static str,
        before: DateTime<Utc>,
        batch: i64,
    ) -> StoreResult<u64> {
        let done = sqlx::query(delete)
            .bind(micros(before))
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn purge(
        &self,
        metrics_before: DateTime<Utc>,
        decisions_before: DateTime<Utc>,
        batch: i64,
    ) -> StoreResult<u64> {
        let metrics = self
            .purge_rows(
                "DELETE FROM metrics WHERE id IN (SELECT id FROM metrics WHERE ts < ?1 LIMIT ?2 + 0)",
                metrics_before,
                batch,
            )
            .await?;
        let decisions = self
            .purge_rows(
                "DELETE FROM scaling_decisions
                 WHERE id IN (SELECT id FROM scaling_decisions WHERE ts < ?1 LIMIT ?2 + 0)",
                decisions_before,
                batch,
            )
            .await?;
        // A target's history is kept as long as the decisions that drove it.
        let actuations = sqlx::query(
            "DELETE FROM actuations WHERE id IN (SELECT id FROM actuations WHERE ts < ?1 LIMIT ?2 + 0)",
        )
        .bind(micros(decisions_before))
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(metrics + decisions + actuations)
    }

    async fn purge_login_failures(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE window_start < ?1")
            .bind(micros(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
