//! CloudWatch source: reads EC2 metrics with batched `GetMetricData` calls.
//!
//! Each instance needs four series at a 60 s period: `AWS/EC2` `CPUUtilization`
//! (Average), `NetworkIn` and `NetworkOut` (Sum: the bytes moved during the period, the
//! way the contract reports e.g. 1024000), and the CloudWatch agent's `CWAgent`
//! `mem_used_percent` (Average). One sample is made per timestamp that has a CPU
//! value; the other series fill in where they have a value at that timestamp.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::Region;
use aws_sdk_cloudwatch::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, StatusCode,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::stream::{self, StreamExt};
use tracing::warn;
use uuid::Uuid;

use super::{CollectTarget, Collected, MetricSource};
use crate::model::{NewMetric, SampleSource as Source};

/// Most queries one `GetMetricData` call accepts (an AWS limit).
pub const MAX_QUERIES_PER_CALL: usize = 500;
/// Instances read per call: each takes one query per series.
pub const INSTANCES_PER_CALL: usize = MAX_QUERIES_PER_CALL / Series::ALL.len();
/// Aggregation period of every series, in seconds.
pub const PERIOD_SECS: i32 = 60;
/// How far back a collection reads when nothing newer is stored.
pub const LOOKBACK: TimeDelta = TimeDelta::minutes(15);

/// Calls in flight at once across regions; CloudWatch allows 50 GetMetricData/s.
const MAX_CONCURRENT_CALLS: usize = 8;
/// Applied when the `SdkConfig` sets none, so an unreachable endpoint can't stall a tick.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// A batch reads at most ~8,000 datapoints, far below one page (100,800); this
/// only stops a server that keeps handing out tokens.
const MAX_PAGES: usize = 20;

/// One of the four series read per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Series {
    Cpu,
    NetworkIn,
    NetworkOut,
    Memory,
}

impl Series {
    const ALL: [Series; 4] = [
        Series::Cpu,
        Series::NetworkIn,
        Series::NetworkOut,
        Series::Memory,
    ];

    fn namespace(self) -> &'static str {
        match self {
            Series::Memory => "CWAgent",
            _ => "AWS/EC2",
        }
    }

    fn metric_name(self) -> &'static str {
        match self {
            Series::Cpu => "CPUUtilization",
            Series::NetworkIn => "NetworkIn",
            Series::NetworkOut => "NetworkOut",
            Series::Memory => "mem_used_percent",
        }
    }

    fn statistic(self) -> &'static str {
        match self {
            Series::NetworkIn | Series::NetworkOut => "Sum",
            Series::Cpu | Series::Memory => "Average",
        }
    }

    /// The query id suffix; ids must match `^[a-z][a-zA-Z0-9_]*$`.
    fn key(self) -> &'static str {
        match self {
            Series::Cpu => "cpu",
            Series::NetworkIn => "netin",
            Series::NetworkOut => "netout",
            Series::Memory => "mem",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Series::ALL.into_iter().find(|s| s.key() == key)
    }
}

/// `q{position in the batch}_{series}`.
fn query_id(position: usize, series: Series) -> String {
    format!("q{position}_{}", series.key())
}

fn parse_query_id(id: &str) -> Option<(usize, Series)> {
    let (position, key) = id.strip_prefix('q')?.split_once('_')?;
    Some((position.parse().ok()?, Series::from_key(key)?))
}

/// The four queries reading one instance, identified by its position in the batch.
fn queries_for(position: usize, instance_id: &str) -> [MetricDataQuery; 4] {
    Series::ALL.map(|series| {
        let metric = Metric::builder()
            .namespace(series.namespace())
            .metric_name(series.metric_name())
            .dimensions(
                Dimension::builder()
                    .name("InstanceId")
                    .value(instance_id)
                    .build(),
            )
            .build();
        MetricDataQuery::builder()
            .id(query_id(position, series))
            .metric_stat(
                MetricStat::builder()
                    .metric(metric)
                    .period(PERIOD_SECS)
                    .stat(series.statistic())
                    .build(),
            )
            .return_data(true)
            .build()
    })
}

fn floor_to_period(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(PERIOD_SECS.into()))
        .unwrap_or(t)
}

