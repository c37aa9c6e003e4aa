//! Failed-login counters.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SqliteStore, micros};
use crate::store::row::Time;
use crate::store::{LoginFailures, Logins, StoreResult};

#[async_trait]
impl Logins for SqliteStore {
    async fn login_failures(&self, keys: &[String]) -> StoreResult<Vec<LoginFailures>> {
        let rows: Vec<(String, i64, Time)> = sqlx::query_as(
            "SELECT key, failures, window_start FROM login_failures
             WHERE key IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(keys).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(key, failures, start)| LoginFailures {
                key,
                failures,
                window_start: start.0,
            })
            .collect())
    }

    async fn record_login_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO login_failures (key, failures, window_start)
             SELECT value, 1, ?2 FROM json_each(?1) WHERE true
             ON CONFLICT (key) DO UPDATE SET
                 failures = CASE WHEN window_start <= ?3 THEN 1 ELSE failures + 1 END,
                 window_start = CASE WHEN window_start <= ?3 THEN ?2 ELSE window_start END",
        )
        .bind(serde_json::to_string(keys).unwrap_or_default())
        .bind(micros(now))
        .bind(micros(expired_before))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = ?1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
