//! The dashboard: the plain HTML, CSS and JavaScript modules of `static/`, embedded
//! in the binary and served at `/` on the API's own origin. Anything under `/api`
//! stays the API's, so an unknown API path is still a JSON 404.

use axum::extract::OriginalUri;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use super::ApiError;

/// `static/` at build time (read from disk in debug builds, so edits show on reload).
#[derive(Embed)]
#[folder = "static/"]
struct Assets;

/// The page may only load its own scripts and styles and talk to its own origin.
/// uPlot sizes its elements with inline styles, hence `'unsafe-inline'` for styles.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The router's fallback: a dashboard file for a GET outside `/api`, else the API's
/// JSON 404. Files are looked up by the path as requested, before its trailing slash
/// was trimmed for routing: `/app.js/` names no file.
pub(super) async fn fallback(
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    let api = path == "/api" || path.starts_with("/api/");
    if api || !(method == Method::GET || method == Method::HEAD) {
        return ApiError::not_found().into_response();
    }
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        name => name,
    };
    let Some(file) = Assets::get(name) else {
        return ApiError::not_found().into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    // No build step, so file names carry no version: browsers revalidate every
    // time and get a 304 while the file is unchanged.
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = file.data.into_owned().into_response();
        let mime = file.metadata.mimetype();
        let content_type = if mime.starts_with("text/") || mime == "application/json" {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_owned()
        };
        if let Ok(v) = HeaderValue::from_str(&content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        response
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if name.ends_with(".html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

fn etag(hash: &[u8]) -> String {
    use std::fmt::Write;
    let mut tag = String::with_capacity(2 + 2 * hash.len());
    tag.push('"');
    for b in &hash[..16] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}
