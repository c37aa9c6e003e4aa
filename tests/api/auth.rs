use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::error;
use crate::on_both_databases;

on_both_databases! {
    async fn register_login_and_me(app) {
        let creds = json!({"email": "test@example.com", "password": "testpass123"});
        let (status, body) = app.post("/api/auth/register", None, creds.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["message"], "User registered successfully");
        let user_id = body["user_id"].as_str().unwrap().to_owned();

        let (status, body) = app.post("/api/auth/login", None, creds).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["message"], "Login successful");
        let token = body["token"].as_str().unwrap();

        let (status, body) = app.get("/api/auth/me", token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["user_id"], user_id.as_str());
        assert_eq!(body["email"], "test@example.com");
        assert_eq!(body["instance_count"], 0);
        assert_eq!(body["monitoring_count"], 0);
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'), "{body}");
    }

    async fn duplicate_email_is_409(app) {
        app.user("dup@example.com").await;
        let (status, body) = app
            .post("/api/auth/register", None, json!({"email": "DUP@example.com", "password": "another-pass"}))
            .await;
        assert_eq!((status, body), (StatusCode::CONFLICT, error("User with this email already exists")));
    }

    async fn passwords_are_stored_only_as_argon2id_hashes(app) {
        app.user("hash@example.com").await;
        let stored = app.store.user_by_email("hash@example.com").await.unwrap().unwrap();
        assert_ne!(stored.password_hash, "testpass123");
        assert!(!stored.password_hash.contains("testpass123"));
        assert!(stored.password_hash.starts_with("$argon2id$"), "{}", stored.password_hash);
    }

    async fn wrong_password_and_unknown_email_are_both_401(app) {
        app.user("who@example.com").await;
        for creds in [
            json!({"email": "who@example.com", "password": "wrong-password"}),
            json!({"email": "nobody@example.com", "password": "testpass123"}),
        ] {
            let (status, body) = app.post("/api/auth/login", None, creds).await;
            assert_eq!((status, body), (StatusCode::UNAUTHORIZED, error("Invalid credentials")));
        }
    }
}