/// StartTime for a target: its newest stored sample, or `now - LOOKBACK` if that is
/// later, rounded down to the period. AWS rounds down itself; moto starts its buckets
/// exactly at StartTime, so rounding here keeps both on minute boundaries.
pub fn window_start(last_collected_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let earliest = now.checked_sub_signed(LOOKBACK).unwrap_or(now);
    let start = last_collected_at.map_or(earliest, |last| last.max(earliest));
    floor_to_period(start)
}

fn to_aws_time(t: DateTime<Utc>) -> AwsDateTime {
    // Chrono encodes a leap second as nanos >= 1e9, which the SDK type rejects.
    AwsDateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos().min(999_999_999))
}

fn from_aws_time(t: &AwsDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Why CloudWatch could not fully answer one query, if it said so.
fn query_problem(series: Series, result: &MetricDataResult) -> Option<String> {
    let failed = is_failed(result);
    if !failed && result.messages().is_empty() {
        return None;
    }
    let mut problem = format!("{} {}", series.namespace(), series.metric_name());
    if let Some(status) = result.status_code().filter(|_| failed) {
        problem.push_str(&format!(" {}", status.as_str()));
    }
    for message in result.messages() {
        problem.push_str(&format!(
            " ({}: {})",
            message.code().unwrap_or("-"),
            message.value().unwrap_or("-")
        ));
    }
    Some(problem)
}

fn is_failed(result: &MetricDataResult) -> bool {
    matches!(
        result.status_code(),
        Some(StatusCode::Forbidden | StatusCode::InternalError)
    )
}

/// Turns the query results of one instance into samples, oldest first.
///
/// `results` may hold several results per series (one per page). Samples at or before
/// `last_collected_at` are dropped: they are already stored. Only timestamps with a
/// CPU value make a sample; memory and network are `None` where their series has no
/// value there (no CloudWatch agent means no memory: unknown, never 0).
///
/// No CPU datapoint is `Ok(vec![])` (nothing new) unless CloudWatch reported a
/// problem with one of the queries; a failed CPU query is always an error.
pub fn to_metrics(
    instance: Uuid,
    results: &[MetricDataResult],
    last_collected_at: Option<DateTime<Utc>>,
) -> Result<Vec<NewMetric>, String> {
    #[derive(Default)]
    struct Row {
        cpu: Option<f64>,
        network_in: Option<f64>,
        network_out: Option<f64>,
        memory: Option<f64>,
    }

    let mut rows: BTreeMap<DateTime<Utc>, Row> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut cpu_failed = false;
    for result in results {
        let Some((_, series)) = result.id().and_then(parse_query_id) else {
            continue;
        };
        if let Some(problem) = query_problem(series, result) {
            cpu_failed |= series == Series::Cpu && is_failed(result);
            problems.push(problem);
        }
        for (timestamp, &value) in result.timestamps().iter().zip(result.values()) {
            let Some(timestamp) = from_aws_time(timestamp) else {
                continue;
            };
            if !value.is_finite() || last_collected_at.is_some_and(|last| timestamp <= last) {
                continue;
            }
            let row = rows.entry(timestamp).or_default();
            let slot = match series {
                Series::Cpu => &mut row.cpu,
                Series::NetworkIn => &mut row.network_in,
                Series::NetworkOut => &mut row.network_out,
                Series::Memory => &mut row.memory,
            };
            *slot = Some(value);
        }
    }

    let metrics: Vec<NewMetric> = rows
        .into_iter()
        .filter_map(|(timestamp, row)| {
            Some(NewMetric {
                instance,
                timestamp,
                cpu_utilization: row.cpu?,
                memory_usage: row.memory,
                // `as` saturates; byte counts are far below i64::MAX anyway.
                network_in: row.network_in.map(|v| v.round() as i64),
                network_out: row.network_out.map(|v| v.round() as i64),
                source: Source::CloudWatch,
            })
        })
        .collect();

    if cpu_failed || (metrics.is_empty() && !problems.is_empty()) {
        return Err(format!(
            "CloudWatch could not read the metrics: {}",
            problems.join("; ")
        ));
    }
    if !problems.is_empty() {
        warn!(%instance, problems = %problems.join("; "), "CloudWatch reported problems; those values are left empty");
    }
    Ok(metrics)
}

/// Up to [`INSTANCES_PER_CALL`] targets of one region, read with one (paginated) call.
#[derive(Debug)]
struct Batch {
    region: String,
    /// Indexes into the collected targets.
    members: Vec<usize>,
    /// The earliest window start of the members; later ones drop what they have.
    start: DateTime<Utc>,
}

/// Groups the targets by region and cuts each region into calls. Targets whose
/// window is empty (up to date) are left out: they have nothing new.
fn plan_batches(targets: &[CollectTarget], now: DateTime<Utc>) -> Vec<Batch> {
    let mut by_region: BTreeMap<&str, Vec<(DateTime<Utc>, usize)>> = BTreeMap::new();
    for (index, target) in targets.iter().enumerate() {
        let start = window_start(target.last_collected_at, now);
        if start < now {
            by_region
                .entry(&target.region)
                .or_default()
                .push((start, index));
        }
    }
    let mut batches = Vec::new();
    for (region, mut members) in by_region {
        // Similar windows share a call, so the shared StartTime fetches little that is dropped.
        members.sort();
        for chunk in members.chunks(INSTANCES_PER_CALL) {
            batches.push(Batch {
                region: region.to_owned(),
                start: chunk.first().map_or(now, |&(start, _)| start),
                members: chunk.iter().map(|&(_, index)| index).collect(),
            });
        }
    }
    batches
}

type ClientFactory = dyn Fn(&str) -> Client + Send + Sync;

/// Reads EC2 metrics from CloudWatch, one client per region.
pub struct CloudWatchSource {
    make_client: Box<ClientFactory>,
    clients: Mutex<HashMap<String, Client>>,
    calls: AtomicU64,
}

impl fmt::Debug for CloudWatchSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudWatchSource")
            .field("calls_made", &self.calls_made())
            .finish_non_exhaustive()
    }
}

