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
//! `--keep`), or uses the named one if it may not create databases and it monitors
//! no instances yet.
//! For a local server add `?sslmode=disable`: over TLS, sqlx 0.9.0 stalls ~40 ms on
//! every large statement (see BENCHMARKS.md, which also has the figures).
//!
//! It drives the service's public API only: the fleet is seeded through the
//! `Store` trait, the ticks are the jobs' own `run_scaling_tick` and
//! `run_collection_tick`, timed from outside. The database time inside a tick comes
//! from sqlx's own per-statement events (target `sqlx::query`), which a tracing
//! layer here adds up per replica and per statement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use rand::RngExt;
use tracing::Instrument;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use uuid::Uuid;

use autoscaler::collect::mock::{self, MockSource};
use autoscaler::collect::{CollectTarget, SourceKind, Sources};
use autoscaler::jobs::{TickReport, run_collection_tick, run_scaling_tick};
use autoscaler::model::NewMetric;
use autoscaler::scaling::{Policy, PolicyPatch};
use autoscaler::store::{self, NewInstance, PoolSettings, Store};
use autoscaler::testing::{self, ScratchDatabase};

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
// Database time, from sqlx's statement events.

/// Which database the bench runs on, read from its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Option<Backend> {
        match store::DatabaseUrl::parse(url).ok()? {
            store::DatabaseUrl::Sqlite(_) => Some(Backend::Sqlite),
            store::DatabaseUrl::Postgres(_) => Some(Backend::Postgres),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The span each replica's tick runs in, so its statements are counted as its own.
const REPLICA_SPAN: &str = "replica";

/// Calls and total time per statement (a label: the start of its SQL).
type Statements = HashMap<String, (u32, Duration)>;

/// A tracing layer that adds up sqlx's statement events (one per statement, with
/// its `elapsed_secs`) per replica. On SQLite the event comes from the
/// connection's worker thread, outside any span: it counts for the first replica,
/// the only one SQLite runs.
#[derive(Clone, Default)]
struct StatementClock(Arc<Mutex<Vec<Statements>>>);

impl StatementClock {
    /// Installs the clock as the process's only subscriber, listening to nothing
    /// but sqlx's statements and the bench's own spans.
    fn install() -> anyhow::Result<Self> {
        let clock = StatementClock::default();
        let only = Targets::new()
            .with_target("sqlx::query", tracing::Level::TRACE)
            .with_target(env!("CARGO_CRATE_NAME"), tracing::Level::TRACE);
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(clock.clone().with_filter(only)),
        )?;
        Ok(clock)
    }

    /// What each of `replicas` spent since the last call, reset.
    fn take(&self, replicas: usize) -> Vec<Statements> {
        let mut all = std::mem::take(&mut *self.0.lock().expect("statement clock"));
        all.resize_with(replicas.max(all.len()), Statements::default);
        all
    }
}

struct ReplicaIndex(usize);

impl<S> Layer<S> for StatementClock
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != REPLICA_SPAN {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(index), Some(span)) = (fields.index, ctx.span(id)) {
            span.extensions_mut().insert(ReplicaIndex(index as usize));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(secs) = fields.elapsed_secs else {
            return;
        };
        let replica = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .from_root()
                    .find_map(|span| span.extensions().get::<ReplicaIndex>().map(|r| r.0))
            })
            .unwrap_or(0);
        // sqlx leaves the statement empty when its summary (the first words) is all of it.
        let sql = if fields.statement.trim().is_empty() {
            &fields.summary
        } else {
            &fields.statement
        };
        let mut all = self.0.lock().expect("statement clock");
        if all.len() <= replica {
            all.resize_with(replica + 1, Statements::default);
        }
        let entry = all[replica].entry(label(sql)).or_default();
        entry.0 += 1;
        entry.1 += Duration::from_secs_f64(secs);
    }
}

