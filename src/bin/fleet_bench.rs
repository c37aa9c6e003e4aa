//! Fleet benchmark: seeds a fleet of monitored mock instances, then times the
//! scaling and collection ticks the background jobs run, on SQLite or PostgreSQL.
//!
//! ```text
//! cargo run --release --bin fleet-bench -- --instances 10000 --samples 10 --ticks 5 \
//!     [--database-url postgres://postgres@127.0.0.1:5432/test] [--replicas 2] [--keep]
//! ```
//!
//! Without `--database-url` it runs on a temporary SQLite file. On PostgreSQL it
//! creates a fresh database beside the one named (dropped at the end unless
//! `--keep`), or uses the named one if it may not create databases and it is empty.
//! For a local server add `?sslmode=disable`: over TLS, sqlx 0.9.0 stalls ~40 ms on
//! every large statement (see BENCHMARKS.md, which also has the figures).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use rand::RngExt;
use uuid::Uuid;

use autoscaler::collect::mock::{self, MockSource};
use autoscaler::collect::{CollectTarget, SourceKind, Sources};
use autoscaler::jobs::{TickReport, run_collection_tick, run_scaling_tick};
use autoscaler::model::{
    DecisionRecord, DeliveryAttempt, DueEvent, Instance, Metric, NewMetric, NewWebhook, User,
    Webhook, WebhookDelivery,
};
use autoscaler::scaling::record::ScalingWrites;
use autoscaler::scaling::{Policy, PolicyPatch, Sample};
use autoscaler::store::{
    Backend, CollectionStatus, Deletion, InstanceCounts, LoginFailures, NewInstance, Owned, Page,
    PageRequest, PoolConnections, PoolSettings, PostgresStore, ScalingCandidate, SqliteStore,
    Store, StoreResult,
};

/// The service's default intervals (METRICS_INTERVAL_SECONDS, SCALING_INTERVAL_SECONDS).
const SCALING_INTERVAL: Duration = Duration::from_secs(15);
const COLLECTION_INTERVAL: Duration = Duration::from_secs(30);
/// Metrics per `insert_metrics` call while seeding: the jobs' own batch size, so
/// seeding leaves no larger allocations behind than the ticks make.
const SEED_CHUNK: usize = autoscaler::jobs::BATCH_SIZE as usize;
/// One instance in this many runs hot (CPU ~95 %), so the first tick scales it up
/// and the level-change path is exercised too.
const HOT_EVERY: usize = 100;

const USAGE: &str = "\
usage: fleet-bench [--instances N] [--samples S] [--ticks T] [--database-url URL]
                   [--replicas 1|2] [--own-policies] [--keep]

  --instances N       monitored mock instances to seed (default 10000)
  --samples S         samples per instance in the scaling window (default 10)
  --ticks T           scaling ticks and collection ticks to time (default 5)
  --database-url URL  postgres://... or sqlite:... (default: a temporary SQLite file);
                      on PostgreSQL a fresh database is created beside the one named
  --replicas R        1, or 2 on PostgreSQL: two stores (two pools) run each tick
                      concurrently; checks they share it without duplicates
  --own-policies      give every other instance a policy of its own (other thresholds
                      and cooldown), which each claim hands to the engine
  --keep              keep the database afterwards (for EXPLAIN ANALYZE)";

