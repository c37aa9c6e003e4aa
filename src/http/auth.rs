//! Registration, login and the current user.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{BodyErrors, ErrorBody, OnConflict};
use super::extract::{ApiJson, AuthUser};
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::auth;

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new()
        .endpoints(routes!(register))
        .endpoints(routes!(login))
        .endpoints(routes!(me))
}

/// Email and password, as sent to register and login.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CredentialsRequest {
    #[schema(required = true, value_type = String, format = Email, max_length = 254, example = "user@example.com")]
    pub email: Option<String>,
    /// At least 8 characters.
    #[schema(required = true, value_type = String, min_length = 8, max_length = 1024, example = "securepassword123")]
    pub password: Option<String>,
}

/// Longest password accepted: argon2 cost grows with it.
const MAX_PASSWORD_LEN: usize = 1024;

/// Credentials that passed validation.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Trimmed and lower-cased, so `A@x.io` and `a@x.io` are one account.
    pub email: String,
    pub password: String,
}

impl CredentialsRequest {
    /// Both fields present and non-empty; the shape rules are for registration only,
    /// so a login never reveals them.
    fn require(self) -> Result<Credentials, ApiError> {
        match (self.email, self.password) {
            (Some(email), Some(password)) if !email.trim().is_empty() && !password.is_empty() => {
                Ok(Credentials {
                    email: email.trim().to_lowercase(),
                    password,
                })
            }
            _ => Err(ApiError::credentials_required()),
        }
    }

    /// Validates a registration: a plausible email and a password of 8 or more characters.
    pub fn for_registration(self) -> Result<Credentials, ApiError> {
        let creds = self.require()?;
        if !is_email(&creds.email) {
            return Err(ApiError::bad_email());
        }
        let chars = creds.password.chars().count();
        if chars < 8 {
            return Err(ApiError::password_too_short());
        }
        if creds.password.len() > MAX_PASSWORD_LEN {
            return Err(ApiError::password_too_long());
        }
        Ok(creds)
    }
}

/// One `@`, something before it, a dotted domain after it, no spaces.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

/// Answer to a registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    #[schema(example = "User registered successfully")]
    pub message: &'static str,
    pub user_id: Uuid,
}

/// Register a new user.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth",
    request_body(content = CredentialsRequest, example = json!({"email": "user@example.com", "password": "securepassword123"})),
    responses(
        (status = 201, description = "Registered", body = RegisterResponse),
        (status = 400, description = "Missing or invalid fields", body = ErrorBody,
            example = json!({"error": "Email and password are required"})),
        (status = 409, description = "Email taken", body = ErrorBody,
            example = json!({"error": "User with this email already exists"})),
        BodyErrors,
    ))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let creds = body.for_registration()?;
    if state.store.user_by_email(&creds.email).await?.is_some() {
        return Err(ApiError::email_taken());
    }
    let hash = auth::hash_password(creds.password)
        .await
        .map_err(ApiError::Internal)?;
    let user = state
        .store
        .create_user(&creds.email, &hash)
        .await
        .on_conflict(ApiError::email_taken)?;
    tracing::info!(user = %user.id, "user registered");
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            message: "User registered successfully",
            user_id: user.id,
        }),
    ))
}

/// Answer to a login.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    #[schema(example = "Login successful")]
    pub message: &'static str,
    #[schema(example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...")]
    pub token: String,
}

/// Log in and receive a bearer token valid for 24 hours.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body(content = CredentialsRequest, example = json!({"email": "user@example.com", "password": "securepassword123"})),
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Missing fields", body = ErrorBody,
            example = json!({"error": "Email and password are required"})),
        (status = 401, description = "Wrong email or password", body = ErrorBody,
            example = json!({"error": "Invalid credentials"})),
        BodyErrors,
        (status = 429, description = "Too many failed attempts; see Retry-After", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let Credentials { email, password } = body.require()?;
    let address = client.map(|Extension(ConnectInfo(addr))| addr.ip());
    let token = auth::login(
        state.store.as_ref(),
        &state.login_limiter,
        &state.keys,
        &email,
        password,
        address,
        Utc::now(),
    )
    .await?;
    Ok(Json(LoginResponse {
        message: "Login successful",
        token,
    }))
}

/// The current user and how many instances they have.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user_id: Uuid,
    #[schema(example = "user@example.com")]
    pub email: String,
    #[schema(value_type = String, format = DateTime, example = "2026-01-22T05:16:25.123456Z")]
    pub created_at: ApiTime,
    #[schema(example = 5)]
    pub instance_count: i64,
    #[schema(example = 2)]
    pub monitoring_count: i64,
}

/// Get the current user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = MeResponse),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody,
            example = json!({"error": "Token is missing"})),
    ))]
pub async fn me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<MeResponse>, ApiError> {
    let counts = state.store.instance_counts(user.id).await?;
    Ok(Json(MeResponse {
        user_id: user.id,
        email: user.email,
        created_at: user.created_at.into(),
        instance_count: counts.instances,
        monitoring_count: counts.monitoring,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(email: Option<&str>, password: Option<&str>) -> CredentialsRequest {
        CredentialsRequest {
            email: email.map(Into::into),
            password: password.map(Into::into),
        }
    }

    fn message(r: Result<Credentials, ApiError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn registration_requires_both_fields() {
        for r in [
            req(None, Some("password1")),
            req(Some("a@b.io"), None),
            req(Some(" "), Some("x")),
        ] {
            assert_eq!(
                message(r.for_registration()),
                "Email and password are required"
            );
        }
    }

    #[test]
    fn registration_checks_email_and_password_length() {
        for email in ["plain", "a@b", "@b.io", "a@@b.io", "a b@c.io", "a@b..io"] {
            assert_eq!(
                message(req(Some(email), Some("password1")).for_registration()),
                "Email must be a valid email address",
                "{email}"
            );
        }
        assert_eq!(
            message(req(Some("a@b.io"), Some("1234567")).for_registration()),
            "Password must be at least 8 characters long"
        );
        let ok = req(Some(" User@Example.COM "), Some("12345678"))
            .for_registration()
            .unwrap();
        assert_eq!(ok.email, "user@example.com");
    }
}
