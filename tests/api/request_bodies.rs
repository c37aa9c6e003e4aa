//! Bodies the server cannot use: malformed, of another media type, or too large.
//! Each is a 4xx with a JSON error, never a 500 or a plain-text body.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error, send};
use crate::on_both_databases;

/// The endpoints that take a JSON body; the token is used where one is needed.
fn json_endpoints(token: &str) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("/api/auth/register", None),
        ("/api/auth/login", None),
        ("/api/instances/", Some(token.to_owned())),
        ("/api/metrics/simulate", Some(token.to_owned())),
    ]
}

/// Posts a raw body with the given content type.
async fn post_raw(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut req = app.request(Method::POST, path).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let (status, _, body) = send(req).await;
    (status, body)
}

on_both_databases! {
    async fn malformed_json_is_400_with_a_json_error(app) {
        let token = app.user("owner@example.com").await;
        for (path, token) in json_endpoints(&token) {
            for raw in ["{", "{\"email\": }", "not json", "{\"a\": 1,}", "[1, 2"] {
                let (status, body) = post_raw(&app, path, token.as_deref(), Some("application/json"), raw).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {raw}: {body}");
                let message = body["error"].as_str().unwrap_or_else(|| panic!("{path} {raw}: no error in {body}"));
                assert!(message.starts_with("Invalid JSON body"), "{path} {raw}: {message}");
                assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
            }
        }
    }

    async fn json_of_the_wrong_shape_is_400_with_a_json_error(app) {
        let token = app.user("owner@example.com").await;
        for (path, token) in json_endpoints(&token) {
            for raw in ["[]", "42", "\"text\"", "null", "{\"email\": 5, \"password\": [], \"instance_id\": 7, \"cpu_utilization\": \"high\"}"] {
                let (status, body) = post_raw(&app, path, token.as_deref(), Some("application/json"), raw).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {raw}: {body}");
                assert!(body["error"].is_string(), "{path} {raw}: {body}");
            }
        }
    }

    async fn an_empty_body_is_400(app) {
        let token = app.user("owner@example.com").await;
        for (path, token) in json_endpoints(&token) {
            for raw in ["", "  \n"] {
                let (status, body) = post_raw(&app, path, token.as_deref(), Some("application/json"), raw).await;
                assert_eq!((status, body), (StatusCode::BAD_REQUEST, error("Request body must be a JSON object")), "{path} {raw:?}");
            }
        }
    }

    async fn a_text_plain_body_is_415(app) {
        let token = app.user("owner@example.com").await;
        let valid = json!({"email": "x@example.com", "password": "testpass123", "instance_id": "mock-1", "cpu_utilization": 1.0}).to_string();
        for (path, token) in json_endpoints(&token) {
            for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
                let (status, body) = post_raw(&app, path, token.as_deref(), Some(content_type), valid.clone()).await;
                assert_eq!(
                    (status, body),
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, error("Content-Type must be application/json")),
                    "{path} {content_type}"
                );
            }
        }
        assert!(app.store.user_by_email("x@example.com").await.unwrap().is_none());
    }

    async fn a_json_body_without_content_type_is_accepted(app) {
        let body = json!({"email": "curl@example.com", "password": "testpass123"}).to_string();

        let (status, resp) = post_raw(&app, "/api/auth/register", None, None, body).await;

        assert_eq!(status, StatusCode::CREATED, "{resp}");
    }

    async fn json_with_a_charset_is_accepted(app) {
        let body = json!({"email": "utf8@example.com", "password": "testpass123"}).to_string();

        let (status, resp) = post_raw(&app, "/api/auth/register", None, Some("application/json; charset=utf-8"), body).await;

        assert_eq!(status, StatusCode::CREATED, "{resp}");
    }

    async fn a_body_over_1_mib_is_413_with_a_json_error(app) {
        let token = app.user("owner@example.com").await;
        let padding = "x".repeat(1024 * 1024);
        let huge = json!({"email": "big@example.com", "password": padding, "instance_id": "mock-1", "cpu_utilization": 1.0}).to_string();
        for (path, token) in json_endpoints(&token) {
            let (status, body) = post_raw(&app, path, token.as_deref(), Some("application/json"), huge.clone()).await;
            assert_eq!(
                (status, body),
                (StatusCode::PAYLOAD_TOO_LARGE, error("Request body is too large (the limit is 1 MiB)")),
                "{path}"
            );
        }
        assert!(app.store.user_by_email("big@example.com").await.unwrap().is_none());
    }

    async fn a_body_just_under_1_mib_is_read(app) {
        // Unknown fields are ignored, so a large but valid body gets past the limit.
        let padding = "x".repeat(1024 * 1024 - 200);
        let body = json!({"email": "near@example.com", "password": "testpass123", "padding": padding}).to_string();
        assert!(body.len() < 1024 * 1024);

        let (status, resp) = post_raw(&app, "/api/auth/register", None, Some("application/json"), body).await;

        assert_eq!(status, StatusCode::CREATED, "{resp}");
    }
}
