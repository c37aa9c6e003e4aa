//! `GET /api/`: is the service up.

use axum::Json;
use axum::routing::{MethodRouter, get};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![("/api/", get(health))]
}

/// Health check answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "Cloud Resource Autoscaler API is running")]
    pub message: &'static str,
    #[schema(example = "1.0")]
    pub version: &'static str,
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
