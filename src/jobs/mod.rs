//! The background loops, all run by [`every`]: metric collection, scaling
//! decisions, retention, actuation and webhook delivery.
//!
//! Ticks are aligned to wall-clock multiples of their interval and named by their
//! start (`slot`, in Unix seconds). Each tick claims its instances in batches
//! through the store, which hands every monitored instance to exactly one claimant
//! per slot, so any number of replicas can run these loops against one PostgreSQL
//! database and share the work. Each tick is a public function tests call directly.

pub mod actuation;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use uuid::Uuid;

use crate::actuate::reconcile::hold_reason;
use crate::actuate::target::TargetMode;
use crate::collect::{CollectTarget, Collected, MetricSource, PerKind, Sources};
use crate::policy::{Policy, PolicyMode};
use crate::scaling::record::ScalingOutcome;
use crate::scaling::{Decision, Sample};
use crate::signals::{Signals, TickOutcome};
use crate::store::{Collection, Retention, Scaling, Store, StoreResult, Targets, WebhookOutbox};
use crate::webhooks::{self, Deliverer};

/// Instances claimed, read and written per round trip.
pub const BATCH_SIZE: i64 = 1000;

/// Rows deleted per retention statement, keeping each delete short.
pub const PURGE_BATCH: i64 = 5000;

/// The tick `now` falls in, named by its start in Unix seconds (`now` rounded down
/// to a multiple of `interval`). Naming ticks by time rather than by count keeps the
/// slots stored on instances comparable when the interval is changed between runs.
pub fn slot_of(now: DateTime<Utc>, interval: Duration) -> i64 {
    let secs = interval.as_secs().max(1) as i64;
    now.timestamp().div_euclid(secs) * secs
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Instances this process handled.
    pub instances: usize,
    /// Metrics stored (collection) or decision rows written (scaling).
    pub rows: usize,
    /// Scale actions applied (scaling) or failed collections (collection).
    pub events: usize,
    /// Scaling, for the metrics: enforced evaluations that decided to scale up /
    /// down, and the same for dry runs; `dry_runs` counts every dry-run evaluation
    /// (the rest of `instances`, and of `dry_runs`, were `no_action`).
    pub scale_ups: usize,
    pub scale_downs: usize,
    pub dry_runs: usize,
    pub dry_scale_ups: usize,
    pub dry_scale_downs: usize,
    /// Collection: the failed collections per source kind (they add up to `events`).
    pub errors_by_source: PerKind<usize>,
}

/// Collects one sample set for every monitored instance not yet collected in the
/// tick `now` falls in, each from the source of its kind in `sources`.
pub async fn run_collection_tick(
    store: &dyn Collection,
    sources: &Sources,
    interval: Duration,
    now: DateTime<Utc>,
) -> StoreResult<TickReport> {
    let slot = slot_of(now, interval);
    let mut report = TickReport::default();
    loop {
        let targets = store.claim_collection(slot, BATCH_SIZE).await?;
        if targets.is_empty() {
            return Ok(report);
        }
        let count = targets.len();
        let mut groups: PerKind<Vec<CollectTarget>> = PerKind::default();
        for target in targets {
            groups[target.source].push(target);
        }
        // Every kind's group from its own source, all at once.
        let collected = futures::future::join_all(groups.iter().map(|(kind, group)| async move {
            (kind, collect_some(sources[kind].as_ref(), group, now).await)
        }))
        .await;

        let mut metrics = Vec::with_capacity(count);
        let mut statuses = Vec::with_capacity(count);
        for (kind, batch) in collected {
            for one in batch {
                report.instances += 1;
                let (status, samples) = one.into_record();
                if status.error.is_some() {
                    report.events += 1;
                    report.errors_by_source[kind] += 1;
                }
                statuses.push(status);
                metrics.extend(samples);
            }
        }
        report.rows += metrics.len();
        store.record_collection(&metrics, &statuses).await?;
    }
}

async fn collect_some(
    source: &dyn MetricSource,
    targets: &[CollectTarget],
    now: DateTime<Utc>,
) -> Vec<Collected> {
    if targets.is_empty() {
        Vec::new()
    } else {
        source.collect(targets, now).await
    }
}

