//! Webhooks: the API, the outbox written with the decisions, signed delivery to a
//! real receiver on 127.0.0.1, retries, SSRF refusals and sharing work between
//! replicas. The delivery worker's tick is driven directly with chosen clocks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoscaler::jobs::run_scaling_tick;
use autoscaler::model::{NewMetric, SampleSource};
use autoscaler::signals::Signals;
use autoscaler::testing::TestReads;
use autoscaler::webhooks::{Deliverer, DeliveryReport, run_delivery_tick};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Db, TestApp, error, spawn_app_with, take_time, take_uuid};

/// Runs each body on SQLite and on PostgreSQL, with webhooks allowed to reach
/// 127.0.0.1 (where the test receivers listen).
macro_rules! on_both_databases_private_ok {
    ($(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(spawn_app_with(Db::Sqlite, PRIVATE_OK).await.unwrap()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(postgres_tests), ignore = "needs PostgreSQL: set TEST_DATABASE_URL")]
            async fn postgres() {
                run(spawn_app_with(Db::Postgres, PRIVATE_OK).await.expect("TEST_DATABASE_URL is set")).await
            }
        }
    )*};
}

const PRIVATE_OK: &[(&str, &str)] = &[("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")];

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    /// The body's bytes, exactly as sent.
    raw: Vec<u8>,
    /// The answer it was given.
    status: u16,
}

/// A webhook receiver on 127.0.0.1 that checks every signature with its own
/// HMAC code and answers 500 to the first `failures` requests, then 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    secret: Arc<Mutex<Option<String>>>,
    failures: usize,
    got: Arc<Mutex<Vec<Received>>>,
}

/// The Standard Webhooks check, written out independently of the service's code.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("no {name} header"))
    };
    let (id, timestamp, signature) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let sent: i64 = timestamp.parse().map_err(|_| "timestamp not a number")?;
    if (Utc::now().timestamp() - sent).abs() > 300 {
        return Err("timestamp too far from now".into());
    }
    let key = BASE64
        .decode(
            secret
                .strip_prefix("whsec_")
                .ok_or("secret without whsec_")?,
        )
        .map_err(|e| e.to_string())?;
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(&signed);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    if signature.split(' ').any(|s| s == expected) {
        Ok(id)
    } else {
        Err(format!("bad signature {signature}, expected {expected}"))
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> AxumStatus {
    let secret = state.secret.lock().unwrap().clone().expect("secret set");
    let id = match verify(&secret, &headers, &body) {
        Ok(id) => id,
        Err(e) => panic!("receiver: {e}"),
    };
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/json",
        "content type"
    );
    let mut got = state.got.lock().unwrap();
    let status = if got.len() < state.failures { 500 } else { 200 };
    got.push(Received {
        id,
        body: serde_json::from_slice(&body).expect("body is JSON"),
        raw: body.to_vec(),
        status,
    });
    AxumStatus::from_u16(status).unwrap()
}

