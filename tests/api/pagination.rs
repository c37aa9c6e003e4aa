//! Paging through metrics and decisions: `?page=&page_size=` beside the contract's
//! `?limit=`, and the `pagination` block on every answer.

use autoscaler::scaling::record::ScalingOutcome;
use autoscaler::scaling::{Decision, Evaluation, Votes};
use autoscaler::testing::TestReads;
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error};
use crate::on_both_databases;

/// A user with the mock instance `mock-1` holding `metrics` metrics 12 s apart;
/// returns the token.
async fn instance_with_metrics(app: &TestApp, metrics: i64) -> String {
    let token = app.user("pager@example.com").await;
    app.mock_instance(&token, "mock-1").await;
    if metrics > 0 {
        assert_eq!(metrics % 5, 0, "whole minutes at 12 s");
        app.simulate(
            &token,
            json!({"instance_id": "mock-1", "cpu_utilization": 50.0,
                   "duration_minutes": metrics / 5, "interval_seconds": 12}),
        )
        .await;
    }
    token
}

/// Records `count` no_action decisions for `mock-1`, one second apart, the newest now.
async fn record_decisions(app: &TestApp, count: i64) {
    let instance = app.instance_uuid("mock-1").await;
    let now = Utc::now();
    for i in 0..count {
        let outcome = ScalingOutcome {
            instance,
            instance_id: "mock-1".into(),
            level_before: 1,
            evaluation: Evaluation {
                decision: Decision::NoAction,
                reason: format!("decision {i}"),
                new_level: 1,
                votes: Votes::default(),
                outlier: None,
                latest: None,
            },
            record: true,
            decided_at: now - TimeDelta::seconds(count - 1 - i),
            dry_run: false,
        };
        app.store.apply_scaling(&[outcome]).await.unwrap();
    }
}

async fn total_metrics(app: &TestApp, token: &str) -> i64 {
    let (_, body) = app.get("/api/metrics/mock-1?page_size=1", token).await;
    body["pagination"]["total_count"].as_i64().unwrap()
}

fn pagination(page: i64, size: i64, total: i64, pages: i64, next: bool, prev: bool) -> Value {
    json!({"page": page, "page_size": size, "total_count": total, "total_pages": pages,
           "has_next": next, "has_prev": prev})
}

