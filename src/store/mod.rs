//! Persistence: a trait per aggregate (users, instances, metrics, collection,
//! scaling, series, webhooks, logins, retention, health), `Store` as all of them,
//! and the PostgreSQL and SQLite implementations: `postgres/` and `sqlite/` hold one
//! file per aggregate under the same names, so diffing two same-named files shows
//! only the dialect. This is the only module that contains SQL.

#[macro_use]
mod columns;
mod postgres;
mod row;
mod sqlite;
mod targets;
mod types;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use targets::{ActuationNotice, DueTarget, ScaleTarget, Targets};
pub use types::{
    Deletion, InstanceCounts, LoginFailures, NewInstance, Owned, Page, PageRequest,
    PoolConnections, SeriesBucket, SeriesDecision,
};

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::collect::{CollectTarget, CollectionStatus};
use crate::model::{
    DecisionRecord, DeliveryAttempt, DueEvent, Instance, Metric, NewMetric, NewWebhook, User,
    Webhook, WebhookDelivery,
};
use crate::policy::PolicyPatch;
use crate::scaling::Sample;
use crate::scaling::record::{ScalingCandidate, ScalingOutcome, ScalingWrites};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (email, instance id) is taken.
    #[error("unique constraint violated")]
    Conflict,
    /// What the write refers to is gone (an instance deleted meanwhile).
    #[error("referenced row is gone")]
    Gone,
    /// The database cannot be reached right now (pool timeout, connection lost).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Gone,
            // Connection exceptions (class 08) and the server shutting down or
            // starting up (57P01-57P03): the database, not the query, is the problem.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")
                }) =>
            {
                StoreError::Unavailable(err)
            }
            // A connection cut mid-handshake or mid-reply surfaces as a protocol error.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            _ => StoreError::Other(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Readiness and the gauges.
#[async_trait]
pub trait Health: Send + Sync {
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> StoreResult<()>;
    /// The pool's open and idle connections, for the pool gauge.
    fn pool_connections(&self) -> PoolConnections;
    /// Instances with monitoring on, across all users.
    async fn monitored_instances(&self) -> StoreResult<i64>;
}

/// Accounts.
#[async_trait]
pub trait Users: Send + Sync {
    async fn create_user(&self, email: &str, password_hash: &str) -> StoreResult<User>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>>;
    /// Removes a user and everything they own. No endpoint deletes accounts yet;
    /// the tests and the webhook benchmark do.
    async fn delete_user(&self, id: Uuid) -> StoreResult<bool>;
}

/// Instances: registration, monitoring, policy and deletion.
#[async_trait]
pub trait Instances: Send + Sync {
    async fn instance_counts(&self, user: Uuid) -> StoreResult<InstanceCounts>;
    async fn create_instance(&self, new: &NewInstance) -> StoreResult<Instance>;
    /// A user's instances, oldest first.
    async fn instances_of(&self, user: Uuid) -> StoreResult<Vec<Instance>>;
    /// Looks an instance up by its user-facing id.
    async fn instance_by_instance_id(&self, instance_id: &str) -> StoreResult<Option<Instance>>;
    /// Switches monitoring on or off; false when it already was in that state.
    async fn set_monitoring(&self, id: Uuid, on: bool) -> StoreResult<bool>;
    /// Stores an instance's own policy fields (`None`: the defaults). With
    /// `reset_shadow` the dry run's shadow state starts again from the real one.
    /// False when the instance is gone.
    async fn set_policy(
        &self,
        id: Uuid,
        policy: Option<&PolicyPatch>,
        reset_shadow: bool,
    ) -> StoreResult<bool>;
    /// Deletes an instance with its metrics and decisions in one transaction, unless it
    /// is being monitored.
    async fn delete_instance(&self, id: Uuid) -> StoreResult<Deletion>;
}

