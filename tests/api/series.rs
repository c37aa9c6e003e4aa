//! The chart data: `GET /api/metrics/{instance_id}/series`.

use autoscaler::model::{NewMetric, SampleSource};
use autoscaler::scaling::record::ScalingOutcome;
use autoscaler::scaling::{Decision, Evaluation, Votes};
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_recent, error, take_time, take_uuid};
use crate::on_both_databases;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A user with one mock instance, `mock-1`; returns the token and its internal id.
async fn owner_with_instance(app: &TestApp) -> (String, Uuid) {
    let token = app.user("owner@example.com").await;
    app.mock_instance(&token, "mock-1").await;
    (token, app.instance_uuid("mock-1").await)
}

fn sample(
    instance: Uuid,
    ts: &str,
    cpu: f64,
    memory: Option<f64>,
    network_in: Option<i64>,
) -> NewMetric {
    NewMetric {
        instance,
        timestamp: at(ts),
        cpu_utilization: cpu,
        memory_usage: memory,
        network_in,
        network_out: None,
        source: SampleSource::Simulated,
    }
}

/// Records a decision at `ts` from `before` to `after` as the scaling job would.
async fn decide(
    app: &TestApp,
    instance: Uuid,
    ts: &str,
    decision: Decision,
    before: i32,
    after: i32,
) {
    let outcome = ScalingOutcome {
        instance,
        instance_id: String::new(), // the owner has no webhooks
        level_before: before,
        evaluation: Evaluation {
            decision,
            reason: format!("{} at {ts}", decision.as_str()),
            new_level: after,
            votes: Votes::default(),
            outlier: None,
            latest: None,
        },
        record: true,
        decided_at: at(ts),
        dry_run: false,
    };
    app.store.apply_scaling(&[outcome]).await.unwrap();
}

const SPAN: &str = "from=2026-01-22T04:00:00Z&to=2026-01-22T04:10:00Z";

