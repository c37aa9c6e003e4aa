//! The scaling decision engine: a pure function of an instance's state, the policy,
//! the metrics of its window and the current time. No I/O and no clock reads, so
//! every rule can be tested with plain values.
//!
//! Rules, in the order they are applied (numbers are the default [`Policy`]'s; every
//! one is a field of it, and reasons quote the policy they were decided under):
//!
//! 1. only samples with a timestamp in `(now − window, now]` count;
//! 2. cooldown: no action within `policy.cooldown` of the last applied one;
//! 3. out of bounds: a level above `max_level` scales down one step, one below
//!    `min_level` scales up one step, whatever the metrics (a lowered maximum thus
//!    walks the instance down one cooldown at a time; above wins if the bounds cross);
//! 4. at least `min_samples` (3) samples are needed;
//! 5. sustained low load (CPU < 10% and memory < 20%) in ≥ 80% of the window scales down;
//! 6. sustained high load (CPU > 90% or memory > 90%) in ≥ 80% of the window scales up;
//! 7. otherwise the newest sample is tested against the IQR bounds of the window and
//!    its weighted votes decide (see `iqr.rs`);
//! 8. an action beyond levels `min_level..=max_level` becomes `no_action`.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

pub use crate::model::Decision;
use crate::model::OutlierType;

mod iqr;
mod reason;
pub mod record;
pub mod replay;
#[cfg(test)]
mod tests;

pub use crate::policy::{Policy, PolicyError, PolicyMode, PolicyPatch, VoteWeights};
use reason::{Bound, Cause, Hot, Load, Reason, Span};

/// What the engine needs to know about an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceState {
    /// Current scale level, normally `min_level..=max_level` of the policy.
    pub level: i32,
    /// When the last scale_up/scale_down was applied.
    pub last_action_at: Option<DateTime<Utc>>,
}

/// One metric sample as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Id of the stored metric, so an IQR outlier can be flagged.
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    /// CPU utilisation in percent.
    pub cpu: f64,
    /// Memory usage in percent; `None` when unknown (no CloudWatch agent), never 0.
    pub memory: Option<f64>,
    /// Bytes received in the sample's period.
    pub network_in: Option<f64>,
    /// Bytes sent in the sample's period.
    pub network_out: Option<f64>,
    /// Already flagged as an outlier by an earlier decision.
    pub is_outlier: bool,
}

/// Weighted IQR votes of the newest sample (see [`VoteWeights`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Votes {
    pub up: u32,
    pub down: u32,
}

/// What the engine decided, and why. Inside the engine the reason can still be a
/// `Reason` not yet written out (see `judge`); what leaves it is text.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<R = String> {
    pub decision: Decision,
    pub reason: R,
    /// The level after the decision (unchanged for no_action).
    pub new_level: i32,
    pub votes: Votes,
    /// The sample to flag as an outlier, if an IQR vote singled one out.
    pub outlier: Option<(Uuid, OutlierType)>,
    /// The newest sample of the window, whose values the decision row records.
    pub latest: Option<Sample>,
}

impl Evaluation<Reason> {
    /// This evaluation with its reason written out.
    fn written(self) -> Evaluation {
        // Presized: reasons run to 60-200 bytes, and growing from empty copies twice.
        let mut reason = String::with_capacity(192);
        let _ = write!(reason, "{}", self.reason);
        Evaluation {
            decision: self.decision,
            reason,
            new_level: self.new_level,
            votes: self.votes,
            outlier: self.outlier,
            latest: self.latest,
        }
    }
}

/// Capacity (cpu, memory and network alike) at a scale level: 100 × 1.5^(level − 1).
pub fn capacity_for_level(level: i32) -> f64 {
    100.0 * 1.5_f64.powi(level - 1)
}

/// Decides whether `state` needs more or less capacity given the samples in `window`
/// (any order; those outside (now − policy.window, now] are ignored).
pub fn decide_scaling(
    state: &InstanceState,
    policy: &Policy,
    window: &[Sample],
    now: DateTime<Utc>,
) -> Evaluation {
    judge(state, policy, window, now).written()
}

