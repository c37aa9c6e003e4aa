//! The one error type of the API. Every failure renders as `{"error": "..."}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::scaling::PolicyError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words meant for the client.
    #[schema(example = "What went wrong, in a sentence")]
    pub error: String,
}

/// The failures every route on one of the caller's instances documents, for
/// `responses(..., InstanceErrors)` in its `#[utoipa::path]`.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only its documentation is used.
pub enum InstanceErrors {
    #[response(status = 401, description = "Missing, invalid or expired token")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "Someone else's instance")]
    Forbidden(ErrorBody),
    #[response(status = 404, description = "No such instance")]
    NotFound(ErrorBody),
}

/// The failures every route with a JSON body documents, for
/// `responses(..., BodyErrors)` in its `#[utoipa::path]`.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only its documentation is used.
pub enum BodyErrors {
    #[response(status = 413, description = "Body over 1 MiB")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "Body sent as another media type")]
    UnsupportedMediaType(ErrorBody),
}

/// An error the API answers with; the variant chooses the status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Request body is too large (the limit is 1 MiB)")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Too many failed login attempts; try again in {retry_after} seconds")]
    TooManyRequests { retry_after: u64 },
    /// A cloud API we depend on failed or refused us.
    #[error("{0}")]
    BadGateway(String),
    /// The server is overloaded or its database is unreachable; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure: logged, never shown to the client.
    #[error("Internal server error")]
    Internal(#[source] anyhow::Error),
}

/// The contract's fixed messages, one constructor each, so a handler names the
/// failure and the exact text lives here: `name => Variant("message");`.
macro_rules! messages {
    ($($(#[$doc:meta])* $name:ident => $variant:ident($message:literal);)*) => {
        impl ApiError {
            $(
                $(#[$doc])*
                pub fn $name() -> Self {
                    ApiError::$variant($message.into())
                }
            )*
        }
    };
}

messages! {
    /// 400 for a span whose `from` is not before its `to`.
    from_not_before_to => BadRequest("from must be before to");
    /// 400 for a `limit` that is not a positive integer.
    bad_limit => BadRequest("limit must be a positive integer");
    /// 400 for a `page` that is not an integer of at least 1.
    bad_page => BadRequest("Page must be >= 1");
    /// 400 for a `page_size` outside 1..=100.
    bad_page_size => BadRequest("Page size must be between 1 and 100");
    /// 401 for a token that is malformed, forged or names a user who is gone.
    invalid_token => Unauthorized("Token is invalid");
    /// 401 for a request without a bearer token (or with an empty one).
    token_missing => Unauthorized("Token is missing");
    /// 401 for a genuine token past its expiry.
    token_expired => Unauthorized("Token has expired");
    /// 401 for a login with an unknown email or a wrong password, alike.
    invalid_credentials => Unauthorized("Invalid credentials");
    /// 401 for a scrape of `/metrics` without `METRICS_TOKEN` when one is set.
    metrics_token_required => Unauthorized("A valid metrics token is required");
    /// 403 for someone else's instance.
    not_your_instance => Forbidden("Unauthorized: You don't own this instance");
    /// 404 for a path no route matches.
    not_found => NotFound("Not found");
    /// 404 for a webhook id that is unknown or someone else's, alike.
    webhook_not_found => NotFound("Webhook not found");
    /// 404 for an instance id nobody registered (or that was deleted).
    instance_not_found => NotFound("Instance not found");
    /// 404 for the scale target of an instance that has none.
    target_not_found => NotFound("This instance has no scale target");
    /// 409 for a group or workload another instance already drives.
    target_taken => Conflict("Another instance already drives this group or workload");
    /// 405 for a route that exists with other methods.
    method_not_allowed => MethodNotAllowed("Method not allowed");
    /// 409 for registering an email that already has an account.
    email_taken => Conflict("User with this email already exists");
    /// 409 for an instance id that is already registered.
    instance_already_registered => Conflict("Instance already registered");
    /// 503 when admission control has no permit left.
    busy => Unavailable("The server is busy; please retry shortly");
    /// 503 for a request that outlived the request timeout.
    timed_out => Unavailable("The request took too long and was abandoned; please retry");
    /// 503 from the readiness probe when the database does not answer.
    not_ready => Unavailable("database unavailable");
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// 400 for starting monitoring that is on (`true`) or stopping it when off.
    pub fn monitoring_already(on: bool) -> Self {
        ApiError::bad_request(if on {
            "Monitoring is already active for this instance"
        } else {
            "Monitoring is not active for this instance"
        })
    }

    /// 400 for a span longer than `days`.
    pub fn span_too_long(days: i64) -> Self {
        ApiError::bad_request(format!("from must be at most {days} days before to"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
            ApiError::Unavailable(msg) => tracing::warn!("answering 503: {msg}"),
            _ => {}
        }
        let mut response = (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        match self {
            ApiError::TooManyRequests { retry_after } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::Unavailable("The database is unavailable; please retry shortly".into())
            }
            // The only rows writes refer to are instances (and their users): one
            // deleted between the lookup and the write is simply not there any more.
            StoreError::Gone => ApiError::instance_not_found(),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A refused policy is the client's mistake; its message names the field.
impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Turns a unique-key violation into the given error (a 409 constructor above).
pub trait OnConflict<T> {
    fn on_conflict(self, conflict: fn() -> ApiError) -> Result<T, ApiError>;
}

impl<T> OnConflict<T> for Result<T, StoreError> {
    fn on_conflict(self, conflict: fn() -> ApiError) -> Result<T, ApiError> {
        self.map_err(|e| match e {
            StoreError::Conflict => conflict(),
            other => other.into(),
        })
    }
}
