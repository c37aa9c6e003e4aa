//! Reading an instance's metrics and decisions, and simulating load.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::ErrorBody;
use super::extract::{ApiJson, AuthToken, AuthUser};
use super::instances::owned_instance;
use super::{ApiError, AppState};
use crate::model::{DecisionRecord, Metric, MetricSource, NewMetric, OutlierType};
use crate::store::{Owned, PageRequest};

pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/metrics/simulate", post(simulate)),
        ("/api/metrics/decisions/{instance_id}", get(list_decisions)),
        ("/api/metrics/{instance_id}", get(list_metrics)),
    ]
}

/// Most metrics one request returns; larger `limit`s are capped to it.
pub const MAX_METRICS_LIMIT: i64 = 1000;
/// Most decisions one request returns; larger `limit`s are capped to it.
pub const MAX_DECISIONS_LIMIT: i64 = 1000;
/// Most metrics one prolonged simulation creates.
pub const MAX_SIMULATED_POINTS: i64 = 10_000;

/// Which entries of a newest-first list to return: `?limit=N` (the newest N, the
/// contract's form) or `?page=P&page_size=S`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many of the newest entries to return: a positive integer, capped at 1000.
    /// With `page` or `page_size` it is the page size, and the page is 1.
    #[param(schema_with = positive_integer)]
    pub limit: Option<String>,
    /// Page number, from 1. Giving `page` or `page_size` switches to paging.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Entries per page, 1-100 (default 10).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
}

/// `?limit=N`: how many of the newest entries to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// A positive integer; larger values are capped.
    #[param(schema_with = positive_integer)]
    pub limit: Option<String>,
}

/// An integer of at least 1 without a declared maximum: a `limit` of any size is
/// accepted (and capped), so the document must not promise a 64-bit bound.
fn positive_integer() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .minimum(Some(1))
        .build()
}

/// Most entries of a page.
pub const MAX_PAGE_SIZE: i64 = 100;
/// Entries of a page when `page_size` is not given.
pub const DEFAULT_PAGE_SIZE: i64 = 10;

/// Parses `limit`: absent means `default`, above `max` is capped.
pub fn parse_limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw.map(str::trim) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            Ok(_) => Err(ApiError::bad_limit()),
            // Digits too many for an i64 are still a positive integer: cap them.
            Err(_)
                if !v.is_empty()
                    && v.bytes().all(|b| b.is_ascii_digit())
                    && v.bytes().any(|b| b != b'0') =>
            {
                Ok(max)
            }
            Err(_) => Err(ApiError::bad_limit()),
        },
    }
}

/// A validated page of a list: 1-based `page` of `page_size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: i64,
    pub page_size: i64,
}

impl Paging {
    /// The page a query asks for. Without `page` and `page_size` it is the newest
    /// `limit` (default `default_limit`, capped at `max_limit`) as page 1.
    pub fn parse(query: &ListQuery, default_limit: i64, max_limit: i64) -> Result<Self, ApiError> {
        let page = query
            .page
            .as_deref()
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(ApiError::bad_page)
            })
            .transpose()?;
        let page_size = query
            .page_size
            .as_deref()
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
                    .ok_or_else(ApiError::bad_page_size)
            })
            .transpose()?;
        let limit = parse_limit(query.limit.as_deref(), default_limit, max_limit)?;
        Ok(match (page, page_size) {
            (None, None) => Paging {
                page: 1,
                page_size: limit,
            },
            // What the Python service did: `limit` wins and the page is the first.
            _ if query.limit.is_some() => Paging {
                page: 1,
                page_size: limit,
            },
            (page, size) => Paging {
                page: page.unwrap_or(1),
                page_size: size.unwrap_or(DEFAULT_PAGE_SIZE),
            },
        })
    }

    /// The rows to read. A page too far out to address is simply past the end.
    pub fn request(self) -> PageRequest {
        PageRequest {
            limit: self.page_size,
            offset: (self.page - 1).saturating_mul(self.page_size),
        }
    }

    /// Where this page sits in a list of `total` entries.
    pub fn of(self, total: i64) -> Pagination {
        let total_pages = (total + self.page_size - 1) / self.page_size;
        Pagination {
            page: self.page,
            page_size: self.page_size,
            total_count: total,
            total_pages,
            has_next: self.page < total_pages,
            has_prev: self.page > 1,
        }
    }
}

/// Where a page sits in its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Pagination {
    #[schema(example = 1)]
    pub page: i64,
    #[schema(example = 20)]
    pub page_size: i64,
    /// Entries in the whole list.
    #[schema(example = 45)]
    pub total_count: i64,
    /// ceil(total_count / page_size); 0 for an empty list.
    #[schema(example = 3)]
    pub total_pages: i64,
    pub has_next: bool,
    pub has_prev: bool,
}

