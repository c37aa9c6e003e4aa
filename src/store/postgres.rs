//! PostgreSQL store: native types, set-based statements over UNNEST'ed arrays, and
//! `FOR UPDATE SKIP LOCKED` claims so replicas share each tick's work.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};
use uuid::Uuid;

use super::row::{
    self, CollectRow, DecisionRow, DeliveryRow, DueRow, InstanceRow, MetricRow, ScaleRow,
    SeriesDecisionRow, SeriesRow, UserRow, WebhookRow,
};
use super::{
    CollectionStatus, Deletion, InstanceCounts, LoginFailures, NewInstance, Owned, Page,
    PageRequest, PoolConnections, PoolSettings, ScalingCandidate, SeriesBucket, SeriesDecision,
    Store, StoreError, StoreResult,
};
use crate::collect::CollectTarget;
use crate::model::{
    DecisionRecord, DeliveryAttempt, DueEvent, Instance, Metric, NewMetric, NewWebhook, User,
    Webhook, WebhookDelivery,
};
use crate::scaling::record::{LevelChange, ScalingWrites};
use crate::scaling::{PolicyPatch, Sample};

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

/// Applies level changes where the level they were decided at still holds; returns
/// the instances whose change took effect.
async fn change_levels(
    tx: &mut sqlx::PgConnection,
    _: &Locked,
    changes: &[LevelChange],
) -> StoreResult<std::collections::HashSet<Uuid>> {
    if changes.is_empty() {
        return Ok(Default::default());
    }
    let c = changes;
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "UPDATE instances i
         SET scale_level = CASE WHEN u.dry THEN i.scale_level ELSE u.after END,
             last_action_at = CASE WHEN u.dry THEN i.last_action_at ELSE u.at END,
             recommended_level = u.after,
             recommended_action_at = u.at
         FROM UNNEST($1::uuid[], $2::int4[], $3::int4[], $4::timestamptz[], $5::bool[])
              AS u(id, before, after, at, dry)
         WHERE i.id = u.id AND i.id = ANY($1)
           AND CASE WHEN u.dry THEN i.recommended_level ELSE i.scale_level END = u.before
         RETURNING i.id",
    )
    .bind(c.iter().map(|c| c.instance).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.before).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.after).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.at).collect::<Vec<_>>())
    .bind(c.iter().map(|c| c.dry_run).collect::<Vec<_>>())
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Records each instance's newest decision and counts it.
async fn set_latest_decisions(
    tx: &mut sqlx::PgConnection,
    _: &Locked,
    instances: &[Uuid],
    decisions: &[&str],
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE instances i SET last_decision = u.d, decision_count = i.decision_count + 1
         FROM UNNEST($1::uuid[], $2::text[]) AS u(id, d)
         WHERE i.id = u.id AND i.id = ANY($1)",
    )
    .bind(instances)
    .bind(decisions)
    .execute(tx)
    .await?;
    Ok(())
}

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

