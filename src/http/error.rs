//! The one error type of the API. Every failure renders as `{"error": "..."}`.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::auth::LoginError;
use crate::backtest::BacktestError;
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
    /// The database did not answer: a 503 whose cause is logged, not shown.
    #[error("{message}")]
    DatabaseUnavailable {
        message: &'static str,
        #[source]
        cause: anyhow::Error,
    },
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
    /// 400 for a register or login body without an email or a password.
    credentials_required => BadRequest("Email and password are required");
    /// 400 for an email that is not an address.
    bad_email => BadRequest("Email must be a valid email address");
    /// 400 for a password under 8 characters.
    password_too_short => BadRequest("Password must be at least 8 characters long");
    /// 400 for a password over 1024 bytes.
    password_too_long => BadRequest("Password must be at most 1024 bytes long");
    /// 400 for a JSON body that is not an object.
    body_not_an_object => BadRequest("Request body must be a JSON object");
    /// 400 for a registration without its three fields.
    instance_fields_required => BadRequest("instance_id, instance_type, and region are required");
    /// 400 for an instance_type or region over 64 characters.
    instance_fields_too_long => BadRequest("instance_type and region must be at most 64 characters");
    /// 400 for an instance_type with other characters.
    bad_instance_type => BadRequest("instance_type must be letters, digits, '-', '_' or '.' (such as t2.micro)");
    /// 400 for a mock instance id with other characters or length.
    bad_mock_instance_id => BadRequest("instance_id must be 1-128 characters of letters, digits, '-', '_' or '.'");
    /// 400 for a mock region with other characters.
    bad_mock_region => BadRequest("region must be letters, digits, '-', '_' or '.' (such as mock)");
    /// 400 for a real instance id that is not an EC2 one.
    bad_ec2_instance_id => BadRequest("instance_id must be an EC2 instance id: 'i-' followed by 8 or 17 hex digits (use \"is_mock\": true for a mock instance)");
    /// 400 for a real instance's region that is not an AWS one.
    bad_aws_region => BadRequest("region must be an AWS region name such as us-east-1");
    /// 400 for deleting an instance that is being monitored.
    delete_while_monitoring => BadRequest("Cannot delete instance while monitoring is active. Please stop monitoring first.");
    /// 400 for a backtest body that is not a JSON object.
    body_must_be_object => BadRequest("The body must be a JSON object");
    /// 400 for a start_level outside 1..=50.
    bad_start_level => BadRequest("start_level must be an integer between 1 and 50");
    /// 400 for a series query that repeats from, to or step.
    repeated_series_param => BadRequest("from, to and step may each be given only once");
    /// 400 for a simulation without instance_id or cpu_utilization.
    simulation_fields_required => BadRequest("instance_id and cpu_utilization are required");
    /// 400 for interval_seconds without duration_minutes.
    duration_required => BadRequest("duration_minutes is required with interval_seconds");
    /// 400 for a duration_minutes outside 1..=1440.
    bad_duration => BadRequest("duration_minutes must be a whole number between 1 and 1440");
    /// 400 for an interval_seconds under 1.
    bad_interval => BadRequest("interval_seconds must be a whole number, at least 1");
    /// 400 for an interval longer than the duration.
    interval_over_duration => BadRequest("interval_seconds must not exceed duration_minutes × 60");
    /// 400 for events that are not a non-empty list of known kinds.
    bad_events => BadRequest("events must be a non-empty list of scale_up, scale_down, actuation_applied, actuation_failed, actuation_drift");
    /// 400 for a webhook without a url.
    url_required => BadRequest("url is required");
    /// 415 for a body declared as another media type.
    not_json => UnsupportedMediaType("Content-Type must be application/json");
    /// 503 when admission control has no permit left.
    busy => Unavailable("The server is busy; please retry shortly");
    /// 503 for a request that outlived the request timeout.
    timed_out => Unavailable("The request took too long and was abandoned; please retry");
}

