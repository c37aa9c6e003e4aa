//! Webhook delivery benchmark: throughput of the delivery worker to a local
//! receiver, and the latency from an event's commit to its receipt.
//!
//! ```text
//! cargo run --release --bin webhook-bench -- [--events 5000] [--rate 200] [--seconds 10] \
//!     [--database-url postgres://postgres@127.0.0.1:5432/test?sslmode=disable]
//! ```
//!
//! Without `--database-url` it runs on a temporary SQLite file; with a PostgreSQL
//! URL it creates a fresh database beside the one named and drops it at the end.
//!
//! 1. Throughput: `--events` events are queued, then delivery ticks run until all
//!    are delivered; events per second.
//! 2. Latency: the worker loop runs as in the service (polling every 250 ms) while
//!    events are queued at `--rate` per second for `--seconds`; each carries its
//!    commit time and the receiver notes when it arrives: p50, p99, max.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use autoscaler::jobs::spawn_webhook_delivery;
use autoscaler::model::NewWebhook;
use autoscaler::signals::Signals;
use autoscaler::store::{self, PoolSettings};
use autoscaler::testing::ScratchDatabase;
use autoscaler::webhooks::{self, Deliverer, run_delivery_tick};

#[derive(Debug)]
struct Args {
    events: usize,
    rate: usize,
    seconds: u64,
    database_url: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        events: 5000,
        rate: 200,
        seconds: 10,
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => args.events = value()?.parse()?,
            "--rate" => args.rate = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--database-url" => args.database_url = Some(value()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// Microseconds since the Unix epoch, now.
fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let db = match &args.database_url {
        None => Some(ScratchDatabase::sqlite("webhook-bench")?),
        Some(url) if url.starts_with("sqlite:") => None,
        Some(url) => Some(
            ScratchDatabase::postgres(url, "webhook_bench")
                .await
                .with_context(|| format!("creating a database beside {url}"))?,
        ),
    };
    let url = match (&db, &args.database_url) {
        (Some(db), _) => db.url().to_owned(),
        (None, url) => url.clone().unwrap_or_default(),
    };
    let result = run(&args, &url).await;
    if let Some(db) = db {
        db.remove().await?;
    }
    result
}

async fn run(args: &Args, url: &str) -> anyhow::Result<()> {
    let store = store::connect(
        &store::DatabaseUrl::parse(url).map_err(anyhow::Error::msg)?,
        &PoolSettings {
            max_connections: 16,
            ..PoolSettings::default()
        },
    )
    .await?;

    // The receiver: 200 to everything, noting each receipt's delay after the
    // commit time the body carries.
    let delays: Arc<Mutex<Vec<i64>>> = Arc::default();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://127.0.0.1:{}/hook", listener.local_addr()?.port());
    let (d, r) = (delays.clone(), received.clone());
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let (d, r) = (d.clone(), r.clone());
            async move {
                let at = now_us();
                r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                    && let Some(sent) = v["data"]["queued_us"].as_i64()
                {
                    d.lock().unwrap().push(at - sent);
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let email = format!(
        "webhook-bench-{}@example.com",
        uuid::Uuid::new_v4().simple()
    );
    let user = store.create_user(&email, "not-a-login").await?;
    let webhook = store
        .create_webhook(
            &NewWebhook {
                user_id: user.id,
                url: hook,
                events: vec!["scale_up".into()],
                description: None,
                secret: webhooks::new_secret().into(),
            },
            10,
        )
        .await?
        .context("webhook created")?;
    let signals = Arc::new(Signals::new());
    let deliverer = Deliverer::new(true, signals.clone());
    println!(
        "webhook delivery on {}: {} cores",
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 1. Throughput.
    let now = Utc::now();
    for _ in 0..args.events {
        store
            .queue_webhook_event(webhook.id, "ping", r#"{"type":"ping","data":{}}"#, now)
            .await?;
    }
    let started = Instant::now();
    let mut delivered = 0;
    while delivered < args.events {
        let report = run_delivery_tick(store.as_ref(), &deliverer, Utc::now()).await?;
        anyhow::ensure!(
            report.retrying + report.failed == 0,
            "failed deliveries: {report:?}"
        );
        delivered += report.delivered;
    }
    let took = started.elapsed();
    println!(
        "throughput: {} events delivered in {:.2} s = {:.0} events/s",
        delivered,
        took.as_secs_f64(),
        delivered as f64 / took.as_secs_f64()
    );

    // 2. Latency, with the worker loop as the service runs it.
    let cancel = CancellationToken::new();
    let worker = spawn_webhook_delivery(store.clone(), deliverer, signals, &cancel);
    let before = received.load(std::sync::atomic::Ordering::Relaxed);
    let total = args.rate * args.seconds as usize;
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut tick = tokio::time::interval(gap);
    for _ in 0..total {
        tick.tick().await;
        let payload = format!(r#"{{"type":"ping","data":{{"queued_us":{}}}}}"#, now_us());
        store
            .queue_webhook_event(webhook.id, "ping", &payload, Utc::now())
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(std::sync::atomic::Ordering::Relaxed) < before + total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "events still undelivered after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    let _ = worker.await;
    let mut delays = delays.lock().unwrap().clone();
    delays.sort_unstable();
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "latency (commit -> receipt) over {} events at {}/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        delays.len(),
        args.rate,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    store.delete_user(user.id).await?;
    Ok(())
}
