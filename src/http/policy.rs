//! An instance's scaling policy (read, set, reset) and backtests of a candidate
//! policy over the instance's stored history.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::error::{ErrorBody, InstanceErrors};
use super::extract::{ApiJson, AuthUser};
use super::instances::owned_instance;
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::backtest::{Backtest, BacktestReport};
use crate::model::Instance;
use crate::policy::{Policy, PolicyChange, PolicyPatch};
use crate::scaling::Decision;
use crate::scaling::replay::{ReplayAction, ReplaySummary};

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new()
        .endpoints(routes!(get_policy, put_policy, reset_policy))
        .endpoints(routes!(backtest))
}

/// Longest span a backtest replays.
pub const MAX_BACKTEST_SPAN: TimeDelta = TimeDelta::days(90);

/// An instance's policy: every field, and whether all are the server defaults.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyResponse {
    #[schema(example = "mock-test-1")]
    pub instance_id: String,
    pub policy: Policy,
    /// True when the instance sets no field of its own.
    pub is_default: bool,
}

fn policy_response(state: &AppState, instance: &Instance) -> PolicyResponse {
    PolicyResponse {
        instance_id: instance.instance_id.clone(),
        policy: Policy::resolve(&state.settings.policy, instance.policy.as_ref()),
        is_default: instance.policy.is_none(),
    }
}

/// Get an instance's scaling policy.
#[utoipa::path(get, path = "/api/instances/{instance_id}/policy", tag = "policies",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "Every field of the policy in force", body = PolicyResponse),
        InstanceErrors,
    ))]
pub async fn get_policy(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    Ok(Json(policy_response(&state, &instance)))
}

/// Stores `patch` (or the defaults) as the instance's policy; a change of mode
/// starts the dry run's shadow state again from the real level.
async fn store_policy(
    state: &AppState,
    instance: Instance,
    patch: Option<PolicyPatch>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let PolicyChange {
        policy: after,
        reset_shadow,
    } = PolicyChange::new(
        &state.settings.policy,
        instance.policy.as_ref(),
        patch.as_ref(),
    )?;
    if !state
        .store
        .set_policy(instance.id, patch.as_ref(), reset_shadow)
        .await?
    {
        return Err(ApiError::instance_not_found());
    }
    tracing::info!(instance = %instance.instance_id, mode = ?after.mode, reset_shadow, "policy set");
    let is_default = patch.is_none();
    Ok(Json(PolicyResponse {
        instance_id: instance.instance_id,
        policy: after,
        is_default,
    }))
}

/// Set an instance's policy. Fields left out take the server defaults; a level
/// outside new bounds is stepped back into them, one step per evaluation.
#[utoipa::path(put, path = "/api/instances/{instance_id}/policy", tag = "policies",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id")),
    request_body(content = PolicyPatch, description = "Any subset of the policy's fields",
        example = json!({"scale_up_cpu_above": 70, "window_minutes": 10, "min_level": 2, "mode": "dry_run"})),
    responses(
        (status = 200, description = "The policy now in force", body = PolicyResponse),
        (status = 400, description = "A field out of range, of the wrong type, or unknown", body = ErrorBody,
            example = json!({"error": "scale_up_cpu_above must be a number between 0 and 100"})),
        InstanceErrors,
    ))]
pub async fn put_policy(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    let patch = PolicyPatch::from_json(&body)?;
    let patch = (patch != PolicyPatch::default()).then_some(patch);
    store_policy(&state, instance, patch).await
}

/// Reset an instance's policy to the server defaults.
#[utoipa::path(delete, path = "/api/instances/{instance_id}/policy", tag = "policies",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "The defaults, now in force", body = PolicyResponse),
        InstanceErrors,
    ))]
pub async fn reset_policy(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    store_policy(&state, instance, None).await
}

/// A validated backtest request.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestRequest {
    pub patch: Option<PolicyPatch>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub start_level: Option<i32>,
}