impl CloudWatchSource {
    /// Uses `sdk_config` (credentials, endpoint, retries) with the region of each
    /// target. Adds a 30 s operation timeout unless the config sets one.
    pub fn new(sdk_config: SdkConfig) -> Self {
        let has_operation_timeout = sdk_config
            .timeout_config()
            .is_some_and(|t| t.operation_timeout().is_some());
        Self::with_client_factory(move |region| {
            let mut config = aws_sdk_cloudwatch::config::Builder::from(&sdk_config)
                .region(Region::new(region.to_owned()));
            if !has_operation_timeout {
                // Merged with the config's own timeouts (connect, read) by the SDK.
                config = config.timeout_config(
                    TimeoutConfig::builder()
                        .operation_timeout(OPERATION_TIMEOUT)
                        .build(),
                );
            }
            Client::from_conf(config.build())
        })
    }

    /// Loads the standard AWS configuration: credentials chain, `AWS_ENDPOINT_URL`,
    /// profile settings.
    pub async fn from_env() -> Self {
        Self::new(aws_config::defaults(BehaviorVersion::latest()).load().await)
    }

    /// Builds each region's client with `make_client` (called once per region).
    pub fn with_client_factory(
        make_client: impl Fn(&str) -> Client + Send + Sync + 'static,
    ) -> Self {
        CloudWatchSource {
            make_client: Box::new(make_client),
            clients: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// Uses `client` for every region (tests with a mocked client).
    pub fn with_client(client: Client) -> Self {
        Self::with_client_factory(move |_| client.clone())
    }

    /// `GetMetricData` requests sent so far, each page counted; SDK retries are not.
    pub fn calls_made(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn client_for(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(region) {
            return client.clone();
        }
        let client = (self.make_client)(region);
        clients.insert(region.to_owned(), client.clone());
        client
    }

    /// All results of one batch's queries, following pages.
    async fn get_metric_data(
        &self,
        region: &str,
        queries: Vec<MetricDataQuery>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<MetricDataResult>, String> {
        let client = self.client_for(region);
        let mut results = Vec::new();
        let mut next_token = None;
        for _ in 0..MAX_PAGES {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let output = client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(to_aws_time(start))
                .end_time(to_aws_time(end))
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "CloudWatch GetMetricData failed in {region}: {}",
                        DisplayErrorContext(&e)
                    )
                })?;
            for message in output.messages() {
                warn!(region, code = ?message.code(), message = ?message.value(), "CloudWatch GetMetricData message");
            }
            results.extend(output.metric_data_results.unwrap_or_default());
            match output.next_token {
                Some(token) if !token.is_empty() => next_token = Some(token),
                _ => return Ok(results),
            }
        }
        Err(format!(
            "CloudWatch GetMetricData in {region} returned more than {MAX_PAGES} pages"
        ))
    }

    /// Reads one batch; every member gets an outcome, keyed by its target index.
    async fn collect_batch(
        &self,
        targets: &[CollectTarget],
        batch: Batch,
        now: DateTime<Utc>,
    ) -> Vec<(usize, Result<Vec<NewMetric>, String>)> {
        let members: Vec<(usize, &CollectTarget)> = batch
            .members
            .iter()
            .filter_map(|&index| Some((index, targets.get(index)?)))
            .collect();
        let queries = members
            .iter()
            .enumerate()
            .flat_map(|(position, (_, target))| queries_for(position, &target.instance_id))
            .collect();

        let results = match self
            .get_metric_data(&batch.region, queries, batch.start, now)
            .await
        {
            Ok(results) => results,
            Err(error) => {
                warn!(region = %batch.region, instances = members.len(), %error, "CloudWatch collection failed");
                return members
                    .into_iter()
                    .map(|(index, _)| (index, Err(error.clone())))
                    .collect();
            }
        };

        let mut per_member: Vec<Vec<MetricDataResult>> = vec![Vec::new(); members.len()];
        for result in results {
            let position = result.id().and_then(parse_query_id).map(|(p, _)| p);
            match position.and_then(|p| per_member.get_mut(p)) {
                Some(slot) => slot.push(result),
                None => warn!(id = ?result.id(), "CloudWatch answered a query that was not asked"),
            }
        }
        members
            .into_iter()
            .zip(per_member)
            .map(|((index, target), results)| {
                let result = to_metrics(target.id, &results, target.last_collected_at);
                if let Err(error) = &result {
                    warn!(instance_id = %target.instance_id, region = %batch.region, %error, "CloudWatch collection failed");
                }
                (index, result)
            })
            .collect()
    }
}

#[async_trait]
impl MetricSource for CloudWatchSource {
    /// Reads every target's new samples in `ceil(n / 125)` calls per region (plus
    /// pages), a few at a time. Results follow `targets`' order.
    async fn collect(&self, targets: &[CollectTarget], now: DateTime<Utc>) -> Vec<Collected> {
        // Only complete periods are read: the current minute's bucket is still
        // filling (a partial NetworkIn sum would be stored and never corrected).
        let now = floor_to_period(now);
        let outcomes: Vec<_> = stream::iter(plan_batches(targets, now))
            .map(|batch| self.collect_batch(targets, batch, now))
            .buffer_unordered(MAX_CONCURRENT_CALLS)
            .collect()
            .await;
        // Up-to-date targets are in no batch: nothing new for them.
        let mut results: Vec<Result<Vec<NewMetric>, String>> = vec![Ok(Vec::new()); targets.len()];
        for (index, result) in outcomes.into_iter().flatten() {
            if let Some(slot) = results.get_mut(index) {
                *slot = result;
            }
        }
        targets
            .iter()
            .zip(results)
            .map(|(target, result)| Collected {
                instance: target.id,
                result,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_sdk_cloudwatch::operation::get_metric_data::{
        GetMetricDataError, GetMetricDataInput, GetMetricDataOutput,
    };
    use aws_sdk_cloudwatch::types::MessageData;
    use aws_sdk_cloudwatch::types::error::InvalidNextToken;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use chrono::TimeZone;

    use super::*;
    use crate::collect::SourceKind;

    fn at(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, hour, minute, second)
            .unwrap()
    }

    fn target(instance_id: &str, region: &str, last: Option<DateTime<Utc>>) -> CollectTarget {
        CollectTarget {
            id: Uuid::new_v4(),
            instance_id: instance_id.into(),
            region: region.into(),
            source: SourceKind::CloudWatch,
            last_collected_at: last,
        }
    }

    /// A result as CloudWatch sends it: newest first.
    fn result(id: &str, points: &[(DateTime<Utc>, f64)]) -> MetricDataResult {
        MetricDataResult::builder()
            .id(id)
            .set_timestamps(Some(
                points.iter().rev().map(|(t, _)| to_aws_time(*t)).collect(),
            ))
            .set_values(Some(points.iter().rev().map(|(_, v)| *v).collect()))
            .status_code(StatusCode::Complete)
            .build()
    }

    fn sample(
        instance: Uuid,
        timestamp: DateTime<Utc>,
        cpu: f64,
        memory: Option<f64>,
        network: Option<(i64, i64)>,
    ) -> NewMetric {
        NewMetric {
            instance,
            timestamp,
            cpu_utilization: cpu,
            memory_usage: memory,
            network_in: network.map(|n| n.0),
            network_out: network.map(|n| n.1),
            source: Source::CloudWatch,
        }
    }

    /// Datapoints per (instance id, metric name).
    type Points = HashMap<(String, String), Vec<(DateTime<Utc>, f64)>>;
    type Requests = Arc<Mutex<Vec<GetMetricDataInput>>>;

    /// A GetMetricData rule answering every query from `points` within the requested
    /// window (one result per query, like CloudWatch), recording each request.
    fn fake_cloudwatch(points: Points) -> (Rule, Requests) {
        let requests = Requests::default();
        let log = Arc::clone(&requests);
        let rule = mock!(Client::get_metric_data).then_compute_output(move |request| {
            log.lock().unwrap().push(request.clone());
            let start = request.start_time().and_then(from_aws_time).unwrap();
            let end = request.end_time().and_then(from_aws_time).unwrap();
            let results = request
                .metric_data_queries()
                .iter()
                .map(|query| {
                    let metric = query.metric_stat().and_then(MetricStat::metric).unwrap();
                    let key = (
                        metric.dimensions()[0].value().unwrap().to_owned(),
                        metric.metric_name().unwrap().to_owned(),
                    );
                    let series: Vec<_> = points
                        .get(&key)
                        .into_iter()
                        .flatten()
                        .filter(|(t, _)| (start..end).contains(t))
                        .copied()
                        .collect();
                    result(query.id().unwrap(), &series)
                })
                .collect();
            GetMetricDataOutput::builder()
                .set_metric_data_results(Some(results))
                .build()
        });
        (rule, requests)
    }

    /// One instance's datapoints: each metric's values fall on `times`, in order.
    fn series(instance: &str, times: &[DateTime<Utc>], metrics: &[(&str, &[f64])]) -> Points {
        metrics
            .iter()
            .map(|(metric, values)| {
                assert_eq!(values.len(), times.len(), "{metric}: one value per time");
                let points = times.iter().copied().zip(values.iter().copied());
                ((instance.to_owned(), metric.to_string()), points.collect())
            })
            .collect()
    }

    /// A single CPU datapoint of one instance.
    fn cpu(instance: &str, time: DateTime<Utc>, value: f64) -> Points {
        series(instance, &[time], &[("CPUUtilization", &[value])])
    }

    fn mocked_source(rule: &Rule) -> CloudWatchSource {
        CloudWatchSource::with_client(mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [rule]))
    }

    /// A source whose us-east-1 client answers by `east` and every other region's
    /// by `elsewhere`.
    fn two_region_source(east: Rule, elsewhere: Rule) -> CloudWatchSource {
        CloudWatchSource::with_client_factory(move |region| {
            let rule = if region == "us-east-1" {
                &east
            } else {
                &elsewhere
            };
            mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [rule])
        })
    }

