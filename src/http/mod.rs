//! The HTTP API: routes per resource, extractors, errors and the OpenAPI document.
//! The only module that knows axum.

mod auth;
mod dashboard;
mod docs;
mod error;
mod extract;
mod health;
mod instances;
mod metrics;
mod observe;
mod policy;
mod series;
mod time;
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
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;
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
        return ApiError::Unavailable("The server is busy; please retry shortly".into())
            .into_response();
    };
    match tokio::time::timeout(admission.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(
            "The request took too long and was abandoned; please retry".into(),
        )
        .into_response(),
    }
}

/// Routes `path` and `path/` alike (the contract's clients use both).
fn both<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    path: &str,
    method_router: axum::routing::MethodRouter<S>,
) -> Router<S> {
    let trimmed = path.trim_end_matches('/');
    router
        .route(trimmed, method_router.clone())
        .route(&format!("{trimmed}/"), method_router)
}

/// The whole application: API routes, Swagger UI, CORS, limits and error shapes.
pub fn router(state: AppState) -> Router {
    let admission = Admission {
        permits: Arc::new(Semaphore::new(state.settings.max_concurrent_requests)),
        timeout: state.settings.request_timeout,
    };
    let api = [
        health::routes(),
        auth::routes(),
        instances::routes(),
        metrics::routes(),
        policy::routes(),
        series::routes(),
        observe::routes(),
        webhooks::routes(),
    ]
    .into_iter()
    .fold(Router::new(), |router, routes| {
        routes
            .into_iter()
            .fold(router, |router, (path, method_router)| {
                both(router, path, method_router)
            })
    });
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

    let signals = state.signals.clone();
    api.merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
        .route_layer(middleware::from_fn(observe::mark_route))
        .fallback(dashboard::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(admission, admit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(middleware::from_fn_with_state(signals, observe::track))
        .layer(TraceLayer::new_for_http())
        .layer(cors)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("Method not allowed".into())
}
