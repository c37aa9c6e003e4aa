//! The IQR vote: is the newest sample an outlier against its own window?
//!
//! Each metric's baseline is the window's values that no earlier decision flagged as
//! outliers (the newest sample included, unless it is flagged). With at least
//! [`MIN_BASELINE`] values, the metric's newest value votes up above `Q3 + f` and down
//! below `Q1 − f`, where `f = max(m × IQR, floor)` and `m` is the policy's
//! `iqr_multiplier` (1.5). The policy's weights (CPU 2, memory 2, network in 1, network
//! out 1) are summed and `votes_needed` (2) make an action, scale up winning ties.

use std::fmt;

use super::reason::Cause;
use super::{Decision, OutlierType, Policy, Sample, Verdict, VoteWeights, Votes, Window};

/// Fewest baseline values for a metric to vote: quartiles of fewer are noise.
pub const MIN_BASELINE: usize = 4;

/// Baselines up to this size are sorted on the stack; windows are ~20 samples.
const INLINE_VALUES: usize = 64;

/// How wide the fence must be at least, whatever the IQR.
///
/// An all-equal (or nearly equal) baseline has an IQR of 0, which would make every
/// tiny deviation an outlier: 50.1% CPU after a flat 50% is noise, not load. So the
/// fence is never narrower than 5 percentage points for CPU and memory, and than 5%
/// of the baseline median (at least 1 byte) for network traffic, whose scale varies
/// by orders of magnitude between instances.
#[derive(Clone, Copy)]
enum Floor {
    Points(f64),
    MedianShare(f64),
}

/// One voting metric. Percentages are fenced by points, byte counts by a share of
/// the median (see [`Floor`]).
struct Metric {
    name: &'static str,
    weight: fn(&VoteWeights) -> u32,
    value: fn(&Sample) -> Option<f64>,
    unit: Unit,
}

#[derive(Clone, Copy)]
enum Unit {
    Percent,
    Bytes,
}

impl Unit {
    fn floor(self) -> Floor {
        match self {
            Unit::Percent => Floor::Points(5.0),
            Unit::Bytes => Floor::MedianShare(0.05),
        }
    }
}

#[rustfmt::skip]
const METRICS: [Metric; 4] = [
    Metric { name: "CPU", weight: |w| w.cpu, value: |s| Some(s.cpu), unit: Unit::Percent },
    Metric { name: "memory", weight: |w| w.memory, value: |s| s.memory, unit: Unit::Percent },
    Metric { name: "network in", weight: |w| w.network_in, value: |s| s.network_in, unit: Unit::Bytes },
    Metric { name: "network out", weight: |w| w.network_out, value: |s| s.network_out, unit: Unit::Bytes },
];

/// Tukey fences of a baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub lower: f64,
    pub upper: f64,
}

/// The quantile `p` of sorted `values` by linear interpolation between closest ranks
/// (numpy's default, Hyndman–Fan type 7); NaN for an empty slice.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    match sorted.get(lo + 1) {
        Some(&hi) if frac > 0.0 => sorted[lo] + frac * (hi - sorted[lo]),
        _ => sorted[lo],
    }
}

/// The fences of a baseline, or `None` when it is too small to vote. Sorts `values`.
fn bounds(values: &mut [f64], floor: Floor, multiplier: f64) -> Option<Bounds> {
    if values.len() < MIN_BASELINE {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let q1 = quantile(values, 0.25);
    let q3 = quantile(values, 0.75);
    let floor = match floor {
        Floor::Points(points) => points,
        Floor::MedianShare(share) => (share * quantile(values, 0.5)).max(1.0),
    };
    let fence = (multiplier * (q3 - q1)).max(floor);
    Some(Bounds {
        lower: q1 - fence,
        upper: q3 + fence,
    })
}

/// Runs `f` on the baseline values of `metric`, on the stack when they fit.
fn with_baseline<R>(win: &Window<'_>, metric: &Metric, f: impl FnOnce(&mut [f64]) -> R) -> R {
    let mut inline = [0.0; INLINE_VALUES];
    let mut len = 0;
    let mut spilled = Vec::new();
    for v in win
        .iter()
        .filter(|s| !s.is_outlier)
        .filter_map(metric.value)
    {
        if len < INLINE_VALUES {
            inline[len] = v;
            len += 1;
        } else {
            if spilled.is_empty() {
                spilled.extend_from_slice(&inline);
            }
            spilled.push(v);
        }
    }
    if spilled.is_empty() {
        f(&mut inline[..len])
    } else {
        f(&mut spilled)
    }
}

/// One metric's vote, kept to explain the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ballot {
    value: f64,
    up: bool,
    bound: f64,
}

/// The votes of the newest sample and what they decided, for its reason.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Outcome {
    decision: Decision,
    votes: Votes,
    /// By position in [`METRICS`].
    ballots: [Option<Ballot>; METRICS.len()],
    any_baseline: bool,
}