impl PostgresStore {
    /// The page of instance `instance`'s list that `sql` (a `page_query!` with the
    /// instance's id as `$3`) reads; no such instance reads as an empty page.
    async fn page_by_id<R, T>(
        &self,
        sql: &'static str,
        instance: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<T>>
    where
        R: PageItem + Send + Unpin,
        T: From<R>,
    {
        let rows: Vec<PageRow<R>> = sqlx::query_as(sql)
            .bind(page.limit)
            .bind(page.offset)
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        Ok(PageRow::collect(rows).unwrap_or_default())
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

/// The paged read of one instance's `$table`, newest first, as [`PageRow`]s: `$1`
/// is the page's limit and `$2` its offset, and the instance row `i` that `$instance`
/// picks gives the total from its `$count` column (no such instance: no row). A
/// macro because sqlx takes only `&'static str` SQL.
macro_rules! page_query {
    ($count:literal, $columns:expr, $table:literal, $instance:literal) => {
        concat!(
            "SELECT i.",
            $count,
            ", e.* FROM instances i
             LEFT JOIN LATERAL (SELECT ",
            $columns,
            " FROM ",
            $table,
            " WHERE instance = i.id
                 ORDER BY ts DESC, id DESC LIMIT $1 OFFSET $2) AS e ON true
             WHERE ",
            $instance
        )
    };
}

/// A row of a paged read: the list's total (column 0), then one entry's columns
/// from column 1, all NULL when the page is empty (the LEFT JOIN's one row).
struct PageRow<R> {
    total: i64,
    item: Option<R>,
}

/// An entry type a paged read decodes after its total.
trait PageItem: Sized {
    fn decode(row: &PgRow) -> sqlx::Result<Self>;
}

impl PageItem for MetricRow {
    fn decode(row: &PgRow) -> sqlx::Result<Self> {
        MetricRow::at(row, 1)
    }
}

impl PageItem for DecisionRow {
    fn decode(row: &PgRow) -> sqlx::Result<Self> {
        <DecisionRow as sqlx::FromRow<PgRow>>::from_row(row)
    }
}

impl<R: PageItem> sqlx::FromRow<'_, PgRow> for PageRow<R> {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        let id: Option<Uuid> = row.try_get_unchecked(1)?;
        Ok(PageRow {
            total: row.try_get_unchecked(0)?,
            item: id.map(|_| R::decode(row)).transpose()?,
        })
    }
}

impl<R> PageRow<R> {
    /// The page, or `None` when no row came back (no such instance for the query).
    fn collect<T: From<R>>(rows: Vec<PageRow<R>>) -> Option<Page<T>> {
        let total = rows.first()?.total;
        Some(Page {
            items: rows
                .into_iter()
                .filter_map(|r| r.item)
                .map(T::from)
                .collect(),
            total,
        })
    }
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

/// The insert of a batch of metrics from [`MetricColumns`]' arrays ($1-$8); a
/// CloudWatch datapoint already stored is skipped. Returns each row's instance.
macro_rules! metric_insert {
    () => {
        "INSERT INTO metrics (id, instance, ts, cpu_utilization, memory_usage, network_in,
                              network_out, source)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::float8[],
                              $5::float8[], $6::int8[], $7::int8[], $8::text[])
         ON CONFLICT (instance, ts) WHERE source = 'cloudwatch' DO NOTHING
         RETURNING instance"
    };
}

/// Column-wise arrays of a batch of metrics, for one UNNEST insert.
#[derive(Default)]
struct MetricColumns {
    ids: Vec<Uuid>,
    instances: Vec<Uuid>,
    ts: Vec<DateTime<Utc>>,
    cpu: Vec<f64>,
    memory: Vec<Option<f64>>,
    net_in: Vec<Option<i64>>,
    net_out: Vec<Option<i64>>,
    source: Vec<&'static str>,
}

impl MetricColumns {
    fn new(stored: &[Metric], new: &[NewMetric]) -> Self {
        let mut c = MetricColumns::default();
        for (m, n) in stored.iter().zip(new) {
            c.ids.push(m.id);
            c.instances.push(m.instance);
            c.ts.push(m.timestamp);
            c.cpu.push(m.cpu_utilization);
            c.memory.push(m.memory_usage);
            c.net_in.push(m.network_in);
            c.net_out.push(m.network_out);
            c.source.push(n.source.as_str());
        }
        c
    }

