//! The scaling decision engine: a pure function of an instance's state, the policy,
//! the metrics of its window and the current time. No I/O and no clock reads, so
//! every rule can be tested with plain values.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::OutlierType;

/// Tunables of the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Length of the evaluation window (5 minutes).
    pub window: TimeDelta,
    /// No further action on an instance this long after an applied one.
    pub cooldown: TimeDelta,
    /// Highest scale level (the lowest is 1).
    pub max_level: i32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            window: TimeDelta::minutes(5),
            cooldown: TimeDelta::seconds(300),
            max_level: 10,
        }
    }
}

/// What the engine needs to know about an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceState {
    /// Current scale level, 1..=max_level.
    pub level: i32,
    /// When the last scale_up/scale_down was applied.
    pub last_action_at: Option<DateTime<Utc>>,
}

/// One metric sample as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub cpu: f64,
    pub memory: Option<f64>,
    pub network_in: Option<f64>,
    pub network_out: Option<f64>,
    /// Already flagged as an outlier by an earlier decision.
    pub is_outlier: bool,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    ScaleUp,
    ScaleDown,
    NoAction,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::ScaleUp => "scale_up",
            Decision::ScaleDown => "scale_down",
            Decision::NoAction => "no_action",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scale_up" => Some(Decision::ScaleUp),
            "scale_down" => Some(Decision::ScaleDown),
            "no_action" => Some(Decision::NoAction),
            _ => None,
        }
    }
}

/// IQR votes of the newest sample (CPU 2, memory 2, network in 1, network out 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Votes {
    pub up: u32,
    pub down: u32,
}

/// What the engine decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub decision: Decision,
    pub reason: String,
    /// The level after the decision (unchanged for no_action).
    pub new_level: i32,
    pub votes: Votes,
    /// The sample to flag as an outlier, if an IQR vote singled one out.
    pub outlier: Option<(Uuid, OutlierType)>,
    /// The newest sample of the window, whose values the decision row records.
    pub latest: Option<Sample>,
}

/// Capacity (cpu, memory and network alike) at a scale level: 100 × 1.5^(level − 1).
pub fn capacity_for_level(level: i32) -> f64 {
    100.0 * 1.5_f64.powi(level - 1)
}

/// Decides whether `state` needs more or less capacity given the samples in `window`
/// (any order; those outside (now − policy.window, now] are ignored).
pub fn decide_scaling(
    state: &InstanceState,
    policy: &Policy,
    window: &[Sample],
    now: DateTime<Utc>,
) -> Evaluation {
    let _ = (state, policy, window, now);
    unimplemented!("engine being written")
}
