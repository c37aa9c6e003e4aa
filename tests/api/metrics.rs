//! Reading metrics and decisions, and simulating load.

use autoscaler::testing::TestReads;
use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_recent, error, send, take_time, take_uuid};
use crate::on_both_databases;

const BAD_LIMIT: &str = "limit must be a positive integer";

/// A user with one mock instance, `mock-1`; returns the token.
async fn owner_with_instance(app: &TestApp) -> String {
    let token = app.user("owner@example.com").await;
    app.mock_instance(&token, "mock-1").await;
    token
}

/// How many metrics are stored for `instance_id`.
async fn stored_metrics(app: &TestApp, instance_id: &str) -> usize {
    let id = app.instance_uuid(instance_id).await;
    app.store.recent_metrics(id, 100_000).await.unwrap().len()
}

/// A prolonged simulation of `points` samples 12 s apart ending now.
async fn simulate_points(app: &TestApp, token: &str, points: i64) {
    assert_eq!(points % 5, 0, "points must fill whole minutes at 12 s");
    let body = app
        .simulate(
            token,
            json!({"instance_id": "mock-1", "cpu_utilization": 50.0, "duration_minutes": points / 5, "interval_seconds": 12}),
        )
        .await;
    assert_eq!(body["metrics_created"], points);
}

/// The `pagination` of a first page of `size` in a list of `total` entries.
fn first_page(size: i64, total: i64) -> Value {
    let pages = (total + size - 1) / size;
    json!({"page": 1, "page_size": size, "total_count": total, "total_pages": pages,
           "has_next": pages > 1, "has_prev": false})
}

/// Checks a prolonged simulation's `sample_metrics`: its first three metrics, 30 s
/// apart, with the simulated `cpu` and `memory`; returns them for the exact comparison.
fn sample_metrics(body: &Value, cpu: f64, memory: f64) -> Value {
    let samples = body["sample_metrics"].as_array().expect("sample_metrics");
    assert_eq!(samples.len(), 3, "{body}");
    let times: Vec<chrono::DateTime<chrono::Utc>> = samples
        .iter()
        .map(|m| m["timestamp"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] == TimeDelta::seconds(30)),
        "{times:?}"
    );
    for m in samples {
        assert_eq!(m.as_object().unwrap().len(), 3, "{m}");
        assert_eq!(
            (&m["cpu_utilization"], &m["memory_usage"]),
            (&json!(cpu), &json!(memory))
        );
    }
    body["sample_metrics"].clone()
}

fn metric_timestamps(body: &Value) -> Vec<chrono::DateTime<chrono::Utc>> {
    body["metrics"]
        .as_array()
        .expect("metrics array")
        .iter()
        .map(|m| {
            let text = m["timestamp"].as_str().expect("timestamp string");
            assert!(text.ends_with('Z'), "{text}");
            text.parse().expect("RFC 3339 timestamp")
        })
        .collect()
}

