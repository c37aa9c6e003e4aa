//! Every rule of the engine, its boundaries, and properties over arbitrary windows.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeZone;
use proptest::prelude::*;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 22, 5, 30, 0).unwrap()
}

/// Distinct ids, so that a test can tell which sample the engine picked.
fn next_id() -> Uuid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Uuid::from_u128(u128::from(NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// A sample `secs_ago` seconds before `now()`, without network figures.
fn at(secs_ago: i64, cpu: f64, memory: Option<f64>) -> Sample {
    Sample {
        id: next_id(),
        timestamp: now() - TimeDelta::seconds(secs_ago),
        cpu,
        memory,
        network_in: None,
        network_out: None,
        is_outlier: false,
    }
}

/// One sample per CPU value, 10 s apart, the first being the newest (taken at `now()`).
fn series(cpus: &[f64], memory: Option<f64>) -> Vec<Sample> {
    (0..)
        .zip(cpus)
        .map(|(i, &cpu)| at(i * 10, cpu, memory))
        .collect()
}

/// `n` copies of `value` followed by `m` copies of `other`.
fn split(n: usize, value: f64, m: usize, other: f64) -> Vec<f64> {
    let mut v = vec![value; n];
    v.extend(std::iter::repeat_n(other, m));
    v
}

fn state(level: i32) -> InstanceState {
    InstanceState {
        level,
        last_action_at: None,
    }
}

fn decide_at(level: i32, samples: &[Sample]) -> Evaluation {
    decide_scaling(&state(level), &Policy::default(), samples, now())
}

fn decide(samples: &[Sample]) -> Evaluation {
    decide_at(5, samples)
}

/// Eight ordinary samples 10–80 s old: CPU 40..54, memory 60..74, network in
/// 1000..1140 and out 2000..2280, each in even steps.
fn calm_baseline() -> Vec<Sample> {
    (0..8)
        .map(|i| Sample {
            network_in: Some(1000.0 + 20.0 * i as f64),
            network_out: Some(2000.0 + 40.0 * i as f64),
            ..at(
                10 * (i + 1),
                40.0 + 2.0 * i as f64,
                Some(60.0 + 2.0 * i as f64),
            )
        })
        .collect()
}

/// `calm_baseline()` plus a newest sample at `now()`; returns the window and the newest.
fn calm_then(
    cpu: f64,
    memory: Option<f64>,
    network_in: Option<f64>,
    network_out: Option<f64>,
) -> (Vec<Sample>, Sample) {
    let newest = Sample {
        network_in,
        network_out,
        ..at(0, cpu, memory)
    };
    let mut window = calm_baseline();
    window.push(newest);
    (window, newest)
}

// ---- Rule 1: the window -------------------------------------------------------------

#[test]
fn samples_older_than_the_window_are_ignored() {
    let mut window = series(&[50.0, 50.0, 50.0], Some(50.0));
    window.extend((301..311).map(|age| at(age, 99.0, Some(99.0))));

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::NoAction);
    assert_eq!(
        eval.reason,
        "Within normal range: 0 up / 0 down votes (no metric has 4 unflagged samples for a baseline)"
    );
}

#[test]
fn a_sample_exactly_one_window_old_is_excluded_and_one_at_now_is_included() {
    let cases = [
        (
            "oldest at now − 300 s is out",
            [0, 100, 300],
            Decision::NoAction,
        ),
        (
            "oldest at now − 299 s is in",
            [0, 100, 299],
            Decision::ScaleUp,
        ),
    ];
    for (name, ages, expected) in cases {
        let window: Vec<_> = ages.iter().map(|&a| at(a, 95.0, None)).collect();

        let eval = decide(&window);

        assert_eq!(eval.decision, expected, "{name}: {}", eval.reason);
        assert_eq!(eval.latest, Some(window[0]), "{name}");
    }
    let two = [at(0, 95.0, None), at(100, 95.0, None), at(300, 95.0, None)];
    assert_eq!(
        decide(&two).reason,
        "Insufficient data: 2 samples in the last 5 minutes (need at least 3)"
    );
}

#[test]
fn samples_from_the_future_are_ignored() {
    let window = [at(-1, 95.0, None), at(10, 95.0, None), at(20, 95.0, None)];

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::NoAction);
    assert_eq!(eval.latest, Some(window[1]));
    assert!(
        eval.reason.starts_with("Insufficient data: 2 samples"),
        "{}",
        eval.reason
    );
}

