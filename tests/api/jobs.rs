//! The background ticks, driven directly with chosen clocks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use autoscaler::collect::mock::MockSource;
use autoscaler::collect::{CollectTarget, Collected, MetricSource, SourceKind, Sources};
use autoscaler::jobs::{run_collection_tick, run_retention_tick, run_scaling_tick};
use autoscaler::model::{Decision, NewMetric, SampleSource as Source};
use autoscaler::store::PoolSettings;
use autoscaler::testing::TestReads;
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Db, TestApp, spawn_app};
use crate::on_both_databases;

const SCALING: Duration = Duration::from_secs(15);
const COLLECTION: Duration = Duration::from_secs(30);

async fn scale(app: &TestApp, now: DateTime<Utc>) -> autoscaler::jobs::TickReport {
    run_scaling_tick(app.store.as_ref(), &app.settings.policy, SCALING, now)
        .await
        .unwrap()
}

/// `count` samples at `cpu`/`memory`, `step` apart, the newest at `newest`.
fn series(
    instance: Uuid,
    newest: DateTime<Utc>,
    count: i64,
    step: i64,
    cpu: f64,
    memory: f64,
) -> Vec<NewMetric> {
    (0..count)
        .map(|i| NewMetric {
            instance,
            timestamp: newest - TimeDelta::seconds((count - 1 - i) * step),
            cpu_utilization: cpu,
            memory_usage: Some(memory),
            network_in: Some(2_000_000),
            network_out: Some(1_000_000),
            source: Source::Simulated,
        })
        .collect()
}

/// A source whose every read fails, like CloudWatch without credentials.
struct FailingSource;

#[async_trait]
impl MetricSource for FailingSource {
    async fn collect(&self, targets: &[CollectTarget], _now: DateTime<Utc>) -> Vec<Collected> {
        targets
            .iter()
            .map(|t| Collected {
                instance: t.id,
                result: Err("CloudWatch GetMetricData failed in us-east-1: no credentials".into()),
            })
            .collect()
    }
}

/// Mock instances from the mock source, every other kind from `FailingSource`.
fn sources() -> Sources {
    Sources::from_fn(|kind| match kind {
        SourceKind::Mock => Arc::new(MockSource),
        _ => Arc::new(FailingSource),
    })
}

on_both_databases! {
    async fn collection_and_scaling_ticks_at_the_same_moment_each_handle_every_instance(app) {
        // Both jobs fire together every 30 s and claim the same rows; neither may
        // skip an instance because the other had it locked for a moment.
        let token = app.user("together@example.com").await;
        const N: usize = 150;
        for i in 0..N {
            let id = format!("mock-t{i}");
            app.mock_instance(&token, &id).await;
            app.patch(&format!("/api/instances/{id}/monitor/start"), &token).await;
        }
        let sources = sources();
        let start = Utc::now();
        for k in 0..6 {
            let at = start + TimeDelta::seconds(30 * k);
            let (collected, scaled) = tokio::join!(
                run_collection_tick(app.store.as_ref(), &sources, COLLECTION, at),
                run_scaling_tick(app.store.as_ref(), &app.settings.policy, SCALING, at),
            );
            assert_eq!(collected.unwrap().instances, N, "collection, tick {k}");
            assert_eq!(scaled.unwrap().instances, N, "scaling, tick {k}");
        }
    }
}

