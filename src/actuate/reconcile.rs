//! One reconcile pass over one target, as pure functions of what is stored, what
//! the cloud said and the time: observe → gate → clamp → write only if different
//! → record. Level-triggered, like HPA: the target holds one desired level, not a
//! queue, so a burst of decisions collapses to the newest.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cloud::{CloudError, CloudResult, Failure, Observation};
use super::target::{OnDrift, TargetMode, TargetSpec};
use crate::events::EventKind;

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// The cloud has what the level asks for.
    InSync,
    /// A new desired value waits to be written (or a transient error is retried).
    Pending,
    /// Written; the group's InService instances have not reached it yet.
    Converging,
    /// The cloud is busy or paused; retried, never counted as a failure.
    Blocked,
    /// Will not be retried until the desired value or the target changes.
    Failed,
    /// Observe mode or a dry-run policy: what would be written is recorded only.
    Observing,
}

impl TargetState {
    pub const ALL: [TargetState; 6] = [
        TargetState::InSync,
        TargetState::Pending,
        TargetState::Converging,
        TargetState::Blocked,
        TargetState::Failed,
        TargetState::Observing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::InSync => "in_sync",
            TargetState::Pending => "pending",
            TargetState::Converging => "converging",
            TargetState::Blocked => "blocked",
            TargetState::Failed => "failed",
            TargetState::Observing => "observing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The engine makes no new decision while capacity is on its way.
    pub fn holds_decisions(self) -> bool {
        matches!(
            self,
            TargetState::Pending | TargetState::Blocked | TargetState::Converging
        )
    }
}

/// What happened to a target, as its history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActuationEvent {
    Applied,
    Converged,
    Blocked,
    Retrying,
    Failed,
    DriftAdopted,
    DriftEnforced,
    WouldApply,
}

impl ActuationEvent {
    pub const ALL: [ActuationEvent; 8] = [
        ActuationEvent::Applied,
        ActuationEvent::Converged,
        ActuationEvent::Blocked,
        ActuationEvent::Retrying,
        ActuationEvent::Failed,
        ActuationEvent::DriftAdopted,
        ActuationEvent::DriftEnforced,
        ActuationEvent::WouldApply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActuationEvent::Applied => "applied",
            ActuationEvent::Converged => "converged",
            ActuationEvent::Blocked => "blocked",
            ActuationEvent::Retrying => "retrying",
            ActuationEvent::Failed => "failed",
            ActuationEvent::DriftAdopted => "drift_adopted",
            ActuationEvent::DriftEnforced => "drift_enforced",
            ActuationEvent::WouldApply => "would_apply",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The webhook event kind this event is delivered as, if any.
    pub fn webhook_kind(self) -> Option<EventKind> {
        match self {
            ActuationEvent::Applied | ActuationEvent::DriftEnforced => {
                Some(EventKind::ActuationApplied)
            }
            ActuationEvent::Failed => Some(EventKind::ActuationFailed),
            ActuationEvent::DriftAdopted => Some(EventKind::ActuationDrift),
            _ => None,
        }
    }
}

/// What the store keeps of a target's progress (beside its state and desired
/// level, which are columns the engine and the worker query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The capacity the desired level maps to, after the cloud's bounds.
    pub desired_capacity: Option<i32>,
    /// The level and capacity last written (or adopted), and when.
    pub applied_level: Option<i32>,
    pub applied_capacity: Option<i32>,
    pub applied_at: Option<DateTime<Utc>>,
    /// What the cloud has (InService instances, `status.replicas`) and is asked
    /// for (its desired capacity), as last read.
    pub observed_capacity: Option<i32>,
    pub observed_desired: Option<i32>,
    pub observed_at: Option<DateTime<Utc>>,
    pub min_capacity: Option<i32>,
    pub max_capacity: Option<i32>,
    /// The capacity was clamped to the cloud's bounds.
    pub limited: bool,
    pub message: Option<String>,
    /// Consecutive transient failures.
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A target as the worker claims it, with what it needs of its instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTarget {
    pub id: Uuid,
    pub instance: Uuid,
    pub instance_id: String,
    /// The owner's email, checked against the cloud's owner marker.
    pub email: String,
    pub spec: TargetSpec,
    pub state: TargetState,
    pub desired_level: i32,
    pub progress: Progress,
    /// The instance's policy: a dry run actuates nothing.
    pub dry_run: bool,
    pub min_level: i32,
    pub max_level: i32,
    /// The lease this claim holds; the pass's record only lands while it does.
    pub lease_until: DateTime<Utc>,
}

/// Tuning of the reconcile passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Every target is read at least this often.
    pub resync: TimeDelta,
    /// A write not reached by InService instances within this is `failed`.
    pub converge_timeout: TimeDelta,
    /// How often a converging or blocked target is read again.
    pub poll: TimeDelta,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            resync: TimeDelta::seconds(60),
            converge_timeout: TimeDelta::seconds(900),
            poll: TimeDelta::seconds(5),
        }
    }
}

