//! Metrics written by the API (simulations) and the paged reads of an instance's
//! metrics and decisions, whose totals come from the instance row's counts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use serde_json::json;
use uuid::Uuid;

use super::{SqliteStore, convert, decode_error, micros, uuid};
use crate::model::{DecisionRecord, Metric, NewMetric};
use crate::scaling::Sample;
use crate::store::row::{DecisionRow, Id, MetricRow, Time};
use crate::store::{Metrics, Owned, Page, PageRequest, StoreError, StoreResult};

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

/// Inserts metrics given as one JSON array of rows, in one statement (atomic; the
/// instances' counts follow by trigger). A CloudWatch datapoint already stored is
/// skipped. With `skip_gone` the metrics of an instance deleted since a tick claimed
/// it are skipped too (within the statement, which holds the write lock, no delete
/// can come in between); without it they fail the whole statement (`Gone`).
pub(super) async fn insert_metric_rows(
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
impl Metrics for SqliteStore {
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
        let stored: Vec<Metric> = metrics.iter().map(crate::store::to_stored).collect();
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
        let stored: Vec<Metric> = metrics.iter().map(crate::store::to_stored).collect();
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
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

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
