//! What a scaling tick writes, decided once for both stores. Each claimed instance's
//! evaluation becomes an [`ScalingOutcome`]; a batch of outcomes becomes
//! [`ScalingWrites`]: the level changes to try, the decision rows to insert, the
//! webhook events they make (bodies and all) and the outlier flags to set. The stores only carry these out (`Store::write_scaling`);
//! no rule about which rows a decision produces lives in SQL.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Decision, Evaluation, InstanceState, Sample, decide_scaling};
use crate::events::DecisionEvent;
use crate::model::{DecisionRecord, OutlierType};
use crate::policy::{Policy, PolicyMode, PolicyPatch};

/// An instance claimed for one scaling tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingCandidate {
    pub id: Uuid,
    /// The user-facing id, which the decision's webhook event names.
    pub instance_id: String,
    pub level: i32,
    pub last_action_at: Option<DateTime<Utc>>,
    pub last_decision: Option<Decision>,
    /// The instance's own policy fields, if any.
    pub policy: Option<PolicyPatch>,
    /// The dry run's shadow state.
    pub recommended_level: i32,
    pub recommended_action_at: Option<DateTime<Utc>>,
}

/// What the engine decided for one claimed instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingOutcome {
    pub instance: Uuid,
    /// The user-facing id, for the webhook event.
    pub instance_id: String,
    /// Level the decision was made at; an action only applies if it still holds.
    pub level_before: i32,
    pub evaluation: Evaluation,
    /// Write a decision row (an action, or a changed outcome).
    pub record: bool,
    pub decided_at: DateTime<Utc>,
    /// Decided in dry-run mode: an action moves the shadow level, not the real one,
    /// and `level_before` is the shadow's.
    pub dry_run: bool,
}

impl ScalingOutcome {
    /// Decides `candidate` under `policy` over the samples of its `window`. In dry-run
    /// mode the engine decides against the shadow state exactly as it would against
    /// the real one. Every action is recorded, and so is a change of outcome; an
    /// unchanged `no_action` is not written again every tick.
    pub fn decide(
        candidate: &ScalingCandidate,
        policy: &Policy,
        window: &[Sample],
        now: DateTime<Utc>,
    ) -> Self {
        let dry_run = policy.mode == PolicyMode::DryRun;
        let state = if dry_run {
            InstanceState {
                level: candidate.recommended_level,
                last_action_at: candidate.recommended_action_at,
            }
        } else {
            InstanceState {
                level: candidate.level,
                last_action_at: candidate.last_action_at,
            }
        };
        let evaluation = decide_scaling(&state, policy, window, now);
        let record = evaluation.decision != Decision::NoAction
            || candidate.last_decision != Some(evaluation.decision);
        ScalingOutcome {
            instance: candidate.id,
            instance_id: candidate.instance_id.clone(),
            level_before: state.level,
            evaluation,
            record,
            decided_at: now,
            dry_run,
        }
    }

    /// The decision row this outcome writes, if it writes one: the values of the
    /// newest sample of the window, and the levels before and after.
    fn decision_row(&self) -> Option<DecisionRecord> {
        if !self.record {
            return None;
        }
        let latest = self.evaluation.latest.as_ref();
        Some(DecisionRecord {
            // Time-ordered, like the rows it sits beside.
            id: Uuid::now_v7(),
            instance: self.instance,
            timestamp: self.decided_at,
            cpu_utilization: latest.map(|s| s.cpu),
            memory_usage: latest.and_then(|s| s.memory),
            network_in: latest.and_then(|s| s.network_in).map(|v| v.round() as i64),
            network_out: latest.and_then(|s| s.network_out).map(|v| v.round() as i64),
            decision: self.evaluation.decision,
            reason: self.evaluation.reason.clone(),
            level_before: self.level_before,
            level_after: self.evaluation.new_level,
            dry_run: self.dry_run,
        })
    }
}

