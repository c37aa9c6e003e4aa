//! The reconcile pass, one rule at a time: what it writes, what it records, when it
//! looks again.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::cloud::{CloudError, Failure, Observation};
use super::reconcile::*;
use super::target::{OnDrift, Sizing, TargetMode, TargetRef, TargetSpec};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn target(level: i32) -> ClaimedTarget {
    ClaimedTarget {
        id: Uuid::now_v7(),
        instance: Uuid::now_v7(),
        instance_id: "mock-1".into(),
        email: "a@example.com".into(),
        spec: TargetSpec {
            target: TargetRef::AwsAsg {
                group_name: "web".into(),
                region: "us-east-1".into(),
            },
            sizing: Sizing::BaseCapacity(2),
            on_drift: OnDrift::Adopt,
            mode: TargetMode::Apply,
        },
        state: TargetState::Pending,
        desired_level: level,
        progress: Progress::default(),
        dry_run: false,
        min_level: 1,
        max_level: 10,
        lease_until: at(60),
    }
}

fn group(desired: i32, current: i32) -> Observation {
    Observation {
        desired,
        current,
        min: Some(1),
        max: Some(10),
        busy: None,
        managed: true,
        owner: None,
    }
}

/// The same target after `update` landed.
fn after(t: &ClaimedTarget, update: &Update) -> ClaimedTarget {
    ClaimedTarget {
        state: update.state,
        desired_level: update.desired_level,
        progress: update.progress.clone(),
        ..t.clone()
    }
}

fn write_of(step: Step) -> Write {
    match step {
        Step::Write(w) => w,
        Step::Done(u) => panic!("expected a write, got {u:?}"),
    }
}

fn done(step: Step) -> Update {
    match step {
        Step::Done(u) => u,
        Step::Write(w) => panic!("expected no write, got {w:?}"),
    }
}

#[test]
fn a_new_level_is_written_then_converges_then_is_in_sync() {
    let timing = Timing::default();
    let t = target(2); // base 2: level 2 is 3
    let write = write_of(t.plan(Ok(group(2, 2)), &timing, at(0)));
    assert_eq!(write.capacity, 3);
    let update = t.after_write(write, Ok(()), &timing, at(1));
    assert_eq!(update.state, TargetState::Converging);
    assert_eq!(update.cooldown_from, Some(at(1)));
    assert_eq!(update.due_at, Some(at(1) + timing.poll));
    let event = update.event.clone().unwrap();
    assert_eq!(
        (event.event, event.desired_capacity, event.observed_capacity),
        (ActuationEvent::Applied, Some(3), Some(2))
    );
    assert_eq!(
        event.message,
        "set Auto Scaling group web (us-east-1) from 2 to 3 (level 2)"
    );

    let t = after(&t, &update);
    let still = done(t.plan(Ok(group(3, 2)), &timing, at(6)));
    assert_eq!(still.state, TargetState::Converging);
    assert_eq!(still.event, None);
    let t = after(&t, &still);
    let synced = done(t.plan(Ok(group(3, 3)), &timing, at(11)));
    assert_eq!(synced.state, TargetState::InSync);
    assert_eq!(synced.event.unwrap().event, ActuationEvent::Converged);
    assert_eq!(synced.due_at, Some(at(11) + timing.resync));
}

#[test]
fn a_level_already_reached_is_not_written_again() {
    let t = target(2);
    let update = done(t.plan(Ok(group(3, 3)), &Timing::default(), at(0)));
    assert_eq!(update.state, TargetState::InSync);
    assert_eq!(update.progress.applied_capacity, Some(3));
}

#[test]
fn capacity_is_clamped_to_the_groups_bounds_and_says_so() {
    let t = target(8); // 2 × 1.5^7 = 34.2 → 35, above MaxSize 10
    let write = write_of(t.plan(Ok(group(5, 5)), &Timing::default(), at(0)));
    assert_eq!(write.capacity, 10);
    assert!(write.progress.limited);
    assert_eq!(
        write.progress.message.as_deref(),
        Some("level 8 asks for 35, limited to 10 by the group's bounds (1..10)")
    );
}

#[test]
fn a_paused_or_busy_group_blocks_once_and_is_retried() {
    let timing = Timing::default();
    let t = target(2);
    let paused = done(t.plan(Ok(group(0, 0)), &timing, at(0)));
    assert_eq!(paused.state, TargetState::Blocked);
    assert_eq!(
        paused.event.as_ref().unwrap().event,
        ActuationEvent::Blocked
    );
    assert_eq!(paused.due_at, Some(at(0) + timing.poll));
    // Still paused: no second event.
    let again = done(after(&t, &paused).plan(Ok(group(0, 0)), &timing, at(5)));
    assert_eq!(again.state, TargetState::Blocked);
    assert_eq!(again.event, None);

    let busy = Observation {
        busy: Some("an Auto Scaling activity is in progress (1 instance Pending)".into()),
        ..group(2, 1)
    };
    let blocked = done(t.plan(Ok(busy), &timing, at(0)));
    assert_eq!(blocked.state, TargetState::Blocked);
    assert!(
        blocked
            .progress
            .message
            .as_deref()
            .unwrap()
            .contains("in progress"),
        "{blocked:?}"
    );
}

