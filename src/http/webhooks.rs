//! Webhooks: URLs a user wants scaling decisions POSTed to, and their deliveries.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ErrorBody, OnConflict};
use super::extract::{ApiJson, AuthUser};
use super::instances::MessageResponse;
use super::page::{LimitQuery, parse_limit};
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::events::{self, EventKind};
use crate::model::{DeliveryStatus, NewWebhook, Webhook, WebhookDelivery};
use crate::webhooks::{self, MAX_WEBHOOKS_PER_USER, ssrf};

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new()
        .endpoints(routes!(create_webhook, list_webhooks))
        .endpoints(routes!(delete_webhook))
        .endpoints(routes!(list_deliveries))
        .endpoints(routes!(test_webhook))
}

/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 500;
/// Deliveries listed by default, and at most.
const DEFAULT_DELIVERIES: i64 = 50;
const MAX_DELIVERIES: i64 = 1000;

/// A webhook to register.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhookRequest {
    /// Where to POST events: http or https, not an internal address.
    #[schema(example = "https://hooks.example.com/autoscaler")]
    pub url: Option<String>,
    /// Which decisions to send; both when left out.
    #[schema(example = json!(["scale_up", "scale_down"]))]
    pub events: Option<Vec<String>>,
    #[schema(example = "Pager for production")]
    pub description: Option<String>,
}

/// A webhook as listed (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: ApiTime,
}

/// A webhook just created, with the secret its deliveries are signed with: shown
/// only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateWebhookResponse {
    pub webhook: CreatedWebhook,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhooksResponse {
    pub webhooks: Vec<WebhookView>,
}

/// One event of a webhook and where its delivery stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    #[schema(example = "scaling.scale_up")]
    pub event_type: String,
    pub decision_id: Option<Uuid>,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<i32>,
    /// Why the last attempt got no response.
    pub last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<ApiTime>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<ApiTime>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: ApiTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesResponse {
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PingQueuedResponse {
    #[schema(example = "Ping queued")]
    pub message: &'static str,
    pub event_id: Uuid,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        WebhookView {
            id: w.id,
            url: w.url,
            events: w.events,
            description: w.description,
            created_at: w.created_at.into(),
        }
    }
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        DeliveryView {
            id: d.id,
            event_type: d.event_type,
            decision_id: d.decision,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at.map(ApiTime),
            delivered_at: d.delivered_at.map(ApiTime),
            created_at: d.created_at.into(),
        }
    }
}

/// A checked request: events known and deduplicated, description trimmed.
fn parse_events(events: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let events =
        events.unwrap_or_else(|| EventKind::DEFAULT.map(|k| k.as_str().to_owned()).to_vec());
    let bad = || ApiError::bad_events();
    if events.is_empty() {
        return Err(bad());
    }
    let mut kinds: Vec<String> = Vec::new();
    for e in events {
        if EventKind::parse(&e).is_none() {
            return Err(bad());
        }
        if !kinds.contains(&e) {
            kinds.push(e);
        }
    }
    Ok(kinds)
}

/// The webhook `id` of `user`; 404 for an unknown id and for someone else's, alike.
async fn owned_webhook(state: &AppState, user: Uuid, id: &str) -> Result<Webhook, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::webhook_not_found())?;
    state
        .store
        .webhook_of(user, id)
        .await?
        .ok_or_else(ApiError::webhook_not_found)
}

/// Register a webhook.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = CreateWebhookResponse),
        (status = 400, description = "Missing or invalid url or events", body = ErrorBody,
            example = json!({"error": "url is required"})),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 409, description = "The user has the most webhooks allowed", body = ErrorBody,
            example = json!({"error": "A user can have at most 10 webhooks; delete one first"})),
    ))]
pub async fn create_webhook(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<CreateWebhookResponse>), ApiError> {
    let url = body
        .url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(ApiError::url_required)?;
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::url_too_long(MAX_URL_LEN));
    }
    let events = parse_events(body.events)?;
    let description = body
        .description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
    {
        return Err(ApiError::description_too_long(MAX_DESCRIPTION_LEN));
    }
    let url = ssrf::check_url(&url, state.settings.webhook_allow_private_networks)
        .await
        .map_err(ApiError::bad_webhook_url)?;
    let new = NewWebhook {
        user_id: user.id,
        url: url.to_string(),
        events,
        description,
        secret: webhooks::new_secret().into(),
    };
    let created = state
        .store
        .create_webhook(&new, MAX_WEBHOOKS_PER_USER)
        .await
        // Gone: the token's user was deleted meanwhile.
        .on_gone(ApiError::invalid_token)?
        .ok_or_else(|| ApiError::too_many_webhooks(MAX_WEBHOOKS_PER_USER))?;
    let secret = created.secret.expose().to_owned();
    Ok((
        StatusCode::CREATED,
        Json(CreateWebhookResponse {
            webhook: CreatedWebhook {
                webhook: created.into(),
                secret,
            },
        }),
    ))
}

/// The user's webhooks, oldest first (secrets are not shown again).
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's webhooks", body = WebhooksResponse),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<WebhooksResponse>, ApiError> {
    let webhooks = state.store.webhooks_of(user.id).await?;
    Ok(Json(WebhooksResponse {
        webhooks: webhooks.into_iter().map(Into::into).collect(),
    }))
}

/// Delete a webhook and its undelivered events.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse,
            example = json!({"message": "Webhook deleted"})),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "No such webhook of this user", body = ErrorBody,
            example = json!({"error": "Webhook not found"})),
    ))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    let webhook = owned_webhook(&state, user.id, &id).await?;
    if !state.store.delete_webhook(user.id, webhook.id).await? {
        return Err(ApiError::webhook_not_found());
    }
    Ok(Json(MessageResponse {
        message: "Webhook deleted",
    }))
}

/// A webhook's events, newest first.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook's id"), LimitQuery),
    responses(
        (status = 200, description = "Newest first (default 50)", body = DeliveriesResponse),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "No such webhook of this user", body = ErrorBody),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<DeliveriesResponse>, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::bad_limit())?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_DELIVERIES, MAX_DELIVERIES)?;
    let webhook = owned_webhook(&state, user.id, &id).await?;
    let deliveries = state.store.webhook_deliveries(webhook.id, limit).await?;
    Ok(Json(DeliveriesResponse {
        deliveries: deliveries.into_iter().map(Into::into).collect(),
    }))
}

/// Queue a `ping` event to the webhook, to check the receiver and its signature check.
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 202, description = "Queued", body = PingQueuedResponse),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "No such webhook of this user", body = ErrorBody),
    ))]
pub async fn test_webhook(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<PingQueuedResponse>), ApiError> {
    let webhook = owned_webhook(&state, user.id, &id).await?;
    let now = Utc::now();
    let payload = events::ping_body(webhook.id, now);
    let event_id = state
        .store
        .queue_webhook_event(webhook.id, events::PING, &payload, now)
        .await
        .on_gone(ApiError::webhook_not_found)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PingQueuedResponse {
            message: "Ping queued",
            event_id,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_default_to_both_and_must_be_known() {
        assert_eq!(parse_events(None).unwrap(), ["scale_up", "scale_down"]);
        assert_eq!(
            parse_events(Some(vec!["scale_down".into(), "scale_down".into()])).unwrap(),
            ["scale_down"]
        );
        assert!(parse_events(Some(vec![])).is_err());
        assert!(parse_events(Some(vec!["no_action".into()])).is_err());
    }
}
