//! Deleting what is past its retention.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Locked, PostgresStore, add_counts, tally};
use crate::store::{Retention, StoreResult};

impl PostgresStore {
    /// Deletes one batch of old rows chosen by `select` (id, instance) and takes them
    /// off their instances' counts, in one transaction. The instances are locked
    /// first, as every write that touches both does (see [`Locked`]).
    async fn purge_rows(
        &self,
        select: &'static str,
        delete: &'static str,
        decisions: bool,
        before: DateTime<Utc>,
        batch: i64,
    ) -> StoreResult<u64> {
        let doomed: Vec<(Uuid, Uuid)> = sqlx::query_as(select)
            .bind(before)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
        if doomed.is_empty() {
            return Ok(0);
        }
        let (ids, mut instances): (Vec<Uuid>, Vec<Uuid>) = doomed.into_iter().unzip();
        instances.sort_unstable();
        instances.dedup();
        let mut tx = self.pool.begin().await?;
        let locked = Locked::take(&mut tx, &instances).await?;
        let gone: Vec<(Uuid,)> = sqlx::query_as(delete).bind(ids).fetch_all(&mut *tx).await?;
        let deleted = gone.len() as u64;
        let counts: Vec<(Uuid, i64)> = tally(gone.into_iter().map(|(id,)| id))
            .into_iter()
            .map(|(id, n)| (id, -n))
            .collect();
        add_counts(&mut tx, &locked, decisions, &counts).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

#[async_trait]
impl Retention for PostgresStore {
    async fn purge(
        &self,
        metrics_before: DateTime<Utc>,
        decisions_before: DateTime<Utc>,
        batch: i64,
    ) -> StoreResult<u64> {
        let metrics = self
            .purge_rows(
                "SELECT id, instance FROM metrics WHERE ts < $1 LIMIT $2",
                "DELETE FROM metrics WHERE id = ANY($1) RETURNING instance",
                false,
                metrics_before,
                batch,
            )
            .await?;
        let decisions = self
            .purge_rows(
                "SELECT id, instance FROM scaling_decisions WHERE ts < $1 LIMIT $2",
                "DELETE FROM scaling_decisions WHERE id = ANY($1) RETURNING instance",
                true,
                decisions_before,
                batch,
            )
            .await?;
        // A target's history is kept as long as the decisions that drove it.
        let actuations = sqlx::query(
            "DELETE FROM actuations WHERE id IN (SELECT id FROM actuations WHERE ts < $1 LIMIT $2)",
        )
        .bind(decisions_before)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(metrics + decisions + actuations)
    }

    async fn purge_login_failures(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE window_start < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
