//! Registering instances, listing them, and switching their monitoring on and off.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{BodyErrors, ErrorBody, InstanceErrors, OnConflict};
use super::extract::{ApiJson, AuthUser};
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::actuate::TargetState;
use crate::model::Instance;
use crate::model::is_aws_region;
use crate::scaling::{PolicyMode, capacity_for_level};
use crate::store::{Deletion, NewInstance};

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new()
        .endpoints(routes!(list_instances, register_instance))
        .endpoints(routes!(delete_instance))
        .endpoints(routes!(start_monitoring))
        .endpoints(routes!(stop_monitoring))
}

/// An instance as the API shows it. Capacities follow from the scale level.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView {
    pub id: Uuid,
    #[schema(example = "i-1234567890abcdef0")]
    pub instance_id: String,
    #[schema(example = "t2.micro")]
    pub instance_type: String,
    #[schema(example = "us-east-1")]
    pub region: String,
    pub is_monitoring: bool,
    pub is_mock: bool,
    #[schema(example = 100.0)]
    pub cpu_capacity: f64,
    #[schema(example = 100.0)]
    pub memory_capacity: f64,
    #[schema(example = 100.0)]
    pub network_capacity: f64,
    #[schema(example = 1)]
    pub current_scale_level: i32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: ApiTime,
    /// Timestamp of the newest collected sample.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_collected_at: Option<ApiTime>,
    /// Why the last collection failed (e.g. no AWS credentials); null when it worked.
    pub last_collection_error: Option<String>,
    /// `enforce`, or `dry_run` when decisions only move the recommended level.
    #[schema(value_type = String, example = "enforce")]
    pub policy_mode: PolicyMode,
    /// The level the policy recommends: in a dry run the shadow level, otherwise
    /// the current one.
    #[schema(example = 1)]
    pub recommended_scale_level: i32,
    /// The kind of the instance's scale target (`aws_asg`, `kubernetes`); null without one.
    #[schema(value_type = Option<String>, example = "aws_asg")]
    pub target_kind: Option<&'static str>,
    /// Where its scale target stands (`in_sync`, `converging`, ...); null without one.
    #[schema(value_type = Option<String>, example = "in_sync")]
    pub actuation_state: Option<TargetState>,
}

impl From<Instance> for InstanceView {
    fn from(i: Instance) -> Self {
        let capacity = capacity_for_level(i.scale_level);
        let policy_mode = i.policy.as_ref().and_then(|p| p.mode).unwrap_or_default();
        let recommended_scale_level = match policy_mode {
            PolicyMode::DryRun => i.recommended_level,
            PolicyMode::Enforce => i.scale_level,
        };
        InstanceView {
            id: i.id,
            instance_id: i.instance_id,
            instance_type: i.instance_type,
            region: i.region,
            is_monitoring: i.is_monitoring,
            is_mock: i.is_mock,
            cpu_capacity: capacity,
            memory_capacity: capacity,
            network_capacity: capacity,
            current_scale_level: i.scale_level,
            created_at: i.created_at.into(),
            last_collected_at: i.last_collected_at.map(ApiTime),
            last_collection_error: i.last_collection_error,
            policy_mode,
            recommended_scale_level,
            target_kind: None,
            actuation_state: None,
        }
    }
}

/// An instance to register: a real EC2 instance, or a mock one.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterInstanceRequest {
    /// For a real instance `i-` and 8 or 17 hex digits; for a mock one up to 128
    /// letters, digits, `-`, `_` or `.`.
    #[schema(required = true, value_type = String, pattern = "^[A-Za-z0-9._-]{1,128}$", example = "mock-test-1")]
    pub instance_id: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, max_length = 64, example = "t2.micro")]
    pub instance_type: Option<String>,
    /// An AWS region name (`us-east-1`) for a real instance; anything for a mock one.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 64, example = "mock")]
    pub region: Option<String>,
    /// Mock instances get generated metrics; real ones are read from CloudWatch.
    #[serde(default)]
    #[schema(example = true)]
    pub is_mock: Option<bool>,
}

