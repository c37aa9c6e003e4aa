//! Scale targets on real Auto Scaling groups, over the wire: moto's server speaks
//! the Auto Scaling (awsQuery) protocol. A tagged group is created with the SDK,
//! attached through the API, a scale-up is driven through the engine and the worker,
//! and the group's desired capacity is read back with the SDK; a change made outside
//! is adopted; a deleted group fails its target while the server keeps serving.
//! Start moto with `scripts/moto.sh PORT` and run with
//! `AWS_ENDPOINT_URL=http://127.0.0.1:PORT cargo test --test asg_moto`. Without
//! `AWS_ENDPOINT_URL` the tests skip, or fail when `CI=true`.

use std::sync::Arc;
use std::time::Duration;

use autoscaler::actuate::aws::AsgCloud;
use autoscaler::actuate::{Cloud, Clouds, Timing};
use autoscaler::app::Application;
use autoscaler::config::Settings;
use autoscaler::jobs::actuation::{Actuator, WriteLimiter, call_log, run_actuation_pass};
use autoscaler::jobs::run_scaling_tick;
use autoscaler::signals::Signals;
use autoscaler::store::Store;
use autoscaler::testing::ScratchDatabase;
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::Tag;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

#[path = "support/moto.rs"]
mod moto;
use moto::{REGION, moto_endpoint, sdk_config};