on_both_databases! {
    async fn retention_deletes_only_rows_past_their_age(app) {
        let token = app.user("retention@example.com").await;
        app.mock_instance(&token, "mock-old").await;
        app.patch("/api/instances/mock-old/monitor/start", &token).await;
        let id = app.instance_uuid("mock-old").await;
        let now = Utc::now();
        // Metrics 40 and 10 days old.
        app.store.insert_metrics(&series(id, now - TimeDelta::days(40), 7, 30, 45.0, 45.0)).await.unwrap();
        app.store.insert_metrics(&series(id, now - TimeDelta::days(10), 5, 30, 95.0, 45.0)).await.unwrap();
        // An empty window 100 days ago (no_action), a sustained one 10 days ago (scale_up).
        scale(&app, now - TimeDelta::days(100)).await;
        scale(&app, now - TimeDelta::days(10)).await;
        let before = app.store.recent_decisions(id, 100).await.unwrap();
        assert_eq!(before.len(), 2, "{before:?}");

        let deleted = run_retention_tick(app.store.as_ref(), 30, 90, now).await.unwrap();
        assert_eq!(deleted, 7 + 1);
        let metrics = app.store.recent_metrics(id, 100).await.unwrap();
        assert_eq!(metrics.len(), 5);
        assert!(metrics.iter().all(|m| m.timestamp > now - TimeDelta::days(30)));
        let decisions = app.store.recent_decisions(id, 100).await.unwrap();
        assert_eq!(decisions.len(), 1);
        assert!(decisions[0].timestamp > now - TimeDelta::days(90));
        assert_eq!(run_retention_tick(app.store.as_ref(), 30, 90, now).await.unwrap(), 0);
    }

    async fn the_postman_flow_scales_up_once_and_holds_through_the_cooldown(app) {
        let token = app.user("postman@example.com").await;
        app.mock_instance(&token, "mock-test-1").await;
        assert_eq!(app.patch("/api/instances/mock-test-1/monitor/start", &token).await.0, StatusCode::OK);
        let (status, body) = app
            .post(
                "/api/metrics/simulate",
                Some(&token),
                json!({"instance_id": "mock-test-1", "cpu_utilization": 95.0, "memory_usage": 50.0,
                       "duration_minutes": 10, "interval_seconds": 30}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        let now = Utc::now();
        let report = scale(&app, now).await;
        assert_eq!((report.instances, report.events), (1, 1));

        let (_, body) = app.get("/api/metrics/decisions/mock-test-1", &token).await;
        let decisions = body["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 1, "{body}");
        assert_eq!(decisions[0]["decision"], "scale_up");
        assert_eq!(
            decisions[0]["reason"],
            "Sustained scale up: CPU > 90% for 100.0% of last 5 minutes (Current: 95.00%)"
        );
        assert_eq!(decisions[0]["cpu_utilization"], 95.0);
        assert_eq!(decisions[0]["memory_usage"], 50.0);

        let (_, body) = app.get("/api/instances/", &token).await;
        let instance = &body["instances"][0];
        assert_eq!((instance["cpu_capacity"].as_f64(), instance["current_scale_level"].as_i64()), (Some(150.0), Some(2)));

        // More ticks inside the cooldown: still level 2, one no_action row for the
        // change of outcome and nothing more.
        for k in 1..=19 {
            scale(&app, now + TimeDelta::seconds(15 * k)).await;
        }
        let (_, body) = app.get("/api/instances/", &token).await;
        assert_eq!(body["instances"][0]["cpu_capacity"], 150.0);
        assert_eq!(body["instances"][0]["memory_capacity"], 150.0);
        assert_eq!(body["instances"][0]["network_capacity"], 150.0);
        let (_, body) = app.get("/api/metrics/decisions/mock-test-1", &token).await;
        let kinds: Vec<&str> = body["decisions"].as_array().unwrap().iter().map(|d| d["decision"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["no_action", "scale_up"], "{body}");
        assert!(body["decisions"][0]["reason"].as_str().unwrap().starts_with("Cooldown"), "{body}");
    }

    async fn sustained_low_load_after_the_cooldown_scales_back_down(app) {
        let token = app.user("down@example.com").await;
        app.mock_instance(&token, "mock-down").await;
        app.patch("/api/instances/mock-down/monitor/start", &token).await;
        let id = app.instance_uuid("mock-down").await;
        let t0 = Utc::now() - TimeDelta::hours(1);

        app.store.insert_metrics(&series(id, t0, 20, 30, 95.0, 50.0)).await.unwrap();
        assert_eq!(scale(&app, t0).await.events, 1);
        // Low load for the ten minutes after; the cooldown ends at t0 + 300 s.
        app.store.insert_metrics(&series(id, t0 + TimeDelta::seconds(600), 20, 30, 5.0, 10.0)).await.unwrap();
        assert_eq!(scale(&app, t0 + TimeDelta::seconds(285)).await.events, 0, "still cooling down");
        let report = scale(&app, t0 + TimeDelta::seconds(600)).await;
        assert_eq!(report.events, 1);

        let (_, body) = app.get("/api/instances/", &token).await;
        assert_eq!(body["instances"][0]["cpu_capacity"], 100.0);
        assert_eq!(body["instances"][0]["current_scale_level"], 1);
        let (_, body) = app.get("/api/metrics/decisions/mock-down?limit=1", &token).await;
        assert_eq!(body["decisions"][0]["decision"], "scale_down");
        assert!(body["decisions"][0]["reason"].as_str().unwrap().starts_with("Sustained scale down"), "{body}");
    }

    async fn an_idle_instance_records_one_no_action_not_one_per_tick(app) {
        let token = app.user("idle@example.com").await;
        app.mock_instance(&token, "mock-idle").await;
        app.patch("/api/instances/mock-idle/monitor/start", &token).await;
        let id = app.instance_uuid("mock-idle").await;
        let now = Utc::now();
        let normal: Vec<NewMetric> = (0..10)
            .map(|i| NewMetric {
                cpu_utilization: 45.0 + (i % 3) as f64,
                memory_usage: Some(44.0 + (i % 4) as f64),
                ..series(id, now, 10, 30, 0.0, 0.0)[i as usize].clone()
            })
            .collect();
        app.store.insert_metrics(&normal).await.unwrap();
        for k in 0..20 {
            scale(&app, now + TimeDelta::milliseconds(15_000 * k)).await;
        }
        let decisions = app.store.recent_decisions(id, 100).await.unwrap();
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0].decision, Decision::NoAction);
        let (_, body) = app.get("/api/instances/", &token).await;
        assert_eq!(body["instances"][0]["current_scale_level"], 1);
    }

    async fn a_scaling_tick_evaluates_each_instance_once_per_slot(app) {
        let token = app.user("slot@example.com").await;
        app.mock_instance(&token, "mock-slot").await;
        app.patch("/api/instances/mock-slot/monitor/start", &token).await;
        let now = Utc::now();
        assert_eq!(scale(&app, now).await.instances, 1);
        assert_eq!(scale(&app, now).await.instances, 0, "same slot: already evaluated");
        assert_eq!(scale(&app, now + TimeDelta::seconds(15)).await.instances, 1);
    }

    async fn collection_stores_one_mock_sample_per_monitored_instance_per_tick(app) {
        let token = app.user("collect@example.com").await;
        for id in ["mock-a", "mock-b", "mock-idle"] {
            app.mock_instance(&token, id).await;
        }
        app.patch("/api/instances/mock-a/monitor/start", &token).await;
        app.patch("/api/instances/mock-b/monitor/start", &token).await;
        let now = Utc::now();
        for k in 0..3 {
            let at = now + TimeDelta::seconds(30 * k);
            let report = run_collection_tick(app.store.as_ref(), &sources(), COLLECTION, at).await.unwrap();
            assert_eq!((report.instances, report.rows), (2, 2));
            let again = run_collection_tick(app.store.as_ref(), &sources(), COLLECTION, at).await.unwrap();
            assert_eq!(again.instances, 0, "a slot is collected once");
        }
        for (id, expected) in [("mock-a", 3), ("mock-b", 3), ("mock-idle", 0)] {
            let (_, body) = app.get(&format!("/api/metrics/{id}"), &token).await;
            let metrics = body["metrics"].as_array().unwrap();
            assert_eq!(metrics.len(), expected, "{id}: {body}");
            for m in metrics {
                let cpu = m["cpu_utilization"].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&cpu));
                assert!(m["network_in"].as_i64().unwrap() >= 1_000_000);
            }
        }
    }

    async fn a_failed_collection_is_shown_on_the_instance_and_others_go_on(app) {
        let token = app.user("cw@example.com").await;
        app.mock_instance(&token, "mock-ok").await;
        let (status, _) = app
            .post(
                "/api/instances/",
                Some(&token),
                json!({"instance_id": "i-0123456789abcdef0", "instance_type": "t3.micro", "region": "us-east-1", "is_mock": false}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        app.patch("/api/instances/mock-ok/monitor/start", &token).await;
        app.patch("/api/instances/i-0123456789abcdef0/monitor/start", &token).await;

        let report = run_collection_tick(app.store.as_ref(), &sources(), COLLECTION, Utc::now()).await.unwrap();
        assert_eq!((report.instances, report.rows, report.events), (2, 1, 1));
        let (_, body) = app.get("/api/instances/", &token).await;
        let by_id: HashMap<&str, &serde_json::Value> = body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["instance_id"].as_str().unwrap(), i))
            .collect();
        assert_eq!(
            by_id["i-0123456789abcdef0"]["last_collection_error"],
            "CloudWatch GetMetricData failed in us-east-1: no credentials"
        );
        assert_eq!(by_id["mock-ok"]["last_collection_error"], serde_json::Value::Null);
        assert!(by_id["mock-ok"]["last_collected_at"].as_str().unwrap().ends_with('Z'));
    }
}