/// Evaluates every monitored instance not yet evaluated in the tick `now` falls in,
/// each under its own policy, and persists decisions and level changes batch by
/// batch (see [`ScalingOutcome::decide`] and `scaling::record` for what is written).
pub async fn run_scaling_tick(
    store: &(impl Scaling + Targets + ?Sized),
    policy: &Policy,
    interval: Duration,
    now: DateTime<Utc>,
) -> StoreResult<TickReport> {
    let slot = slot_of(now, interval);
    let mut report = TickReport::default();
    loop {
        let candidates = store.claim_scaling(slot, BATCH_SIZE).await?;
        if candidates.is_empty() {
            return Ok(report);
        }
        let policies: Vec<Policy> = candidates
            .iter()
            .map(|c| Policy::resolve(policy, c.policy.as_ref()))
            .collect();
        // One window read per distinct window length (usually one or two).
        let mut by_length: HashMap<chrono::TimeDelta, Vec<Uuid>> = HashMap::new();
        for (c, p) in candidates.iter().zip(&policies) {
            by_length.entry(p.window).or_default().push(c.id);
        }
        let mut windows: HashMap<Uuid, Vec<Sample>> = HashMap::with_capacity(candidates.len());
        for (length, ids) in by_length {
            for (instance, sample) in store.windows(&ids, now - length, now).await? {
                windows.entry(instance).or_default().push(sample);
            }
        }
        // Instances whose scale target still waits for capacity decide nothing new,
        // so decisions don't stack on capacity that hasn't arrived.
        let ids: Vec<Uuid> = candidates.iter().map(|c| c.id).collect();
        let holding: HashMap<Uuid, String> = store
            .targets_of(&ids)
            .await?
            .into_iter()
            .filter(|t| t.state.holds_decisions() && t.spec.mode == TargetMode::Apply)
            .map(|t| (t.instance, hold_reason(&t.spec, t.state, &t.progress)))
            .collect();
        let outcomes: Vec<ScalingOutcome> = candidates
            .iter()
            .zip(&policies)
            .map(|(c, policy)| {
                let window = windows.get(&c.id).map(Vec::as_slice).unwrap_or_default();
                match holding.get(&c.id) {
                    Some(reason) if policy.mode == PolicyMode::Enforce => {
                        ScalingOutcome::waiting(c, window, now, reason)
                    }
                    _ => ScalingOutcome::decide(c, policy, window, now),
                }
            })
            .collect();
        report.instances += outcomes.len();
        report.rows += outcomes.iter().filter(|o| o.record).count();
        report.events += outcomes
            .iter()
            .filter(|o| o.evaluation.decision != Decision::NoAction)
            .count();
        let decided = |d, dry: bool| {
            outcomes
                .iter()
                .filter(|o| o.evaluation.decision == d && o.dry_run == dry)
                .count()
        };
        report.scale_ups += decided(Decision::ScaleUp, false);
        report.scale_downs += decided(Decision::ScaleDown, false);
        report.dry_runs += outcomes.iter().filter(|o| o.dry_run).count();
        report.dry_scale_ups += decided(Decision::ScaleUp, true);
        report.dry_scale_downs += decided(Decision::ScaleDown, true);
        for o in outcomes
            .iter()
            .filter(|o| o.evaluation.decision != Decision::NoAction)
        {
            tracing::info!(instance = %o.instance, decision = o.evaluation.decision.as_str(),
                level = o.evaluation.new_level, reason = %o.evaluation.reason, "scaling");
        }
        store.apply_scaling(&outcomes).await?;
    }
}

/// Deletes metrics and decisions past their retention, in short batches, and the
/// failed-login counters whose window has passed.
pub async fn run_retention_tick(
    store: &dyn Retention,
    metrics_days: i64,
    decisions_days: i64,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let metrics_before = now - TimeDelta::days(metrics_days);
    let decisions_before = now - TimeDelta::days(decisions_days);
    let mut total = store
        .purge_login_failures(now - crate::auth::LOGIN_WINDOW)
        .await?;
    loop {
        let deleted = store
            .purge(metrics_before, decisions_before, PURGE_BATCH)
            .await?;
        total += deleted;
        if deleted < PURGE_BATCH as u64 {
            return Ok(total);
        }
        // Let other writers in between batches.
        tokio::task::yield_now().await;
    }
}

/// Everything the loops need.
#[derive(Clone)]
pub struct Jobs {
    pub store: Arc<dyn Store>,
    /// The source each kind of instance is collected from.
    pub sources: Sources,
    pub policy: Policy,
    pub metrics_interval: Duration,
    pub scaling_interval: Duration,
    pub metrics_retention_days: i64,
    pub decisions_retention_days: i64,
    /// Where ticks report their durations, outcomes and counts.
    pub signals: Arc<Signals>,
    /// The scale-target worker's clouds, limits and timing.
    pub actuator: Arc<actuation::Actuator>,
    /// Sends the webhook outbox's events.
    pub deliverer: Deliverer,
}

/// How often the actuation worker looks for due targets: a decision reaches its
/// target within about this long.
pub const ACTUATION_POLL: Duration = Duration::from_millis(500);

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

