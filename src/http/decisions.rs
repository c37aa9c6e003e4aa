//! `GET /api/metrics/decisions/{instance_id}`: an instance's scaling decisions,
//! newest first.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ErrorBody, InstanceErrors};
use super::extract::AuthUser;
use super::instances::owned_instance;
use super::page::{ListQuery, Pagination, paging_from};
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::model::{Decision, DecisionRecord};

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new().endpoints(routes!(list_decisions))
}

/// Most decisions one request returns; larger `limit`s are capped to it.
pub const MAX_DECISIONS_LIMIT: i64 = 1000;

/// A stored scaling decision, with the sample values it was made on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView<'a> {
    pub id: Uuid,
    /// The instance's id.
    #[schema(example = "mock-test-1")]
    pub instance_id: &'a str,
    #[schema(value_type = String, format = DateTime, example = "2026-01-22T05:21:00.123456Z")]
    pub timestamp: ApiTime,
    #[schema(example = 92.5)]
    pub cpu_utilization: Option<f64>,
    #[schema(example = 68.3)]
    pub memory_usage: Option<f64>,
    #[schema(example = 2048000)]
    pub network_in: Option<i64>,
    #[schema(example = 1024000)]
    pub network_out: Option<i64>,
    /// `scale_up`, `scale_down` or `no_action`.
    pub decision: Decision,
    #[schema(
        example = "Sustained scale up: CPU > 90% for 85.0% of last 5 minutes (Current: 92.50%)"
    )]
    pub reason: String,
    /// The scale level before the decision.
    #[schema(example = 1)]
    pub level_before: i32,
    /// The scale level after it (the same for no_action).
    #[schema(example = 2)]
    pub level_after: i32,
    /// Decided in dry-run mode: the levels are the recommended (shadow) ones and the
    /// instance's real level did not change.
    pub dry_run: bool,
}

impl<'a> DecisionView<'a> {
    fn new(instance_id: &'a str, d: DecisionRecord) -> Self {
        DecisionView {
            id: d.id,
            instance_id,
            timestamp: d.timestamp.into(),
            cpu_utilization: d.cpu_utilization,
            memory_usage: d.memory_usage,
            network_in: d.network_in,
            network_out: d.network_out,
            decision: d.decision,
            reason: d.reason,
            level_before: d.level_before,
            level_after: d.level_after,
            dry_run: d.dry_run,
        }
    }
}

/// A page of an instance's decisions.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionsResponse<'a> {
    #[schema(example = "mock-test-1")]
    pub instance_id: &'a str,
    pub decisions: Vec<DecisionView<'a>>,
    pub pagination: Pagination,
}

/// Get an instance's scaling decisions, newest first. A decision is recorded for
/// every action and whenever the outcome changes.
#[utoipa::path(get, path = "/api/metrics/decisions/{instance_id}", tag = "metrics",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id"), ListQuery),
    responses(
        (status = 200, description = "Newest decisions first (default: the newest 50)", body = DecisionsResponse),
        (status = 400, description = "Bad limit, page or page_size", body = ErrorBody,
            example = json!({"error": "Page must be >= 1"})),
        InstanceErrors,
    ))]
pub async fn list_decisions(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let paging = paging_from(query, 50, MAX_DECISIONS_LIMIT)?;
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    let page = state
        .store
        .decisions_page(instance.id, paging.request())
        .await?;
    let response = DecisionsResponse {
        instance_id: &instance.instance_id,
        pagination: paging.of(page.total),
        decisions: page
            .items
            .into_iter()
            .map(|d| DecisionView::new(&instance.instance_id, d))
            .collect(),
    };
    Ok(Json(response).into_response())
}
