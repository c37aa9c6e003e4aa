//! Webhooks out: signed deliveries of scaling decisions from the transactional
//! outbox (`webhook_events`, written with the decisions themselves).
//!
//! A worker claims due events (each claim leases them, so replicas never send one
//! event twice in the same attempt), POSTs them signed per the Standard Webhooks
//! spec and records each outcome. Delivery is at least once: a 2xx settles an
//! event; anything else is retried with exponential backoff and jitter until a day
//! after the event was created. The `webhook-id` header stays the same across
//! retries so receivers can deduplicate.

pub mod ssrf;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;

use crate::model::{DeliveryAttempt, DeliveryStatus, DueEvent};
use crate::signals::Signals;
use crate::store::{StoreResult, WebhookOutbox};

/// Most webhooks one user may have.
pub const MAX_WEBHOOKS_PER_USER: i64 = 10;
/// How long one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Delays before the 2nd, 3rd, ... attempt; hourly after the last.
pub const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];
/// An event still undelivered this long after its creation is given up.
pub const GIVE_UP_AFTER: TimeDelta = TimeDelta::hours(24);
/// How long a claim keeps an event from other claimants: well past the timeout, so
/// only a claimant that died lets someone else try again.
pub const LEASE: TimeDelta = TimeDelta::seconds(60);
/// Events claimed per round trip; all of them are sent at once.
pub const CLAIM_BATCH: i64 = 256;
/// How often the worker looks for due events.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::rng().random();
    format!("whsec_{}", BASE64.encode(key))
}

/// The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of
/// `<id>.<timestamp>.<body>`, keyed with the decoded part of `secret` after
/// `whsec_`. `None` for a malformed secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = BASE64.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// When attempt number `attempt + 1` is due after attempt `attempt` failed at
/// `now`, or `None` when that would be past the give-up time. `jitter` (0.8 to 1.2
/// in service) spreads retries so a receiver that comes back is not hit by every
/// event at once.
pub fn next_attempt_at(
    attempt: i32,
    now: DateTime<Utc>,
    created_at: DateTime<Utc>,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let index = (attempt.max(1) as usize - 1).min(RETRY_DELAYS.len() - 1);
    let delay = RETRY_DELAYS[index].mul_f64(jitter.clamp(0.5, 1.5));
    let next = now + TimeDelta::from_std(delay).ok()?;
    (next <= created_at + GIVE_UP_AFTER).then_some(next)
}

/// Sends claimed events.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    allow_private: bool,
    signals: Arc<Signals>,
}

/// What one delivery tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl Deliverer {
    /// `allow_private` lets deliveries reach loopback and private addresses.
    pub fn new(allow_private: bool, signals: Arc<Signals>) -> Self {
        Deliverer {
            client: ssrf::client(DELIVERY_TIMEOUT, allow_private),
            allow_private,
            signals,
        }
    }

    /// One attempt at `event`, its outcome scheduled from `now`.
    async fn attempt(&self, event: DueEvent, now: DateTime<Utc>) -> DeliveryAttempt {
        let result = self.post(&event).await;
        let (last_status, last_error) = match &result {
            Ok(code) => (Some(i32::from(*code)), None),
            Err(e) => (None, Some(e.clone())),
        };
        if matches!(result, Ok(code) if (200..300).contains(&code)) {
            self.signals.record_webhook_delivery("delivered");
            return DeliveryAttempt {
                id: event.id,
                attempt: event.attempt,
                status: DeliveryStatus::Delivered,
                last_status,
                last_error,
                next_attempt_at: now,
                delivered_at: Some(Utc::now()),
            };
        }
        let jitter = rand::rng().random_range(0.8..1.2);
        let (status, next) = match next_attempt_at(event.attempt, now, event.created_at, jitter) {
            Some(next) => (DeliveryStatus::Pending, next),
            None => (DeliveryStatus::Failed, now),
        };
        self.signals.record_webhook_delivery(match status {
            DeliveryStatus::Pending => "retrying",
            _ => "failed",
        });
        DeliveryAttempt {
            id: event.id,
            attempt: event.attempt,
            status,
            last_status,
            last_error,
            next_attempt_at: next,
            delivered_at: None,
        }
    }

    /// POSTs the event; the response status, or why there was none.
    async fn post(&self, event: &DueEvent) -> Result<u16, String> {
        let url = reqwest::Url::parse(&event.url).map_err(|e| format!("invalid url: {e}"))?;
        ssrf::check_literal(&url, self.allow_private)?;
        let id = event.id.to_string();
        let timestamp = Utc::now().timestamp();
        let signature = sign(
            event.secret.expose(),
            &id,
            timestamp,
            event.payload.as_bytes(),
        )
        .ok_or("the webhook's secret is malformed")?;
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(event.payload.clone())
            .send()
            .await
            .map_err(describe)?;
        Ok(response.status().as_u16())
    }
}

/// A transport error with its causes, cut to a length worth storing.
fn describe(err: reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}

/// Delivers every event due at `now`, batch by batch, each batch's events at once,
/// and records the outcomes. Tests drive this directly with a chosen `now`.
pub async fn run_delivery_tick(
    store: &dyn WebhookOutbox,
    deliverer: &Deliverer,
    now: DateTime<Utc>,
) -> StoreResult<DeliveryReport> {
    let mut report = DeliveryReport::default();
    loop {
        let due = store
            .claim_webhook_events(now, now + LEASE, CLAIM_BATCH)
            .await?;
        let claimed = due.len();
        if claimed == 0 {
            return Ok(report);
        }
        let outcomes: Vec<DeliveryAttempt> = futures::stream::iter(due)
            .map(|event| deliverer.attempt(event, now))
            .buffer_unordered(CLAIM_BATCH as usize)
            .collect()
            .await;
        for o in &outcomes {
            match o.status {
                DeliveryStatus::Delivered => report.delivered += 1,
                DeliveryStatus::Pending => report.retrying += 1,
                DeliveryStatus::Failed => report.failed += 1,
            }
        }
        store.record_webhook_attempts(&outcomes).await?;
        if (claimed as i64) < CLAIM_BATCH {
            return Ok(report);
        }
    }
}

/// Delivery ticks one process runs at once. A tick waits for the slowest event of
/// its batch (up to the 5 s timeout), so while one tick is stuck on a slow
/// receiver the next poll starts another, and healthy receivers keep getting their
/// events within a poll interval. Claims lease their events, so concurrent ticks
/// share work exactly as replicas do.
pub const CONCURRENT_TICKS: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification's test vectors.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("nope", "id", 1, b"{}"), None);
    }

    #[test]
    fn secrets_are_whsec_and_32_bytes() {
        let secret = new_secret();
        let key = BASE64
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(new_secret(), secret);
    }

    #[test]
    fn retries_back_off_then_give_up_after_a_day() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let delay = |attempt| next_attempt_at(attempt, t0, t0, 1.0).map(|t| (t - t0).num_seconds());
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 9].map(delay),
            [5, 30, 120, 600, 3600, 3600, 3600].map(Some)
        );
        let late = t0 + TimeDelta::hours(23) + TimeDelta::minutes(30);
        assert_eq!(next_attempt_at(20, late, t0, 1.0), None);
        assert!(next_attempt_at(1, t0, t0, 1.2).unwrap() > t0 + TimeDelta::seconds(5));
    }
}