/// The fields of sqlx's statement events and of the replica span that we read.
#[derive(Default)]
struct Fields {
    summary: String,
    statement: String,
    elapsed_secs: Option<f64>,
    index: Option<u64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "index" {
            self.index = Some(value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// A statement's label: its SQL on one line, cut at 90 characters.
fn label(sql: &str) -> String {
    const WIDTH: usize = 90;
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(WIDTH) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

fn total(statements: &Statements) -> (u32, Duration) {
    statements
        .values()
        .fold((0, Duration::ZERO), |(n, t), &(calls, time)| {
            (n + calls, t + time)
        })
}

fn merge(into: &mut Statements, from: &Statements) {
    for (sql, &(calls, time)) in from {
        let entry = into.entry(sql.clone()).or_default();
        entry.0 += calls;
        entry.1 += time;
    }
}

/// `database 212 ms in 41 statements`
fn database_time(statements: &Statements) -> String {
    let (calls, time) = total(statements);
    format!("database {:.0} ms in {calls} statements", ms(time))
}

/// The statements that took the most time, per tick over `ticks` ticks.
fn print_statements(title: &str, statements: &Statements, ticks: usize) {
    if ticks == 0 || statements.is_empty() {
        return;
    }
    let mut rows: Vec<_> = statements.iter().collect();
    rows.sort_by_key(|&(_, &(_, time))| std::cmp::Reverse(time));
    println!("{title}: database time per tick, by statement (mean of {ticks} ticks)");
    for &(sql, &(calls, time)) in rows.iter().take(12) {
        println!(
            "  {:>8.1} ms  ×{:<6.1} {sql}",
            ms(time) / ticks as f64,
            f64::from(calls) / ticks as f64
        );
    }
}

// ---------------------------------------------------------------------------
// The database: a temporary SQLite file, or a fresh PostgreSQL database.

/// Where the benchmark runs.
enum Database {
    /// Made for this run, removed at the end unless `--keep`.
    Scratch(ScratchDatabase, Backend),
    /// Named by `--database-url`, and left as it is.
    Given(String, Backend),
}

impl Database {
    async fn prepare(url: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = url else {
            return Ok(Database::Scratch(
                ScratchDatabase::sqlite("fleet-bench")?,
                Backend::Sqlite,
            ));
        };
        match Backend::of(url) {
            Some(Backend::Sqlite) => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:")
                    .split('?')
                    .next()
                    .unwrap_or_default();
                if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
                    bail!("{path} exists: give a new SQLite file (or none for a temporary one)");
                }
                Ok(Database::Given(url.to_owned(), Backend::Sqlite))
            }
            Some(Backend::Postgres) => match ScratchDatabase::postgres(url, "fleet_bench").await {
                Ok(scratch) => Ok(Database::Scratch(scratch, Backend::Postgres)),
                Err(e) => {
                    eprintln!(
                        "note: cannot create a database ({e}); using the one named, which must have no monitored instances"
                    );
                    Ok(Database::Given(url.to_owned(), Backend::Postgres))
                }
            },
            None => bail!("--database-url must be postgres://... or sqlite:... (got {url:?})"),
        }
    }

    fn url(&self) -> &str {
        match self {
            Database::Scratch(scratch, _) => scratch.url(),
            Database::Given(url, _) => url,
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Database::Scratch(_, backend) | Database::Given(_, backend) => *backend,
        }
    }

    /// A store on this database, as the service opens it.
    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        let url = store::DatabaseUrl::parse(self.url()).map_err(anyhow::Error::msg)?;
        let store = store::connect(&url, &PoolSettings::default()).await?;
        if let Database::Given(..) = self {
            let n = store.monitored_instances().await?;
            if n > 0 {
                bail!("the database at --database-url already monitors {n} instances");
            }
        }
        Ok(store)
    }

    /// On PostgreSQL, what autovacuum does to a live database after a bulk load
    /// (this server runs with it off). The ticks themselves then run without any
    /// vacuum: the worst case, as if autovacuum lagged behind.
    async fn settle(&self) -> anyhow::Result<()> {
        if self.backend() == Backend::Postgres {
            testing::vacuum_analyze(self.url()).await?;
        }
        Ok(())
    }

    async fn clean_up(self, keep: bool) {
        match self {
            Database::Scratch(scratch, _) if keep => {
                println!("kept the database: {}", scratch.keep())
            }
            Database::Scratch(scratch, _) => {
                if let Err(e) = scratch.remove().await {
                    eprintln!("warning: could not remove the database: {e}");
                }
            }
            Database::Given(url, _) => println!("left the fleet in {url}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Seeding.

/// Registers one user with `n` monitored mock instances; returns their ids in
/// registration order. PostgreSQL takes several registrations at once; SQLite
/// writes one at a time anyway, and more connections would only add page caches.
async fn seed_instances(
    store: &dyn Store,
    backend: Backend,
    n: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let concurrency = match backend {
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

/// One timed tick: what each replica did and the database time it spent, and how
/// long the slowest took.
struct TickRun {
    elapsed: Duration,
    reports: Vec<TickReport>,
    statements: Vec<Statements>,
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

/// The job's own tick of `kind` at `now`, exactly as the service runs it.
async fn tick(
    kind: Kind,
    store: &dyn Store,
    policy: &Policy,
    now: DateTime<Utc>,
) -> anyhow::Result<TickReport> {
    // Every instance is a mock one; any other kind would be read as mock too.
    let sources = Sources::from_fn(|_| Arc::new(MockSource));
    Ok(match kind {
        Kind::Scaling => run_scaling_tick(store, policy, SCALING_INTERVAL, now).await?,
        Kind::Collection => run_collection_tick(store, &sources, COLLECTION_INTERVAL, now).await?,
    })
}

/// Runs one tick at `now` on every replica at once.
async fn run_tick(
    kind: Kind,
    replicas: &[Arc<dyn Store>],
    clock: &StatementClock,
    policy: &Policy,
    now: DateTime<Utc>,
) -> anyhow::Result<TickRun> {
    clock.take(replicas.len());
    let started = Instant::now();
    let reports = futures::future::try_join_all(replicas.iter().enumerate().map(|(i, store)| {
        tick(kind, store.as_ref(), policy, now)
            .instrument(tracing::info_span!(REPLICA_SPAN, index = i as u64))
    }))
    .await?;
    let elapsed = started.elapsed();
    Ok(TickRun {
        elapsed,
        reports,
        statements: clock.take(replicas.len()),
    })
}

/// The durations of a series of ticks, how many instances each replica handled in
/// each, and the database time of the ticks after the first.
struct Series {
    times: Vec<Duration>,
    shares: Vec<Vec<usize>>,
    later_statements: Statements,
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
/// claim of one replica: the replicas together handled `expected` instances, and
/// another tick at the same moment finds none left, so no instance was missed and
/// none can have been handled twice.
async fn run_ticks(
    kind: Kind,
    replicas: &[Arc<dyn Store>],
    clock: &StatementClock,
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
        later_statements: Statements::default(),
    };
    for t in 0..ticks {
        let now = start + TimeDelta::from_std(interval)? * t as i32;
        let run = run_tick(kind, replicas, clock, policy, now).await?;
        let total = run.total();
        println!(
            "{name} tick {:>2}: {:>9.1} ms  {} instances, {} {rows_label}, {} {events_label}",
            t + 1,
            ms(run.elapsed),
            total.instances,
            total.rows,
            total.events
        );
        for (i, (report, statements)) in run.reports.iter().zip(&run.statements).enumerate() {
            let who = if replicas.len() > 1 {
                format!("replica {}: {} instances · ", i + 1, report.instances)
            } else {
                String::new()
            };
            println!("               {who}{}", database_time(statements));
        }
        if t > 0 {
            for statements in &run.statements {
                merge(&mut series.later_statements, statements);
            }
        }
        let left = tick(kind, replicas[0].as_ref(), policy, now)
            .await?
            .instances;
        clock.take(replicas.len());
        if total.instances != expected || left > 0 {
            bail!(
                "{name} tick {} handled {} instances and left {left} unhandled, \
                 expected each of {expected} exactly once",
                t + 1,
                total.instances,
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
    let clock = StatementClock::install()?;
    let db = Database::prepare(args.database_url.as_deref()).await?;
    let result = run(&args, &db, &clock).await;
    db.clean_up(args.keep).await;
    result
}

async fn run(args: &Args, db: &Database, clock: &StatementClock) -> anyhow::Result<()> {
    let backend = db.backend().name();
    if args.replicas > 1 && db.backend() == Backend::Sqlite {
        bail!("--replicas 2 needs PostgreSQL (SQLite is one process's file)");
    }
    let mut replicas = Vec::with_capacity(args.replicas);
    for _ in 0..args.replicas {
        replicas.push(db.open().await?);
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
    let mut ids = seed_instances(store, db.backend(), args.instances).await?;
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

    let scaling = run_ticks(
        Kind::Scaling,
        &replicas,
        clock,
        &policy,
        start,
        args.ticks,
        args.instances,
    )
    .await?;
    let collection = run_ticks(
        Kind::Collection,
        &replicas,
        clock,
        &policy,
        start + scaling_step * args.ticks as i32,
        args.ticks,
        args.instances,
    )
    .await?;
    let (rss, hwm) = memory_mib();
    println!();
    let later = args.ticks - 1;
    print_statements("scaling, steady ticks", &scaling.later_statements, later);
    print_statements(
        "collection, ticks after the first",
        &collection.later_statements,
        later,
    );

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
