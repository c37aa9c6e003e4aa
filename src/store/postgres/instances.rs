//! Instances: registration, monitoring, policy and deletion.

use async_trait::async_trait;
use uuid::Uuid;

use super::PostgresStore;
use crate::model::Instance;
use crate::policy::PolicyPatch;
use crate::store::row::InstanceRow;
use crate::store::{Deletion, InstanceCounts, Instances, NewInstance, StoreResult};

#[async_trait]
impl Instances for PostgresStore {
    async fn instance_counts(&self, user: Uuid) -> StoreResult<InstanceCounts> {
        let (instances, monitoring): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE is_monitoring) FROM instances WHERE user_id = $1",
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await?;
        Ok(InstanceCounts {
            instances,
            monitoring,
        })
    }

    async fn create_instance(&self, new: &NewInstance) -> StoreResult<Instance> {
        let row: InstanceRow = sqlx::query_as(concat!(
            "INSERT INTO instances (id, user_id, instance_id, instance_type, region, is_mock)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            instance_columns!()
        ))
        .bind(Uuid::new_v4())
        .bind(new.user_id)
        .bind(&new.instance_id)
        .bind(&new.instance_type)
        .bind(&new.region)
        .bind(new.is_mock)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn instances_of(&self, user: Uuid) -> StoreResult<Vec<Instance>> {
        let rows: Vec<InstanceRow> = sqlx::query_as(concat!(
            "SELECT ",
            instance_columns!(),
            " FROM instances WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn instance_by_instance_id(&self, instance_id: &str) -> StoreResult<Option<Instance>> {
        let row: Option<InstanceRow> = sqlx::query_as(concat!(
            "SELECT ",
            instance_columns!(),
            " FROM instances WHERE instance_id = $1"
        ))
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn set_monitoring(&self, id: Uuid, on: bool) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE instances SET is_monitoring = $2 WHERE id = $1 AND is_monitoring <> $2",
        )
        .bind(id)
        .bind(on)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_policy(
        &self,
        id: Uuid,
        policy: Option<&PolicyPatch>,
        reset_shadow: bool,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE instances SET policy = $2,
                 recommended_level = CASE WHEN $3 THEN scale_level ELSE recommended_level END,
                 recommended_action_at = CASE WHEN $3 THEN last_action_at
                                              ELSE recommended_action_at END
             WHERE id = $1",
        )
        .bind(id)
        .bind(crate::store::encode_policy(policy))
        .bind(reset_shadow)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_instance(&self, id: Uuid) -> StoreResult<Deletion> {
        // Metrics and decisions go by ON DELETE CASCADE, in the same statement.
        let done = sqlx::query("DELETE FROM instances WHERE id = $1 AND NOT is_monitoring")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(Deletion::Deleted);
        }
        let monitoring: Option<(bool,)> =
            sqlx::query_as("SELECT is_monitoring FROM instances WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match monitoring {
            Some(_) => Deletion::Monitoring,
            None => Deletion::NotFound,
        })
    }
}
