//! The policy's JSON, every validation rule, and the engine deciding under non-default
//! policies.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::scaling::{Decision, InstanceState, Sample, decide_scaling, needed_count};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 22, 5, 30, 0).unwrap()
}

/// One sample per CPU value, 10 s apart, the first at `now()`.
fn series(cpus: &[f64], memory: Option<f64>) -> Vec<Sample> {
    cpus.iter()
        .enumerate()
        .map(|(i, &cpu)| Sample {
            id: Uuid::from_u128(i as u128 + 1),
            timestamp: now() - TimeDelta::seconds(10 * i as i64),
            cpu,
            memory,
            network_in: None,
            network_out: None,
            is_outlier: false,
        })
        .collect()
}

fn at_level(level: i32) -> InstanceState {
    InstanceState {
        level,
        last_action_at: None,
    }
}

fn patch(value: Value) -> Result<Policy, PolicyError> {
    PolicyPatch::from_json(&value)?.apply_over(&Policy::default())
}

fn message(value: Value) -> String {
    patch(value).unwrap_err().to_string()
}

// ---- JSON ---------------------------------------------------------------------------

#[test]
fn the_default_policy_serialises_with_the_api_names() {
    let value = serde_json::to_value(Policy::default()).unwrap();

    assert_eq!(
        value,
        json!({
            "mode": "enforce",
            "scale_up_cpu_above": 90.0,
            "scale_up_memory_above": 90.0,
            "scale_down_cpu_below": 10.0,
            "scale_down_memory_below": 20.0,
            "sustained_ratio": 0.8,
            "window_minutes": 5,
            "min_samples": 3,
            "iqr_multiplier": 1.5,
            "votes_needed": 2,
            "cooldown_seconds": 300,
            "min_level": 1,
            "max_level": 10
        })
    );
    assert_eq!(
        serde_json::from_value::<Policy>(value).unwrap(),
        Policy::default()
    );
}

#[test]
fn a_patch_replaces_only_its_fields() {
    let policy = patch(json!({
        "mode": "dry_run",
        "scale_up_cpu_above": 70,
        "window_minutes": 10.0,
        "cooldown_seconds": 0,
        "max_level": 5
    }))
    .unwrap();

    assert_eq!(
        policy,
        Policy {
            mode: PolicyMode::DryRun,
            scale_up_cpu_above: 70.0,
            window: TimeDelta::minutes(10),
            cooldown: TimeDelta::zero(),
            max_level: 5,
            ..Policy::default()
        }
    );
    assert_eq!(patch(json!({})).unwrap(), Policy::default());
}

#[test]
fn a_patch_deserialises_with_the_same_messages() {
    let err = serde_json::from_value::<PolicyPatch>(json!({"votes_needed": 7})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "votes_needed must be an integer between 1 and 6"
    );
    assert_eq!(
        serde_json::from_value::<PolicyPatch>(json!({"min_level": 2})).unwrap(),
        PolicyPatch {
            min_level: Some(2),
            ..PolicyPatch::default()
        }
    );
}

#[test]
fn unknown_fields_and_non_objects_are_refused() {
    assert_eq!(
        message(json!({"window_minutes": 5, "windows": 3})),
        "unknown policy field windows"
    );
    assert_eq!(
        message(json!({"weights": {}})),
        "unknown policy field weights"
    );
    for body in [json!([]), json!(null), json!("enforce"), json!(3)] {
        assert_eq!(message(body), "policy must be a JSON object");
    }
}

// ---- Every field --------------------------------------------------------------------

#[test]
fn percent_thresholds_are_numbers_between_0_and_100() {
    for field in [
        "scale_up_cpu_above",
        "scale_up_memory_above",
        "scale_down_cpu_below",
        "scale_down_memory_below",
    ] {
        let expected = format!("{field} must be a number between 0 and 100");
        for bad in [
            json!(-0.01),
            json!(100.01),
            json!("50"),
            json!(null),
            json!(true),
        ] {
            assert_eq!(message(json!({ field: bad })), expected, "{field}: {bad}");
        }
    }
    assert!(patch(json!({"scale_up_cpu_above": 100, "scale_up_memory_above": 100})).is_ok());
    assert!(patch(json!({"scale_down_cpu_below": 0, "scale_down_memory_below": 0})).is_ok());
}