#[test]
fn the_newest_sample_is_found_whatever_the_input_order() {
    let mut window = series(&split(17, 95.0, 3, 50.0), None);
    window[0].cpu = 92.5;
    let newest = window[0];
    window.rotate_left(7);

    let eval = decide(&window);

    assert_eq!(eval.latest, Some(newest));
    assert!(
        eval.reason.ends_with("(Current: 92.50%)"),
        "{}",
        eval.reason
    );
}

// ---- Rule 2: cooldown ---------------------------------------------------------------

#[test]
fn an_action_299_seconds_ago_blocks_with_the_cooldown_reason() {
    let window = series(&[95.0; 5], None);
    let state = InstanceState {
        level: 5,
        last_action_at: Some(now() - TimeDelta::seconds(299)),
    };

    let eval = decide_scaling(&state, &Policy::default(), &window, now());

    assert_eq!(
        eval,
        Evaluation {
            decision: Decision::NoAction,
            reason: "Cooldown: last scaling action at 2026-01-22T05:25:01Z, \
                     next evaluation allowed after 2026-01-22T05:30:01Z"
                .to_owned(),
            new_level: 5,
            votes: Votes::default(),
            outlier: None,
            latest: Some(window[0]),
        }
    );
}

#[test]
fn an_action_exactly_one_cooldown_ago_allows_a_decision() {
    let window = series(&[95.0; 5], None);
    let state = InstanceState {
        level: 5,
        last_action_at: Some(now() - TimeDelta::seconds(300)),
    };

    let eval = decide_scaling(&state, &Policy::default(), &window, now());

    assert_eq!(eval.decision, Decision::ScaleUp);
    assert_eq!(eval.new_level, 6);
}

#[test]
fn cooldown_is_checked_before_the_sample_count() {
    let state = InstanceState {
        level: 5,
        last_action_at: Some(now() - TimeDelta::seconds(10)),
    };

    let eval = decide_scaling(&state, &Policy::default(), &[], now());

    assert!(eval.reason.starts_with("Cooldown: "), "{}", eval.reason);
    assert_eq!(eval.latest, None);
}

// ---- Rule 3: enough data ------------------------------------------------------------

#[test]
fn too_few_samples_say_how_many_there_are() {
    let cases: [(&str, Vec<Sample>, &str); 3] = [
        ("none", vec![], "No metrics in the last 5 minutes"),
        (
            "one",
            series(&[95.0], None),
            "Insufficient data: 1 sample in the last 5 minutes (need at least 3)",
        ),
        (
            "two",
            series(&[95.0, 95.0], None),
            "Insufficient data: 2 samples in the last 5 minutes (need at least 3)",
        ),
    ];
    for (name, window, reason) in cases {
        let eval = decide(&window);

        assert_eq!(eval.decision, Decision::NoAction, "{name}");
        assert_eq!(eval.reason, reason, "{name}");
        assert_eq!(eval.latest, window.first().copied(), "{name}");
        assert_eq!(eval.new_level, 5, "{name}");
    }
}

#[test]
fn the_window_length_is_spelled_out_in_reasons() {
    let cases = [
        (TimeDelta::seconds(90), "No metrics in the last 90 seconds"),
        (TimeDelta::minutes(1), "No metrics in the last 1 minute"),
        (TimeDelta::minutes(15), "No metrics in the last 15 minutes"),
    ];
    for (window, reason) in cases {
        let policy = Policy {
            window,
            ..Policy::default()
        };
        assert_eq!(
            decide_scaling(&state(5), &policy, &[], now()).reason,
            reason
        );
    }
}

// ---- Rules 4 and 5: sustained load --------------------------------------------------

