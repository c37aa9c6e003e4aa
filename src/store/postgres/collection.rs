//! The collection job's claim and what a collection records.

use async_trait::async_trait;
use uuid::Uuid;

use super::metrics::MetricColumns;
use super::{Locked, PostgresStore, add_counts};
use crate::collect::{CollectTarget, CollectionStatus};
use crate::model::{Metric, NewMetric};
use crate::store::row::{self, CollectRow};
use crate::store::{Collection, StoreResult};

/// Records each instance's collection status, with the metrics it just got (taken
/// out of `counts`).
async fn set_collection_statuses(
    tx: &mut sqlx::PgConnection,
    _: &Locked,
    statuses: &[&CollectionStatus],
    counts: &mut std::collections::HashMap<Uuid, i64>,
) -> StoreResult<()> {
    if statuses.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = statuses.iter().map(|s| s.instance).collect();
    let added: Vec<i64> = ids
        .iter()
        .map(|id| counts.remove(id).unwrap_or(0))
        .collect();
    // `i.id = ANY($1)` (here and in the other batch updates) lets the planner reach
    // the batch's rows through the primary key rather than hash-join the whole table.
    sqlx::query(
        "UPDATE instances i
         SET last_collected_at = COALESCE(u.at, i.last_collected_at),
             last_collection_error = u.err,
             metric_count = i.metric_count + u.n
         FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::int8[])
              AS u(id, at, err, n)
         WHERE i.id = u.id AND i.id = ANY($1)
           AND (u.at IS NOT NULL OR u.n <> 0
                OR i.last_collection_error IS DISTINCT FROM u.err)",
    )
    .bind(ids)
    .bind(
        statuses
            .iter()
            .map(|s| s.last_collected_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        statuses
            .iter()
            .map(|s| s.error.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(added)
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Collection for PostgresStore {
    async fn claim_collection(&self, slot: i64, limit: i64) -> StoreResult<Vec<CollectTarget>> {
        // `id = ANY(ARRAY(...))`: the UPDATE finds the locked rows by primary key
        // (`id IN (subquery)` became a semi-join over the whole table).
        let rows: Vec<CollectRow> = self
            .claim(
                claim_statements!(
                    "collect_slot",
                    "id, instance_id, region, is_mock, last_collected_at"
                ),
                |c| &mut c.collect,
                slot,
                limit,
                |r: &CollectRow| r.0.0,
            )
            .await?;
        Ok(rows.into_iter().map(row::collect_target).collect())
    }

    async fn record_collection(
        &self,
        metrics: &[NewMetric],
        statuses: &[CollectionStatus],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let mut ids: Vec<Uuid> = statuses.iter().map(|s| s.instance).collect();
        ids.extend(metrics.iter().map(|m| m.instance));
        ids.sort_unstable();
        ids.dedup();
        let locked = Locked::take(&mut tx, &ids).await?;
        let metrics: Vec<NewMetric> = metrics
            .iter()
            .filter(|m| locked.contains(m.instance))
            .cloned()
            .collect();
        let statuses: Vec<&CollectionStatus> = statuses
            .iter()
            .filter(|s| locked.contains(s.instance))
            .collect();
        let stored: Vec<Metric> = metrics.iter().map(crate::store::to_stored).collect();
        let mut counts = std::collections::HashMap::new();
        if !stored.is_empty() {
            counts.extend(
                MetricColumns::new(&stored, &metrics)
                    .insert(&mut tx)
                    .await?,
            );
        }
        set_collection_statuses(&mut tx, &locked, &statuses, &mut counts).await?;
        // Metrics of an instance without a status (not what the jobs send).
        let rest: Vec<(Uuid, i64)> = counts.into_iter().collect();
        add_counts(&mut tx, &locked, false, &rest).await?;
        tx.commit().await?;
        Ok(())
    }
}