impl ApiError {
    /// 503 from the readiness probe when the database does not answer.
    pub fn not_ready(cause: anyhow::Error) -> Self {
        ApiError::DatabaseUnavailable {
            message: "database unavailable",
            cause,
        }
    }

    // Private: a handler names its failure with a constructor of this module.
    fn bad_request(msg: impl Into<String>) -> Self {
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

    /// 400 for a body that could not be read.
    pub fn unreadable_body(other: impl std::fmt::Display) -> Self {
        ApiError::bad_request(format!("Could not read the request body: {other}"))
    }

    /// 400 for a body that is not JSON of the expected shape.
    pub fn invalid_json(e: impl std::fmt::Display) -> Self {
        ApiError::bad_request(format!("Invalid JSON body: {e}"))
    }

    /// 400 for a backtest `from` or `to` that is not a time.
    pub fn bad_backtest_time(name: &str) -> Self {
        ApiError::bad_request(format!(
            "{name} must be an RFC 3339 time such as 2026-01-22T05:00:00Z"
        ))
    }

    /// 400 for a backtest body field that does not exist.
    pub fn unknown_backtest_field(unknown: &str) -> Self {
        ApiError::bad_request(format!("unknown backtest field {unknown}"))
    }

    /// 400 for a series `from` or `to` that is not a timestamp.
    pub fn bad_series_time(name: &str) -> Self {
        ApiError::bad_request(format!(
            "{name} must be an RFC 3339 timestamp such as 2026-01-22T05:00:00Z"
        ))
    }

    /// 400 for a step outside 1..=`max_step` seconds.
    pub fn bad_step(max_step: i64) -> Self {
        ApiError::bad_request(format!(
            "step must be a whole number of seconds between 1 and {max_step}"
        ))
    }

    /// 400 for a percentage outside 0..=100.
    pub fn bad_percentage(name: &str) -> Self {
        ApiError::bad_request(format!("{name} must be a number between 0 and 100"))
    }

    /// 400 for a byte count that is negative or too large.
    pub fn bad_byte_count(name: &str) -> Self {
        ApiError::bad_request(format!("{name} must be a number of bytes, 0 or more"))
    }

    /// 400 for a webhook url over `max` characters.
    pub fn url_too_long(max: usize) -> Self {
        ApiError::bad_request(format!("url must be at most {max} characters"))
    }

    /// 400 for a webhook description over `max` characters.
    pub fn description_too_long(max: usize) -> Self {
        ApiError::bad_request(format!("description must be at most {max} characters"))
    }

    /// 400 for a series step that would make more than `max` buckets.
    pub fn too_many_buckets(max: i64, needed: i64) -> Self {
        ApiError::bad_request(format!(
            "step must give at most {max} buckets: this span needs a step of at least {needed} seconds"
        ))
    }

    /// 400 for a simulation of more than `max` samples.
    pub fn too_many_points(max: i64) -> Self {
        ApiError::bad_request(format!(
            "A simulation creates at most {max} metrics (duration_minutes × 60 / interval_seconds); raise interval_seconds"
        ))
    }

    /// 400 for a scale target the cloud says is wrong; its words say why.
    pub fn cloud_rejected(why: String) -> Self {
        ApiError::BadRequest(why)
    }

    /// 502 for a cloud that refused our credentials.
    pub fn cloud_denied(why: &str) -> Self {
        ApiError::BadGateway(format!("The cloud refused our credentials: {why}"))
    }

    /// 502 for a cloud API that could not be reached (throttled, down, busy).
    pub fn cloud_unreachable(why: &str) -> Self {
        ApiError::BadGateway(format!("The cloud API could not be reached: {why}"))
    }

    /// 400 for a scale target that does not fit its instance; `why` says how.
    pub fn bad_target(why: impl Into<String>) -> Self {
        ApiError::BadRequest(why.into())
    }

    /// 400 for a webhook url the SSRF check refused; `why` says how.
    pub fn bad_webhook_url(why: String) -> Self {
        ApiError::BadRequest(why)
    }

    /// 409 for a user who has `max` webhooks already.
    pub fn too_many_webhooks(max: i64) -> Self {
        ApiError::Conflict(format!(
            "A user can have at most {max} webhooks; delete one first"
        ))
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
            ApiError::Unavailable(_) | ApiError::DatabaseUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The error a response was made from, in its extensions, so that the request's
/// tracking middleware logs it once with the request's fields (`observe::track`);
/// converting an error has no side effect.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub Arc<ApiError>);

impl ApiError {
    /// Logs a 5xx with its cause, in the request's span, and says whether it did; a
    /// 4xx is the client's and is left to the request's DEBUG event. Called once per
    /// request, by `observe::track`.
    pub(super) fn log(&self, method: &str, route: &str, status: u16, duration_ms: f64) -> bool {
        match self {
            ApiError::Internal(cause) => {
                tracing::error!(method, route, status, duration_ms, error = ?cause, "request failed")
            }
            ApiError::DatabaseUnavailable { cause, .. } => {
                tracing::warn!(
                    method,
                    route,
                    status,
                    duration_ms,
                    error = format!("{cause:#}"),
                    "answering 503: database unavailable"
                )
            }
            ApiError::Unavailable(msg) => {
                tracing::warn!(method, route, status, duration_ms, "answering 503: {msg}")
            }
            ApiError::BadGateway(msg) => {
                tracing::error!(method, route, status, duration_ms, "answering 502: {msg}")
            }
            _ => return false,
        }
        true
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
            ApiError::Unavailable(_) | ApiError::DatabaseUnavailable { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorCause(Arc::new(self)));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => ApiError::DatabaseUnavailable {
                message: "The database is unavailable; please retry shortly",
                cause: cause.into(),
            },
            // Most writes refer to an instance: one deleted between the lookup and
            // the write is simply not there any more. A write that refers to
            // something else says what is gone with `on_gone`.
            StoreError::Gone => ApiError::instance_not_found(),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<BacktestError> for ApiError {
    fn from(e: BacktestError) -> Self {
        match e {
            BacktestError::Store(e) => e.into(),
            BacktestError::Replay(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::TooManyAttempts(retry_after) => ApiError::TooManyRequests { retry_after },
            LoginError::InvalidCredentials => ApiError::invalid_credentials(),
            LoginError::Store(e) => e.into(),
            LoginError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// A refused policy is the client's mistake; its message names the field.
impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Names the store's refusals for one call: a unique-key violation or a
/// reference to a row that is gone become the given errors (constructors above).
pub trait OnConflict<T> {
    fn on_conflict(self, conflict: fn() -> ApiError) -> Result<T, ApiError>;
    /// `gone` says what is gone, where it is not the instance.
    fn on_gone(self, gone: fn() -> ApiError) -> Result<T, ApiError>;
    /// Both of the above.
    fn on_refusals(self, conflict: fn() -> ApiError, gone: fn() -> ApiError)
    -> Result<T, ApiError>;
}

impl<T> OnConflict<T> for Result<T, StoreError> {
    fn on_conflict(self, conflict: fn() -> ApiError) -> Result<T, ApiError> {
        self.map_err(|e| match e {
            StoreError::Conflict => conflict(),
            other => other.into(),
        })
    }

    fn on_gone(self, gone: fn() -> ApiError) -> Result<T, ApiError> {
        self.map_err(|e| match e {
            StoreError::Gone => gone(),
            other => other.into(),
        })
    }

    fn on_refusals(
        self,
        conflict: fn() -> ApiError,
        gone: fn() -> ApiError,
    ) -> Result<T, ApiError> {
        self.map_err(|e| match e {
            StoreError::Conflict => conflict(),
            StoreError::Gone => gone(),
            other => other.into(),
        })
    }
}
