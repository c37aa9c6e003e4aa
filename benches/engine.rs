//! Cost of one decision for one instance's 10-sample window. The decision job runs it
//! for every instance every 15 seconds; the budget is 5 µs per decision.

use std::hint::black_box;

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

criterion_group!(benches, engine);
criterion_main!(benches);