    #[test]
    fn series_are_combined_by_timestamp_oldest_first() {
        let instance = Uuid::new_v4();
        let results = [
            result(
                "q0_cpu",
                &[
                    (at(12, 1, 0), 10.0),
                    (at(12, 2, 0), 20.5),
                    (at(12, 3, 0), 30.0),
                ],
            ),
            result(
                "q0_netin",
                &[(at(12, 2, 0), 1_024_000.4), (at(12, 3, 0), 2048.6)],
            ),
            result(
                "q0_netout",
                &[
                    (at(12, 2, 0), 512.0),
                    (at(12, 3, 0), 0.0),
                    (at(12, 4, 0), 99.0),
                ],
            ),
            result("q0_mem", &[(at(12, 1, 0), 41.5), (at(12, 3, 0), 43.0)]),
        ];

        let metrics = to_metrics(instance, &results, None).unwrap();

        let two = sample(instance, at(12, 2, 0), 20.5, None, Some((1_024_000, 512)));
        assert_eq!(
            metrics,
            vec![
                NewMetric {
                    network_in: None,
                    network_out: None,
                    ..sample(instance, at(12, 1, 0), 10.0, Some(41.5), None)
                },
                two,
                sample(instance, at(12, 3, 0), 30.0, Some(43.0), Some((2049, 0))),
            ],
            "12:04 has no CPU value, so no sample"
        );
    }

