//! Per-instance policies, dry runs and backtests.

use std::time::Duration;

use autoscaler::jobs::run_scaling_tick;
use autoscaler::model::{NewMetric, SampleSource};
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, error};
use crate::on_both_databases;

const SCALING: Duration = Duration::from_secs(15);
const PATH: &str = "/api/instances/mock-1/policy";

fn defaults() -> Value {
    json!({"mode": "enforce", "scale_up_cpu_above": 90.0, "scale_up_memory_above": 90.0,
           "scale_down_cpu_below": 10.0, "scale_down_memory_below": 20.0, "sustained_ratio": 0.8,
           "window_minutes": 5, "min_samples": 3, "iqr_multiplier": 1.5, "votes_needed": 2,
           "cooldown_seconds": 300, "min_level": 1, "max_level": 10})
}

fn with(changes: Value) -> Value {
    let mut policy = defaults();
    policy
        .as_object_mut()
        .unwrap()
        .extend(changes.as_object().unwrap().clone());
    policy
}

async fn owner(app: &TestApp) -> String {
    let token = app.user("owner@example.com").await;
    app.mock_instance(&token, "mock-1").await;
    token
}

async fn put(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::PUT, PATH, Some(token), Some(body)).await
}

/// `count` samples `step` seconds apart at `cpu` (memory 50 %), the newest at `newest`.
fn samples(
    instance: Uuid,
    newest: DateTime<Utc>,
    count: i64,
    step: i64,
    cpu: f64,
) -> Vec<NewMetric> {
    (0..count)
        .map(|i| NewMetric {
            instance,
            timestamp: newest - TimeDelta::seconds((count - 1 - i) * step),
            cpu_utilization: cpu,
            memory_usage: Some(50.0),
            network_in: None,
            network_out: None,
            source: SampleSource::Simulated,
        })
        .collect()
}

/// A tick time a little in the past, on a 15 s boundary.
fn tick_time() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::minutes(1))
        .duration_trunc(TimeDelta::seconds(15))
        .unwrap()
}

async fn scale(app: &TestApp, now: DateTime<Utc>) {
    run_scaling_tick(app.store.as_ref(), &app.settings.policy, SCALING, now)
        .await
        .unwrap();
}

async fn instance(app: &TestApp, token: &str) -> Value {
    let (_, list) = app.get("/api/instances/", token).await;
    list["instances"][0].clone()
}

