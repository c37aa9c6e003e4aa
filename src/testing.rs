//! Support for tests and benchmarks; the service itself never uses it. A scratch
//! database of either kind, created empty and removed afterwards, so that every
//! test and every benchmark run starts from nothing, whatever an earlier run left
//! in the server's other databases.
//!
//! The statements here administer databases (`CREATE` / `DROP DATABASE`,
//! `VACUUM`); the service's own data is read and written only through `store`.

use std::path::PathBuf;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

/// A database that lives for one test or benchmark run. Dropping it removes the
/// database (PostgreSQL: `DROP DATABASE … WITH (FORCE)`; SQLite: its directory)
/// unless [`ScratchDatabase::keep`] was called.
#[derive(Debug)]
pub struct ScratchDatabase {
    url: String,
    place: Place,
}

#[derive(Debug)]
enum Place {
    /// The directory the SQLite file lives in, ours alone.
    Sqlite(PathBuf),
    Postgres {
        server_url: String,
        name: String,
    },
    /// Kept, or already removed.
    Left,
}

impl ScratchDatabase {
    /// A SQLite file in a new directory under the system's temporary directory;
    /// the file itself appears when the store first opens the URL.
    pub fn sqlite(prefix: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir(&dir)?;
        Ok(ScratchDatabase {
            url: format!("sqlite://{}/{prefix}.db", dir.display()),
            place: Place::Sqlite(dir),
        })
    }

    /// Creates the database `<prefix>_<32 hex digits>` on the PostgreSQL server of
    /// `server_url`, connecting to the database that URL names. The new database's
    /// URL is `server_url` with the database name replaced and any query
    /// (`?sslmode=…`) kept.
    pub async fn postgres(server_url: &str, prefix: &str) -> Result<Self, sqlx::Error> {
        let name = format!("{prefix}_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(server_url).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(ScratchDatabase {
            url: with_database(server_url, &name),
            place: Place::Postgres {
                server_url: server_url.to_owned(),
                name,
            },
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Leaves the database in place (say, to run `EXPLAIN ANALYZE` on it) and
    /// returns its URL.
    pub fn keep(mut self) -> String {
        self.place = Place::Left;
        std::mem::take(&mut self.url)
    }

    /// Removes the database now, reporting a failure that dropping would ignore.
    pub async fn remove(mut self) -> anyhow::Result<()> {
        match std::mem::replace(&mut self.place, Place::Left) {
            Place::Sqlite(dir) => std::fs::remove_dir_all(dir)?,
            Place::Postgres { server_url, name } => drop_postgres(&server_url, &name).await?,
            Place::Left => {}
        }
        Ok(())
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.place, Place::Left) {
            Place::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Place::Postgres { server_url, name } => {
                // Drop may run inside a runtime, which must not be blocked on: drop
                // the database from a thread of its own with a throwaway runtime.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime
                        .block_on(drop_postgres(&server_url, &name))
                        .map_err(std::io::Error::other)
                })
                .join();
            }
            Place::Left => {}
        }
    }
}

async fn drop_postgres(server_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(server_url).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await
}

/// `url` naming the database `name` on the same server, with the same query.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    format!("{server}/{name}{query}")
}

/// What autovacuum does to a live PostgreSQL database after a bulk load: without
/// statistics the planner guesses. A benchmark that seeds a fleet runs it before
/// timing, since the server here runs with autovacuum off.
pub async fn vacuum_analyze(postgres_url: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(postgres_url).await?;
    sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
    conn.close().await
}

/// Reads only the tests use, composed from the production reads: the newest rows
/// of an instance without paging. `use autoscaler::testing::TestReads` brings them
/// to any store (`app.store.recent_metrics(...)`).
#[async_trait::async_trait]
pub trait TestReads: crate::store::Metrics {
    /// The newest `limit` metrics of an instance, newest first.
    async fn recent_metrics(
        &self,
        instance: Uuid,
        limit: i64,
    ) -> crate::store::StoreResult<Vec<crate::model::Metric>> {
        let page = crate::store::PageRequest { limit, offset: 0 };
        Ok(self.metrics_page(instance, page).await?.items)
    }

    /// The newest `limit` metrics of the instance with user-facing id `instance_id`
    /// if `user` owns it, newest first, in one round trip. `None` when `user` no
    /// longer exists; empty both when the instance has no metrics and when it is not
    /// theirs or does not exist.
    async fn recent_metrics_owned(
        &self,
        user: Uuid,
        instance_id: &str,
        limit: i64,
    ) -> crate::store::StoreResult<Option<Vec<crate::model::Metric>>> {
        use crate::store::Owned;
        let page = crate::store::PageRequest { limit, offset: 0 };
        Ok(
            match self.metrics_page_owned(user, instance_id, page).await? {
                Owned::Found(page) => Some(page.items),
                Owned::NotOwned => Some(Vec::new()),
                Owned::UserGone => None,
            },
        )
    }

    /// The newest `limit` decisions of an instance, newest first.
    async fn recent_decisions(
        &self,
        instance: Uuid,
        limit: i64,
    ) -> crate::store::StoreResult<Vec<crate::model::DecisionRecord>> {
        let page = crate::store::PageRequest { limit, offset: 0 };
        Ok(self.decisions_page(instance, page).await?.items)
    }
}

impl<T: crate::store::Metrics + ?Sized> TestReads for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_database_is_named_on_the_same_server_with_the_same_query() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/test", "x_1"),
            "postgres://u@127.0.0.1:5432/x_1"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x_1"),
            "postgres://u@h/x_1?sslmode=disable"
        );
    }

    #[test]
    fn a_scratch_sqlite_directory_goes_when_dropped_and_stays_when_kept() {
        let db = ScratchDatabase::sqlite("scratch-test").unwrap();
        let dir = match &db.place {
            Place::Sqlite(dir) => dir.clone(),
            _ => unreachable!(),
        };
        assert!(db.url().starts_with("sqlite://") && dir.is_dir());
        drop(db);
        assert!(!dir.exists());

        let db = ScratchDatabase::sqlite("scratch-test").unwrap();
        let url = db.keep();
        let path = url.trim_start_matches("sqlite://");
        let dir = std::path::Path::new(path).parent().unwrap().to_owned();
        assert!(dir.is_dir());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