fn paging_from(
    query: Result<Query<ListQuery>, QueryRejection>,
    default: i64,
    max: i64,
) -> Result<Paging, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::bad_limit())?;
    Paging::parse(&query, default, max)
}

/// A stored metric sample.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricView<'a> {
    pub id: Uuid,
    /// The instance's id.
    #[schema(example = "mock-test-1")]
    pub instance_id: &'a str,
    #[serde(with = "super::time")]
    #[schema(value_type = String, format = DateTime, example = "2026-01-22T05:20:30.123456Z")]
    pub timestamp: DateTime<Utc>,
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
            timestamp: m.timestamp,
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
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Someone else's instance", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
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

/// A stored scaling decision, with the sample values it was made on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView<'a> {
    pub id: Uuid,
    /// The instance's id.
    #[schema(example = "mock-test-1")]
    pub instance_id: &'a str,
    #[serde(with = "super::time")]
    #[schema(value_type = String, format = DateTime, example = "2026-01-22T05:21:00.123456Z")]
    pub timestamp: DateTime<Utc>,
    #[schema(example = 92.5)]
    pub cpu_utilization: Option<f64>,
    #[schema(example = 68.3)]
    pub memory_usage: Option<f64>,
    #[schema(example = 2048000)]
    pub network_in: Option<i64>,
    #[schema(example = 1024000)]
    pub network_out: Option<i64>,
    /// `scale_up`, `scale_down` or `no_action`.
    #[schema(example = "scale_up")]
    pub decision: String,
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
            timestamp: d.timestamp,
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
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Someone else's instance", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
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

/// Load to simulate: one sample now, or (with `duration_minutes`) a series ending now.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SimulateRequest {
    #[schema(required = true, value_type = String, min_length = 1, example = "mock-test-1")]
    pub instance_id: Option<String>,
    /// Percent, 0-100.
    #[schema(required = true, value_type = f64, minimum = 0, maximum = 100, example = 95.0)]
    pub cpu_utilization: Option<f64>,
    /// Percent, 0-100; omitted means unknown.
    #[schema(minimum = 0, maximum = 100, example = 50.0)]
    pub memory_usage: Option<f64>,
    /// Bytes, 0 or more.
    #[schema(minimum = 0, maximum = 9.0e15, example = 3072000)]
    pub network_in: Option<f64>,
    /// Bytes, 0 or more.
    #[schema(minimum = 0, maximum = 9.0e15, example = 1536000)]
    pub network_out: Option<f64>,
    /// Minutes of history to create, 1-1440. Makes the simulation prolonged. At most
    /// 10,000 metrics: duration_minutes × 60 / interval_seconds.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1440, example = 10)]
    pub duration_minutes: Option<f64>,
    /// Seconds between samples, at least 1 and at most duration_minutes × 60
    /// (default 30); needs duration_minutes.
    #[schema(value_type = Option<i64>, minimum = 1, example = 30)]
    pub interval_seconds: Option<f64>,
    /// Delete the instance's earlier metrics first, in the same transaction as the
    /// new ones are written (default false).
    #[schema(example = false)]
    pub clear_existing: Option<bool>,
}

/// A validated simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub instance_id: String,
    pub cpu: f64,
    pub memory: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
    /// `(duration_minutes, interval_seconds, points)` for a prolonged simulation.
    pub series: Option<(i64, i64, i64)>,
    /// Replace the instance's metrics rather than add to them.
    pub clear_existing: bool,
}

fn percent(name: &str, v: Option<f64>) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=100.0).contains(&x) => Err(ApiError::bad_request(
            format!("{name} must be a number between 0 and 100"),
        )),
        other => Ok(other),
    }
}

fn bytes(name: &str, v: Option<f64>) -> Result<Option<i64>, ApiError> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=9.0e15).contains(&x) => Err(ApiError::bad_request(
            format!("{name} must be a number of bytes, 0 or more"),
        )),
        other => Ok(other.map(|x| x.round() as i64)),
    }
}

fn whole(v: f64) -> Option<i64> {
    (v.is_finite() && v.fract() == 0.0 && v.abs() < 1e12).then_some(v as i64)
}

