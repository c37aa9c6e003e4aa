//! Faults: the database going away and coming back, SIGTERM under load, kill -9
//! mid-write, start without a database, and overload. These run the real server
//! (in process or as the built binary) and PostgreSQL where the fault is about it.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use autoscaler::app::Application;
use autoscaler::jobs::run_scaling_tick;
use autoscaler::testing::TestReads;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use helpers::test_settings;
use process::{free_port, signal, start_binary, wait_exit, wait_healthy};

/// A TCP proxy that can cut every connection and refuse new ones (an outage), or
/// hold every byte in flight while keeping connections open (a hung database).
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Forwards bytes one way, holding them while `frozen` is set.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let frozen = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, frozen2, links2) = (up.clone(), frozen.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let frozen = frozen2.clone();
                let link = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pump(client_read, server_write, frozen.clone()),
                            pump(server_read, client_write, frozen),
                        );
                    }
                });
                links2.lock().await.push(link);
            }
        });
        Proxy {
            addr,
            up,
            frozen,
            links,
        }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

/// The app in process on a fresh PostgreSQL database that it reaches through a
/// [`Proxy`], and a client for it. `None` without `TEST_DATABASE_URL`.
struct ProxiedApp {
    proxy: Proxy,
    base: String,
    store: Arc<dyn autoscaler::store::Store>,
    settings: autoscaler::config::Settings,
    client: reqwest::Client,
    server: JoinHandle<anyhow::Result<()>>,
    _db: helpers::DbGuard,
}