    #[test]
    fn memory_is_none_without_the_cloudwatch_agent() {
        let instance = Uuid::new_v4();
        let results = [
            result("q3_cpu", &[(at(12, 1, 0), 10.0)]),
            result("q3_netin", &[(at(12, 1, 0), 100.0)]),
            result("q3_netout", &[(at(12, 1, 0), 200.0)]),
            result("q3_mem", &[]),
        ];

        let metrics = to_metrics(instance, &results, None).unwrap();

        assert_eq!(
            metrics,
            vec![sample(instance, at(12, 1, 0), 10.0, None, Some((100, 200)))]
        );
    }

    #[test]
    fn samples_at_or_before_the_last_collected_one_are_dropped() {
        let instance = Uuid::new_v4();
        let results = [result(
            "q0_cpu",
            &[
                (at(12, 1, 0), 10.0),
                (at(12, 2, 0), 20.0),
                (at(12, 3, 0), 30.0),
            ],
        )];

        let metrics = to_metrics(instance, &results, Some(at(12, 2, 0))).unwrap();

        assert_eq!(
            metrics,
            vec![sample(instance, at(12, 3, 0), 30.0, None, None)]
        );
    }

    #[test]
    fn no_cpu_datapoint_is_no_new_data_rather_than_an_error() {
        let results = [
            result("q0_cpu", &[]),
            result("q0_mem", &[(at(12, 1, 0), 40.0)]),
        ];

        assert_eq!(to_metrics(Uuid::new_v4(), &results, None), Ok(vec![]));
        assert_eq!(to_metrics(Uuid::new_v4(), &[], None), Ok(vec![]));
    }

