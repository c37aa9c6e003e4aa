//! The scale-target aggregate: one target per instance, its progress, its history,
//! and the worker's claim of due targets. Both backends implement [`Targets`] in a
//! file of this name (`postgres/targets.rs`, `sqlite/targets.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use super::row::{Id, Time};
use crate::actuate::reconcile::ActuationRecord;
use crate::actuate::{ActuationEvent, Progress, TargetSpec, TargetState, Update};
use crate::events::EventKind;
use crate::scaling::PolicyPatch;

/// A stored target.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleTarget {
    pub id: Uuid,
    pub instance: Uuid,
    pub spec: TargetSpec,
    pub state: TargetState,
    pub desired_level: i32,
    pub progress: Progress,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A target claimed for one pass, with what the pass needs of its instance.
#[derive(Debug, Clone, PartialEq)]
pub struct DueTarget {
    pub target: ScaleTarget,
    pub instance_id: String,
    pub email: String,
    pub policy: Option<PolicyPatch>,
    /// The claim's lease: its record lands only while it still holds.
    pub lease_until: DateTime<Utc>,
}

/// An actuation's webhook event: built in Rust, inserted once per subscribed webhook
/// of the instance's owner, in the transaction of its history row.
#[derive(Debug, Clone, PartialEq)]
pub struct ActuationNotice {
    pub actuation: Uuid,
    pub instance: Uuid,
    pub kind: EventKind,
    /// The body, exactly as it will be signed and sent.
    pub payload: String,
    pub at: DateTime<Utc>,
}

impl crate::events::Outbound for ActuationNotice {
    fn instance(&self) -> Uuid {
        self.instance
    }
    fn kind(&self) -> EventKind {
        self.kind
    }
}

/// The scale targets' side of the store.
#[async_trait]
pub trait Targets: Send + Sync {
    /// Attaches `spec` to `instance`, replacing any earlier target: pending, due at
    /// once, driven from the instance's current level. `Conflict` when another
    /// instance already drives the same group or workload; `Gone` when the instance is.
    async fn put_target(
        &self,
        instance: Uuid,
        spec: &TargetSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<ScaleTarget>;
    async fn target_of(&self, instance: Uuid) -> StoreResult<Option<ScaleTarget>>;
    /// Detaches; false when there was none. The history stays.
    async fn delete_target(&self, instance: Uuid) -> StoreResult<bool>;
    /// The newest `limit` lines of an instance's actuation history, newest first.
    async fn actuations(&self, instance: Uuid, limit: i64) -> StoreResult<Vec<ActuationRecord>>;
    /// Claims up to `limit` targets due at `now`, each until `lease_until`: across
    /// replicas a target is claimed by one at a time.
    async fn claim_targets(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueTarget>>;
    /// Writes back what the passes found, in one transaction: each target whose
    /// lease still holds gets its state, progress and next due time (at once if a
    /// decision moved its level meanwhile), its history line and webhook events,
    /// and its instance's cooldown start. Returns the targets that landed.
    async fn record_targets(
        &self,
        updates: &[Update],
        notices: &[ActuationNotice],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Uuid>>;
    /// The targets of `instances` (those that have one).
    async fn targets_of(&self, instances: &[Uuid]) -> StoreResult<Vec<ScaleTarget>>;
    /// How many targets are in each state, for the gauge.
    async fn targets_by_state(&self) -> StoreResult<Vec<(TargetState, i64)>>;
}

/// A target row, in `target_columns!` order.
#[derive(sqlx::FromRow)]
pub(super) struct TargetRow {
    id: Id,
    instance: Id,
    spec: String,
    state: String,
    desired_level: i32,
    progress: String,
    created_at: Time,
    updated_at: Time,
}

impl TargetRow {
    /// Only Rust writes these columns, so an unreadable one is a hand edit: the
    /// target then shows as failed with a message rather than failing every read.
    pub(super) fn into_target(self) -> Option<ScaleTarget> {
        let spec: TargetSpec = match serde_json::from_str(&self.spec) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(target = %self.id.0, error = %e, "ignoring a scale target whose stored spec is unreadable");
                return None;
            }
        };
        let progress: Progress = serde_json::from_str(&self.progress).unwrap_or_default();
        Some(ScaleTarget {
            id: self.id.0,
            instance: self.instance.0,
            spec,
            state: TargetState::parse(&self.state).unwrap_or(TargetState::Failed),
            desired_level: self.desired_level,
            progress,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        })
    }
}

/// A claimed target row: the target's columns, then its instance's and owner's.
#[derive(sqlx::FromRow)]
pub(super) struct DueRow {
    #[sqlx(flatten)]
    target: TargetRow,
    instance_id: String,
    email: String,
    policy: Option<String>,
    lease_until: Time,
}

impl DueRow {
    pub(super) fn into_due(self) -> Option<DueTarget> {
        Some(DueTarget {
            instance_id: self.instance_id,
            email: self.email,
            policy: super::decode_policy(self.policy),
            lease_until: self.lease_until.0,
            target: self.target.into_target()?,
        })
    }
}

/// A history row.
#[derive(sqlx::FromRow)]
pub(super) struct ActuationRow {
    id: Id,
    ts: Time,
    event: String,
    desired_capacity: Option<i32>,
    observed_capacity: Option<i32>,
    message: String,
}

impl ActuationRow {
    pub(super) fn into_record(self) -> ActuationRecord {
        ActuationRecord {
            id: self.id.0,
            at: self.ts.0,
            event: ActuationEvent::parse(&self.event).unwrap_or(ActuationEvent::Failed),
            desired_capacity: self.desired_capacity,
            observed_capacity: self.observed_capacity,
            message: self.message,
        }
    }
}

/// The JSON a target's spec and progress are stored as.
pub(super) fn spec_text(spec: &TargetSpec) -> String {
    spec.to_json().to_string()
}

pub(super) fn progress_text(progress: &Progress) -> String {
    serde_json::to_string(progress).unwrap_or_else(|_| "{}".into())
}

/// The history lines of the updates that landed.
pub(super) fn landed_events<'a>(
    updates: &'a [Update],
    landed: &'a std::collections::HashSet<Uuid>,
) -> impl Iterator<Item = (&'a Update, &'a ActuationRecord)> {
    updates
        .iter()
        .filter(|u| landed.contains(&u.target))
        .filter_map(|u| u.event.as_ref().map(|e| (u, e)))
}

/// The instances whose cooldown starts, with when: those of the updates that landed.
pub(super) fn cooldowns(
    updates: &[Update],
    landed: &std::collections::HashSet<Uuid>,
) -> Vec<(Uuid, DateTime<Utc>)> {
    updates
        .iter()
        .filter(|u| landed.contains(&u.target))
        .filter_map(|u| u.cooldown_from.map(|at| (u.instance, at)))
        .collect()
}

/// The gauge's counts, from `(state, count)` rows.
pub(super) fn state_counts(rows: Vec<(String, i64)>) -> Vec<(TargetState, i64)> {
    rows.into_iter()
        .filter_map(|(s, n)| Some((TargetState::parse(&s)?, n)))
        .collect()
}