#[test]
fn sustained_thresholds_and_their_boundaries() {
    let cases: Vec<(&str, Vec<Sample>, Decision)> = vec![
        (
            "exactly 80% of samples above 90% CPU scales up",
            series(&split(4, 95.0, 1, 50.0), None),
            Decision::ScaleUp,
        ),
        (
            "79.2% of samples above 90% CPU does not",
            series(&split(19, 95.0, 5, 50.0), None),
            Decision::NoAction,
        ),
        (
            "exactly 3 hot samples scale up",
            series(&[95.0; 3], None),
            Decision::ScaleUp,
        ),
        (
            "2 hot samples are not enough",
            series(&[95.0; 2], None),
            Decision::NoAction,
        ),
        (
            "CPU of exactly 90% is not hot",
            series(&[90.0; 3], None),
            Decision::NoAction,
        ),
        (
            "CPU of 90.01% is hot",
            series(&[90.01; 3], None),
            Decision::ScaleUp,
        ),
        (
            "memory of exactly 90% is not hot",
            series(&[50.0; 3], Some(90.0)),
            Decision::NoAction,
        ),
        (
            "memory of 90.01% is hot",
            series(&[50.0; 3], Some(90.01)),
            Decision::ScaleUp,
        ),
        (
            "CPU of exactly 10% is not low",
            series(&[10.0; 3], Some(10.0)),
            Decision::NoAction,
        ),
        (
            "CPU of 9.99% is low",
            series(&[9.99; 3], Some(10.0)),
            Decision::ScaleDown,
        ),
        (
            "memory of exactly 20% is not low",
            series(&[5.0; 3], Some(20.0)),
            Decision::NoAction,
        ),
        (
            "memory of 19.99% is low",
            series(&[5.0; 3], Some(19.99)),
            Decision::ScaleDown,
        ),
        (
            "exactly 80% of samples at low load scales down",
            series(&split(4, 5.0, 1, 50.0), Some(10.0)),
            Decision::ScaleDown,
        ),
        (
            "79.2% of samples at low load does not",
            series(&split(19, 5.0, 5, 50.0), Some(10.0)),
            Decision::NoAction,
        ),
    ];
    for (name, window, expected) in cases {
        let eval = decide(&window);
        assert_eq!(eval.decision, expected, "{name}: {}", eval.reason);
    }
}

#[test]
fn sustained_cpu_scale_up_gives_the_contract_reason() {
    let mut window = series(&split(17, 95.0, 3, 50.0), Some(50.0));
    window[0].cpu = 92.5;

    let eval = decide(&window);

    assert_eq!(
        eval,
        Evaluation {
            decision: Decision::ScaleUp,
            reason: "Sustained scale up: CPU > 90% for 85.0% of last 5 minutes (Current: 92.50%)"
                .to_owned(),
            new_level: 6,
            votes: Votes::default(),
            outlier: None,
            latest: Some(window[0]),
        }
    );
}

#[test]
fn sustained_scale_down_names_both_metrics() {
    let mut window = series(&split(17, 5.0, 3, 50.0), Some(12.0));
    for s in &mut window[17..] {
        s.memory = Some(50.0);
    }

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::ScaleDown);
    assert_eq!(eval.new_level, 4);
    assert_eq!(
        eval.reason,
        "Sustained scale down: CPU < 10% and memory < 20% for 85.0% of last 5 minutes \
         (Current CPU: 5.00%, memory: 12.00%)"
    );
}

#[test]
fn missing_memory_is_skipped_so_cpu_alone_can_scale_down() {
    let window = series(&[5.0; 3], None);

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::ScaleDown);
    assert_eq!(
        eval.reason,
        "Sustained scale down: CPU < 10% and memory < 20% for 100.0% of last 5 minutes \
         (Current CPU: 5.00%, memory: n/a)"
    );
}

#[test]
fn memory_drives_scale_up_when_cpu_alone_would_not() {
    let window = series(&[50.0; 5], Some(95.0));

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::ScaleUp);
    assert_eq!(
        eval.reason,
        "Sustained scale up: memory > 90% for 100.0% of last 5 minutes (Current: 95.00%)"
    );
}

#[test]
fn cpu_is_named_when_both_metrics_are_sustained() {
    let window = series(&[95.0; 5], Some(96.0));

    assert_eq!(
        decide(&window).reason,
        "Sustained scale up: CPU > 90% for 100.0% of last 5 minutes (Current: 95.00%)"
    );
}

#[test]
fn both_metrics_are_named_when_neither_is_sustained_alone() {
    let mut window = series(&[95.0, 95.0, 95.0, 50.0, 50.0], Some(50.0));
    window[3].memory = Some(95.0);
    window[4].memory = Some(95.0);

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::ScaleUp);
    assert_eq!(
        eval.reason,
        "Sustained scale up: CPU or memory > 90% for 100.0% of last 5 minutes \
         (Current CPU: 95.00%, memory: 50.00%)"
    );
}

