//! Registration, login and `/api/auth/me`.

use autoscaler::auth::JwtKeys;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{JWT_SECRET, assert_recent, error, take_time, take_uuid};
use crate::on_both_databases;

on_both_databases! {
    async fn register_answers_201_with_a_message_and_the_new_user_id(app) {
        let creds = json!({"email": "test@example.com", "password": "testpass123"});

        let (status, mut body) = app.post("/api/auth/register", None, creds).await;

        assert_eq!(status, StatusCode::CREATED);
        let user_id = take_uuid(&mut body, "/user_id");
        assert_eq!(body, json!({"message": "User registered successfully", "user_id": "<uuid>"}));
        let stored = app.store.user_by_id(user_id).await.unwrap().expect("user stored");
        assert_eq!(stored.email, "test@example.com");
    }

    async fn login_answers_200_with_a_24_hour_token_for_that_user(app) {
        let creds = json!({"email": "test@example.com", "password": "testpass123"});
        let (_, registered) = app.post("/api/auth/register", None, creds.clone()).await;

        let (status, mut body) = app.post("/api/auth/login", None, creds).await;

        assert_eq!(status, StatusCode::OK);
        let token = body["token"].as_str().expect("token").to_owned();
        body["token"] = json!("<token>");
        assert_eq!(body, json!({"message": "Login successful", "token": "<token>"}));
        let claims = JwtKeys::new(JWT_SECRET.as_bytes()).verify(&token).expect("valid token");
        assert_eq!(claims.sub.to_string(), registered["user_id"].as_str().unwrap());
        assert_eq!(claims.exp - claims.iat, 24 * 3600);
    }

    async fn me_shows_the_user_and_counts_instances_and_monitored_ones(app) {
        let token = app.user("me@example.com").await;
        let user_id = app.store.user_by_email("me@example.com").await.unwrap().unwrap().id;
        app.mock_instance(&token, "mock-me-1").await;
        app.mock_instance(&token, "mock-me-2").await;
        let (status, _) = app.patch("/api/instances/mock-me-1/monitor/start", &token).await;
        assert_eq!(status, StatusCode::OK);

        let (status, mut body) = app.get("/api/auth/me", &token).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(take_uuid(&mut body, "/user_id"), user_id);
        assert_recent(take_time(&mut body, "/created_at"), 60);
        assert_eq!(
            body,
            json!({
                "user_id": "<uuid>",
                "email": "me@example.com",
                "created_at": "<timestamp>",
                "instance_count": 2,
                "monitoring_count": 1,
            })
        );
    }

    async fn me_of_a_new_user_counts_zero(app) {
        let token = app.user("new@example.com").await;

        let (status, body) = app.get("/api/auth/me", &token).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!((&body["instance_count"], &body["monitoring_count"]), (&json!(0), &json!(0)));
    }

    async fn emails_are_matched_case_insensitively_and_trimmed(app) {
        app.user("case@example.com").await;

        let (status, body) = app
            .post("/api/auth/login", None, json!({"email": "  CASE@Example.com ", "password": "testpass123"}))
            .await;

        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn duplicate_email_is_409(app) {
        app.user("dup@example.com").await;

        let (status, body) = app
            .post("/api/auth/register", None, json!({"email": "DUP@example.com", "password": "another-pass"}))
            .await;

        assert_eq!((status, body), (StatusCode::CONFLICT, error("User with this email already exists")));
    }

    async fn register_and_login_without_email_or_password_are_400(app) {
        for path in ["/api/auth/register", "/api/auth/login"] {
            for body in [
                json!({}),
                json!({"email": "a@example.com"}),
                json!({"password": "testpass123"}),
                json!({"email": "", "password": "testpass123"}),
                json!({"email": "a@example.com", "password": ""}),
                json!({"email": null, "password": null}),
            ] {
                let (status, resp) = app.post(path, None, body.clone()).await;
                assert_eq!(
                    (status, resp),
                    (StatusCode::BAD_REQUEST, error("Email and password are required")),
                    "{path} {body}"
                );
            }
        }
        assert!(app.store.user_by_email("a@example.com").await.unwrap().is_none());
    }

    async fn register_rejects_an_invalid_email(app) {
        for email in ["plain", "a@b", "@example.com", "a b@example.com", "a@@example.com"] {
            let (status, body) = app
                .post("/api/auth/register", None, json!({"email": email, "password": "testpass123"}))
                .await;
            assert_eq!(
                (status, body),
                (StatusCode::BAD_REQUEST, error("Email must be a valid email address")),
                "{email}"
            );
        }
    }

    async fn register_rejects_a_password_under_8_characters(app) {
        let (status, body) = app
            .post("/api/auth/register", None, json!({"email": "short@example.com", "password": "1234567"}))
            .await;

        assert_eq!((status, body), (StatusCode::BAD_REQUEST, error("Password must be at least 8 characters long")));
        assert!(app.store.user_by_email("short@example.com").await.unwrap().is_none());
    }

    async fn passwords_are_stored_only_as_argon2id_hashes(app) {
        app.user("hash@example.com").await;

        let stored = app.store.user_by_email("hash@example.com").await.unwrap().unwrap();

        assert!(!stored.password_hash.expose().contains("testpass123"));
        assert!(stored.password_hash.expose().starts_with("$argon2id$"), "{}", stored.password_hash.expose());
    }

    async fn wrong_password_and_unknown_email_are_both_401_invalid_credentials(app) {
        app.user("who@example.com").await;
        for creds in [
            json!({"email": "who@example.com", "password": "wrong-password"}),
            json!({"email": "nobody@example.com", "password": "testpass123"}),
        ] {
            let (status, body) = app.post("/api/auth/login", None, creds).await;
            assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Invalid credentials")));
        }
    }

    async fn auth_paths_answer_with_a_trailing_slash_too(app) {
        let creds = json!({"email": "slash@example.com", "password": "testpass123"});

        let (status, _) = app.post("/api/auth/register/", None, creds.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = app.post("/api/auth/login/", None, creds).await;
        assert_eq!(status, StatusCode::OK);
        let token = body["token"].as_str().unwrap();
        let (status, body) = app.call(Method::GET, "/api/auth/me/", Some(token), None).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["email"], "slash@example.com");
    }
}
