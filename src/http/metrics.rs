//! `GET /api/metrics/{instance_id}`: an instance's stored samples, newest first.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ErrorBody, InstanceErrors};
use super::extract::AuthToken;
use super::instances::owned_instance;
use super::page::{ListQuery, Pagination, paging_from};
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::model::{Metric, OutlierType};
use crate::store::Owned;

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new().endpoints(routes!(list_metrics))
}

/// Most metrics one request returns; larger `limit`s are capped to it.
pub const MAX_METRICS_LIMIT: i64 = 1000;

/// A stored metric sample.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricView<'a> {
    pub id: Uuid,
    /// The instance's id.
    #[schema(example = "mock-test-1")]
    pub instance_id: &'a str,
    #[schema(value_type = String, format = DateTime, example = "2026-01-22T05:20:30.123456Z")]
    pub timestamp: ApiTime,
    #[schema(example = 45.2)]
    pub cpu_utilization: f64,
    /// Null where unknown (a real instance without the CloudWatch agent).
    #[schema(example = 62.8)]
    pub memory_usage: Option<f64>,
    #[schema(example = 1024000)]
    pub network_in: Option<i64>,
    #[schema(example = 512000)]
    pub network_out: Option<i64>,
    pub is_outlier: bool,
    pub outlier_type: Option<OutlierType>,
}

impl<'a> MetricView<'a> {
    fn new(instance_id: &'a str, m: Metric) -> Self {
        MetricView {
            id: m.id,
            instance_id,
            timestamp: m.timestamp.into(),
            cpu_utilization: m.cpu_utilization,
            memory_usage: m.memory_usage,
            network_in: m.network_in,
            network_out: m.network_out,
            is_outlier: m.is_outlier,
            outlier_type: m.outlier_type,
        }
    }
}

/// A page of an instance's metrics.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsResponse<'a> {
    #[schema(example = "mock-test-1")]
    pub instance_id: &'a str,
    pub metrics: Vec<MetricView<'a>>,
    pub pagination: Pagination,
}

/// Get an instance's metrics, newest first.
#[utoipa::path(get, path = "/api/metrics/{instance_id}", tag = "metrics", security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id"), ListQuery),
    responses(
        (status = 200, description = "Newest metrics first (default: the newest 100)", body = MetricsResponse),
        (status = 400, description = "Bad limit, page or page_size", body = ErrorBody,
            example = json!({"error": "Page size must be between 1 and 100"})),
        InstanceErrors,
    ))]
pub async fn list_metrics(
    State(state): State<AppState>,
    token: AuthToken,
    Path(instance_id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let paging = match paging_from(query, 100, MAX_METRICS_LIMIT) {
        Ok(paging) => paging,
        Err(bad_query) => {
            // A gone account's 401 comes before the 400, as on every other route.
            token.user(&state).await?;
            return Err(bad_query);
        }
    };
    let page = match state
        .store
        .metrics_page_owned(token.0, &instance_id, paging.request())
        .await?
    {
        Owned::Found(page) => page,
        Owned::UserGone => return Err(ApiError::invalid_token()),
        // Not this user's instance, or none: the lookup says which (404/403), and
        // reading again covers an instance registered in between.
        Owned::NotOwned => {
            let instance = owned_instance(&state, token.0, &instance_id).await?;
            state
                .store
                .metrics_page(instance.id, paging.request())
                .await?
        }
    };
    let capacity = 256 + METRIC_JSON_BYTES * page.items.len();
    let response = MetricsResponse {
        instance_id: &instance_id,
        pagination: paging.of(page.total),
        metrics: page
            .items
            .into_iter()
            .map(|m| MetricView::new(&instance_id, m))
            .collect(),
    };
    Ok(presized_json(&response, capacity))
}

/// About the size of one metric in JSON (a full one is ~230 bytes).
const METRIC_JSON_BYTES: usize = 256;

/// A JSON answer written into a `Vec` of about its size. axum's `Json` writes through
/// a `BytesMut` that starts at 128 bytes: for a page of metrics (~20 KB) that meant a
/// dozen reallocations and copies, and a capacity check on each of the ~1,000 small
/// writes serde_json makes. See BENCHMARKS.md ("the metrics read").
fn presized_json<T: Serialize>(value: &T, capacity: usize) -> Response {
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::Internal(e.into()).into_response(),
    }
}