/// Votes the newest sample of the window and decides.
pub(super) fn evaluate(win: &Window<'_>, newest: &Sample, policy: &Policy) -> Verdict {
    let mut votes = Votes::default();
    let mut ballots = [None; METRICS.len()];
    let mut any_baseline = false;
    for (metric, ballot) in METRICS.iter().zip(&mut ballots) {
        // A missing value casts no vote (and is in no baseline): unknown is not 0.
        let Some(value) = (metric.value)(newest) else {
            continue;
        };
        let Some(b) = with_baseline(win, metric, |values| {
            bounds(values, metric.unit.floor(), policy.iqr_multiplier)
        }) else {
            continue;
        };
        any_baseline = true;
        let (up, bound, tally) = if value > b.upper {
            (true, b.upper, &mut votes.up)
        } else if value < b.lower {
            (false, b.lower, &mut votes.down)
        } else {
            continue;
        };
        *tally = tally.saturating_add((metric.weight)(&policy.weights));
        *ballot = Some(Ballot { value, up, bound });
    }

    let (decision, outlier_type) = if votes.up >= policy.votes_needed {
        (Decision::ScaleUp, Some(OutlierType::ScaleUp))
    } else if votes.down >= policy.votes_needed {
        (Decision::ScaleDown, Some(OutlierType::ScaleDown))
    } else {
        (Decision::NoAction, None)
    };
    Verdict {
        decision,
        cause: Cause::Iqr(Outcome {
            decision,
            votes,
            ballots,
            any_baseline,
        }),
        votes,
        outlier: outlier_type.map(|t| (newest.id, t)),
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Votes { up, down } = self.votes;
        match self.decision {
            Decision::ScaleUp => write!(
                f,
                "IQR outlier: {up} votes to scale up, {down} to scale down"
            )?,
            Decision::ScaleDown => write!(
                f,
                "IQR outlier: {down} votes to scale down, {up} to scale up"
            )?,
            Decision::NoAction => write!(f, "Within normal range: {up} up / {down} down votes")?,
        }
        let mut cast = METRICS
            .iter()
            .zip(&self.ballots)
            .filter_map(|(m, b)| Some((m, (*b)?)))
            .peekable();
        if cast.peek().is_some() {
            f.write_str(" (")?;
            for (i, (metric, ballot)) in cast.enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write_ballot(f, metric, &ballot)?;
            }
            f.write_str(")")
        } else if !self.any_baseline {
            write!(
                f,
                " (no metric has {MIN_BASELINE} unflagged samples for a baseline)"
            )
        } else {
            Ok(())
        }
    }
}

/// `CPU 97.00% above upper bound 64.00%`, `network in 5000 B below lower bound 6000.0 B`.
fn write_ballot(f: &mut fmt::Formatter<'_>, metric: &Metric, ballot: &Ballot) -> fmt::Result {
    let Ballot { value, bound, .. } = *ballot;
    let side = if ballot.up {
        "above upper"
    } else {
        "below lower"
    };
    let name = metric.name;
    match metric.unit {
        Unit::Percent => write!(f, "{name} {value:.2}% {side} bound {bound:.2}%"),
        // Byte counts are whole; the bound keeps a decimal so that 100 below 100.5
        // does not read as 100 below 100.
        Unit::Bytes => write!(f, "{name} {value:.0} B {side} bound {bound:.1} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_closest_ranks_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.25), 1.75);
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.75), 3.25);
        let v = [40.0, 42.0, 44.0, 46.0, 48.0, 50.0, 52.0, 54.0, 97.0];
        assert_eq!(quantile(&v, 0.25), 44.0);
        assert_eq!(quantile(&v, 0.75), 52.0);
        assert_eq!(quantile(&[7.0], 0.75), 7.0);
    }

    #[test]
    fn fences_are_one_and_a_half_iqr_beyond_the_quartiles() {
        let mut v = [54.0, 40.0, 97.0, 42.0, 44.0, 46.0, 48.0, 50.0, 52.0];
        let b = bounds(&mut v, Floor::Points(5.0), 1.5).unwrap();
        assert_eq!(
            b,
            Bounds {
                lower: 32.0,
                upper: 64.0
            }
        );
    }

    #[test]
    fn fewer_than_four_values_give_no_bounds() {
        assert_eq!(bounds(&mut [1.0, 2.0, 3.0], Floor::Points(5.0), 1.5), None);
    }

    #[test]
    fn a_flat_baseline_is_fenced_by_the_floor() {
        let fence =
            |value: f64, floor| bounds(&mut [value; 8], floor, 1.5).map(|b| (b.lower, b.upper));
        assert_eq!(fence(50.0, Floor::Points(5.0)), Some((45.0, 55.0)));
        assert_eq!(
            fence(1000.0, Floor::MedianShare(0.05)),
            Some((950.0, 1050.0))
        );
        // Near-zero traffic still gets a fence of one byte.
        assert_eq!(fence(0.0, Floor::MedianShare(0.05)), Some((-1.0, 1.0)));
    }

    #[test]
    fn non_finite_values_do_not_panic() {
        let mut v = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0, f64::NAN];
        let _ = bounds(&mut v, Floor::Points(5.0), 1.5);
        let _ = bounds(&mut v, Floor::MedianShare(0.05), 1.5);
    }
}
