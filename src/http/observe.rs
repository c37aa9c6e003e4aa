//! Request metrics and `GET /metrics`, the Prometheus scrape endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};

use super::{ApiError, AppState};
use crate::signals::{self, Signals, UNMATCHED_ROUTE};

pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![("/metrics", get(metrics))]
}

/// The route template a request matched, handed from the router out to [`track`].
#[derive(Clone)]
struct RouteLabel(Arc<str>);

/// Inside the router (a route layer), where the matched route is known: passes its
/// template out on the response. Requests no route matched never come through here.
pub(super) async fn mark_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| RouteLabel(Arc::from(path.as_str())));
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Outermost but for tracing and CORS: counts and times every answer, including the
/// 503s of admission control and the 404s of unmatched paths.
pub(super) async fn track(
    State(signals): State<Arc<Signals>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.run(req).await;
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or(UNMATCHED_ROUTE, |r| route_label(&r.0));
    signals.record_http(method, route, response.status().as_u16(), started.elapsed());
    response
}

/// Every route is registered with and without a trailing slash (see `both`); both
/// count as the form without it.
fn route_label(template: &str) -> &str {
    match template.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

/// A fixed set of values, so a client inventing methods cannot add series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// How long a scrape waits for the monitored-instances count before leaving the
/// gauge at its last value.
const GAUGE_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "The metrics in the Prometheus text format 0.0.4",
            content_type = "text/plain", body = String),
        (status = 401, description = "METRICS_TOKEN is set and the request lacks it",
            body = super::ErrorBody, example = json!({"error": "A valid metrics token is required"})),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.settings.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if !given.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
            return Err(ApiError::Unauthorized(
                "A valid metrics token is required".into(),
            ));
        }
    }
    let monitored = tokio::time::timeout(GAUGE_QUERY_TIMEOUT, state.store.monitored_instances())
        .await
        .ok()
        .and_then(Result::ok);
    state
        .signals
        .set_gauges(monitored, state.store.pool_connections());
    Ok((
        [(header::CONTENT_TYPE, signals::CONTENT_TYPE)],
        state.signals.render(),
    )
        .into_response())
}

/// Compares without stopping at the first difference, so timing tells nothing of
/// how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_variants_share_a_label() {
        assert_eq!(route_label("/api/instances/"), "/api/instances");
        assert_eq!(route_label("/api/"), "/api");
        assert_eq!(
            route_label("/api/metrics/{instance_id}"),
            "/api/metrics/{instance_id}"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
