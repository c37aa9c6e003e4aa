//! The dashboard's files at `/`, beside the API.

use reqwest::{Method, StatusCode, header};

use crate::helpers::{error, send};
use crate::on_both_databases;

on_both_databases! {
    async fn the_root_serves_the_dashboard_page(app) {
        let resp = app.request(Method::GET, "/").send().await.unwrap();

        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'self'"));
        let body = resp.text().await.unwrap();
        assert!(body.contains(r#"<script type="module" src="/app.js"></script>"#), "{body}");
    }

    async fn scripts_and_styles_have_their_types_and_revalidate_by_etag(app) {
        for (path, content_type) in [
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/js/charts.js", "text/javascript; charset=utf-8"),
            ("/vendor/uPlot.esm.js", "text/javascript; charset=utf-8"),
            ("/css/app.css", "text/css; charset=utf-8"),
            ("/vendor/uPlot.min.css", "text/css; charset=utf-8"),
        ] {
            let resp = app.request(Method::GET, path).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            let etag = resp.headers()[header::ETAG].clone();

            let again = app.request(Method::GET, path).header(header::IF_NONE_MATCH, etag).send().await.unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        }
    }

    async fn unknown_paths_stay_json_404s(app) {
        for path in ["/api/nope", "/api/", "/nope.js", "/api/metrics/x/y/z"] {
            let method = if path == "/api/" { Method::POST } else { Method::GET };
            let (status, _, body) = send(app.request(method, path)).await;
            let expected = if path == "/api/" { StatusCode::METHOD_NOT_ALLOWED } else { StatusCode::NOT_FOUND };
            assert_eq!(status, expected, "{path}");
            assert!(body["error"].is_string(), "{path}: {body}");
        }
        let (status, _, body) = send(app.request(Method::POST, "/")).await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Not found")));
    }
}
