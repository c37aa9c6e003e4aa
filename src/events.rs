//! What a webhook receives: the kinds of events, which decisions make them, and
//! their bodies, built here once for the write plan (`scaling::record`), both
//! stores and the ping. A store only writes the rows [`fan_out`] makes, so the same
//! decision sends the same bytes whichever database holds it. A ground-floor module
//! (it imports only `model`): in `webhooks/`, beside the delivery worker that uses
//! the store, it would make the store and the webhooks import each other.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::model::{Decision, DecisionRecord};

/// What a webhook can subscribe to, by the names it subscribes with: the two
/// scale decisions, and what scale targets do (`actuation_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ScaleUp,
    ScaleDown,
    ActuationApplied,
    ActuationFailed,
    ActuationDrift,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 5] = [
        EventKind::ScaleUp,
        EventKind::ScaleDown,
        EventKind::ActuationApplied,
        EventKind::ActuationFailed,
        EventKind::ActuationDrift,
    ];
    /// What a webhook created without `events` subscribes to, in this order.
    pub const DEFAULT: [EventKind; 2] = [EventKind::ScaleUp, EventKind::ScaleDown];

    /// The name a webhook subscribes with (for a decision, the decision's name).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ScaleUp => "scale_up",
            EventKind::ScaleDown => "scale_down",
            EventKind::ActuationApplied => "actuation_applied",
            EventKind::ActuationFailed => "actuation_failed",
            EventKind::ActuationDrift => "actuation_drift",
        }
    }

    /// The event's `type` (and its delivery's `event_type`).
    pub fn event_type(self) -> &'static str {
        match self {
            EventKind::ScaleUp => "scaling.scale_up",
            EventKind::ScaleDown => "scaling.scale_down",
            EventKind::ActuationApplied => "actuation.applied",
            EventKind::ActuationFailed => "actuation.failed",
            EventKind::ActuationDrift => "actuation.drift",
        }
    }

    /// The kind named `name`; `None` for anything else (`no_action`).
    pub fn parse(name: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind `decision` makes, if any (`no_action` makes none).
    pub fn of_decision(decision: Decision) -> Option<Self> {
        match decision {
            Decision::ScaleUp => Some(EventKind::ScaleUp),
            Decision::ScaleDown => Some(EventKind::ScaleDown),
            Decision::NoAction => None,
        }
    }
}

/// The `type` of the event `POST /api/webhooks/{id}/test` sends.
pub const PING: &str = "ping";

/// An event body: `{"type", "timestamp", "data"}` in that order, the timestamp in
/// the API's format (RFC 3339, microseconds, `Z`). Every body sent is built here.
pub fn body<D: Serialize>(event_type: &str, at: DateTime<Utc>, data: &D) -> String {
    #[derive(Serialize)]
    struct Body<'a, D> {
        #[serde(rename = "type")]
        event_type: &'a str,
        timestamp: String,
        data: &'a D,
    }
    serde_json::to_string(&Body {
        event_type,
        timestamp: at.to_rfc3339_opts(SecondsFormat::Micros, true),
        data,
    })
    .expect("an event body serialises")
}

/// The body of a ping to `webhook`.
pub fn ping_body(webhook: Uuid, at: DateTime<Utc>) -> String {
    #[derive(Serialize)]
    struct Ping {
        webhook_id: Uuid,
    }
    body(
        PING,
        at,
        &Ping {
            webhook_id: webhook,
        },
    )
}

/// A decision's `data`, in the order the README documents.
#[derive(Serialize)]
struct DecisionData<'a> {
    instance_id: &'a str,
    decision: &'a str,
    reason: &'a str,
    level_before: i32,
    level_after: i32,
    dry_run: bool,
    cpu_utilization: Option<f64>,
    memory_usage: Option<f64>,
    network_in: Option<i64>,
    network_out: Option<i64>,
    decision_id: Uuid,
}

/// The event a decision makes, for every webhook of the instance's owner that
/// subscribes to its kind; queued in the decision's own transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionEvent {
    pub decision: Uuid,
    pub instance: Uuid,
    pub kind: EventKind,
    /// The decision's time: the event's `timestamp`, and when it is first due.
    pub at: DateTime<Utc>,
    /// The body, exactly as it will be signed and sent.
    pub payload: String,
}

impl DecisionEvent {
    /// The event of `record`, a decision of the instance with user-facing id
    /// `instance_id`; `None` when its decision is not an event kind.
    pub fn of(record: &DecisionRecord, instance_id: &str) -> Option<Self> {
        let kind = EventKind::of_decision(record.decision)?;
        let data = DecisionData {
            instance_id,
            decision: record.decision.as_str(),
            reason: &record.reason,
            level_before: record.level_before,
            level_after: record.level_after,
            dry_run: record.dry_run,
            cpu_utilization: record.cpu_utilization,
            memory_usage: record.memory_usage,
            network_in: record.network_in,
            network_out: record.network_out,
            decision_id: record.id,
        };
        Some(DecisionEvent {
            decision: record.id,
            instance: record.instance,
            kind,
            at: record.timestamp,
            payload: body(kind.event_type(), record.timestamp, &data),
        })
    }
}