    #[test]
    fn a_failed_cpu_query_is_an_error_naming_the_metric_and_the_message() {
        let results = [MetricDataResult::builder()
            .id("q0_cpu")
            .status_code(StatusCode::Forbidden)
            .messages(
                MessageData::builder()
                    .code("AccessDenied")
                    .value("not allowed")
                    .build(),
            )
            .build()];

        assert_eq!(
            to_metrics(Uuid::new_v4(), &results, None),
            Err("CloudWatch could not read the metrics: AWS/EC2 CPUUtilization Forbidden (AccessDenied: not allowed)".into())
        );
    }

    #[test]
    fn a_failed_memory_query_leaves_memory_empty_when_cpu_has_data() {
        let instance = Uuid::new_v4();
        let failed_memory = MetricDataResult::builder()
            .id("q0_mem")
            .status_code(StatusCode::InternalError)
            .build();
        let results = [
            result("q0_cpu", &[(at(12, 1, 0), 10.0)]),
            failed_memory.clone(),
        ];

        assert_eq!(
            to_metrics(instance, &results, None),
            Ok(vec![sample(instance, at(12, 1, 0), 10.0, None, None)])
        );
        assert_eq!(
            to_metrics(instance, &[result("q0_cpu", &[]), failed_memory], None),
            Err(
                "CloudWatch could not read the metrics: CWAgent mem_used_percent InternalError"
                    .into()
            )
        );
    }

    #[test]
    fn the_window_starts_at_the_last_sample_or_fifteen_minutes_back_rounded_down() {
        let now = at(12, 30, 42);

        assert_eq!(window_start(None, now), at(12, 15, 0));
        assert_eq!(window_start(Some(at(12, 25, 0)), now), at(12, 25, 0));
        assert_eq!(window_start(Some(at(12, 25, 59)), now), at(12, 25, 0));
        assert_eq!(window_start(Some(at(11, 0, 0)), now), at(12, 15, 0));
    }

