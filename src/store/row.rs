//! Rows as both stores read them. The two databases keep ids and times in different
//! types (PostgreSQL `uuid` and `timestamptz`; SQLite text and microseconds since
//! the epoch), so those columns decode through [`Id`] and [`Time`], which know
//! both; every other column has the same Rust type on both. Each row type, and its
//! conversion into the model, is then written once.

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow, SqliteTypeInfo, SqliteValueRef};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use super::{SeriesBucket, SeriesDecision};
use crate::collect::{CollectTarget, SourceKind};
use crate::events::Subscriber;
use crate::model::{
    DecisionRecord, DeliveryStatus, DueEvent, Instance, Metric, OutlierType, User, Webhook,
    WebhookDelivery,
};
use crate::scaling::record::ScalingCandidate;
use crate::scaling::{Decision, Sample};

/// An id column: `uuid` on PostgreSQL, its hyphenated text on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Id(pub Uuid);

/// A time column: `timestamptz` on PostgreSQL, microseconds since the epoch
/// (`INTEGER`) on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Time(pub DateTime<Utc>);

impl Type<Postgres> for Id {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for Id {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <Uuid as Decode<Postgres>>::decode(value).map(Id)
    }
}

impl Type<Sqlite> for Id {
    fn type_info() -> SqliteTypeInfo {
        <&str as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <&str as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Id {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Id(Uuid::parse_str(<&str as Decode<Sqlite>>::decode(
            value,
        )?)?))
    }
}

impl Type<Postgres> for Time {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for Time {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Time)
    }
}

impl Type<Sqlite> for Time {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Time {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(Time)
            .ok_or_else(|| format!("{micros} µs is out of the range of a time").into())
    }
}

fn time(t: Option<Time>) -> Option<DateTime<Utc>> {
    t.map(|t| t.0)
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: Id,
    email: String,
    password_hash: String,
    created_at: Time,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id.0,
            email: r.email,
            password_hash: r.password_hash.into(),
            created_at: r.created_at.0,
        }
    }
}

/// In `instance_columns!` order.
#[derive(sqlx::FromRow)]
pub(super) struct InstanceRow {
    id: Id,
    user_id: Id,
    instance_id: String,
    instance_type: String,
    region: String,
    is_mock: bool,
    is_monitoring: bool,
    scale_level: i32,
    last_action_at: Option<Time>,
    last_collected_at: Option<Time>,
    last_collection_error: Option<String>,
    created_at: Time,
    policy: Option<String>,
    recommended_level: i32,
    recommended_action_at: Option<Time>,
}

impl From<InstanceRow> for Instance {
    fn from(r: InstanceRow) -> Self {
        Instance {
            id: r.id.0,
            user_id: r.user_id.0,
            instance_id: r.instance_id,
            instance_type: r.instance_type,
            region: r.region,
            is_mock: r.is_mock,
            is_monitoring: r.is_monitoring,
            scale_level: r.scale_level,
            last_action_at: time(r.last_action_at),
            last_collected_at: time(r.last_collected_at),
            last_collection_error: r.last_collection_error,
            created_at: r.created_at.0,
            policy: super::decode_policy(r.policy),
            recommended_level: r.recommended_level,
            recommended_action_at: time(r.recommended_action_at),
        }
    }
}

/// In `metric_columns!` order.
pub(super) struct MetricRow {
    pub id: Id,
    pub instance: Id,
    pub ts: Time,
    pub cpu_utilization: f64,
    pub memory_usage: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
    pub is_outlier: bool,
    pub outlier_type: Option<String>,
}

/// Decoded by position, in `metric_columns!` order, without sqlx's per-value type
/// check (the columns' types are fixed by the migrations, and a mismatch is still a
/// decode error): the metrics read decodes a hundred rows per request, and looking
/// each column up by name and checking its type was a sixth of the server's
/// instructions for it on PostgreSQL (BENCHMARKS.md, "GET metrics"). One impl per
/// backend, so the column types' bounds are written once, on [`MetricRow::at`].
impl sqlx::FromRow<'_, PgRow> for MetricRow {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        MetricRow::at(row, 0)
    }
}