/// A webhook of an instance's owner, as the stores read it for [`fan_out`].
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    pub instance: Uuid,
    pub webhook: Uuid,
    /// The kinds it subscribes to, by name.
    pub events: Vec<String>,
}

/// An event that goes to the subscribed webhooks of an instance's owner: a
/// decision's, or a scale target's (`store::ActuationNotice`).
pub trait Outbound {
    fn instance(&self) -> Uuid;
    fn kind(&self) -> EventKind;
}

impl Outbound for DecisionEvent {
    fn instance(&self) -> Uuid {
        self.instance
    }
    fn kind(&self) -> EventKind {
        self.kind
    }
}

/// One outbox row: `event` for `webhook`, under an id of its own (the
/// `webhook-id` header, the same on every attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow<'a, E = DecisionEvent> {
    pub id: Uuid,
    pub webhook: Uuid,
    pub event: &'a E,
}

/// The outbox rows of `events`: one per event and subscribing webhook of its
/// instance's owner, each with a time-ordered id.
pub fn fan_out<'a, E: Outbound>(
    events: &[&'a E],
    subscribers: &[Subscriber],
) -> Vec<OutboxRow<'a, E>> {
    events
        .iter()
        .flat_map(|&event| {
            subscribers
                .iter()
                .filter(move |s| {
                    s.instance == event.instance()
                        && s.events.iter().any(|e| e == event.kind().as_str())
                })
                .map(move |s| OutboxRow {
                    id: Uuid::now_v7(),
                    webhook: s.webhook,
                    event,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(decision: &str, cpu: f64) -> DecisionRecord {
        DecisionRecord {
            id: Uuid::from_u128(7),
            instance: Uuid::from_u128(1),
            timestamp: DateTime::parse_from_rfc3339("2026-01-22T05:21:00.123456789Z")
                .unwrap()
                .with_timezone(&Utc),
            cpu_utilization: Some(cpu),
            memory_usage: Some(50.0),
            network_in: None,
            network_out: Some(12),
            decision: Decision::parse(decision).unwrap(),
            reason: "CPU 95.0% > 80%".into(),
            level_before: 1,
            level_after: 2,
            dry_run: false,
        }
    }

    #[test]
    fn a_decision_body_has_the_readmes_shape_to_the_byte() {
        let event = DecisionEvent::of(&record("scale_up", 95.0), "mock-test-1").unwrap();
        assert_eq!(
            event.payload,
            r#"{"type":"scaling.scale_up","timestamp":"2026-01-22T05:21:00.123456Z","data":{"instance_id":"mock-test-1","decision":"scale_up","reason":"CPU 95.0% > 80%","level_before":1,"level_after":2,"dry_run":false,"cpu_utilization":95.0,"memory_usage":50.0,"network_in":null,"network_out":12,"decision_id":"00000000-0000-0000-0000-000000000007"}}"#
        );
        assert_eq!(
            (event.kind, event.decision),
            (EventKind::ScaleUp, Uuid::from_u128(7))
        );
    }

    #[test]
    fn only_scale_actions_make_events() {
        assert!(DecisionEvent::of(&record("no_action", 50.0), "i").is_none());
        assert_eq!(
            DecisionEvent::of(&record("scale_down", 5.0), "i").map(|e| e.kind),
            Some(EventKind::ScaleDown)
        );
        // A decision named like an actuation kind can no longer be built (a typed
        // `Decision`); what each decision makes:
        assert_eq!(
            [Decision::ScaleUp, Decision::ScaleDown, Decision::NoAction]
                .map(EventKind::of_decision),
            [Some(EventKind::ScaleUp), Some(EventKind::ScaleDown), None]
        );
        assert_eq!(
            EventKind::DEFAULT.map(EventKind::as_str),
            ["scale_up", "scale_down"]
        );
        assert_eq!(
            EventKind::ALL.map(EventKind::event_type),
            [
                "scaling.scale_up",
                "scaling.scale_down",
                "actuation.applied",
                "actuation.failed",
                "actuation.drift"
            ]
        );
    }

    #[test]
    fn a_ping_body_names_its_webhook() {
        let at = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        assert_eq!(
            ping_body(Uuid::from_u128(3), at),
            r#"{"type":"ping","timestamp":"2026-01-01T00:00:00.000000Z","data":{"webhook_id":"00000000-0000-0000-0000-000000000003"}}"#
        );
    }

    #[test]
    fn events_fan_out_to_the_owners_subscribed_webhooks_each_with_its_own_id() {
        let up = DecisionEvent::of(&record("scale_up", 95.0), "i").unwrap();
        let sub = |webhook: u128, events: &[&str]| Subscriber {
            instance: up.instance,
            webhook: Uuid::from_u128(webhook),
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        let others = Subscriber {
            instance: Uuid::from_u128(99),
            ..sub(4, &["scale_up"])
        };
        let subscribers = [
            sub(1, &["scale_up", "scale_down"]),
            sub(2, &["scale_down"]),
            sub(3, &["scale_up"]),
            others,
        ];
        let rows = fan_out(&[&up], &subscribers);
        let webhooks: Vec<u128> = rows.iter().map(|r| r.webhook.as_u128()).collect();
        assert_eq!(webhooks, [1, 3]);
        assert_ne!(rows[0].id, rows[1].id);
        assert_eq!(rows[0].id.get_version_num(), 7);
    }
}
