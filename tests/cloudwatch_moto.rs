//! `CloudWatchSource` against moto's CloudWatch server: the real wire protocol, real
//! aggregation. Start moto with `scripts/moto.sh PORT` and run
//! `AWS_ENDPOINT_URL=http://127.0.0.1:PORT cargo test --test cloudwatch_moto`.
//! Without `AWS_ENDPOINT_URL` the moto tests skip, or fail when `CI=true`.
//! Every run uses fresh random instance ids, so a long-lived moto server is fine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use autoscaler::collect::cloudwatch::CloudWatchSource;
use autoscaler::collect::{CollectTarget, MetricSource, SourceKind};
use autoscaler::model::{NewMetric, SampleSource as Source};
use autoscaler::testing::TestReads;
use aws_config::Region;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_cloudwatch::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_cloudwatch::error::BoxError;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

#[path = "support/moto.rs"]
mod moto;
use moto::{REGION, moto_endpoint, sdk_config};

/// A fresh EC2-shaped id (`i-` + 17 hex digits), unique per run.
fn instance_id() -> String {
    format!("i-{}", &Uuid::new_v4().simple().to_string()[..17])
}

fn target(instance_id: &str, last_collected_at: Option<DateTime<Utc>>) -> CollectTarget {
    CollectTarget {
        id: Uuid::new_v4(),
        instance_id: instance_id.to_owned(),
        region: REGION.to_owned(),
        source: SourceKind::CloudWatch,
        last_collected_at,
    }
}

/// A minute boundary ten minutes ago: inside the source's 15-minute window.
fn minute_ten_minutes_ago() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::minutes(10))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap()
}

fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

async fn put(
    client: &Client,
    namespace: &str,
    metric: &str,
    instance_id: &str,
    points: &[(DateTime<Utc>, f64)],
) {
    let data = points
        .iter()
        .map(|(at, value)| {
            MetricDatum::builder()
                .metric_name(metric)
                .dimensions(
                    Dimension::builder()
                        .name("InstanceId")
                        .value(instance_id)
                        .build(),
                )
                .timestamp(AwsDateTime::from_secs(at.timestamp()))
                .value(*value)
                .build()
        })
        .collect();
    client
        .put_metric_data()
        .namespace(namespace)
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("PutMetricData on moto");
}

fn sample(
    instance: Uuid,
    timestamp: DateTime<Utc>,
    cpu: f64,
    memory: Option<f64>,
    network_in: i64,
    network_out: i64,
) -> NewMetric {
    NewMetric {
        instance,
        timestamp,
        cpu_utilization: cpu,
        memory_usage: memory,
        network_in: Some(network_in),
        network_out: Some(network_out),
        source: Source::CloudWatch,
    }
}