/// Two schedulers (two pools, as two replicas would have) on one PostgreSQL
/// database, ticking together: every instance gets exactly one metric per
/// collection tick and one evaluation per scaling tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn two_replicas_share_ticks_without_duplicates() {
    let Some(app) = spawn_app(Db::Postgres).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    let token = app.user("replicas@example.com").await;
    const N: usize = 300;
    for i in 0..N {
        let id = format!("mock-r{i}");
        app.mock_instance(&token, &id).await;
        app.patch(&format!("/api/instances/{id}/monitor/start"), &token)
            .await;
    }
    let url = &app.settings.database_url;
    let pool = PoolSettings::default();
    let a = autoscaler::store::connect(url, &pool).await.unwrap();
    let b = autoscaler::store::connect(url, &pool).await.unwrap();
    let sources = sources();
    let start = Utc::now();
    const TICKS: i64 = 8;
    let (mut handled_a, mut handled_b) = (0, 0);
    for k in 0..TICKS {
        let at = start + TimeDelta::seconds(30 * k);
        let (ra, rb) = tokio::join!(
            run_collection_tick(a.as_ref(), &sources, COLLECTION, at),
            run_collection_tick(b.as_ref(), &sources, COLLECTION, at),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.instances + rb.instances, N, "tick {k}");
        handled_a += ra.instances;
        handled_b += rb.instances;
        let policy = &app.settings.policy;
        let (sa, sb) = tokio::join!(
            run_scaling_tick(a.as_ref(), policy, SCALING, at),
            run_scaling_tick(b.as_ref(), policy, SCALING, at),
        );
        assert_eq!(sa.unwrap().instances + sb.unwrap().instances, N, "tick {k}");
    }
    eprintln!("replica A collected {handled_a}, replica B {handled_b}");
    for i in 0..N {
        let id = app.instance_uuid(&format!("mock-r{i}")).await;
        let metrics = a.recent_metrics(id, 100).await.unwrap();
        assert_eq!(metrics.len(), TICKS as usize, "instance {i}");
        let mut stamps: Vec<_> = metrics.iter().map(|m| m.timestamp).collect();
        stamps.dedup();
        assert_eq!(
            stamps.len(),
            TICKS as usize,
            "one metric per tick for instance {i}"
        );
        let decisions = a.recent_decisions(id, 100).await.unwrap();
        let mut at: Vec<_> = decisions.iter().map(|d| d.timestamp).collect();
        at.dedup();
        assert_eq!(
            at.len(),
            decisions.len(),
            "no duplicate decisions for instance {i}"
        );
    }
}
