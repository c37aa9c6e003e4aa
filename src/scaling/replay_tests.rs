//! Tick times, time at each level, truncation, and the replay against a naive loop.

use chrono::TimeZone;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::scaling::decide_scaling;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(s)
}

/// A sample `at` seconds after `t0()`; ids follow `n` so that pushes stay ordered.
fn sample(n: u128, at: i64, cpu: f64, memory: f64) -> Sample {
    Sample {
        id: Uuid::from_u128(n),
        timestamp: secs(at),
        cpu,
        memory: Some(memory),
        network_in: None,
        network_out: None,
        is_outlier: false,
    }
}

/// Hot samples (CPU 95%) every 10 s over `from..=to` seconds.
fn hot(from: i64, to: i64) -> Vec<Sample> {
    (from..=to)
        .step_by(10)
        .enumerate()
        .map(|(i, at)| sample(i as u128 + 1, at, 95.0, 50.0))
        .collect()
}

fn replay(
    policy: Policy,
    start_level: i32,
    to: i64,
    interval: i64,
    history: &[Sample],
) -> ReplayReport {
    let mut r = Replay::new(
        policy,
        start_level,
        t0(),
        secs(to),
        TimeDelta::seconds(interval),
    );
    for s in history {
        r.push(*s);
    }
    r.finish()
}

fn times(report: &ReplayReport) -> Vec<i64> {
    report
        .actions
        .iter()
        .map(|a| (a.timestamp - t0()).num_seconds())
        .collect()
}

#[test]
fn ticks_are_one_interval_apart_after_from_up_to_and_including_to() {
    let policy = Policy {
        cooldown: TimeDelta::zero(),
        ..Policy::default()
    };
    let history = hot(-60, 0);

    let up_to_60 = replay(policy.clone(), 1, 60, 15, &history);
    let up_to_59 = replay(policy, 1, 59, 15, &history);

    assert_eq!(up_to_60.ticks, 4);
    assert_eq!(times(&up_to_60), vec![15, 30, 45, 60]);
    assert_eq!(up_to_59.ticks, 3);
    assert_eq!(times(&up_to_59), vec![15, 30, 45]);
}

#[test]
fn a_tick_sees_a_sample_taken_at_its_time_and_not_one_a_window_old() {
    let policy = Policy {
        window: TimeDelta::seconds(15),
        min_samples: 1,
        cooldown: TimeDelta::zero(),
        ..Policy::default()
    };
    // At tick 15 only the sample at 15 counts; at tick 30 it is exactly one window old.
    let history = [sample(1, 15, 95.0, 50.0)];

    let report = replay(policy, 3, 45, 15, &history);

    assert_eq!(report.ticks, 3);
    assert_eq!(times(&report), vec![15]);
    assert_eq!(report.summary.final_level, 4);
}

#[test]
fn time_at_each_level_adds_up_to_the_span() {
    let policy = Policy {
        cooldown: TimeDelta::seconds(30),
        ..Policy::default()
    };
    let history = hot(-60, 200);

    let report = replay(policy, 1, 100, 15, &history);

    // Ticks 15..=90: up at 15, 45 and 75; 30, 60 and 90 are in cooldown.
    assert_eq!(report.ticks, 6);
    assert_eq!(times(&report), vec![15, 45, 75]);
    assert_eq!(
        report.summary,
        ReplaySummary {
            scale_ups: 3,
            scale_downs: 0,
            final_level: 4,
            max_level_reached: 4,
            seconds_at_level: BTreeMap::from([(1, 15), (2, 30), (3, 30), (4, 25)]),
            capacity_hours: (15_000.0 + 45_000.0 + 67_500.0 + 84_375.0) / 3_600_000.0,
            overload_seconds: 90,
        }
    );
    assert_eq!(
        report.actions[1],
        ReplayAction {
            timestamp: secs(45),
            decision: Decision::ScaleUp,
            reason: "Sustained scale up: CPU > 90% for 100.0% of last 5 minutes \
                     (Current: 95.00%)"
                .to_owned(),
            level_before: 2,
            level_after: 3,
        }
    );
}

/// One sample at every tick, alternately hot and idle, so that every tick acts.
fn flip_flop(ticks: i64) -> (Policy, Vec<Sample>) {
    let policy = Policy {
        window: TimeDelta::seconds(15),
        min_samples: 1,
        cooldown: TimeDelta::zero(),
        max_level: 2,
        ..Policy::default()
    };
    let history = (1..=ticks)
        .map(|k| {
            let cpu = if k % 2 == 1 { 95.0 } else { 5.0 };
            sample(k as u128, 15 * k, cpu, 5.0)
        })
        .collect();
    (policy, history)
}

