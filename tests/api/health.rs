use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::error;
use crate::on_both_databases;

on_both_databases! {
    async fn health_check_answers_with_and_without_trailing_slash(app) {
        for path in ["/api/", "/api"] {
            let (status, body) = app.call(Method::GET, path, None, None).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, json!({"message": "Cloud Resource Autoscaler API is running", "version": "1.0"}));
        }
    }

    async fn unknown_routes_and_methods_answer_json_errors(app) {
        let (status, body) = app.call(Method::GET, "/api/nope", None, None).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Not found")));
        let (status, body) = app.call(Method::DELETE, "/api/", None, None).await;
        assert_eq!((status, body), (StatusCode::METHOD_NOT_ALLOWED, error("Method not allowed")));
    }
}
