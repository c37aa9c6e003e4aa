//! Cost of one decision for one instance's 10-sample window. The decision job runs it
//! for every instance every 15 seconds; the budget is 5 µs per decision.
//!
//! And a backtest: 30 days of 30-second samples (86,400) replayed at 15-second ticks
//! (172,800); the budget is well under 200 ms.

use std::hint::black_box;

use autoscaler::scaling::replay::{Replay, ReplayReport};
use autoscaler::scaling::{Decision, InstanceState, Policy, Sample, decide_scaling};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 22, 5, 30, 0).unwrap()
}

/// Ten samples 15 s apart, newest first, with CPU from `cpu(i)` and steady memory and
/// network around it.
fn window(cpu: impl Fn(usize) -> f64) -> Vec<Sample> {
    (0..10)
        .map(|i| Sample {
            id: Uuid::from_u128(i as u128 + 1),
            timestamp: now() - TimeDelta::seconds(15 * i as i64),
            cpu: cpu(i),
            memory: Some(55.0 + (i % 3) as f64),
            network_in: Some(120_000.0 + 3_000.0 * (i % 4) as f64),
            network_out: Some(80_000.0 + 2_000.0 * (i % 5) as f64),
            is_outlier: false,
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    let policy = Policy::default();
    let state = InstanceState {
        level: 3,
        last_action_at: None,
    };
    let normal = window(|i| 40.0 + (i * 7 % 11) as f64);
    let sustained = window(|i| 93.0 + (i % 4) as f64);
    // Make sure each case takes the path it is named after.
    let normal_eval = decide_scaling(&state, &policy, &normal, now());
    assert!(normal_eval.reason.starts_with("Within normal range"));
    assert_eq!(
        decide_scaling(&state, &policy, &sustained, now()).decision,
        Decision::ScaleUp
    );

    c.bench_function("decide/iqr_normal_load_10_samples", |b| {
        b.iter(|| decide_scaling(black_box(&state), &policy, black_box(&normal), now()))
    });
    c.bench_function("decide/sustained_scale_up_10_samples", |b| {
        b.iter(|| decide_scaling(black_box(&state), &policy, black_box(&sustained), now()))
    });
}

/// A month of samples with a daily load cycle, bursts and quiet nights, so that every
/// path of the engine (sustained, IQR, cooldown) is taken along the way.
fn month() -> Vec<Sample> {
    let from = now() - TimeDelta::days(30);
    (0..86_400u32)
        .map(|i| {
            let hour = (i / 120) % 24;
            let wobble = f64::from(i.wrapping_mul(2_654_435_761) % 1000) / 100.0;
            let cpu = match hour {
                0..=5 => 3.0 + wobble / 2.0,
                12..=13 => 88.0 + wobble,
                _ => 45.0 + 2.0 * wobble,
            };
            Sample {
                id: Uuid::from_u128(u128::from(i) + 1),
                timestamp: from + TimeDelta::seconds(30 * i64::from(i)),
                cpu,
                memory: Some(50.0 + wobble),
                network_in: Some(100_000.0 + 5_000.0 * wobble),
                network_out: Some(60_000.0 + 3_000.0 * wobble),
                is_outlier: false,
            }
        })
        .collect()
}

fn replay_month(history: &[Sample]) -> ReplayReport {
    let to = now();
    let mut replay = Replay::new(
        Policy::default(),
        3,
        to - TimeDelta::days(30),
        to,
        TimeDelta::seconds(15),
    );
    for s in history {
        replay.push(*s);
    }
    replay.finish()
}

fn backtest(c: &mut Criterion) {
    let history = month();
    let report = replay_month(&history);
    assert_eq!(report.ticks, 172_800);
    assert!(report.summary.scale_ups > 0 && report.summary.scale_downs > 0);

    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.bench_function("30_days_30s_samples_15s_ticks", |b| {
        b.iter(|| replay_month(black_box(&history)))
    });
    group.finish();
}

criterion_group!(benches, engine, backtest);
criterion_main!(benches);
