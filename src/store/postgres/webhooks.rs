//! Webhooks, their outbox, and the events a decision queues.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PostgresStore;
use crate::events::{DecisionEvent, Subscriber, fan_out};
use crate::model::{DeliveryAttempt, DueEvent, NewWebhook, Webhook, WebhookDelivery};
use crate::store::row::{self, DeliveryRow, DueRow, SubscriberRow, WebhookRow};
use crate::store::{StoreResult, WebhookOutbox, Webhooks};

/// Queues `events` for the subscribed webhooks of their instances' owners, in the
/// caller's transaction: the subscribers are read (and held: `FOR KEY SHARE` keeps a
/// webhook from being deleted before the insert refers to it), [`fan_out`] makes
/// the rows, one INSERT writes them.
/// The webhooks of the owners of `instances`, each held (`FOR KEY SHARE`) so it
/// cannot be deleted before an event row refers to it.
pub(super) async fn subscribers(
    tx: &mut sqlx::PgConnection,
    instances: &[Uuid],
) -> StoreResult<Vec<Subscriber>> {
    let rows: Vec<SubscriberRow> = sqlx::query_as(
        "SELECT i.id, w.id, w.events FROM instances i JOIN webhooks w ON w.user_id = i.user_id
         WHERE i.id = ANY($1) FOR KEY SHARE OF w",
    )
    .bind(instances)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(row::subscriber).collect())
}

pub(super) async fn queue_decision_events(
    tx: &mut sqlx::PgConnection,
    events: &[&DecisionEvent],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let instances: Vec<Uuid> = events.iter().map(|e| e.instance).collect();
    let subscribers = subscribers(tx, &instances).await?;
    let rows = fan_out(events, &subscribers);
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_events (id, webhook, decision, event_type, payload,
                next_attempt_at, created_at)
         SELECT id, webhook, decision, event_type, payload, at, at
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                     $6::timestamptz[]) AS u(id, webhook, decision, event_type, payload, at)",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.webhook).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event.decision).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.event.kind.event_type())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.event.payload.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.event.at).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Webhooks for PostgresStore {
    async fn create_webhook(
        &self,
        new: &NewWebhook,
        max_per_user: i64,
    ) -> StoreResult<Option<Webhook>> {
        let mut tx = self.pool.begin().await?;
        // The user's row lock makes the count and the insert one step, so two
        // concurrent creations cannot both take the last place.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(new.user_id)
            .execute(&mut *tx)
            .await?;
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "INSERT INTO webhooks (id, user_id, url, events, description, secret)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE (SELECT count(*) FROM webhooks WHERE user_id = $2) < $7
             RETURNING ",
            webhook_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(new.user_id)
        .bind(&new.url)
        .bind(sqlx::types::Json(&new.events))
        .bind(&new.description)
        .bind(&new.secret)
        .bind(max_per_user)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(Into::into))
    }

    async fn webhooks_of(&self, user: Uuid) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn webhook_of(&self, user: Uuid, id: Uuid) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = sqlx::query_as(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_webhook(&self, user: Uuid, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
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
             FROM webhook_events WHERE webhook = $1
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(webhook)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
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
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id)
        .bind(webhook)
        .bind(event_type)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }
}

#[async_trait]
impl WebhookOutbox for PostgresStore {
    async fn claim_webhook_events(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueEvent>> {
        let rows: Vec<DueRow> = sqlx::query_as(
            "WITH due AS (
                 SELECT id FROM webhook_events
                 WHERE status = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE webhook_events e SET attempts = e.attempts + 1, next_attempt_at = $2
             FROM due, webhooks w
             WHERE e.id = due.id AND w.id = e.webhook
             RETURNING e.id, w.url, w.secret, e.payload, e.attempts, e.created_at",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row::due_event).collect())
    }

    async fn record_webhook_attempts(&self, attempts: &[DeliveryAttempt]) -> StoreResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = attempts.iter().map(|a| a.id).collect();
        let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
        let statuses: Vec<&str> = attempts.iter().map(|a| a.status.as_str()).collect();
        let codes: Vec<Option<i32>> = attempts.iter().map(|a| a.last_status).collect();
        let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.last_error.as_deref()).collect();
        let next: Vec<DateTime<Utc>> = attempts.iter().map(|a| a.next_attempt_at).collect();
        let delivered: Vec<Option<DateTime<Utc>>> =
            attempts.iter().map(|a| a.delivered_at).collect();
        sqlx::query(
            "UPDATE webhook_events e SET status = u.status, last_status = u.code,
                    last_error = u.error, next_attempt_at = u.next, delivered_at = u.delivered
             FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::int4[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[])
                  AS u(id, attempt, status, code, error, next, delivered)
             WHERE e.id = u.id AND e.attempts = u.attempt AND e.status = 'pending'",
        )
        .bind(ids)
        .bind(numbers)
        .bind(statuses)
        .bind(codes)
        .bind(errors)
        .bind(next)
        .bind(delivered)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