/// A fresh group (unique name per run) with `desired` instances, MinSize 1,
/// MaxSize 6, and `tags`.
async fn create_group(client: &Client, desired: i32, tags: &[(&str, &str)]) -> String {
    let name = format!("web-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    client
        .create_launch_configuration()
        .launch_configuration_name(&name)
        .image_id("ami-12c6146b")
        .instance_type("t2.micro")
        .send()
        .await
        .expect("launch configuration");
    let mut create = client
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_configuration_name(&name)
        .min_size(1)
        .max_size(6)
        .desired_capacity(desired)
        .availability_zones("us-east-1a");
    for (key, value) in tags {
        create = create.tags(
            Tag::builder()
                .key(*key)
                .value(*value)
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .propagate_at_launch(false)
                .build(),
        );
    }
    create.send().await.expect("group");
    name
}

async fn desired_capacity(client: &Client, name: &str) -> i32 {
    let out = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    out.auto_scaling_groups()[0].desired_capacity().unwrap()
}

struct World {
    base: String,
    http: reqwest::Client,
    token: String,
    store: Arc<dyn Store>,
    settings: Settings,
    actuator: Actuator,
    client: Client,
    _db: ScratchDatabase,
}

impl World {
    async fn start(endpoint: &str) -> World {
        let db = ScratchDatabase::sqlite("asg").unwrap();
        let settings = Settings::from_lookup(|k| match k {
            "DATABASE_URL" => Some(db.url().to_owned()),
            "JWT_SECRET_KEY" => Some("asg-test-secret-0123456789abcdef".into()),
            "HOST" => Some("127.0.0.1".into()),
            "PORT" => Some("0".into()),
            "RUN_JOBS" => Some("false".into()),
            "LOG_DIR" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        let config = sdk_config(endpoint).await;
        let signals = Arc::new(Signals::new());
        let clouds = Clouds {
            aws: Arc::new(AsgCloud::new(config.clone(), call_log(signals.clone())))
                as Arc<dyn Cloud>,
            kubernetes: None,
        };
        let app = Application::build_with(settings.clone(), clouds.clone(), signals.clone())
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let store = app.store();
        tokio::spawn(async move { app.run_until(std::future::pending()).await.unwrap() });
        let http = reqwest::Client::new();
        let creds = json!({"email": "ops@example.com", "password": "testpass123"});
        http.post(format!("{base}/api/auth/register"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        let login: Value = http
            .post(format!("{base}/api/auth/login"))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().unwrap().to_owned();
        let world = World {
            base,
            http,
            token,
            store,
            actuator: Actuator {
                clouds,
                defaults: settings.policy.clone(),
                timing: Timing::default(),
                limiter: WriteLimiter::new(100),
                signals,
            },
            settings,
            client: Client::new(&config),
            _db: db,
        };
        world
            .call(
                reqwest::Method::POST,
                "/api/instances/",
                Some(json!({"instance_id": "web-1",
                "instance_type": "t2.micro", "region": "mock", "is_mock": true})),
            )
            .await;
        world
            .call(
                reqwest::Method::PATCH,
                "/api/instances/web-1/monitor/start",
                None,
            )
            .await;
        world
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn attach(&self, group: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::PUT,
            "/api/instances/web-1/target",
            Some(json!({"kind": "aws_asg", "group_name": group, "region": REGION, "base_capacity": 2})),
        )
        .await
    }

    async fn pass(&self, now: DateTime<Utc>) {
        run_actuation_pass(self.store.as_ref(), &self.actuator, now)
            .await
            .unwrap();
    }

    async fn status(&self) -> Value {
        self.call(reqwest::Method::GET, "/api/instances/web-1/target", None)
            .await
            .1["status"]
            .clone()
    }

    async fn scale_up(&self, now: DateTime<Utc>) {
        self.call(
            reqwest::Method::POST,
            "/api/metrics/simulate",
            Some(
                json!({"instance_id": "web-1", "cpu_utilization": 95.0, "memory_usage": 50.0,
                        "duration_minutes": 10, "interval_seconds": 30}),
            ),
        )
        .await;
        run_scaling_tick(
            self.store.as_ref(),
            &self.settings.policy,
            Duration::from_secs(15),
            now,
        )
        .await
        .unwrap();
    }
}

fn plus(t: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    t + TimeDelta::seconds(secs)
}

#[tokio::test]
async fn a_scale_up_sets_the_groups_desired_capacity_and_an_outside_change_is_adopted() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let w = World::start(&endpoint).await;
    let untagged = create_group(&w.client, 2, &[]).await;
    let (status, body) = w.attach(&untagged).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        format!(
            "Auto Scaling group {untagged} ({REGION}) does not carry the tag autoscaler:managed=true, so the autoscaler may not scale it"
        )
    );
    let (status, body) = w.attach("no-such-group").await;
    assert_eq!(
        (status, &body["error"]),
        (
            400,
            &json!("Auto Scaling group no-such-group does not exist in us-east-1")
        )
    );

    let group = create_group(
        &w.client,
        2,
        &[
            ("autoscaler:managed", "true"),
            ("autoscaler:owner", "ops@example.com"),
        ],
    )
    .await;
    let (status, body) = w.attach(&group).await;
    assert_eq!(status, 200, "{body}");
    let t0 = Utc::now();
    w.pass(t0).await;
    assert_eq!(
        w.status().await["state"],
        "in_sync",
        "level 1 is 2, as the group already is"
    );

    w.scale_up(plus(t0, 1)).await;
    w.pass(plus(t0, 2)).await;
    // Level 2 of base 2 is 3: written over the wire, read back with the SDK.
    assert_eq!(desired_capacity(&w.client, &group).await, 3);
    let status = w.status().await;
    assert_eq!(
        (
            &status["applied_capacity"],
            &status["min_capacity"],
            &status["max_capacity"]
        ),
        (&json!(3), &json!(1), &json!(6))
    );
    w.pass(plus(t0, 8)).await;
    assert_eq!(
        w.status().await["state"],
        "in_sync",
        "moto's instances are InService at once"
    );

    // Someone sets 5 by hand: adopted as level 3 (2, 3, 5).
    w.client
        .set_desired_capacity()
        .auto_scaling_group_name(&group)
        .desired_capacity(5)
        .send()
        .await
        .unwrap();
    w.pass(plus(t0, 8 + 61)).await;
    let (_, instances) = w.call(reqwest::Method::GET, "/api/instances/", None).await;
    assert_eq!(instances["instances"][0]["current_scale_level"], 3);
    let (_, history) = w
        .call(
            reqwest::Method::GET,
            "/api/instances/web-1/actuations",
            None,
        )
        .await;
    let events: Vec<&str> = history["actuations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["drift_adopted", "converged", "applied"]);
    assert_eq!(
        desired_capacity(&w.client, &group).await,
        5,
        "adopting writes nothing"
    );
}

#[tokio::test]
async fn a_group_deleted_after_attaching_fails_its_target_and_the_server_keeps_serving() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let w = World::start(&endpoint).await;
    let group = create_group(&w.client, 2, &[("autoscaler:managed", "true")]).await;
    assert_eq!(w.attach(&group).await.0, 200);
    let t0 = Utc::now();
    w.pass(t0).await;
    w.client
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .force_delete(true)
        .send()
        .await
        .unwrap();
    w.scale_up(plus(t0, 1)).await;
    w.pass(plus(t0, 2)).await;
    let status = w.status().await;
    assert_eq!(status["state"], "failed");
    assert_eq!(
        status["message"],
        format!("Auto Scaling group {group} does not exist in {REGION}")
    );
    let (code, _) = w.call(reqwest::Method::GET, "/api/instances/", None).await;
    assert_eq!(code, 200);
}
