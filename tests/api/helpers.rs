//! Test harness: the real application on 127.0.0.1:0 with a fresh database per test,
//! on SQLite always and on PostgreSQL when `TEST_DATABASE_URL` is set.

use std::sync::Arc;

use autoscaler::actuate::Clouds;
use autoscaler::app::Application;
use autoscaler::config::Settings;
use autoscaler::signals::Signals;
use autoscaler::store::Store;
use autoscaler::testing::ScratchDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    server: tokio::task::JoinHandle<()>,
    _db: DbGuard,
}

pub enum DbGuard {
    /// A database of this test's own, removed when the test ends.
    Scratch(#[allow(dead_code)] ScratchDatabase),
    /// Another app's database: that app's guard cleans up.
    Shared,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The PostgreSQL server tests use, if any. In CI (`CI=true`) its absence fails the
/// test instead of skipping it.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but TEST_DATABASE_URL is not set: the PostgreSQL tests would be skipped"
                );
            }
            None
        }
    }
}

/// Settings for a test app on `database_url`, with `overrides` on top.
pub fn test_settings(database_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("JWT_SECRET_KEY".into(), JWT_SECRET.into()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("RUN_JOBS".into(), "false".into()),
        ("DB_MAX_CONNECTIONS".into(), "5".into()),
    ];
    for (k, v) in overrides {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    Settings::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    })
    .expect("valid test settings")
}

/// A fresh, empty database: `(url, guard)`. `None` when PostgreSQL is unavailable.
pub async fn fresh_database(db: Db) -> Option<(String, DbGuard)> {
    let scratch = match db {
        Db::Sqlite => ScratchDatabase::sqlite("test").expect("temp dir"),
        Db::Postgres => ScratchDatabase::postgres(&postgres_url()?, "autoscaler_test")
            .await
            .expect("create test database on TEST_DATABASE_URL"),
    };
    Some((scratch.url().to_owned(), DbGuard::Scratch(scratch)))
}

/// Starts the application on a fresh database; `None` when `db` is unavailable.
pub async fn spawn_app_with(db: Db, overrides: &[(&str, &str)]) -> Option<TestApp> {
    let (url, guard) = fresh_database(db).await?;
    Some(start(&url, overrides, guard, None).await)
}

/// As [`spawn_app_with`], the application's clouds (for scale targets) being `clouds`
/// and its metrics `signals`.
pub async fn spawn_app_with_clouds(
    db: Db,
    overrides: &[(&str, &str)],
    clouds: Clouds,
    signals: Arc<Signals>,
) -> Option<TestApp> {
    let (url, guard) = fresh_database(db).await?;
    Some(start(&url, overrides, guard, Some((clouds, signals))).await)
}

impl TestApp {
    /// A second replica: another server with its own pool on this app's database.
    pub async fn replica(&self, overrides: &[(&str, &str)]) -> TestApp {
        start(
            self.settings.database_url.as_str(),
            overrides,
            DbGuard::Shared,
            None,
        )
        .await
    }

    /// A second replica with its own clouds.
    pub async fn replica_with_clouds(&self, clouds: Clouds) -> TestApp {
        let signals = Arc::new(Signals::new());
        start(
            self.settings.database_url.as_str(),
            &[],
            DbGuard::Shared,
            Some((clouds, signals)),
        )
        .await
    }
}

async fn start(
    url: &str,
    overrides: &[(&str, &str)],
    guard: DbGuard,
    clouds: Option<(Clouds, Arc<Signals>)>,
) -> TestApp {
    let settings = test_settings(url, overrides);
    let app = match clouds {
        Some((clouds, signals)) => Application::build_with(settings.clone(), clouds, signals).await,
        None => Application::build(settings.clone()).await,
    }
    .expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let server = tokio::spawn(async move {
        app.run_until(std::future::pending())
            .await
            .expect("server runs");
    });
    TestApp {
        address,
        client: reqwest::Client::new(),
        store,
        settings,
        server,
        _db: guard,
    }
}

pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, &[]).await
}