#[test]
fn actions_are_listed_up_to_a_thousand_and_counted_beyond() {
    let (policy, history) = flip_flop(1100);

    let report = replay(policy.clone(), 1, 15 * 1100, 15, &history);

    assert_eq!(report.ticks, 1100);
    assert_eq!(report.actions.len(), 1000);
    assert!(report.actions_truncated);
    assert_eq!(report.actions[999].timestamp, secs(15 * 1000));
    assert_eq!(
        (report.summary.scale_ups, report.summary.scale_downs),
        (550, 550)
    );
    assert_eq!(report.summary.final_level, 1);

    let (policy, history) = flip_flop(1000);
    let exactly = replay(policy, 1, 15 * 1000, 15, &history);
    assert_eq!(exactly.actions.len(), 1000);
    assert!(!exactly.actions_truncated);
}

#[test]
fn an_empty_history_keeps_the_start_level() {
    let report = replay(Policy::default(), 3, 3600, 15, &[]);

    assert_eq!(
        report,
        ReplayReport {
            ticks: 240,
            summary: ReplaySummary {
                scale_ups: 0,
                scale_downs: 0,
                final_level: 3,
                max_level_reached: 3,
                seconds_at_level: BTreeMap::from([(3, 3600)]),
                capacity_hours: 2.25,
                overload_seconds: 0,
            },
            actions: vec![],
            actions_truncated: false,
        }
    );
}

#[test]
fn no_ticks_without_a_positive_interval_or_span() {
    for (to, interval) in [(100, 0), (100, -15), (0, 15), (-100, 15), (14, 15)] {
        let report = replay(Policy::default(), 2, to, interval, &hot(-60, 100));
        assert_eq!(report.ticks, 0, "to {to}, interval {interval}");
        assert_eq!(report.summary.final_level, 2);
        let expected: BTreeMap<i32, i64> = if to > 0 {
            BTreeMap::from([(2, to)])
        } else {
            BTreeMap::new()
        };
        assert_eq!(report.summary.seconds_at_level, expected);
    }
}

#[test]
fn memory_is_bounded_by_the_window() {
    let mut r = Replay::new(
        Policy::default(),
        1,
        t0(),
        secs(86_400),
        TimeDelta::seconds(15),
    );
    for k in 0..2880 {
        r.push(sample(k as u128 + 1, 30 * k, 50.0, 50.0));
    }

    // A 5-minute window holds 10 samples 30 s apart, plus the one just pushed.
    assert!(r.buffer.len() <= 11, "{}", r.buffer.len());
}

#[test]
fn the_report_serialises_levels_as_string_keys() {
    let report = replay(Policy::default(), 1, 30, 15, &[]);

    // The report itself is not a wire type (the backtest response maps it); its
    // summary is served as is.
    assert_eq!(
        (
            report.ticks,
            report.actions.is_empty(),
            report.actions_truncated
        ),
        (2, true, false)
    );
    assert_eq!(
        serde_json::to_value(&report.summary).unwrap(),
        serde_json::json!({
            "scale_ups": 0,
            "scale_downs": 0,
            "final_level": 1,
            "max_level_reached": 1,
            "seconds_at_level": {"1": 30},
            "capacity_hours": 30.0 / 3600.0,
            "overload_seconds": 0
        })
    );
}

// ---- Against a naive loop -----------------------------------------------------------

/// What the naive loop found.
#[derive(Debug, PartialEq)]
struct Naive {
    ticks: u64,
    actions: Vec<ReplayAction>,
    final_level: i32,
    overload_ticks: u64,
}

/// Every tick filters the whole history to its window, with flags of its own.
fn naive(
    policy: &Policy,
    start_level: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval: TimeDelta,
    history: &[Sample],
) -> Naive {
    let mut flagged = vec![false; history.len()];
    let mut state = InstanceState {
        level: start_level,
        last_action_at: None,
    };
    let mut out = Naive {
        ticks: 0,
        actions: vec![],
        final_level: start_level,
        overload_ticks: 0,
    };
    let mut t = from + interval;
    while t <= to {
        out.ticks += 1;
        let window: Vec<Sample> = history
            .iter()
            .zip(&flagged)
            .filter(|(s, _)| s.timestamp > t - policy.window && s.timestamp <= t)
            .map(|(s, &f)| Sample {
                is_outlier: f,
                ..*s
            })
            .collect();
        let eval = decide_scaling(&state, policy, &window, t);
        if let Some((id, _)) = eval.outlier {
            let i = history.iter().position(|s| s.id == id).unwrap();
            flagged[i] = true;
        }
        if let Some(s) = eval.latest
            && (s.cpu > policy.scale_up_cpu_above
                || s.memory.is_some_and(|m| m > policy.scale_up_memory_above))
        {
            out.overload_ticks += 1;
        }
        if eval.decision != Decision::NoAction {
            out.actions.push(ReplayAction {
                timestamp: t,
                decision: eval.decision,
                reason: eval.reason,
                level_before: state.level,
                level_after: eval.new_level,
            });
            state = InstanceState {
                level: eval.new_level,
                last_action_at: Some(t),
            };
        }
        t += interval;
    }
    out.final_level = state.level;
    out
}

