//! Brute-force protection on login.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, error, send, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_too_many_wrong_passwords_even_the_right_one_is_429_with_retry_after() {
    let app = spawn_app_with(Db::Sqlite, &[("LOGIN_ATTEMPTS_PER_WINDOW", "3")])
        .await
        .unwrap();
    app.user("target@example.com").await;
    let wrong = json!({"email": "target@example.com", "password": "wrong-password"});
    for _ in 0..3 {
        let (status, body) = app.post("/api/auth/login", None, wrong.clone()).await;
        assert_eq!(
            (status, body),
            (StatusCode::UNAUTHORIZED, error("Invalid credentials"))
        );
    }

    let right = json!({"email": "target@example.com", "password": "testpass123"});
    let (status, headers, body) = send(
        app.request(reqwest::Method::POST, "/api/auth/login")
            .json(&right),
    )
    .await;

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        body,
        error(&format!(
            "Too many failed login attempts; try again in {retry_after} seconds"
        ))
    );
}

/// Two replicas on one PostgreSQL count failures together: spreading guesses over
/// them buys an attacker nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn replicas_share_one_failed_login_allowance() {
    let limit = [("LOGIN_ATTEMPTS_PER_WINDOW", "3")];
    let Some(a) = spawn_app_with(Db::Postgres, &limit).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    let b = a.replica(&limit).await;
    a.user("shared@example.com").await;
    let wrong = json!({"email": "shared@example.com", "password": "wrong-password"});
    for app in [&a, &b, &a] {
        let (status, _) = app.post("/api/auth/login", None, wrong.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    let right = json!({"email": "shared@example.com", "password": "testpass123"});
    for app in [&a, &b] {
        let (status, body) = app.post("/api/auth/login", None, right.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
}

/// A successful login clears the email's counter on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn a_success_on_one_replica_resets_the_email_on_the_other() {
    let limit = [("LOGIN_ATTEMPTS_PER_WINDOW", "3")];
    let Some(a) = spawn_app_with(Db::Postgres, &limit).await else {
        panic!("TEST_DATABASE_URL is not set");
    };
    let b = a.replica(&limit).await;
    a.user("reset@example.com").await;
    let wrong = json!({"email": "reset@example.com", "password": "wrong-password"});
    let right = json!({"email": "reset@example.com", "password": "testpass123"});
    for _ in 0..2 {
        a.post("/api/auth/login", None, wrong.clone()).await;
    }
    assert_eq!(
        b.post("/api/auth/login", None, right).await.0,
        StatusCode::OK
    );

    for _ in 0..2 {
        let (status, _) = b.post("/api/auth/login", None, wrong.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the count started again");
    }
}