impl ProxiedApp {
    async fn start(overrides: &[(&str, &str)]) -> Option<ProxiedApp> {
        let (direct_url, db) = helpers::fresh_database(helpers::Db::Postgres).await?;
        // The same URL (user, database, query) with the proxy in place of the server.
        let mut url = reqwest::Url::parse(&direct_url).unwrap();
        let server = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let server = tokio::net::lookup_host(server)
            .await
            .unwrap()
            .next()
            .unwrap();
        let proxy = Proxy::start(server).await;
        url.set_ip_host(proxy.addr.ip()).unwrap();
        url.set_port(Some(proxy.addr.port())).unwrap();
        let url = url.to_string();
        let settings = test_settings(&url, overrides);
        let app = Application::build(settings.clone()).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let store = app.store();
        let server = tokio::spawn(app.run_until(std::future::pending()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Some(ProxiedApp {
            proxy,
            base,
            store,
            settings,
            client,
            server,
            _db: db,
        })
    }
}

impl Drop for ProxiedApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn call(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// GETs `url` with the bearer `auth` every 250 ms until `done` accepts the answer,
/// and returns its body; fails when that hasn't happened within `within`.
async fn get_until(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    within: Duration,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = call(client.get(url).header("Authorization", auth)).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not as awaited after {within:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Registers the mock instance `instance_id` for the bearer token `auth`.
async fn register_mock(client: &reqwest::Client, base: &str, auth: &str, instance_id: &str) {
    let body = json!({"instance_id": instance_id, "instance_type": "t2.micro", "region": "mock", "is_mock": true});
    let (status, body) = call(
        client
            .post(format!("{base}/api/instances/"))
            .header("Authorization", auth)
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn login(client: &reqwest::Client, base: &str, email: &str) -> String {
    let creds = json!({"email": email, "password": "testpass123"});
    let (status, _) = call(
        client
            .post(format!("{base}/api/auth/register"))
            .json(&creds),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(client.post(format!("{base}/api/auth/login")).json(&creds)).await;
    assert_eq!(status, StatusCode::OK);
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn a_database_outage_answers_503_fast_and_recovers_without_losing_writes() {
    let Some(app) = ProxiedApp::start(&[("DB_ACQUIRE_TIMEOUT_SECONDS", "2")]).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    let ProxiedApp {
        proxy,
        base,
        store,
        settings,
        client,
        ..
    } = &app;

    let token = login(client, base, "outage@example.com").await;
    let auth = format!("Bearer {token}");
    register_mock(client, base, &auth, "mock-outage").await;
    let sim = json!({"instance_id": "mock-outage", "cpu_utilization": 50.0, "duration_minutes": 5, "interval_seconds": 30});
    let (status, _) = call(
        client
            .post(format!("{base}/api/metrics/simulate"))
            .header("Authorization", &auth)
            .json(&sim),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    proxy.cut().await;
    for path in [
        "/api/auth/me",
        "/api/instances/",
        "/api/metrics/mock-outage",
    ] {
        let started = Instant::now();
        let (status, body) = call(
            client
                .get(format!("{base}{path}"))
                .header("Authorization", &auth),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(body["error"].is_string(), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    let tick = run_scaling_tick(
        store.as_ref(),
        &settings.policy,
        Duration::from_secs(15),
        chrono::Utc::now(),
    )
    .await;
    assert!(
        tick.is_err(),
        "a tick during the outage reports its failure"
    );

    proxy.restore();
    let url = format!("{base}/api/metrics/mock-outage");
    let body = get_until(client, &url, &auth, Duration::from_secs(20), |status, _| {
        status == StatusCode::OK
    })
    .await;
    assert_eq!(
        body["metrics"].as_array().unwrap().len(),
        10,
        "acknowledged writes survive"
    );
    let (status, _) = call(
        client
            .post(format!("{base}/api/metrics/simulate"))
            .header("Authorization", &auth)
            .json(&sim),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "writes work again after recovery"
    );
    assert!(
        run_scaling_tick(
            store.as_ref(),
            &settings.policy,
            Duration::from_secs(15),
            chrono::Utc::now()
        )
        .await
        .is_ok(),
        "jobs work again after recovery"
    );
}

/// A database that stops answering without closing its connections: requests are
/// abandoned with a 503 when REQUEST_TIMEOUT_SECONDS passes, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn a_hung_database_makes_requests_time_out_with_503() {
    let overrides = [
        ("REQUEST_TIMEOUT_SECONDS", "1"),
        ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
    ];
    let Some(app) = ProxiedApp::start(&overrides).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    let ProxiedApp {
        proxy,
        base,
        client,
        ..
    } = &app;
    let token = login(client, base, "hung@example.com").await;
    let auth = format!("Bearer {token}");

    proxy.freeze(true);
    let started = Instant::now();
    let (status, body) = call(
        client
            .get(format!("{base}/api/auth/me"))
            .header("Authorization", &auth),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "The request took too long and was abandoned; please retry"})
        )
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );

    proxy.freeze(false);
    let url = format!("{base}/api/auth/me");
    let body = get_until(client, &url, &auth, Duration::from_secs(15), |status, _| {
        status == StatusCode::OK
    })
    .await;
    assert_eq!(body["email"], "hung@example.com");
}

/// Runs `case` on a fresh database of each kind (PostgreSQL ignored without
/// `TEST_DATABASE_URL`).
macro_rules! on_both_databases {
    ($($case:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let (url, _guard) = helpers::fresh_database(helpers::Db::Sqlite).await.unwrap();
            $case(&url).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(not(postgres_tests), ignore = "needs PostgreSQL: set TEST_DATABASE_URL")]
        async fn $postgres() {
            let (url, _guard) = helpers::fresh_database(helpers::Db::Postgres)
                .await
                .expect("TEST_DATABASE_URL is set");
            $case(&url).await;
        }
    )*};
}

on_both_databases! {
    sigterm_lets_in_flight_requests_finish_and_exits_zero =>
        sigterm_lets_in_flight_requests_finish_and_exits_zero_on_sqlite,
        sigterm_lets_in_flight_requests_finish_and_exits_zero_on_postgres;
    kill_9_during_simulations_leaves_whole_batches_and_monitoring_resumes =>
        kill_9_during_simulations_leaves_whole_batches_and_monitoring_resumes_on_sqlite,
        kill_9_during_simulations_leaves_whole_batches_and_monitoring_resumes_on_postgres;
}

async fn sigterm_lets_in_flight_requests_finish_and_exits_zero(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start_binary(dir.path(), database_url, port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, "term@example.com").await;
    let auth = format!("Bearer {token}");
    register_mock(&client, &base, &auth, "mock-term").await;

    // Twelve open connections first, so the requests below only have to be written
    // to them: a request still being connected when SIGTERM arrives was never in
    // flight, and a server that is shutting down rightly refuses it.
    let warm_up = (0..12).map(|_| client.get(format!("{base}/api/")).send());
    for answer in futures::future::join_all(warm_up).await {
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }

    // Logins (an argon2 verification each) and 10,000-point simulations: several
    // are still in flight when SIGTERM arrives.
    let creds = json!({"email": "term@example.com", "password": "testpass123"});
    let sim = json!({"instance_id": "mock-term", "cpu_utilization": 50.0, "duration_minutes": 1000, "interval_seconds": 6});
    let answered_before = received(&client, &base).await;
    let in_flight: Vec<_> = (0..12)
        .map(|i| {
            let req = if i % 2 == 0 {
                client.post(format!("{base}/api/auth/login")).json(&creds)
            } else {
                client
                    .post(format!("{base}/api/metrics/simulate"))
                    .header("Authorization", &auth)
                    .json(&sim)
            };
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        })
        .collect();
    // SIGTERM only once the server has received all twelve (each is in flight or
    // answered): a request still on its way when the listener closes was never in
    // flight, and on a loaded machine that can take longer than any fixed wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received(&client, &base).await - answered_before < 12.0 {
        assert!(
            Instant::now() < deadline,
            "the server never held all 12 requests"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "TERM");
    for (i, request) in in_flight.into_iter().enumerate() {
        let expected = if i % 2 == 0 {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        assert_eq!(
            request.await.unwrap().expect("answered, not dropped"),
            expected
        );
    }
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");

    let store = autoscaler::store::connect(
        &autoscaler::store::DatabaseUrl::parse(database_url).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let instance = store
        .instance_by_instance_id("mock-term")
        .await
        .unwrap()
        .unwrap();
    let stored = store
        .recent_metrics(instance.id, 1_000_000)
        .await
        .unwrap()
        .len();
    assert_eq!(
        stored,
        6 * 10_000,
        "every acknowledged simulation was stored"
    );
}

/// Logins and simulations the server has received: those in flight (less the scrape
/// that asks) and those answered.
async fn received(client: &reqwest::Client, base: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .unwrap();
    let samples = helpers::parse_exposition(&text);
    let value = |name, labels: &[(&str, &str)]| helpers::sample_value(&samples, name, labels);
    let answered = |route, status| {
        value(
            "autoscaler_http_requests_total",
            &[("method", "POST"), ("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    let in_flight = value("autoscaler_http_requests_in_flight", &[]).expect("in-flight gauge");
    in_flight - 1.0 + answered("/api/auth/login", "200") + answered("/api/metrics/simulate", "201")
}

async fn kill_9_during_simulations_leaves_whole_batches_and_monitoring_resumes(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fast_jobs = [
        ("METRICS_INTERVAL_SECONDS", "1"),
        ("SCALING_INTERVAL_SECONDS", "1"),
    ];
    let mut child = start_binary(dir.path(), database_url, port, &fast_jobs);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, "crash@example.com").await;
    let auth = format!("Bearer {token}");
    register_mock(&client, &base, &auth, "mock-crash").await;
    call(
        client
            .patch(format!("{base}/api/instances/mock-crash/monitor/start"))
            .header("Authorization", &auth),
    )
    .await;

    // Simulations of 2,000 points back to back, then kill -9 in the middle of them.
    const POINTS: usize = 2000;
    let sim = json!({"instance_id": "mock-crash", "cpu_utilization": 77.7, "duration_minutes": 1000, "interval_seconds": 30});
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (client, base, auth, acked) =
            (client.clone(), base.clone(), auth.clone(), acked.clone());
        tokio::spawn(async move {
            while let Ok(resp) = client
                .post(format!("{base}/api/metrics/simulate"))
                .header("Authorization", &auth)
                .json(&sim)
                .send()
                .await
            {
                if resp.status() == StatusCode::CREATED {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
            acked.load(Ordering::SeqCst)
        })
    };
    // Kill once two simulations are acknowledged: the next is then being written.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no simulation was acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "KILL");
    let _ = wait_exit(&mut child, Duration::from_secs(5)).await;
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged >= 1,
        "some simulations completed before the kill"
    );

    let store = autoscaler::store::connect(
        &autoscaler::store::DatabaseUrl::parse(database_url).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let instance = store
        .instance_by_instance_id("mock-crash")
        .await
        .unwrap()
        .unwrap();
    assert!(instance.is_monitoring);
    let metrics = store.recent_metrics(instance.id, 1_000_000).await.unwrap();
    let simulated = metrics.iter().filter(|m| m.cpu_utilization == 77.7).count();
    assert_eq!(
        simulated % POINTS,
        0,
        "{simulated} simulated rows: a partial batch was written"
    );
    assert!(
        simulated / POINTS >= acknowledged,
        "every acknowledged simulation is stored"
    );
    eprintln!(
        "{acknowledged} simulations acknowledged, {} stored",
        simulated / POINTS
    );
    drop(store);

    // A restart picks monitoring up where it was.
    let restarted_at = chrono::Utc::now();
    let mut child = start_binary(dir.path(), database_url, port, &fast_jobs);
    wait_healthy(&base).await;
    let url = format!("{base}/api/metrics/mock-crash?limit=1");
    get_until(&client, &url, &auth, Duration::from_secs(15), |_, body| {
        let newest = &body["metrics"][0];
        newest["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > restarted_at && newest["cpu_utilization"] != 77.7)
    })
    .await;
    signal(&child, "TERM");
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_a_database_retries_then_exits_naming_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = start_binary(
        dir.path(),
        "postgres://postgres@127.0.0.1:1/nothing",
        free_port(),
        &[("DB_STARTUP_TIMEOUT_SECONDS", "2")],
    );
    let status = wait_exit(&mut child, Duration::from_secs(20)).await;
    assert!(!status.success());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it retried before giving up"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_concurrency_limit_gets_fast_503s_on_sqlite() {
    a_burst_beyond_the_concurrency_limit_gets_fast_503s(helpers::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn a_burst_beyond_the_concurrency_limit_gets_fast_503s_on_postgres() {
    a_burst_beyond_the_concurrency_limit_gets_fast_503s(helpers::Db::Postgres).await;
}

async fn a_burst_beyond_the_concurrency_limit_gets_fast_503s(db: helpers::Db) {
    let Some(app) = helpers::spawn_app_with(db, &[("MAX_CONCURRENT_REQUESTS", "1")]).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    app.user("burst@example.com").await;
    let creds = json!({"email": "burst@example.com", "password": "testpass123"});
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let req = app.client.post(app.url("/api/auth/login")).json(&creds);
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                let retry_after = resp.headers().contains_key("retry-after");
                (
                    resp.status(),
                    retry_after,
                    resp.json::<Value>().await.unwrap(),
                )
            })
        })
        .collect();
    let mut rejected = 0;
    for r in requests {
        let (status, retry_after, body) = r.await.unwrap();
        match status {
            StatusCode::OK => assert!(body["token"].is_string()),
            StatusCode::SERVICE_UNAVAILABLE => {
                rejected += 1;
                assert!(retry_after);
                assert_eq!(
                    body,
                    json!({"error": "The server is busy; please retry shortly"})
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        rejected >= 1,
        "with one slot, concurrent logins must be shed"
    );
}

/// Readiness follows the database through an outage and a hang (answering 503
/// within about a second either way) while liveness stays 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn readiness_reports_a_lost_or_hung_database_and_liveness_does_not() {
    let Some(app) = ProxiedApp::start(&[("DB_ACQUIRE_TIMEOUT_SECONDS", "5")]).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    let ProxiedApp {
        proxy,
        base,
        client,
        ..
    } = &app;
    let probe = |path: &str| call(client.get(format!("{base}/api/health/{path}")));
    assert_eq!(
        probe("ready").await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
    let unavailable = (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "database unavailable"}),
    );

    for fault in ["cut", "freeze"] {
        match fault {
            "cut" => proxy.cut().await,
            _ => proxy.freeze(true),
        }
        let started = Instant::now();
        let resp = client
            .get(format!("{base}/api/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["retry-after"],
            "1",
            "{fault}: a 503 says when to retry"
        );
        let answer = (resp.status(), resp.json::<Value>().await.unwrap());
        assert_eq!(answer, unavailable, "{fault}");
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(2500),
            "{fault}: answered after {waited:?}"
        );
        assert_eq!(
            probe("live").await,
            (StatusCode::OK, json!({"status": "ok"})),
            "{fault}"
        );

        match fault {
            "cut" => proxy.restore(),
            _ => proxy.freeze(false),
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while probe("ready").await.0 != StatusCode::OK {
            assert!(Instant::now() < deadline, "{fault}: not ready again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

on_both_databases! {
    kill_9_mid_delivery_leaves_the_committed_event_to_be_delivered_after_restart =>
        kill_9_mid_delivery_leaves_the_committed_event_to_be_delivered_after_restart_on_sqlite,
        kill_9_mid_delivery_leaves_the_committed_event_to_be_delivered_after_restart_on_postgres;
}

/// A webhook receiver that holds the first request unanswered (the server is killed
/// meanwhile) and answers 200 to later ones; it notes each request's `webhook-id`
/// and answer.
async fn stalling_receiver() -> (
    String,
    Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    Arc<tokio::sync::Notify>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let got: Arc<std::sync::Mutex<Vec<(String, u16)>>> = Arc::default();
    let first = Arc::new(tokio::sync::Notify::new());
    let (g, f) = (got.clone(), first.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (g, f) = (g.clone(), f.clone());
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                let stall = g.lock().unwrap().is_empty();
                g.lock().unwrap().push((id, if stall { 0 } else { 200 }));
                if stall {
                    f.notify_one();
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got, first)
}

/// Makes the leased events due now, as if the dead server's lease had run out.
async fn expire_leases(database_url: &str) {
    use sqlx::Connection;
    if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query("UPDATE webhook_events SET next_attempt_at = 0 WHERE status = 'pending'")
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query(
            "UPDATE webhook_events SET next_attempt_at = now() - interval '1 second'
             WHERE status = 'pending'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn kill_9_mid_delivery_leaves_the_committed_event_to_be_delivered_after_restart(
    database_url: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let settings = [
        ("METRICS_INTERVAL_SECONDS", "1"),
        ("SCALING_INTERVAL_SECONDS", "1"),
        ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true"),
    ];
    let mut child = start_binary(dir.path(), database_url, port, &settings);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    let client = reqwest::Client::new();
    let token = login(&client, &base, "outbox@example.com").await;
    let auth = format!("Bearer {token}");
    let (hook, got, first) = stalling_receiver().await;
    let (status, body) = call(
        client
            .post(format!("{base}/api/webhooks"))
            .header("Authorization", &auth)
            .json(&json!({"url": hook, "events": ["scale_up"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let webhook = body["webhook"]["id"].as_str().unwrap().to_owned();
    register_mock(&client, &base, &auth, "mock-outbox").await;
    call(
        client
            .patch(format!("{base}/api/instances/mock-outbox/monitor/start"))
            .header("Authorization", &auth),
    )
    .await;
    let sim = json!({"instance_id": "mock-outbox", "cpu_utilization": 97.0, "duration_minutes": 10, "interval_seconds": 30});
    let (status, _) = call(
        client
            .post(format!("{base}/api/metrics/simulate"))
            .header("Authorization", &auth)
            .json(&sim),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // The decision is committed and its event on the wire: kill -9 now.
    tokio::time::timeout(Duration::from_secs(15), first.notified())
        .await
        .expect("the first delivery attempt arrives");
    signal(&child, "KILL");
    let _ = wait_exit(&mut child, Duration::from_secs(5)).await;
    let store = autoscaler::store::connect(
        &autoscaler::store::DatabaseUrl::parse(database_url).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let id: uuid::Uuid = webhook.parse().unwrap();
    let events = store.webhook_deliveries(id, 10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].status.as_str(), events[0].attempts),
        ("pending", 1)
    );
    drop(store);
    expire_leases(database_url).await;

    let mut child = start_binary(dir.path(), database_url, port, &settings);
    wait_healthy(&base).await;
    let url = format!("{base}/api/webhooks/{webhook}/deliveries");
    let body = get_until(&client, &url, &auth, Duration::from_secs(15), |_, body| {
        body["deliveries"][0]["status"] == "delivered"
    })
    .await;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["deliveries"][0]["attempts"], 2);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, got[1].0, "the same webhook-id on the retry");
    assert_eq!(got[1].1, 200);
    signal(&child, "TERM");
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
}