    #[test]
    fn query_ids_are_valid_and_map_back_to_the_instance() {
        for position in [0, 7, 124] {
            for query in queries_for(position, "i-0123456789abcdef0") {
                let id = query.id().unwrap();
                let mut chars = id.chars();
                assert!(chars.next().unwrap().is_ascii_lowercase(), "{id}");
                assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{id}");
                assert_eq!(parse_query_id(id).map(|(p, _)| p), Some(position));
            }
        }
    }

    #[tokio::test]
    async fn collect_reads_cpu_network_and_memory_of_each_instance_in_one_call() {
        let mut points = series(
            "i-agent",
            &[at(12, 1, 0), at(12, 2, 0)],
            &[
                ("CPUUtilization", &[11.0, 12.0]),
                ("NetworkIn", &[1000.0, 2000.0]),
                ("NetworkOut", &[10.0, 20.0]),
                ("mem_used_percent", &[45.5, 46.5]),
            ],
        );
        points.extend(series(
            "i-plain",
            &[at(12, 2, 0)],
            &[
                ("CPUUtilization", &[70.0]),
                ("NetworkIn", &[5.0]),
                ("NetworkOut", &[6.0]),
            ],
        ));
        let (rule, requests) = fake_cloudwatch(points);
        let source = mocked_source(&rule);
        let agent = target("i-agent", "us-east-1", Some(at(12, 1, 0)));
        let plain = target("i-plain", "us-east-1", None);
        let now = at(12, 3, 30);

        let collected = source.collect(&[agent.clone(), plain.clone()], now).await;

        let only = |target: &CollectTarget, sample| Collected {
            instance: target.id,
            result: Ok(vec![sample]),
        };
        assert_eq!(
            collected,
            vec![
                only(
                    &agent,
                    sample(agent.id, at(12, 2, 0), 12.0, Some(46.5), Some((2000, 20)))
                ),
                only(
                    &plain,
                    sample(plain.id, at(12, 2, 0), 70.0, None, Some((5, 6)))
                ),
            ]
        );
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(source.calls_made(), 1);
        let request = &requests.lock().unwrap()[0];
        assert_eq!(request.metric_data_queries().len(), 8);
        assert_eq!(
            request.start_time(),
            Some(&to_aws_time(at(11, 48, 0))),
            "the older window of the two"
        );
        assert_eq!(
            request.end_time(),
            Some(&to_aws_time(floor_to_period(now))),
            "only complete minutes are read"
        );
        let cpu = request.metric_data_queries()[0].metric_stat().unwrap();
        assert_eq!((cpu.period(), cpu.stat()), (Some(60), Some("Average")));
    }