on_both_databases! {
    async fn an_instant_simulation_answers_201_with_the_stored_metric(app) {
        let token = owner_with_instance(&app).await;

        let (status, mut body) = app
            .post(
                "/api/metrics/simulate",
                Some(&token),
                json!({"instance_id": "mock-1", "cpu_utilization": 95.5, "memory_usage": 70.2, "network_in": 3072000, "network_out": 1536000}),
            )
            .await;

        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = take_uuid(&mut body, "/metric/id");
        assert_recent(take_time(&mut body, "/metric/timestamp"), 5);
        assert_eq!(
            body,
            json!({
                "message": "Simulated metric created successfully",
                "metric": {
                    "id": "<uuid>",
                    "instance_id": "mock-1",
                    "timestamp": "<timestamp>",
                    "cpu_utilization": 95.5,
                    "memory_usage": 70.2,
                    "network_in": 3072000,
                    "network_out": 1536000,
                },
            })
        );
        let stored = app.store.recent_metrics(app.instance_uuid("mock-1").await, 10).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id, id);
    }

    async fn an_instant_simulation_without_memory_or_network_stores_nulls(app) {
        let token = owner_with_instance(&app).await;

        let mut body = app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 12.0})).await;

        take_uuid(&mut body, "/metric/id");
        take_time(&mut body, "/metric/timestamp");
        assert_eq!(
            body["metric"],
            json!({
                "id": "<uuid>",
                "instance_id": "mock-1",
                "timestamp": "<timestamp>",
                "cpu_utilization": 12.0,
                "memory_usage": null,
                "network_in": null,
                "network_out": null,
            })
        );
    }

    async fn the_stored_metric_reads_back_as_it_was_answered(app) {
        let token = owner_with_instance(&app).await;
        let created = app
            .simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 33.3, "memory_usage": 44.4, "network_in": 10, "network_out": 20}))
            .await;

        let (status, body) = app.get("/api/metrics/mock-1", &token).await;

        assert_eq!(status, StatusCode::OK);
        let metric = &created["metric"];
        assert_eq!(
            body,
            json!({
                "instance_id": "mock-1",
                "metrics": [{
                    "id": metric["id"],
                    "instance_id": "mock-1",
                    "timestamp": metric["timestamp"],
                    "cpu_utilization": 33.3,
                    "memory_usage": 44.4,
                    "network_in": 10,
                    "network_out": 20,
                    "is_outlier": false,
                    "outlier_type": null,
                }],
                "pagination": first_page(100, 1),
            })
        );
    }

    async fn a_prolonged_simulation_stores_20_metrics_30_seconds_apart_ending_now(app) {
        let token = owner_with_instance(&app).await;

        let (status, body) = app
            .post(
                "/api/metrics/simulate",
                Some(&token),
                json!({"instance_id": "mock-1", "cpu_utilization": 95.5, "memory_usage": 70.2, "network_in": 3072000, "network_out": 1536000, "duration_minutes": 10, "interval_seconds": 30}),
            )
            .await;

        assert_eq!(status, StatusCode::CREATED, "{body}");
        let samples = sample_metrics(&body, 95.5, 70.2);
        assert_eq!(
            body,
            json!({"message": "Created 20 simulated metrics over 10 minutes", "metrics_created": 20, "duration_minutes": 10, "interval_seconds": 30,
                   "sample_metrics": samples})
        );
        let (status, body) = app.get("/api/metrics/mock-1", &token).await;
        assert_eq!(status, StatusCode::OK);
        let times = metric_timestamps(&body);
        assert_eq!(times.len(), 20);
        assert_recent(times[0], 5);
        assert!(times.windows(2).all(|w| w[0] - w[1] == TimeDelta::seconds(30)), "{times:?}");
        for metric in body["metrics"].as_array().unwrap() {
            assert_eq!(
                (&metric["cpu_utilization"], &metric["memory_usage"], &metric["network_in"], &metric["network_out"]),
                (&json!(95.5), &json!(70.2), &json!(3072000), &json!(1536000))
            );
        }
        assert_eq!(stored_metrics(&app, "mock-1").await, 20);
    }

    async fn a_prolonged_simulation_defaults_to_30_second_intervals(app) {
        let token = owner_with_instance(&app).await;

        let body = app
            .simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 95.0, "memory_usage": 50.0, "duration_minutes": 5}))
            .await;

        let samples = sample_metrics(&body, 95.0, 50.0);
        assert_eq!(
            body,
            json!({"message": "Created 10 simulated metrics over 5 minutes", "metrics_created": 10, "duration_minutes": 5, "interval_seconds": 30,
                   "sample_metrics": samples})
        );
    }

    async fn metrics_come_newest_first_and_limit_keeps_the_newest(app) {
        let token = owner_with_instance(&app).await;
        for cpu in [10.0, 20.0, 30.0] {
            app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": cpu})).await;
        }

        let (status, headers, body) =
            send(app.request(Method::GET, "/api/metrics/mock-1?limit=2").bearer_auth(&token)).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body["instance_id"], "mock-1");
        let cpus: Vec<f64> = body["metrics"].as_array().unwrap().iter().map(|m| m["cpu_utilization"].as_f64().unwrap()).collect();
        assert_eq!(cpus, [30.0, 20.0]);
        let times = metric_timestamps(&body);
        assert!(times[0] > times[1]);
    }

    async fn metrics_default_to_the_newest_100(app) {
        let token = owner_with_instance(&app).await;
        simulate_points(&app, &token, 150).await;

        let (status, body) = app.get("/api/metrics/mock-1", &token).await;

        assert_eq!(status, StatusCode::OK);
        let times = metric_timestamps(&body);
        assert_eq!(times.len(), 100);
        assert_recent(times[0], 5);
        assert!(times.windows(2).all(|w| w[0] - w[1] == TimeDelta::seconds(12)));
    }

    async fn metrics_limit_is_capped_at_1000(app) {
        let token = owner_with_instance(&app).await;
        simulate_points(&app, &token, 1005).await;

        let (status, body) = app.get("/api/metrics/mock-1?limit=5000", &token).await;

        assert_eq!(status, StatusCode::OK);
        let times = metric_timestamps(&body);
        assert_eq!(times.len(), 1000);
        assert_recent(times[0], 5);
        assert!(times.windows(2).all(|w| w[0] - w[1] == TimeDelta::seconds(12)));
        assert_eq!(stored_metrics(&app, "mock-1").await, 1005);
    }

    async fn a_limit_that_is_not_a_positive_integer_is_400(app) {
        let token = owner_with_instance(&app).await;
        for limit in ["0", "-3", "abc", "1.5", ""] {
            for path in [format!("/api/metrics/mock-1?limit={limit}"), format!("/api/metrics/decisions/mock-1?limit={limit}")] {
                let (status, body) = app.get(&path, &token).await;
                assert_eq!((status, body), (StatusCode::BAD_REQUEST, error(BAD_LIMIT)), "{path}");
            }
        }
    }

    async fn a_fresh_instance_has_no_metrics_and_no_decisions(app) {
        let token = owner_with_instance(&app).await;

        let (status, body) = app.get("/api/metrics/mock-1", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"instance_id": "mock-1", "metrics": [], "pagination": first_page(100, 0)})));

        let (status, body) = app.get("/api/metrics/decisions/mock-1", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"instance_id": "mock-1", "decisions": [], "pagination": first_page(50, 0)})));

        let (status, body) = app.get("/api/metrics/decisions/mock-1?limit=20", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"instance_id": "mock-1", "decisions": [], "pagination": first_page(20, 0)})));
    }

    async fn metric_paths_answer_with_a_trailing_slash_too(app) {
        let token = owner_with_instance(&app).await;

        let (status, body) = app.get("/api/metrics/mock-1/", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"instance_id": "mock-1", "metrics": [], "pagination": first_page(100, 0)})));
        let (status, body) = app.get("/api/metrics/decisions/mock-1/", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"instance_id": "mock-1", "decisions": [], "pagination": first_page(50, 0)})));
        let (status, _) = app
            .post("/api/metrics/simulate/", Some(&token), json!({"instance_id": "mock-1", "cpu_utilization": 1.0}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }

    async fn a_sustained_high_cpu_simulation_leads_to_a_scale_up_decision(app) {
        let token = owner_with_instance(&app).await;
        app.patch("/api/instances/mock-1/monitor/start", &token).await;
        app.simulate(
            &token,
            json!({"instance_id": "mock-1", "cpu_utilization": 95.0, "memory_usage": 50.0, "duration_minutes": 10, "interval_seconds": 30}),
        )
        .await;

        let report = autoscaler::jobs::run_scaling_tick(
            app.store.as_ref(),
            &autoscaler::scaling::Policy::default(),
            std::time::Duration::from_secs(15),
            chrono::Utc::now(),
        )
        .await
        .unwrap();

        assert_eq!(report.events, 1, "{report:?}");
        let (status, mut body) = app.get("/api/metrics/decisions/mock-1", &token).await;
        assert_eq!(status, StatusCode::OK);
        take_uuid(&mut body, "/decisions/0/id");
        assert_recent(take_time(&mut body, "/decisions/0/timestamp"), 30);
        let reason = body["decisions"][0]["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.starts_with("Sustained scale up"), "{reason}");
        body["decisions"][0]["reason"] = json!("<reason>");
        assert_eq!(
            body,
            json!({
                "instance_id": "mock-1",
                "decisions": [{
                    "id": "<uuid>",
                    "instance_id": "mock-1",
                    "timestamp": "<timestamp>",
                    "cpu_utilization": 95.0,
                    "memory_usage": 50.0,
                    "network_in": null,
                    "network_out": null,
                    "decision": "scale_up",
                    "reason": "<reason>",
                    "level_before": 1,
                    "level_after": 2,
                    "dry_run": false,
                }],
                "pagination": first_page(50, 1),
            })
        );
        let (_, list) = app.get("/api/instances/", &token).await;
        let instance = &list["instances"][0];
        assert_eq!(
            (&instance["cpu_capacity"], &instance["memory_capacity"], &instance["network_capacity"], &instance["current_scale_level"]),
            (&json!(150.0), &json!(150.0), &json!(150.0), &json!(2))
        );
    }

    async fn metrics_decisions_and_simulate_of_an_unknown_instance_are_404(app) {
        let token = owner_with_instance(&app).await;

        for path in ["/api/metrics/mock-nope", "/api/metrics/decisions/mock-nope"] {
            let (status, body) = app.get(path, &token).await;
            assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Instance not found")), "{path}");
        }
        let (status, body) = app
            .post("/api/metrics/simulate", Some(&token), json!({"instance_id": "mock-nope", "cpu_utilization": 50.0}))
            .await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Instance not found")));
    }

    async fn invalid_simulations_are_400_and_store_nothing(app) {
        let token = owner_with_instance(&app).await;
        let base = |extra: Value| {
            let mut body = json!({"instance_id": "mock-1", "cpu_utilization": 50.0});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };
        let cases = [
            (json!({"instance_id": "mock-1"}), "instance_id and cpu_utilization are required"),
            (json!({"cpu_utilization": 50.0}), "instance_id and cpu_utilization are required"),
            (json!({"instance_id": "", "cpu_utilization": 50.0}), "instance_id and cpu_utilization are required"),
            (base(json!({"cpu_utilization": 150})), "cpu_utilization must be a number between 0 and 100"),
            (base(json!({"cpu_utilization": -1})), "cpu_utilization must be a number between 0 and 100"),
            (base(json!({"memory_usage": 100.5})), "memory_usage must be a number between 0 and 100"),
            (base(json!({"memory_usage": -0.1})), "memory_usage must be a number between 0 and 100"),
            (base(json!({"network_in": -1})), "network_in must be a number of bytes, 0 or more"),
            (base(json!({"network_out": -1})), "network_out must be a number of bytes, 0 or more"),
            (base(json!({"duration_minutes": 0})), "duration_minutes must be a whole number between 1 and 1440"),
            (base(json!({"duration_minutes": 1441})), "duration_minutes must be a whole number between 1 and 1440"),
            (base(json!({"duration_minutes": 2.5})), "duration_minutes must be a whole number between 1 and 1440"),
            (base(json!({"duration_minutes": 10, "interval_seconds": 0})), "interval_seconds must be a whole number, at least 1"),
            (base(json!({"duration_minutes": 10, "interval_seconds": 1.5})), "interval_seconds must be a whole number, at least 1"),
            (base(json!({"interval_seconds": 30})), "duration_minutes is required with interval_seconds"),
            (base(json!({"duration_minutes": 1, "interval_seconds": 61})), "interval_seconds must not exceed duration_minutes × 60"),
            (
                base(json!({"duration_minutes": 1440, "interval_seconds": 1})),
                "A simulation creates at most 10000 metrics (duration_minutes × 60 / interval_seconds); raise interval_seconds",
            ),
        ];
        for (body, message) in cases {
            let (status, resp) = app.post("/api/metrics/simulate", Some(&token), body.clone()).await;
            assert_eq!((status, resp), (StatusCode::BAD_REQUEST, error(message)), "{body}");
        }

        assert_eq!(stored_metrics(&app, "mock-1").await, 0);
        let (_, body) = app.get("/api/metrics/mock-1", &token).await;
        assert_eq!(body, json!({"instance_id": "mock-1", "metrics": [], "pagination": first_page(100, 0)}));
    }

    async fn the_largest_allowed_simulation_stores_10000_metrics(app) {
        let token = owner_with_instance(&app).await;

        let body = app
            .simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 50.0, "duration_minutes": 1000, "interval_seconds": 6}))
            .await;

        assert_eq!(body["metrics_created"], 10_000);
        assert_eq!(stored_metrics(&app, "mock-1").await, 10_000);
    }
}