/// Runs each test body once on SQLite and once on PostgreSQL. Without
/// `TEST_DATABASE_URL` the PostgreSQL variant is ignored (and counted so by `cargo
/// test`); in CI it runs and fails (see build.rs).
#[macro_export]
macro_rules! on_both_databases {
    ($(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_mut)]
            async fn run(mut $app: $crate::helpers::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::helpers::spawn_app($crate::helpers::Db::Sqlite).await.unwrap()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(postgres_tests), ignore = "needs PostgreSQL: set TEST_DATABASE_URL")]
            async fn postgres() {
                let app = $crate::helpers::spawn_app($crate::helpers::Db::Postgres).await;
                run(app.expect("TEST_DATABASE_URL is set")).await
            }
        }
    )*};
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends a request, with a JSON body and a bearer token if given; returns the
    /// status and the parsed JSON body (`Value::Null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON: {text:?}"))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), None).await
    }

    /// Registers `email` (password `testpass123`) and returns a login token.
    pub async fn user(&self, email: &str) -> String {
        let creds = json!({"email": email, "password": "testpass123"});
        let (status, body) = self.post("/api/auth/register", None, creds.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self.post("/api/auth/login", None, creds).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Registers a mock instance for the token's user.
    pub async fn mock_instance(&self, token: &str, instance_id: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/instances/",
                Some(token),
                json!({"instance_id": instance_id, "instance_type": "t2.micro", "region": "mock", "is_mock": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["instance"].clone()
    }

    /// Internal id of an instance, by its user-facing id.
    pub async fn instance_uuid(&self, instance_id: &str) -> uuid::Uuid {
        self.store
            .instance_by_instance_id(instance_id)
            .await
            .unwrap()
            .expect("instance exists")
            .id
    }
}

/// An error body.
pub fn error(msg: &str) -> Value {
    json!({ "error": msg })
}

/// Takes the UUID at `pointer` out of `body`, checks that it is one, and leaves
/// `"<uuid>"` in its place so the rest of the body can be compared exactly.
pub fn take_uuid(body: &mut Value, pointer: &str) -> uuid::Uuid {
    let slot = body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in body"));
    let text = slot
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string: {slot}"))
        .to_owned();
    let id = uuid::Uuid::parse_str(&text)
        .unwrap_or_else(|e| panic!("{pointer} = {text:?} is not a UUID: {e}"));
    assert_eq!(
        id.hyphenated().to_string(),
        text,
        "{pointer} is not in hyphenated lower-case form"
    );
    *slot = json!("<uuid>");
    id
}

/// Takes the timestamp at `pointer` out of `body`, checks that it is RFC 3339 in UTC
/// ending in `Z`, and leaves `"<timestamp>"` in its place.
pub fn take_time(body: &mut Value, pointer: &str) -> chrono::DateTime<chrono::Utc> {
    let slot = body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in body"));
    let text = slot
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string: {slot}"))
        .to_owned();
    assert!(
        text.ends_with('Z'),
        "{pointer} = {text:?} does not end in Z"
    );
    let time = chrono::DateTime::parse_from_rfc3339(&text)
        .unwrap_or_else(|e| panic!("{pointer} = {text:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc);
    *slot = json!("<timestamp>");
    time
}

/// Asserts that `time` lies within `seconds` of now.
pub fn assert_recent(time: chrono::DateTime<chrono::Utc>, seconds: i64) {
    let age = chrono::Utc::now() - time;
    assert!(
        age.num_seconds().abs() <= seconds,
        "{time} is not within {seconds} s of now (age {age})"
    );
}

/// Sends a prepared request and returns status, headers and the JSON body; panics if
/// the body is not JSON.
pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("request sent");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.expect("body read");
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}"));
    (status, headers, json)
}

impl TestApp {
    /// A request builder for `path`, for tests that set headers or bodies themselves.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// The id of the token's user, as `/api/auth/me` reports it.
    pub async fn user_id(&self, token: &str) -> uuid::Uuid {
        let (status, body) = self.get("/api/auth/me", token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["user_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("user_id")
    }

    /// Posts a simulation and expects it to be created.
    pub async fn simulate(&self, token: &str, body: Value) -> Value {
        let (status, resp) = self.post("/api/metrics/simulate", Some(token), body).await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
        resp
    }
}

/// One sample of a Prometheus exposition: its full name (`_bucket`, `_sum` and
/// `_count` included), labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Parses a text exposition (format 0.0.4) strictly: a malformed line, a family
/// without samples or a sample outside its family fails the test.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    use prom_text_format_parser::{Scrape, Type, ValueType};
    let scrape = Scrape::parse(text)
        .unwrap_or_else(|e| panic!("the exposition does not parse: {e:?}\n{text}"));
    let mut samples = Vec::new();
    for metric in scrape.metrics {
        for sample in metric.samples {
            let suffix = match (metric.kind, sample.value.value_type) {
                (Type::Histogram, ValueType::Sample) => "_bucket",
                (_, ValueType::Sum) => "_sum",
                (_, ValueType::Count) => "_count",
                _ => "",
            };
            samples.push(Sample {
                name: format!("{}{suffix}", metric.name),
                labels: sample
                    .labels
                    .iter()
                    .map(|l| (l.key.clone(), l.value.clone()))
                    .collect(),
                value: sample.value.value.as_f64(),
            });
        }
    }
    samples
}

/// The value of the sample `name{labels}`, if exported.
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: std::collections::BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .map(|s| s.value)
}