    #[tokio::test]
    async fn three_hundred_instances_in_one_region_take_three_calls() {
        let ids: Vec<String> = (0..300).map(|i| format!("i-{i:017x}")).collect();
        let points = ids
            .iter()
            .enumerate()
            .flat_map(|(i, id)| cpu(id, at(12, 1, 0), i as f64))
            .collect();
        let (rule, requests) = fake_cloudwatch(points);
        let source = mocked_source(&rule);
        let targets: Vec<_> = ids.iter().map(|id| target(id, "us-east-1", None)).collect();

        let collected = source.collect(&targets, at(12, 3, 0)).await;

        assert_eq!(rule.num_calls(), 3);
        assert_eq!(source.calls_made(), 3);
        let mut sizes: Vec<_> = requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.metric_data_queries().len())
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![200, 500, 500]);
        for (i, (target, collected)) in targets.iter().zip(&collected).enumerate() {
            assert_eq!(collected.instance, target.id);
            assert_eq!(
                collected.result,
                Ok(vec![sample(target.id, at(12, 1, 0), i as f64, None, None)])
            );
        }
    }

    #[tokio::test]
    async fn each_region_is_read_through_its_own_client() {
        let (east, east_requests) = fake_cloudwatch(cpu("i-east", at(12, 1, 0), 1.0));
        let (west, west_requests) = fake_cloudwatch(cpu("i-west", at(12, 1, 0), 2.0));
        let source = two_region_source(east.clone(), west.clone());
        let targets = [
            target("i-east", "us-east-1", None),
            target("i-west", "eu-west-1", None),
            target("i-east-2", "us-east-1", None),
        ];

        let collected = source.collect(&targets, at(12, 3, 0)).await;

        assert_eq!((east.num_calls(), west.num_calls()), (1, 1));
        let queried = |requests: &Requests| -> Vec<String> {
            requests.lock().unwrap()[0]
                .metric_data_queries()
                .iter()
                .filter_map(|q| {
                    q.metric_stat()?.metric()?.dimensions()[0]
                        .value()
                        .map(str::to_owned)
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        assert_eq!(queried(&east_requests), vec!["i-east", "i-east-2"]);
        assert_eq!(queried(&west_requests), vec!["i-west"]);
        let results: Vec<_> = collected.into_iter().map(|c| c.result).collect();
        assert_eq!(
            results,
            vec![
                Ok(vec![sample(targets[0].id, at(12, 1, 0), 1.0, None, None)]),
                Ok(vec![sample(targets[1].id, at(12, 1, 0), 2.0, None, None)]),
                Ok(vec![]),
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_call_is_an_error_for_every_instance_of_that_call_only() {
        let failing = mock!(Client::get_metric_data).then_error(|| {
            GetMetricDataError::InvalidNextToken(
                InvalidNextToken::builder().message("token expired").build(),
            )
        });
        let (working, _) = fake_cloudwatch(cpu("i-west", at(12, 1, 0), 2.0));
        let source = two_region_source(failing.clone(), working);
        let targets = [
            target("i-a", "us-east-1", None),
            target("i-west", "eu-west-1", None),
            target("i-b", "us-east-1", None),
        ];

        let collected = source.collect(&targets, at(12, 3, 0)).await;

        assert_eq!(failing.num_calls(), 1);
        for failed in [&collected[0], &collected[2]] {
            let error = failed.result.as_ref().unwrap_err();
            assert!(
                error.starts_with("CloudWatch GetMetricData failed in us-east-1: "),
                "{error}"
            );
            assert!(error.contains("token expired"), "{error}");
        }
        assert_eq!(
            collected[1].result,
            Ok(vec![sample(targets[1].id, at(12, 1, 0), 2.0, None, None)])
        );
    }

    #[tokio::test]
    async fn pages_are_followed_and_merged() {
        let first_page = mock!(Client::get_metric_data)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(result("q0_cpu", &[(at(12, 2, 0), 20.0)]))
                    .next_token("page-2")
                    .build()
            });
        let second_page = mock!(Client::get_metric_data)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(result("q0_cpu", &[(at(12, 1, 0), 10.0)]))
                    .metric_data_results(result("q0_mem", &[(at(12, 1, 0), 50.0)]))
                    .build()
            });
        let source = CloudWatchSource::with_client(mock_client!(
            aws_sdk_cloudwatch,
            RuleMode::MatchAny,
            [&first_page, &second_page]
        ));
        let only = target("i-a", "us-east-1", None);

        let collected = source
            .collect(std::slice::from_ref(&only), at(12, 3, 0))
            .await;

        assert_eq!((first_page.num_calls(), second_page.num_calls()), (1, 1));
        assert_eq!(source.calls_made(), 2);
        assert_eq!(
            collected[0].result,
            Ok(vec![
                sample(only.id, at(12, 1, 0), 10.0, Some(50.0), None),
                sample(only.id, at(12, 2, 0), 20.0, None, None),
            ])
        );
    }

    #[tokio::test]
    async fn an_up_to_date_instance_is_not_queried() {
        let (rule, _) = fake_cloudwatch(Points::new());
        let source = mocked_source(&rule);

        let collected = source
            .collect(
                &[target("i-a", "us-east-1", Some(at(12, 3, 0)))],
                at(12, 3, 0),
            )
            .await;

        assert_eq!(collected[0].result, Ok(vec![]));
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test]
    async fn missing_credentials_are_an_error_not_a_panic() {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let source = CloudWatchSource::new(config);

        let collected = source
            .collect(&[target("i-a", "eu-west-1", None)], Utc::now())
            .await;

        let error = collected[0].result.as_ref().unwrap_err();
        assert!(
            error.starts_with("CloudWatch GetMetricData failed in eu-west-1: "),
            "{error}"
        );
    }
}