/// A scale action to apply: `instance` goes from `before` to `after` at `at`, only
/// if it is still at `before` (another replica or an operator may have moved it
/// since the claim). An enforced change moves the real level and the shadow both,
/// so the shadow equals the real level for as long as the policy enforces; a dry
/// run's moves only the shadow (and `before` is the shadow's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelChange {
    pub instance: Uuid,
    pub before: i32,
    pub after: i32,
    pub at: DateTime<Utc>,
    pub dry_run: bool,
}

/// A metric an IQR vote singled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierFlag {
    pub instance: Uuid,
    pub metric: Uuid,
    pub kind: OutlierType,
}

/// Everything one batch of outcomes writes, in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScalingWrites {
    /// Applied first; see [`ScalingWrites::after_changes`] for what depends on them.
    pub changes: Vec<LevelChange>,
    decisions: Vec<DecisionRecord>,
    /// The events of the decisions that make one (scale actions).
    events: Vec<DecisionEvent>,
    outliers: Vec<OutlierFlag>,
}

/// What is written once the level changes have run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dependent<'a> {
    pub decisions: Vec<&'a DecisionRecord>,
    /// The decisions' webhook events, to queue for the owners' subscribed webhooks.
    pub events: Vec<&'a DecisionEvent>,
    pub outliers: Vec<&'a OutlierFlag>,
}

impl ScalingWrites {
    /// The writes of a batch of outcomes.
    pub fn plan(outcomes: &[ScalingOutcome]) -> Self {
        let mut writes = ScalingWrites::default();
        for o in outcomes {
            if o.evaluation.decision != Decision::NoAction {
                writes.changes.push(LevelChange {
                    instance: o.instance,
                    before: o.level_before,
                    after: o.evaluation.new_level,
                    at: o.decided_at,
                    dry_run: o.dry_run,
                });
            }
            if let Some(row) = o.decision_row() {
                writes
                    .events
                    .extend(DecisionEvent::of(&row, &o.instance_id));
                writes.decisions.push(row);
            }
            if let Some((metric, kind)) = o.evaluation.outlier {
                writes.outliers.push(OutlierFlag {
                    instance: o.instance,
                    metric,
                    kind,
                });
            }
        }
        writes
    }

    /// The instances whose rows these writes update, in key order (the order their
    /// locks are taken in).
    pub fn instances(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .changes
            .iter()
            .map(|c| c.instance)
            .chain(self.decisions.iter().map(|d| d.instance))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The decision rows and outlier flags to write once the level changes ran,
    /// `applied` holding the instances whose change took effect. An action whose
    /// change was refused did not happen: neither its row nor its flag is written.
    pub fn after_changes(&self, applied: &HashSet<Uuid>) -> Dependent<'_> {
        let refused: HashSet<Uuid> = self
            .changes
            .iter()
            .map(|c| c.instance)
            .filter(|id| !applied.contains(id))
            .collect();
        Dependent {
            decisions: self
                .decisions
                .iter()
                .filter(|d| !refused.contains(&d.instance))
                .collect(),
            events: self
                .events
                .iter()
                .filter(|e| !refused.contains(&e.instance))
                .collect(),
            outliers: self
                .outliers
                .iter()
                .filter(|f| !refused.contains(&f.instance))
                .collect(),
        }
    }
}

impl ScalingOutcome {
    /// A `no_action` for an instance whose scale target still waits for capacity:
    /// nothing is decided on top of a change that has not arrived.
    pub fn waiting(
        candidate: &ScalingCandidate,
        window: &[Sample],
        now: DateTime<Utc>,
        reason: &str,
    ) -> Self {
        ScalingOutcome {
            instance: candidate.id,
            instance_id: candidate.instance_id.clone(),
            level_before: candidate.level,
            evaluation: Evaluation {
                decision: Decision::NoAction,
                reason: reason.to_owned(),
                new_level: candidate.level,
                votes: Default::default(),
                outlier: None,
                latest: window.iter().max_by_key(|s| s.timestamp).cloned(),
            },
            record: candidate.last_decision != Some(Decision::NoAction),
            decided_at: now,
            dry_run: false,
        }
    }
}