#[test]
fn the_percentage_shown_is_the_share_hot_on_cpu_or_memory() {
    let mut window = series(&split(4, 95.0, 1, 50.0), Some(50.0));
    window[4].memory = Some(95.0);

    assert_eq!(
        decide(&window).reason,
        "Sustained scale up: CPU > 90% for 100.0% of last 5 minutes (Current: 95.00%)"
    );
}

#[test]
fn sustained_rules_are_checked_before_the_iqr_vote() {
    // The newest sample is a spike the IQR would vote up, but 80% of the window is
    // idle. (Scale down is also checked before scale up, but no sample can count for
    // both, so both can never trigger together.)
    let mut window = series(&split(1, 95.0, 4, 5.0), Some(10.0));
    window[0].memory = Some(95.0);

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::ScaleDown, "{}", eval.reason);
    assert_eq!(eval.votes, Votes::default());
    assert_eq!(eval.outlier, None);
}

// ---- Rule 6: IQR vote ---------------------------------------------------------------

#[test]
fn an_iqr_outlier_on_cpu_and_memory_scales_up_and_is_flagged() {
    let (window, newest) = calm_then(97.0, Some(97.0), Some(1060.0), Some(2120.0));

    let eval = decide(&window);

    assert_eq!(
        eval,
        Evaluation {
            decision: Decision::ScaleUp,
            reason: "IQR outlier: 4 votes to scale up, 0 to scale down (CPU 97.00% above upper \
                     bound 64.00%; memory 97.00% above upper bound 84.00%)"
                .to_owned(),
            new_level: 6,
            votes: Votes { up: 4, down: 0 },
            outlier: Some((newest.id, OutlierType::ScaleUp)),
            latest: Some(newest),
        }
    );
}

#[test]
fn an_iqr_outlier_below_the_lower_bound_scales_down() {
    let (window, newest) = calm_then(20.0, Some(67.0), None, None);

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::ScaleDown);
    assert_eq!(eval.new_level, 4);
    assert_eq!(eval.votes, Votes { up: 0, down: 2 });
    assert_eq!(eval.outlier, Some((newest.id, OutlierType::ScaleDown)));
    assert_eq!(
        eval.reason,
        "IQR outlier: 2 votes to scale down, 0 to scale up (CPU 20.00% below lower bound 30.00%)"
    );
}

#[test]
fn iqr_votes_decide_with_scale_up_winning_ties() {
    let cases = [
        (
            "2 up and 2 down scale up, up being checked first",
            calm_then(97.0, Some(30.0), None, None),
            Decision::ScaleUp,
            Votes { up: 2, down: 2 },
        ),
        (
            "network in alone is 1 vote: no action",
            calm_then(47.0, Some(67.0), Some(5000.0), Some(2120.0)),
            Decision::NoAction,
            Votes { up: 1, down: 0 },
        ),
        (
            "network in and out together are 2 votes: scale up",
            calm_then(47.0, Some(67.0), Some(5000.0), Some(9000.0)),
            Decision::ScaleUp,
            Votes { up: 2, down: 0 },
        ),
        (
            "network in up and network out down: no action",
            calm_then(47.0, Some(67.0), Some(5000.0), Some(10.0)),
            Decision::NoAction,
            Votes { up: 1, down: 1 },
        ),
        (
            "a sample inside the bounds casts no vote",
            calm_then(47.0, Some(67.0), Some(1060.0), Some(2120.0)),
            Decision::NoAction,
            Votes { up: 0, down: 0 },
        ),
    ];
    for (name, (window, newest), decision, votes) in cases {
        let eval = decide(&window);

        assert_eq!(eval.decision, decision, "{name}: {}", eval.reason);
        assert_eq!(eval.votes, votes, "{name}");
        let flagged = match decision {
            Decision::ScaleUp => Some((newest.id, OutlierType::ScaleUp)),
            _ => None,
        };
        assert_eq!(eval.outlier, flagged, "{name}");
    }
}

