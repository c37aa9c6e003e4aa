//! PostgreSQL store: native types, set-based statements over UNNEST'ed arrays, and
//! `FOR UPDATE SKIP LOCKED` claims so replicas share each tick's work. One file per
//! aggregate, named as its SQLite counterpart is; this one holds the connection,
//! the claim cursor and the lock-order rule ([`Locked`]) the other files share.
//!
//! **Counts.** An instance's `metric_count` and `decision_count` (every page's
//! `total`) are updated explicitly, in the transaction of the write that changes
//! them, by what its statements report they wrote or deleted (`RETURNING instance`),
//! summed per instance before the `UPDATE ... FROM`: such an update applies one
//! input row per target, so a per-row `+ 1` would count two rows of one instance
//! once. Explicit rather than by trigger: a row trigger would update an instance
//! once per row written (a new row version each time) and lock the instances in
//! the insert's order, where the batch writes lock them in key order first
//! ([`Locked`]). The writes that do it:
//! `insert_metrics`, `replace_metrics`, `record_collection`, `write_scaling`,
//! `purge`; deleting an instance takes its counts with it.

/// The statements of a claim (see `PostgresStore::claim`) of the monitored
/// instances whose `$slot` column is behind the slot `$1`: the UPDATE that takes up
/// to `$2` of them, from id `$3` on, returning `$returning`, and the check whether
/// any is still due. A macro because sqlx takes only `&'static str` SQL.
macro_rules! claim_statements {
    ($slot:literal, $returning:literal) => {
        (
            concat!(
                "UPDATE instances SET ",
                $slot,
                " = $1
                 WHERE id = ANY(ARRAY(SELECT id FROM instances
                                      WHERE id >= $3 AND is_monitoring AND ",
                $slot,
                " < $1
                                      ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))
                 RETURNING ",
                $returning
            ),
            concat!(
                "SELECT EXISTS (SELECT 1 FROM instances WHERE is_monitoring AND ",
                $slot,
                " < $1)"
            ),
        )
    };
}

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
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};
use uuid::Uuid;

use super::{Health, PoolConnections, PoolSettings, StoreResult};
use crate::scaling::Sample;

/// The store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    cursors: Arc<Mutex<Cursors>>,
}

/// How far this process's claims got through one tick, per job. Claims walk the
/// primary key from there, so a tick reads each row about once instead of
/// re-reading every row it already claimed in every batch. The slots are not
/// indexed (an index on a column each claim bumps rules out HOT updates), so
/// this walk is what keeps a claim's cost proportional to its batch.
#[derive(Debug, Default)]
struct Cursors {
    collect: ClaimCursor,
    scale: ClaimCursor,
}

/// How long an empty claim keeps waiting for due rows that are locked by someone
/// else (a replica that dies mid-claim releases its locks when its connection goes).
const CLAIM_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The `instances` rows of one transaction's batch writes, locked in primary-key
/// order. Each batch UPDATE otherwise locks its rows in the order of its plan (a
/// hash join goes in physical order, an index scan in key order), so the collection
/// and scaling jobs, which write the same instances at the same moments, could each
/// hold rows the other was waiting for: PostgreSQL then aborts one of them as a
/// deadlock. Taken in one order, the locks can only queue. `FOR NO KEY UPDATE` is
/// the lock the UPDATE itself takes, so it doesn't block the foreign-key checks of
/// concurrent metric inserts.
///
/// Every batch UPDATE of `instances` below takes a `&Locked`, which only
/// [`Locked::take`] makes: the rule holds by construction. Writes that also touch
/// an instance's metrics or decisions take it first, as deletion does, so the two
/// always queue in the same order.
struct Locked {
    /// The ids that still exist: an instance deleted after a tick claimed it is left
    /// out of the tick's writes (its rows would fail their foreign key), and one
    /// locked here cannot be deleted until the transaction ends.
    live: std::collections::HashSet<Uuid>,
}

impl Locked {
    /// Locks `ids` (nothing to lock, no statement).
    async fn take(tx: &mut sqlx::PgConnection, ids: &[Uuid]) -> StoreResult<Self> {
        if ids.is_empty() {
            return Ok(Locked {
                live: Default::default(),
            });
        }
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM instances WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(ids)
        .fetch_all(tx)
        .await?;
        Ok(Locked {
            live: rows.into_iter().map(|(id,)| id).collect(),
        })
    }

    fn contains(&self, id: Uuid) -> bool {
        self.live.contains(&id)
    }
}

/// Adds `delta` to the `metric_count` (or with `decisions`, `decision_count`) of
/// each instance.
async fn add_counts(
    tx: &mut sqlx::PgConnection,
    _: &Locked,
    decisions: bool,
    counts: &[(Uuid, i64)],
) -> StoreResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let (ids, deltas): (Vec<Uuid>, Vec<i64>) = counts.iter().copied().unzip();
    let sql = if decisions {
        "UPDATE instances i SET decision_count = i.decision_count + u.n
         FROM UNNEST($1::uuid[], $2::int8[]) AS u(id, n) WHERE i.id = u.id AND i.id = ANY($1)"
    } else {
        "UPDATE instances i SET metric_count = i.metric_count + u.n
         FROM UNNEST($1::uuid[], $2::int8[]) AS u(id, n) WHERE i.id = u.id AND i.id = ANY($1)"
    };
    sqlx::query(sql).bind(ids).bind(deltas).execute(tx).await?;
    Ok(())
}

