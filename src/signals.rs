//! Signals out: the Prometheus metrics of one application instance.
//!
//! Each `Application` owns its own [`Signals`] (and so its own registry), so tests
//! that run many applications in one process never share counters. HTTP, the jobs
//! and the webhook worker record into it; `GET /metrics` renders it.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry, Unit};

/// The metric families the service exports, registered in a registry of their own.
pub struct Signals {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    http_in_flight: Gauge,
    job_ticks: Family<TickLabels, Counter>,
    job_duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    collection_errors: Family<SourceLabels, Counter>,
    monitored_instances: Gauge,
    pool_connections: Family<PoolLabels, Gauge>,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    actuations: Family<ActuationLabels, Counter>,
    cloud_requests: Family<CloudLabels, Counter>,
    scale_targets: Family<StateLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActuationLabels {
    kind: &'static str,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloudLabels {
    kind: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TickLabels {
    job: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    dry_run: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// 1 ms to ~16 s: requests answer in milliseconds, the timeout is 10 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// 1 ms to ~2 min: a tick over a large fleet takes seconds.
fn tick_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

/// A request in flight; see [`Signals::request_started`].
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The `route` label of requests no route matched, so unknown paths add no series.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Whether a tick succeeded, for `autoscaler_job_ticks_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    Ok,
    Error,
}

/// Registers metrics and hands back the handles `Signals` records through: a clone
/// shares the registered values.
struct Registrar<'a>(&'a mut Registry);

impl Registrar<'_> {
    fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        let metric = M::default();
        self.0.register(name, help, metric.clone());
        metric
    }

    /// A metric measured in seconds, built by the caller (histograms need their buckets).
    fn add_seconds<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0
            .register_with_unit(name, help, Unit::Seconds, metric.clone());
        metric
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}

impl Signals {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut metrics = Registrar(&mut registry);
        let http_requests = metrics.add(
            "autoscaler_http_requests",
            "HTTP requests answered, by method, route template and status",
        );
        let http_duration = metrics.add_seconds(
            "autoscaler_http_request_duration",
            "Time to answer an HTTP request, by method and route template",
            Family::new_with_constructor(request_buckets as fn() -> Histogram),
        );
        let http_in_flight = metrics.add(
            "autoscaler_http_requests_in_flight",
            "HTTP requests received and not yet answered (a scrape counts itself)",
        );
        let job_duration = metrics.add_seconds(
            "autoscaler_job_tick_duration",
            "Time one tick of a background job took",
            Family::new_with_constructor(tick_buckets as fn() -> Histogram),
        );
        let job_ticks = metrics.add(
            "autoscaler_job_ticks",
            "Ticks of the background jobs, by job and outcome (ok or error)",
        );
        let decisions = metrics.add("autoscaler_decisions", "Scaling evaluations, by decision");
        let collection_errors = metrics.add(
            "autoscaler_collection_errors",
            "Instances whose metrics could not be collected, by source",
        );
        let monitored_instances = metrics.add(
            "autoscaler_monitored_instances",
            "Instances with monitoring on, across all users",
        );
        let pool_connections = metrics.add(
            "autoscaler_db_pool_connections",
            "Database pool connections of this process, by state (idle or active)",
        );
        let webhook_deliveries = metrics.add(
            "autoscaler_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retrying or failed)",
        );
        let actuations = metrics.add(
            "autoscaler_actuations",
            "What the actuation worker did to scale targets, by target kind and event",
        );
        let cloud_requests = metrics.add(
            "autoscaler_cloud_requests",
            "Calls to the clouds' APIs, by target kind, operation and outcome (ok or the failure class)",
        );
        let scale_targets = metrics.add(
            "autoscaler_scale_targets",
            "Scale targets by state, across all users",
        );
        registry.register(
            "autoscaler_build",
            "The running build",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Signals {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            job_ticks,
            job_duration,
            decisions,
            collection_errors,
            monitored_instances,
            pool_connections,
            webhook_deliveries,
            actuations,
            cloud_requests,
            scale_targets,
        }
    }

    /// A request received: counted in flight until the guard is dropped (when it is
    /// answered, or abandoned).
    pub fn request_started(&self) -> InFlight {
        self.http_in_flight.inc();
        InFlight(self.http_in_flight.clone())
    }

    /// One answered request. `route` is the matched route template, or
    /// [`UNMATCHED_ROUTE`].
    pub fn record_http(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// One finished tick of `job`.
    pub fn record_tick(&self, job: &'static str, outcome: TickOutcome, took: Duration) {
        let outcome = match outcome {
            TickOutcome::Ok => "ok",
            TickOutcome::Error => "error",
        };
        self.job_ticks
            .get_or_create(&TickLabels { job, outcome })
            .inc();
        self.job_duration
            .get_or_create(&JobLabels { job })
            .observe(took.as_secs_f64());
    }

    /// `count` evaluations that ended in `decision` (`scale_up`, `scale_down`, `no_action`).
    pub fn record_decisions(&self, decision: &'static str, dry_run: bool, count: u64) {
        let counter = self
            .decisions
            .get_or_create(&DecisionLabels { decision, dry_run });
        counter.inc_by(count);
    }

    /// `count` failed collections from `source` (`mock` or `cloudwatch`).
    pub fn record_collection_errors(&self, source: &'static str, count: u64) {
        self.collection_errors
            .get_or_create(&SourceLabels { source })
            .inc_by(count);
    }

    /// One webhook delivery attempt and how it ended.
    pub fn record_webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One event of a scale target of `kind` (`aws_asg`, `kubernetes`).
    pub fn record_actuation(&self, kind: &'static str, event: &'static str) {
        self.actuations
            .get_or_create(&ActuationLabels { kind, event })
            .inc();
    }

    /// One call to a cloud's API and how it ended.
    pub fn record_cloud_request(
        &self,
        kind: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) {
        self.cloud_requests
            .get_or_create(&CloudLabels {
                kind,
                operation,
                outcome,
            })
            .inc();
    }

    /// The scale targets in each state, sampled at scrape time (every state is
    /// set, so a state that empties reads 0).
    pub fn set_target_states(&self, counts: &[(crate::actuate::TargetState, i64)]) {
        for state in crate::actuate::TargetState::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            self.scale_targets
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(n);
        }
    }

    /// Values sampled at scrape time.
    pub fn set_gauges(
        &self,
        monitored_instances: Option<i64>,
        pool: crate::store::PoolConnections,
    ) {
        if let Some(n) = monitored_instances {
            self.monitored_instances.set(n);
        }
        self.pool_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(i64::from(pool.idle));
        self.pool_connections
            .get_or_create(&PoolLabels { state: "active" })
            .set(i64::from(pool.size.saturating_sub(pool.idle)));
    }

    /// The Prometheus text exposition (format 0.0.4) of every family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The content type of [`Signals::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
