//! The one way a capacity reaches a cloud. Observe mode, a dry-run policy and a
//! target without the managed marker stop here, whatever path led to the write
//! (nomad-autoscaler PR #845: a "dry run" that still scaled).

use super::cloud::{Cloud, CloudError, CloudResult, Failure};
use super::reconcile::{ClaimedTarget, Write};

/// Writes `write.capacity` to the claimed target, unless it may not be written.
pub async fn write(cloud: &dyn Cloud, target: &ClaimedTarget, write: &Write) -> CloudResult<()> {
    if let Some(why) = target.writes_nothing() {
        return Err(CloudError::new(Failure::Invalid, why));
    }
    if let Some(why) = write
        .observation
        .refusal(&target.spec.target, &target.email)
    {
        return Err(CloudError::new(Failure::Denied, why));
    }
    cloud
        .set_capacity(&target.spec.target, write.capacity)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::actuate::cloud::{CloudResult, Observation};
    use crate::actuate::reconcile::{Progress, TargetState};
    use crate::actuate::target::{OnDrift, Sizing, TargetMode, TargetRef, TargetSpec};

    /// A cloud that counts the writes that reach it.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Cloud for Counting {
        async fn observe(&self, targets: &[&TargetRef]) -> Vec<CloudResult<Observation>> {
            targets.iter().map(|_| Ok(observation(true))).collect()
        }
        async fn set_capacity(&self, _: &TargetRef, _: i32) -> CloudResult<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn observation(managed: bool) -> Observation {
        Observation {
            desired: 2,
            current: 2,
            min: None,
            max: None,
            busy: None,
            managed,
            owner: None,
        }
    }

    fn target(mode: TargetMode, dry_run: bool) -> ClaimedTarget {
        ClaimedTarget {
            id: Uuid::now_v7(),
            instance: Uuid::now_v7(),
            instance_id: "i".into(),
            email: "a@example.com".into(),
            spec: TargetSpec {
                target: TargetRef::Kubernetes {
                    namespace: "default".into(),
                    name: "web".into(),
                    resource: crate::actuate::target::Workload::Deployments,
                },
                sizing: Sizing::BaseCapacity(2),
                on_drift: OnDrift::Adopt,
                mode,
            },
            state: TargetState::Pending,
            desired_level: 2,
            progress: Progress::default(),
            dry_run,
            min_level: 1,
            max_level: 10,
            lease_until: DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    fn write(managed: bool) -> Write {
        Write {
            capacity: 3,
            enforcing_drift: false,
            observation: observation(managed),
            progress: Progress::default(),
        }
    }

    #[tokio::test]
    async fn observe_mode_dry_runs_and_unmarked_targets_never_reach_the_cloud() {
        let cloud = Counting::default();
        for (t, managed) in [
            (target(TargetMode::Observe, false), true),
            (target(TargetMode::Apply, true), true),
            (target(TargetMode::Apply, false), false),
        ] {
            assert!(super::write(&cloud, &t, &write(managed)).await.is_err());
        }
        assert_eq!(cloud.0.load(Ordering::SeqCst), 0);
        super::write(&cloud, &target(TargetMode::Apply, false), &write(true))
            .await
            .unwrap();
        assert_eq!(cloud.0.load(Ordering::SeqCst), 1);
    }
}