impl Receiver {
    async fn start(failures: usize) -> (Receiver, Arc<Mutex<Option<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        let state = ReceiverState {
            secret: Arc::default(),
            failures,
            got: Arc::default(),
        };
        let (got, secret) = (state.got.clone(), state.secret.clone());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (Receiver { url, got, server }, secret)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Registers a webhook for `url`; returns its id and secret.
async fn create(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let (status, resp) = app.post("/api/webhooks", Some(token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    (
        resp["webhook"]["id"].as_str().unwrap().to_owned(),
        resp["webhook"]["secret"].as_str().unwrap().to_owned(),
    )
}

/// A receiver and a webhook of `token`'s user pointing at it.
async fn hooked(app: &TestApp, token: &str, failures: usize, events: Value) -> (Receiver, String) {
    let (receiver, secret) = Receiver::start(failures).await;
    let (id, s) = create(app, token, json!({"url": receiver.url, "events": events})).await;
    *secret.lock().unwrap() = Some(s);
    (receiver, id)
}

/// A monitored mock instance with ten minutes of samples at `cpu` %, evaluated now.
async fn decide(app: &TestApp, token: &str, instance_id: &str, cpu: f64) -> DateTime<Utc> {
    app.mock_instance(token, instance_id).await;
    let path = format!("/api/instances/{instance_id}/monitor/start");
    assert_eq!(app.patch(&path, token).await.0, StatusCode::OK);
    app.simulate(
        token,
        json!({"instance_id": instance_id, "cpu_utilization": cpu, "memory_usage": 10.0,
               "duration_minutes": 10, "interval_seconds": 30}),
    )
    .await;
    let now = Utc::now();
    run_scaling_tick(
        app.store.as_ref(),
        &app.settings.policy,
        Duration::from_secs(15),
        now,
    )
    .await
    .unwrap();
    now
}

fn deliverer(allow_private: bool) -> Deliverer {
    Deliverer::new(allow_private, Arc::new(Signals::new()))
}

async fn deliver(app: &TestApp, at: DateTime<Utc>) -> DeliveryReport {
    run_delivery_tick(app.store.as_ref(), &deliverer(true), at)
        .await
        .unwrap()
}

async fn deliveries(app: &TestApp, token: &str, webhook: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/api/webhooks/{webhook}/deliveries"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

on_both_databases_private_ok! {
    async fn a_scale_up_reaches_the_owners_webhook_signed_with_the_decision(app) {
        let token = app.user("hooks@example.com").await;
        let (receiver, webhook) = hooked(&app, &token, 0, json!(["scale_up", "scale_down"])).await;
        let now = decide(&app, &token, "mock-hook-1", 95.0).await;

        let report = deliver(&app, now).await;
        assert_eq!(report, DeliveryReport { delivered: 1, retrying: 0, failed: 0 });
        let got = receiver.received();
        assert_eq!(got.len(), 1, "{got:?}");
        let (_, decisions) = app.get("/api/metrics/decisions/mock-hook-1", &token).await;
        let decision = &decisions["decisions"][0];
        let mut body = got[0].body.clone();
        let decision_id = take_uuid(&mut body, "/data/decision_id");
        let stored = app.store.recent_decisions(app.instance_uuid("mock-hook-1").await, 1).await.unwrap();
        assert_eq!(stored[0].id, decision_id);
        let sent_at = take_time(&mut body, "/timestamp");
        assert_eq!(sent_at, now.trunc_subsecs_micros());
        assert_eq!(
            body,
            json!({
                "type": "scaling.scale_up",
                "timestamp": "<timestamp>",
                "data": {
                    "instance_id": "mock-hook-1",
                    "decision": "scale_up",
                    "reason": decision["reason"],
                    "level_before": 1,
                    "level_after": 2,
                    "dry_run": false,
                    "cpu_utilization": 95.0,
                    "memory_usage": 10.0,
                    "network_in": null,
                    "network_out": null,
                    "decision_id": "<uuid>",
                }
            })
        );
        let list = deliveries(&app, &token, &webhook).await;
        assert_eq!(list.len(), 1);
        let mut d = list[0].clone();
        assert_eq!(take_uuid(&mut d, "/id").to_string(), got[0].id);
        assert_eq!(take_uuid(&mut d, "/decision_id"), decision_id);
        take_time(&mut d, "/delivered_at");
        take_time(&mut d, "/created_at");
        assert_eq!(d, json!({
            "id": "<uuid>", "event_type": "scaling.scale_up", "decision_id": "<uuid>",
            "status": "delivered", "attempts": 1, "last_status": 200, "last_error": null,
            "next_attempt_at": null, "delivered_at": "<timestamp>", "created_at": "<timestamp>",
        }));
        // Nothing is due any more.
        assert_eq!(deliver(&app, now + chrono::TimeDelta::hours(2)).await, DeliveryReport::default());
    }

    async fn a_receiver_failing_three_times_gets_the_event_once_as_2xx_after_four_attempts(app) {
        let token = app.user("retry@example.com").await;
        let (receiver, webhook) = hooked(&app, &token, 3, json!(["scale_up"])).await;
        let mut at = decide(&app, &token, "mock-retry-1", 95.0).await;
        let mut schedule = Vec::new();
        for attempt in 1..=3 {
            let report = deliver(&app, at).await;
            assert_eq!(report.retrying, 1, "attempt {attempt}");
            let list = deliveries(&app, &token, &webhook).await;
            assert_eq!((list[0]["status"].as_str(), list[0]["attempts"].as_i64()), (Some("pending"), Some(attempt)));
            assert_eq!(list[0]["last_status"], 500);
            let next: DateTime<Utc> = list[0]["next_attempt_at"].as_str().unwrap().parse().unwrap();
            // Not due before its time.
            assert_eq!(deliver(&app, next - chrono::TimeDelta::milliseconds(1)).await, DeliveryReport::default());
            schedule.push((next - at).num_milliseconds() as f64 / 1000.0);
            at = next;
        }
        // Backoff with jitter: about 5 s, 30 s, 2 min.
        for (got, base) in schedule.iter().zip([5.0, 30.0, 120.0]) {
            assert!((base * 0.79..=base * 1.21).contains(got), "{schedule:?}");
        }
        assert_eq!(deliver(&app, at).await.delivered, 1);

        let got = receiver.received();
        assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 500, 200]);
        assert!(got.iter().all(|r| r.id == got[0].id), "one webhook-id across retries");
        assert!(got.iter().all(|r| r.body == got[0].body), "the same body each time");
        let list = deliveries(&app, &token, &webhook).await;
        assert_eq!((list[0]["status"].as_str(), list[0]["attempts"].as_i64()), (Some("delivered"), Some(4)));
    }

    async fn an_event_undelivered_for_a_day_fails(app) {
        let token = app.user("dead@example.com").await;
        let (receiver, webhook) = hooked(&app, &token, usize::MAX, json!(["scale_up"])).await;
        let mut at = decide(&app, &token, "mock-dead-1", 95.0).await;
        let start = at;
        loop {
            let report = deliver(&app, at).await;
            let list = deliveries(&app, &token, &webhook).await;
            if report.failed == 1 {
                assert_eq!(list[0]["status"], "failed");
                assert_eq!(list[0]["next_attempt_at"], Value::Null);
                break;
            }
            at = list[0]["next_attempt_at"].as_str().unwrap().parse().unwrap();
            assert!(at - start <= chrono::TimeDelta::hours(24));
        }
        // 5 quick attempts, then about hourly ones up to a day.
        let attempts = receiver.received().len();
        assert!((20..=40).contains(&attempts), "{attempts} attempts");
    }

    async fn events_follow_the_webhooks_subscriptions_and_skip_no_action(app) {
        let token = app.user("subs@example.com").await;
        let (ups, _) = hooked(&app, &token, 0, json!(["scale_up"])).await;
        let (downs, _) = hooked(&app, &token, 0, json!(["scale_down"])).await;
        let other = app.user("other@example.com").await;
        let (others, _) = hooked(&app, &other, 0, json!(["scale_up", "scale_down"])).await;
        // Up to level 2, then (past the cooldown) an idle spell takes it back down.
        let up_at = decide(&app, &token, "mock-updown-1", 95.0).await;
        let later = up_at + chrono::TimeDelta::minutes(20);
        let instance = app.instance_uuid("mock-updown-1").await;
        let idle: Vec<NewMetric> = (0..10)
            .map(|i| NewMetric {
                instance,
                timestamp: later - chrono::TimeDelta::seconds(30 * i),
                cpu_utilization: 2.0,
                memory_usage: Some(10.0),
                network_in: None,
                network_out: None,
                source: SampleSource::Simulated,
            })
            .collect();
        app.store.insert_metrics(&idle).await.unwrap();
        // A steady 50 % is no_action: recorded as a decision, never sent.
        decide(&app, &token, "mock-steady-1", 50.0).await;
        run_scaling_tick(app.store.as_ref(), &app.settings.policy, Duration::from_secs(15), later)
            .await
            .unwrap();

        assert_eq!(deliver(&app, later).await.delivered, 2);
        assert_eq!(others.received().len(), 0, "another user's webhook");
        let (up, down) = (ups.received(), downs.received());
        assert_eq!((up.len(), down.len()), (1, 1));
        assert_eq!(up[0].body["type"], "scaling.scale_up");
        assert_eq!(down[0].body["type"], "scaling.scale_down");
        assert_eq!(
            (down[0].body["data"]["level_before"].as_i64(), down[0].body["data"]["level_after"].as_i64()),
            (Some(2), Some(1))
        );
        assert_eq!(down[0].body["data"]["instance_id"], "mock-updown-1");
    }

    async fn a_ping_is_queued_with_202_and_delivered(app) {
        let token = app.user("ping@example.com").await;
        let (receiver, webhook) = hooked(&app, &token, 0, json!(["scale_up"])).await;
        let (status, mut body) = app.post(&format!("/api/webhooks/{webhook}/test"), Some(&token), json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let event = take_uuid(&mut body, "/event_id");
        assert_eq!(body, json!({"message": "Ping queued", "event_id": "<uuid>"}));
        assert_eq!(deliver(&app, Utc::now()).await.delivered, 1);
        let got = receiver.received();
        assert_eq!(got[0].id, event.to_string());
        assert_eq!(got[0].body["type"], "ping");
        assert_eq!(got[0].body["data"], json!({"webhook_id": webhook}));
        let list = deliveries(&app, &token, &webhook).await;
        assert_eq!((list[0]["event_type"].as_str(), list[0]["decision_id"].clone()), (Some("ping"), Value::Null));
    }

    async fn webhooks_are_created_listed_and_deleted_with_their_events(app) {
        let token = app.user("crud@example.com").await;
        let (status, mut body) = app
            .post("/api/webhooks", Some(&token),
                  json!({"url": "http://127.0.0.1:9/hook", "description": "pager"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = take_uuid(&mut body, "/webhook/id");
        take_time(&mut body, "/webhook/created_at");
        let secret = body["webhook"]["secret"].as_str().unwrap().to_owned();
        let key = BASE64.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).unwrap();
        assert!(key.len() >= 24);
        body["webhook"]["secret"] = json!("<secret>");
        assert_eq!(body, json!({"webhook": {
            "id": "<uuid>", "url": "http://127.0.0.1:9/hook", "events": ["scale_up", "scale_down"],
            "description": "pager", "created_at": "<timestamp>", "secret": "<secret>",
        }}));

        let (status, mut list) = app.get("/api/webhooks", &token).await;
        assert_eq!(status, StatusCode::OK);
        take_uuid(&mut list, "/webhooks/0/id");
        take_time(&mut list, "/webhooks/0/created_at");
        assert_eq!(list, json!({"webhooks": [{
            "id": "<uuid>", "url": "http://127.0.0.1:9/hook", "events": ["scale_up", "scale_down"],
            "description": "pager", "created_at": "<timestamp>",
        }]}));

        // A pending event goes with its webhook.
        let (status, _) = app.post(&format!("/api/webhooks/{id}/test"), Some(&token), json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let path = format!("/api/webhooks/{id}");
        let (status, body) = app.call(Method::DELETE, &path, Some(&token), None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"message": "Webhook deleted"})));
        let (status, body) = app.call(Method::DELETE, &path, Some(&token), None).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Webhook not found")));
        assert_eq!(app.get("/api/webhooks", &token).await.1, json!({"webhooks": []}));
        let claimed = app.store.claim_webhook_events(Utc::now(), Utc::now(), 10).await.unwrap();
        assert!(claimed.is_empty(), "{claimed:?}");
    }

    async fn deleting_the_user_removes_their_webhooks_and_pending_events(app) {
        let token = app.user("cascade@example.com").await;
        let (_receiver, _) = hooked(&app, &token, 0, json!(["scale_up"])).await;
        decide(&app, &token, "mock-cascade-1", 95.0).await;
        let user = app.user_id(&token).await;
        assert!(app.store.delete_user(user).await.unwrap());
        let claimed = app.store.claim_webhook_events(Utc::now(), Utc::now(), 10).await.unwrap();
        assert!(claimed.is_empty(), "{claimed:?}");
    }

    async fn another_users_webhook_is_404(app) {
        let owner = app.user("owner@example.com").await;
        let (id, _) = create(&app, &owner, json!({"url": "http://127.0.0.1:9/"})).await;
        let thief = app.user("thief@example.com").await;
        for (method, path) in [
            (Method::DELETE, format!("/api/webhooks/{id}")),
            (Method::GET, format!("/api/webhooks/{id}/deliveries")),
            (Method::POST, format!("/api/webhooks/{id}/test")),
            (Method::DELETE, "/api/webhooks/not-a-uuid".to_owned()),
        ] {
            let (status, body) = app.call(method.clone(), &path, Some(&thief), None).await;
            assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Webhook not found")), "{method} {path}");
        }
        assert_eq!(app.get("/api/webhooks", &thief).await.1, json!({"webhooks": []}));
        let (status, _) = app.call(Method::GET, "/api/webhooks", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    async fn a_user_has_at_most_ten_webhooks(app) {
        let token = app.user("many@example.com").await;
        for i in 0..10 {
            create(&app, &token, json!({"url": format!("http://127.0.0.1:9/{i}")})).await;
        }
        let (status, body) = app.post("/api/webhooks", Some(&token), json!({"url": "http://127.0.0.1:9/x"})).await;
        assert_eq!((status, body), (StatusCode::CONFLICT,
            error("A user can have at most 10 webhooks; delete one first")));
        // Another user is not affected.
        let other = app.user("few@example.com").await;
        create(&app, &other, json!({"url": "http://127.0.0.1:9/y"})).await;
    }

    async fn bad_webhook_bodies_are_400(app) {
        let token = app.user("bad@example.com").await;
        for (body, message) in [
            (json!({}), "url is required"),
            (json!({"url": "  "}), "url is required"),
            (json!({"url": "ftp://example.com/"}), "url must use http or https"),
            (json!({"url": "example.com/hook"}), "url must be an absolute http or https URL"),
            (json!({"url": "http://127.0.0.1/", "events": []}), "events must be a non-empty list of scale_up, scale_down, actuation_applied, actuation_failed, actuation_drift"),
            (json!({"url": "http://127.0.0.1/", "events": ["no_action"]}), "events must be a non-empty list of scale_up, scale_down, actuation_applied, actuation_failed, actuation_drift"),
        ] {
            let (status, resp) = app.post("/api/webhooks", Some(&token), body.clone()).await;
            assert_eq!((status, resp), (StatusCode::BAD_REQUEST, error(message)), "{body}");
        }
        let (status, resp) = send_raw(&app, &token, "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(resp["error"].as_str().unwrap().starts_with("Invalid JSON body"), "{resp}");
    }

    async fn a_name_resolving_to_loopback_is_not_reached_at_delivery_without_the_opt_in(app) {
        // Registered while private networks were allowed; delivered by a worker that
        // refuses them: its resolver drops 127.0.0.1 and the literal is refused too.
        let token = app.user("rebind@example.com").await;
        let (receiver, secret) = Receiver::start(0).await;
        let by_name = receiver.url.replace("127.0.0.1", "localhost");
        let (named, s) = create(&app, &token, json!({"url": by_name})).await;
        *secret.lock().unwrap() = Some(s);
        let (literal, _) = create(&app, &token, json!({"url": receiver.url})).await;
        for id in [&named, &literal] {
            let (status, _) = app.post(&format!("/api/webhooks/{id}/test"), Some(&token), json!({})).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        let report = run_delivery_tick(app.store.as_ref(), &deliverer(false), Utc::now()).await.unwrap();
        assert_eq!(report.retrying, 2);
        assert!(receiver.received().is_empty());
        let named = deliveries(&app, &token, &named).await;
        let error = named[0]["last_error"].as_str().unwrap();
        assert!(error.contains("resolves to no address webhooks may reach"), "{error}");
        let literal = deliveries(&app, &token, &literal).await;
        assert_eq!(literal[0]["last_error"], "address 127.0.0.1 is not allowed");
    }
}

async fn send_raw(app: &TestApp, token: &str, body: &str) -> (StatusCode, Value) {
    let (status, _, json) = crate::helpers::send(
        app.request(Method::POST, "/api/webhooks")
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await;
    (status, json)
}

crate::on_both_databases! {
    async fn internal_addresses_are_refused_without_the_opt_in(app) {
        let token = app.user("ssrf@example.com").await;
        for url in [
            "http://127.0.0.1/",
            "http://127.1.2.3:8080/",
            "http://localhost/",
            "http://LOCALHOST:5000/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.0.10/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fc00::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://2130706433/",
            "http://0x7f000001/",
        ] {
            let (status, body) = app.post("/api/webhooks", Some(&token), json!({"url": url})).await;
            assert_eq!(
                (status, body),
                (StatusCode::BAD_REQUEST,
                 error("url must not point at a loopback, private, link-local or otherwise internal address")),
                "{url}"
            );
        }
        assert_eq!(app.get("/api/webhooks", &token).await.1, json!({"webhooks": []}));
    }
}

/// Two servers on one PostgreSQL database deliver every event, and no event twice
/// in the same attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn two_servers_on_one_postgres_share_deliveries_without_duplicates() {
    let Some(app) = spawn_app_with(Db::Postgres, PRIVATE_OK).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    let second = autoscaler::store::connect(&app.settings.database_url, &Default::default())
        .await
        .unwrap();
    let token = app.user("replicas@example.com").await;
    let (receiver, webhook) = hooked(&app, &token, 0, json!(["scale_up"])).await;
    let webhook_id: uuid::Uuid = webhook.parse().unwrap();
    let now = Utc::now();
    for _ in 0..600 {
        app.store
            .queue_webhook_event(webhook_id, "ping", r#"{"type":"ping"}"#, now)
            .await
            .unwrap();
    }
    let (a, b) = (deliverer(true), deliverer(true));
    let (one, two) = tokio::join!(
        run_delivery_tick(app.store.as_ref(), &a, now),
        run_delivery_tick(second.as_ref(), &b, now),
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.delivered + two.delivered, 600, "{one:?} {two:?}");
    assert!(
        one.delivered > 0 && two.delivered > 0,
        "both shared the work: {one:?} {two:?}"
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *seen.entry(r.id).or_default() += 1;
    }
    assert_eq!(seen.len(), 600);
    assert!(seen.values().all(|&n| n == 1));
}

/// The bytes a receiver gets for one decision, driven through the scaling tick on a
/// fresh app of `db` with fixed samples and a fixed clock: `None` without that
/// database. The decision's id (new in every run) is replaced by `<decision_id>`.
async fn bytes_of_one_decision(db: Db) -> Option<String> {
    let app = spawn_app_with(db, PRIVATE_OK).await?;
    let token = app.user("bytes@example.com").await;
    let (receiver, _) = hooked(&app, &token, 0, json!(["scale_up"])).await;
    app.mock_instance(&token, "mock-bytes").await;
    let path = "/api/instances/mock-bytes/monitor/start";
    assert_eq!(app.patch(path, &token).await.0, StatusCode::OK);
    let now: DateTime<Utc> = "2026-01-22T05:21:00.123456Z".parse().unwrap();
    let instance = app.instance_uuid("mock-bytes").await;
    let samples: Vec<NewMetric> = (1..=20)
        .map(|i| NewMetric {
            instance,
            timestamp: now - chrono::TimeDelta::seconds(30 * i),
            cpu_utilization: 95.0,
            memory_usage: Some(50.5),
            network_in: Some(1_000),
            network_out: None,
            source: SampleSource::Simulated,
        })
        .collect();
    app.store.insert_metrics(&samples).await.unwrap();
    let report = run_scaling_tick(
        app.store.as_ref(),
        &app.settings.policy,
        Duration::from_secs(15),
        now,
    )
    .await
    .unwrap();
    assert_eq!(report.scale_ups, 1, "{report:?}");

    assert_eq!(deliver(&app, now).await.delivered, 1);
    let got = receiver.received();
    let raw = String::from_utf8(got[0].raw.clone()).expect("UTF-8");
    let decision_id = got[0].body["data"]["decision_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(raw.matches(&decision_id).count(), 1, "{raw}");
    Some(raw.replace(&decision_id, "<decision_id>"))
}

/// One decision makes the same bytes on both databases: the body is built once, in
/// Rust, and the stores only keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_decision_sends_the_same_bytes_from_sqlite_and_postgres() {
    let sqlite = bytes_of_one_decision(Db::Sqlite).await.unwrap();
    let Some(postgres) = bytes_of_one_decision(Db::Postgres).await else {
        eprintln!("TEST_DATABASE_URL not set: PostgreSQL side skipped");
        return;
    };
    assert_eq!(postgres, sqlite);
    // And it is the README's shape, to the byte (only the reason left to the engine).
    let reason_at = sqlite.find(r#","reason":""#).unwrap();
    let reason_end = reason_at + sqlite[reason_at..].find(r#"","level_before""#).unwrap();
    assert_eq!(
        format!("{}{}", &sqlite[..reason_at], &sqlite[reason_end + 1..]),
        concat!(
            r#"{"type":"scaling.scale_up","timestamp":"2026-01-22T05:21:00.123456Z","#,
            r#""data":{"instance_id":"mock-bytes","decision":"scale_up","level_before":1,"#,
            r#""level_after":2,"dry_run":false,"cpu_utilization":95.0,"memory_usage":50.5,"#,
            r#""network_in":1000,"network_out":null,"decision_id":"<decision_id>"}}"#
        )
    );
}

/// `trunc_subsecs(6)` for readability in assertions.
trait Micros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl Micros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}