/// What scale targets take from a batch: the new desired level of each instance
/// whose enforced change took effect. A dry run moves no target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLevel {
    pub instance: Uuid,
    pub level: i32,
    pub at: DateTime<Utc>,
}

impl ScalingWrites {
    /// The desired levels for the instances' scale targets, `applied` holding the
    /// instances whose change took effect.
    pub fn target_levels(&self, applied: &HashSet<Uuid>) -> Vec<TargetLevel> {
        self.changes
            .iter()
            .filter(|c| !c.dry_run && applied.contains(&c.instance))
            .map(|c| TargetLevel {
                instance: c.instance,
                level: c.after,
                at: c.at,
            })
            .collect()
    }

    /// The writes of adopting an outside change of a scale target: the instance's
    /// level moves from `before` to `after` (if it still is at `before`), recorded as
    /// a decision whose reason names the change, and its cooldown starts.
    pub fn adopted(
        instance: Uuid,
        instance_id: &str,
        before: i32,
        after: i32,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Self {
        let decision = if after > before {
            Decision::ScaleUp
        } else {
            Decision::ScaleDown
        };
        let row = DecisionRecord {
            id: Uuid::now_v7(),
            instance,
            timestamp: at,
            cpu_utilization: None,
            memory_usage: None,
            network_in: None,
            network_out: None,
            decision,
            reason: reason.to_owned(),
            level_before: before,
            level_after: after,
            dry_run: false,
        };
        ScalingWrites {
            changes: vec![LevelChange {
                instance,
                before,
                after,
                at,
                dry_run: false,
            }],
            events: DecisionEvent::of(&row, instance_id).into_iter().collect(),
            decisions: vec![row],
            outliers: Vec::new(),
        }
    }
}

/// What a batch's decision rows leave on one instance's row: the newest of them
/// (the batch's last for it) as `last_decision`, and how many there are, which its
/// `decision_count` goes up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestDecision {
    pub instance: Uuid,
    pub decision: Decision,
    pub rows: i64,
}