#[test]
fn iqr_reasons_list_every_vote_with_its_bound() {
    let cases = [
        (
            calm_then(97.0, Some(30.0), None, None).0,
            "IQR outlier: 2 votes to scale up, 2 to scale down (CPU 97.00% above upper bound \
             64.00%; memory 30.00% below lower bound 50.00%)",
        ),
        (
            calm_then(47.0, Some(67.0), Some(5000.0), Some(2120.0)).0,
            "Within normal range: 1 up / 0 down votes (network in 5000 B above upper bound \
             1240.0 B)",
        ),
        (
            calm_then(47.0, Some(67.0), None, None).0,
            "Within normal range: 0 up / 0 down votes",
        ),
    ];
    for (window, reason) in cases {
        assert_eq!(decide(&window).reason, reason);
    }
}

#[test]
fn missing_memory_casts_no_iqr_vote_rather_than_reading_as_zero() {
    let (window, _) = calm_then(50.0, None, None, None);

    let eval = decide(&window);

    assert_eq!(eval.decision, Decision::NoAction);
    assert_eq!(eval.votes, Votes::default());
}

#[test]
fn a_metric_needs_four_known_baseline_values_to_vote() {
    let (mut window, _) = calm_then(47.0, Some(99.0), None, None);
    // Two older memories plus the newest: three known values.
    for s in &mut window[2..8] {
        s.memory = None;
    }

    let eval = decide(&window);

    assert_eq!(eval.votes, Votes::default(), "{}", eval.reason);
    assert_eq!(eval.decision, Decision::NoAction);

    window[2].memory = Some(64.0);
    assert_eq!(decide(&window).votes, Votes { up: 2, down: 0 });
}

#[test]
fn an_all_equal_window_needs_more_than_a_tiny_deviation() {
    let flat = |cpu: f64, net: f64| {
        let mut window: Vec<_> = (1..=8)
            .map(|i| Sample {
                network_in: Some(1000.0),
                ..at(i * 10, 50.0, Some(50.0))
            })
            .collect();
        window.push(Sample {
            network_in: Some(net),
            ..at(0, cpu, Some(50.0))
        });
        decide(&window)
    };
    let cases = [
        (
            "1 point above a flat CPU",
            flat(51.0, 1000.0),
            Votes::default(),
        ),
        (
            "1 point below a flat CPU",
            flat(49.0, 1000.0),
            Votes::default(),
        ),
        (
            "20 points above a flat CPU",
            flat(70.0, 1000.0),
            Votes { up: 2, down: 0 },
        ),
        (
            "20 points below a flat CPU",
            flat(30.0, 1000.0),
            Votes { up: 0, down: 2 },
        ),
        (
            "1 byte above flat traffic",
            flat(50.0, 1001.0),
            Votes::default(),
        ),
        (
            "double the flat traffic",
            flat(50.0, 2000.0),
            Votes { up: 1, down: 0 },
        ),
    ];
    for (name, eval, votes) in cases {
        assert_eq!(eval.votes, votes, "{name}: {}", eval.reason);
    }
    assert_eq!(
        flat(70.0, 1000.0).reason,
        "IQR outlier: 2 votes to scale up, 0 to scale down (CPU 70.00% above upper bound 55.00%)"
    );
}

#[test]
fn previously_flagged_outliers_are_left_out_of_the_baseline() {
    let window_with = |flagged: bool| {
        let mut window = series(
            &[80.0, 48.0, 49.0, 50.0, 51.0, 52.0, 50.0, 50.0, 50.0],
            None,
        );
        window.extend((1..=4).map(|i| Sample {
            is_outlier: flagged,
            ..at(100 + i * 10, 95.0, None)
        }));
        window
    };

    let excluded = decide(&window_with(true));
    let included = decide(&window_with(false));

    assert_eq!(excluded.decision, Decision::ScaleUp, "{}", excluded.reason);
    assert_eq!(excluded.votes, Votes { up: 2, down: 0 });
    assert_eq!(included.decision, Decision::NoAction, "{}", included.reason);
}

#[test]
fn a_flagged_newest_sample_still_votes_against_the_others() {
    let (mut window, _) = calm_then(97.0, Some(67.0), None, None);
    window[8].is_outlier = true;

    let eval = decide(&window);

    // Without itself in the baseline CPU 40..54 gives Q1 43.5, Q3 50.5, upper 61.
    assert_eq!(
        eval.reason,
        "IQR outlier: 2 votes to scale up, 0 to scale down (CPU 97.00% above upper bound 61.00%)"
    );
}

