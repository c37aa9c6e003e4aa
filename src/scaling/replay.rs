//! A pure replay (backtest) of the engine over a stored history.
//!
//! The replay runs the live scaling tick's logic at every tick of `(from, to]`:
//! ticks are at `from + k × interval` for `k = 1, 2, …` while `≤ to`, so `from` itself
//! is not evaluated (it is the moment the replay starts from, like a tick just taken),
//! and a tick exactly at `to` is. Each tick decides over the samples with a
//! timestamp in `(t − window, t]` and applies the outcome as the live job does: an
//! action changes the level and sets the last action time, and an outlier the
//! engine names is flagged whatever the decision (the stores flag it on `no_action`
//! too), so later windows see the replay's own flags. Flags stored on incoming
//! samples are ignored: they were written under the live policy, not this one.
//!
//! Samples are pushed one by one, oldest first, and only those a future window can
//! still hold are kept, so memory is bounded by the window, not the span.
//!
//! Speed: a decision depends on the time only through the window's contents and
//! whether the cooldown still runs. So a tick whose window, flags, state and cooldown
//! status are those of a previous `no_action` tick has that tick's outcome, and is not
//! evaluated again: with samples less frequent than ticks, that is most ticks.
//!
//! Time at a level: the span `(t_k, t_{k+1}]` is spent at the level after tick `k`,
//! the span from `from` to the first tick at the start level, and the rest up to
//! `to` at the level after the last tick, so the seconds add up to `to − from`.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Decision, InstanceState, Policy, Sample, capacity_for_level, judge};

/// Most actions a report lists; the summary still counts all of them.
pub const MAX_ACTIONS: usize = 1000;

/// One applied scale_up or scale_down.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayAction {
    pub timestamp: DateTime<Utc>,
    pub decision: Decision,
    pub reason: String,
    pub level_before: i32,
    pub level_after: i32,
}

/// What the replayed policy did over the whole span.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReplaySummary {
    pub scale_ups: u64,
    pub scale_downs: u64,
    pub final_level: i32,
    pub max_level_reached: i32,
    /// Whole seconds spent at each level (exact when `from`, `to` and the interval
    /// are whole seconds).
    #[schema(value_type = BTreeMap<String, i64>, example = json!({"1": 86000, "2": 400}))]
    pub seconds_at_level: BTreeMap<i32, i64>,
    /// Σ capacity_for_level(level) / 100 × hours spent at the level.
    pub capacity_hours: f64,
    /// Interval seconds of every tick whose newest window sample was above the
    /// policy's scale-up thresholds (CPU or memory).
    pub overload_seconds: i64,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    pub ticks: u64,
    pub summary: ReplaySummary,
    /// The first [`MAX_ACTIONS`] actions, oldest first.
    pub actions: Vec<ReplayAction>,
    pub actions_truncated: bool,
}

/// An incremental replay: feed it samples with [`Replay::push`], then [`Replay::finish`].
#[derive(Debug)]
pub struct Replay {
    policy: Policy,
    state: InstanceState,
    interval: TimeDelta,
    to: DateTime<Utc>,
    /// The next tick to run, `None` once past `to`.
    next_tick: Option<DateTime<Utc>>,
    /// Where the span at the current level began.
    level_since: DateTime<Utc>,
    buffer: VecDeque<Sample>,
    ticks: u64,
    scale_ups: u64,
    scale_downs: u64,
    max_level_reached: i32,
    time_at_level: BTreeMap<i32, TimeDelta>,
    overload_ticks: u64,
    actions: Vec<ReplayAction>,
    actions_truncated: bool,
    /// Bumped whenever the buffer's samples or their flags change.
    generation: u64,
    quiet: Option<Quiet>,
}

/// What a `no_action` tick depended on, and whether its newest sample was overloaded.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quiet {
    generation: u64,
    state: InstanceState,
    cooling: bool,
    overloaded: bool,
}

impl Replay {
    /// A replay of `policy` from `start_level` (with no action before `from`). A
    /// non-positive `interval`, or `to` not after `from`, gives no ticks at all.
    pub fn new(
        policy: Policy,
        start_level: i32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: TimeDelta,
    ) -> Self {
        let first = (interval > TimeDelta::zero())
            .then(|| from.checked_add_signed(interval))
            .flatten()
            .filter(|t| *t <= to);
        Replay {
            policy,
            state: InstanceState {
                level: start_level,
                last_action_at: None,
            },
            interval,
            to,
            next_tick: first,
            level_since: from,
            buffer: VecDeque::new(),
            ticks: 0,
            scale_ups: 0,
            scale_downs: 0,
            max_level_reached: start_level,
            time_at_level: BTreeMap::new(),
            overload_ticks: 0,
            actions: Vec::new(),
            actions_truncated: false,
            generation: 0,
            quiet: None,
        }
    }

