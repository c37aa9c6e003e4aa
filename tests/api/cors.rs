//! CORS: browsers on any origin may call the API.

use reqwest::{Method, StatusCode};

use crate::helpers::send;
use crate::on_both_databases;

const ORIGIN: &str = "http://dashboard.example";

on_both_databases! {
    async fn a_preflight_from_any_origin_is_allowed(app) {
        for path in ["/api/auth/login", "/api/instances/", "/api/metrics/simulate"] {
            let resp = app
                .request(Method::OPTIONS, path)
                .header("Origin", ORIGIN)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "authorization, content-type")
                .send()
                .await
                .unwrap();

            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            let headers = resp.headers();
            assert_eq!(headers["access-control-allow-origin"], "*", "{path}");
            let methods = headers["access-control-allow-methods"].to_str().unwrap();
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                assert!(methods.contains(method), "{path}: {methods}");
            }
            let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
            // Listed by name: a `*` would not cover Authorization in a browser.
            assert!(
                allowed_headers.contains("authorization") && allowed_headers.contains("content-type"),
                "{path}: {allowed_headers}"
            );
        }
    }

    async fn a_preflight_for_patch_is_allowed(app) {
        let resp = app
            .request(Method::OPTIONS, "/api/instances/mock-1/monitor/start")
            .header("Origin", ORIGIN)
            .header("Access-Control-Request-Method", "PATCH")
            .send()
            .await
            .unwrap();

        assert!(resp.status().is_success(), "{}", resp.status());
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    }

    async fn a_preflight_for_delete_is_allowed_with_the_bearer_header(app) {
        let resp = app
            .request(Method::OPTIONS, "/api/instances/mock-1")
            .header("Origin", ORIGIN)
            .header("Access-Control-Request-Method", "DELETE")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
            .await
            .unwrap();

        assert!(resp.status().is_success(), "{}", resp.status());
        let headers = resp.headers();
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("DELETE"));
        assert!(headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase().contains("authorization"));
    }

    async fn responses_to_a_cross_origin_get_carry_the_allow_origin_header(app) {
        let (status, headers, _) = send(app.request(Method::GET, "/api/").header("Origin", ORIGIN)).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["access-control-allow-origin"], "*");
    }

    async fn error_responses_carry_the_allow_origin_header_too(app) {
        let (status, headers, _) = send(app.request(Method::GET, "/api/auth/me").header("Origin", ORIGIN)).await;

        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["access-control-allow-origin"], "*");
    }
}