impl sqlx::FromRow<'_, SqliteRow> for MetricRow {
    fn from_row(row: &SqliteRow) -> sqlx::Result<Self> {
        MetricRow::at(row, 0)
    }
}

impl MetricRow {
    /// Decodes the metric whose columns start at position `base` (see the
    /// `FromRow` impl).
    pub fn at<'r, R>(row: &'r R, base: usize) -> sqlx::Result<Self>
    where
        R: Row,
        usize: ColumnIndex<R>,
        Id: Decode<'r, R::Database>,
        Time: Decode<'r, R::Database>,
        f64: Decode<'r, R::Database>,
        Option<f64>: Decode<'r, R::Database>,
        Option<i64>: Decode<'r, R::Database>,
        bool: Decode<'r, R::Database>,
        Option<String>: Decode<'r, R::Database>,
    {
        Ok(MetricRow {
            id: row.try_get_unchecked(base)?,
            instance: row.try_get_unchecked(base + 1)?,
            ts: row.try_get_unchecked(base + 2)?,
            cpu_utilization: row.try_get_unchecked(base + 3)?,
            memory_usage: row.try_get_unchecked(base + 4)?,
            network_in: row.try_get_unchecked(base + 5)?,
            network_out: row.try_get_unchecked(base + 6)?,
            is_outlier: row.try_get_unchecked(base + 7)?,
            outlier_type: row.try_get_unchecked(base + 8)?,
        })
    }
}

impl From<MetricRow> for Metric {
    fn from(r: MetricRow) -> Self {
        Metric {
            id: r.id.0,
            instance: r.instance.0,
            timestamp: r.ts.0,
            cpu_utilization: r.cpu_utilization,
            memory_usage: r.memory_usage,
            network_in: r.network_in,
            network_out: r.network_out,
            is_outlier: r.is_outlier,
            outlier_type: r.outlier_type.as_deref().and_then(OutlierType::parse),
        }
    }
}

impl MetricRow {
    /// The row as the engine reads it.
    pub fn sample(self) -> Sample {
        Sample {
            id: self.id.0,
            timestamp: self.ts.0,
            cpu: self.cpu_utilization,
            memory: self.memory_usage,
            network_in: self.network_in.map(|v| v as f64),
            network_out: self.network_out.map(|v| v as f64),
            is_outlier: self.is_outlier,
        }
    }
}

/// In `decision_columns!` order.
#[derive(sqlx::FromRow)]
pub(super) struct DecisionRow {
    id: Id,
    instance: Id,
    ts: Time,
    cpu_utilization: Option<f64>,
    memory_usage: Option<f64>,
    network_in: Option<i64>,
    network_out: Option<i64>,
    #[sqlx(try_from = "String")]
    decision: Decision,
    reason: String,
    level_before: i32,
    level_after: i32,
    dry_run: bool,
}

impl From<DecisionRow> for DecisionRecord {
    fn from(r: DecisionRow) -> Self {
        DecisionRecord {
            id: r.id.0,
            instance: r.instance.0,
            timestamp: r.ts.0,
            cpu_utilization: r.cpu_utilization,
            memory_usage: r.memory_usage,
            network_in: r.network_in,
            network_out: r.network_out,
            decision: r.decision,
            reason: r.reason,
            level_before: r.level_before,
            level_after: r.level_after,
            dry_run: r.dry_run,
        }
    }
}

/// What the collection claim returns: id, instance_id, region, is_mock,
/// last_collected_at.
pub(super) type CollectRow = (Id, String, String, bool, Option<Time>);

pub(super) fn collect_target(
    (id, instance_id, region, is_mock, last_collected_at): CollectRow,
) -> CollectTarget {
    CollectTarget {
        id: id.0,
        instance_id,
        region,
        source: SourceKind::from_is_mock(is_mock),
        last_collected_at: time(last_collected_at),
    }
}

