//! Deleting instances, and replacing an instance's metrics all or nothing.

use autoscaler::collect::CollectionStatus;
use autoscaler::model::{NewMetric, SampleSource};
use autoscaler::scaling::record::ScalingOutcome;
use autoscaler::scaling::{Decision, Evaluation, Votes};
use autoscaler::testing::TestReads;
use chrono::{TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, error};
use crate::on_both_databases;

const STILL_MONITORED: &str =
    "Cannot delete instance while monitoring is active. Please stop monitoring first.";

async fn delete(app: &TestApp, path: &str, token: &str) -> (StatusCode, serde_json::Value) {
    app.call(Method::DELETE, path, Some(token), None).await
}

fn metric(instance: Uuid, seconds_ago: i64, cpu: f64) -> NewMetric {
    NewMetric {
        instance,
        timestamp: Utc::now() - TimeDelta::seconds(seconds_ago),
        cpu_utilization: cpu,
        memory_usage: Some(40.0),
        network_in: None,
        network_out: None,
        source: SampleSource::Simulated,
    }
}

fn no_action(instance: Uuid) -> ScalingOutcome {
    ScalingOutcome {
        instance,
        instance_id: String::new(), // a no_action makes no webhook event
        level_before: 1,
        evaluation: Evaluation {
            decision: Decision::NoAction,
            reason: "quiet".into(),
            new_level: 1,
            votes: Votes::default(),
            outlier: None,
            latest: None,
        },
        record: true,
        decided_at: Utc::now(),
        dry_run: false,
    }
}

