//! Request metrics and `GET /metrics`, the Prometheus scrape endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, Span, field};
use utoipa_axum::routes;

use super::error::ErrorCause;
use super::route::{ApiRouter, Endpoints};
use super::{ApiError, AppState};
use crate::signals::{self, Signals, UNMATCHED_ROUTE};

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new().endpoints(routes!(metrics))
}

/// The route template a request matched, handed from the router out to [`track`].
#[derive(Clone)]
struct RouteLabel(Arc<str>);

/// Inside the router (a route layer), where the matched route is known: names it on
/// the request's span and passes its template out on the response. Requests no route
/// matched never come through here.
pub(super) async fn mark_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|path| {
        Span::current().record("route", path.as_str());
        RouteLabel(Arc::from(path.as_str()))
    });
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Outermost but for CORS: counts and times every answer, including the 503s of
/// admission control and the 404s of unmatched paths, and runs the request in its
/// span (method, matched route, user id). The span and the closing event (status,
/// duration) are DEBUG, so at the default INFO level neither is built and the request
/// pays nothing for them; a 5xx is still logged at ERROR with the same fields.
pub(super) async fn track(
    State(signals): State<Arc<Signals>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let in_flight = signals.request_started();
    let method = method_label(req.method());
    let span = tracing::debug_span!(
        "request",
        method,
        route = field::Empty,
        user_id = field::Empty,
    );
    let response = next.run(req).instrument(span.clone()).await;
    // Out of flight before it is counted answered, so the two never both count it.
    drop(in_flight);
    let took = started.elapsed();
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or(UNMATCHED_ROUTE, |r| route_label(&r.0));
    let status = response.status().as_u16();
    signals.record_http(method, route, status, took);
    let duration_ms = took.as_secs_f64() * 1000.0;
    // The one place an error is logged: with its cause when the handler's
    // `ApiError` made the response, else (a panic caught, a layer's own answer)
    // by its status.
    let logged = response
        .extensions()
        .get::<ErrorCause>()
        .is_some_and(|ErrorCause(e)| span.in_scope(|| e.log(method, route, status, duration_ms)));
    if !logged {
        if response.status().is_server_error() {
            tracing::error!(parent: &span, method, route, status, duration_ms, "answered with a server error");
        } else {
            tracing::debug!(parent: &span, status, duration_ms, "request finished");
        }
    }
    response
}

/// Swagger UI's routes keep their trailing slash (`/api/docs/`); like every other
/// route they count as the form without it.
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
        if !given
            .is_some_and(|token| constant_time_eq(token.as_bytes(), expected.expose().as_bytes()))
        {
            return Err(ApiError::metrics_token_required());
        }
    }
    let monitored = tokio::time::timeout(GAUGE_QUERY_TIMEOUT, state.store.monitored_instances())
        .await
        .ok()
        .and_then(Result::ok);
    state
        .signals
        .set_gauges(monitored, state.store.pool_connections());
    if let Ok(Ok(states)) =
        tokio::time::timeout(GAUGE_QUERY_TIMEOUT, state.store.targets_by_state()).await
    {
        state.signals.set_target_states(&states);
    }
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
