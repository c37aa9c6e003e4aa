//! Extractors that turn client mistakes into `ApiError`s with JSON bodies.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::auth::TokenError;
use crate::model::User;
use uuid::Uuid;

/// A JSON request body. A body that is not JSON, or not the expected shape, is a 400
/// (or 415 when it was sent as another media type); more than 1 MiB is a 413.
///
/// A missing `Content-Type` is accepted, since `curl -d` users often leave it out.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_) if e.status() == 413 => ApiError::PayloadTooLarge,
            other => ApiError::unreadable_body(other),
        })?;
        let declared_json = content_type
            .as_deref()
            .is_none_or(|ct| ct.starts_with("application/json") || ct.contains("+json"));
        if !declared_json {
            return Err(ApiError::not_json());
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::body_not_an_object());
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(ApiError::invalid_json)
    }
}

/// The user id a valid bearer token names, not yet checked against the database.
///
/// A handler taking this instead of [`AuthUser`] must itself answer 401 when the
/// user no longer exists; the hottest read folds that check into its own query.
#[derive(Debug, Clone, Copy)]
pub struct AuthToken(pub Uuid);

impl<S> FromRequestParts<S> for AuthToken
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => return Err(ApiError::token_missing()),
            Some(h) => h.to_str().map_err(|_| ApiError::invalid_token())?.trim(),
        };
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            // `Bearer ` with nothing after it (trimmed to `Bearer`), or an empty header.
            None if header.is_empty() || header.eq_ignore_ascii_case("bearer") => "",
            _ => return Err(ApiError::invalid_token()),
        };
        if token.is_empty() {
            return Err(ApiError::token_missing());
        }
        let claims = state.keys.verify(token).map_err(|e| match e {
            TokenError::Expired => ApiError::token_expired(),
            TokenError::Invalid => ApiError::invalid_token(),
        })?;
        // Names the user on the request's span; a no-op when it is off (see `observe::track`).
        tracing::Span::current().record("user_id", tracing::field::display(claims.sub));
        Ok(AuthToken(claims.sub))
    }
}

impl AuthToken {
    /// The user the token names; 401 when the account no longer exists, since a
    /// token outlives nothing.
    pub async fn user(self, state: &AppState) -> Result<User, ApiError> {
        state
            .store
            .user_by_id(self.0)
            .await?
            .ok_or_else(ApiError::invalid_token)
    }
}

/// The user a valid bearer token belongs to.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = AuthToken::from_request_parts(parts, state).await?;
        Ok(AuthUser(token.user(&AppState::from_ref(state)).await?))
    }
}
