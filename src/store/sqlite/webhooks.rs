//! Webhooks, their outbox, and the events a decision queues.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{SqliteStore, convert, decode_error, micros};
use crate::events::{DecisionEvent, Subscriber, fan_out};
use crate::model::{DeliveryAttempt, DueEvent, NewWebhook, Webhook, WebhookDelivery};
use crate::store::row::{self, DeliveryRow, DueRow, SubscriberRow, WebhookRow};
use crate::store::{StoreResult, WebhookOutbox, Webhooks};

/// Queues `events` for the subscribed webhooks of their instances' owners, in the
/// caller's transaction (which holds SQLite's write lock, so no webhook goes
/// meanwhile): the subscribers are read, [`fan_out`] makes the rows, one INSERT
/// writes them.
/// The webhooks of the owners of `instances`.
pub(super) async fn subscribers(
    tx: &mut sqlx::SqliteConnection,
    instances: &[Uuid],
) -> StoreResult<Vec<Subscriber>> {
    let ids: Vec<String> = instances.iter().map(Uuid::to_string).collect();
    let rows: Vec<SubscriberRow> = sqlx::query_as(
        "SELECT i.id, w.id, w.events FROM instances i JOIN webhooks w ON w.user_id = i.user_id
         WHERE i.id IN (SELECT value FROM json_each(?1))",
    )
    .bind(serde_json::to_string(&ids).map_err(decode_error)?)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(row::subscriber).collect())
}

pub(super) async fn queue_decision_events(
    tx: &mut sqlx::SqliteConnection,
    events: &[&DecisionEvent],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let instances: Vec<Uuid> = events.iter().map(|e| e.instance).collect();
    let subscribers = subscribers(tx, &instances).await?;
    let rows: Vec<serde_json::Value> = fan_out(events, &subscribers)
        .iter()
        .map(|r| {
            json!([
                r.id.to_string(),
                r.webhook.to_string(),
                r.event.decision.to_string(),
                r.event.kind.event_type(),
                r.event.payload,
                micros(r.event.at)
            ])
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_events (id, webhook, decision, event_type, payload,
                next_attempt_at, created_at)
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>5
         FROM json_each(?1)",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Webhooks for SqliteStore {
    async fn create_webhook(
        &self,
        new: &NewWebhook,
        max_per_user: i64,
    ) -> StoreResult<Option<Webhook>> {
        // One statement: SQLite runs writes one at a time, so the count and the
        // insert cannot interleave with another creation.
        let events = serde_json::to_string(&new.events).map_err(decode_error)?;
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "INSERT INTO webhooks (id, user_id, url, events, description, secret, created_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE (SELECT count(*) FROM webhooks WHERE user_id = ?2) < ?8
             RETURNING ",
            webhook_columns!()
        ))
        .bind(Uuid::now_v7().to_string())
        .bind(new.user_id.to_string())
        .bind(&new.url)
        .bind(events)
        .bind(&new.description)
        .bind(&new.secret)
        .bind(micros(Utc::now()))
        .bind(max_per_user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn webhooks_of(&self, user: Uuid) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE user_id = ?1 ORDER BY created_at, id"
        ))
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(convert(rows))
    }

    async fn webhook_of(&self, user: Uuid, id: Uuid) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = ?1 AND user_id = ?2"
        ))
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_webhook(&self, user: Uuid, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = ?1 AND user_id = ?2")
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT id, event_type, decision, status, attempts, last_status, last_error,
                    next_attempt_at, delivered_at, created_at
             FROM webhook_events WHERE webhook = ?1
             ORDER BY created_at DESC, id DESC LIMIT ?2 + 0",
        )
        .bind(webhook.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(convert(rows))
    }

    async fn queue_webhook_event(
        &self,
        webhook: Uuid,
        event_type: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO webhook_events (id, webhook, event_type, payload, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(id.to_string())
        .bind(webhook.to_string())
        .bind(event_type)
        .bind(payload)
        .bind(micros(now))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }
}

#[async_trait]
impl WebhookOutbox for SqliteStore {
    async fn claim_webhook_events(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueEvent>> {
        // One process per SQLite file, and one writer at a time: the lease alone
        // keeps an event from being claimed twice for one attempt.
        let rows: Vec<DueRow> = sqlx::query_as(
            "UPDATE webhook_events SET attempts = attempts + 1, next_attempt_at = ?2
             WHERE id IN (SELECT id FROM webhook_events
                          WHERE status = 'pending' AND next_attempt_at <= ?1
                          ORDER BY next_attempt_at LIMIT ?3 + 0)
             RETURNING id,
                       (SELECT url FROM webhooks w WHERE w.id = webhook_events.webhook),
                       (SELECT secret FROM webhooks w WHERE w.id = webhook_events.webhook),
                       payload, attempts, created_at",
        )
        .bind(micros(now))
        .bind(micros(lease_until))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row::due_event).collect())
    }

    async fn record_webhook_attempts(&self, attempts: &[DeliveryAttempt]) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = attempts
            .iter()
            .map(|a| {
                json!([
                    a.id.to_string(),
                    a.attempt,
                    a.status.as_str(),
                    a.last_status,
                    a.last_error,
                    micros(a.next_attempt_at),
                    a.delivered_at.map(micros)
                ])
            })
            .collect();
        sqlx::query(
            "UPDATE webhook_events SET status = u.status, last_status = u.code,
                    last_error = u.error, next_attempt_at = u.next, delivered_at = u.delivered
             FROM (SELECT value->>0 AS id, value->>1 AS attempt, value->>2 AS status,
                          value->>3 AS code, value->>4 AS error, value->>5 AS next,
                          value->>6 AS delivered FROM json_each(?1)) AS u
             WHERE webhook_events.id = u.id AND webhook_events.attempts = u.attempt
               AND webhook_events.status = 'pending'",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
