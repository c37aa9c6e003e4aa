//! An instance's scale target (attach, read, detach) and its actuation history.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{BodyErrors, ErrorBody, InstanceErrors, OnConflict};
use super::extract::{ApiJson, AuthUser};
use super::instances::owned_instance;
use super::page::{LimitQuery, parse_limit};
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::actuate::reconcile::ActuationRecord;
use crate::actuate::target::{OnDrift, TargetMode, Workload};
use crate::actuate::{ActuationEvent, CloudError, Failure, TargetSpec, TargetState};
use crate::policy::Policy;
use crate::store::ScaleTarget;

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new()
        .endpoints(routes!(put_target, get_target, delete_target))
        .endpoints(routes!(list_actuations))
}

const DEFAULT_ACTUATIONS: i64 = 50;
const MAX_ACTUATIONS: i64 = 1000;

/// Where a scale target stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetStatus {
    #[schema(example = "converging")]
    pub state: TargetState,
    /// The instance's level the target is driven to.
    #[schema(example = 2)]
    pub desired_level: i32,
    /// That level's capacity, within the cloud's bounds.
    #[schema(example = 3)]
    pub desired_capacity: Option<i32>,
    /// What was last written (or adopted).
    #[schema(example = 3)]
    pub applied_capacity: Option<i32>,
    /// What the group or workload has (InService instances, `status.replicas`).
    #[schema(example = 2)]
    pub observed_capacity: Option<i32>,
    /// What it is asked to have (its desired capacity, `spec.replicas`).
    #[schema(example = 3)]
    pub observed_desired_capacity: Option<i32>,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-01-22T05:21:00.123456Z")]
    pub observed_at: Option<ApiTime>,
    /// The group's MinSize and MaxSize (none for Kubernetes).
    #[schema(example = 1)]
    pub min_capacity: Option<i32>,
    #[schema(example = 10)]
    pub max_capacity: Option<i32>,
    /// The level's capacity was clamped to the bounds.
    pub limited: bool,
    /// Why it is blocked, failed, limited or waiting.
    pub message: Option<String>,
    /// Consecutive transient failures being retried.
    pub attempts: i32,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<ApiTime>,
}

/// An instance's scale target.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetResponse {
    #[schema(example = "mock-test-1")]
    pub instance_id: String,
    /// The target as stored: `kind` and its fields, `capacities` or
    /// `base_capacity`, `on_drift`, `mode`.
    #[schema(value_type = Object, example = json!({"kind": "aws_asg", "group_name": "web", "region": "us-east-1",
        "base_capacity": 2, "on_drift": "adopt", "mode": "apply"}))]
    pub target: Value,
    pub status: TargetStatus,
}

fn response(instance_id: String, t: ScaleTarget) -> TargetResponse {
    let p = t.progress;
    TargetResponse {
        instance_id,
        target: t.spec.to_json(),
        status: TargetStatus {
            state: t.state,
            desired_level: t.desired_level,
            desired_capacity: p.desired_capacity,
            applied_capacity: p.applied_capacity,
            observed_capacity: p.observed_capacity,
            observed_desired_capacity: p.observed_desired,
            observed_at: p.observed_at.map(ApiTime),
            min_capacity: p.min_capacity,
            max_capacity: p.max_capacity,
            limited: p.limited,
            message: p.message,
            attempts: p.attempts,
            next_attempt_at: p.next_attempt_at.map(ApiTime),
        },
    }
}

/// A scale target to attach, as the PUT reads it (the document's description of it).
#[derive(Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(dead_code)] // Only its documentation is used.
pub enum TargetRequest {
    /// An AWS Auto Scaling group tagged `autoscaler:managed=true`.
    AwsAsg {
        #[schema(example = "web")]
        group_name: String,
        #[schema(example = "us-east-1")]
        region: String,
        #[serde(flatten)]
        sizing: TargetSizing,
    },
    /// A Kubernetes workload annotated `autoscaler/managed: "true"`.
    Kubernetes {
        #[schema(example = "default")]
        namespace: String,
        #[schema(example = "web")]
        name: String,
        /// `deployments` (the default) or `statefulsets`.
        resource: Option<Workload>,
        #[serde(flatten)]
        sizing: TargetSizing,
    },
}

/// How levels map to capacity (exactly one of `capacities` and `base_capacity`),
/// and what the target does.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // Only its documentation is used.
pub struct TargetSizing {
    /// The capacity of level 1, 2, ...: whole numbers, never decreasing, one per
    /// level up to the policy's `max_level`.
    #[schema(example = json!([2, 3, 5, 7, 11, 17, 26, 39, 59, 89]))]
    capacities: Option<Vec<i32>>,
    /// Level L gets ceil(base × 1.5^(L−1)).
    #[schema(minimum = 1, example = 2)]
    base_capacity: Option<i32>,
    /// `adopt` (default): an outside change becomes the level; `enforce`: it is written back.
    on_drift: Option<OnDrift>,
    /// `apply` (default) writes; `observe` records what it would write.
    mode: Option<TargetMode>,
}

