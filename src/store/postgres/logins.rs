//! Failed-login counters.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{LoginFailures, Logins, StoreResult};

#[async_trait]
impl Logins for PostgresStore {
    async fn login_failures(&self, keys: &[String]) -> StoreResult<Vec<LoginFailures>> {
        let rows: Vec<(String, i32, DateTime<Utc>)> = sqlx::query_as(
            "SELECT key, failures, window_start FROM login_failures WHERE key = ANY($1)",
        )
        .bind(keys)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(key, failures, window_start)| LoginFailures {
                key,
                failures: failures.into(),
                window_start,
            })
            .collect())
    }

    async fn record_login_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<()> {
        // Sorted so that two logins counting the same keys lock them in one order.
        let mut keys = keys.to_vec();
        keys.sort();
        sqlx::query(
            "INSERT INTO login_failures (key, failures, window_start)
             SELECT k, 1, $2 FROM UNNEST($1::text[]) AS k
             ON CONFLICT (key) DO UPDATE SET
                 failures = CASE WHEN login_failures.window_start <= $3 THEN 1
                                 ELSE login_failures.failures + 1 END,
                 window_start = CASE WHEN login_failures.window_start <= $3 THEN $2
                                     ELSE login_failures.window_start END",
        )
        .bind(keys)
        .bind(now)
        .bind(expired_before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
