//! Domain types shared by the store, the engine, the collectors and the HTTP layer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::policy::PolicyPatch;
use crate::secret::Secret;

/// A registered account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: Secret,
    pub created_at: DateTime<Utc>,
}

/// A watched instance, real (CloudWatch) or mock.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Internal key.
    pub id: Uuid,
    pub user_id: Uuid,
    /// The user-facing id (`i-0abc...` or `mock-test-1`), unique across all users.
    pub instance_id: String,
    pub instance_type: String,
    pub region: String,
    pub is_mock: bool,
    pub is_monitoring: bool,
    pub scale_level: i32,
    pub last_action_at: Option<DateTime<Utc>>,
    /// The policy fields the user set; `None` means the server defaults.
    pub policy: Option<PolicyPatch>,
    /// The dry run's shadow level and the time of its last recommended action.
    pub recommended_level: i32,
    pub recommended_action_at: Option<DateTime<Utc>>,
    pub last_collected_at: Option<DateTime<Utc>>,
    pub last_collection_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

// The engine's outcome (re-exported as `scaling::Decision`), here on the ground
// floor because the store, the events and the API carry it too.
/// The outcome of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    ScaleUp,
    ScaleDown,
    NoAction,
}

impl Decision {
    /// The stored and API spelling (`scale_up`, `scale_down`, `no_action`).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::ScaleUp => "scale_up",
            Decision::ScaleDown => "scale_down",
            Decision::NoAction => "no_action",
        }
    }

    /// A scale up or down (what moves a level, and what makes an event).
    pub fn is_action(self) -> bool {
        self != Decision::NoAction
    }

    /// The inverse of [`Decision::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scale_up" => Some(Decision::ScaleUp),
            "scale_down" => Some(Decision::ScaleDown),
            "no_action" => Some(Decision::NoAction),
            _ => None,
        }
    }
}

impl TryFrom<String> for Decision {
    type Error = String;

    /// How the store decodes a `decision` column.
    fn try_from(s: String) -> Result<Self, String> {
        Decision::parse(&s).ok_or_else(|| format!("unknown decision {s:?}"))
    }
}

/// Why a stored metric was set aside from later IQR baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutlierType {
    ScaleUp,
    ScaleDown,
}

impl OutlierType {
    pub fn as_str(self) -> &'static str {
        match self {
            OutlierType::ScaleUp => "scale_up",
            OutlierType::ScaleDown => "scale_down",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scale_up" => Some(OutlierType::ScaleUp),
            "scale_down" => Some(OutlierType::ScaleDown),
            _ => None,
        }
    }
}

/// Where a metric came from: a collection from the source of a
/// `collect::SourceKind` (each kind has its variant here), or the simulate endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleSource {
    Mock,
    CloudWatch,
    Simulated,
}

impl SampleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SampleSource::Mock => "mock",
            SampleSource::CloudWatch => "cloudwatch",
            SampleSource::Simulated => "simulated",
        }
    }
}

/// A metric sample to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    /// Internal id of the instance.
    pub instance: Uuid,
    pub timestamp: DateTime<Utc>,
    pub cpu_utilization: f64,
    /// `None` where the value is unknown (no CloudWatch agent): never read as 0.
    pub memory_usage: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
    pub source: SampleSource,
}

/// A stored metric sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub id: Uuid,
    pub instance: Uuid,
    pub timestamp: DateTime<Utc>,
    pub cpu_utilization: f64,
    pub memory_usage: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
    pub is_outlier: bool,
    pub outlier_type: Option<OutlierType>,
}

/// A stored scaling decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub id: Uuid,
    pub instance: Uuid,
    pub timestamp: DateTime<Utc>,
    pub cpu_utilization: Option<f64>,
    pub memory_usage: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
    pub decision: Decision,
    pub reason: String,
    pub level_before: i32,
    pub level_after: i32,
    /// Decided in dry-run mode: the levels are the shadow's.
    pub dry_run: bool,
}

// --- webhooks ---

/// A URL a user wants scaling decisions POSTed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    /// The decisions it wants: `scale_up`, `scale_down`.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// `whsec_` + base64 of the signing key.
    pub secret: Secret,
    pub created_at: DateTime<Utc>,
}

/// A webhook to create.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub user_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: Secret,
}

/// Where an event's delivery stands: `pending` until it is delivered or its retries
/// run out (`failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl TryFrom<String> for DeliveryStatus {
    type Error = String;

    /// How the store decodes a `status` column.
    fn try_from(s: String) -> Result<Self, String> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| format!("unknown delivery status {s:?}"))
    }
}

/// One event in a webhook's outbox and how its delivery is going.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: Uuid,
    /// `scaling.scale_up`, `scaling.scale_down` or `ping`.
    pub event_type: String,
    pub decision: Option<Uuid>,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// When a pending event is next tried; `None` once it is settled.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An event claimed for one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DueEvent {
    pub id: Uuid,
    pub url: String,
    pub secret: Secret,
    /// The body to send, exactly as signed.
    pub payload: String,
    /// Which attempt this is (1 for the first).
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
}

/// The outcome of one attempt, to record on its event.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub id: Uuid,
    /// The attempt number it was claimed with: a result arriving after the lease
    /// ran out and someone else claimed the event again is dropped.
    pub attempt: i32,
    /// `Pending` means retry at `next_attempt_at`.
    pub status: DeliveryStatus,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An AWS region name such as `us-east-1`, `ap-southeast-2` or `us-gov-west-1`.
pub fn is_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && parts[parts.len() - 1].len() <= 2
}
