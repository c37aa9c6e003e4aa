//! Requests that race for the same unique thing: one wins, the others get the
//! contract's error, and none gets a 500.

use autoscaler::testing::TestReads;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::error;
use crate::on_both_databases;

/// Exactly one of `answers` has status `won`; every other one is `lost`.
fn assert_one_wins(answers: Vec<(StatusCode, Value)>, won: StatusCode, lost: (StatusCode, Value)) {
    let winners = answers.iter().filter(|(s, _)| *s == won).count();
    assert_eq!(winners, 1, "{answers:?}");
    for answer in answers.into_iter().filter(|(s, _)| *s != won) {
        assert_eq!(answer, lost);
    }
}

on_both_databases! {
    async fn concurrent_registrations_of_one_email_create_one_user(app) {
        let creds = json!({"email": "race@example.com", "password": "testpass123"});

        let answers = join_all((0..6).map(|_| app.post("/api/auth/register", None, creds.clone()))).await;

        assert_one_wins(answers, StatusCode::CREATED, (StatusCode::CONFLICT, error("User with this email already exists")));
    }

    async fn concurrent_registrations_of_one_instance_id_create_one_instance(app) {
        let token_a = app.user("a@example.com").await;
        let token_b = app.user("b@example.com").await;
        let body = json!({"instance_id": "mock-race", "instance_type": "t2.micro", "region": "mock", "is_mock": true});

        let answers = join_all(
            (0..8).map(|n| app.post("/api/instances/", Some(if n % 2 == 0 { &token_a } else { &token_b }), body.clone())),
        )
        .await;

        assert_one_wins(answers, StatusCode::CREATED, (StatusCode::CONFLICT, error("Instance already registered")));
    }

    async fn concurrent_monitor_starts_succeed_once(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-race").await;

        let answers = join_all((0..8).map(|_| app.patch("/api/instances/mock-race/monitor/start", &token))).await;

        assert_one_wins(answers, StatusCode::OK, (StatusCode::BAD_REQUEST, error("Monitoring is already active for this instance")));
    }

    async fn concurrent_simulations_are_all_stored(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-race").await;
        let body = json!({"instance_id": "mock-race", "cpu_utilization": 50.0, "duration_minutes": 10, "interval_seconds": 30});

        let answers = join_all((0..8).map(|_| app.post("/api/metrics/simulate", Some(&token), body.clone()))).await;

        assert!(answers.iter().all(|(s, _)| *s == StatusCode::CREATED), "{answers:?}");
        let id = app.instance_uuid("mock-race").await;
        assert_eq!(app.store.recent_metrics(id, 1000).await.unwrap().len(), 8 * 20);
    }
}