on_both_databases! {
    async fn buckets_start_at_from_and_hold_the_samples_of_their_step(app) {
        let (token, id) = owner_with_instance(&app).await;
        app.store
            .insert_metrics(&[
                sample(id, "2026-01-22T03:59:59.999999Z", 99.0, None, None), // before from
                sample(id, "2026-01-22T04:00:00Z", 10.0, Some(40.0), Some(100)),
                sample(id, "2026-01-22T04:00:59.999999Z", 30.0, None, Some(300)),
                sample(id, "2026-01-22T04:01:00Z", 50.0, None, None),
                sample(id, "2026-01-22T04:09:59Z", 70.0, Some(60.0), Some(5)),
                sample(id, "2026-01-22T04:10:00Z", 99.0, None, None), // at to: excluded
            ])
            .await
            .unwrap();

        let (status, body) = app
            .get(&format!("/api/metrics/mock-1/series?{SPAN}&step=60"), &token)
            .await;

        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({
                "instance_id": "mock-1",
                "from": "2026-01-22T04:00:00.000000Z",
                "to": "2026-01-22T04:10:00.000000Z",
                "step": 60,
                "points": [
                    {"timestamp": "2026-01-22T04:00:00.000000Z", "samples": 2,
                     "cpu_avg": 20.0, "cpu_max": 30.0, "memory_avg": 40.0, "memory_max": 40.0,
                     "network_in_avg": 200.0, "network_out_avg": null},
                    {"timestamp": "2026-01-22T04:01:00.000000Z", "samples": 1,
                     "cpu_avg": 50.0, "cpu_max": 50.0, "memory_avg": null, "memory_max": null,
                     "network_in_avg": null, "network_out_avg": null},
                    {"timestamp": "2026-01-22T04:09:00.000000Z", "samples": 1,
                     "cpu_avg": 70.0, "cpu_max": 70.0, "memory_avg": 60.0, "memory_max": 60.0,
                     "network_in_avg": 5.0, "network_out_avg": null},
                ],
                "decisions": [],
                "levels": [{"timestamp": "2026-01-22T04:00:00.000000Z", "level": 1, "capacity": 100.0}],
            })
        );
    }

    async fn buckets_are_counted_from_from_not_from_the_epoch(app) {
        let (token, id) = owner_with_instance(&app).await;
        app.store
            .insert_metrics(&[
                sample(id, "2026-01-22T04:00:06Z", 10.0, None, None),
                sample(id, "2026-01-22T04:00:07Z", 20.0, None, None),
                sample(id, "2026-01-22T04:00:16Z", 30.0, None, None),
            ])
            .await
            .unwrap();

        let (status, body) = app
            .get(
                "/api/metrics/mock-1/series?from=2026-01-22T04:00:07Z&to=2026-01-22T04:01:00Z&step=10",
                &token,
            )
            .await;

        assert_eq!(status, StatusCode::OK, "{body}");
        let starts: Vec<(&str, i64)> = body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["timestamp"].as_str().unwrap(), p["samples"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            starts,
            vec![("2026-01-22T04:00:07.000000Z", 2)],
            "04:00:06 is before from; 04:00:07 and 04:00:16 share the bucket from 04:00:07"
        );
    }

    async fn actions_in_the_span_and_the_level_path_they_drew(app) {
        let (token, id) = owner_with_instance(&app).await;
        decide(&app, id, "2026-01-22T03:50:00Z", Decision::ScaleUp, 1, 2).await;
        decide(&app, id, "2026-01-22T04:02:00Z", Decision::NoAction, 2, 2).await;
        decide(&app, id, "2026-01-22T04:05:00Z", Decision::ScaleUp, 2, 3).await;
        decide(&app, id, "2026-01-22T04:08:00Z", Decision::ScaleDown, 3, 2).await;
        decide(&app, id, "2026-01-22T04:20:00Z", Decision::ScaleUp, 2, 3).await;

        let (status, mut body) = app
            .get(&format!("/api/metrics/mock-1/series?{SPAN}"), &token)
            .await;

        assert_eq!(status, StatusCode::OK, "{body}");
        take_uuid(&mut body, "/decisions/0/id");
        take_uuid(&mut body, "/decisions/1/id");
        assert_eq!(
            body,
            json!({
                "instance_id": "mock-1",
                "from": "2026-01-22T04:00:00.000000Z",
                "to": "2026-01-22T04:10:00.000000Z",
                "step": 30,
                "points": [],
                "decisions": [
                    {"id": "<uuid>", "timestamp": "2026-01-22T04:05:00.000000Z", "decision": "scale_up",
                     "reason": "scale_up at 2026-01-22T04:05:00Z", "level_before": 2, "level_after": 3},
                    {"id": "<uuid>", "timestamp": "2026-01-22T04:08:00.000000Z", "decision": "scale_down",
                     "reason": "scale_down at 2026-01-22T04:08:00Z", "level_before": 3, "level_after": 2},
                ],
                "levels": [
                    {"timestamp": "2026-01-22T04:00:00.000000Z", "level": 2, "capacity": 150.0},
                    {"timestamp": "2026-01-22T04:05:00.000000Z", "level": 3, "capacity": 225.0},
                    {"timestamp": "2026-01-22T04:08:00.000000Z", "level": 2, "capacity": 150.0},
                ],
            })
        );

        // Before the first decision the level is the one it started from...
        let (_, body) = app
            .get("/api/metrics/mock-1/series?from=2026-01-22T03:00:00Z&to=2026-01-22T03:30:00Z", &token)
            .await;
        assert_eq!(body["levels"], json!([{"timestamp": "2026-01-22T03:00:00.000000Z", "level": 1, "capacity": 100.0}]));
        // ...and after the last one it is the level it left.
        let (_, body) = app
            .get("/api/metrics/mock-1/series?from=2026-01-22T05:00:00Z&to=2026-01-22T05:30:00Z", &token)
            .await;
        assert_eq!(body["levels"], json!([{"timestamp": "2026-01-22T05:00:00.000000Z", "level": 3, "capacity": 225.0}]));
    }

    async fn the_default_span_is_the_last_hour_at_the_sampling_interval(app) {
        let (token, _) = owner_with_instance(&app).await;
        app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 95.0, "duration_minutes": 2, "interval_seconds": 30})).await;

        let (status, mut body) = app.get("/api/metrics/mock-1/series", &token).await;

        assert_eq!(status, StatusCode::OK, "{body}");
        let to = take_time(&mut body, "/to");
        let from = take_time(&mut body, "/from");
        assert_recent(to, 5);
        assert_eq!(to - from, TimeDelta::hours(1));
        assert_eq!(body["step"], 30);
        let points = body["points"].as_array().unwrap();
        assert_eq!(points.iter().map(|p| p["samples"].as_i64().unwrap()).sum::<i64>(), 4);
        assert!(points.iter().all(|p| p["cpu_avg"] == 95.0 && p["memory_avg"].is_null()), "{body}");
    }

    async fn a_long_span_gets_a_round_step_within_1000_buckets(app) {
        let (token, _) = owner_with_instance(&app).await;
        for (from, step) in [
            ("2026-01-21T04:00:00Z", 120),  // one day
            ("2026-01-15T04:00:00Z", 900),  // seven days: 672 buckets
            ("2025-10-24T04:00:00Z", 10800), // ninety days
        ] {
            let (status, body) = app
                .get(&format!("/api/metrics/mock-1/series?from={from}&to=2026-01-22T04:00:00Z"), &token)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["step"], step, "{from}");
        }
    }

    async fn an_instance_without_samples_has_an_empty_series(app) {
        let (token, _) = owner_with_instance(&app).await;

        let (status, body) = app
            .get(&format!("/api/metrics/mock-1/series?{SPAN}&step=600"), &token)
            .await;

        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({
                "instance_id": "mock-1",
                "from": "2026-01-22T04:00:00.000000Z",
                "to": "2026-01-22T04:10:00.000000Z",
                "step": 600,
                "points": [],
                "decisions": [],
                "levels": [{"timestamp": "2026-01-22T04:00:00.000000Z", "level": 1, "capacity": 100.0}],
            })
        );
    }

    async fn bad_spans_and_steps_are_400_naming_the_parameter(app) {
        let (token, _) = owner_with_instance(&app).await;
        let rfc = |name: &str| format!("{name} must be an RFC 3339 timestamp such as 2026-01-22T05:00:00Z");
        let cases = [
            ("from=yesterday".to_owned(), rfc("from")),
            ("to=2026-01-22".to_owned(), rfc("to")),
            ("from=2026-01-22T04:10:00Z&to=2026-01-22T04:00:00Z".to_owned(), "from must be before to".to_owned()),
            ("from=2026-01-22T04:00:00Z&to=2026-01-22T04:00:00Z".to_owned(), "from must be before to".to_owned()),
            ("from=2025-10-01T00:00:00Z&to=2026-01-22T04:00:00Z".to_owned(), "from must be at most 90 days before to".to_owned()),
            (format!("{SPAN}&step=0"), "step must be a whole number of seconds between 1 and 7776000".to_owned()),
            (format!("{SPAN}&step=1.5"), "step must be a whole number of seconds between 1 and 7776000".to_owned()),
            (format!("{SPAN}&step=abc"), "step must be a whole number of seconds between 1 and 7776000".to_owned()),
            (
                "from=2026-01-21T04:00:00Z&to=2026-01-22T04:00:00Z&step=60".to_owned(),
                "step must give at most 1000 buckets: this span needs a step of at least 87 seconds".to_owned(),
            ),
            (format!("{SPAN}&step=60&step=30"), "from, to and step may each be given only once".to_owned()),
        ];
        for (query, message) in cases {
            let (status, body) = app.get(&format!("/api/metrics/mock-1/series?{query}"), &token).await;
            assert_eq!((status, body), (StatusCode::BAD_REQUEST, error(&message)), "{query}");
        }
    }

    async fn the_series_is_guarded_like_the_metrics(app) {
        let (owner, _) = owner_with_instance(&app).await;
        let other = app.user("other@example.com").await;

        let (status, body) = app.call(Method::GET, "/api/metrics/mock-1/series", None, None).await;
        assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token is missing")));
        let (status, body) = app.get("/api/metrics/mock-1/series", &other).await;
        assert_eq!((status, body), (StatusCode::FORBIDDEN, error("Unauthorized: You don't own this instance")));
        let (status, body) = app.get("/api/metrics/nope/series", &owner).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Instance not found")));
        let (status, body) = app.get("/api/metrics/mock-1/series/", &owner).await;
        assert_eq!(status, StatusCode::OK, "trailing slash: {body}");
    }
}