#[test]
fn without_any_baseline_nothing_votes() {
    let (mut window, _) = calm_then(97.0, Some(97.0), None, None);
    for s in &mut window[..6] {
        s.is_outlier = true;
    }

    let eval = decide(&window);

    assert_eq!(
        eval.reason,
        "Within normal range: 0 up / 0 down votes (no metric has 4 unflagged samples for a baseline)"
    );
}

// ---- Rule 7: level bounds -----------------------------------------------------------

#[test]
fn scale_up_at_the_maximum_level_is_suppressed() {
    let mut window = series(&split(17, 95.0, 3, 50.0), None);
    window[0].cpu = 92.5;

    let eval = decide_at(10, &window);

    assert_eq!(eval.decision, Decision::NoAction);
    assert_eq!(eval.new_level, 10);
    assert_eq!(
        eval.reason,
        "Scale up suppressed: already at maximum scale level 10 (Sustained scale up: \
         CPU > 90% for 85.0% of last 5 minutes (Current: 92.50%))"
    );
}

#[test]
fn scale_down_at_level_one_is_suppressed() {
    let window = series(&[5.0; 3], Some(10.0));

    let eval = decide_at(1, &window);

    assert_eq!(eval.decision, Decision::NoAction);
    assert_eq!(eval.new_level, 1);
    assert_eq!(
        eval.reason,
        "Scale down suppressed: already at minimum scale level 1 (Sustained scale down: \
         CPU < 10% and memory < 20% for 100.0% of last 5 minutes (Current CPU: 5.00%, memory: 10.00%))"
    );
}

#[test]
fn a_suppressed_iqr_outlier_is_still_flagged() {
    let (window, newest) = calm_then(97.0, Some(97.0), None, None);

    let eval = decide_at(10, &window);

    assert_eq!(eval.decision, Decision::NoAction);
    assert_eq!(eval.votes, Votes { up: 4, down: 0 });
    assert_eq!(eval.outlier, Some((newest.id, OutlierType::ScaleUp)));
    assert!(
        eval.reason
            .starts_with("Scale up suppressed: already at maximum scale level 10 (IQR outlier: ")
    );
}

#[test]
fn actions_move_one_level_up_to_the_bounds() {
    let hot = series(&[95.0; 3], None);
    let idle = series(&[5.0; 3], None);
    let cases = [
        ("up from 9 reaches 10", &hot, 9, Decision::ScaleUp, 10),
        ("up from 1 reaches 2", &hot, 1, Decision::ScaleUp, 2),
        ("down from 2 reaches 1", &idle, 2, Decision::ScaleDown, 1),
        ("down from 10 reaches 9", &idle, 10, Decision::ScaleDown, 9),
    ];
    for (name, window, level, decision, new_level) in cases {
        let eval = decide_at(level, window);
        assert_eq!(
            (eval.decision, eval.new_level),
            (decision, new_level),
            "{name}"
        );
    }
}

#[test]
fn capacity_grows_by_half_per_level() {
    assert_eq!(capacity_for_level(1), 100.0);
    assert_eq!(capacity_for_level(2), 150.0);
    assert_eq!(capacity_for_level(3), 225.0);
}

#[test]
fn decisions_round_trip_through_their_names() {
    for d in [Decision::ScaleUp, Decision::ScaleDown, Decision::NoAction] {
        assert_eq!(Decision::parse(d.as_str()), Some(d));
    }
    assert_eq!(Decision::parse("scale_sideways"), None);
}

// ---- Rule 9: robustness -------------------------------------------------------------

#[test]
fn non_finite_values_and_absurd_policies_do_not_panic() {
    let weird = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MAX,
        f64::MIN,
    ];
    let window: Vec<_> = (0..)
        .zip(weird.iter().cycle().take(24))
        .map(|(i, &v)| Sample {
            network_in: Some(v),
            network_out: Some(-v),
            ..at(i * 10, v, Some(v))
        })
        .collect();
    let policies = [
        Policy::default(),
        Policy {
            window: TimeDelta::MAX,
            cooldown: TimeDelta::MAX,
            max_level: i32::MIN,
            ..Policy::default()
        },
        Policy {
            window: TimeDelta::MIN,
            cooldown: TimeDelta::MIN,
            max_level: i32::MAX,
            ..Policy::default()
        },
    ];
    let states = [
        state(i32::MAX),
        state(i32::MIN),
        InstanceState {
            level: 1,
            last_action_at: Some(DateTime::<Utc>::MIN_UTC),
        },
        InstanceState {
            level: 1,
            last_action_at: Some(DateTime::<Utc>::MAX_UTC),
        },
    ];
    for policy in &policies {
        for state in &states {
            for t in [now(), DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                let _ = decide_scaling(state, policy, &window, t);
            }
        }
    }
}