#[derive(Debug)]
struct Args {
    instances: usize,
    samples: usize,
    ticks: usize,
    database_url: Option<String>,
    replicas: usize,
    own_policies: bool,
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        instances: 10_000,
        samples: 10,
        ticks: 5,
        database_url: None,
        replicas: 1,
        own_policies: false,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| -> anyhow::Result<usize> {
            v.replace('_', "")
                .parse()
                .with_context(|| format!("{name} must be a whole number (got {v:?})"))
        };
        match flag.as_str() {
            "--instances" => args.instances = number(&flag, value(&flag)?)?,
            "--samples" => args.samples = number(&flag, value(&flag)?)?,
            "--ticks" => args.ticks = number(&flag, value(&flag)?)?,
            "--replicas" => args.replicas = number(&flag, value(&flag)?)?,
            "--database-url" => args.database_url = Some(value(&flag)?),
            "--keep" => args.keep = true,
            "--own-policies" => args.own_policies = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if args.instances == 0 || args.ticks == 0 {
        bail!("--instances and --ticks must be at least 1");
    }
    if !(1..=2).contains(&args.replicas) {
        bail!("--replicas must be 1 or 2");
    }
    Ok(args)
}

/// Resident memory of this process, from /proc/self/status: (VmRSS, VmHWM) in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------
// A store that times the calls the ticks make.

/// The store calls a tick makes, timed separately.
#[derive(Debug, Clone, Copy)]
enum Op {
    ClaimScaling,
    Windows,
    ApplyScaling,
    ClaimCollection,
    RecordCollection,
}

const OPS: [(Op, &str); 5] = [
    (Op::ClaimScaling, "claim_scaling"),
    (Op::Windows, "windows"),
    (Op::ApplyScaling, "apply_scaling"),
    (Op::ClaimCollection, "claim_collection"),
    (Op::RecordCollection, "record_collection"),
];

/// Calls and total time per `Op`.
type Stats = [(u32, Duration); 5];

/// Forwards to `inner`, adding up the time spent in each hot call and noting
/// which instances its claims handed out.
struct TimedStore {
    inner: Arc<dyn Store>,
    stats: Mutex<Stats>,
    claimed: Mutex<Vec<Uuid>>,
}

impl TimedStore {
    fn new(inner: Arc<dyn Store>) -> Self {
        TimedStore {
            inner,
            stats: Mutex::new(Default::default()),
            claimed: Mutex::new(Vec::new()),
        }
    }

    fn note_claimed(&self, ids: impl Iterator<Item = Uuid>) {
        self.claimed.lock().expect("claimed lock").extend(ids);
    }

    /// The instances claimed since the last call, reset.
    fn take_claimed(&self) -> Vec<Uuid> {
        std::mem::take(&mut *self.claimed.lock().expect("claimed lock"))
    }

    async fn timed<T>(&self, op: Op, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        let mut stats = self.stats.lock().expect("stats lock");
        stats[op as usize].0 += 1;
        stats[op as usize].1 += started.elapsed();
        out
    }