/// Counts the HTTP requests a client sends (retries included).
#[derive(Debug, Clone, Default)]
struct CountRequests(Arc<AtomicUsize>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn collects_averaged_cpu_summed_network_and_agent_memory_then_nothing_new() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let config = sdk_config(&endpoint).await;
    let client = Client::new(&config);
    let (with_agent, without_agent) = (instance_id(), instance_id());
    let t0 = minute_ten_minutes_ago();
    let t1 = t0 + TimeDelta::minutes(1);
    let t2 = t0 + TimeDelta::minutes(2);
    // Two CPU values in t0's minute: the source asks for their Average.
    put(
        &client,
        "AWS/EC2",
        "CPUUtilization",
        &with_agent,
        &[(t0, 10.0), (t0 + seconds(20), 20.0), (t1, 30.5)],
    )
    .await;
    // Two NetworkIn values in t0's minute: the source asks for their Sum.
    put(
        &client,
        "AWS/EC2",
        "NetworkIn",
        &with_agent,
        &[(t0, 1000.0), (t0 + seconds(30), 23000.0), (t1, 1_024_000.0)],
    )
    .await;
    put(
        &client,
        "AWS/EC2",
        "NetworkOut",
        &with_agent,
        &[(t0, 500.0), (t1, 700.0)],
    )
    .await;
    put(
        &client,
        "CWAgent",
        "mem_used_percent",
        &with_agent,
        &[(t0, 40.5), (t1, 42.25)],
    )
    .await;
    put(
        &client,
        "AWS/EC2",
        "CPUUtilization",
        &without_agent,
        &[(t0, 50.0), (t1, 60.0)],
    )
    .await;
    put(
        &client,
        "AWS/EC2",
        "NetworkIn",
        &without_agent,
        &[(t0, 100.0), (t1, 200.0), (t2, 999.0)],
    )
    .await;
    put(
        &client,
        "AWS/EC2",
        "NetworkOut",
        &without_agent,
        &[(t0, 300.0), (t1, 400.0)],
    )
    .await;
    let source = CloudWatchSource::new(config);
    let targets = [target(&with_agent, None), target(&without_agent, None)];
    let now = t2 + seconds(90);

    let collected = source.collect(&targets, now).await;

    let (a, b) = (targets[0].id, targets[1].id);
    assert_eq!(collected[0].instance, a);
    assert_eq!(
        collected[0].result,
        Ok(vec![
            sample(a, t0, 15.0, Some(40.5), 24_000, 500),
            sample(a, t1, 30.5, Some(42.25), 1_024_000, 700),
        ])
    );
    assert_eq!(collected[1].instance, b);
    assert_eq!(
        collected[1].result,
        Ok(vec![
            sample(b, t0, 50.0, None, 100, 300),
            sample(b, t1, 60.0, None, 200, 400),
        ]),
        "no memory without the agent, and t2 has network but no CPU: no sample"
    );
    assert_eq!(source.calls_made(), 1);

    let caught_up = [
        target(&with_agent, Some(t1)),
        target(&without_agent, Some(t1)),
    ];
    let again = source.collect(&caught_up, now).await;

    assert_eq!(again[0].result, Ok(vec![]));
    assert_eq!(again[1].result, Ok(vec![]));
}

