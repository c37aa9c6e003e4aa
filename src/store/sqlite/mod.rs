//! SQLite store, the zero-setup default. WAL mode and a busy timeout let the jobs
//! and concurrent requests share one file without "database is locked". Batches
//! travel as one JSON array bound to a single statement and unpacked by `json_each`,
//! the SQLite counterpart of PostgreSQL's UNNEST. One file per aggregate, named as
//! its PostgreSQL counterpart is; this one holds the connection and the helpers the
//! other files share.
//!
//! **Counts.** An instance's `metric_count` and `decision_count` (every page's
//! `total`) are kept by triggers, one update per row inserted or deleted, cascades
//! included (`migrations/sqlite/20261202000001_counts_and_login_failures.sql`):
//! no statement here writes them. SQLite's single writer makes lock order moot, and
//! a trigger runs inside the statement, so the write lock is not held again.
//!
//! Every `LIMIT` takes `?N + 0` rather than a bare `?N`. SQLite plans a bare
//! parameter's LIMIT with its bound value, marking the statement to be prepared
//! again whenever that parameter is rebound, so a cached statement would be parsed
//! anew on every run; an expression keeps the cached plan.

mod collection;
mod instances;
mod logins;
mod metrics;
mod retention;
mod scaling;
mod series;
mod targets;
mod users;
mod webhooks;

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use super::{Health, PoolConnections, PoolSettings, StoreError, StoreResult};

/// The store on a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies `migrations/sqlite`.
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true)
            // The worker thread hands rows over a channel; 50 (the default) makes
            // it and the caller take turns every 50 rows of a 10,000-row window.
            .row_buffer_size(1024)
            // Reads map the file instead of copying each page through a pread into
            // every connection's own 2 MB cache: a week's series touches ~5,000
            // pages, and those copies were half its time (in the kernel).
            .pragma("mmap_size", "268435456");
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(decode_error)
}

fn decode_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Other(sqlx::Error::Decode(e.into()))
}

fn convert<R, T: From<R>>(rows: Vec<R>) -> Vec<T> {
    rows.into_iter().map(T::from).collect()
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_connections(&self) -> PoolConnections {
        PoolConnections::of(&self.pool)
    }

    async fn monitored_instances(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM instances WHERE is_monitoring = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    /// The rule at the top of this file, checked over the text of every file of
    /// this backend: no statement ends a `LIMIT` or `OFFSET` at a bare parameter.
    #[test]
    fn every_limit_is_an_expression() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("collection.rs"),
            include_str!("instances.rs"),
            include_str!("logins.rs"),
            include_str!("metrics.rs"),
            include_str!("retention.rs"),
            include_str!("scaling.rs"),
            include_str!("series.rs"),
            include_str!("targets.rs"),
            include_str!("users.rs"),
            include_str!("webhooks.rs"),
        ];
        for source in sources {
            for clause in ["LIMIT ?", "OFFSET ?"] {
                for (at, _) in source.match_indices(clause) {
                    let rest = &source[at + clause.len()..];
                    let digits = rest.chars().take_while(char::is_ascii_digit).count();
                    if digits == 0 {
                        continue; // this test's own strings
                    }
                    assert!(
                        rest[digits..].starts_with(" + 0"),
                        "a bare parameter after {clause:?} at byte {at}: write `?N + 0`"
                    );
                }
            }
        }
    }
}