const BACKTEST_FIELDS: [&str; 4] = ["policy", "from", "to", "start_level"];

// Only the documentation of the body: `BacktestRequest::parse` reads it, so that a
// mistake names its field.
/// A backtest: every field is optional (`{}` replays the last 24 hours under the
/// current policy).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BacktestBody {
    /// Fields over the instance's current policy.
    policy: Option<PolicyPatch>,
    /// RFC 3339; default: 24 hours before `to`.
    #[schema(value_type = Option<String>, format = DateTime)]
    from: Option<DateTime<Utc>>,
    /// RFC 3339; default: now.
    #[schema(value_type = Option<String>, format = DateTime)]
    to: Option<DateTime<Utc>>,
    /// The level the replay starts at; default: the policy's `min_level`.
    #[schema(minimum = 1, maximum = 50)]
    start_level: Option<i32>,
}

fn time_field(body: &Map<String, Value>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| Some(t.with_timezone(&Utc)))
            .ok_or_else(|| ApiError::bad_backtest_time(name)),
    }
}

impl BacktestRequest {
    /// Reads a backtest body; `now` fills in a missing `to`.
    pub fn parse(body: &Value, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let Value::Object(body) = body else {
            return Err(ApiError::body_must_be_object());
        };
        if let Some(unknown) = body.keys().find(|k| !BACKTEST_FIELDS.contains(&k.as_str())) {
            return Err(ApiError::unknown_backtest_field(unknown));
        }
        let patch = match body.get("policy") {
            None | Some(Value::Null) => None,
            Some(p) => Some(PolicyPatch::from_json(p)?),
        };
        let to = time_field(body, "to")?.unwrap_or(now);
        let from = time_field(body, "from")?.unwrap_or(to - TimeDelta::hours(24));
        if from >= to {
            return Err(ApiError::from_not_before_to());
        }
        if to - from > MAX_BACKTEST_SPAN {
            return Err(ApiError::span_too_long(MAX_BACKTEST_SPAN.num_days()));
        }
        let start_level = match body.get("start_level") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .filter(|l| (1..=50).contains(l))
                    .map(|l| l as i32)
                    .ok_or_else(ApiError::bad_start_level)?,
            ),
        };
        Ok(BacktestRequest {
            patch,
            from,
            to,
            start_level,
        })
    }
}

/// What a backtest found: the candidate's replay and the baseline's.
#[derive(Debug, Serialize, ToSchema)]
pub struct BacktestResponse {
    #[schema(example = "mock-test-1")]
    pub instance_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub from: ApiTime,
    #[schema(value_type = String, format = DateTime)]
    pub to: ApiTime,
    /// The scaling interval the replay ticks at, as live ticks do.
    #[schema(example = 15)]
    pub interval_seconds: i64,
    /// Evaluations replayed.
    #[schema(example = 5760)]
    pub ticks: u64,
    /// The candidate policy: the given fields over the instance's current policy.
    pub policy: Policy,
    /// The candidate's replay.
    pub summary: ReplaySummary,
    /// The same replay under the instance's current policy.
    pub baseline: ReplaySummary,
    /// The candidate's actions, oldest first, at most 1,000.
    pub actions: Vec<BacktestAction>,
    pub actions_truncated: bool,
}

/// One applied scale_up or scale_down of a backtest.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReplayAction)]
pub struct BacktestAction {
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: ApiTime,
    pub decision: Decision,
    #[schema(
        example = "Sustained scale up: CPU > 80% for 100.0% of last 5 minutes (Current: 93.00%)"
    )]
    pub reason: String,
    pub level_before: i32,
    pub level_after: i32,
}

impl From<ReplayAction> for BacktestAction {
    fn from(a: ReplayAction) -> Self {
        BacktestAction {
            timestamp: a.timestamp.into(),
            decision: a.decision,
            reason: a.reason,
            level_before: a.level_before,
            level_after: a.level_after,
        }
    }
}

