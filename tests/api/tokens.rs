//! Bearer tokens: missing, expired and every kind of invalid one.

use autoscaler::auth::JwtKeys;
use chrono::{TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, TestApp, error, send};
use crate::on_both_databases;

/// Every endpoint that needs a token, with a body where it takes one.
fn protected_endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    let instance = json!({"instance_id": "mock-t", "instance_type": "t2.micro", "region": "mock", "is_mock": true});
    vec![
        (Method::GET, "/api/auth/me", None),
        (Method::GET, "/api/instances/", None),
        (Method::POST, "/api/instances/", Some(instance)),
        (Method::PATCH, "/api/instances/mock-t/monitor/start", None),
        (Method::PATCH, "/api/instances/mock-t/monitor/stop", None),
        (Method::GET, "/api/metrics/mock-t", None),
        // The account check comes before the query's own validation.
        (Method::GET, "/api/metrics/mock-t?limit=0", None),
        (Method::GET, "/api/metrics/decisions/mock-t", None),
        (
            Method::POST,
            "/api/metrics/simulate",
            Some(json!({"instance_id": "mock-t", "cpu_utilization": 50.0})),
        ),
    ]
}

/// Sends `authorization` as the raw header value to `/api/auth/me`.
async fn me_with_header(app: &TestApp, authorization: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(
        app.request(Method::GET, "/api/auth/me")
            .header("Authorization", authorization),
    )
    .await;
    (status, body)
}

on_both_databases! {
    async fn every_protected_endpoint_without_a_token_is_401_token_is_missing(app) {
        for (method, path, body) in protected_endpoints() {
            let (status, resp) = app.call(method.clone(), path, None, body).await;
            assert_eq!((status, resp), (StatusCode::UNAUTHORIZED, error("Token is missing")), "{method} {path}");
        }
    }

    async fn an_empty_or_bare_bearer_header_is_401_token_is_missing(app) {
        for header in ["Bearer ", "Bearer", "bearer   ", ""] {
            let (status, body) = me_with_header(&app, header).await;

            assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token is missing")), "{header:?}");
        }
    }

    async fn an_expired_token_is_401_token_has_expired_everywhere(app) {
        let token = app.user("late@example.com").await;
        let user = app.user_id(&token).await;
        let now = Utc::now();
        let expired = JwtKeys::new(JWT_SECRET.as_bytes())
            .issue_until(user, now - TimeDelta::hours(25), now - TimeDelta::hours(1))
            .unwrap();

        for (method, path, body) in protected_endpoints() {
            let (status, resp) = app.call(method.clone(), path, Some(&expired), body).await;
            assert_eq!((status, resp), (StatusCode::UNAUTHORIZED, error("Token has expired")), "{method} {path}");
        }
    }

    async fn a_token_expired_a_second_ago_is_already_expired(app) {
        let token = app.user("edge@example.com").await;
        let user = app.user_id(&token).await;
        let now = Utc::now();
        let expired = JwtKeys::new(JWT_SECRET.as_bytes())
            .issue_until(user, now - TimeDelta::hours(24), now - TimeDelta::seconds(1))
            .unwrap();

        let (status, body) = app.get("/api/auth/me", &expired).await;

        assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token has expired")));
    }

    async fn a_token_signed_with_another_secret_is_401_token_is_invalid(app) {
        let token = app.user("forged@example.com").await;
        let user = app.user_id(&token).await;
        let forged = JwtKeys::new(b"some-other-secret-0123456789abcdef").issue(user, Utc::now()).unwrap();

        for (method, path, body) in protected_endpoints() {
            let (status, resp) = app.call(method.clone(), path, Some(&forged), body).await;
            assert_eq!((status, resp), (StatusCode::UNAUTHORIZED, error("Token is invalid")), "{method} {path}");
        }
    }

    async fn an_unsigned_alg_none_token_is_401_token_is_invalid(app) {
        let token = app.user("none@example.com").await;
        // The payload of a genuine token under a header that asks for no signature.
        let payload = token.split('.').nth(1).unwrap();
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}

        for unsigned in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            let (status, body) = app.get("/api/auth/me", &unsigned).await;
            assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token is invalid")), "{unsigned}");
        }
    }

    async fn a_tampered_payload_is_401_token_is_invalid(app) {
        let token_a = app.user("a@example.com").await;
        let token_b = app.user("b@example.com").await;
        // A's header and signature around B's claims.
        let parts_a: Vec<&str> = token_a.split('.').collect();
        let payload_b = token_b.split('.').nth(1).unwrap();
        let tampered = format!("{}.{}.{}", parts_a[0], payload_b, parts_a[2]);

        let (status, body) = app.get("/api/auth/me", &tampered).await;

        assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token is invalid")));
    }

    async fn malformed_tokens_are_401_token_is_invalid(app) {
        for token in ["not-a-token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9", "....", "Bearer"] {
            let (status, body) = app.get("/api/auth/me", token).await;
            assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token is invalid")), "{token}");
        }
    }

    async fn other_authorization_schemes_are_401_token_is_invalid(app) {
        let token = app.user("scheme@example.com").await;
        for header in [
            "Basic dGVzdEBleGFtcGxlLmNvbTp0ZXN0cGFzczEyMw==".to_owned(),
            token.clone(),
            format!("Token {token}"),
        ] {
            let (status, body) = me_with_header(&app, &header).await;
            assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token is invalid")), "{header}");
        }
    }

    async fn the_bearer_scheme_is_case_insensitive(app) {
        let token = app.user("lower@example.com").await;

        let (status, body) = me_with_header(&app, &format!("bearer {token}")).await;

        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn the_token_of_a_deleted_user_is_401_token_is_invalid(app) {
        let token = app.user("gone@example.com").await;
        let user = app.user_id(&token).await;
        assert!(app.store.delete_user(user).await.unwrap());

        for (method, path, body) in protected_endpoints() {
            let (status, resp) = app.call(method.clone(), path, Some(&token), body).await;
            assert_eq!((status, resp), (StatusCode::UNAUTHORIZED, error("Token is invalid")), "{method} {path}");
        }
    }

    async fn a_deleted_users_metrics_are_401_not_an_empty_page(app) {
        let token = app.user("had-metrics@example.com").await;
        app.mock_instance(&token, "mock-had").await;
        app.simulate(&token, json!({"instance_id": "mock-had", "cpu_utilization": 50.0})).await;
        let (status, before) = app.get("/api/metrics/mock-had", &token).await;
        assert_eq!((status, before["metrics"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));

        assert!(app.store.delete_user(app.user_id(&token).await).await.unwrap());

        let (status, body) = app.get("/api/metrics/mock-had", &token).await;
        assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Token is invalid")));
    }
}