/// The [`LatestDecision`] of each instance among `rows`, in the order the instances
/// first appear: two rows for one instance count twice and leave the later one.
pub fn latest_decisions<'a>(
    rows: impl IntoIterator<Item = &'a DecisionRecord>,
) -> Vec<LatestDecision> {
    let mut latest: Vec<LatestDecision> = Vec::new();
    let mut at = std::collections::HashMap::<Uuid, usize>::new();
    for row in rows {
        match at.get(&row.instance) {
            Some(&i) => {
                latest[i].decision = row.decision;
                latest[i].rows += 1;
            }
            None => {
                at.insert(row.instance, latest.len());
                latest.push(LatestDecision {
                    instance: row.instance,
                    decision: row.decision,
                    rows: 1,
                });
            }
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaling::Votes;

    fn outcome(decision: Decision, record: bool, outlier: bool) -> ScalingOutcome {
        let at = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let sample = Sample {
            id: Uuid::now_v7(),
            timestamp: at,
            cpu: 95.0,
            memory: Some(40.5),
            network_in: Some(1_000.4),
            network_out: None,
            is_outlier: false,
        };
        ScalingOutcome {
            instance: Uuid::now_v7(),
            instance_id: "mock-1".into(),
            level_before: 2,
            evaluation: Evaluation {
                decision,
                reason: "because".into(),
                new_level: if decision == Decision::ScaleUp { 3 } else { 2 },
                votes: Votes::default(),
                outlier: outlier.then_some((sample.id, OutlierType::ScaleUp)),
                latest: Some(sample),
            },
            record,
            decided_at: at,
            dry_run: false,
        }
    }

    #[test]
    fn an_action_is_a_change_a_row_and_its_flag() {
        let up = outcome(Decision::ScaleUp, true, true);
        let writes = ScalingWrites::plan(std::slice::from_ref(&up));
        assert_eq!(
            writes.changes,
            vec![LevelChange {
                instance: up.instance,
                before: 2,
                after: 3,
                at: up.decided_at,
                dry_run: false
            }]
        );
        let rest = writes.after_changes(&HashSet::from([up.instance]));
        assert_eq!(rest.decisions.len(), 1);
        let row = rest.decisions[0];
        assert_eq!(
            (row.decision, row.level_before, row.level_after),
            (Decision::ScaleUp, 2, 3)
        );
        assert_eq!(
            (
                row.cpu_utilization,
                row.memory_usage,
                row.network_in,
                row.network_out
            ),
            (Some(95.0), Some(40.5), Some(1_000), None)
        );
        assert_eq!(rest.outliers.len(), 1);
        assert_eq!(writes.instances(), vec![up.instance]);
    }

    #[test]
    fn a_refused_change_takes_its_row_and_flag_with_it() {
        let up = outcome(Decision::ScaleUp, true, true);
        let quiet = outcome(Decision::NoAction, true, true);
        let writes = ScalingWrites::plan(&[up.clone(), quiet.clone()]);
        assert_eq!(writes.changes.len(), 1);
        let rest = writes.after_changes(&HashSet::new());
        let rows: Vec<Uuid> = rest.decisions.iter().map(|d| d.instance).collect();
        let flags: Vec<Uuid> = rest.outliers.iter().map(|f| f.instance).collect();
        assert_eq!(rows, vec![quiet.instance]);
        assert_eq!(flags, vec![quiet.instance]);
    }

    #[test]
    fn two_rows_for_one_instance_count_twice_and_leave_the_later() {
        let first = outcome(Decision::NoAction, true, false);
        let mut second = outcome(Decision::ScaleDown, true, false);
        second.instance = first.instance;
        let other = outcome(Decision::NoAction, true, false);
        let writes = ScalingWrites::plan(&[first.clone(), other.clone(), second]);
        let rest = writes.after_changes(&HashSet::from([first.instance]));
        assert_eq!(
            latest_decisions(rest.decisions.iter().copied()),
            vec![
                LatestDecision {
                    instance: first.instance,
                    decision: Decision::ScaleDown,
                    rows: 2
                },
                LatestDecision {
                    instance: other.instance,
                    decision: Decision::NoAction,
                    rows: 1
                },
            ]
        );
    }

    #[test]
    fn an_applied_action_makes_its_event_and_a_refused_or_quiet_one_none() {
        let up = outcome(Decision::ScaleUp, true, false);
        let refused = outcome(Decision::ScaleUp, true, false);
        let quiet = outcome(Decision::NoAction, true, false);
        let writes = ScalingWrites::plan(&[up.clone(), refused, quiet]);
        let rest = writes.after_changes(&HashSet::from([up.instance]));
        assert_eq!(rest.events.len(), 1);
        let event = rest.events[0];
        let row = rest
            .decisions
            .iter()
            .find(|d| d.instance == up.instance)
            .unwrap();
        assert_eq!(
            (event.instance, event.decision, event.at),
            (up.instance, row.id, up.decided_at)
        );
        assert_eq!(Some(event), DecisionEvent::of(row, "mock-1").as_ref());
    }

    #[test]
    fn an_unrecorded_no_action_writes_only_its_flag() {
        let quiet = outcome(Decision::NoAction, false, true);
        let writes = ScalingWrites::plan(std::slice::from_ref(&quiet));
        assert!(writes.changes.is_empty());
        assert!(writes.instances().is_empty());
        let rest = writes.after_changes(&HashSet::new());
        assert!(rest.decisions.is_empty());
        assert_eq!(rest.outliers.len(), 1);
    }
}