/// Replay a candidate policy over the instance's stored metrics, tick by tick as
/// the live job would have, beside the instance's current policy. Writes nothing.
#[utoipa::path(post, path = "/api/instances/{instance_id}/backtest", tag = "policies",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id")),
    request_body(content = BacktestBody, description = "The candidate policy's fields, the span and the start level, all optional",
        example = json!({"policy": {"scale_up_cpu_above": 70}, "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "start_level": 1})),
    responses(
        (status = 200, description = "The two replays", body = BacktestResponse),
        (status = 400, description = "A bad policy field, time or span", body = ErrorBody,
            example = json!({"error": "from must be at most 90 days before to"})),
        InstanceErrors,
    ))]
pub async fn backtest(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<BacktestResponse>, ApiError> {
    let request = BacktestRequest::parse(&body, Utc::now())?;
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    let current = Policy::resolve(&state.settings.policy, instance.policy.as_ref());
    let candidate = match &request.patch {
        Some(p) => p.apply_over(&current)?,
        None => current.clone(),
    };
    let interval = TimeDelta::from_std(state.settings.scaling_interval)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let backtest = Backtest {
        baseline: current,
        candidate: candidate.clone(),
        from: request.from,
        to: request.to,
        interval,
        start_level: request.start_level,
    };
    let history = state
        .store
        .history(instance.id, backtest.since(), request.to);
    let BacktestReport {
        candidate: report,
        baseline,
    } = backtest.run(history).await?;
    Ok(Json(BacktestResponse {
        instance_id: instance.instance_id,
        from: request.from.into(),
        to: request.to.into(),
        interval_seconds: interval.num_seconds(),
        ticks: report.ticks,
        policy: candidate,
        summary: report.summary,
        baseline,
        actions: report.actions.into_iter().map(Into::into).collect(),
        actions_truncated: report.actions_truncated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn err(body: Value) -> String {
        BacktestRequest::parse(&body, at("2026-12-02T00:00:00Z"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_empty_backtest_is_the_last_24_hours_from_the_policys_min_level() {
        let now = at("2026-12-02T00:00:00Z");
        let r = BacktestRequest::parse(&json!({}), now).unwrap();
        assert_eq!(
            (r.from, r.to, r.start_level, r.patch),
            (at("2026-12-01T00:00:00Z"), now, None, None)
        );
        assert!(BacktestRequest::parse(&Value::Null, now).is_err());
    }

    #[test]
    fn bad_backtests_name_what_is_wrong() {
        assert_eq!(
            err(json!({"from": "yesterday"})),
            "from must be an RFC 3339 time such as 2026-01-22T05:00:00Z"
        );
        assert_eq!(
            err(json!({"to": 5})),
            "to must be an RFC 3339 time such as 2026-01-22T05:00:00Z"
        );
        assert_eq!(
            err(json!({"from": "2026-12-02T00:00:00Z", "to": "2026-12-02T00:00:00Z"})),
            "from must be before to"
        );
        assert_eq!(
            err(json!({"from": "2026-09-01T23:59:59Z", "to": "2026-12-01T00:00:00Z"})),
            "from must be at most 90 days before to"
        );
        assert!(
            BacktestRequest::parse(
                &json!({"from": "2026-09-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}),
                at("2026-12-02T00:00:00Z")
            )
            .is_ok(),
            "exactly 90 days is allowed"
        );
        assert_eq!(
            err(json!({"start_level": 0})),
            "start_level must be an integer between 1 and 50"
        );
        assert_eq!(
            err(json!({"start_level": 2.5})),
            "start_level must be an integer between 1 and 50"
        );
        assert_eq!(
            err(json!({"policy": {"votes_needed": 9}})),
            "votes_needed must be an integer between 1 and 6"
        );
        assert_eq!(err(json!({"polcy": {}})), "unknown backtest field polcy");
        assert_eq!(err(json!([1])), "The body must be a JSON object");
    }
}