impl SimulateRequest {
    pub fn validate(self) -> Result<Simulation, ApiError> {
        let instance_id = self
            .instance_id
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let (Some(instance_id), Some(_)) = (instance_id, self.cpu_utilization) else {
            return Err(ApiError::bad_request(
                "instance_id and cpu_utilization are required",
            ));
        };
        let cpu = percent("cpu_utilization", self.cpu_utilization)?.unwrap_or_default();
        let memory = percent("memory_usage", self.memory_usage)?;
        let network_in = bytes("network_in", self.network_in)?;
        let network_out = bytes("network_out", self.network_out)?;
        let series = match (self.duration_minutes, self.interval_seconds) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "duration_minutes is required with interval_seconds",
                ));
            }
            (Some(d), interval) => {
                let duration = whole(d).filter(|d| (1..=1440).contains(d)).ok_or_else(|| {
                    ApiError::bad_request(
                        "duration_minutes must be a whole number between 1 and 1440",
                    )
                })?;
                let interval = whole(interval.unwrap_or(30.0))
                    .filter(|i| *i >= 1)
                    .ok_or_else(|| {
                        ApiError::bad_request("interval_seconds must be a whole number, at least 1")
                    })?;
                let points = duration * 60 / interval;
                if points < 1 {
                    return Err(ApiError::bad_request(
                        "interval_seconds must not exceed duration_minutes × 60",
                    ));
                }
                if points > MAX_SIMULATED_POINTS {
                    return Err(ApiError::bad_request(format!(
                        "A simulation creates at most {MAX_SIMULATED_POINTS} metrics (duration_minutes × 60 / interval_seconds); raise interval_seconds"
                    )));
                }
                Some((duration, interval, points))
            }
        };
        Ok(Simulation {
            instance_id,
            cpu,
            memory,
            network_in,
            network_out,
            series,
            clear_existing: self.clear_existing.unwrap_or(false),
        })
    }
}

impl Simulation {
    /// The samples to store for `instance`: one at `now`, or `points` spaced by the
    /// interval so that the newest is stamped `now`.
    pub fn samples(&self, instance: Uuid, now: DateTime<Utc>) -> Vec<NewMetric> {
        let (points, interval) = match self.series {
            Some((_, interval, points)) => (points, interval),
            None => (1, 0),
        };
        (0..points)
            .map(|i| NewMetric {
                instance,
                timestamp: now - TimeDelta::seconds((points - 1 - i) * interval),
                cpu_utilization: self.cpu,
                memory_usage: self.memory,
                network_in: self.network_in,
                network_out: self.network_out,
                source: MetricSource::Simulated,
            })
            .collect()
    }
}

/// The metric an instant simulation created.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulatedMetricView {
    pub id: Uuid,
    #[schema(example = "mock-test-1")]
    pub instance_id: String,
    #[serde(with = "super::time")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: DateTime<Utc>,
    pub cpu_utilization: f64,
    pub memory_usage: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
}

/// Answer to an instant simulation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulateInstantResponse {
    #[schema(example = "Simulated metric created successfully")]
    pub message: &'static str,
    pub metric: SimulatedMetricView,
}

/// Answer to a prolonged simulation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulateProlongedResponse {
    #[schema(example = "Created 20 simulated metrics over 10 minutes")]
    pub message: String,
    #[schema(example = 20)]
    pub metrics_created: i64,
    #[schema(example = 10)]
    pub duration_minutes: i64,
    #[schema(example = 30)]
    pub interval_seconds: i64,
    /// The first three metrics created (the oldest).
    pub sample_metrics: Vec<SampleMetricView>,
}

/// One of the metrics a prolonged simulation created.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleMetricView {
    #[serde(with = "super::time")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: DateTime<Utc>,
    #[schema(example = 95.0)]
    pub cpu_utilization: f64,
    #[schema(example = 50.0)]
    pub memory_usage: Option<f64>,
}

/// Simulate metrics for testing: one sample now, or a prolonged series (written
/// all or nothing) ending now.
#[utoipa::path(post, path = "/api/metrics/simulate", tag = "metrics", security(("bearer" = [])),
    request_body(content = SimulateRequest, examples(
        ("Instant" = (value = json!({"instance_id": "mock-test-1", "cpu_utilization": 95.5, "memory_usage": 70.2, "network_in": 3072000, "network_out": 1536000}))),
        ("Prolonged" = (value = json!({"instance_id": "mock-test-1", "cpu_utilization": 95.0, "memory_usage": 50.0, "duration_minutes": 10, "interval_seconds": 30}))),
    )),
    responses(
        (status = 201, description = "Created: an instant (SimulateInstantResponse) or a prolonged (SimulateProlongedResponse) simulation",
            body = SimulateResponse),
        (status = 400, description = "Missing or invalid fields", body = ErrorBody,
            example = json!({"error": "cpu_utilization must be a number between 0 and 100"})),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "Someone else's instance", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body sent as another media type", body = ErrorBody),
    ))]