#[test]
fn sustained_load_scales_once_per_cooldown() {
    let policy = Policy::default();
    let start = now();
    let mut samples = Vec::new();
    let mut state = state(1);
    let mut actions = Vec::new();
    for tick in 0..80 {
        let t = start + TimeDelta::seconds(15 * tick);
        samples.push(Sample {
            timestamp: t,
            ..at(0, 95.0, None)
        });
        let eval = decide_scaling(&state, &policy, &samples, t);
        if eval.decision != Decision::NoAction {
            actions.push(t);
            state = InstanceState {
                level: eval.new_level,
                last_action_at: Some(t),
            };
        }
    }
    let gaps: Vec<_> = actions
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect();
    assert_eq!(gaps, vec![300; 3]);
    assert_eq!(state.level, 5);
}

// ---- Properties ---------------------------------------------------------------------

/// Percentages clustered around the thresholds, so that every rule gets exercised.
fn percent() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..12.0,
        12.0..88.0,
        88.0..100.0,
        Just(10.0),
        Just(20.0),
        Just(90.0),
        Just(50.0),
    ]
}

/// Arbitrary samples from 30 s in the future to 400 s ago, around `now()`.
fn sample_in(cpu: BoxedStrategy<f64>) -> impl Strategy<Value = Sample> {
    (
        any::<u128>(),
        -30i64..=400,
        cpu,
        prop::option::weighted(0.8, percent()),
        prop::option::of(0.0..1e6),
        prop::option::of(0.0..1e6),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(id, age, cpu, memory, network_in, network_out, is_outlier)| Sample {
                id: Uuid::from_u128(id),
                timestamp: now() - TimeDelta::seconds(age),
                cpu,
                memory,
                network_in,
                network_out,
                is_outlier,
            },
        )
}

/// Windows that are idle, hot, mixed, or a mix of those.
fn windows() -> impl Strategy<Value = Vec<Sample>> {
    let one = || {
        prop_oneof![
            prop::collection::vec(sample_in((0.0..12.0).boxed()), 0..20),
            prop::collection::vec(sample_in((88.0..100.0).boxed()), 0..20),
            prop::collection::vec(sample_in(percent().boxed()), 0..30),
        ]
    };
    (one(), one()).prop_map(|(mut a, b)| {
        a.extend(b);
        a
    })
}

fn policy_and_state() -> impl Strategy<Value = (Policy, InstanceState)> {
    (
        1i32..=12,
        0.0..1.0f64,
        prop::option::of(-60i64..=900),
        1i64..=900,
    )
        .prop_map(|(max_level, at, last_action_ago, cooldown)| {
            let level = 1 + (at * max_level as f64) as i32;
            (
                Policy {
                    cooldown: TimeDelta::seconds(cooldown),
                    max_level,
                    ..Policy::default()
                },
                InstanceState {
                    level: level.min(max_level),
                    last_action_at: last_action_ago.map(|s| now() - TimeDelta::seconds(s)),
                },
            )
        })
}

