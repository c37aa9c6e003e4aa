//! Generated metrics for mock instances, shaped like the service we replace:
//! CPU and memory mostly within 40-50 %, network traffic in the megabytes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::{Rng, RngExt};

use super::{CollectTarget, Collected, MetricSource};
use crate::model::{NewMetric, SampleSource as Source};

/// Generates one sample per instance, stamped `now`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MockSource;

/// A utilisation value: 80 % of the time uniform in 40-50, otherwise in 35-60,
/// plus up to ±2 of noise, clamped to 0-100.
fn utilisation(rng: &mut impl Rng) -> f64 {
    let base = if rng.random_bool(0.8) {
        rng.random_range(40.0..=50.0)
    } else {
        rng.random_range(35.0..=60.0)
    };
    let noise: f64 = rng.random_range(-2.0..=2.0);
    ((base + noise) * 100.0).round().clamp(0.0, 10_000.0) / 100.0
}

/// One generated sample for `target` at `now`.
pub fn sample(target: &CollectTarget, now: DateTime<Utc>, rng: &mut impl Rng) -> NewMetric {
    NewMetric {
        instance: target.id,
        timestamp: now,
        cpu_utilization: utilisation(rng),
        memory_usage: Some(utilisation(rng)),
        network_in: Some(rng.random_range(1_000_000..=5_000_000)),
        network_out: Some(rng.random_range(500_000..=3_000_000)),
        source: Source::Mock,
    }
}

#[async_trait]
impl MetricSource for MockSource {
    async fn collect(&self, targets: &[CollectTarget], now: DateTime<Utc>) -> Vec<Collected> {
        let mut rng = rand::rng();
        targets
            .iter()
            .map(|t| Collected {
                instance: t.id,
                result: Ok(vec![sample(t, now, &mut rng)]),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::SourceKind;
    use uuid::Uuid;

    #[test]
    fn generated_values_stay_in_the_documented_ranges() {
        let target = CollectTarget {
            id: Uuid::new_v4(),
            instance_id: "mock-1".into(),
            region: "mock".into(),
            source: SourceKind::Mock,
            last_collected_at: None,
        };
        let now = Utc::now();
        let mut rng = rand::rng();
        let mut in_core = 0;
        for _ in 0..2_000 {
            let m = sample(&target, now, &mut rng);
            assert!((33.0..=62.0).contains(&m.cpu_utilization), "{m:?}");
            let mem = m.memory_usage.unwrap();
            assert!((33.0..=62.0).contains(&mem), "{m:?}");
            assert!((1_000_000..=5_000_000).contains(&m.network_in.unwrap()));
            assert!((500_000..=3_000_000).contains(&m.network_out.unwrap()));
            assert_eq!(m.timestamp, now);
            if (38.0..=52.0).contains(&m.cpu_utilization) {
                in_core += 1;
            }
        }
        // Mostly 40-50 (with noise): well over 70 % of samples.
        assert!(in_core > 1_400, "only {in_core} of 2000 near 40-50");
    }
}
