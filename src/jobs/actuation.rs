//! The actuation worker: claims due scale targets (a lease per target, so with
//! several replicas each change is written once), reads them in batches, runs each
//! through the reconcile pass, writes through the gate at a bounded rate per
//! region or cluster, and records what happened.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;

use crate::actuate::reconcile::{ActuationRecord, Step};
use crate::actuate::{
    ClaimedTarget, Cloud, CloudError, Clouds, Failure, TargetKind, Timing, Update, gate,
};
use crate::events;
use crate::policy::{Policy, PolicyMode};
use crate::scaling::record::ScalingWrites;
use crate::signals::Signals;
use crate::store::{ActuationNotice, DueTarget, Store, StoreResult};

/// Targets claimed per round trip.
pub const BATCH: i64 = 500;
/// How long a claim holds a target: longer than a pass takes, short enough that a
/// replica that died mid-pass is taken over quickly.
pub const LEASE: TimeDelta = TimeDelta::seconds(60);
/// Writes in flight at once (each still waits for its scope's rate).
const CONCURRENT_WRITES: usize = 64;

/// Everything a pass needs besides the store.
pub struct Actuator {
    pub clouds: Clouds,
    /// The server's default policy, under which instances without their own run.
    pub defaults: Policy,
    pub timing: Timing,
    pub limiter: WriteLimiter,
    pub signals: Arc<Signals>,
}

/// At most `per_second` writes a second to each region (AWS) or cluster
/// (Kubernetes), so a fleet-wide change can't trip the cloud's own throttling.
pub struct WriteLimiter(DefaultKeyedRateLimiter<String>);

impl WriteLimiter {
    pub fn new(per_second: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        WriteLimiter(RateLimiter::keyed(Quota::per_second(rate)))
    }

    async fn wait(&self, scope: &String) {
        self.0.until_key_ready(scope).await;
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub targets: usize,
    pub writes: usize,
    pub events: usize,
}

/// The `data` of an actuation's webhook event, fields in this order.
#[derive(Serialize)]
struct NoticeData<'a> {
    instance_id: &'a str,
    target: serde_json::Value,
    event: &'static str,
    desired_capacity: Option<i32>,
    observed_capacity: Option<i32>,
    message: &'a str,
    actuation_id: uuid::Uuid,
}

fn notice(due: &ClaimedTarget, record: &ActuationRecord) -> Option<ActuationNotice> {
    let kind = record.event.webhook_kind()?;
    let data = NoticeData {
        instance_id: &due.instance_id,
        target: due.spec.to_json(),
        event: record.event.as_str(),
        desired_capacity: record.desired_capacity,
        observed_capacity: record.observed_capacity,
        message: &record.message,
        actuation_id: record.id,
    };
    Some(ActuationNotice {
        actuation: record.id,
        instance: due.instance,
        kind,
        payload: events::body(kind.event_type(), record.at, &data),
        at: record.at,
    })
}

impl Actuator {
    /// A claimed row with its policy resolved.
    fn claimed(&self, due: DueTarget) -> ClaimedTarget {
        let policy = Policy::resolve(&self.defaults, due.policy.as_ref());
        ClaimedTarget {
            id: due.target.id,
            instance: due.target.instance,
            instance_id: due.instance_id,
            email: due.email,
            spec: due.target.spec,
            state: due.target.state,
            desired_level: due.target.desired_level,
            progress: due.target.progress,
            dry_run: policy.mode == PolicyMode::DryRun,
            min_level: policy.min_level,
            max_level: policy.max_level,
            lease_until: due.lease_until,
        }
    }

    /// Reads every target of `batch` through its cloud, in the fewest calls.
    async fn observe(
        &self,
        batch: &[ClaimedTarget],
    ) -> Vec<Result<crate::actuate::Observation, CloudError>> {
        let mut results: Vec<Option<Result<_, CloudError>>> = vec![None; batch.len()];
        for kind in [TargetKind::AwsAsg, TargetKind::Kubernetes] {
            let members: Vec<usize> = (0..batch.len())
                .filter(|&i| batch[i].spec.target.kind() == kind)
                .collect();
            if members.is_empty() {
                continue;
            }
            let answers = match self.clouds.of(kind) {
                Ok(cloud) => {
                    let refs: Vec<_> = members.iter().map(|&i| &batch[i].spec.target).collect();
                    cloud.observe(&refs).await
                }
                Err(e) => vec![Err(e); members.len()],
            };
            for (i, answer) in members.into_iter().zip(answers) {
                results[i] = Some(answer);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(CloudError::new(Failure::Unavailable, "not read"))))
            .collect()
    }