// Each tick records what it did on the span `every` runs it in (see `tick_span`).
impl Jobs {
    async fn collect(self: Arc<Self>, now: DateTime<Utc>) -> StoreResult<()> {
        let report = run_collection_tick(
            self.store.as_ref(),
            &self.sources,
            self.metrics_interval,
            now,
        )
        .await?;
        for (kind, &errors) in report.errors_by_source.iter() {
            self.signals
                .record_collection_errors(kind.as_str(), errors as u64);
        }
        let span = Span::current();
        span.record("instances", report.instances);
        span.record("rows", report.rows);
        span.record("errors", report.events);
        Ok(())
    }

    async fn scale(self: Arc<Self>, now: DateTime<Utc>) -> StoreResult<()> {
        let report = run_scaling_tick(
            self.store.as_ref(),
            &self.policy,
            self.scaling_interval,
            now,
        )
        .await?;
        let r = &report;
        let enforced = r.instances - r.dry_runs;
        for (decision, dry_run, count) in [
            ("scale_up", false, r.scale_ups),
            ("scale_down", false, r.scale_downs),
            ("no_action", false, enforced - r.scale_ups - r.scale_downs),
            ("scale_up", true, r.dry_scale_ups),
            ("scale_down", true, r.dry_scale_downs),
            (
                "no_action",
                true,
                r.dry_runs - r.dry_scale_ups - r.dry_scale_downs,
            ),
        ] {
            self.signals
                .record_decisions(decision, dry_run, count as u64);
        }
        let span = Span::current();
        span.record("instances", r.instances);
        span.record("rows", r.rows);
        span.record("actions", r.events);
        span.record("dry_runs", r.dry_runs);
        Ok(())
    }

    async fn retain(self: Arc<Self>, now: DateTime<Utc>) -> StoreResult<()> {
        let deleted = run_retention_tick(
            self.store.as_ref(),
            self.metrics_retention_days,
            self.decisions_retention_days,
            now,
        )
        .await?;
        Span::current().record("deleted", deleted);
        Ok(())
    }

    async fn actuate(self: Arc<Self>, now: DateTime<Utc>) -> StoreResult<()> {
        let report =
            actuation::run_actuation_pass(self.store.as_ref(), &self.actuator, now).await?;
        let span = Span::current();
        span.record("instances", report.targets);
        span.record("actions", report.writes);
        span.record("rows", report.events);
        Ok(())
    }

    /// Starts the loops; they stop, each after its in-flight ticks, once `cancel` fires.
    pub fn spawn(self, cancel: CancellationToken) -> Vec<JoinHandle<()>> {
        let jobs = Arc::new(self);
        let job = |tick: fn(Arc<Jobs>, DateTime<Utc>) -> BoxFuture<'static, StoreResult<()>>| {
            let jobs = jobs.clone();
            move |now| tick(jobs.clone(), now)
        };
        let signals = &jobs.signals;
        vec![
            every(
                Schedule::one_at_a_time("collection", jobs.metrics_interval),
                signals,
                &cancel,
                job(|j, now| Box::pin(j.collect(now))),
            ),
            every(
                Schedule::one_at_a_time("scaling", jobs.scaling_interval),
                signals,
                &cancel,
                job(|j, now| Box::pin(j.scale(now))),
            ),
            every(
                Schedule::one_at_a_time("retention", RETENTION_INTERVAL),
                signals,
                &cancel,
                job(|j, now| Box::pin(j.retain(now))),
            ),
            every(
                Schedule::one_at_a_time("actuation", ACTUATION_POLL),
                signals,
                &cancel,
                job(|j, now| Box::pin(j.actuate(now))),
            ),
            spawn_webhook_delivery(
                jobs.store.clone(),
                jobs.deliverer.clone(),
                signals.clone(),
                &cancel,
            ),
        ]
    }
}

/// The webhook delivery loop: a tick every [`webhooks::POLL_INTERVAL`], up to
/// [`webhooks::CONCURRENT_TICKS`] at once (a slow receiver does not hold up the
/// next claim). Public so the webhook benchmark runs the loop the service runs.
pub fn spawn_webhook_delivery(
    store: Arc<dyn WebhookOutbox>,
    deliverer: Deliverer,
    signals: Arc<Signals>,
    cancel: &CancellationToken,
) -> JoinHandle<()> {
    let schedule = Schedule {
        job: "webhook_delivery",
        interval: webhooks::POLL_INTERVAL,
        concurrency: webhooks::CONCURRENT_TICKS,
    };
    every(schedule, &signals, cancel, move |now| {
        let (store, deliverer) = (store.clone(), deliverer.clone());
        Box::pin(async move {
            let report = webhooks::run_delivery_tick(store.as_ref(), &deliverer, now).await?;
            let span = Span::current();
            span.record("delivered", report.delivered);
            span.record("retrying", report.retrying);
            span.record("failed", report.failed);
            Ok(())
        })
    })
}

