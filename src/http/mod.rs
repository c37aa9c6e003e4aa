//! The HTTP API: routes per resource, extractors, errors and the OpenAPI document.
//! The only module that knows axum.

mod auth;
mod dashboard;
mod decisions;
mod docs;
mod error;
mod extract;
mod health;
mod instances;
mod metrics;
mod observe;
mod page;
mod policy;
mod route;
mod series;
mod simulate;
mod targets;
pub mod time;
mod webhooks;

pub use docs::ApiDoc;
pub use error::{ApiError, ErrorBody};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{JwtKeys, LoginLimiter};
use crate::config::Settings;
use crate::signals::Signals;
use crate::store::Store;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub keys: JwtKeys,
    pub settings: Arc<Settings>,
    pub login_limiter: LoginLimiter,
    /// This application's Prometheus metrics.
    pub signals: Arc<Signals>,
    /// The clouds scale targets live in (checked live when one is attached).
    pub clouds: crate::actuate::Clouds,
}

/// Admission control: at most `permits` requests in flight (others get a fast 503
/// instead of queueing without bound), each answered within `timeout`.
#[derive(Clone)]
struct Admission {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

async fn admit(State(admission): State<Admission>, req: Request, next: Next) -> Response {
    let Ok(_permit) = admission.permits.clone().try_acquire_owned() else {
        return ApiError::busy().into_response();
    };
    match tokio::time::timeout(admission.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::timed_out().into_response(),
    }
}

/// Every endpoint, routed and documented: each resource's `routes()` on top of
/// what the document says beyond its operations.
fn api() -> route::ApiRouter {
    [
        health::routes(),
        auth::routes(),
        instances::routes(),
        metrics::routes(),
        decisions::routes(),
        simulate::routes(),
        policy::routes(),
        series::routes(),
        observe::routes(),
        webhooks::routes(),
        targets::routes(),
    ]
    .into_iter()
    .fold(
        route::ApiRouter::with_openapi(ApiDoc::openapi()),
        route::ApiRouter::merge,
    )
}

/// The OpenAPI document served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The whole application: API routes, Swagger UI, CORS, limits and error shapes.
pub fn router(state: AppState) -> Router {
    let admission = Admission {
        permits: Arc::new(Semaphore::new(state.settings.max_concurrent_requests)),
        timeout: state.settings.request_timeout,
    };
    let (api, doc) = api().split_for_parts();
    let api = api
        .route_layer(middleware::from_fn(observe::mark_route))
        .fallback(dashboard::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Swagger UI is routed as asked for: it redirects `/api/docs` to `/api/docs/`,
    // which trimming would send back. Everything else is trimmed, then routed.
    let app = Router::new()
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", doc))
        .route_layer(middleware::from_fn(observe::mark_route))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback_service(api.map_request(route::trim_trailing_slash));
    // The headers are listed, not `*`: browsers never let a wildcard cover
    // Authorization, so a dashboard's bearer token would fail its preflight.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600));

    app.layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(admission, admit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(
            state.signals,
            observe::track,
        ))
        .layer(cors)
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
