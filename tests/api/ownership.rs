//! User B against user A's instance: refused everywhere, and nothing of A's changes.

use autoscaler::testing::TestReads;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, error};
use crate::on_both_databases;

const NOT_YOURS: &str = "Unauthorized: You don't own this instance";

/// A owns `mock-a`, B owns nothing; returns (A's token, B's token).
async fn two_users(app: &TestApp) -> (String, String) {
    let token_a = app.user("a@example.com").await;
    let token_b = app.user("b@example.com").await;
    app.mock_instance(&token_a, "mock-a").await;
    (token_a, token_b)
}

on_both_databases! {
    async fn another_users_instance_is_403_on_every_endpoint(app) {
        let (_, token_b) = two_users(&app).await;

        for path in ["/api/instances/mock-a/monitor/start", "/api/instances/mock-a/monitor/stop"] {
            let (status, body) = app.patch(path, &token_b).await;
            assert_eq!((status, body), (StatusCode::FORBIDDEN, error(NOT_YOURS)), "{path}");
        }
        for path in ["/api/metrics/mock-a", "/api/metrics/mock-a?limit=5", "/api/metrics/decisions/mock-a"] {
            let (status, body) = app.get(path, &token_b).await;
            assert_eq!((status, body), (StatusCode::FORBIDDEN, error(NOT_YOURS)), "{path}");
        }
        for body in [
            json!({"instance_id": "mock-a", "cpu_utilization": 99.0}),
            json!({"instance_id": "mock-a", "cpu_utilization": 99.0, "duration_minutes": 10, "interval_seconds": 30}),
        ] {
            let (status, resp) = app.post("/api/metrics/simulate", Some(&token_b), body.clone()).await;
            assert_eq!((status, resp), (StatusCode::FORBIDDEN, error(NOT_YOURS)), "{body}");
        }
    }

    async fn refused_requests_leave_the_owners_instance_unchanged(app) {
        let (token_a, token_b) = two_users(&app).await;

        app.patch("/api/instances/mock-a/monitor/start", &token_b).await;
        app.post("/api/metrics/simulate", Some(&token_b), json!({"instance_id": "mock-a", "cpu_utilization": 99.0})).await;
        app.post(
            "/api/metrics/simulate",
            Some(&token_b),
            json!({"instance_id": "mock-a", "cpu_utilization": 99.0, "duration_minutes": 10}),
        )
        .await;

        let stored = app.store.instance_by_instance_id("mock-a").await.unwrap().unwrap();
        assert!(!stored.is_monitoring);
        assert_eq!(stored.user_id, app.user_id(&token_a).await);
        assert!(app.store.recent_metrics(stored.id, 100).await.unwrap().is_empty());
        let (status, body) = app.get("/api/metrics/mock-a", &token_a).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((&body["metrics"], &body["pagination"]["total_count"]), (&json!([]), &json!(0)));
        let (_, me) = app.get("/api/auth/me", &token_a).await;
        assert_eq!((&me["instance_count"], &me["monitoring_count"]), (&json!(1), &json!(0)));
    }

    async fn another_user_cannot_stop_the_owners_monitoring(app) {
        let (token_a, token_b) = two_users(&app).await;
        app.patch("/api/instances/mock-a/monitor/start", &token_a).await;

        let (status, body) = app.patch("/api/instances/mock-a/monitor/stop", &token_b).await;

        assert_eq!((status, body), (StatusCode::FORBIDDEN, error(NOT_YOURS)));
        assert!(app.store.instance_by_instance_id("mock-a").await.unwrap().unwrap().is_monitoring);
    }

    async fn another_user_cannot_read_the_owners_metrics(app) {
        let (token_a, token_b) = two_users(&app).await;
        app.simulate(&token_a, json!({"instance_id": "mock-a", "cpu_utilization": 42.0})).await;

        let (status, body) = app.get("/api/metrics/mock-a", &token_b).await;

        assert_eq!((status, body), (StatusCode::FORBIDDEN, error(NOT_YOURS)));
    }

    async fn each_user_lists_only_their_own_instances(app) {
        let (token_a, token_b) = two_users(&app).await;
        app.mock_instance(&token_b, "mock-b").await;

        let (status, list_b) = app.get("/api/instances/", &token_b).await;
        assert_eq!(status, StatusCode::OK);
        let ids_b: Vec<&str> = list_b["instances"].as_array().unwrap().iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
        assert_eq!(ids_b, ["mock-b"]);

        let (_, list_a) = app.get("/api/instances/", &token_a).await;
        let ids_a: Vec<&str> = list_a["instances"].as_array().unwrap().iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
        assert_eq!(ids_a, ["mock-a"]);

        let (_, me_b) = app.get("/api/auth/me", &token_b).await;
        assert_eq!(me_b["instance_count"], 1);
    }

    async fn an_unknown_instance_is_404_not_403(app) {
        let (_, token_b) = two_users(&app).await;

        let (status, body) = app.get("/api/metrics/mock-zzz", &token_b).await;

        assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Instance not found")));
    }
}