    /// Inserts the rows (a CloudWatch datapoint already stored is skipped) and returns
    /// how many each instance got.
    async fn insert(self, conn: &mut sqlx::PgConnection) -> StoreResult<Vec<(Uuid, i64)>> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(concat!(
            "WITH ins AS (",
            metric_insert!(),
            ") SELECT instance, count(*) FROM ins GROUP BY instance"
        ))
        .bind(self.ids)
        .bind(self.instances)
        .bind(self.ts)
        .bind(self.cpu)
        .bind(self.memory)
        .bind(self.net_in)
        .bind(self.net_out)
        .bind(self.source)
        .fetch_all(conn)
        .await?;
        Ok(rows)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, email: &str, password_hash: &str) -> StoreResult<User> {
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)
             RETURNING id, email, password_hash, created_at",
        )
        .bind(Uuid::new_v4())
        .bind(email)
        .bind(password_hash)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, password_hash, created_at FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

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
        // The index's newest-first order read backwards: no sort, rows as they come.
        sqlx::query_as::<_, WindowRow>(
            "SELECT instance, id, ts, cpu_utilization, memory_usage, network_in, network_out,
                    is_outlier
             FROM metrics WHERE instance = $1 AND ts > $2 AND ts <= $3
             ORDER BY ts, id",
        )
        .bind(instance)
        .bind(since)
        .bind(until)
        .fetch(&self.pool)
        .map(|row| row.map(WindowRow::sample).map_err(Into::into))
        .boxed()
    }

    async fn insert_metrics(&self, metrics: &[NewMetric]) -> StoreResult<Vec<Metric>> {
        let stored: Vec<Metric> = metrics.iter().map(super::to_stored).collect();
        let c = MetricColumns::new(&stored, metrics);
        // One statement, atomic on its own and without BEGIN and COMMIT round trips:
        // the rows and their instance's count. It updates its instances in plan order,
        // which is safe for what calls it (a simulation: one instance); a batch over
        // many instances that runs beside the jobs goes through `record_collection`,
        // which locks in key order first. An instance deleted meanwhile fails the
        // foreign key: `Gone`.
        sqlx::query(concat!(
            "WITH ins AS (",
            metric_insert!(),
            ") UPDATE instances i SET metric_count = i.metric_count + c.n
               FROM (SELECT instance, count(*) AS n FROM ins GROUP BY instance) AS c
               WHERE i.id = c.instance"
        ))
        .bind(c.ids)
        .bind(c.instances)
        .bind(c.ts)
        .bind(c.cpu)
        .bind(c.memory)
        .bind(c.net_in)
        .bind(c.net_out)
        .bind(c.source)
        .execute(&self.pool)
        .await?;
        Ok(stored)
    }

    async fn replace_metrics(
        &self,
        instance: Uuid,
        metrics: &[NewMetric],
    ) -> StoreResult<Vec<Metric>> {
        let stored: Vec<Metric> = metrics.iter().map(super::to_stored).collect();
        let mut tx = self.pool.begin().await?;
        if !Locked::take(&mut tx, &[instance]).await?.contains(instance) {
            return Err(StoreError::Gone);
        }
        sqlx::query("DELETE FROM metrics WHERE instance = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        let inserted: i64 = MetricColumns::new(&stored, metrics)
            .insert(&mut tx)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum();
        sqlx::query("UPDATE instances SET metric_count = $2 WHERE id = $1")
            .bind(instance)
            .bind(inserted)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
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

    async fn metrics_page(&self, instance: Uuid, page: PageRequest) -> StoreResult<Page<Metric>> {
        self.page_by_id::<MetricRow, _>(
            page_query!("metric_count", metric_columns!(), "metrics", "i.id = $3"),
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
        let rows: Vec<PageRow<MetricRow>> = sqlx::query_as(page_query!(
            "metric_count",
            metric_columns!(),
            "metrics",
            "i.instance_id = $3 AND i.user_id = $4"
        ))
        .bind(page.limit)
        .bind(page.offset)
        .bind(instance_id)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        // A user's instances go with the user (ON DELETE CASCADE, always enforced
        // here), so a row found proves the user exists: only an empty read has to ask.
        match PageRow::collect(rows) {
            Some(page) => Ok(Owned::Found(page)),
            None if self.user_by_id(user).await?.is_none() => Ok(Owned::UserGone),
            None => Ok(Owned::NotOwned),
        }
    }

    async fn decisions_page(
        &self,
        instance: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<DecisionRecord>> {
        self.page_by_id::<DecisionRow, _>(
            page_query!(
                "decision_count",
                decision_columns!(),
                "scaling_decisions",
                "i.id = $3"
            ),
            instance,
            page,
        )
        .await
    }

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
        let stored: Vec<Metric> = metrics.iter().map(super::to_stored).collect();
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

    async fn claim_scaling(&self, slot: i64, limit: i64) -> StoreResult<Vec<ScalingCandidate>> {
        let rows: Vec<ScaleRow> = self
            .claim(
                claim_statements!(
                    "scale_slot",
                    "id, scale_level, last_action_at, last_decision, policy,
                     recommended_level, recommended_action_at"
                ),
                |c| &mut c.scale,
                slot,
                limit,
                |r: &ScaleRow| r.0.0,
            )
            .await?;
        Ok(rows.into_iter().map(row::scaling_candidate).collect())
    }

    async fn windows(
        &self,
        instances: &[Uuid],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Sample)>> {
        // One index range scan per instance (OFFSET 0 keeps the planner from
        // flattening the subquery): with `instance = ANY($1)` it may instead read
        // every instance's recent metrics through metrics_ts_idx for each batch.
        let rows: Vec<WindowRow> = sqlx::query_as(
            "SELECT m.instance, m.id, m.ts, m.cpu_utilization, m.memory_usage, m.network_in,
                    m.network_out, m.is_outlier
             FROM UNNEST($1::uuid[]) AS u(id)
             CROSS JOIN LATERAL (SELECT * FROM metrics
                                 WHERE instance = u.id AND ts > $2 AND ts <= $3
                                 OFFSET 0) AS m",
        )
        .bind(instances)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.instance, r.sample())).collect())
    }

    async fn write_scaling(&self, writes: &ScalingWrites) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let locked = Locked::take(&mut tx, &writes.instances()).await?;
        let applied = change_levels(&mut tx, &locked, &writes.changes).await?;
        let rest = writes.after_changes(&applied);

        let records: Vec<&DecisionRecord> = rest
            .decisions
            .into_iter()
            .filter(|d| locked.contains(d.instance))
            .collect();
        if !records.is_empty() {
            let ids: Vec<Uuid> = records.iter().map(|d| d.id).collect();
            let instances: Vec<Uuid> = records.iter().map(|d| d.instance).collect();
            let decisions: Vec<&str> = records.iter().map(|d| d.decision.as_str()).collect();
            sqlx::query(
                "INSERT INTO scaling_decisions (id, instance, ts, cpu_utilization, memory_usage,
                        network_in, network_out, decision, reason, level_before, level_after,
                        dry_run)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::float8[],
                        $5::float8[], $6::int8[], $7::int8[], $8::text[], $9::text[], $10::int4[],
                        $11::int4[], $12::bool[])",
            )
            .bind(&ids)
            .bind(&instances)
            .bind(records.iter().map(|d| d.timestamp).collect::<Vec<_>>())
            .bind(
                records
                    .iter()
                    .map(|d| d.cpu_utilization)
                    .collect::<Vec<_>>(),
            )
            .bind(records.iter().map(|d| d.memory_usage).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.network_in).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.network_out).collect::<Vec<_>>())
            .bind(&decisions)
            .bind(
                records
                    .iter()
                    .map(|d| d.reason.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(records.iter().map(|d| d.level_before).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.level_after).collect::<Vec<_>>())
            .bind(records.iter().map(|d| d.dry_run).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            // webhooks: the outbox events of these decisions, in the same transaction.
            queue_decision_events(&mut tx, &ids).await?;
            set_latest_decisions(&mut tx, &locked, &instances, &decisions).await?;
        }

        if !rest.outliers.is_empty() {
            let flags = &rest.outliers;
            sqlx::query(
                "UPDATE metrics m SET is_outlier = true, outlier_type = u.t
                 FROM UNNEST($1::uuid[], $2::text[]) AS u(id, t)
                 WHERE m.id = u.id AND m.id = ANY($1)",
            )
            .bind(flags.iter().map(|f| f.metric).collect::<Vec<_>>())
            .bind(flags.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>())
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
        Ok(metrics + decisions)
    }

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

    async fn purge_login_failures(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE window_start < $1")
            .bind(before)
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
        // One range scan of metrics_instance_ts_idx, aggregated in the database:
        // date_bin puts each sample in the bucket of `step` seconds counted from `from`.
        let rows: Vec<SeriesRow> = sqlx::query_as(
            "SELECT date_bin(make_interval(secs => $4), ts, $2) AS start, count(*) AS samples,
                    avg(cpu_utilization) AS cpu_avg, max(cpu_utilization) AS cpu_max,
                    avg(memory_usage) AS memory_avg, max(memory_usage) AS memory_max,
                    avg(network_in)::float8 AS network_in_avg,
                    avg(network_out)::float8 AS network_out_avg
             FROM metrics WHERE instance = $1 AND ts >= $2 AND ts < $3
             GROUP BY 1 ORDER BY 1",
        )
        .bind(instance)
        .bind(from)
        .bind(to)
        .bind(step_seconds as f64)
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
             WHERE instance = $1 AND ts >= $2 AND ts < $3 AND NOT dry_run
             ORDER BY ts, id",
        )
        .bind(instance)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn level_at(&self, instance: Uuid, at: DateTime<Utc>) -> StoreResult<Option<i32>> {
        let level: Option<(i32,)> = sqlx::query_as(
            "SELECT COALESCE(
                 (SELECT level_after FROM scaling_decisions WHERE instance = $1 AND ts < $2 AND NOT dry_run
                  ORDER BY ts DESC, id DESC LIMIT 1),
                 (SELECT level_before FROM scaling_decisions WHERE instance = $1 AND ts >= $2 AND NOT dry_run
                  ORDER BY ts, id LIMIT 1),
                 scale_level)
             FROM instances WHERE id = $1",
        )
        .bind(instance)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(level.map(|(l,)| l))
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

    // --- webhooks ---

    async fn create_webhook(
        &self,
        new: &NewWebhook,
        max_per_user: i64,
    ) -> StoreResult<Option<Webhook>> {
        let mut tx = self.pool.begin().await?;
        // The user's row lock makes the count and the insert one step, so two
        // concurrent creations cannot both take the last place.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(new.user_id)
            .execute(&mut *tx)
            .await?;
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "INSERT INTO webhooks (id, user_id, url, events, description, secret)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE (SELECT count(*) FROM webhooks WHERE user_id = $2) < $7
             RETURNING ",
            webhook_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(new.user_id)
        .bind(&new.url)
        .bind(sqlx::types::Json(&new.events))
        .bind(&new.description)
        .bind(&new.secret)
        .bind(max_per_user)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(Into::into))
    }

    async fn webhooks_of(&self, user: Uuid) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn webhook_of(&self, user: Uuid, id: Uuid) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_webhook(&self, user: Uuid, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
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
             FROM webhook_events WHERE webhook = $1
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(webhook)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
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
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id)
        .bind(webhook)
        .bind(event_type)
        .bind(payload)
        .bind(now)
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
        let rows: Vec<DueRow> = sqlx::query_as(
            "WITH due AS (
                 SELECT id FROM webhook_events
                 WHERE status = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE webhook_events e SET attempts = e.attempts + 1, next_attempt_at = $2
             FROM due, webhooks w
             WHERE e.id = due.id AND w.id = e.webhook
             RETURNING e.id, w.url, w.secret, e.payload, e.attempts, e.created_at",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row::due_event).collect())
    }

    async fn record_webhook_attempts(&self, attempts: &[DeliveryAttempt]) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = attempts.iter().map(|a| a.id).collect();
        let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
        let statuses: Vec<&str> = attempts.iter().map(|a| a.status).collect();
        let codes: Vec<Option<i32>> = attempts.iter().map(|a| a.last_status).collect();
        let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.last_error.as_deref()).collect();
        let next: Vec<DateTime<Utc>> = attempts.iter().map(|a| a.next_attempt_at).collect();
        let delivered: Vec<Option<DateTime<Utc>>> =
            attempts.iter().map(|a| a.delivered_at).collect();
        sqlx::query(
            "UPDATE webhook_events e SET status = u.status, last_status = u.code,
                    last_error = u.error, next_attempt_at = u.next, delivered_at = u.delivered
             FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::int4[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[])
                  AS u(id, attempt, status, code, error, next, delivered)
             WHERE e.id = u.id AND e.attempts = u.attempt AND e.status = 'pending'",
        )
        .bind(ids)
        .bind(numbers)
        .bind(statuses)
        .bind(codes)
        .bind(errors)
        .bind(next)
        .bind(delivered)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

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