on_both_databases! {
    async fn a_new_instance_runs_on_the_default_policy(app) {
        let token = owner(&app).await;

        let (status, body) = app.get(PATH, &token).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"instance_id": "mock-1", "policy": defaults(), "is_default": true}));
        let shown = instance(&app, &token).await;
        assert_eq!((&shown["policy_mode"], &shown["recommended_scale_level"]), (&json!("enforce"), &json!(1)));
    }

    async fn put_sets_the_given_fields_and_the_rest_follow_the_defaults(app) {
        let token = owner(&app).await;

        let (status, body) = put(&app, &token, json!({"scale_up_cpu_above": 70, "window_minutes": 10})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let expected = with(json!({"scale_up_cpu_above": 70.0, "window_minutes": 10}));
        assert_eq!(body, json!({"instance_id": "mock-1", "policy": expected, "is_default": false}));
        assert_eq!(app.get(PATH, &token).await.1, body, "stored");

        // A second PUT replaces the first: what it leaves out is the default again.
        let (_, body) = put(&app, &token, json!({"min_level": 2})).await;
        assert_eq!(body["policy"], with(json!({"min_level": 2})));

        let (status, body) = app.call(Method::DELETE, PATH, Some(&token), None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"instance_id": "mock-1", "policy": defaults(), "is_default": true})));
        assert_eq!(app.get(PATH, &token).await.1["is_default"], true);
    }

    async fn every_invalid_field_is_400_naming_it_and_nothing_is_stored(app) {
        let token = owner(&app).await;
        let cases = [
            (json!({"mode": "sometimes"}), "mode must be \"enforce\" or \"dry_run\""),
            (json!({"scale_up_cpu_above": 101}), "scale_up_cpu_above must be a number between 0 and 100"),
            (json!({"scale_up_memory_above": "high"}), "scale_up_memory_above must be a number between 0 and 100"),
            (json!({"scale_down_cpu_below": -1}), "scale_down_cpu_below must be a number between 0 and 100"),
            (json!({"scale_down_memory_below": null}), "scale_down_memory_below must be a number between 0 and 100"),
            (json!({"scale_down_cpu_below": 95}), "scale_down_cpu_below must be below scale_up_cpu_above"),
            (json!({"scale_up_memory_above": 15}), "scale_down_memory_below must be below scale_up_memory_above"),
            (json!({"sustained_ratio": 0}), "sustained_ratio must be greater than 0 and at most 1"),
            (json!({"sustained_ratio": 1.5}), "sustained_ratio must be greater than 0 and at most 1"),
            (json!({"window_minutes": 61}), "window_minutes must be an integer between 1 and 60"),
            (json!({"window_minutes": 2.5}), "window_minutes must be an integer between 1 and 60"),
            (json!({"min_samples": 0}), "min_samples must be an integer between 1 and 1000"),
            (json!({"iqr_multiplier": 0}), "iqr_multiplier must be greater than 0 and at most 10"),
            (json!({"votes_needed": 7}), "votes_needed must be an integer between 1 and 6"),
            (json!({"cooldown_seconds": 86401}), "cooldown_seconds must be an integer between 0 and 86400"),
            (json!({"min_level": 0}), "min_level must be an integer between 1 and 50"),
            (json!({"max_level": 51}), "max_level must be an integer between 1 and 50"),
            (json!({"min_level": 5, "max_level": 4}), "min_level must not be above max_level"),
            (json!({"scale_up": 70}), "unknown policy field scale_up"),
            (json!([70]), "policy must be a JSON object"),
        ];
        for (body, message) in cases {
            let (status, resp) = put(&app, &token, body.clone()).await;
            assert_eq!((status, resp), (StatusCode::BAD_REQUEST, error(message)), "{body}");
        }
        assert_eq!(app.get(PATH, &token).await.1["is_default"], true);
    }

    async fn policy_routes_answer_404_and_403_like_the_other_instance_routes(app) {
        let token = owner(&app).await;
        let intruder = app.user("intruder@example.com").await;
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let body = (method == Method::PUT).then(|| json!({}));
            let (status, resp) = app.call(method.clone(), "/api/instances/nope/policy", Some(&token), body.clone()).await;
            assert_eq!((status, resp), (StatusCode::NOT_FOUND, error("Instance not found")), "{method}");
            let (status, resp) = app.call(method.clone(), PATH, Some(&intruder), body).await;
            assert_eq!((status, resp), (StatusCode::FORBIDDEN, error("Unauthorized: You don't own this instance")), "{method}");
        }
        let (status, resp) = app.post("/api/instances/mock-1/backtest", Some(&intruder), json!({})).await;
        assert_eq!((status, resp), (StatusCode::FORBIDDEN, error("Unauthorized: You don't own this instance")));
    }

    async fn a_lower_cpu_threshold_scales_up_where_the_default_does_not(app) {
        let token = owner(&app).await;
        app.patch("/api/instances/mock-1/monitor/start", &token).await;
        let id = app.instance_uuid("mock-1").await;
        let now = tick_time();
        app.store.insert_metrics(&samples(id, now, 10, 30, 75.0)).await.unwrap();

        scale(&app, now).await;
        assert_eq!(instance(&app, &token).await["current_scale_level"], 1, "75 % is not above the default 90 %");

        put(&app, &token, json!({"scale_up_cpu_above": 70})).await;
        scale(&app, now + TimeDelta::seconds(15)).await;

        let shown = instance(&app, &token).await;
        assert_eq!(shown["current_scale_level"], 2);
        let (_, decisions) = app.get("/api/metrics/decisions/mock-1?limit=1", &token).await;
        let d = &decisions["decisions"][0];
        assert_eq!(
            (&d["decision"], &d["reason"], &d["dry_run"], &d["level_before"], &d["level_after"]),
            (&json!("scale_up"), &json!("Sustained scale up: CPU > 70% for 100.0% of last 5 minutes (Current: 75.00%)"),
             &json!(false), &json!(1), &json!(2))
        );
    }

    async fn a_level_below_new_bounds_steps_into_them_one_level_per_evaluation(app) {
        let token = owner(&app).await;
        app.patch("/api/instances/mock-1/monitor/start", &token).await;
        put(&app, &token, json!({"min_level": 3, "cooldown_seconds": 0})).await;
        let now = tick_time();

        scale(&app, now).await;
        assert_eq!(instance(&app, &token).await["current_scale_level"], 2);
        scale(&app, now + TimeDelta::seconds(15)).await;
        assert_eq!(instance(&app, &token).await["current_scale_level"], 3);
        scale(&app, now + TimeDelta::seconds(30)).await;
        assert_eq!(instance(&app, &token).await["current_scale_level"], 3, "inside the bounds: no metrics, no action");

        let (_, decisions) = app.get("/api/metrics/decisions/mock-1", &token).await;
        let reasons: Vec<&str> = decisions["decisions"].as_array().unwrap().iter().map(|d| d["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons[1..], [
            "Scale up: level 2 is below the policy's minimum level 3",
            "Scale up: level 1 is below the policy's minimum level 3",
        ]);
    }

    async fn a_dry_run_moves_only_the_recommended_level_once_per_episode(app) {
        let token = owner(&app).await;
        app.patch("/api/instances/mock-1/monitor/start", &token).await;
        let (_, body) = put(&app, &token, json!({"mode": "dry_run"})).await;
        assert_eq!(body["policy"]["mode"], "dry_run");
        let id = app.instance_uuid("mock-1").await;
        let now = tick_time();
        app.store.insert_metrics(&samples(id, now + TimeDelta::seconds(60), 14, 30, 95.0)).await.unwrap();

        for k in 0..5 {
            scale(&app, now + TimeDelta::seconds(15 * k)).await;
        }

        let shown = instance(&app, &token).await;
        assert_eq!(
            (&shown["current_scale_level"], &shown["cpu_capacity"], &shown["recommended_scale_level"], &shown["policy_mode"]),
            (&json!(1), &json!(100.0), &json!(2), &json!("dry_run")),
            "the real level never moves; the shadow stepped once, then cooled down"
        );
        let (_, decisions) = app.get("/api/metrics/decisions/mock-1", &token).await;
        let ups: Vec<&Value> = decisions["decisions"].as_array().unwrap().iter().filter(|d| d["decision"] == "scale_up").collect();
        assert_eq!(ups.len(), 1, "{decisions}");
        assert_eq!((&ups[0]["dry_run"], &ups[0]["level_before"], &ups[0]["level_after"]), (&json!(true), &json!(1), &json!(2)));

        // Back to enforce: the shadow restarts from the real level.
        put(&app, &token, json!({})).await;
        let shown = instance(&app, &token).await;
        assert_eq!((&shown["policy_mode"], &shown["recommended_scale_level"]), (&json!("enforce"), &json!(1)));
        let stored = app.store.instance_by_instance_id("mock-1").await.unwrap().unwrap();
        assert_eq!(stored.recommended_level, 1);
    }

    async fn a_backtest_of_an_empty_history_holds_the_start_level(app) {
        let token = owner(&app).await;

        let (status, body) = app
            .post("/api/instances/mock-1/backtest", Some(&token),
                  json!({"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T01:00:00Z", "start_level": 2}))
            .await;

        assert_eq!(status, StatusCode::OK, "{body}");
        let summary = json!({"scale_ups": 0, "scale_downs": 0, "final_level": 2, "max_level_reached": 2,
                             "seconds_at_level": {"2": 3600}, "capacity_hours": 1.5, "overload_seconds": 0});
        assert_eq!(
            body,
            json!({"instance_id": "mock-1", "from": "2026-11-01T00:00:00.000000Z", "to": "2026-11-01T01:00:00.000000Z",
                   "interval_seconds": 15, "ticks": 240, "policy": defaults(), "summary": summary,
                   "baseline": summary, "actions": [], "actions_truncated": false})
        );
    }

    async fn backtest_spans_are_checked(app) {
        let token = owner(&app).await;
        let cases = [
            (json!({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}), "from must be before to"),
            (json!({"from": "2026-08-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}), "from must be at most 90 days before to"),
            (json!({"to": "tomorrow"}), "to must be an RFC 3339 time such as 2026-01-22T05:00:00Z"),
            (json!({"start_level": 0}), "start_level must be an integer between 1 and 50"),
            (json!({"policy": {"min_level": 9, "max_level": 3}}), "min_level must not be above max_level"),
        ];
        for (body, message) in cases {
            let (status, resp) = app.post("/api/instances/mock-1/backtest", Some(&token), body.clone()).await;
            assert_eq!((status, resp), (StatusCode::BAD_REQUEST, error(message)), "{body}");
        }
    }

    async fn a_backtest_under_the_policy_in_force_reproduces_the_live_actions(app) {
        let token = owner(&app).await;
        app.patch("/api/instances/mock-1/monitor/start", &token).await;
        put(&app, &token, json!({"cooldown_seconds": 120, "scale_up_cpu_above": 80})).await;
        let id = app.instance_uuid("mock-1").await;
        // Two hours, 30 s apart, oldest first: calm, a hot hour with spikes, then idle.
        let from = tick_time() - TimeDelta::hours(2);
        let history: Vec<NewMetric> = (0..240)
            .map(|i| {
                let cpu = match i {
                    0..=59 => 40.0 + (i % 7) as f64,
                    60..=149 => if i % 11 == 0 { 99.0 } else { 85.0 + (i % 5) as f64 },
                    _ => 3.0 + (i % 3) as f64,
                };
                NewMetric {
                    instance: id,
                    timestamp: from + TimeDelta::seconds(30 * i + 7),
                    cpu_utilization: cpu,
                    memory_usage: Some(if i % 13 == 0 { 60.0 } else { 15.0 }),
                    network_in: Some(1_000_000 + 1_000 * (i % 17)),
                    network_out: Some(500_000),
                    source: SampleSource::Simulated,
                }
            })
            .collect();
        app.store.insert_metrics(&history).await.unwrap();
        let to = from + TimeDelta::hours(2);
        let mut at = from + TimeDelta::seconds(15);
        while at <= to {
            scale(&app, at).await;
            at += TimeDelta::seconds(15);
        }
        let (_, live) = app.get("/api/metrics/decisions/mock-1?limit=1000", &token).await;
        let mut live: Vec<Value> = live["decisions"].as_array().unwrap().iter()
            .filter(|d| d["decision"] != "no_action")
            .map(|d| json!([d["timestamp"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap(),
                            d["decision"], d["reason"], d["level_before"], d["level_after"]]))
            .collect();
        live.reverse();
        assert!(live.len() >= 3, "the history makes the live ticks act: {live:?}");

        let (status, body) = app
            .post("/api/instances/mock-1/backtest", Some(&token),
                  json!({"from": from.to_rfc3339(), "to": to.to_rfc3339(), "start_level": 1}))
            .await;

        assert_eq!(status, StatusCode::OK, "{body}");
        // Every time in the API's one format: RFC 3339, six fractional digits, Z.
        let times = [&body["from"], &body["to"]].into_iter()
            .chain(body["actions"].as_array().unwrap().iter().map(|a| &a["timestamp"]));
        for t in times {
            let t = t.as_str().unwrap();
            let fraction = t.get(19..26).unwrap_or_default();
            assert!(
                t.len() == 27 && t.ends_with('Z') && fraction.starts_with('.') && fraction[1..].bytes().all(|b| b.is_ascii_digit()),
                "{t} is not in the API's time format"
            );
        }
        assert_eq!(body["from"], json!(from.to_rfc3339_opts(SecondsFormat::Micros, true)));
        let replayed: Vec<Value> = body["actions"].as_array().unwrap().iter()
            .map(|a| json!([a["timestamp"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap(),
                            a["decision"], a["reason"], a["level_before"], a["level_after"]]))
            .collect();
        assert_eq!(replayed, live);
        assert_eq!(body["summary"], body["baseline"], "no candidate fields: the same policy");
        let final_level = instance(&app, &token).await["current_scale_level"].clone();
        assert_eq!(body["summary"]["final_level"], final_level);
        assert_eq!(body["ticks"], 480);
    }
}