on_both_databases! {
    async fn deleting_an_instance_removes_it_with_its_metrics_and_decisions(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-1").await;
        app.mock_instance(&token, "mock-2").await;
        app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 50.0, "duration_minutes": 2})).await;
        let id = app.instance_uuid("mock-1").await;
        app.store.apply_scaling(&[no_action(id)]).await.unwrap();

        let (status, body) = delete(&app, "/api/instances/mock-1", &token).await;

        assert_eq!((status, body), (StatusCode::OK, json!({"message": "Instance deleted successfully"})));
        assert!(app.store.instance_by_instance_id("mock-1").await.unwrap().is_none());
        assert!(app.store.recent_metrics(id, 100).await.unwrap().is_empty());
        assert!(app.store.recent_decisions(id, 100).await.unwrap().is_empty());
        let (_, list) = app.get("/api/instances/", &token).await;
        let ids: Vec<&str> = list["instances"].as_array().unwrap().iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["mock-2"]);
        let (_, me) = app.get("/api/auth/me", &token).await;
        assert_eq!(me["instance_count"], 1);
        let (status, body) = app.get("/api/metrics/mock-1", &token).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Instance not found")));
    }

    async fn a_deleted_id_can_be_registered_again_from_scratch(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-1").await;
        app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 50.0})).await;
        delete(&app, "/api/instances/mock-1", &token).await;

        let other = app.user("other@example.com").await;
        let instance = app.mock_instance(&other, "mock-1").await;

        assert_eq!(instance["current_scale_level"], 1);
        let (status, body) = app.get("/api/metrics/mock-1", &other).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["metrics"], json!([]));
        assert_eq!(body["pagination"]["total_count"], 0);
    }

    async fn delete_answers_404_403_and_400_as_the_contract_words_them(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-1").await;
        let intruder = app.user("intruder@example.com").await;

        assert_eq!(delete(&app, "/api/instances/nope", &token).await, (StatusCode::NOT_FOUND, error("Instance not found")));
        assert_eq!(
            delete(&app, "/api/instances/mock-1", &intruder).await,
            (StatusCode::FORBIDDEN, error("Unauthorized: You don't own this instance"))
        );
        app.patch("/api/instances/mock-1/monitor/start", &token).await;
        assert_eq!(delete(&app, "/api/instances/mock-1", &token).await, (StatusCode::BAD_REQUEST, error(STILL_MONITORED)));
        assert!(app.store.instance_by_instance_id("mock-1").await.unwrap().is_some(), "nothing deleted");
        let (status, _) = app.call(Method::DELETE, "/api/instances/mock-1", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        app.patch("/api/instances/mock-1/monitor/stop", &token).await;
        assert_eq!(delete(&app, "/api/instances/mock-1/", &token).await.0, StatusCode::OK, "a trailing slash works too");
    }

    async fn a_tick_that_claimed_a_deleted_instance_neither_fails_nor_brings_it_back(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-1").await;
        app.mock_instance(&token, "mock-2").await;
        for id in ["mock-1", "mock-2"] {
            app.patch(&format!("/api/instances/{id}/monitor/start"), &token).await;
        }
        let gone = app.instance_uuid("mock-1").await;
        let kept = app.instance_uuid("mock-2").await;
        // Both ticks claim both instances, then mock-1 is deleted before they write.
        assert_eq!(app.store.claim_collection(1, 100).await.unwrap().len(), 2);
        assert_eq!(app.store.claim_scaling(1, 100).await.unwrap().len(), 2);
        app.patch("/api/instances/mock-1/monitor/stop", &token).await;
        assert_eq!(delete(&app, "/api/instances/mock-1", &token).await.0, StatusCode::OK);

        let statuses = [gone, kept].map(|instance| CollectionStatus {
            instance,
            last_collected_at: Some(Utc::now()),
            error: None,
        });
        app.store
            .record_collection(&[metric(gone, 0, 10.0), metric(kept, 0, 20.0)], &statuses)
            .await
            .expect("the collection tick goes on");
        app.store
            .apply_scaling(&[no_action(gone), no_action(kept)])
            .await
            .expect("the scaling tick goes on");

        assert!(app.store.instance_by_instance_id("mock-1").await.unwrap().is_none());
        assert!(app.store.recent_metrics(gone, 10).await.unwrap().is_empty());
        assert!(app.store.recent_decisions(gone, 10).await.unwrap().is_empty());
        assert_eq!(app.store.recent_metrics(kept, 10).await.unwrap().len(), 1);
        assert_eq!(app.store.recent_decisions(kept, 10).await.unwrap().len(), 1);
        let (_, body) = app.get("/api/metrics/mock-2?page_size=5", &token).await;
        assert_eq!(body["pagination"]["total_count"], 1);
    }

    async fn simulating_on_an_instance_deleted_meanwhile_is_404_not_500(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-1").await;
        let id = app.instance_uuid("mock-1").await;
        delete(&app, "/api/instances/mock-1", &token).await;

        let err = app.store.insert_metrics(&[metric(id, 0, 50.0)]).await.unwrap_err();

        assert!(matches!(err, autoscaler::store::StoreError::Gone), "{err:?}");
    }

    async fn clear_existing_replaces_the_metrics_and_shows_the_first_three(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-1").await;
        app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 50.0, "duration_minutes": 5})).await;

        let body = app
            .simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 91.5, "memory_usage": 40.0,
                                     "duration_minutes": 2, "interval_seconds": 30, "clear_existing": true}))
            .await;

        assert_eq!(body["metrics_created"], 4);
        let samples = body["sample_metrics"].as_array().unwrap();
        assert_eq!(samples.len(), 3);
        let (_, page) = app.get("/api/metrics/mock-1", &token).await;
        let stored = page["metrics"].as_array().unwrap();
        assert_eq!(stored.len(), 4, "only the new metrics are left");
        assert!(stored.iter().all(|m| m["cpu_utilization"] == 91.5));
        // The samples are the oldest three, oldest first, as stored.
        let oldest: Vec<_> = stored.iter().rev().take(3).map(|m| json!({
            "timestamp": m["timestamp"], "cpu_utilization": m["cpu_utilization"], "memory_usage": m["memory_usage"],
        })).collect();
        assert_eq!(samples, &oldest);
    }

    async fn a_failed_replacement_keeps_the_old_metrics(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-1").await;
        app.simulate(&token, json!({"instance_id": "mock-1", "cpu_utilization": 50.0, "duration_minutes": 1})).await;
        let id = app.instance_uuid("mock-1").await;
        // A batch the database refuses halfway: a NaN reading (SQLite stores it as
        // NULL, which the column refuses) and a row for an instance that does not
        // exist (PostgreSQL's foreign key refuses it).
        let mut batch = vec![metric(id, 5, 70.0), metric(Uuid::new_v4(), 4, 70.0)];
        batch.push(metric(id, 3, f64::NAN));

        assert!(app.store.replace_metrics(id, &batch).await.is_err());

        let kept = app.store.recent_metrics(id, 100).await.unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|m| m.cpu_utilization == 50.0));
        let (_, page) = app.get("/api/metrics/mock-1?page=1", &token).await;
        assert_eq!(page["pagination"]["total_count"], 2);
    }
}