proptest! {
    #[test]
    fn levels_move_by_at_most_one_and_stay_in_range(
        (policy, state) in policy_and_state(),
        window in windows(),
    ) {
        let eval = decide_scaling(&state, &policy, &window, now());

        prop_assert!((1..=policy.max_level).contains(&eval.new_level));
        let expected = match eval.decision {
            Decision::ScaleUp => state.level + 1,
            Decision::ScaleDown => state.level - 1,
            Decision::NoAction => state.level,
        };
        prop_assert_eq!(eval.new_level, expected);
        prop_assert!(!eval.reason.is_empty());
    }

    #[test]
    fn the_latest_is_the_newest_sample_in_the_window_and_the_only_one_flagged(
        (policy, state) in policy_and_state(),
        window in windows(),
    ) {
        let eval = decide_scaling(&state, &policy, &window, now());

        let newest = window
            .iter()
            .filter(|s| s.timestamp > now() - policy.window && s.timestamp <= now())
            .max_by_key(|s| (s.timestamp, s.id))
            .copied();
        prop_assert_eq!(eval.latest, newest);
        if let Some((id, kind)) = eval.outlier {
            prop_assert_eq!(Some(id), newest.map(|s| s.id));
            let votes = match kind {
                OutlierType::ScaleUp => eval.votes.up,
                OutlierType::ScaleDown => eval.votes.down,
            };
            prop_assert!(votes >= 2);
        }
    }

    #[test]
    fn the_input_order_does_not_matter(
        (policy, state) in policy_and_state(),
        window in windows(),
    ) {
        let mut reversed = window.clone();
        reversed.reverse();

        prop_assert_eq!(
            decide_scaling(&state, &policy, &window, now()),
            decide_scaling(&state, &policy, &reversed, now())
        );
    }

    #[test]
    fn any_input_is_decided_without_panicking(
        level in any::<i32>(),
        max_level in any::<i32>(),
        window_ms in -i64::MAX..=i64::MAX,
        cooldown_ms in -i64::MAX..=i64::MAX,
        last in prop::option::of(-10_000_000i64..10_000_000),
        values in prop::collection::vec(
            (any::<f64>(), prop::option::of(any::<f64>()), prop::option::of(any::<f64>()),
             -1000i64..1000, any::<bool>()),
            0..40,
        ),
    ) {
        let window: Vec<_> = values
            .into_iter()
            .map(|(cpu, memory, network, age, is_outlier)| Sample {
                network_in: network,
                network_out: network.map(|n| -n),
                is_outlier,
                ..at(age, cpu, memory)
            })
            .collect();
        let policy = Policy {
            window: TimeDelta::milliseconds(window_ms),
            cooldown: TimeDelta::milliseconds(cooldown_ms),
            max_level,
            ..Policy::default()
        };
        let state = InstanceState {
            level,
            last_action_at: last.map(|s| now() - TimeDelta::seconds(s)),
        };

        let eval = decide_scaling(&state, &policy, &window, now());

        prop_assert!((eval.new_level - state.level).unsigned_abs() <= 1);
    }

    #[test]
    fn applied_actions_are_never_closer_than_one_cooldown(
        max_level in 1i32..=10,
        start_level in 1i32..=10,
        cooldown in 15i64..=600,
        blocks in prop::collection::vec(
            (0u8..3, 1usize..30, prop::bool::weighted(0.3)),
            1..8,
        ),
        jitter in prop::collection::vec(0.0..6.0f64, 1..50),
        gaps in prop::collection::vec(1i64..=60, 1..50),
    ) {
        let policy = Policy {
            cooldown: TimeDelta::seconds(cooldown),
            max_level,
            ..Policy::default()
        };
        let mut state = InstanceState { level: start_level.min(max_level), last_action_at: None };
        let mut samples: Vec<Sample> = Vec::new();
        let mut t = now();
        let mut last_action: Option<DateTime<Utc>> = None;
        let ticks = blocks
            .iter()
            .flat_map(|&(regime, len, no_memory)| std::iter::repeat_n((regime, no_memory), len));
        for (i, (regime, no_memory)) in ticks.enumerate() {
            t += TimeDelta::seconds(gaps[i % gaps.len()]);
            let j = jitter[i % jitter.len()];
            let (cpu, memory) = match regime {
                0 => (3.0 + j, 10.0 + j),
                1 => (93.0 + j, 60.0 + j),
                _ => (40.0 + 5.0 * j, 50.0 + 3.0 * j),
            };
            samples.push(Sample {
                id: Uuid::from_u128(i as u128),
                timestamp: t,
                cpu,
                memory: (!no_memory).then_some(memory),
                network_in: Some(1000.0 * j),
                network_out: None,
                is_outlier: false,
            });

            let eval = decide_scaling(&state, &policy, &samples, t);

            prop_assert!((1..=max_level).contains(&eval.new_level));
            if eval.decision != Decision::NoAction {
                if let Some(prev) = last_action {
                    prop_assert!(t - prev >= policy.cooldown, "actions at {} and {}", prev, t);
                }
                last_action = Some(t);
                state = InstanceState { level: eval.new_level, last_action_at: Some(t) };
            }
            if let Some((id, _)) = eval.outlier {
                for s in samples.iter_mut().filter(|s| s.id == id) {
                    s.is_outlier = true;
                }
            }
        }
    }
}