/// [`decide_scaling`] with the reason left as facts, for a caller that reads few of
/// the reasons it is given (a replay).
fn judge(
    state: &InstanceState,
    policy: &Policy,
    window: &[Sample],
    now: DateTime<Utc>,
) -> Evaluation<Reason> {
    let win = Window::new(window, policy.window, now);
    let tally = Tally::of(&win, policy);
    let latest = tally.newest;
    let no_action = |cause: Cause| Evaluation {
        decision: Decision::NoAction,
        reason: cause.into(),
        new_level: state.level,
        votes: Votes::default(),
        outlier: None,
        latest,
    };

    if let Some(at) = state.last_action_at
        && now.signed_duration_since(at) < policy.cooldown
    {
        return no_action(Cause::Cooldown {
            at,
            cooldown: policy.cooldown,
        });
    }

    if let Some(evaluation) = out_of_bounds(state, policy, latest) {
        return evaluation;
    }

    let span = Span(policy.window);
    let newest = match tally.newest {
        None => return no_action(Cause::NoMetrics(span)),
        Some(_) if tally.total < policy.min_samples => {
            return no_action(Cause::Insufficient {
                total: tally.total,
                needed: policy.min_samples,
                span,
            });
        }
        Some(newest) => newest,
    };

    let verdict = tally
        .sustained_down(&newest, span, policy)
        .or_else(|| tally.sustained_up(&newest, span, policy))
        .unwrap_or_else(|| iqr::evaluate(&win, &newest, policy));
    apply_level_bounds(state, policy, verdict, latest)
}

/// Rule 3: one step back towards `min_level..=max_level`, without looking at the data.
fn out_of_bounds(
    state: &InstanceState,
    policy: &Policy,
    latest: Option<Sample>,
) -> Option<Evaluation<Reason>> {
    let level = state.level;
    let (decision, cause, new_level) = if level > policy.max_level {
        let max = policy.max_level;
        (
            Decision::ScaleDown,
            Cause::AboveMax { level, max },
            level - 1,
        )
    } else if level < policy.min_level {
        let min = policy.min_level;
        (Decision::ScaleUp, Cause::BelowMin { level, min }, level + 1)
    } else {
        return None;
    };
    Some(Evaluation {
        decision,
        reason: cause.into(),
        new_level,
        votes: Votes::default(),
        outlier: None,
        latest,
    })
}

/// A decision before the level bounds are applied.
struct Verdict {
    decision: Decision,
    cause: Cause,
    votes: Votes,
    outlier: Option<(Uuid, OutlierType)>,
}

impl Verdict {
    /// A sustained-load decision: no IQR votes, no outlier to flag.
    fn sustained(decision: Decision, cause: Cause) -> Self {
        Verdict {
            decision,
            cause,
            votes: Votes::default(),
            outlier: None,
        }
    }
}

/// Turns an action the level range cannot take into `no_action`, keeping the votes and
/// the outlier: the sample is still statistically unusual even if nothing can be done.
fn apply_level_bounds(
    state: &InstanceState,
    policy: &Policy,
    verdict: Verdict,
    latest: Option<Sample>,
) -> Evaluation<Reason> {
    let Verdict {
        decision,
        cause,
        votes,
        outlier,
    } = verdict;
    let level = state.level;
    // `>=` / `<=` rather than `==` so that a policy whose bounds cross never moves a
    // level further out (and `level ± 1` can never overflow).
    let (decision, suppressed, new_level) = match decision {
        Decision::ScaleUp if level >= policy.max_level => (
            Decision::NoAction,
            Some(Bound::Max(policy.max_level)),
            level,
        ),
        Decision::ScaleDown if level <= policy.min_level => (
            Decision::NoAction,
            Some(Bound::Min(policy.min_level)),
            level,
        ),
        Decision::ScaleUp => (decision, None, level + 1),
        Decision::ScaleDown => (decision, None, level - 1),
        Decision::NoAction => (decision, None, level),
    };
    Evaluation {
        decision,
        reason: Reason { cause, suppressed },
        new_level,
        votes,
        outlier,
        latest,
    }
}

