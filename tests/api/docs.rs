//! The OpenAPI document and Swagger UI.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::on_both_databases;

on_both_databases! {
    async fn the_openapi_document_lists_every_operation(app) {
        let (status, doc) = app.call(Method::GET, "/api/openapi.json", None, None).await;

        assert_eq!(status, StatusCode::OK);
        let paths = doc["paths"].as_object().expect("paths object");
        let keys: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "/api/",
                "/api/auth/register",
                "/api/auth/login",
                "/api/auth/me",
                "/api/instances/",
                "/api/instances/{instance_id}",
                "/api/instances/{instance_id}/monitor/start",
                "/api/instances/{instance_id}/monitor/stop",
                "/api/metrics/{instance_id}",
                "/api/metrics/decisions/{instance_id}",
                "/api/metrics/simulate",
                "/api/metrics/{instance_id}/series",
                "/api/health/live",
                "/api/health/ready",
                "/metrics",
                "/api/webhooks",
                "/api/webhooks/{id}",
                "/api/webhooks/{id}/deliveries",
                "/api/webhooks/{id}/test",
                "/api/instances/{instance_id}/policy",
                "/api/instances/{instance_id}/backtest",
                "/api/instances/{instance_id}/target",
                "/api/instances/{instance_id}/actuations",
            ])
        );
        let operations: BTreeSet<(String, &str)> = paths
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.as_str())))
            .filter(|(m, _)| ["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&m.as_str()))
            .collect();
        assert_eq!(
            operations,
            BTreeSet::from([
                ("GET".to_owned(), "/api/"),
                ("POST".to_owned(), "/api/auth/register"),
                ("POST".to_owned(), "/api/auth/login"),
                ("GET".to_owned(), "/api/auth/me"),
                ("POST".to_owned(), "/api/instances/"),
                ("GET".to_owned(), "/api/instances/"),
                ("DELETE".to_owned(), "/api/instances/{instance_id}"),
                ("PATCH".to_owned(), "/api/instances/{instance_id}/monitor/start"),
                ("PATCH".to_owned(), "/api/instances/{instance_id}/monitor/stop"),
                ("GET".to_owned(), "/api/metrics/{instance_id}"),
                ("GET".to_owned(), "/api/metrics/decisions/{instance_id}"),
                ("POST".to_owned(), "/api/metrics/simulate"),
                ("GET".to_owned(), "/api/metrics/{instance_id}/series"),
                ("GET".to_owned(), "/api/health/live"),
                ("GET".to_owned(), "/api/health/ready"),
                ("GET".to_owned(), "/metrics"),
                ("POST".to_owned(), "/api/webhooks"),
                ("GET".to_owned(), "/api/webhooks"),
                ("DELETE".to_owned(), "/api/webhooks/{id}"),
                ("GET".to_owned(), "/api/webhooks/{id}/deliveries"),
                ("POST".to_owned(), "/api/webhooks/{id}/test"),
                ("GET".to_owned(), "/api/instances/{instance_id}/policy"),
                ("PUT".to_owned(), "/api/instances/{instance_id}/policy"),
                ("DELETE".to_owned(), "/api/instances/{instance_id}/policy"),
                ("POST".to_owned(), "/api/instances/{instance_id}/backtest"),
                ("PUT".to_owned(), "/api/instances/{instance_id}/target"),
                ("GET".to_owned(), "/api/instances/{instance_id}/target"),
                ("DELETE".to_owned(), "/api/instances/{instance_id}/target"),
                ("GET".to_owned(), "/api/instances/{instance_id}/actuations"),
            ])
        );
    }

    async fn the_openapi_document_has_a_bearer_scheme_used_by_protected_operations(app) {
        let (_, doc) = app.call(Method::GET, "/api/openapi.json", None, None).await;

        let scheme = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        assert_eq!(doc["paths"]["/api/auth/me"]["get"]["security"], json!([{"bearer": []}]));
        assert_eq!(doc["paths"]["/api/metrics/simulate"]["post"]["security"], json!([{"bearer": []}]));
        assert!(doc["paths"]["/api/auth/login"]["post"].get("security").is_none());
    }

    async fn swagger_ui_is_served_as_html(app) {
        for path in ["/api/docs/", "/api/docs"] {
            let resp = app.request(Method::GET, path).send().await.unwrap();

            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
            let html = resp.text().await.unwrap();
            assert!(html.contains("swagger-ui"), "{path}: {html}");
        }
    }
}