#[tokio::test]
async fn three_hundred_instances_in_one_region_take_three_calls() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let config = sdk_config(&endpoint).await;
    let client = Client::new(&config);
    let ids: Vec<String> = (0..300).map(|_| instance_id()).collect();
    let t0 = minute_ten_minutes_ago();
    // One instance at each end of each batch of 125.
    let seeded = [0, 124, 125, 299];
    for &i in &seeded {
        put(
            &client,
            "AWS/EC2",
            "CPUUtilization",
            &ids[i],
            &[(t0, i as f64)],
        )
        .await;
    }
    let requests = CountRequests::default();
    let counter = requests.clone();
    let source = CloudWatchSource::with_client_factory(move |region| {
        let config = aws_sdk_cloudwatch::config::Builder::from(&config)
            .region(Region::new(region.to_owned()))
            .interceptor(counter.clone())
            .build();
        Client::from_conf(config)
    });
    let targets: Vec<_> = ids.iter().map(|id| target(id, None)).collect();

    let collected = source.collect(&targets, t0 + TimeDelta::minutes(2)).await;

    assert_eq!(
        requests.0.load(Ordering::SeqCst),
        3,
        "HTTP requests sent to moto"
    );
    assert_eq!(source.calls_made(), 3);
    for (i, (target, collected)) in targets.iter().zip(&collected).enumerate() {
        assert_eq!(collected.instance, target.id);
        let expected = if seeded.contains(&i) {
            vec![NewMetric {
                network_in: None,
                network_out: None,
                ..sample(target.id, t0, i as f64, None, 0, 0)
            }]
        } else {
            vec![]
        };
        assert_eq!(collected.result, Ok(expected), "instance #{i}");
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_error_for_each_instance() {
    // Port 9 (discard) refuses connections here; needs no moto.
    let mut config = sdk_config("http://127.0.0.1:9").await.into_builder();
    config.set_retry_config(Some(aws_config::retry::RetryConfig::disabled()));
    let source = CloudWatchSource::new(config.build());
    let targets = [target(&instance_id(), None), target(&instance_id(), None)];

    let collected = source.collect(&targets, Utc::now()).await;

    for c in &collected {
        let error = c.result.as_ref().unwrap_err();
        assert!(
            error.starts_with("CloudWatch GetMetricData failed in us-east-1: dispatch failure"),
            "{error}"
        );
    }
}

/// The whole path: a monitored real instance in the store, a collection tick with
/// the CloudWatch source against moto, and what ends up stored. A second tick finds
/// nothing new: a datapoint is stored once.
#[tokio::test]
async fn a_collection_tick_stores_cloudwatch_datapoints_once() {
    use autoscaler::collect::Sources;
    use autoscaler::collect::mock::MockSource;
    use autoscaler::jobs::run_collection_tick;
    use autoscaler::store::{NewInstance, PoolSettings};

    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let config = sdk_config(&endpoint).await;
    let client = Client::new(&config);
    let cloud: Arc<dyn MetricSource> = Arc::new(CloudWatchSource::new(config));
    let sources = Sources::from_fn(|kind| match kind {
        SourceKind::Mock => Arc::new(MockSource),
        SourceKind::CloudWatch => cloud.clone(),
    });

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/cw.db", dir.path().display());
    let store = autoscaler::store::connect(
        &autoscaler::store::DatabaseUrl::parse(&url).unwrap(),
        &PoolSettings::default(),
    )
    .await
    .unwrap();
    let user = store
        .create_user("cw@example.com", "not-a-real-hash")
        .await
        .unwrap();
    let ec2_id = instance_id();
    let instance = store
        .create_instance(&NewInstance {
            user_id: user.id,
            instance_id: ec2_id.clone(),
            instance_type: "t3.micro".into(),
            region: REGION.into(),
            is_mock: false,
        })
        .await
        .unwrap();
    store.set_monitoring(instance.id, true).await.unwrap();

    let t0 = minute_ten_minutes_ago();
    let t1 = t0 + seconds(60);
    put(
        &client,
        "AWS/EC2",
        "CPUUtilization",
        &ec2_id,
        &[(t0, 30.0), (t1, 60.0)],
    )
    .await;
    put(
        &client,
        "AWS/EC2",
        "NetworkIn",
        &ec2_id,
        &[(t0, 1000.0), (t1, 2000.0)],
    )
    .await;
    put(
        &client,
        "AWS/EC2",
        "NetworkOut",
        &ec2_id,
        &[(t0, 500.0), (t1, 700.0)],
    )
    .await;

    let interval = std::time::Duration::from_secs(30);
    let now = Utc::now();
    let report = run_collection_tick(store.as_ref(), &sources, interval, now)
        .await
        .unwrap();
    assert_eq!((report.instances, report.rows, report.events), (1, 2, 0));

    let stored = store.recent_metrics(instance.id, 10).await.unwrap();
    let seen: Vec<_> = stored
        .iter()
        .map(|m| {
            (
                m.timestamp,
                m.cpu_utilization,
                m.memory_usage,
                m.network_in,
                m.network_out,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (t1, 60.0, None, Some(2000), Some(700)),
            (t0, 30.0, None, Some(1000), Some(500)),
        ]
    );
    let after = store
        .instance_by_instance_id(&ec2_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.last_collected_at, Some(t1));
    assert_eq!(after.last_collection_error, None);

    // The next tick reads the same minutes again (they are still within the window)
    // and stores nothing new.
    let report = run_collection_tick(store.as_ref(), &sources, interval, now + seconds(30))
        .await
        .unwrap();
    assert_eq!((report.instances, report.rows), (1, 0));
    assert_eq!(
        store.recent_metrics(instance.id, 10).await.unwrap().len(),
        2
    );
}