pub async fn simulate(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<SimulateRequest>,
) -> Result<(StatusCode, Json<SimulateResponse>), ApiError> {
    let simulation = body.validate()?;
    let instance = owned_instance(&state, user.id, &simulation.instance_id).await?;
    let samples = simulation.samples(instance.id, Utc::now());
    let stored = if simulation.clear_existing {
        state.store.replace_metrics(instance.id, &samples).await?
    } else {
        state.store.insert_metrics(&samples).await?
    };
    let response = match simulation.series {
        None => {
            let m = stored
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no metric stored")))?;
            SimulateResponse::Instant(SimulateInstantResponse {
                message: "Simulated metric created successfully",
                metric: SimulatedMetricView {
                    id: m.id,
                    instance_id: instance.instance_id,
                    timestamp: m.timestamp,
                    cpu_utilization: m.cpu_utilization,
                    memory_usage: m.memory_usage,
                    network_in: m.network_in,
                    network_out: m.network_out,
                },
            })
        }
        Some((duration, interval, points)) => {
            SimulateResponse::Prolonged(SimulateProlongedResponse {
                message: format!("Created {points} simulated metrics over {duration} minutes"),
                metrics_created: points,
                duration_minutes: duration,
                interval_seconds: interval,
                sample_metrics: stored
                    .iter()
                    .take(3)
                    .map(|m| SampleMetricView {
                        timestamp: m.timestamp,
                        cpu_utilization: m.cpu_utilization,
                        memory_usage: m.memory_usage,
                    })
                    .collect(),
            })
        }
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// Either simulation answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SimulateResponse {
    Instant(SimulateInstantResponse),
    Prolonged(SimulateProlongedResponse),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> SimulateRequest {
        SimulateRequest {
            instance_id: Some("mock-1".into()),
            cpu_utilization: Some(95.0),
            memory_usage: Some(50.0),
            network_in: None,
            network_out: None,
            duration_minutes: None,
            interval_seconds: None,
            clear_existing: None,
        }
    }

    fn err(r: SimulateRequest) -> String {
        r.validate().unwrap_err().to_string()
    }

    #[test]
    fn limit_defaults_caps_and_rejects() {
        assert_eq!(parse_limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(parse_limit(Some("5"), 100, 1000).unwrap(), 5);
        assert_eq!(parse_limit(Some("5000"), 100, 1000).unwrap(), 1000);
        assert_eq!(
            parse_limit(Some("99999999999999999999999"), 100, 1000).unwrap(),
            1000
        );
        for bad in ["0", "-1", "abc", "1.5", ""] {
            assert_eq!(
                parse_limit(Some(bad), 100, 1000).unwrap_err().to_string(),
                "limit must be a positive integer",
                "{bad}"
            );
        }
    }

    #[test]
    fn values_out_of_range_are_rejected() {
        assert_eq!(
            err(SimulateRequest {
                cpu_utilization: Some(150.0),
                ..req()
            }),
            "cpu_utilization must be a number between 0 and 100"
        );
        assert_eq!(
            err(SimulateRequest {
                memory_usage: Some(-0.1),
                ..req()
            }),
            "memory_usage must be a number between 0 and 100"
        );
        assert_eq!(
            err(SimulateRequest {
                network_in: Some(-1.0),
                ..req()
            }),
            "network_in must be a number of bytes, 0 or more"
        );
        assert_eq!(
            err(SimulateRequest {
                cpu_utilization: None,
                ..req()
            }),
            "instance_id and cpu_utilization are required"
        );
    }

    #[test]
    fn prolonged_simulations_are_bounded() {
        let series = |d: f64, i: Option<f64>| SimulateRequest {
            duration_minutes: Some(d),
            interval_seconds: i,
            ..req()
        };
        assert_eq!(
            series(10.0, Some(30.0)).validate().unwrap().series,
            Some((10, 30, 20))
        );
        assert_eq!(
            series(10.0, None).validate().unwrap().series,
            Some((10, 30, 20))
        );
        assert!(err(series(0.0, Some(30.0))).starts_with("duration_minutes must be"));
        assert!(err(series(1441.0, Some(30.0))).starts_with("duration_minutes must be"));
        assert!(err(series(-2.0, Some(30.0))).starts_with("duration_minutes must be"));
        assert!(err(series(10.0, Some(0.0))).starts_with("interval_seconds must be"));
        assert!(err(series(1.0, Some(61.0))).starts_with("interval_seconds must not exceed"));
        assert!(err(series(1440.0, Some(1.0))).starts_with("A simulation creates at most 10000"));
    }

    #[test]
    fn a_series_ends_now_spaced_by_the_interval() {
        let sim = SimulateRequest {
            duration_minutes: Some(10.0),
            interval_seconds: Some(30.0),
            ..req()
        }
        .validate()
        .unwrap();
        let now = Utc::now();
        let samples = sim.samples(Uuid::new_v4(), now);
        assert_eq!(samples.len(), 20);
        assert_eq!(samples[19].timestamp, now);
        assert_eq!(samples[0].timestamp, now - TimeDelta::seconds(19 * 30));
        assert!(
            samples
                .windows(2)
                .all(|w| w[1].timestamp - w[0].timestamp == TimeDelta::seconds(30))
        );
    }
}
