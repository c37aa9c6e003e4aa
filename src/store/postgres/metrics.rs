//! Metrics written by the API (simulations) and the paged reads of an instance's
//! metrics and decisions, whose totals come from the instance row's counts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{Locked, PostgresStore, WindowRow};
use crate::model::{DecisionRecord, Metric, NewMetric};
use crate::scaling::Sample;
use crate::store::row::{DecisionRow, MetricRow};
use crate::store::{Metrics, Owned, Page, PageRequest, StoreError, StoreResult, Users};

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
pub(super) struct MetricColumns {
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
    pub(super) fn new(stored: &[Metric], new: &[NewMetric]) -> Self {
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
    pub(super) async fn insert(
        self,
        conn: &mut sqlx::PgConnection,
    ) -> StoreResult<Vec<(Uuid, i64)>> {
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
impl Metrics for PostgresStore {
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
        let stored: Vec<Metric> = metrics.iter().map(crate::store::to_stored).collect();
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
        let stored: Vec<Metric> = metrics.iter().map(crate::store::to_stored).collect();
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
}