/// How many of `instances` each instance has.
fn tally(instances: impl IntoIterator<Item = Uuid>) -> Vec<(Uuid, i64)> {
    let mut counts = std::collections::HashMap::<Uuid, i64>::new();
    for id in instances {
        *counts.entry(id).or_default() += 1;
    }
    counts.into_iter().collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct ClaimCursor {
    slot: i64,
    /// The claims of `slot` continue at ids from this one on.
    from: Uuid,
}

impl PostgresStore {
    /// Connects and applies the migrations in `migrations/postgres`.
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(connect_options(url)?)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore {
            pool,
            cursors: Arc::default(),
        })
    }

    /// Runs a claim statement (`$1` slot, `$2` limit, `$3` the lowest id to take;
    /// see `claim_statements!`) from this process's cursor for `slot`. When nothing
    /// is left past the cursor it looks once more from the lowest id, for rows that
    /// other replicas held locked when it passed them and then released unclaimed
    /// (or that appeared behind it), so a claim comes back empty only when no row is
    /// left to claim.
    async fn claim<R>(
        &self,
        (sql, due_sql): (&'static str, &'static str),
        job: fn(&mut Cursors) -> &mut ClaimCursor,
        slot: i64,
        limit: i64,
        id: fn(&R) -> Uuid,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let cursor = *job(&mut self.cursors.lock().expect("claim cursors"));
        let from = if cursor.slot == slot {
            cursor.from
        } else {
            Uuid::nil()
        };
        let run = |from: Uuid| {
            sqlx::query_as::<_, R>(sql)
                .bind(slot)
                .bind(limit)
                .bind(from)
                .fetch_all(&self.pool)
        };
        let mut rows = run(from).await?;
        if rows.is_empty() && !from.is_nil() {
            rows = run(Uuid::nil()).await?;
        }
        // SKIP LOCKED also skips rows that are locked for a moment by something other
        // than a competing claim: the other job's claim (both jobs fire together every
        // 30 s) or a batch write. Those rows are still due once the lock goes, so an
        // empty claim waits a little while any remain, rather than dropping them for
        // the whole tick.
        let deadline = std::time::Instant::now() + CLAIM_PATIENCE;
        while rows.is_empty() && std::time::Instant::now() < deadline {
            let (due,): (bool,) = sqlx::query_as(due_sql)
                .bind(slot)
                .fetch_one(&self.pool)
                .await?;
            if !due {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            rows = run(Uuid::nil()).await?;
        }
        let next = rows.iter().map(id).max().map_or(Uuid::nil(), |last| {
            Uuid::from_u128(last.as_u128().saturating_add(1))
        });
        *job(&mut self.cursors.lock().expect("claim cursors")) = ClaimCursor { slot, from: next };
        Ok(rows)
    }
}

/// Connection options for `url`. A server on this host is reached without TLS unless
/// the URL asks for it (`sslmode=...`): encryption buys nothing on loopback, and
/// sqlx 0.9.0 does not set TCP_NODELAY, so over TLS every statement larger than one
/// TLS record waits ~40 ms for a delayed ACK (launchbadge/sqlx#4335).
fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)?;
    let host = options.get_host();
    let loopback = host == "localhost"
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(if loopback && !url.contains("sslmode=") {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

#[derive(sqlx::FromRow)]
struct WindowRow {
    instance: Uuid,
    id: Uuid,
    ts: DateTime<Utc>,
    cpu_utilization: f64,
    memory_usage: Option<f64>,
    network_in: Option<i64>,
    network_out: Option<i64>,
    is_outlier: bool,
}

impl WindowRow {
    fn sample(self) -> Sample {
        Sample {
            id: self.id,
            timestamp: self.ts,
            cpu: self.cpu_utilization,
            memory: self.memory_usage,
            network_in: self.network_in.map(|v| v as f64),
            network_out: self.network_out.map(|v| v as f64),
            is_outlier: self.is_outlier,
        }
    }
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_connections(&self) -> PoolConnections {
        PoolConnections::of(&self.pool)
    }

    async fn monitored_instances(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM instances WHERE is_monitoring")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> String {
        format!("{:?}", connect_options(url).unwrap().get_ssl_mode())
    }

    #[test]
    fn loopback_servers_skip_tls_unless_asked() {
        assert_eq!(mode("postgres://u@127.0.0.1:5432/db"), "Disable");
        assert_eq!(mode("postgres://u@localhost/db"), "Disable");
        assert_eq!(mode("postgres://u@127.0.0.1/db?sslmode=require"), "Require");
        assert_eq!(mode("postgres://u@db.example.com/db"), "Prefer");
    }
}