    /// Accepts the next sample of the history, after running every tick before it.
    /// Samples must come in nondecreasing (timestamp, id) order.
    pub fn push(&mut self, mut sample: Sample) {
        while let Some(t) = self.next_tick.filter(|t| *t < sample.timestamp) {
            self.tick(t);
        }
        // Nothing after `to` is ever evaluated, so it need not be kept.
        if sample.timestamp <= self.to {
            debug_assert!(
                self.buffer
                    .back()
                    .is_none_or(|b| (b.timestamp, b.id) <= (sample.timestamp, sample.id)),
                "samples must be pushed in (timestamp, id) order"
            );
            sample.is_outlier = false;
            self.buffer.push_back(sample);
            self.generation += 1;
        }
    }

    /// Runs the remaining ticks up to `to` and reports.
    pub fn finish(mut self) -> ReplayReport {
        while let Some(t) = self.next_tick {
            self.tick(t);
        }
        let to = self.to;
        self.spend_until(to);
        let seconds_at_level = self
            .time_at_level
            .iter()
            .map(|(&level, d)| (level, d.num_seconds()))
            .collect();
        // One division at the end, so whole-second spans give the exact quotient.
        let capacity_ms: f64 = self
            .time_at_level
            .iter()
            .map(|(&level, d)| capacity_for_level(level) / 100.0 * d.num_milliseconds() as f64)
            .sum();
        let capacity_hours = capacity_ms / 3_600_000.0;
        let overload_seconds = self
            .interval
            .num_seconds()
            .saturating_mul(i64::try_from(self.overload_ticks).unwrap_or(i64::MAX));
        ReplayReport {
            ticks: self.ticks,
            summary: ReplaySummary {
                scale_ups: self.scale_ups,
                scale_downs: self.scale_downs,
                final_level: self.state.level,
                max_level_reached: self.max_level_reached,
                seconds_at_level,
                capacity_hours,
                overload_seconds,
            },
            actions: self.actions,
            actions_truncated: self.actions_truncated,
        }
    }

    /// Adds the time since `level_since` to the current level.
    fn spend_until(&mut self, t: DateTime<Utc>) {
        if t > self.level_since {
            *self
                .time_at_level
                .entry(self.state.level)
                .or_insert(TimeDelta::zero()) += t - self.level_since;
            self.level_since = t;
        }
    }

    fn tick(&mut self, t: DateTime<Utc>) {
        self.next_tick = t
            .checked_add_signed(self.interval)
            .filter(|next| *next <= self.to);
        self.ticks += 1;
        // Ticks only move forward, so a sample that left this window left every later one.
        let after = t.checked_sub_signed(self.policy.window);
        while self
            .buffer
            .front()
            .is_some_and(|s| after.is_some_and(|a| s.timestamp <= a))
        {
            self.buffer.pop_front();
            self.generation += 1;
        }
        // The same comparison as the engine's cooldown rule.
        let cooling = self
            .state
            .last_action_at
            .is_some_and(|at| t.signed_duration_since(at) < self.policy.cooldown);
        let key = (self.generation, self.state, cooling);
        if let Some(q) = self
            .quiet
            .filter(|q| (q.generation, q.state, q.cooling) == key)
        {
            self.overload_ticks += u64::from(q.overloaded);
            self.spend_until(t);
            return;
        }

        let window = self.buffer.make_contiguous();
        let evaluation = judge(&self.state, &self.policy, window, t);

        if let Some((id, _)) = evaluation.outlier {
            for s in window
                .iter_mut()
                .rev()
                .filter(|s| s.id == id && !s.is_outlier)
            {
                s.is_outlier = true;
                self.generation += 1;
            }
        }
        let overloaded = evaluation.latest.is_some_and(|s| {
            s.cpu > self.policy.scale_up_cpu_above
                || s.memory
                    .is_some_and(|m| m > self.policy.scale_up_memory_above)
        });
        self.overload_ticks += u64::from(overloaded);
        self.spend_until(t);
        if evaluation.decision == Decision::NoAction {
            // Keyed by the generation the decision saw: a flag it just set changes it.
            self.quiet = Some(Quiet {
                generation: key.0,
                state: self.state,
                cooling,
                overloaded,
            });
            return;
        }
        self.quiet = None;
        match evaluation.decision {
            Decision::ScaleUp => self.scale_ups += 1,
            _ => self.scale_downs += 1,
        }
        let level_before = self.state.level;
        self.state = InstanceState {
            level: evaluation.new_level,
            last_action_at: Some(t),
        };
        self.max_level_reached = self.max_level_reached.max(evaluation.new_level);
        if self.actions.len() < MAX_ACTIONS {
            self.actions.push(ReplayAction {
                timestamp: t,
                decision: evaluation.decision,
                // The only reasons a replay writes out: see `reason.rs`.
                reason: evaluation.reason.to_string(),
                level_before,
                level_after: evaluation.new_level,
            });
        } else {
            self.actions_truncated = true;
        }
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