/// The registration body as the OpenAPI document describes it: exactly one of a real
/// instance (an EC2 id and an AWS region) or a mock one (`"is_mock": true`), so that
/// clients and fuzzers generated from the document send what the validation accepts.
/// The handler reads [`RegisterInstanceRequest`]; this type exists for the document.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RegisterInstanceBody {
    Real(RealInstanceBody),
    Mock(MockInstanceBody),
}

/// A real EC2 instance, read from CloudWatch.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RealInstanceBody {
    #[schema(
        pattern = "^i-([0-9a-f]{8}|[0-9a-f]{17})$",
        example = "i-1234567890abcdef0"
    )]
    instance_id: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "t2.micro")]
    instance_type: String,
    #[schema(pattern = "^[a-z]{2}(-[a-z]+){1,2}-[0-9]{1,2}$", example = "us-east-1")]
    region: String,
    /// False, null or omitted.
    #[schema(schema_with = only_false)]
    is_mock: Option<bool>,
}

/// A mock instance, fed generated metrics.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MockInstanceBody {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$", example = "mock-test-1")]
    instance_id: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "t2.micro")]
    instance_type: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", example = "mock")]
    region: String,
    /// Must be true.
    #[schema(schema_with = only_true)]
    is_mock: bool,
}

fn only_false() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

fn only_true() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// An EC2 id: `i-` and 8 or 17 lower-case hex digits.
fn is_ec2_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Ids appear in URL paths: keep them to characters that need no escaping.
fn is_path_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl RegisterInstanceRequest {
    /// Validates the request into the instance to store for `user`.
    pub fn validate(self, user: Uuid) -> Result<NewInstance, ApiError> {
        let required = || ApiError::instance_fields_required();
        // Blank counts as missing; otherwise values are taken as sent, not trimmed:
        // the OpenAPI document's patterns describe them exactly, so what it calls
        // invalid is refused.
        let field = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let instance_id = field(self.instance_id).ok_or_else(required)?;
        let instance_type = field(self.instance_type).ok_or_else(required)?;
        let region = field(self.region).ok_or_else(required)?;
        let is_mock = self.is_mock.unwrap_or(false);
        if instance_type.len() > 64 || region.len() > 64 {
            return Err(ApiError::instance_fields_too_long());
        }
        if !is_path_safe(&instance_type) {
            return Err(ApiError::bad_instance_type());
        }
        if is_mock {
            if !is_path_safe(&instance_id) {
                return Err(ApiError::bad_mock_instance_id());
            }
            if !is_path_safe(&region) {
                return Err(ApiError::bad_mock_region());
            }
        } else {
            if !is_ec2_id(&instance_id) {
                return Err(ApiError::bad_ec2_instance_id());
            }
            if !is_aws_region(&region) {
                return Err(ApiError::bad_aws_region());
            }
        }
        Ok(NewInstance {
            user_id: user,
            instance_id,
            instance_type,
            region,
            is_mock,
        })
    }
}

/// Answer to a registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterInstanceResponse {
    #[schema(example = "Instance registered successfully")]
    pub message: &'static str,
    pub instance: InstanceView,
}

/// Register an AWS or mock instance.
#[utoipa::path(post, path = "/api/instances/", tag = "instances", security(("bearer" = [])),
    request_body(content = RegisterInstanceBody, examples(
        ("Mock" = (value = json!({"instance_id": "mock-instance-1", "instance_type": "t2.micro", "region": "mock", "is_mock": true}))),
        ("AWS" = (value = json!({"instance_id": "i-1234567890abcdef0", "instance_type": "t2.micro", "region": "us-east-1", "is_mock": false}))),
    )),
    responses(
        (status = 201, description = "Registered", body = RegisterInstanceResponse, links(
            ("StartMonitoring" = (operation_id = "start_monitoring",
                parameters(("instance_id" = "$response.body#/instance/instance_id")))),
            ("GetMetrics" = (operation_id = "list_metrics",
                parameters(("instance_id" = "$response.body#/instance/instance_id")))),
            ("GetDecisions" = (operation_id = "list_decisions",
                parameters(("instance_id" = "$response.body#/instance/instance_id")))),
            ("DeleteInstance" = (operation_id = "delete_instance",
                parameters(("instance_id" = "$response.body#/instance/instance_id")))),
        )),
        (status = 400, description = "Missing or invalid fields", body = ErrorBody,
            example = json!({"error": "instance_id, instance_type, and region are required"})),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 409, description = "The instance id is taken", body = ErrorBody,
            example = json!({"error": "Instance already registered"})),
        BodyErrors,
    ))]