/// What a live check's failure means for the client.
fn refused(e: CloudError) -> ApiError {
    match e.failure {
        Failure::NotFound | Failure::Invalid | Failure::NotConfigured => {
            ApiError::cloud_rejected(e.message)
        }
        Failure::Denied => ApiError::cloud_denied(&e.message),
        Failure::Throttled | Failure::Unavailable | Failure::Contention | Failure::Busy => {
            ApiError::cloud_unreachable(&e.message)
        }
    }
}

/// Attach a scale target to an instance (replacing any earlier one). The group or
/// workload is checked live first: it must exist and carry the managed marker
/// (`autoscaler:managed=true`, owner tag optional).
#[utoipa::path(put, path = "/api/instances/{instance_id}/target", tag = "targets",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id")),
    request_body(content = TargetRequest, description = "An Auto Scaling group or a Kubernetes workload, with `capacities` or `base_capacity`",
        example = json!({"kind": "aws_asg", "group_name": "web", "region": "us-east-1", "base_capacity": 2})),
    responses(
        (status = 200, description = "The target, pending its first pass", body = TargetResponse),
        (status = 400, description = "A wrong field, a group or workload that does not exist or is not marked as managed, or Kubernetes not configured", body = ErrorBody,
            example = json!({"error": "base_capacity must be a whole number from 1 to 1000000"})),
        (status = 409, description = "Another instance already drives that group or workload", body = ErrorBody),
        (status = 502, description = "The cloud API could not be reached or refused our credentials", body = ErrorBody),
        InstanceErrors, BodyErrors,
    ))]
pub async fn put_target(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<TargetResponse>, ApiError> {
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    let policy = Policy::resolve(&state.settings.policy, instance.policy.as_ref());
    let spec = TargetSpec::parse(&body, policy.max_level).map_err(ApiError::bad_target)?;
    let cloud = state.clouds.of(spec.target.kind()).map_err(refused)?;
    let observed = cloud.observe_one(&spec.target).await.map_err(refused)?;
    if let Some(why) = observed.refusal(&spec.target, &user.email) {
        return Err(ApiError::bad_target(why));
    }
    cloud
        .verify(&spec.target, &observed)
        .await
        .map_err(refused)?;
    let target = state
        .store
        .put_target(instance.id, &spec, Utc::now())
        .await
        .on_conflict(ApiError::target_taken)?;
    tracing::info!(instance = %instance.instance_id, target = %spec.target.describe(), "scale target attached");
    Ok(Json(response(instance.instance_id, target)))
}

/// Get an instance's scale target and where it stands.
#[utoipa::path(get, path = "/api/instances/{instance_id}/target", tag = "targets",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "The target and its status", body = TargetResponse),
        InstanceErrors,
    ))]
pub async fn get_target(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
) -> Result<Json<TargetResponse>, ApiError> {
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    let target = state
        .store
        .target_of(instance.id)
        .await?
        .ok_or_else(ApiError::target_not_found)?;
    Ok(Json(response(instance.instance_id, target)))
}

/// A confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    #[schema(example = "Scale target detached")]
    pub message: &'static str,
}

/// Detach an instance's scale target. The group or workload is left as it is.
#[utoipa::path(delete, path = "/api/instances/{instance_id}/target", tag = "targets",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "Detached", body = MessageResponse),
        InstanceErrors,
    ))]
pub async fn delete_target(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    if !state.store.delete_target(instance.id).await? {
        return Err(ApiError::target_not_found());
    }
    tracing::info!(instance = %instance.instance_id, "scale target detached");
    Ok(Json(MessageResponse {
        message: "Scale target detached",
    }))
}

/// One line of an instance's actuation history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActuationView {
    pub id: Uuid,
    #[schema(value_type = String, format = DateTime, example = "2026-01-22T05:21:00.123456Z")]
    pub timestamp: ApiTime,
    #[schema(example = "applied")]
    pub event: ActuationEvent,
    #[schema(example = 3)]
    pub desired_capacity: Option<i32>,
    #[schema(example = 2)]
    pub observed_capacity: Option<i32>,
    #[schema(example = "set Auto Scaling group web (us-east-1) from 2 to 3 (level 2)")]
    pub message: String,
}

impl From<ActuationRecord> for ActuationView {
    fn from(r: ActuationRecord) -> Self {
        ActuationView {
            id: r.id,
            timestamp: r.at.into(),
            event: r.event,
            desired_capacity: r.desired_capacity,
            observed_capacity: r.observed_capacity,
            message: r.message,
        }
    }
}

/// An instance's actuation history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActuationsResponse {
    #[schema(example = "mock-test-1")]
    pub instance_id: String,
    pub actuations: Vec<ActuationView>,
}

/// What was done to an instance's scale target, newest first.
#[utoipa::path(get, path = "/api/instances/{instance_id}/actuations", tag = "targets",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id"), LimitQuery),
    responses(
        (status = 200, description = "Newest first (default: the newest 50, at most 1000)", body = ActuationsResponse),
        (status = 400, description = "Bad limit", body = ErrorBody),
        InstanceErrors,
    ))]
pub async fn list_actuations(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<ActuationsResponse>, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::bad_limit())?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_ACTUATIONS, MAX_ACTUATIONS)?;
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    let actuations = state.store.actuations(instance.id, limit).await?;
    Ok(Json(ActuationsResponse {
        instance_id: instance.instance_id,
        actuations: actuations.into_iter().map(Into::into).collect(),
    }))
}