/// The samples of `(now − length, now]`, filtered lazily so that nothing is copied.
struct Window<'a> {
    samples: &'a [Sample],
    after: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl<'a> Window<'a> {
    fn new(samples: &'a [Sample], length: TimeDelta, now: DateTime<Utc>) -> Self {
        // Only reachable with absurd policies or clocks; saturate instead of panicking.
        let after = now
            .checked_sub_signed(length)
            .unwrap_or(if length > TimeDelta::zero() {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            });
        Window {
            samples,
            after,
            until: now,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &'a Sample> + '_ {
        self.samples
            .iter()
            .filter(|s| s.timestamp > self.after && s.timestamp <= self.until)
    }
}

/// Counts of one pass over the window for the sustained-load rules.
struct Tally {
    total: usize,
    low: usize,
    high_cpu: usize,
    high_memory: usize,
    high_any: usize,
    newest: Option<Sample>,
}

impl Tally {
    fn of(win: &Window<'_>, policy: &Policy) -> Self {
        let mut t = Tally {
            total: 0,
            low: 0,
            high_cpu: 0,
            high_memory: 0,
            high_any: 0,
            newest: None,
        };
        for s in win.iter() {
            t.total += 1;
            // Unknown memory is skipped, not read as 0: instances without the
            // CloudWatch agent report none and must still be able to scale down on CPU.
            let memory_low = s.memory.is_none_or(|m| m < policy.scale_down_memory_below);
            t.low += usize::from(s.cpu < policy.scale_down_cpu_below && memory_low);
            let cpu_high = s.cpu > policy.scale_up_cpu_above;
            let memory_high = s.memory.is_some_and(|m| m > policy.scale_up_memory_above);
            t.high_cpu += usize::from(cpu_high);
            t.high_memory += usize::from(memory_high);
            t.high_any += usize::from(cpu_high || memory_high);
            // Ties on the timestamp are broken by id so the input order never matters.
            if t.newest
                .is_none_or(|n| (s.timestamp, s.id) > (n.timestamp, n.id))
            {
                t.newest = Some(*s);
            }
        }
        t
    }

    /// Whether `count` of the window's samples reach the policy's sustained share.
    fn sustained(&self, count: usize, policy: &Policy) -> bool {
        self.total >= policy.min_samples
            && count >= needed_count(policy.sustained_ratio, self.total)
    }

    fn percent(&self, count: usize) -> f64 {
        count as f64 * 100.0 / self.total as f64
    }

    /// The share of hot (or idle) samples and the newest sample's load, as a reason
    /// quotes them.
    fn load(&self, count: usize, newest: &Sample, span: Span) -> Load {
        Load {
            percent: self.percent(count),
            span,
            cpu: newest.cpu,
            memory: newest.memory,
        }
    }

    fn sustained_down(&self, newest: &Sample, span: Span, policy: &Policy) -> Option<Verdict> {
        self.sustained(self.low, policy).then(|| {
            Verdict::sustained(
                Decision::ScaleDown,
                Cause::SustainedDown {
                    cpu_below: policy.scale_down_cpu_below,
                    memory_below: policy.scale_down_memory_below,
                    load: self.load(self.low, newest, span),
                },
            )
        })
    }

    /// The trigger is the share of samples hot on CPU *or* memory, and that share is the
    /// percentage shown. The wording names CPU when CPU alone reaches 80% (also when
    /// memory does too), memory when only memory alone does, and both when neither
    /// would have triggered on its own, so the text never credits a metric that did
    /// not get there by itself.
    fn sustained_up(&self, newest: &Sample, span: Span, policy: &Policy) -> Option<Verdict> {
        if !self.sustained(self.high_any, policy) {
            return None;
        }
        let hot = if self.sustained(self.high_cpu, policy) {
            Hot::Cpu
        } else if self.sustained(self.high_memory, policy) {
            Hot::Memory
        } else {
            Hot::Either
        };
        Some(Verdict::sustained(
            Decision::ScaleUp,
            Cause::SustainedUp {
                hot,
                cpu_above: policy.scale_up_cpu_above,
                memory_above: policy.scale_up_memory_above,
                load: self.load(self.high_any, newest, span),
            },
        ))
    }
}

/// Fewest of `total` samples that make up `ratio` of them. The small slack absorbs
/// float error in `ratio × total` (0.8 × 5 must need 4, not 5); a real share that
/// close above a whole count cannot be set through the validated API anyway.
pub(crate) fn needed_count(ratio: f64, total: usize) -> usize {
    let exact = ratio * total as f64;
    let needed = (exact - 1e-9 * exact.abs().max(1.0)).ceil();
    // At least one sample, and `as` saturates NaN and infinities for absurd ratios.
    (needed as usize).max(1)
}