pub async fn register_instance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<RegisterInstanceRequest>,
) -> Result<(StatusCode, Json<RegisterInstanceResponse>), ApiError> {
    let new = body.validate(user.id)?;
    let instance = state
        .store
        .create_instance(&new)
        .await
        // Gone: the token's user was deleted meanwhile.
        .on_refusals(
            ApiError::instance_already_registered,
            ApiError::invalid_token,
        )?;
    tracing::info!(instance = %instance.instance_id, user = %user.id, "instance registered");
    Ok((
        StatusCode::CREATED,
        Json(RegisterInstanceResponse {
            message: "Instance registered successfully",
            instance: instance.into(),
        }),
    ))
}

/// The user's instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstancesResponse {
    pub instances: Vec<InstanceView>,
}

/// List the current user's instances.
#[utoipa::path(get, path = "/api/instances/", tag = "instances", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's instances, oldest first", body = InstancesResponse),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
pub async fn list_instances(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<InstancesResponse>, ApiError> {
    let instances = state.store.instances_of(user.id).await?;
    let ids: Vec<Uuid> = instances.iter().map(|i| i.id).collect();
    let targets: std::collections::HashMap<Uuid, (&'static str, TargetState)> = state
        .store
        .targets_of(&ids)
        .await?
        .into_iter()
        .map(|t| (t.instance, (t.spec.target.kind().as_str(), t.state)))
        .collect();
    Ok(Json(InstancesResponse {
        instances: instances
            .into_iter()
            .map(|i| {
                let target = targets.get(&i.id).copied();
                InstanceView {
                    target_kind: target.map(|t| t.0),
                    actuation_state: target.map(|t| t.1),
                    ..i.into()
                }
            })
            .collect(),
    }))
}

/// Looks up an instance by its user-facing id: 404 when there is none, 403 when it
/// belongs to someone else.
pub(super) async fn owned_instance(
    state: &AppState,
    user: Uuid,
    instance_id: &str,
) -> Result<Instance, ApiError> {
    let instance = state
        .store
        .instance_by_instance_id(instance_id)
        .await?
        .ok_or_else(ApiError::instance_not_found)?;
    if instance.user_id != user {
        return Err(ApiError::not_your_instance());
    }
    Ok(instance)
}

/// A confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    #[schema(example = "Monitoring started successfully")]
    pub message: &'static str,
}

/// Start monitoring: metrics are collected every 30 s and scaling decided every 15 s.
#[utoipa::path(patch, path = "/api/instances/{instance_id}/monitor/start", tag = "instances",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id, e.g. mock-test-1")),
    responses(
        (status = 200, description = "Started", body = MessageResponse, links(
            ("StopMonitoring" = (operation_id = "stop_monitoring",
                parameters(("instance_id" = "$request.path.instance_id")))),
        )),
        (status = 400, description = "Already monitored", body = ErrorBody,
            example = json!({"error": "Monitoring is already active for this instance"})),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Someone else's instance", body = ErrorBody,
            example = json!({"error": "Unauthorized: You don't own this instance"})),
        (status = 404, description = "No such instance", body = ErrorBody,
            example = json!({"error": "Instance not found"})),
    ))]
pub async fn start_monitoring(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    set_monitoring(&state, user.id, &instance_id, true).await
}

/// Stop monitoring.
#[utoipa::path(patch, path = "/api/instances/{instance_id}/monitor/stop", tag = "instances",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id, e.g. mock-test-1")),
    responses(
        (status = 200, description = "Stopped", body = MessageResponse, links(
            ("DeleteInstance" = (operation_id = "delete_instance",
                parameters(("instance_id" = "$request.path.instance_id")))),
        )),
        (status = 400, description = "Not monitored", body = ErrorBody,
            example = json!({"error": "Monitoring is not active for this instance"})),
        InstanceErrors,
    ))]
