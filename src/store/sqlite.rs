//! SQLite store, the zero-setup default. WAL mode and a busy timeout let the jobs
//! and concurrent requests share one file without "database is locked". Batches
//! travel as one JSON array bound to a single statement and unpacked by `json_each`,
//! the SQLite counterpart of PostgreSQL's UNNEST.
//!
//! Every `LIMIT` takes `?N + 0` rather than a bare `?N`. SQLite plans a bare
//! parameter's LIMIT with its bound value, marking the statement to be prepared
//! again whenever that parameter is rebound, so a cached statement would be parsed
//! anew on every run; an expression keeps the cached plan.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use super::row::{
    self, CollectRow, DecisionRow, DeliveryRow, DueRow, Id, InstanceRow, MetricRow, ScaleRow,
    SeriesDecisionRow, SeriesRow, Time, UserRow, WebhookRow,
};
use super::{
    CollectionStatus, Deletion, InstanceCounts, LoginFailures, NewInstance, Owned, Page,
    PageRequest, PoolConnections, PoolSettings, ScalingCandidate, Store, StoreError, StoreResult,
};
use crate::collect::CollectTarget;
use crate::model::{
    DecisionRecord, DeliveryAttempt, DueEvent, Instance, Metric, NewMetric, NewWebhook, User,
    Webhook, WebhookDelivery,
};
use crate::scaling::record::ScalingWrites;
use crate::scaling::{PolicyPatch, Sample};

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

/// SQL for a real column as the packed metrics read sends it: NULL stays NULL; a
/// value that is a whole multiple of 2^-56 and below 2^7 in magnitude (zero, and
/// every double from 2^-4 up: any percentage but the tiniest) as the exact
/// integer `value * 2^56`; anything else as 17-digit text, which parses back to the
/// same bits. SQLite's own rendering of reals (JSON's keeps 15 digits, `printf`
/// keeps 17) was the costliest part of this read; scaling by a power of two and
/// truncating is exact and cheap. [`PackedReal`] reads it back. Figures:
/// BENCHMARKS.md, "The metrics read, third pass".
macro_rules! packed_real {
    ($column:literal) => {
        concat!(
            "CASE WHEN ",
            $column,
            " IS NULL THEN NULL",
            " WHEN ",
            $column,
            " * 72057594037927936.0",
            " = CAST(",
            $column,
            " * 72057594037927936.0 AS INTEGER)",
            " THEN CAST(",
            $column,
            " * 72057594037927936.0 AS INTEGER)",
            " ELSE printf('%!.17g', ",
            $column,
            ") END"
        )
    };
}

/// A real from [`packed_real!`]: the value scaled by 2^56, or its 17-digit text.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum PackedReal {
    Scaled(i64),
    Text(String),
}

impl PackedReal {
    /// 2^56, the scale of [`PackedReal::Scaled`].
    const SCALE: f64 = (1u64 << 56) as f64;

    fn value(self) -> StoreResult<f64> {
        match self {
            // Exact both ways: the integer came from a double, so it has at most 53
            // significant bits, and dividing by a power of two only moves the exponent.
            PackedReal::Scaled(n) => Ok(n as f64 / Self::SCALE),
            PackedReal::Text(text) => text.parse().map_err(decode_error),
        }
    }
}

/// A metric row as `recent_metrics_owned` packs it into JSON: its columns in
/// `metric_columns!` order, the reals as [`PackedReal`]s.
type PackedMetric = (
    String,
    String,
    i64,
    PackedReal,
    Option<PackedReal>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
);

impl TryFrom<PackedMetric> for MetricRow {
    type Error = StoreError;
    fn try_from(p: PackedMetric) -> StoreResult<Self> {
        let (id, instance, ts, cpu, memory, network_in, network_out, outlier, outlier_type) = p;
        Ok(MetricRow {
            id: Id(uuid(&id)?),
            instance: Id(uuid(&instance)?),
            ts: Time(DateTime::from_timestamp_micros(ts).ok_or_else(|| decode_error("time"))?),
            cpu_utilization: cpu.value()?,
            memory_usage: memory.map(PackedReal::value).transpose()?,
            network_in,
            network_out,
            is_outlier: outlier != 0,
            outlier_type,
        })
    }
}