/// When and how a loop runs its job's ticks.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The `job` label of its ticks' metrics and spans.
    pub job: &'static str,
    pub interval: Duration,
    /// Ticks that may run at once; a boundary that finds them all busy is skipped.
    pub concurrency: usize,
}

impl Schedule {
    /// A job whose next tick waits for the last (the claim-by-slot jobs).
    pub fn one_at_a_time(job: &'static str, interval: Duration) -> Self {
        Schedule {
            job,
            interval,
            concurrency: 1,
        }
    }
}

/// The span one tick of `job` runs in. The tick records the figures that apply
/// to it: `instances` claimed, `rows` written (metrics or decisions), `errors`
/// (failed collections), `actions` and `dry_runs` (scaling), `deleted`
/// (retention), `delivered`, `retrying` and `failed` (webhook delivery); the loop
/// records `took_ms`.
fn tick_span(job: &'static str, slot: i64) -> Span {
    tracing::info_span!(
        "tick",
        job,
        slot,
        instances = Empty,
        rows = Empty,
        errors = Empty,
        actions = Empty,
        dry_runs = Empty,
        deleted = Empty,
        delivered = Empty,
        retrying = Empty,
        failed = Empty,
        took_ms = Empty,
    )
}

/// The one loop runner: runs `tick` at every wall-clock multiple of the schedule's
/// interval until `cancel` fires, then waits for the ticks in flight. A boundary
/// that finds `concurrency` ticks still running is skipped rather than piled up;
/// a failed tick is logged and the loop goes on. Every tick's outcome and duration
/// go to `autoscaler_job_ticks_total` / `_seconds` under the job's name.
pub fn every<F>(
    schedule: Schedule,
    signals: &Arc<Signals>,
    cancel: &CancellationToken,
    tick: F,
) -> JoinHandle<()>
where
    F: Fn(DateTime<Utc>) -> BoxFuture<'static, StoreResult<()>> + Send + Sync + 'static,
{
    let (signals, cancel) = (signals.clone(), cancel.clone());
    let Schedule {
        job,
        interval,
        concurrency,
    } = schedule;
    let concurrency = concurrency.max(1);
    tokio::spawn(async move {
        let running = Arc::new(Semaphore::new(concurrency));
        let period = interval.as_millis().max(1) as i64;
        loop {
            let now_ms = Utc::now().timestamp_millis();
            let wait = period - now_ms.rem_euclid(period);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            }
            let Ok(permit) = running.clone().try_acquire_owned() else {
                continue;
            };
            let now = Utc::now();
            let span = tick_span(job, slot_of(now, interval));
            let run = tick(now);
            let signals = signals.clone();
            let run = async move {
                let started = std::time::Instant::now();
                let result = run.instrument(span.clone()).await;
                let took = started.elapsed();
                let outcome = match &result {
                    Ok(_) => TickOutcome::Ok,
                    Err(_) => TickOutcome::Error,
                };
                signals.record_tick(job, outcome, took);
                span.record("took_ms", took.as_millis() as u64);
                span.in_scope(|| match result {
                    Ok(()) => tracing::debug!("tick done"),
                    Err(e) => tracing::error!(error = %e, "tick failed; will retry next tick"),
                });
                drop(permit);
            };
            if concurrency == 1 {
                run.await;
            } else {
                tokio::spawn(run);
            }
        }
        // Ticks in flight finish (and are recorded) before shutdown completes.
        let _ = running.acquire_many(concurrency as u32).await;
        tracing::info!(job, "stopped");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_tick_starts_and_stay_ordered_across_interval_changes() {
        let at = |secs| DateTime::from_timestamp(secs, 0).unwrap();
        let (five, thirty) = (Duration::from_secs(5), Duration::from_secs(30));
        // 1,000,020 is a multiple of 30 (and of 5).
        assert_eq!(slot_of(at(1_000_020), thirty), 1_000_020);
        assert_eq!(slot_of(at(1_000_049), thirty), 1_000_020);
        assert_eq!(slot_of(at(1_000_050), thirty), 1_000_050);
        assert_eq!(slot_of(at(1_000_049), five), 1_000_045);
        // After a switch from 5 s ticks to 30 s ones, the next tick still counts as new.
        assert!(slot_of(at(1_000_050), thirty) > slot_of(at(1_000_049), five));
    }
}
