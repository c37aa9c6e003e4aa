//! `GET /api/`: is the service up; and the probes an orchestrator polls:
//! `GET /api/health/live` (the process serves) and `GET /api/health/ready` (and its
//! database answers).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::route::{ApiRouter, Endpoints};
use super::{ApiError, AppState};

/// How long readiness waits for the database before calling it unavailable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new()
        .endpoints(routes!(health))
        .endpoints(routes!(live))
        .endpoints(routes!(ready))
}

/// Health check answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "Cloud Resource Autoscaler API is running")]
    pub message: &'static str,
    #[schema(example = "1.0")]
    pub version: &'static str,
}

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeResponse {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Health check.
#[utoipa::path(get, path = "/api/", tag = "health",
    responses((status = 200, description = "The API is running", body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        message: "Cloud Resource Autoscaler API is running",
        version: "1.0",
    })
}

/// Liveness: the process serves requests. It never looks at the database, so an
/// outage does not get healthy replicas restarted.
#[utoipa::path(get, path = "/api/health/live", tag = "health",
    responses((status = 200, description = "The process serves", body = ProbeResponse,
        example = json!({"status": "ok"}))))]
pub async fn live() -> Json<ProbeResponse> {
    Json(ProbeResponse { status: "ok" })
}

/// Readiness: the database answers within a second, so requests can be served.
#[utoipa::path(get, path = "/api/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = ProbeResponse,
            example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer", body = ErrorBody,
            example = json!({"error": "database unavailable"})),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<ProbeResponse>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(ProbeResponse { status: "ready" })),
        Ok(Err(e)) => Err(ApiError::not_ready(
            anyhow::Error::new(e).context("not ready: the database failed the ping"),
        )),
        Err(_) => Err(ApiError::not_ready(anyhow::anyhow!(
            "not ready: the database did not answer within {READY_TIMEOUT:?}"
        ))),
    }
}