fn times(body: &Value, list: &str) -> Vec<DateTime<Utc>> {
    body[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {body}"))
        .iter()
        .map(|m| m["timestamp"].as_str().unwrap().parse().unwrap())
        .collect()
}

on_both_databases! {
    async fn an_instance_without_metrics_has_an_empty_first_page(app) {
        let token = instance_with_metrics(&app, 0).await;

        let (status, body) = app.get("/api/metrics/mock-1?page=1&page_size=20", &token).await;

        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"instance_id": "mock-1", "metrics": [],
                   "pagination": pagination(1, 20, 0, 0, false, false)})
        );
    }

    async fn pages_split_the_newest_first_list_exactly(app) {
        let token = instance_with_metrics(&app, 25).await;
        let (_, all) = app.get("/api/metrics/mock-1?limit=25", &token).await;
        let all = times(&all, "metrics");
        assert_eq!(all.len(), 25);

        let mut seen = Vec::new();
        for (page, len, next) in [(1, 10, true), (2, 10, true), (3, 5, false)] {
            let (status, body) = app
                .get(&format!("/api/metrics/mock-1?page={page}&page_size=10"), &token)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["pagination"], pagination(page, 10, 25, 3, next, page > 1), "page {page}");
            assert_eq!(body["metrics"].as_array().unwrap().len(), len, "page {page}");
            assert!(body["metrics"].as_array().unwrap().iter().all(|m| m["instance_id"] == "mock-1"));
            seen.extend(times(&body, "metrics"));
        }
        assert_eq!(seen, all, "the pages, in order, are the whole list newest first");
    }

    async fn an_exact_multiple_fills_its_last_page(app) {
        let token = instance_with_metrics(&app, 20).await;

        let (_, body) = app.get("/api/metrics/mock-1?page=2&page_size=10", &token).await;

        assert_eq!(body["pagination"], pagination(2, 10, 20, 2, false, true));
        assert_eq!(body["metrics"].as_array().unwrap().len(), 10);
    }

    async fn a_page_past_the_end_is_empty_with_a_previous_page(app) {
        let token = instance_with_metrics(&app, 20).await;

        let (status, body) = app.get("/api/metrics/mock-1?page=7&page_size=10", &token).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"instance_id": "mock-1", "metrics": [],
                   "pagination": pagination(7, 10, 20, 2, false, true)})
        );
        let (status, body) = app
            .get("/api/metrics/mock-1?page=9223372036854775807&page_size=100", &token)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["metrics"], json!([]));
    }

    async fn page_and_page_size_default_to_1_and_10(app) {
        let token = instance_with_metrics(&app, 15).await;

        let (_, by_page) = app.get("/api/metrics/mock-1?page=2", &token).await;
        let (_, by_size) = app.get("/api/metrics/mock-1?page_size=4", &token).await;

        assert_eq!(by_page["pagination"], pagination(2, 10, 15, 2, false, true));
        assert_eq!(by_page["metrics"].as_array().unwrap().len(), 5);
        assert_eq!(by_size["pagination"], pagination(1, 4, 15, 4, true, false));
    }

    async fn limit_with_page_is_the_first_page_of_limit_entries(app) {
        let token = instance_with_metrics(&app, 15).await;
        let (_, newest) = app.get("/api/metrics/mock-1?limit=5", &token).await;

        let (status, body) = app.get("/api/metrics/mock-1?limit=5&page=3&page_size=2", &token).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["pagination"], pagination(1, 5, 15, 3, true, false));
        assert_eq!(times(&body, "metrics"), times(&newest, "metrics"));
    }

    async fn a_limit_request_reports_itself_as_page_one(app) {
        let token = instance_with_metrics(&app, 15).await;

        let (_, default) = app.get("/api/metrics/mock-1", &token).await;
        let (_, seven) = app.get("/api/metrics/mock-1?limit=7", &token).await;
        let (_, capped) = app.get("/api/metrics/mock-1?limit=5000", &token).await;

        assert_eq!(default["pagination"], pagination(1, 100, 15, 1, false, false));
        assert_eq!(seven["pagination"], pagination(1, 7, 15, 3, true, false));
        assert_eq!(capped["pagination"], pagination(1, 1000, 15, 1, false, false));
    }

    async fn bad_page_parameters_are_400_naming_the_rule(app) {
        let token = instance_with_metrics(&app, 5).await;
        for path in ["/api/metrics/mock-1", "/api/metrics/decisions/mock-1"] {
            for bad in ["0", "-1", "abc", "1.5", "", "99999999999999999999"] {
                let (status, body) = app.get(&format!("{path}?page={bad}"), &token).await;
                assert_eq!((status, body), (StatusCode::BAD_REQUEST, error("Page must be >= 1")), "{path} page={bad}");
            }
            for bad in ["0", "101", "-5", "ten", "2.0"] {
                let (status, body) = app.get(&format!("{path}?page_size={bad}"), &token).await;
                assert_eq!(
                    (status, body),
                    (StatusCode::BAD_REQUEST, error("Page size must be between 1 and 100")),
                    "{path} page_size={bad}"
                );
            }
        }
    }

    async fn decisions_page_the_same_way_and_name_their_instance(app) {
        let token = instance_with_metrics(&app, 0).await;
        record_decisions(&app, 12).await;

        let (_, first) = app.get("/api/metrics/decisions/mock-1?page=1&page_size=5", &token).await;
        let (_, last) = app.get("/api/metrics/decisions/mock-1?page=3&page_size=5", &token).await;
        let (_, default) = app.get("/api/metrics/decisions/mock-1", &token).await;

        assert_eq!(first["pagination"], pagination(1, 5, 12, 3, true, false));
        assert_eq!(last["pagination"], pagination(3, 5, 12, 3, false, true));
        assert_eq!(default["pagination"], pagination(1, 50, 12, 1, false, false));
        let reasons: Vec<&str> = last["decisions"].as_array().unwrap().iter().map(|d| d["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons, ["decision 1", "decision 0"], "the oldest two, newest first");
        let d = &first["decisions"][0];
        assert_eq!(
            (&d["instance_id"], &d["reason"], &d["level_before"], &d["level_after"]),
            (&json!("mock-1"), &json!("decision 11"), &json!(1), &json!(1))
        );
    }

    async fn the_totals_follow_retention_and_replacement(app) {
        let token = instance_with_metrics(&app, 10).await;
        let id = app.instance_uuid("mock-1").await;
        let old: Vec<_> = (0..4)
            .map(|i| autoscaler::model::NewMetric {
                instance: id,
                timestamp: Utc::now() - TimeDelta::days(40) + TimeDelta::seconds(i),
                cpu_utilization: 10.0,
                memory_usage: None,
                network_in: None,
                network_out: None,
                source: autoscaler::model::SampleSource::Simulated,
            })
            .collect();
        app.store.insert_metrics(&old).await.unwrap();
        assert_eq!(total_metrics(&app, &token).await, 14);

        autoscaler::jobs::run_retention_tick(app.store.as_ref(), 30, 90, Utc::now()).await.unwrap();
        assert_eq!(total_metrics(&app, &token).await, 10);

        app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 20.0,
                                     "duration_minutes": 1, "interval_seconds": 20, "clear_existing": true})).await;
        assert_eq!(total_metrics(&app, &token).await, 3);
        assert_eq!(app.store.recent_metrics(id, 1000).await.unwrap().len(), 3);
    }
}
