//! Extractors that turn client mistakes into `ApiError`s with JSON bodies.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::auth::TokenError;
use crate::model::User;

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
            other => ApiError::bad_request(format!("Could not read the request body: {other}")),
        })?;
        let declared_json = content_type
            .as_deref()
            .is_none_or(|ct| ct.starts_with("application/json") || ct.contains("+json"));
        if !declared_json {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Type must be application/json".into(),
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("Request body must be a JSON object"));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
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
        let state = AppState::from_ref(state);
        let invalid = || ApiError::Unauthorized("Token is invalid".into());
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => return Err(ApiError::Unauthorized("Token is missing".into())),
            Some(h) => h.to_str().map_err(|_| invalid())?.trim(),
        };
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            // `Bearer ` with nothing after it (trimmed to `Bearer`), or an empty header.
            None if header.is_empty() || header.eq_ignore_ascii_case("bearer") => "",
            _ => return Err(invalid()),
        };
        if token.is_empty() {
            return Err(ApiError::Unauthorized("Token is missing".into()));
        }
        let claims = state.keys.verify(token).map_err(|e| match e {
            TokenError::Expired => ApiError::Unauthorized("Token has expired".into()),
            TokenError::Invalid => invalid(),
        })?;
        // A token outlives nothing: the account it names must still exist.
        let user = state
            .store
            .user_by_id(claims.sub)
            .await?
            .ok_or_else(invalid)?;
        Ok(AuthUser(user))
    }
}