#[test]
fn the_scale_down_thresholds_must_be_below_the_scale_up_ones() {
    let cases = [
        (
            json!({"scale_down_cpu_below": 90}),
            "scale_down_cpu_below must be below scale_up_cpu_above",
        ),
        (
            json!({"scale_up_cpu_above": 5}),
            "scale_down_cpu_below must be below scale_up_cpu_above",
        ),
        (
            json!({"scale_down_memory_below": 95}),
            "scale_down_memory_below must be below scale_up_memory_above",
        ),
        (
            json!({"scale_up_memory_above": 20}),
            "scale_down_memory_below must be below scale_up_memory_above",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(message(body.clone()), expected, "{body}");
    }
    assert!(patch(json!({"scale_down_cpu_below": 89.99})).is_ok());
}

#[test]
fn fractions_are_greater_than_0_and_bounded() {
    let cases = [
        (
            "sustained_ratio",
            "sustained_ratio must be greater than 0 and at most 1",
            vec![
                json!(0),
                json!(-0.5),
                json!(1.01),
                json!("0.8"),
                json!(null),
            ],
            vec![json!(1), json!(0.01)],
        ),
        (
            "iqr_multiplier",
            "iqr_multiplier must be greater than 0 and at most 10",
            vec![json!(0), json!(10.5), json!([1.5]), json!(null)],
            vec![json!(10), json!(0.1)],
        ),
    ];
    for (field, expected, bad, good) in cases {
        for v in bad {
            assert_eq!(message(json!({ field: v })), expected, "{field}: {v}");
        }
        for v in good {
            assert!(patch(json!({ field: v })).is_ok(), "{field}: {v}");
        }
    }
}

#[test]
fn integer_fields_refuse_fractions_other_types_and_out_of_range_values() {
    let cases = [
        (
            "window_minutes",
            "window_minutes must be an integer between 1 and 60",
            0,
            61,
        ),
        (
            "min_samples",
            "min_samples must be an integer between 1 and 1000",
            0,
            1001,
        ),
        (
            "votes_needed",
            "votes_needed must be an integer between 1 and 6",
            0,
            7,
        ),
        (
            "cooldown_seconds",
            "cooldown_seconds must be an integer between 0 and 86400",
            -1,
            86_401,
        ),
        (
            "min_level",
            "min_level must be an integer between 1 and 50",
            0,
            51,
        ),
        (
            "max_level",
            "max_level must be an integer between 1 and 50",
            0,
            51,
        ),
    ];
    for (field, expected, below, above) in cases {
        for bad in [
            json!(below),
            json!(above),
            json!(2.5),
            json!("3"),
            json!(null),
            json!(1e300),
            json!(u64::MAX),
        ] {
            assert_eq!(message(json!({ field: bad })), expected, "{field}: {bad}");
        }
        // The bounds themselves are allowed (min_level only up to the default maximum).
        let top = if field == "min_level" { 10 } else { above - 1 };
        for good in [below + 1, top] {
            assert!(patch(json!({ field: good })).is_ok(), "{field}: {good}");
        }
    }
}

#[test]
fn min_level_must_not_be_above_max_level() {
    assert_eq!(
        message(json!({"min_level": 6, "max_level": 5})),
        "min_level must not be above max_level"
    );
    assert_eq!(
        message(json!({"min_level": 11})),
        "min_level must not be above max_level"
    );
    assert_eq!(
        patch(json!({"min_level": 5, "max_level": 5}))
            .unwrap()
            .min_level,
        5
    );
}

#[test]
fn mode_is_enforce_or_dry_run() {
    for bad in [json!("DRY_RUN"), json!("dry-run"), json!(1), json!(null)] {
        assert_eq!(
            message(json!({ "mode": bad })),
            "mode must be \"enforce\" or \"dry_run\"",
            "{bad}"
        );
    }
    assert_eq!(
        patch(json!({"mode": "enforce"})).unwrap().mode,
        PolicyMode::Enforce
    );
}

#[test]
fn the_first_broken_rule_is_reported_in_field_order() {
    assert_eq!(
        message(json!({"max_level": 0, "mode": "x", "sustained_ratio": 2})),
        "mode must be \"enforce\" or \"dry_run\""
    );
    // A field rule comes before a rule between fields.
    assert_eq!(
        message(json!({"scale_down_cpu_below": 95, "max_level": 0})),
        "max_level must be an integer between 1 and 50"
    );
}

#[test]
fn validate_checks_a_whole_policy_including_its_durations() {
    assert_eq!(Policy::default().validate(), Ok(()));
    let cases = [
        (
            Policy {
                window: TimeDelta::seconds(90),
                ..Policy::default()
            },
            "window_minutes must be an integer between 1 and 60",
        ),
        (
            Policy {
                cooldown: TimeDelta::milliseconds(1500),
                ..Policy::default()
            },
            "cooldown_seconds must be an integer between 0 and 86400",
        ),
        (
            Policy {
                scale_up_cpu_above: f64::NAN,
                ..Policy::default()
            },
            "scale_up_cpu_above must be a number between 0 and 100",
        ),
        (
            Policy {
                min_samples: 0,
                ..Policy::default()
            },
            "min_samples must be an integer between 1 and 1000",
        ),
    ];
    for (policy, expected) in cases {
        assert_eq!(policy.validate().unwrap_err().to_string(), expected);
    }
    // A patch over an invalid base reports the base's broken rule.
    let base = Policy {
        votes_needed: 9,
        ..Policy::default()
    };
    assert_eq!(
        PolicyPatch::default().apply_over(&base).unwrap_err(),
        PolicyError::Invalid {
            field: "votes_needed",
            message: "votes_needed must be an integer between 1 and 6",
        }
    );
}

// ---- The engine under a policy ------------------------------------------------------

#[test]
fn the_sustained_share_counts_whole_samples_despite_float_rounding() {
    let cases = [
        (0.8, 5, 4),
        (0.8, 20, 16),
        (0.8, 24, 20),
        (0.7, 10, 7),
        (0.3, 10, 3),
        (0.1, 30, 3),
        (0.6, 5, 3),
        (1.0, 7, 7),
        (0.81, 5, 5),
        (0.01, 3, 1),
    ];
    for (ratio, total, needed) in cases {
        assert_eq!(needed_count(ratio, total), needed, "{ratio} of {total}");
    }
}

#[test]
fn seven_of_ten_hot_samples_scale_up_at_a_ratio_of_0_7() {
    let policy = Policy {
        sustained_ratio: 0.7,
        ..Policy::default()
    };
    let mut cpus = vec![95.0; 7];
    cpus.extend([50.0; 3]);

    let seven = decide_scaling(&at_level(3), &policy, &series(&cpus, None), now());
    cpus[0] = 50.0;
    let six = decide_scaling(&at_level(3), &policy, &series(&cpus, None), now());

    assert_eq!(seven.decision, Decision::ScaleUp);
    assert_eq!(
        seven.reason,
        "Sustained scale up: CPU > 90% for 70.0% of last 5 minutes (Current: 95.00%)"
    );
    assert_eq!(six.decision, Decision::NoAction);
}

#[test]
fn reasons_quote_the_policy_they_were_decided_under() {
    let policy = patch(json!({"scale_up_cpu_above": 70, "window_minutes": 10})).unwrap();
    let mut cpus = vec![80.0; 17];
    cpus.extend([50.0; 3]);
    cpus[0] = 92.5;

    let eval = decide_scaling(&at_level(3), &policy, &series(&cpus, None), now());

    assert_eq!(
        eval.reason,
        "Sustained scale up: CPU > 70% for 85.0% of last 10 minutes (Current: 92.50%)"
    );

    let policy = Policy {
        scale_down_cpu_below: 12.5,
        scale_down_memory_below: 30.0,
        min_samples: 4,
        ..Policy::default()
    };
    let idle = series(&[11.0; 4], Some(25.0));
    assert_eq!(
        decide_scaling(&at_level(3), &policy, &idle, now()).reason,
        "Sustained scale down: CPU < 12.5% and memory < 30% for 100.0% of last 5 minutes \
         (Current CPU: 11.00%, memory: 25.00%)"
    );
    assert_eq!(
        decide_scaling(&at_level(3), &policy, &idle[..3], now()).reason,
        "Insufficient data: 3 samples in the last 5 minutes (need at least 4)"
    );
}

#[test]
fn different_cpu_and_memory_thresholds_are_both_named() {
    let policy = Policy {
        scale_up_memory_above: 80.0,
        ..Policy::default()
    };
    // Half hot on CPU only, half on memory only: neither alone reaches 80%.
    let mut window = series(&[95.0, 95.0, 50.0, 50.0], Some(50.0));
    window[2].memory = Some(85.0);
    window[3].memory = Some(85.0);

    let eval = decide_scaling(&at_level(3), &policy, &window, now());

    assert_eq!(
        eval.reason,
        "Sustained scale up: CPU > 90% or memory > 80% for 100.0% of last 5 minutes \
         (Current CPU: 95.00%, memory: 50.00%)"
    );
}

#[test]
fn scale_down_stops_at_the_policys_minimum_level() {
    let policy = Policy {
        min_level: 3,
        ..Policy::default()
    };
    let idle = series(&[5.0; 3], Some(10.0));

    let eval = decide_scaling(&at_level(3), &policy, &idle, now());

    assert_eq!((eval.decision, eval.new_level), (Decision::NoAction, 3));
    assert_eq!(
        eval.reason,
        "Scale down suppressed: already at minimum scale level 3 (Sustained scale down: \
         CPU < 10% and memory < 20% for 100.0% of last 5 minutes (Current CPU: 5.00%, \
         memory: 10.00%))"
    );
}

#[test]
fn a_level_outside_the_bounds_steps_back_in_whatever_the_load() {
    let policy = Policy {
        min_level: 2,
        max_level: 5,
        ..Policy::default()
    };
    let hot = series(&[95.0; 3], None);

    let above = decide_scaling(&at_level(8), &policy, &hot, now());
    let below = decide_scaling(&at_level(1), &policy, &[], now());
    let cooling = decide_scaling(
        &InstanceState {
            level: 8,
            last_action_at: Some(now() - TimeDelta::seconds(10)),
        },
        &policy,
        &hot,
        now(),
    );

    assert_eq!((above.decision, above.new_level), (Decision::ScaleDown, 7));
    assert_eq!(
        above.reason,
        "Scale down: level 8 is above the policy's maximum level 5"
    );
    assert_eq!(above.latest, Some(hot[0]));
    assert_eq!((below.decision, below.new_level), (Decision::ScaleUp, 2));
    assert_eq!(
        below.reason,
        "Scale up: level 1 is below the policy's minimum level 2"
    );
    assert_eq!(
        (cooling.decision, cooling.new_level),
        (Decision::NoAction, 8)
    );
    assert!(
        cooling.reason.starts_with("Cooldown: "),
        "{}",
        cooling.reason
    );
}

#[test]
fn the_iqr_vote_follows_the_multiplier_and_the_votes_needed() {
    // CPU 40..54 in steps of 2 gives Q1 43.5, Q3 50.5 (IQR 7) without the newest.
    let mut window = series(
        &[62.0, 40.0, 42.0, 44.0, 46.0, 48.0, 50.0, 52.0, 54.0],
        None,
    );
    window[0].is_outlier = true;
    let decide = |policy: &Policy| decide_scaling(&at_level(3), policy, &window, now());

    let default = decide(&Policy::default());
    let wide = decide(&Policy {
        iqr_multiplier: 2.0,
        ..Policy::default()
    });
    let demanding = decide(&Policy {
        votes_needed: 3,
        ..Policy::default()
    });

    assert_eq!(
        default.reason,
        "IQR outlier: 2 votes to scale up, 0 to scale down (CPU 62.00% above upper bound 61.00%)"
    );
    assert_eq!(wide.reason, "Within normal range: 0 up / 0 down votes");
    assert_eq!(demanding.decision, Decision::NoAction);
    assert_eq!(
        demanding.reason,
        "Within normal range: 2 up / 0 down votes (CPU 62.00% above upper bound 61.00%)"
    );
}

#[test]
fn the_documented_fields_are_the_validated_ones() {
    use utoipa::PartialSchema;
    let doc = serde_json::to_value(Policy::schema()).unwrap();
    let props = doc["properties"].as_object().unwrap();
    assert_eq!(props.len(), FIELDS.len());
    assert_eq!(doc["required"].as_array().unwrap().len(), FIELDS.len());
    assert_eq!(
        props["window_minutes"],
        json!({"type": "integer", "minimum": 1, "maximum": 60, "default": 5,
               "description": "window_minutes must be an integer between 1 and 60"})
    );
    assert_eq!(
        props["sustained_ratio"]["exclusiveMinimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(props["mode"]["enum"], json!(["enforce", "dry_run"]));
    let patch = serde_json::to_value(PolicyPatch::schema()).unwrap();
    assert!(patch.get("required").is_none());
    assert_eq!(patch["additionalProperties"], json!(false));
    // Every documented bound is accepted, and one step past it refused.
    for (field, p) in props.iter().filter(|(f, _)| *f != "mode") {
        let (lo, hi) = (p["minimum"].as_f64(), p["maximum"].as_f64().unwrap());
        assert!(
            PolicyPatch::from_json(&json!({ field: hi })).is_ok(),
            "{field}"
        );
        assert!(
            PolicyPatch::from_json(&json!({ field: hi + 1.0 })).is_err(),
            "{field}"
        );
        if let Some(lo) = lo {
            assert!(
                PolicyPatch::from_json(&json!({ field: lo })).is_ok(),
                "{field}"
            );
            assert!(
                PolicyPatch::from_json(&json!({ field: lo - 1.0 })).is_err(),
                "{field}"
            );
        }
    }
}

#[test]
fn a_change_of_mode_resets_the_shadow_and_nothing_else_does() {
    let defaults = Policy::default();
    let dry = PolicyPatch::from_json(&json!({"mode": "dry_run"})).unwrap();
    let dry_hot =
        PolicyPatch::from_json(&json!({"mode": "dry_run", "scale_up_cpu_above": 70})).unwrap();
    let change = |current: Option<&PolicyPatch>, next: Option<&PolicyPatch>| {
        PolicyChange::new(&defaults, current, next)
            .unwrap()
            .reset_shadow
    };
    assert!(change(None, Some(&dry)), "enforce to dry run");
    assert!(
        change(Some(&dry), None),
        "dry run back to the defaults' enforce"
    );
    assert!(
        !change(Some(&dry), Some(&dry_hot)),
        "a threshold within one mode"
    );
    assert!(!change(None, None));
    let after = PolicyChange::new(&defaults, None, Some(&dry_hot))
        .unwrap()
        .policy;
    assert_eq!(
        (after.mode, after.scale_up_cpu_above),
        (PolicyMode::DryRun, 70.0)
    );
}

#[test]
fn a_stored_patch_the_defaults_no_longer_allow_resolves_to_the_defaults() {
    let own = PolicyPatch::from_json(&json!({"min_level": 5})).unwrap();
    let lowered = Policy {
        max_level: 3,
        ..Policy::default()
    };
    assert_eq!(Policy::resolve(&lowered, Some(&own)), lowered);
    assert_eq!(Policy::resolve(&lowered, None), lowered);
    assert_eq!(Policy::resolve(&Policy::default(), Some(&own)).min_level, 5);
}
