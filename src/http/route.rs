//! One registration per endpoint, and trailing slashes handled once.
//!
//! `routes!(handler)` (utoipa-axum) reads the handler's `#[utoipa::path]`: its path,
//! methods, operation and schemas. [`Endpoints::endpoints`] routes it and adds it to
//! the OpenAPI document in one call, so the document cannot miss a route.

use axum::extract::{OriginalUri, Request};
use axum::http::Uri;
use axum::http::uri::PathAndQuery;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use super::AppState;

/// A resource's routes together with their documentation.
pub(super) type ApiRouter = OpenApiRouter<AppState>;

/// Registers endpoints documented with `#[utoipa::path]`.
pub(super) trait Endpoints {
    /// Adds the handlers of one path (`routes!(list_x, create_x)`): they are routed
    /// at that path without its trailing slash (the form [`trim_trailing_slash`] gives
    /// every request) and documented at the path as written, so `/api/instances/`
    /// stays the contract's spelling.
    fn endpoints(self, routes: UtoipaMethodRouter<AppState>) -> Self;
}

impl Endpoints for ApiRouter {
    fn endpoints(mut self, (schemas, paths, method_router): UtoipaMethodRouter<AppState>) -> Self {
        for path in paths.paths.keys() {
            self = self.route(routed_path(path), method_router.clone());
        }
        let doc = self.get_openapi_mut();
        doc.paths.merge(paths);
        doc.components
            .get_or_insert_with(Default::default)
            .schemas
            .extend(schemas);
        self
    }
}

/// The path a documented path is routed at: without one trailing slash, `/` aside.
fn routed_path(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

/// Before routing, `/api/instances/` becomes `/api/instances` (one slash, the query
/// kept), so every route answers with and without it while registered once. The
/// original URI stays available as [`OriginalUri`] for the dashboard's files, which
/// are looked up as asked for. Only requests that end in a slash pay for the rewrite.
pub(super) fn trim_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    let trimmed = routed_path(path);
    if trimmed.len() == path.len() {
        return req;
    }
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{trimmed}?{query}"),
        None => trimmed.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        let original = std::mem::replace(req.uri_mut(), uri);
        req.extensions_mut().insert(OriginalUri(original));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(uri: &str) -> (String, String) {
        let req = trim_trailing_slash(
            Request::builder()
                .uri(uri)
                .body(Default::default())
                .unwrap(),
        );
        let original = req
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| req.uri().to_string(), |o| o.0.to_string());
        (req.uri().to_string(), original)
    }

    #[test]
    fn one_trailing_slash_is_trimmed_and_the_query_kept() {
        assert_eq!(routed("/api/instances/").0, "/api/instances");
        assert_eq!(
            routed("/api/metrics/x/?limit=5").0,
            "/api/metrics/x?limit=5"
        );
        assert_eq!(routed("/api/metrics/x//").0, "/api/metrics/x/");
        assert_eq!(
            routed("/api/metrics/x/?limit=5").1,
            "/api/metrics/x/?limit=5"
        );
    }

    #[test]
    fn the_root_and_paths_without_a_slash_are_left_alone() {
        assert_eq!(routed("/"), ("/".to_owned(), "/".to_owned()));
        assert_eq!(routed("/api/instances?page=2").0, "/api/instances?page=2");
        assert_eq!(routed_path("/api/"), "/api");
        assert_eq!(routed_path("/"), "/");
    }
}