    /// One write through the gate, at the scope's rate.
    async fn write(
        &self,
        target: &ClaimedTarget,
        write: crate::actuate::reconcile::Write,
        now: DateTime<Utc>,
    ) -> Update {
        let result = match self.clouds.of(target.spec.target.kind()) {
            Err(e) => Err(e),
            Ok(cloud) => {
                self.limiter.wait(&target.spec.target.scope()).await;
                gate::write(cloud.as_ref() as &dyn Cloud, target, &write).await
            }
        };
        target.after_write(write, result, &self.timing, now)
    }
}

/// Reconciles every target due at `now`, batch by batch.
pub async fn run_actuation_pass(
    store: &dyn Store,
    actuator: &Actuator,
    now: DateTime<Utc>,
) -> StoreResult<PassReport> {
    use chrono::SubsecRound;
    let mut report = PassReport::default();
    loop {
        // Microseconds, as both databases keep it: the record compares the lease.
        let lease = (now + LEASE).trunc_subsecs(6);
        let due = store.claim_targets(now, lease, BATCH).await?;
        if due.is_empty() {
            return Ok(report);
        }
        let count = due.len();
        let batch: Vec<ClaimedTarget> = due.into_iter().map(|d| actuator.claimed(d)).collect();
        let reads = actuator.observe(&batch).await;

        let mut updates: Vec<Update> = Vec::with_capacity(count);
        let mut writes = Vec::new();
        for (target, read) in batch.iter().zip(reads) {
            match target.plan(read, &actuator.timing, now) {
                Step::Done(update) => updates.push(update),
                Step::Write(write) => writes.push((target, write)),
            }
        }
        report.writes += writes.len();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        for (target, write) in writes {
            if in_flight.len() >= CONCURRENT_WRITES
                && let Some(update) = in_flight.next().await
            {
                updates.push(update);
            }
            in_flight.push(actuator.write(target, write, now));
        }
        while let Some(update) = in_flight.next().await {
            updates.push(update);
        }

        // An adopted outside change is a decision: level, row and cooldown, through
        // the scaling write (which also moves the target's desired level).
        let by_id: HashMap<uuid::Uuid, &ClaimedTarget> = batch.iter().map(|t| (t.id, t)).collect();
        for update in &updates {
            if let Some(adoption) = &update.adoption
                && adoption.level_before != adoption.level_after
            {
                store
                    .write_scaling(&ScalingWrites::adopted(
                        update.instance,
                        by_id.get(&update.target).map_or("", |t| &t.instance_id),
                        adoption.level_before,
                        adoption.level_after,
                        &adoption.reason,
                        now,
                    ))
                    .await?;
            }
        }
        let notices: Vec<ActuationNotice> = updates
            .iter()
            .filter_map(|u| notice(by_id.get(&u.target)?, u.event.as_ref()?))
            .collect();
        let landed = store.record_targets(&updates, &notices, Utc::now()).await?;
        for update in updates.iter().filter(|u| landed.contains(&u.target)) {
            if let (Some(event), Some(target)) = (&update.event, by_id.get(&update.target)) {
                report.events += 1;
                let kind = target.spec.target.kind().as_str();
                actuator
                    .signals
                    .record_actuation(kind, event.event.as_str());
                tracing::info!(instance = %target.instance_id, target = %target.spec.target.describe(),
                    event = event.event.as_str(), message = %event.message, "actuation");
            }
        }
        report.targets += count;
        if (count as i64) < BATCH {
            return Ok(report);
        }
    }
}

/// A call log that counts into `signals`.
pub fn call_log(signals: Arc<Signals>) -> crate::actuate::cloud::CallLog {
    Arc::new(move |kind: TargetKind, op, outcome| {
        signals.record_cloud_request(kind.as_str(), op, outcome)
    })
}