/// An instance's metrics as the API writes and pages them, and its decisions' page.
/// Each page's total is the instance row's count (`metric_count`, `decision_count`),
/// which every write path keeps: see the backends' module docs for how.
#[async_trait]
pub trait Metrics: Send + Sync {
    /// An instance's samples with timestamps in (since, until], oldest first
    /// (ties by id), read as a stream: a backtest over months holds only its window.
    fn history(
        &self,
        instance: Uuid,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> futures::stream::BoxStream<'_, StoreResult<Sample>>;
    /// Stores the metrics in one transaction: all or none. Returns them as stored.
    async fn insert_metrics(&self, metrics: &[NewMetric]) -> StoreResult<Vec<Metric>>;
    /// Replaces all of an instance's metrics with `metrics` in one transaction: the
    /// old ones are deleted and the new ones written, or nothing changes.
    async fn replace_metrics(
        &self,
        instance: Uuid,
        metrics: &[NewMetric],
    ) -> StoreResult<Vec<Metric>>;
    /// A page of an instance's metrics, newest first, with their total.
    async fn metrics_page(&self, instance: Uuid, page: PageRequest) -> StoreResult<Page<Metric>>;
    /// A page of the metrics of the instance with user-facing id `instance_id` if
    /// `user` owns it, in one round trip (the API's hottest read); it also serves as
    /// the token's account check.
    async fn metrics_page_owned(
        &self,
        user: Uuid,
        instance_id: &str,
        page: PageRequest,
    ) -> StoreResult<Owned<Page<Metric>>>;
    /// A page of an instance's decisions, newest first, with their total.
    async fn decisions_page(
        &self,
        instance: Uuid,
        page: PageRequest,
    ) -> StoreResult<Page<DecisionRecord>>;
}

/// The collection job's side of the store.
#[async_trait]
pub trait Collection: Send + Sync {
    /// Claims up to `limit` monitored instances not yet collected in tick `slot`.
    /// Across replicas each instance is claimed once per slot.
    async fn claim_collection(&self, slot: i64, limit: i64) -> StoreResult<Vec<CollectTarget>>;
    /// Stores collected metrics (a CloudWatch datapoint already stored is skipped)
    /// and each instance's collection status, in one transaction.
    async fn record_collection(
        &self,
        metrics: &[NewMetric],
        statuses: &[CollectionStatus],
    ) -> StoreResult<()>;
}

/// The scaling job's side of the store.
#[async_trait]
pub trait Scaling: Send + Sync {
    /// Claims up to `limit` monitored instances not yet evaluated in tick `slot`.
    async fn claim_scaling(&self, slot: i64, limit: i64) -> StoreResult<Vec<ScalingCandidate>>;
    /// The samples of `instances` with timestamps in (since, until], in one query.
    async fn windows(
        &self,
        instances: &[Uuid],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, Sample)>>;
    /// Persists a batch of outcomes: the writes [`ScalingWrites::plan`] makes of them.
    async fn apply_scaling(&self, outcomes: &[ScalingOutcome]) -> StoreResult<()> {
        self.write_scaling(&ScalingWrites::plan(outcomes)).await
    }
    /// Carries out a batch's writes in one transaction: the level changes first,
    /// each only where the level it was decided at still holds, then what
    /// [`ScalingWrites::after_changes`] keeps (decision rows, with each instance's
    /// latest outcome, count and webhook events, and outlier flags). An instance
    /// deleted since the claim gets nothing written.
    async fn write_scaling(&self, writes: &ScalingWrites) -> StoreResult<()>;
}

/// The series read (issue 14): chart data for one instance over a span.
#[async_trait]
pub trait Series: Send + Sync {
    /// The instance's samples with timestamps in [from, to), aggregated per bucket of
    /// `step_seconds` aligned to `from`, oldest first; empty buckets are left out.
    async fn metric_series(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_seconds: i64,
    ) -> StoreResult<Vec<SeriesBucket>>;
    /// The instance's decision rows with timestamps in [from, to), oldest first.
    async fn decisions_between(
        &self,
        instance: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<SeriesDecision>>;
    /// The level the instance was at just before `at`: the level after the newest
    /// decision before it, else the level before the oldest one from it on, else
    /// (no decision at all) its current level. `None` when there is no such instance.
    async fn level_at(&self, instance: Uuid, at: DateTime<Utc>) -> StoreResult<Option<i32>>;
}

/// A user's webhooks and their deliveries. Decision events are queued by
/// [`Scaling::apply_scaling`], in the decisions' own transaction.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Creates a webhook unless its user already has `max_per_user`; `None` then.
    async fn create_webhook(
        &self,
        new: &NewWebhook,
        max_per_user: i64,
    ) -> StoreResult<Option<Webhook>>;
    /// A user's webhooks, oldest first.
    async fn webhooks_of(&self, user: Uuid) -> StoreResult<Vec<Webhook>>;
    /// The webhook `id` if `user` owns it.
    async fn webhook_of(&self, user: Uuid, id: Uuid) -> StoreResult<Option<Webhook>>;
    /// Deletes the webhook `id` of `user` and its events; false when there was none.
    async fn delete_webhook(&self, user: Uuid, id: Uuid) -> StoreResult<bool>;
    /// The newest `limit` events of a webhook, newest first.
    async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Queues an event not tied to a decision (a ping), due at `now`; returns its id.
    async fn queue_webhook_event(
        &self,
        webhook: Uuid,
        event_type: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Uuid>;
}

/// The delivery worker's side of the webhook outbox.
#[async_trait]
pub trait WebhookOutbox: Send + Sync {
    /// Claims up to `limit` pending events due at `now` for one attempt each: their
    /// attempt count goes up and they are not due again before `lease_until`, so
    /// concurrent claimants (replicas) never get the same event for one attempt.
    async fn claim_webhook_events(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueEvent>>;
    /// Records the outcomes of claimed attempts, in one statement.
    async fn record_webhook_attempts(&self, attempts: &[DeliveryAttempt]) -> StoreResult<()>;
}

/// Failed-login counters.
#[async_trait]
pub trait Logins: Send + Sync {
    /// The failed-login counters of `keys` (those that exist).
    async fn login_failures(&self, keys: &[String]) -> StoreResult<Vec<LoginFailures>>;
    /// Counts one failed login against each of `keys`; a counter whose window began
    /// at or before `expired_before` starts again from `now`.
    async fn record_login_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Forgets the counter of `key`.
    async fn clear_login_failures(&self, key: &str) -> StoreResult<()>;
}

/// The retention job's side of the store.
#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes up to `batch` metrics older than `metrics_before` and up to `batch`
    /// decisions older than `decisions_before`; returns how many rows went.
    async fn purge(
        &self,
        metrics_before: DateTime<Utc>,
        decisions_before: DateTime<Utc>,
        batch: i64,
    ) -> StoreResult<u64>;
    /// Deletes the failed-login counters whose window began before `before`; returns
    /// how many.
    async fn purge_login_failures(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// Everything the service stores: every aggregate's trait. Implemented for
/// PostgreSQL and SQLite; the same contract tests run against both. Code that needs
/// one aggregate takes its trait (`&dyn Scaling`); an `Arc<dyn Store>` gives any.
pub trait Store:
    Health
    + Users
    + Instances
    + Metrics
    + Collection
    + Scaling
    + Series
    + Webhooks
    + WebhookOutbox
    + Logins
    + Retention
    + Targets
    + 'static
{
}

impl<T> Store for T where
    T: Health
        + Users
        + Instances
        + Metrics
        + Collection
        + Scaling
        + Series
        + Webhooks
        + WebhookOutbox
        + Logins
        + Retention
        + Targets
        + 'static
{
}

/// A `DATABASE_URL`, parsed once: which backend it names, and the URL itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://...` or `postgresql://...`
    Postgres(String),
    /// `sqlite:...`
    Sqlite(String),
}

impl DatabaseUrl {
    /// Reads a URL; the error says what is accepted.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else if url.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite(url.to_owned()))
        } else {
            Err(format!(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got {url:?})"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Postgres(url) | DatabaseUrl::Sqlite(url) => url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres(_))
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Opens the store `url` names and applies its migrations.
pub async fn connect(url: &DatabaseUrl, pool: &PoolSettings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match url {
        DatabaseUrl::Postgres(url) => Arc::new(PostgresStore::connect(url, pool).await?),
        DatabaseUrl::Sqlite(url) => Arc::new(SqliteStore::connect(url, pool).await?),
    })
}

/// Connection pool tuning shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: std::time::Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            acquire_timeout: std::time::Duration::from_secs(3),
        }
    }
}

/// A stored policy (the JSON of a [`PolicyPatch`]) read back. Only validated patches
/// are written, so one that no longer parses is a bug or a hand edit: it is logged
/// and the instance runs on the defaults rather than failing every read of it.
fn decode_policy(text: Option<String>) -> Option<PolicyPatch> {
    let text = text?;
    match serde_json::from_str(&text)
        .map_err(|e| e.to_string())
        .and_then(|v| PolicyPatch::from_json(&v).map_err(|e| e.to_string()))
    {
        Ok(patch) => Some(patch),
        Err(e) => {
            tracing::warn!(policy = %text, error = %e, "ignoring an unreadable stored policy");
            None
        }
    }
}

/// The text a policy is stored as.
fn encode_policy(policy: Option<&PolicyPatch>) -> Option<String> {
    policy.map(|p| serde_json::to_string(p).unwrap_or_else(|_| "{}".into()))
}

/// The row a new metric becomes: a time-ordered id (index-friendly for an
/// append-mostly table) and the timestamp at the microsecond precision both
/// databases keep, so what a write returns equals what a later read returns.
fn to_stored(n: &NewMetric) -> Metric {
    use chrono::SubsecRound;
    Metric {
        id: Uuid::now_v7(),
        instance: n.instance,
        timestamp: n.timestamp.trunc_subsecs(6),
        cpu_utilization: n.cpu_utilization,
        memory_usage: n.memory_usage,
        network_in: n.network_in,
        network_out: n.network_out,
        is_outlier: false,
        outlier_type: None,
    }
}