/// What the scaling claim returns: id, instance_id, scale_level, last_action_at,
/// last_decision, policy, recommended_level, recommended_action_at.
pub(super) type ScaleRow = (
    Id,
    String,
    i32,
    Option<Time>,
    Option<String>,
    Option<String>,
    i32,
    Option<Time>,
);

pub(super) fn scaling_candidate(
    (id, instance_id, level, last_action_at, last, policy, shadow, shadow_at): ScaleRow,
) -> ScalingCandidate {
    ScalingCandidate {
        id: id.0,
        instance_id,
        level,
        last_action_at: time(last_action_at),
        last_decision: last.as_deref().and_then(Decision::parse),
        policy: super::decode_policy(policy),
        recommended_level: shadow,
        recommended_action_at: time(shadow_at),
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SeriesRow {
    start: Time,
    samples: i64,
    cpu_avg: f64,
    cpu_max: f64,
    memory_avg: Option<f64>,
    memory_max: Option<f64>,
    network_in_avg: Option<f64>,
    network_out_avg: Option<f64>,
}

impl From<SeriesRow> for SeriesBucket {
    fn from(r: SeriesRow) -> Self {
        SeriesBucket {
            start: r.start.0,
            samples: r.samples,
            cpu_avg: r.cpu_avg,
            cpu_max: r.cpu_max,
            memory_avg: r.memory_avg,
            memory_max: r.memory_max,
            network_in_avg: r.network_in_avg,
            network_out_avg: r.network_out_avg,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SeriesDecisionRow {
    id: Id,
    ts: Time,
    #[sqlx(try_from = "String")]
    decision: Decision,
    reason: String,
    level_before: i32,
    level_after: i32,
}

impl From<SeriesDecisionRow> for SeriesDecision {
    fn from(r: SeriesDecisionRow) -> Self {
        SeriesDecision {
            id: r.id.0,
            timestamp: r.ts.0,
            decision: r.decision,
            reason: r.reason,
            level_before: r.level_before,
            level_after: r.level_after,
        }
    }
}

/// In `webhook_columns!` order.
#[derive(sqlx::FromRow)]
pub(super) struct WebhookRow {
    id: Id,
    user_id: Id,
    url: String,
    events: Json<Vec<String>>,
    description: Option<String>,
    secret: String,
    created_at: Time,
}

impl From<WebhookRow> for Webhook {
    fn from(r: WebhookRow) -> Self {
        Webhook {
            id: r.id.0,
            user_id: r.user_id.0,
            url: r.url,
            events: r.events.0,
            description: r.description,
            secret: r.secret.into(),
            created_at: r.created_at.0,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    id: Id,
    event_type: String,
    decision: Option<Id>,
    #[sqlx(try_from = "String")]
    status: DeliveryStatus,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: Time,
    delivered_at: Option<Time>,
    created_at: Time,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(r: DeliveryRow) -> Self {
        let pending = r.status == DeliveryStatus::Pending;
        WebhookDelivery {
            id: r.id.0,
            event_type: r.event_type,
            decision: r.decision.map(|d| d.0),
            status: r.status,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            next_attempt_at: pending.then_some(r.next_attempt_at.0),
            delivered_at: time(r.delivered_at),
            created_at: r.created_at.0,
        }
    }
}

/// What the webhook claim returns: id, url, secret, payload, attempts, created_at.
pub(super) type DueRow = (Id, String, String, String, i32, Time);

pub(super) fn due_event((id, url, secret, payload, attempt, created_at): DueRow) -> DueEvent {
    DueEvent {
        id: id.0,
        url,
        secret: secret.into(),
        payload,
        attempt,
        created_at: created_at.0,
    }
}

/// A webhook of an instance's owner, as the event fan-out reads it: the instance,
/// the webhook, the kinds it subscribes to.
pub(super) type SubscriberRow = (Id, Id, Json<Vec<String>>);

pub(super) fn subscriber((instance, webhook, events): SubscriberRow) -> Subscriber {
    Subscriber {
        instance: instance.0,
        webhook: webhook.0,
        events: events.0,
    }
}