fn policies() -> impl Strategy<Value = Policy> {
    (
        (60.0..99.0f64, 60.0..99.0f64, 1.0..40.0f64, 1.0..40.0f64),
        (0.3..=1.0f64, 15i64..=400, 1usize..=6, 0.5..3.0f64),
        (1u32..=6, 0i64..=400, 1i32..=3, 0i32..=5),
    )
        .prop_map(
            |(
                (up_cpu, up_mem, down_cpu, down_mem),
                (ratio, window, min_samples, iqr),
                (votes, cooldown, min_level, extra),
            )| Policy {
                scale_up_cpu_above: up_cpu,
                scale_up_memory_above: up_mem,
                scale_down_cpu_below: down_cpu,
                scale_down_memory_below: down_mem,
                sustained_ratio: ratio,
                window: TimeDelta::seconds(window),
                min_samples,
                iqr_multiplier: iqr,
                votes_needed: votes,
                cooldown: TimeDelta::seconds(cooldown),
                min_level,
                max_level: min_level + extra,
                ..Policy::default()
            },
        )
}

/// Regimes of idle, hot and ordinary load, with ties and gaps between timestamps and
/// stored flags the replay must ignore.
fn histories() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec(
        (
            0i64..=40,
            0u8..3,
            0.0..10.0f64,
            prop::option::weighted(0.8, 0.0..100.0f64),
            prop::option::of(0.0..1e4f64),
            any::<bool>(),
        ),
        0..150,
    )
    .prop_map(|rows| {
        let mut at = -200;
        rows.into_iter()
            .enumerate()
            .map(|(i, (gap, regime, jitter, memory, net, stored_flag))| {
                at += gap;
                let cpu = match regime {
                    0 => 2.0 + jitter,
                    1 => 90.0 + jitter,
                    _ => 40.0 + 3.0 * jitter,
                };
                Sample {
                    id: Uuid::from_u128(i as u128 + 1),
                    timestamp: secs(at),
                    cpu,
                    memory: memory.map(|m| if regime == 1 { 95.0 } else { m }),
                    network_in: net,
                    network_out: net.map(|n| n * 2.0),
                    is_outlier: stored_flag,
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn the_replay_equals_a_naive_loop_over_the_full_history(
        policy in policies(),
        start in 0i32..=10,
        from in -100i64..=100,
        span in 0i64..=1500,
        interval in 1i64..=60,
        history in histories(),
    ) {
        let (from, to, interval) =
            (secs(from), secs(from + span), TimeDelta::seconds(interval));
        let expected = naive(&policy, start, from, to, interval, &history);

        let mut r = Replay::new(policy.clone(), start, from, to, interval);
        for s in &history {
            r.push(*s);
        }
        let report = r.finish();

        prop_assert_eq!(report.ticks, expected.ticks);
        let listed: Vec<_> = expected.actions.iter().take(MAX_ACTIONS).cloned().collect();
        prop_assert_eq!(&report.actions, &listed);
        prop_assert_eq!(report.actions_truncated, expected.actions.len() > MAX_ACTIONS);
        prop_assert_eq!(report.summary.final_level, expected.final_level);
        let ups = expected.actions.iter().filter(|a| a.decision == Decision::ScaleUp).count();
        prop_assert_eq!(report.summary.scale_ups, ups as u64);
        prop_assert_eq!(
            report.summary.scale_downs,
            (expected.actions.len() - ups) as u64
        );
        prop_assert_eq!(
            report.summary.overload_seconds,
            expected.overload_ticks as i64 * interval.num_seconds()
        );
        let spent: i64 = report.summary.seconds_at_level.values().sum();
        prop_assert_eq!(spent, span);
        let highest = expected.actions.iter().map(|a| a.level_after).max().unwrap_or(start);
        prop_assert_eq!(report.summary.max_level_reached, highest.max(start));
    }
}
