//! Signals out: the health probes and `GET /metrics`, read by a strict parser of
//! the Prometheus text format (`helpers::parse_exposition`).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    Db, Sample, TestApp, error, parse_exposition as parse, sample_value as value, spawn_app_with,
};
use crate::on_both_databases;

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let resp = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&resp.text().await.unwrap())
}

on_both_databases! {
    async fn liveness_and_readiness_answer_ok_while_the_database_does(app) {
        let (status, body) = app.call(Method::GET, "/api/health/live", None, None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
        let (status, body) = app.call(Method::GET, "/api/health/ready", None, None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));
    }

    async fn request_counters_move_by_route_template_and_status(app) {
        let token = app.user("scrape@example.com").await;
        app.mock_instance(&token, "mock-scrape-1").await;
        assert_eq!(app.patch("/api/instances/mock-scrape-1/monitor/start", &token).await.0, StatusCode::OK);
        let before = scrape(&app).await;
        let get = |route: &'static str, status: &'static str| {
            [("method", "GET"), ("route", route), ("status", status)]
        };
        assert_eq!(value(&before, "autoscaler_http_requests_total", &get("/api", "200")), None);

        for path in ["/api/", "/api", "/api/"] {
            assert_eq!(app.call(Method::GET, path, None, None).await.0, StatusCode::OK);
        }
        app.call(Method::GET, "/api/no/such/path", None, None).await;
        app.call(Method::GET, "/api/another/unknown", None, None).await;
        app.get("/api/metrics/mock-scrape-1?limit=100", &token).await;
        app.get("/api/metrics/mock-scrape-1?limit=5", &token).await;
        app.get("/api/metrics/no-such-instance", &token).await;

        let after = scrape(&app).await;
        let total = "autoscaler_http_requests_total";
        assert_eq!(value(&after, total, &get("/api", "200")), Some(3.0));
        assert_eq!(value(&after, total, &get("unmatched", "404")), Some(2.0));
        assert_eq!(value(&after, total, &get("/api/metrics/{instance_id}", "200")), Some(2.0));
        assert_eq!(value(&after, total, &get("/api/metrics/{instance_id}", "404")), Some(1.0));
        // The first scrape itself is counted once it has answered.
        assert_eq!(value(&after, total, &get("/metrics", "200")), Some(1.0));
        let route = [("method", "GET"), ("route", "/api/metrics/{instance_id}")];
        assert_eq!(value(&after, "autoscaler_http_request_duration_seconds_count", &route), Some(3.0));
        let mut inf = route.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(value(&after, "autoscaler_http_request_duration_seconds_bucket", &inf), Some(3.0));
        assert!(value(&after, "autoscaler_http_request_duration_seconds_sum", &route).unwrap() > 0.0);

        assert_eq!(value(&after, "autoscaler_monitored_instances", &[]), Some(1.0));
        // The scrape itself is the one request in flight.
        assert_eq!(value(&after, "autoscaler_http_requests_in_flight", &[]), Some(1.0));
        assert_eq!(value(&after, "autoscaler_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
        let idle = value(&after, "autoscaler_db_pool_connections", &[("state", "idle")]).unwrap();
        let active = value(&after, "autoscaler_db_pool_connections", &[("state", "active")]).unwrap();
        assert!(idle + active >= 1.0, "idle {idle} active {active}");
    }
}

/// An app running its loops every second, on SQLite.
async fn app_with_jobs(extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("RUN_JOBS", "true"),
        ("SCALING_INTERVAL_SECONDS", "1"),
        ("METRICS_INTERVAL_SECONDS", "1"),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(Db::Sqlite, &overrides).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_and_decision_counters_move_as_the_jobs_run() {
    let app = app_with_jobs(&[]).await;
    let token = app.user("ticks@example.com").await;
    app.mock_instance(&token, "mock-ticks-1").await;
    assert_eq!(
        app.patch("/api/instances/mock-ticks-1/monitor/start", &token)
            .await
            .0,
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = |job| [("job", job), ("outcome", "ok")];
    loop {
        let samples = scrape(&app).await;
        let ticks = |job| value(&samples, "autoscaler_job_ticks_total", &ok(job)).unwrap_or(0.0);
        let decided = value(
            &samples,
            "autoscaler_decisions_total",
            &[("decision", "no_action"), ("dry_run", "false")],
        )
        .unwrap_or(0.0);
        if ticks("collection") >= 2.0
            && ticks("scaling") >= 2.0
            && ticks("webhook_delivery") >= 2.0
            && decided >= 1.0
        {
            for job in ["collection", "scaling", "webhook_delivery"] {
                let count = value(
                    &samples,
                    "autoscaler_job_tick_duration_seconds_count",
                    &[("job", job)],
                )
                .unwrap();
                assert!(count >= ticks(job), "{job}: {count}");
            }
            // The mock source never fails.
            assert_eq!(
                value(
                    &samples,
                    "autoscaler_collection_errors_total",
                    &[("source", "mock")]
                ),
                Some(0.0)
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ticks did not show up: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_is_required_when_set() {
    let app = spawn_app_with(Db::Sqlite, &[("METRICS_TOKEN", "scrape-secret-1")])
        .await
        .unwrap();
    let missing = error("A valid metrics token is required");
    for auth in [None, Some("Bearer wrong"), Some("Basic scrape-secret-1")] {
        let mut req = app.request(Method::GET, "/metrics");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let (status, _, body) = crate::helpers::send(req).await;
        assert_eq!(
            (status, body),
            (StatusCode::UNAUTHORIZED, missing.clone()),
            "{auth:?}"
        );
    }
    let resp = app
        .request(Method::GET, "/metrics")
        .bearer_auth("scrape-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let samples = parse(&resp.text().await.unwrap());
    // The refused scrapes were counted too.
    assert_eq!(
        value(
            &samples,
            "autoscaler_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "401")]
        ),
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_application_counts_only_its_own_requests() {
    let (one, two) = (
        spawn_app_with(Db::Sqlite, &[]).await.unwrap(),
        spawn_app_with(Db::Sqlite, &[]).await.unwrap(),
    );
    one.call(Method::GET, "/api/", None, None).await;
    let route = [("method", "GET"), ("route", "/api"), ("status", "200")];
    assert_eq!(
        value(
            &scrape(&one).await,
            "autoscaler_http_requests_total",
            &route
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &scrape(&two).await,
            "autoscaler_http_requests_total",
            &route
        ),
        None
    );
}