pub async fn stop_monitoring(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    set_monitoring(&state, user.id, &instance_id, false).await
}

/// Turns monitoring of the user's instance on or off; a 400 when it already was.
async fn set_monitoring(
    state: &AppState,
    user: Uuid,
    instance_id: &str,
    on: bool,
) -> Result<Json<MessageResponse>, ApiError> {
    let instance = owned_instance(state, user, instance_id).await?;
    if !state.store.set_monitoring(instance.id, on).await? {
        return Err(ApiError::monitoring_already(on));
    }
    let message = if on {
        tracing::info!(instance = %instance.instance_id, "monitoring started");
        "Monitoring started successfully"
    } else {
        tracing::info!(instance = %instance.instance_id, "monitoring stopped");
        "Monitoring stopped successfully"
    };
    Ok(Json(MessageResponse { message }))
}

/// Delete an instance with all its metrics and decisions. Its id is free to be
/// registered again at once.
#[utoipa::path(delete, path = "/api/instances/{instance_id}", tag = "instances",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id, e.g. mock-test-1")),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse, links(
            ("GetMetricsOfDeleted" = (operation_id = "list_metrics",
                parameters(("instance_id" = "$request.path.instance_id")),
                description = "Answers 404 once the instance is deleted")),
        )),
        (status = 400, description = "Still monitored", body = ErrorBody,
            example = json!({"error": "Cannot delete instance while monitoring is active. Please stop monitoring first."})),
        InstanceErrors,
    ))]
pub async fn delete_instance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    match state.store.delete_instance(instance.id).await? {
        Deletion::Deleted => {
            tracing::info!(instance = %instance.instance_id, "instance deleted");
            Ok(Json(MessageResponse {
                message: "Instance deleted successfully",
            }))
        }
        Deletion::Monitoring => Err(ApiError::delete_while_monitoring()),
        Deletion::NotFound => Err(ApiError::instance_not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, region: &str, is_mock: bool) -> RegisterInstanceRequest {
        RegisterInstanceRequest {
            instance_id: Some(id.into()),
            instance_type: Some("t2.micro".into()),
            region: Some(region.into()),
            is_mock: Some(is_mock),
        }
    }

    #[test]
    fn real_instances_need_an_ec2_id_and_an_aws_region() {
        let user = Uuid::new_v4();
        assert!(
            req("i-1234567890abcdef0", "us-east-1", false)
                .validate(user)
                .is_ok()
        );
        assert!(
            req("i-12345678", "us-gov-west-1", false)
                .validate(user)
                .is_ok()
        );
        for id in [
            "mock-1",
            "i-123",
            "i-1234567890ABCDEF0",
            "i-1234567890abcdef",
            "i-1234567g",
        ] {
            let err = req(id, "us-east-1", false).validate(user).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("instance_id must be an EC2 instance id"),
                "{id}"
            );
        }
        for region in ["mock", "us-east", "US-EAST-1", "useast1", "us-east-1a"] {
            let err = req("i-12345678", region, false).validate(user).unwrap_err();
            assert_eq!(
                err.to_string(),
                "region must be an AWS region name such as us-east-1",
                "{region}"
            );
        }
    }

    #[test]
    fn mock_instances_need_path_safe_ids_and_all_fields() {
        let user = Uuid::new_v4();
        let ok = req("mock-test-1", "mock", true).validate(user).unwrap();
        assert_eq!((ok.instance_id.as_str(), ok.is_mock), ("mock-test-1", true));
        assert!(req("a/b", "mock", true).validate(user).is_err());
        let missing = RegisterInstanceRequest {
            instance_id: Some("x".into()),
            instance_type: None,
            region: Some("mock".into()),
            is_mock: Some(true),
        };
        assert_eq!(
            missing.validate(user).unwrap_err().to_string(),
            "instance_id, instance_type, and region are required"
        );
    }
}