    /// The stats since the last call, reset.
    fn take(&self) -> Stats {
        std::mem::take(&mut *self.stats.lock().expect("stats lock"))
    }
}

#[async_trait]
impl Store for TimedStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn create_user(&self, email: &str, password_hash: &str) -> StoreResult<User> {
        self.inner.create_user(email, password_hash).await
    }
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.inner.user_by_email(email).await
    }
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        self.inner.user_by_id(id).await
    }
    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        self.inner.delete_user(id).await
    }
    async fn instance_counts(&self, user: Uuid) -> StoreResult<InstanceCounts> {
        self.inner.instance_counts(user).await
    }
    async fn create_instance(&self, new: &NewInstance) -> StoreResult<Instance> {
        self.inner.create_instance(new).await
    }
    async fn instances_of(&self, user: Uuid) -> StoreResult<Vec<Instance>> {
        self.inner.instances_of(user).await
    }
    async fn instance_by_instance_id(&self, instance_id: &str) -> StoreResult<Option<Instance>> {
        self.inner.instance_by_instance_id(instance_id).await
    }
    async fn set_monitoring(&self, id: Uuid, on: bool) -> StoreResult<bool> {
        self.inner.set_monitoring(id, on).await
    }
    async fn insert_metrics(&self, metrics: &[NewMetric]) -> StoreResult<Vec<Metric>> {
        self.inner.insert_metrics(metrics).await
    }
    async fn set_policy(
        &self,
        id: Uuid,
        policy: Option<&PolicyPatch>,
        reset_shadow: bool,
    ) -> StoreResult<bool> {
        self.inner.set_policy(id, policy, reset_shadow).await
    }
    fn history(
        &self,
        instance: Uuid,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> futures::stream::BoxStream<'_, StoreResult<Sample>> {
        self.inner.history(instance, since, until)
    }
    async fn delete_instance(&self, id: Uuid) -> StoreResult<Deletion> {
        self.inner.delete_instance(id).await
    }
    async fn replace_metrics(
        &self,
        instance: Uuid,
        metrics: &[NewMetric],
    ) -> StoreResult<Vec<Metric>> {
        self.inner.replace_metrics(instance, metrics).await
    }
    async fn metrics_page(&self, instance: Uuid, page: PageRequest) -> StoreResult<Page<Metric>> {
        self.inner.metrics_page(instance, page).await
    }
    async fn metrics_page_owned(
        &self,
        user: Uuid,
        instance_id: &str,
        page: PageRequest,
    ) -> StoreResult<Owned<Page<Metric>>> {
        self.inner.metrics_page_owned(user, instance_id, page).await
    }
    async fn decisions_page(
        &self,
        instance: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<DecisionRecord>> {
        self.inner.decisions_page(instance, page).await
    }
    async fn login_failures(&self, keys: &[String]) -> StoreResult<Vec<LoginFailures>> {
        self.inner.login_failures(keys).await
    }
    async fn record_login_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.inner
            .record_login_failure(keys, now, expired_before)
            .await
    }
    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        self.inner.clear_login_failures(key).await
    }
    async fn purge_login_failures(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.purge_login_failures(before).await
    }
    async fn claim_collection(&self, slot: i64, limit: i64) -> StoreResult<Vec<CollectTarget>> {
        let targets = self
            .timed(
                Op::ClaimCollection,
                self.inner.claim_collection(slot, limit),
            )
            .await?;
        self.note_claimed(targets.iter().map(|t| t.id));
        Ok(targets)
    }
    async fn record_collection(
        &self,
        metrics: &[NewMetric],
        statuses: &[CollectionStatus],
    ) -> StoreResult<()> {
        self.timed(
            Op::RecordCollection,
            self.inner.record_collection(metrics, statuses),
        )
        .await
    }
    async fn claim_scaling(&self, slot: i64, limit: i64) -> StoreResult<Vec<ScalingCandidate>> {
        let candidates = self
            .timed(Op::ClaimScaling, self.inner.claim_scaling(slot, limit))
            .await?;
        self.note_claimed(candidates.iter().map(|c| c.id));
        Ok(candidates)
    }
    async fn windows(
        &self,
        instances: &[Uuid],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Sample)>> {
        self.timed(Op::Windows, self.inner.windows(instances, since, until))
            .await
    }
    async fn write_scaling(&self, writes: &ScalingWrites) -> StoreResult<()> {
        self.timed(Op::ApplyScaling, self.inner.write_scaling(writes))
            .await
    }
    async fn purge(
        &self,
        metrics_before: DateTime<Utc>,
        decisions_before: DateTime<Utc>,
        batch: i64,
    ) -> StoreResult<u64> {
        self.inner
            .purge(metrics_before, decisions_before, batch)
            .await
    }

    // The series read (issue 14).
    async fn metric_series(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<autoscaler::store::SeriesBucket>> {
        self.inner
            .metric_series(instance, from, to, step_seconds)
            .await
    }
    async fn decisions_between(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<autoscaler::store::SeriesDecision>> {
        self.inner.decisions_between(instance, from, to).await
    }
    async fn level_at(&self, instance: Uuid, at: DateTime<Utc>) -> StoreResult<Option<i32>> {
        self.inner.level_at(instance, at).await
    }
    fn pool_connections(&self) -> PoolConnections {
        self.inner.pool_connections()
    }
    async fn monitored_instances(&self) -> StoreResult<i64> {
        self.inner.monitored_instances().await
    }

    // --- webhooks --- (not timed: the fleet ticks do not touch them)
    async fn create_webhook(&self, new: &NewWebhook, max: i64) -> StoreResult<Option<Webhook>> {
        self.inner.create_webhook(new, max).await
    }
    async fn webhooks_of(&self, user: Uuid) -> StoreResult<Vec<Webhook>> {
        self.inner.webhooks_of(user).await
    }
    async fn webhook_of(&self, user: Uuid, id: Uuid) -> StoreResult<Option<Webhook>> {
        self.inner.webhook_of(user, id).await
    }
    async fn delete_webhook(&self, user: Uuid, id: Uuid) -> StoreResult<bool> {
        self.inner.delete_webhook(user, id).await
    }
    async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        self.inner.webhook_deliveries(webhook, limit).await
    }
    async fn queue_webhook_event(
        &self,
        webhook: Uuid,
        event_type: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Uuid> {
        self.inner
            .queue_webhook_event(webhook, event_type, payload, now)
            .await
    }
    async fn claim_webhook_events(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueEvent>> {
        self.inner
            .claim_webhook_events(now, lease_until, limit)
            .await
    }
    async fn record_webhook_attempts(&self, attempts: &[DeliveryAttempt]) -> StoreResult<()> {
        self.inner.record_webhook_attempts(attempts).await
    }
}

/// `claim 12 ms ×11 · windows 80 ms ×10 · ...`, for the ops that were called.
fn breakdown(stats: &Stats) -> String {
    OPS.iter()
        .filter(|(op, _)| stats[*op as usize].0 > 0)
        .map(|(op, name)| {
            let (calls, total) = stats[*op as usize];
            format!("{name} {:.0} ms ×{calls}", ms(total))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

// ---------------------------------------------------------------------------
// The database: a temporary SQLite file, or a fresh PostgreSQL database.

/// Where the benchmark runs, and what to clean up afterwards.
enum Database {
    Sqlite {
        url: String,
        /// The temporary file to delete, if we made it.
        temp: Option<std::path::PathBuf>,
    },
    Postgres {
        url: String,
        /// `(admin url, name)` of the database we created, to drop.
        created: Option<(String, String)>,
    },
}

impl Database {
    async fn prepare(url: Option<&str>) -> anyhow::Result<Self> {
        match url {
            None => {
                let path = std::env::temp_dir().join(format!(
                    "fleet-bench-{}-{}.db",
                    std::process::id(),
                    Uuid::new_v4().simple()
                ));
                Ok(Database::Sqlite {
                    url: format!("sqlite://{}", path.display()),
                    temp: Some(path),
                })
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:")
                    .split('?')
                    .next()
                    .unwrap_or_default();
                if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
                    bail!("{path} exists: give a new SQLite file (or none for a temporary one)");
                }
                Ok(Database::Sqlite {
                    url: url.to_owned(),
                    temp: None,
                })
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                use sqlx::Connection;
                let name = format!("fleet_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
                let created = async {
                    let mut conn = sqlx::PgConnection::connect(url).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await
                }
                .await;
                match created {
                    Ok(()) => {
                        let (base, query) = match url.split_once('?') {
                            Some((b, q)) => (b, format!("?{q}")),
                            None => (url, String::new()),
                        };
                        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
                        Ok(Database::Postgres {
                            url: format!("{server}/{name}{query}"),
                            created: Some((url.to_owned(), name)),
                        })
                    }
                    Err(e) => {
                        eprintln!(
                            "note: cannot create a database ({e}); using the one named, which must be empty"
                        );
                        Ok(Database::Postgres {
                            url: url.to_owned(),
                            created: None,
                        })
                    }
                }
            }
            Some(other) => {
                bail!("--database-url must be postgres://... or sqlite:... (got {other:?})")
            }
        }
    }

    fn url(&self) -> &str {
        match self {
            Database::Sqlite { url, .. } | Database::Postgres { url, .. } => url,
        }
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        let pool = PoolSettings::default();
        Ok(match self {
            Database::Sqlite { url, .. } => Arc::new(SqliteStore::connect(url, &pool).await?),
            Database::Postgres { url, created } => {
                let store = PostgresStore::connect(url, &pool).await?;
                if created.is_none() {
                    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM instances")
                        .fetch_one(store.pool())
                        .await?;
                    if n > 0 {
                        bail!("the database at --database-url already holds {n} instances");
                    }
                }
                Arc::new(store)
            }
        })
    }

    /// On PostgreSQL, what autovacuum does to a live database after a bulk load:
    /// without statistics the planner guesses, and this server runs with
    /// autovacuum off. The ticks themselves then run without any vacuum (the worst
    /// case: as if autovacuum lagged behind).
    async fn settle(&self) -> anyhow::Result<()> {
        if let Database::Postgres { url, .. } = self {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
            conn.close().await?;
        }
        Ok(())
    }

    async fn clean_up(self, keep: bool) {
        if keep {
            println!("kept the database: {}", self.url());
            return;
        }
        match self {
            Database::Sqlite {
                temp: Some(path), ..
            } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Database::Sqlite { url, temp: None } => println!("left the database at {url}"),
            Database::Postgres {
                created: Some((admin, name)),
                ..
            } => {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await
                    {
                        eprintln!("warning: could not drop database {name}: {e}");
                    }
                }
            }
            Database::Postgres { url, created: None } => println!("left the fleet in {url}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Seeding.

/// Registers one user with `n` monitored mock instances; returns their ids in
/// registration order. PostgreSQL takes several registrations at once; SQLite
/// writes one at a time anyway, and more connections would only add page caches.
async fn seed_instances(store: &dyn Store, n: usize) -> anyhow::Result<Vec<Uuid>> {
    let concurrency = match store.backend() {
        Backend::Postgres => 8,
        Backend::Sqlite => 1,
    };
    let user = store
        .create_user(
            &format!("fleet-bench-{}@example.com", Uuid::new_v4().simple()),
            "not-a-real-hash",
        )
        .await?;
    let mut ids: Vec<(usize, Uuid)> = futures::stream::iter(0..n)
        .map(|i| async move {
            let instance = store
                .create_instance(&NewInstance {
                    user_id: user.id,
                    instance_id: format!("fleet-bench-{i:06}"),
                    instance_type: "t3.micro".into(),
                    region: "mock".into(),
                    is_mock: true,
                })
                .await?;
            store.set_monitoring(instance.id, true).await?;
            Ok::<_, anyhow::Error>((i, instance.id))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    ids.sort_unstable();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

/// Stores `samples` metrics per instance, `spacing` apart and ending at `newest`,
/// written time slice by time slice and in chunks, as collection writes them.
async fn seed_metrics(
    store: &dyn Store,
    ids: &[Uuid],
    samples: usize,
    spacing: TimeDelta,
    newest: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut rng = rand::rng();
    let mut written = 0;
    for age in (0..samples).rev() {
        let ts = newest - spacing * age as i32;
        for (c, chunk) in ids.chunks(SEED_CHUNK).enumerate() {
            let metrics: Vec<NewMetric> = chunk
                .iter()
                .enumerate()
                .map(|(k, &id)| {
                    let target = CollectTarget {
                        id,
                        instance_id: String::new(),
                        region: String::new(),
                        source: SourceKind::Mock,
                        last_collected_at: None,
                    };
                    let mut m = mock::sample(&target, ts, &mut rng);
                    if (c * SEED_CHUNK + k).is_multiple_of(HOT_EVERY) {
                        m.cpu_utilization = rng.random_range(93.0..=98.0);
                    }
                    m
                })
                .collect();
            written += store.insert_metrics(&metrics).await?.len();
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------------------
// Ticks.

/// One timed tick: what each replica did, and how long the slowest took.
struct TickRun {
    elapsed: Duration,
    reports: Vec<TickReport>,
    stats: Vec<Stats>,
    /// Distinct instances claimed across the replicas, and claims of an instance
    /// that another claim (of any replica) had already handed out in this tick.
    distinct: usize,
    duplicates: usize,
}

impl TickRun {
    fn total(&self) -> TickReport {
        self.reports
            .iter()
            .fold(TickReport::default(), |a, r| TickReport {
                instances: a.instances + r.instances,
                rows: a.rows + r.rows,
                events: a.events + r.events,
                ..TickReport::default()
            })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scaling,
    Collection,
}

/// Runs one tick at `now` on every replica at once.
async fn run_tick(
    kind: Kind,
    replicas: &[Arc<TimedStore>],
    policy: &Policy,
    now: DateTime<Utc>,
) -> anyhow::Result<TickRun> {
    // Every instance is a mock one; any other kind would be read as mock too.
    let sources = Sources::from_fn(|_| Arc::new(MockSource));
    let started = Instant::now();
    let reports = futures::future::try_join_all(replicas.iter().map(|store| {
        let sources = &sources;
        async move {
            match kind {
                Kind::Scaling => {
                    run_scaling_tick(store.as_ref(), policy, SCALING_INTERVAL, now).await
                }
                Kind::Collection => {
                    run_collection_tick(store.as_ref(), sources, COLLECTION_INTERVAL, now).await
                }
            }
        }
    }))
    .await?;
    let elapsed = started.elapsed();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    for id in replicas.iter().flat_map(|s| s.take_claimed()) {
        if !seen.insert(id) {
            duplicates += 1;
        }
    }
    Ok(TickRun {
        elapsed,
        reports,
        stats: replicas.iter().map(|s| s.take()).collect(),
        distinct: seen.len(),
        duplicates,
    })
}

/// The durations of a series of ticks, and how many instances each replica
/// handled in each.
struct Series {
    times: Vec<Duration>,
    shares: Vec<Vec<usize>>,
}

impl Series {
    /// `5000/5000, 4000/6000, ...`
    fn shares(&self) -> String {
        self.shares
            .iter()
            .map(|s| s.iter().map(usize::to_string).collect::<Vec<_>>().join("/"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs `ticks` ticks of `kind` `interval` apart from `start`, printing each.
/// Fails unless every tick handed each of the `expected` instances to exactly one
/// claim of one replica.
async fn run_ticks(
    kind: Kind,
    replicas: &[Arc<TimedStore>],
    policy: &Policy,
    start: DateTime<Utc>,
    ticks: usize,
    expected: usize,
) -> anyhow::Result<Series> {
    let (name, interval, rows_label, events_label) = match kind {
        Kind::Scaling => ("scaling", SCALING_INTERVAL, "decisions recorded", "actions"),
        Kind::Collection => (
            "collection",
            COLLECTION_INTERVAL,
            "metrics stored",
            "failed",
        ),
    };
    let mut series = Series {
        times: Vec::with_capacity(ticks),
        shares: Vec::with_capacity(ticks),
    };
    for t in 0..ticks {
        let now = start + TimeDelta::from_std(interval)? * t as i32;
        let run = run_tick(kind, replicas, policy, now).await?;
        let total = run.total();
        println!(
            "{name} tick {:>2}: {:>9.1} ms  {} instances, {} {rows_label}, {} {events_label}",
            t + 1,
            ms(run.elapsed),
            total.instances,
            total.rows,
            total.events
        );
        for (i, (report, stats)) in run.reports.iter().zip(&run.stats).enumerate() {
            let who = if replicas.len() > 1 {
                format!("replica {}: {} instances · ", i + 1, report.instances)
            } else {
                String::new()
            };
            println!("               {who}{}", breakdown(stats));
        }
        if total.instances != expected || run.distinct != expected || run.duplicates > 0 {
            bail!(
                "{name} tick {} handled {} instances ({} distinct, {} claimed twice), \
                 expected each of {expected} exactly once",
                t + 1,
                total.instances,
                run.distinct,
                run.duplicates
            );
        }
        series.times.push(run.elapsed);
        series
            .shares
            .push(run.reports.iter().map(|r| r.instances).collect());
    }
    Ok(series)
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let db = Database::prepare(args.database_url.as_deref()).await?;
    let result = run(&args, &db).await;
    db.clean_up(args.keep).await;
    result
}

async fn run(args: &Args, db: &Database) -> anyhow::Result<()> {
    let backend = match db {
        Database::Sqlite { .. } => "SQLite",
        Database::Postgres { .. } => "PostgreSQL",
    };
    if args.replicas > 1 && matches!(db, Database::Sqlite { .. }) {
        bail!("--replicas 2 needs PostgreSQL (SQLite is one process's file)");
    }
    let mut replicas = Vec::with_capacity(args.replicas);
    for _ in 0..args.replicas {
        replicas.push(Arc::new(TimedStore::new(db.open().await?)));
    }
    let store = replicas[0].as_ref();
    let policy = Policy::default();
    let scaling_step = TimeDelta::from_std(SCALING_INTERVAL)?;
    // Every seeded sample stays in the window up to the last scaling tick.
    let span = policy.window - scaling_step * (args.ticks as i32 - 1);
    let spacing = (span / (args.samples as i32 + 1)).clamp(TimeDelta::seconds(1), scaling_step);
    let start = Utc::now().trunc_subsecs(0);

    println!(
        "fleet-bench: {} on {backend}, {} samples each ({}s apart), {} ticks, {} replica(s), \
         batch {}",
        args.instances,
        args.samples,
        spacing.num_seconds(),
        args.ticks,
        args.replicas,
        autoscaler::jobs::BATCH_SIZE
    );

    let seeding = Instant::now();
    let mut ids = seed_instances(store, args.instances).await?;
    if args.own_policies {
        let own = PolicyPatch::from_json(&serde_json::json!({
            "scale_up_cpu_above": 85, "cooldown_seconds": 600
        }))?;
        for id in ids.iter().step_by(2) {
            store.set_policy(*id, Some(&own), false).await?;
        }
        println!(
            "{} instances have a policy of their own",
            ids.len().div_ceil(2)
        );
    }
    let instances_took = seeding.elapsed();
    // Both stores claim in id order, so that is the order in which the collection
    // tick writes each time slice of metrics: seed them the same way.
    ids.sort_unstable();
    let seeded = seed_metrics(store, &ids, args.samples, spacing, start).await?;
    println!(
        "seeded {} instances in {:.1} s and {seeded} metrics in {:.1} s",
        ids.len(),
        instances_took.as_secs_f64(),
        (seeding.elapsed() - instances_took).as_secs_f64()
    );
    drop(ids);
    db.settle().await?;
    let (rss_seeded, _) = memory_mib();
    for r in &replicas {
        r.take();
        r.take_claimed();
    }

    let scaling = run_ticks(
        Kind::Scaling,
        &replicas,
        &policy,
        start,
        args.ticks,
        args.instances,
    )
    .await?;
    let collection = run_ticks(
        Kind::Collection,
        &replicas,
        &policy,
        start + scaling_step * args.ticks as i32,
        args.ticks,
        args.instances,
    )
    .await?;
    let (rss, hwm) = memory_mib();

    let per_k = |d: Duration| ms(d) / args.instances as f64 * 1000.0;
    let (shares, scaling, collection) = (
        (scaling.shares(), collection.shares()),
        scaling.times,
        collection.times,
    );
    let steady = median(scaling[1..].to_vec());
    let collect = median(collection.clone());
    println!();
    println!(
        "summary ({backend}, {} instances, {} replica(s)):",
        args.instances, args.replicas
    );
    println!(
        "  scaling tick, first         {:>9.1} ms  ({:.1} ms per 1000 instances)",
        ms(scaling[0]),
        per_k(scaling[0])
    );
    if scaling.len() > 1 {
        println!(
            "  scaling tick, steady median {:>9.1} ms  ({:.1} ms per 1000; min {:.1}, max {:.1})",
            ms(steady),
            per_k(steady),
            ms(*scaling[1..].iter().min().unwrap_or(&Duration::ZERO)),
            ms(*scaling[1..].iter().max().unwrap_or(&Duration::ZERO)),
        );
    }
    println!(
        "  collection tick, median     {:>9.1} ms  ({:.1} ms per 1000; min {:.1}, max {:.1})",
        ms(collect),
        per_k(collect),
        ms(*collection.iter().min().unwrap_or(&Duration::ZERO)),
        ms(*collection.iter().max().unwrap_or(&Duration::ZERO)),
    );
    println!(
        "  memory: VmRSS {rss_seeded:.1} MiB after seeding, {rss:.1} MiB at the end; VmHWM (peak) {hwm:.1} MiB"
    );
    if args.replicas > 1 {
        println!(
            "  replicas: each tick handed every instance to exactly one replica; instances per replica:"
        );
        println!("    scaling    {}", shares.0);
        println!("    collection {}", shares.1);
    }
    Ok(())
}