fn decode_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Other(sqlx::Error::Decode(e.into()))
}

/// Samples a history page holds.
const HISTORY_PAGE: usize = 4096;

/// Where a history page starts: after the sample at `ts` with id `id` (`None`:
/// after every sample at `ts`).
struct HistoryCursor {
    ts: i64,
    id: Option<String>,
}

impl SqliteStore {
    /// The next [`HISTORY_PAGE`] samples after `cursor` up to `until`, oldest first
    /// (ties by id).
    async fn history_page(
        &self,
        instance: &str,
        cursor: &HistoryCursor,
        until: i64,
    ) -> StoreResult<Vec<Sample>> {
        // `id > NULL` is never true, so the first page starts strictly after `ts`.
        let (page,): (String,) = sqlx::query_as(concat!(
            "SELECT json_group_array(json_array(id, instance, ts, ",
            packed_real!("cpu_utilization"),
            ", ",
            packed_real!("memory_usage"),
            ", network_in, network_out, is_outlier, outlier_type))
             FROM (SELECT * FROM metrics
                   WHERE instance = ?1 AND ts >= ?2 AND ts <= ?4 AND (ts > ?2 OR id > ?3)
                   ORDER BY ts, id LIMIT ?5 + 0)"
        ))
        .bind(instance)
        .bind(cursor.ts)
        .bind(cursor.id.as_deref())
        .bind(until)
        .bind(HISTORY_PAGE as i64)
        .fetch_one(&self.pool)
        .await?;
        let mut packed: Vec<PackedMetric> = serde_json::from_str(&page).map_err(decode_error)?;
        // An aggregate's input order is unspecified in SQL (see `metrics_page_owned`).
        packed.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        packed
            .into_iter()
            .map(|p| MetricRow::try_from(p).map(MetricRow::sample))
            .collect()
    }