/// Queues one event per matching webhook of the instance's owner for each of the
/// just-written decisions `ids` that is an action, in the caller's transaction: one
/// set-based INSERT ... SELECT, the payload built from the stored rows.
async fn queue_decision_events(tx: &mut sqlx::PgConnection, ids: &[Uuid]) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_events (id, webhook, decision, event_type, payload,
                next_attempt_at, created_at)
         SELECT gen_random_uuid(), w.id, d.id, 'scaling.' || d.decision,
                jsonb_build_object(
                    'type', 'scaling.' || d.decision,
                    'timestamp', to_char(d.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    'data', jsonb_build_object(
                        'instance_id', i.instance_id, 'decision', d.decision,
                        'reason', d.reason, 'level_before', d.level_before,
                        'level_after', d.level_after, 'dry_run', d.dry_run,
                        'cpu_utilization', d.cpu_utilization, 'memory_usage', d.memory_usage,
                        'network_in', d.network_in, 'network_out', d.network_out,
                        'decision_id', d.id))::text,
                d.ts, d.ts
         FROM scaling_decisions d
         JOIN instances i ON i.id = d.instance
         JOIN webhooks w ON w.user_id = i.user_id AND w.events ? d.decision
         WHERE d.id = ANY($1) AND d.decision IN ('scale_up', 'scale_down')",
    )
    .bind(ids)
    .execute(tx)
    .await?;
    Ok(())
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