/// An outside change taken as the instance's new level.
#[derive(Debug, Clone, PartialEq)]
pub struct Adoption {
    pub level_before: i32,
    pub level_after: i32,
    pub reason: String,
}

/// A line of a target's history.
#[derive(Debug, Clone, PartialEq)]
pub struct ActuationRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub event: ActuationEvent,
    pub desired_capacity: Option<i32>,
    pub observed_capacity: Option<i32>,
    pub message: String,
}

/// What one pass writes back for a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub target: Uuid,
    pub instance: Uuid,
    pub state: TargetState,
    /// The desired level after the pass (an adoption changes it).
    pub desired_level: i32,
    /// The desired level the claim saw: a decision since then makes the target due at once.
    pub claimed_level: i32,
    pub progress: Progress,
    /// When to look again; `None` only after a new desired value or target.
    pub due_at: Option<DateTime<Utc>>,
    pub event: Option<ActuationRecord>,
    pub adoption: Option<Adoption>,
    /// A write landed: the instance's cooldown counts from here.
    pub cooldown_from: Option<DateTime<Utc>>,
    pub lease_until: DateTime<Utc>,
}

/// After observing: either done, or one write to try through the gate.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Done(Update),
    Write(Write),
}

/// A write the pass wants, and what it knows to finish the pass with.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub capacity: i32,
    /// Writing our value back over an outside change.
    pub enforcing_drift: bool,
    pub observation: Observation,
    /// The progress so far (observation recorded, bounds applied).
    pub progress: Progress,
}

fn event(
    at: DateTime<Utc>,
    event: ActuationEvent,
    desired: Option<i32>,
    observed: Option<i32>,
    message: String,
) -> Option<ActuationRecord> {
    Some(ActuationRecord {
        id: Uuid::now_v7(),
        at,
        event,
        desired_capacity: desired,
        observed_capacity: observed,
        message,
    })
}

/// Seconds before retry number `attempts` (1, 2, ...): 2, 4, 8, ... up to 5 minutes.
pub fn backoff(attempts: i32) -> TimeDelta {
    TimeDelta::seconds(2i64.saturating_pow(attempts.clamp(1, 20) as u32).min(300))
}

impl ClaimedTarget {
    fn update(&self, state: TargetState, progress: Progress, due: Option<DateTime<Utc>>) -> Update {
        Update {
            target: self.id,
            instance: self.instance,
            state,
            desired_level: self.desired_level,
            claimed_level: self.desired_level,
            progress,
            due_at: due,
            event: None,
            adoption: None,
            cooldown_from: None,
            lease_until: self.lease_until,
        }
    }