    /// A page of instance `instance`'s list with its total, in one transaction (one
    /// snapshot): `total_sql` reads the total off the instance row (`?1` its id),
    /// `rows_sql` the page (`?2` the limit, `?3` the offset). No such instance reads
    /// as an empty page.
    async fn page_by_id<R, T>(
        &self,
        total_sql: &'static str,
        rows_sql: &'static str,
        instance: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<T>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        T: From<R>,
    {
        let mut tx = self.pool.begin().await?;
        let total: Option<(i64,)> = sqlx::query_as(total_sql)
            .bind(instance.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let rows: Vec<R> = sqlx::query_as(rows_sql)
            .bind(instance.to_string())
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(match total {
            Some((total,)) => Page {
                items: convert(rows),
                total,
            },
            None => Page::default(),
        })
    }
}

/// A window sample: position of its instance in the batch, id, ts, cpu, memory,
/// network in and out, is_outlier.
type WindowRow = (
    i64,
    Id,
    Time,
    f64,
    Option<f64>,
    Option<i64>,
    Option<i64>,
    bool,
);

fn convert<R, T: From<R>>(rows: Vec<R>) -> Vec<T> {
    rows.into_iter().map(T::from).collect()
}

/// Inserts metrics given as one JSON array of rows, in one statement (atomic; the
/// instances' counts follow by trigger). A CloudWatch datapoint already stored is
/// skipped. With `skip_gone` the metrics of an instance deleted since a tick claimed
/// it are skipped too (within the statement, which holds the write lock, no delete
/// can come in between); without it they fail the whole statement (`Gone`).
async fn insert_metric_rows(
    conn: &mut sqlx::SqliteConnection,
    stored: &[Metric],
    new: &[NewMetric],
    skip_gone: bool,
) -> StoreResult<()> {
    let rows: Vec<serde_json::Value> = stored
        .iter()
        .zip(new)
        .map(|(m, n)| {
            json!([
                m.id.to_string(),
                m.instance.to_string(),
                micros(m.timestamp),
                m.cpu_utilization,
                m.memory_usage,
                m.network_in,
                m.network_out,
                n.source.as_str()
            ])
        })
        .collect();
    // The WHERE clause also keeps SQLite from reading ON CONFLICT as a join constraint.
    let sql = if skip_gone {
        "INSERT INTO metrics (id, instance, ts, cpu_utilization, memory_usage, network_in, network_out, source)
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7
         FROM json_each(?1) WHERE EXISTS (SELECT 1 FROM instances WHERE id = value->>1)
         ON CONFLICT (instance, ts) WHERE source = 'cloudwatch' DO NOTHING"
    } else {
        "INSERT INTO metrics (id, instance, ts, cpu_utilization, memory_usage, network_in, network_out, source)
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7
         FROM json_each(?1) WHERE true
         ON CONFLICT (instance, ts) WHERE source = 'cloudwatch' DO NOTHING"
    };
    sqlx::query(sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, email: &str, password_hash: &str) -> StoreResult<User> {
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             RETURNING id, email, password_hash, created_at",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(email)
        .bind(password_hash)
        .bind(micros(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, password_hash, created_at FROM users WHERE email = ?1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn instance_counts(&self, user: Uuid) -> StoreResult<InstanceCounts> {
        let (instances, monitoring): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(is_monitoring), 0) FROM instances WHERE user_id = ?1",
        )
        .bind(user.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(InstanceCounts {
            instances,
            monitoring,
        })
    }

    async fn create_instance(&self, new: &NewInstance) -> StoreResult<Instance> {
        let row: InstanceRow = sqlx::query_as(concat!(
            "INSERT INTO instances (id, user_id, instance_id, instance_type, region, is_mock, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING ",
            instance_columns!()
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(new.user_id.to_string())
        .bind(&new.instance_id)
        .bind(&new.instance_type)
        .bind(&new.region)
        .bind(new.is_mock)
        .bind(micros(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn instances_of(&self, user: Uuid) -> StoreResult<Vec<Instance>> {
        let rows: Vec<InstanceRow> = sqlx::query_as(concat!(
            "SELECT ",
            instance_columns!(),
            " FROM instances WHERE user_id = ?1 ORDER BY created_at, id"
        ))
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(convert(rows))
    }

    async fn instance_by_instance_id(&self, instance_id: &str) -> StoreResult<Option<Instance>> {
        let row: Option<InstanceRow> = sqlx::query_as(concat!(
            "SELECT ",
            instance_columns!(),
            " FROM instances WHERE instance_id = ?1"
        ))
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn set_monitoring(&self, id: Uuid, on: bool) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE instances SET is_monitoring = ?2 WHERE id = ?1 AND is_monitoring <> ?2",
        )
        .bind(id.to_string())
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
            "UPDATE instances SET policy = ?2,
                 recommended_level = CASE WHEN ?3 THEN scale_level ELSE recommended_level END,
                 recommended_action_at = CASE WHEN ?3 THEN last_action_at
                                              ELSE recommended_action_at END
             WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(super::encode_policy(policy))
        .bind(reset_shadow)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    fn history(
        &self,
        instance: Uuid,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> BoxStream<'_, StoreResult<Sample>> {
        // Read page by page, each packed into one JSON text, for the same reason as
        // the metrics page (sqlx's per-row handover was most of a month's backtest);
        // the key of the last sample read is where the next page starts.
        let instance = instance.to_string();
        let until = micros(until);
        let first = HistoryCursor {
            ts: micros(since),
            id: None,
        };
        futures::stream::try_unfold(Some(first), move |cursor| {
            let instance = instance.clone();
            async move {
                let Some(cursor) = cursor else {
                    return StoreResult::Ok(None);
                };
                let page = self.history_page(&instance, &cursor, until).await?;
                // A short page is the last one.
                let next = page
                    .last()
                    .filter(|_| page.len() == HISTORY_PAGE)
                    .map(|last| HistoryCursor {
                        ts: last.timestamp.timestamp_micros(),
                        id: Some(last.id.to_string()),
                    });
                Ok(Some((
                    futures::stream::iter(page.into_iter().map(StoreResult::Ok)),
                    next,
                )))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn insert_metrics(&self, metrics: &[NewMetric]) -> StoreResult<Vec<Metric>> {
        let stored: Vec<Metric> = metrics.iter().map(super::to_stored).collect();
        let mut conn = self.pool.acquire().await?;
        // One statement: the write lock is held once, briefly.
        insert_metric_rows(&mut conn, &stored, metrics, false).await?;
        Ok(stored)
    }

    async fn replace_metrics(
        &self,
        instance: Uuid,
        metrics: &[NewMetric],
    ) -> StoreResult<Vec<Metric>> {
        let stored: Vec<Metric> = metrics.iter().map(super::to_stored).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM metrics WHERE instance = ?1")
            .bind(instance.to_string())
            .execute(&mut *tx)
            .await?;
        insert_metric_rows(&mut tx, &stored, metrics, false).await?;
        let (exists,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM instances WHERE id = ?1)")
                .bind(instance.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(StoreError::Gone);
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn delete_instance(&self, id: Uuid) -> StoreResult<Deletion> {
        // Metrics and decisions go by ON DELETE CASCADE, in the same statement.
        let done = sqlx::query("DELETE FROM instances WHERE id = ?1 AND is_monitoring = 0")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(Deletion::Deleted);
        }
        let monitoring: Option<(bool,)> =
            sqlx::query_as("SELECT is_monitoring FROM instances WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(match monitoring {
            Some(_) => Deletion::Monitoring,
            None => Deletion::NotFound,
        })
    }

    async fn metrics_page(&self, instance: Uuid, page: PageRequest) -> StoreResult<Page<Metric>> {
        self.page_by_id::<MetricRow, _>(
            "SELECT metric_count FROM instances WHERE id = ?1",
            concat!(
                "SELECT ",
                metric_columns!(),
                " FROM metrics WHERE instance = ?1 ORDER BY ts DESC, id DESC LIMIT ?2 + 0 OFFSET ?3 + 0"
            ),
            instance,
            page,
        )
        .await
    }

    async fn metrics_page_owned(
        &self,
        user: Uuid,
        instance_id: &str,
        page: PageRequest,
    ) -> StoreResult<Owned<Page<Metric>>> {
        // sqlx copies each row's values on its SQLite worker thread and wakes this
        // task once per row; at 100 rows that handover was most of the request. So
        // the page comes back packed in one JSON text, its reals as `packed_real!`
        // sends them (exactly; a unit test below holds SQLite to that), with the
        // total beside it in the same row (one statement: one snapshot).
        let (user_exists, total, page): (bool, Option<i64>, String) = sqlx::query_as(concat!(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?2),
                    (SELECT metric_count FROM instances WHERE instance_id = ?1 AND user_id = ?2),
                    (SELECT json_group_array(
                                json_array(id, instance, ts, ",
            packed_real!("cpu_utilization"),
            ", ",
            packed_real!("memory_usage"),
            ", network_in, network_out, is_outlier, outlier_type))
                     FROM (SELECT * FROM metrics
                           WHERE instance = (SELECT id FROM instances
                                             WHERE instance_id = ?1 AND user_id = ?2)
                           ORDER BY ts DESC, id DESC LIMIT ?3 + 0 OFFSET ?4 + 0))"
        ))
        .bind(instance_id)
        .bind(user.to_string())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_one(&self.pool)
        .await?;
        if !user_exists {
            return Ok(Owned::UserGone);
        }
        let Some(total) = total else {
            return Ok(Owned::NotOwned);
        };
        let mut packed: Vec<PackedMetric> = serde_json::from_str(&page).map_err(decode_error)?;
        // SQL leaves an aggregate's input order unspecified; an ORDER BY inside it
        // would sort the page a second time in SQLite, so the order is restored here
        // (a pass over an already sorted page).
        packed.sort_by(|a, b| (b.2, &b.0).cmp(&(a.2, &a.0)));
        let items = packed
            .into_iter()
            .map(|p| MetricRow::try_from(p).map(Metric::from))
            .collect::<StoreResult<_>>()?;
        Ok(Owned::Found(Page { items, total }))
    }

    async fn decisions_page(
        &self,
        instance: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<DecisionRecord>> {
        self.page_by_id::<DecisionRow, _>(
            "SELECT decision_count FROM instances WHERE id = ?1",
            concat!(
                "SELECT ",
                decision_columns!(),
                " FROM scaling_decisions WHERE instance = ?1
                  ORDER BY ts DESC, id DESC LIMIT ?2 + 0 OFFSET ?3 + 0"
            ),
            instance,
            page,
        )
        .await
    }

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
        let stored: Vec<Metric> = metrics.iter().map(super::to_stored).collect();
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

    async fn claim_scaling(&self, slot: i64, limit: i64) -> StoreResult<Vec<ScalingCandidate>> {
        let rows: Vec<ScaleRow> = sqlx::query_as(
            "UPDATE instances SET scale_slot = ?1
             WHERE id IN (SELECT id FROM instances
                          WHERE is_monitoring = 1 AND scale_slot < ?1 LIMIT ?2 + 0)
             RETURNING id, scale_level, last_action_at, last_decision, policy,
                       recommended_level, recommended_action_at",
        )
        .bind(slot)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row::scaling_candidate).collect())
    }

    async fn windows(
        &self,
        instances: &[Uuid],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Sample)>> {
        let ids: Vec<String> = instances.iter().map(Uuid::to_string).collect();
        // One index range scan per instance, outer loop over the batch; each row
        // names its instance by position in the batch rather than as text to parse.
        let rows: Vec<WindowRow> = sqlx::query_as(
            "SELECT b.key, m.id, m.ts, m.cpu_utilization, m.memory_usage, m.network_in,
                    m.network_out, m.is_outlier
             FROM json_each(?1) AS b CROSS JOIN metrics AS m
             WHERE m.instance = b.value AND m.ts > ?2 AND m.ts <= ?3",
        )
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .bind(micros(since))
        .bind(micros(until))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(position, id, ts, cpu, memory, net_in, net_out, is_outlier)| {
                    let instance = usize::try_from(position)
                        .ok()
                        .and_then(|p| instances.get(p))
                        .copied()
                        .ok_or_else(|| {
                            decode_error(format!("window row for batch position {position}"))
                        })?;
                    Ok((
                        instance,
                        Sample {
                            id: id.0,
                            timestamp: ts.0,
                            cpu,
                            memory,
                            network_in: net_in.map(|v| v as f64),
                            network_out: net_out.map(|v| v as f64),
                            is_outlier,
                        },
                    ))
                },
            )
            .collect()
    }

    async fn write_scaling(&self, writes: &ScalingWrites) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // No row locks to order here: SQLite's one writer holds the whole database
        // from this transaction's first write.
        let mut applied = std::collections::HashSet::new();
        if !writes.changes.is_empty() {
            let changes: Vec<serde_json::Value> = writes
                .changes
                .iter()
                .map(|c| {
                    json!([
                        c.instance.to_string(),
                        c.before,
                        c.after,
                        micros(c.at),
                        c.dry_run
                    ])
                })
                .collect();
            let rows: Vec<(Id,)> = sqlx::query_as(
                "UPDATE instances
                 SET scale_level = CASE WHEN u.dry THEN scale_level ELSE u.after END,
                     last_action_at = CASE WHEN u.dry THEN last_action_at ELSE u.at END,
                     recommended_level = u.after,
                     recommended_action_at = u.at
                 FROM (SELECT value->>0 AS id, value->>1 AS before, value->>2 AS after,
                              value->>3 AS at, value->>4 AS dry FROM json_each(?1)) AS u
                 WHERE instances.id = u.id
                   AND CASE WHEN u.dry THEN instances.recommended_level
                            ELSE instances.scale_level END = u.before
                 RETURNING instances.id",
            )
            .bind(serde_json::Value::Array(changes).to_string())
            .fetch_all(&mut *tx)
            .await?;
            for (id,) in rows {
                applied.insert(id.0);
            }
        }
        let rest = writes.after_changes(&applied);

        if !rest.decisions.is_empty() {
            let records: Vec<serde_json::Value> = rest
                .decisions
                .iter()
                .map(|d| {
                    json!([
                        d.id.to_string(),
                        d.instance.to_string(),
                        micros(d.timestamp),
                        d.cpu_utilization,
                        d.memory_usage,
                        d.network_in,
                        d.network_out,
                        d.decision,
                        d.reason,
                        d.level_before,
                        d.level_after,
                        d.dry_run
                    ])
                })
                .collect();
            let records = serde_json::Value::Array(records).to_string();
            sqlx::query(
                "INSERT INTO scaling_decisions (id, instance, ts, cpu_utilization, memory_usage,
                        network_in, network_out, decision, reason, level_before, level_after,
                        dry_run)
                 SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5,
                        value->>6, value->>7, value->>8, value->>9, value->>10, value->>11
                 FROM json_each(?1)
                 -- an instance deleted since the tick claimed it gets nothing written
                 WHERE EXISTS (SELECT 1 FROM instances WHERE id = value->>1)",
            )
            .bind(&records)
            .execute(&mut *tx)
            .await?;
            // webhooks: the outbox events of these decisions, in the same transaction.
            queue_decision_events(&mut tx, &records).await?;
            sqlx::query(
                "UPDATE instances SET last_decision = u.d
                 FROM (SELECT value->>1 AS id, value->>7 AS d FROM json_each(?1)) AS u
                 WHERE instances.id = u.id",
            )
            .bind(&records)
            .execute(&mut *tx)
            .await?;
        }

        if !rest.outliers.is_empty() {
            let flags: Vec<serde_json::Value> = rest
                .outliers
                .iter()
                .map(|f| json!([f.metric.to_string(), f.kind.as_str()]))
                .collect();
            sqlx::query(
                "UPDATE metrics SET is_outlier = 1, outlier_type = u.t
                 FROM (SELECT value->>0 AS id, value->>1 AS t FROM json_each(?1)) AS u
                 WHERE metrics.id = u.id",
            )
            .bind(serde_json::Value::Array(flags).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

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
        Ok(metrics + decisions)
    }

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

    async fn purge_login_failures(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE window_start < ?1")
            .bind(micros(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // The series read (issue 14).

    async fn metric_series(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<SeriesBucket>> {
        // Times are integer microseconds: a sample's bucket is (ts - from) / step in
        // integer division, over one range scan of metrics_instance_ts_idx.
        let rows: Vec<SeriesRow> = sqlx::query_as(
            "SELECT ?2 + (ts - ?2) / ?4 * ?4 AS start, count(*) AS samples,
                    avg(cpu_utilization) AS cpu_avg, max(cpu_utilization) AS cpu_max,
                    avg(memory_usage) AS memory_avg, max(memory_usage) AS memory_max,
                    avg(network_in) AS network_in_avg, avg(network_out) AS network_out_avg
             FROM metrics WHERE instance = ?1 AND ts >= ?2 AND ts < ?3
             GROUP BY 1 ORDER BY 1",
        )
        .bind(instance.to_string())
        .bind(micros(from))
        .bind(micros(to))
        .bind(step_seconds.saturating_mul(1_000_000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn decisions_between(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<SeriesDecision>> {
        let rows: Vec<SeriesDecisionRow> = sqlx::query_as(
            "SELECT id, ts, decision, reason, level_before, level_after FROM scaling_decisions
             WHERE instance = ?1 AND ts >= ?2 AND ts < ?3 AND dry_run = 0
             ORDER BY ts, id",
        )
        .bind(instance.to_string())
        .bind(micros(from))
        .bind(micros(to))
        .fetch_all(&self.pool)
        .await?;
        Ok(convert(rows))
    }

    async fn level_at(&self, instance: Uuid, at: DateTime<Utc>) -> StoreResult<Option<i32>> {
        let level: Option<(i32,)> = sqlx::query_as(
            "SELECT COALESCE(
                 (SELECT level_after FROM scaling_decisions WHERE instance = ?1 AND ts < ?2 AND dry_run = 0
                  ORDER BY ts DESC, id DESC LIMIT 1),
                 (SELECT level_before FROM scaling_decisions WHERE instance = ?1 AND ts >= ?2 AND dry_run = 0
                  ORDER BY ts, id LIMIT 1),
                 scale_level)
             FROM instances WHERE id = ?1",
        )
        .bind(instance.to_string())
        .bind(micros(at))
        .fetch_optional(&self.pool)
        .await?;
        Ok(level.map(|(l,)| l))
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

    // --- webhooks ---

    async fn create_webhook(
        &self,
        new: &NewWebhook,
        max_per_user: i64,
    ) -> StoreResult<Option<Webhook>> {
        // One statement: SQLite runs writes one at a time, so the count and the
        // insert cannot interleave with another creation.
        let events = serde_json::to_string(&new.events).map_err(decode_error)?;
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "INSERT INTO webhooks (id, user_id, url, events, description, secret, created_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE (SELECT count(*) FROM webhooks WHERE user_id = ?2) < ?8
             RETURNING ",
            webhook_columns!()
        ))
        .bind(Uuid::now_v7().to_string())
        .bind(new.user_id.to_string())
        .bind(&new.url)
        .bind(events)
        .bind(&new.description)
        .bind(&new.secret)
        .bind(micros(Utc::now()))
        .bind(max_per_user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn webhooks_of(&self, user: Uuid) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE user_id = ?1 ORDER BY created_at, id"
        ))
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(convert(rows))
    }

    async fn webhook_of(&self, user: Uuid, id: Uuid) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = ?1 AND user_id = ?2"
        ))
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_webhook(&self, user: Uuid, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = ?1 AND user_id = ?2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT id, event_type, decision, status, attempts, last_status, last_error,
                    next_attempt_at, delivered_at, created_at
             FROM webhook_events WHERE webhook = ?1
             ORDER BY created_at DESC, id DESC LIMIT ?2 + 0",
        )
        .bind(webhook.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(convert(rows))
    }

    async fn queue_webhook_event(
        &self,
        webhook: Uuid,
        event_type: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO webhook_events (id, webhook, event_type, payload, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(id.to_string())
        .bind(webhook.to_string())
        .bind(event_type)
        .bind(payload)
        .bind(micros(now))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn claim_webhook_events(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueEvent>> {
        // One process per SQLite file, and one writer at a time: the lease alone
        // keeps an event from being claimed twice for one attempt.
        let rows: Vec<DueRow> = sqlx::query_as(
            "UPDATE webhook_events SET attempts = attempts + 1, next_attempt_at = ?2
             WHERE id IN (SELECT id FROM webhook_events
                          WHERE status = 'pending' AND next_attempt_at <= ?1
                          ORDER BY next_attempt_at LIMIT ?3 + 0)
             RETURNING id,
                       (SELECT url FROM webhooks w WHERE w.id = webhook_events.webhook),
                       (SELECT secret FROM webhooks w WHERE w.id = webhook_events.webhook),
                       payload, attempts, created_at",
        )
        .bind(micros(now))
        .bind(micros(lease_until))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row::due_event).collect())
    }

    async fn record_webhook_attempts(&self, attempts: &[DeliveryAttempt]) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = attempts
            .iter()
            .map(|a| {
                json!([
                    a.id.to_string(),
                    a.attempt,
                    a.status,
                    a.last_status,
                    a.last_error,
                    micros(a.next_attempt_at),
                    a.delivered_at.map(micros)
                ])
            })
            .collect();
        sqlx::query(
            "UPDATE webhook_events SET status = u.status, last_status = u.code,
                    last_error = u.error, next_attempt_at = u.next, delivered_at = u.delivered
             FROM (SELECT value->>0 AS id, value->>1 AS attempt, value->>2 AS status,
                          value->>3 AS code, value->>4 AS error, value->>5 AS next,
                          value->>6 AS delivered FROM json_each(?1)) AS u
             WHERE webhook_events.id = u.id AND webhook_events.attempts = u.attempt
               AND webhook_events.status = 'pending'",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

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

use super::{SeriesBucket, SeriesDecision};

/// Queues one event per matching webhook of the instance's owner for each of the
/// just-written decision rows in `records` (the JSON array `apply_scaling` bound,
/// decision id first) that is an action, in the caller's transaction: one
/// set-based INSERT ... SELECT, the payload built from the stored rows.
async fn queue_decision_events(tx: &mut sqlx::SqliteConnection, records: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_events (id, webhook, decision, event_type, payload,
                next_attempt_at, created_at)
         SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                      || substr(hex(randomblob(2)), 2) || '-'
                      || substr('89AB', 1 + (abs(random()) % 4), 1)
                      || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
                w.id, d.id, 'scaling.' || d.decision,
                json_object(
                    'type', 'scaling.' || d.decision,
                    'timestamp', strftime('%Y-%m-%dT%H:%M:%S', d.ts / 1000000, 'unixepoch')
                                 || printf('.%06dZ', d.ts % 1000000),
                    'data', json_object(
                        'instance_id', i.instance_id, 'decision', d.decision,
                        'reason', d.reason, 'level_before', d.level_before,
                        'level_after', d.level_after,
                        'dry_run', json(CASE WHEN d.dry_run THEN 'true' ELSE 'false' END),
                        'cpu_utilization', d.cpu_utilization, 'memory_usage', d.memory_usage,
                        'network_in', d.network_in, 'network_out', d.network_out,
                        'decision_id', d.id)),
                d.ts, d.ts
         FROM json_each(?1) AS r
         JOIN scaling_decisions d ON d.id = r.value->>0
         JOIN instances i ON i.id = d.instance
         JOIN webhooks w ON w.user_id = i.user_id
              AND EXISTS (SELECT 1 FROM json_each(w.events) e WHERE e.value = d.decision)
         WHERE d.decision IN ('scale_up', 'scale_down')",
    )
    .bind(records)
    .execute(tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    /// The rule at the top of this file, checked over its own text: no statement
    /// here ends a `LIMIT` or `OFFSET` at a bare parameter.
    #[test]
    fn every_limit_is_an_expression() {
        let source = include_str!("sqlite.rs");
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

    use super::PackedReal;

    /// Metrics reach SQLite as JSON numbers (parsed by SQLite) and leave the packed
    /// read through `packed_real!` (scaled integers or 17-digit text, read back by
    /// `PackedReal`). Across the API's range of percentages both conversions must be
    /// exact, bit for bit; outside it the read must still be (the text path).
    #[tokio::test]
    async fn reals_in_the_api_range_cross_the_json_paths_exactly() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        // xorshift64: reproducible uniform doubles in [0, 100), plus two-decimal
        // readings and the edges.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut values: Vec<f64> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64 * 100.0
            })
            .collect();
        values.extend((0..=10_000).map(|k| f64::from(k) / 100.0));
        values.extend([0.1 + 0.2, 100.0 / 3.0, 99.999_999_999_999_99, 5e-324, 1e-9]);

        for chunk in values.chunks(5_000) {
            let json = serde_json::to_string(chunk).unwrap();
            let rows: Vec<(f64, String)> = sqlx::query_as(concat!(
                "SELECT value, json_array(",
                packed_real!("value"),
                ") FROM json_each(?1) ORDER BY key"
            ))
            .bind(&json)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert_eq!(rows.len(), chunk.len());
            for (&sent, (stored, packed)) in chunk.iter().zip(rows) {
                assert_eq!(
                    stored.to_bits(),
                    sent.to_bits(),
                    "stored {stored} for {sent}"
                );
                let [real]: [PackedReal; 1] = serde_json::from_str(&packed).unwrap();
                let read = real.value().unwrap();
                assert_eq!(read.to_bits(), sent.to_bits(), "read {packed} for {sent}");
            }
        }
    }

    /// Both forms of `packed_real!`, and NULL, for values bound as they are (not
    /// parsed from JSON): the scaled integer where it is exact, text elsewhere, and
    /// either way the same bits back.
    #[tokio::test]
    async fn packed_reals_read_back_bit_for_bit() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let cases: [(Option<f64>, &str); 12] = [
            (None, "[null]"),
            (Some(45.5), "[3278620528725721088]"),
            (Some(100.0), "[7205759403792793600]"),
            (Some(0.0625), "[4503599627370496]"),
            (Some(127.99999999999999), "[9223372036854774784]"),
            (Some(-12.25), "[-882705526964617216]"),
            (Some(0.0), "[0]"),
            (Some(128.0), "[\"128.0\"]"),
            (Some(0.1), "[7205759403792794]"),
            // Just below 2^-4, with an odd last bit: not a multiple of 2^-56.
            (
                Some(f64::from_bits(0x3FAF_FFFF_FFFF_FFFF)),
                "[\"0.062499999999999993\"]",
            ),
            (Some(5e-324), "[\"4.9406564584124654e-324\"]"),
            (Some(1e9 / 3.0), "[\"333333333.33333331\"]"),
        ];
        for (value, expected) in cases {
            let (packed,): (String,) =
                sqlx::query_as(concat!("SELECT json_array(", packed_real!("?1"), ")"))
                    .bind(value)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert_eq!(packed, expected, "packed {value:?}");
            let [real]: [Option<PackedReal>; 1] = serde_json::from_str(&packed).unwrap();
            let read = real.map(|r| r.value().unwrap());
            assert_eq!(
                read.map(f64::to_bits),
                value.map(f64::to_bits),
                "read {packed}"
            );
        }
    }
}