#[test]
fn errors_retry_block_or_fail_by_class() {
    let timing = Timing::default();
    let t = target(2);
    let throttled = CloudError::new(Failure::Throttled, "Throttling: Rate exceeded");
    let retry = done(t.plan(Err(throttled.clone()), &timing, at(0)));
    assert_eq!(retry.state, TargetState::Pending);
    assert_eq!(retry.progress.attempts, 1);
    assert_eq!(retry.due_at, Some(at(2)));
    assert_eq!(
        retry.event.as_ref().unwrap().event,
        ActuationEvent::Retrying
    );
    let retry2 = done(after(&t, &retry).plan(Err(throttled), &timing, at(2)));
    assert_eq!(retry2.progress.attempts, 2);
    assert_eq!(retry2.due_at, Some(at(6)));

    let write = write_of(t.plan(Ok(group(2, 2)), &timing, at(0)));
    let busy = CloudError::new(Failure::Busy, "ScalingActivityInProgress: busy");
    let blocked = t.after_write(write.clone(), Err(busy), &timing, at(0));
    assert_eq!(blocked.state, TargetState::Blocked);
    assert_eq!(blocked.progress.attempts, 0);

    let invalid = CloudError::new(Failure::Invalid, "ValidationError: bad");
    let failed = t.after_write(write, Err(invalid), &timing, at(0));
    assert_eq!(failed.state, TargetState::Failed);
    assert_eq!(failed.due_at, None);
    assert_eq!(failed.cooldown_from, None);
    assert_eq!(failed.event.unwrap().event, ActuationEvent::Failed);
}

#[test]
fn an_outside_change_is_adopted_as_a_level_or_written_back() {
    let timing = Timing::default();
    let mut t = target(2);
    t.state = TargetState::InSync;
    t.progress.applied_level = Some(2);
    t.progress.applied_capacity = Some(3);
    // Someone set the group to 7: level 4 (2, 3, 5, 7) is the lowest that reaches it.
    let adopted = done(t.plan(Ok(group(7, 7)), &timing, at(0)));
    let adoption = adopted.adoption.clone().unwrap();
    assert_eq!((adoption.level_before, adoption.level_after), (2, 4));
    assert_eq!(adopted.desired_level, 4);
    assert_eq!(adopted.progress.applied_capacity, Some(7));
    assert_eq!(adopted.cooldown_from, Some(at(0)));
    assert_eq!(
        adopted.event.as_ref().unwrap().event,
        ActuationEvent::DriftAdopted
    );
    assert!(
        adoption
            .reason
            .contains("changed from 3 to 7 outside the autoscaler"),
        "{}",
        adoption.reason
    );
    // Once adopted, the same reading is simply in sync.
    let t2 = after(&t, &adopted);
    let synced = done(t2.plan(Ok(group(7, 7)), &timing, at(5)));
    assert_eq!((synced.state, synced.event), (TargetState::InSync, None));

    t.spec.on_drift = OnDrift::Enforce;
    let write = write_of(t.plan(Ok(group(7, 7)), &timing, at(0)));
    assert!(write.enforcing_drift);
    assert_eq!(write.capacity, 3);
    let update = t.after_write(write, Ok(()), &timing, at(1));
    assert_eq!(update.event.unwrap().event, ActuationEvent::DriftEnforced);
}

#[test]
fn observe_mode_and_dry_runs_record_what_they_would_write_and_want_no_write() {
    let timing = Timing::default();
    let mut observe = target(2);
    observe.spec.mode = TargetMode::Observe;
    let mut dry = target(2);
    dry.dry_run = true;
    for t in [observe, dry] {
        let update = done(t.plan(Ok(group(2, 2)), &timing, at(0)));
        assert_eq!(update.state, TargetState::Observing);
        let event = update.event.clone().unwrap();
        assert_eq!(
            (event.event, event.desired_capacity),
            (ActuationEvent::WouldApply, Some(3))
        );
        // The same again records nothing new.
        let again = done(after(&t, &update).plan(Ok(group(2, 2)), &timing, at(60)));
        assert_eq!(again.event, None);
    }
}

#[test]
fn a_target_without_the_marker_or_of_another_owner_fails_without_a_write() {
    let timing = Timing::default();
    let t = target(2);
    let unmarked = Observation {
        managed: false,
        ..group(2, 2)
    };
    let failed = done(t.plan(Ok(unmarked), &timing, at(0)));
    assert_eq!(failed.state, TargetState::Failed);
    assert_eq!(
        failed.progress.message.as_deref(),
        Some(
            "Auto Scaling group web (us-east-1) does not carry the tag autoscaler:managed=true, so the autoscaler may not scale it; nothing was written"
        )
    );
    let other = Observation {
        owner: Some("b@example.com".into()),
        ..group(2, 2)
    };
    let failed = done(t.plan(Ok(other), &timing, at(0)));
    assert!(
        failed
            .progress
            .message
            .as_deref()
            .unwrap()
            .contains("belongs to another user"),
        "{failed:?}"
    );
    let mine = Observation {
        owner: Some("A@example.com".into()),
        ..group(2, 2)
    };
    assert!(matches!(t.plan(Ok(mine), &timing, at(0)), Step::Write(_)));
}

#[test]
fn a_write_that_never_arrives_fails_after_the_timeout() {
    let timing = Timing::default();
    let mut t = target(2);
    t.state = TargetState::Converging;
    t.progress.applied_level = Some(2);
    t.progress.applied_capacity = Some(3);
    t.progress.applied_at = Some(at(0));
    let waiting = done(t.plan(Ok(group(3, 2)), &timing, at(899)));
    assert_eq!(waiting.state, TargetState::Converging);
    let failed = done(t.plan(Ok(group(3, 2)), &timing, at(901)));
    assert_eq!(failed.state, TargetState::Failed);
    assert_eq!(
        failed.progress.message.as_deref(),
        Some("Auto Scaling group web (us-east-1) did not reach 3 within 900 s (it has 2)")
    );
}

#[test]
fn backoff_doubles_up_to_five_minutes() {
    let secs: Vec<i64> = (1..=10).map(|n| backoff(n).num_seconds()).collect();
    assert_eq!(secs, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(backoff(0), TimeDelta::seconds(2));
}