    /// Nothing may be written: observe mode or a dry-run policy.
    pub fn writes_nothing(&self) -> Option<&'static str> {
        if self.spec.mode == TargetMode::Observe {
            Some("observe mode: nothing is written")
        } else if self.dry_run {
            Some("the instance's policy is a dry run: nothing is written")
        } else {
            None
        }
    }

    /// A failed read or write: retried, blocked or failed by its class.
    pub fn on_error(&self, mut progress: Progress, err: &CloudError, now: DateTime<Utc>) -> Update {
        let desired = progress.desired_capacity;
        let observed = progress.observed_capacity;
        if err.failure.is_transient() {
            progress.attempts += 1;
            let next = now + backoff(progress.attempts);
            progress.next_attempt_at = Some(next);
            progress.message = Some(format!(
                "{} (attempt {}, retrying)",
                err.message, progress.attempts
            ));
            let mut update = self.update(TargetState::Pending, progress, Some(next));
            update.event = event(
                now,
                ActuationEvent::Retrying,
                desired,
                observed,
                err.message.clone(),
            );
            return update;
        }
        progress.attempts = 0;
        progress.next_attempt_at = None;
        if err.failure == Failure::Busy {
            let next = now + TimeDelta::seconds(10);
            progress.next_attempt_at = Some(next);
            return self.blocked(progress, err.message.clone(), now, next);
        }
        self.failed(progress, err.message.clone(), now)
    }

    fn blocked(
        &self,
        mut progress: Progress,
        why: String,
        now: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Update {
        let again = self.state == TargetState::Blocked && progress.message.as_deref() == Some(&why);
        progress.message = Some(why.clone());
        let (desired, observed) = (progress.desired_capacity, progress.observed_capacity);
        let mut update = self.update(TargetState::Blocked, progress, Some(next));
        if !again {
            update.event = event(now, ActuationEvent::Blocked, desired, observed, why);
        }
        update
    }

    fn failed(&self, mut progress: Progress, why: String, now: DateTime<Utc>) -> Update {
        progress.message = Some(why.clone());
        let (desired, observed) = (progress.desired_capacity, progress.observed_capacity);
        let mut update = self.update(TargetState::Failed, progress, None);
        update.event = event(now, ActuationEvent::Failed, desired, observed, why);
        update
    }

    /// The first half of a pass: what the read says to do.
    pub fn plan(
        &self,
        read: CloudResult<Observation>,
        timing: &Timing,
        now: DateTime<Utc>,
    ) -> Step {
        let mut progress = self.progress.clone();
        let o = match read {
            Ok(o) => o,
            Err(e) => return Step::Done(self.on_error(progress, &e, now)),
        };
        progress.observed_capacity = Some(o.current);
        progress.observed_desired = Some(o.desired);
        progress.observed_at = Some(now);
        progress.min_capacity = o.min;
        progress.max_capacity = o.max;
        progress.next_attempt_at = None;

        if let Some(why) = o.refusal(&self.spec.target, &self.email) {
            return Step::Done(self.failed(progress, format!("{why}; nothing was written"), now));
        }

        // The level's capacity within the cloud's bounds.
        let wanted = self.spec.sizing.capacity(self.desired_level);
        let capacity = wanted
            .max(o.min.unwrap_or(i32::MIN))
            .min(o.max.unwrap_or(i32::MAX));
        progress.limited = capacity != wanted;
        progress.desired_capacity = Some(capacity);
        let limit_note = progress.limited.then(|| {
            format!(
                "level {} asks for {wanted}, limited to {capacity} by the group's bounds ({}..{})",
                self.desired_level,
                o.min.map_or("-".into(), |v| v.to_string()),
                o.max.map_or("-".into(), |v| v.to_string()),
            )
        });

        if let Some(why) = self.writes_nothing() {
            progress.attempts = 0;
            let changed = self.state != TargetState::Observing
                || self.progress.desired_capacity != Some(capacity);
            progress.message = Some(match &limit_note {
                Some(note) => format!("{why}; {note}"),
                None => why.to_owned(),
            });
            let mut update =
                self.update(TargetState::Observing, progress, Some(now + timing.resync));
            if changed && o.desired != capacity {
                update.event = event(
                    now,
                    ActuationEvent::WouldApply,
                    Some(capacity),
                    Some(o.current),
                    format!(
                        "would set {} from {} to {capacity} (level {})",
                        self.spec.target.describe(),
                        o.desired,
                        self.desired_level
                    ),
                );
            }
            return Step::Done(update);
        }

        // Drift: the cloud is asked for something we neither applied nor wrote.
        let drifted = self
            .progress
            .applied_capacity
            .is_some_and(|a| a != o.desired)
            && self.progress.applied_level == Some(self.desired_level);
        if drifted {
            let applied = self.progress.applied_capacity.unwrap_or_default();
            match self.spec.on_drift {
                OnDrift::Adopt => {
                    return Step::Done(self.adopt(progress, &o, applied, now, timing));
                }
                OnDrift::Enforce => {
                    return self.want_write(progress, o, capacity, true, limit_note, timing, now);
                }
            }
        }

        if self.progress.applied_level != Some(self.desired_level)
            || self.progress.applied_capacity != Some(capacity)
        {
            return self.want_write(progress, o, capacity, false, limit_note, timing, now);
        }

        // Nothing to write: converging or in sync.
        progress.message = limit_note;
        Step::Done(self.settle(progress, &o, capacity, timing, now))
    }

    /// In sync once what the cloud has reaches the written value; failed when that
    /// takes longer than the timeout.
    fn settle(
        &self,
        mut progress: Progress,
        o: &Observation,
        capacity: i32,
        timing: &Timing,
        now: DateTime<Utc>,
    ) -> Update {
        if o.current == capacity {
            let mut update = self.update(
                TargetState::InSync,
                progress.clone(),
                Some(now + timing.resync),
            );
            if self.state == TargetState::Converging {
                update.event = event(
                    now,
                    ActuationEvent::Converged,
                    Some(capacity),
                    Some(o.current),
                    format!("{} reached {capacity}", self.spec.target.describe()),
                );
            }
            return update;
        }
        let since = progress.applied_at.unwrap_or(now);
        if now - since > timing.converge_timeout {
            let why = format!(
                "{} did not reach {capacity} within {} s (it has {}{})",
                self.spec.target.describe(),
                timing.converge_timeout.num_seconds(),
                o.current,
                o.busy
                    .as_ref()
                    .map(|b| format!("; {b}"))
                    .unwrap_or_default()
            );
            return self.failed(progress, why, now);
        }
        if progress.message.is_none() {
            progress.message = Some(format!(
                "waiting for {} to reach {capacity} (it has {})",
                self.spec.target.describe(),
                o.current
            ));
        }
        self.update(TargetState::Converging, progress, Some(now + timing.poll))
    }

    #[allow(clippy::too_many_arguments)]
    fn want_write(
        &self,
        mut progress: Progress,
        o: Observation,
        capacity: i32,
        enforcing_drift: bool,
        limit_note: Option<String>,
        timing: &Timing,
        now: DateTime<Utc>,
    ) -> Step {
        if o.desired == capacity {
            // Already there: take it as applied without a write.
            progress.applied_level = Some(self.desired_level);
            progress.applied_capacity = Some(capacity);
            progress.applied_at.get_or_insert(now);
            progress.message = limit_note;
            return Step::Done(self.settle(progress, &o, capacity, timing, now));
        }
        if o.desired == 0 {
            let why = format!(
                "{} has desired capacity 0, which is taken as an operator's pause; set it above 0 to resume",
                self.spec.target.describe()
            );
            return Step::Done(self.blocked(progress, why, now, now + timing.poll));
        }
        if let Some(busy) = &o.busy {
            let why = format!(
                "{}: {busy}; waiting before writing {capacity}",
                self.spec.target.describe()
            );
            return Step::Done(self.blocked(progress, why, now, now + timing.poll));
        }
        progress.message = limit_note;
        Step::Write(Write {
            capacity,
            enforcing_drift,
            observation: o,
            progress,
        })
    }

    fn adopt(
        &self,
        mut progress: Progress,
        o: &Observation,
        applied: i32,
        now: DateTime<Utc>,
        timing: &Timing,
    ) -> Update {
        let level = self
            .spec
            .sizing
            .level_for(o.desired, self.min_level, self.max_level);
        let why = format!(
            "{}'s desired capacity was changed from {applied} to {} outside the autoscaler; adopted as level {level}",
            self.spec.target.describe(),
            o.desired
        );
        progress.applied_level = Some(level);
        progress.applied_capacity = Some(o.desired);
        progress.applied_at = Some(now);
        progress.desired_capacity = Some(o.desired);
        progress.limited = false;
        progress.attempts = 0;
        progress.message = Some(why.clone());
        let state = if o.current == o.desired {
            TargetState::InSync
        } else {
            TargetState::Converging
        };
        let due = if state == TargetState::InSync {
            timing.resync
        } else {
            timing.poll
        };
        let mut update = self.update(state, progress, Some(now + due));
        update.desired_level = level;
        update.adoption = Some(Adoption {
            level_before: self.desired_level,
            level_after: level,
            reason: format!(
                "Adopted an outside change: {why} (level {} before)",
                self.desired_level
            ),
        });
        update.cooldown_from = Some(now);
        update.event = event(
            now,
            ActuationEvent::DriftAdopted,
            Some(o.desired),
            Some(o.current),
            why,
        );
        update
    }

    /// The second half of a pass: what the write's result means.
    pub fn after_write(
        &self,
        write: Write,
        result: CloudResult<()>,
        timing: &Timing,
        now: DateTime<Utc>,
    ) -> Update {
        let Write {
            capacity,
            enforcing_drift,
            observation: o,
            mut progress,
        } = write;
        match result {
            Err(e) => self.on_error(progress, &e, now),
            Ok(()) => {
                progress.attempts = 0;
                progress.applied_level = Some(self.desired_level);
                progress.applied_capacity = Some(capacity);
                progress.applied_at = Some(now);
                progress.observed_desired = Some(capacity);
                let what = format!(
                    "set {} from {} to {capacity} (level {})",
                    self.spec.target.describe(),
                    o.desired,
                    self.desired_level
                );
                let (kind, message) = if enforcing_drift {
                    (
                        ActuationEvent::DriftEnforced,
                        format!(
                            "{} had been changed outside the autoscaler; {what}",
                            self.spec.target.describe()
                        ),
                    )
                } else {
                    (ActuationEvent::Applied, what)
                };
                let mut update = if o.current == capacity {
                    self.update(TargetState::InSync, progress, Some(now + timing.resync))
                } else {
                    self.update(TargetState::Converging, progress, Some(now + timing.poll))
                };
                update.cooldown_from = Some(now);
                update.event = event(now, kind, Some(capacity), Some(o.current), message);
                update
            }
        }
    }
}

/// The reason of an evaluation held while a target waits for capacity.
pub fn hold_reason(spec: &TargetSpec, state: TargetState, progress: &Progress) -> String {
    let target = spec.target.describe();
    let capacity = progress.desired_capacity.map_or_else(
        || "the new capacity".to_owned(),
        |c| format!("capacity {c}"),
    );
    let what = match state {
        TargetState::Converging => format!(
            "{target} is converging to {capacity} (it has {})",
            progress.observed_capacity.unwrap_or_default()
        ),
        TargetState::Blocked => format!(
            "{target} is blocked: {}",
            progress.message.as_deref().unwrap_or("waiting")
        ),
        _ => format!("{target} has a change waiting to be written"),
    };
    format!("Waiting for the scale target: {what}; no new decision until it settles")
}
