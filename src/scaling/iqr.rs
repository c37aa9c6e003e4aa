//! The IQR vote: is the newest sample an outlier against its own window?
//!
//! Each metric's baseline is the window's values that no earlier decision flagged as
//! outliers (the newest sample included, unless it is flagged). With at least
//! [`MIN_BASELINE`] values, the metric's newest value votes up above `Q3 + f` and down
//! below `Q1 − f`, where `f = max(m × IQR, floor)` and `m` is the policy's
//! `iqr_multiplier` (1.5). The policy's weights (CPU 2, memory 2, network in 1, network
//! out 1) are summed and `votes_needed` (2) make an action, scale up winning ties.

use super::{
    Decision, OutlierType, Policy, Sample, Verdict, VoteWeights, Votes, Window, push_fmt, separate,
};

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

/// One voting metric.
struct Metric {
    name: &'static str,
    weight: fn(&VoteWeights) -> u32,
    value: fn(&Sample) -> Option<f64>,
    floor: Floor,
    unit: Unit,
}

#[derive(Clone, Copy)]
enum Unit {
    Percent,
    Bytes,
}

const METRICS: [Metric; 4] = [
    Metric {
        name: "CPU",
        weight: |w| w.cpu,
        value: |s| Some(s.cpu),
        floor: Floor::Points(5.0),
        unit: Unit::Percent,
    },
    Metric {
        name: "memory",
        weight: |w| w.memory,
        value: |s| s.memory,
        floor: Floor::Points(5.0),
        unit: Unit::Percent,
    },
    Metric {
        name: "network in",
        weight: |w| w.network_in,
        value: |s| s.network_in,
        floor: Floor::MedianShare(0.05),
        unit: Unit::Bytes,
    },
    Metric {
        name: "network out",
        weight: |w| w.network_out,
        value: |s| s.network_out,
        floor: Floor::MedianShare(0.05),
        unit: Unit::Bytes,
    },
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
#[derive(Clone, Copy)]
struct Ballot {
    metric: usize,
    value: f64,
    up: bool,
    bound: f64,
}

/// Votes the newest sample of the window and decides.
pub(super) fn evaluate(win: &Window<'_>, newest: &Sample, policy: &Policy) -> Verdict {
    let mut votes = Votes::default();
    let mut ballots: [Option<Ballot>; METRICS.len()] = [None; METRICS.len()];
    let mut any_baseline = false;
    for (i, metric) in METRICS.iter().enumerate() {
        // A missing value casts no vote (and is in no baseline): unknown is not 0.
        let Some(value) = (metric.value)(newest) else {
            continue;
        };
        let Some(b) = with_baseline(win, metric, |values| {
            bounds(values, metric.floor, policy.iqr_multiplier)
        }) else {
            continue;
        };
        let weight = (metric.weight)(&policy.weights);
        any_baseline = true;
        if value > b.upper {
            votes.up = votes.up.saturating_add(weight);
            ballots[i] = Some(Ballot {
                metric: i,
                value,
                up: true,
                bound: b.upper,
            });
        } else if value < b.lower {
            votes.down = votes.down.saturating_add(weight);
            ballots[i] = Some(Ballot {
                metric: i,
                value,
                up: false,
                bound: b.lower,
            });
        }
    }

    let (decision, outlier_type) = if votes.up >= policy.votes_needed {
        (Decision::ScaleUp, Some(OutlierType::ScaleUp))
    } else if votes.down >= policy.votes_needed {
        (Decision::ScaleDown, Some(OutlierType::ScaleDown))
    } else {
        (Decision::NoAction, None)
    };

    let mut reason = String::with_capacity(160);
    match decision {
        Decision::ScaleUp => push_fmt(
            &mut reason,
            format_args!(
                "IQR outlier: {} votes to scale up, {} to scale down",
                votes.up, votes.down
            ),
        ),
        Decision::ScaleDown => push_fmt(
            &mut reason,
            format_args!(
                "IQR outlier: {} votes to scale down, {} to scale up",
                votes.down, votes.up
            ),
        ),
        Decision::NoAction => push_fmt(
            &mut reason,
            format_args!(
                "Within normal range: {} up / {} down votes",
                votes.up, votes.down
            ),
        ),
    }
    if ballots.iter().any(Option::is_some) {
        reason.push_str(" (");
        let mut first = true;
        for ballot in ballots.iter().flatten() {
            separate(&mut reason, &mut first);
            write_ballot(&mut reason, ballot);
        }
        reason.push(')');
    } else if !any_baseline {
        push_fmt(
            &mut reason,
            format_args!(" (no metric has {MIN_BASELINE} unflagged samples for a baseline)"),
        );
    }

    Verdict {
        decision,
        reason,
        votes,
        outlier: outlier_type.map(|t| (newest.id, t)),
    }
}

/// `CPU 97.00% above upper bound 64.00%`, `network in 5000 B below lower bound 6000.0 B`.
fn write_ballot(out: &mut String, ballot: &Ballot) {
    let metric = &METRICS[ballot.metric];
    let (side, bound) = if ballot.up {
        ("above upper", ballot.bound)
    } else {
        ("below lower", ballot.bound)
    };
    match metric.unit {
        Unit::Percent => push_fmt(
            out,
            format_args!(
                "{} {:.2}% {side} bound {bound:.2}%",
                metric.name, ballot.value
            ),
        ),
        // Byte counts are whole; the bound keeps a decimal so that 100 below 100.5
        // does not read as 100 below 100.
        Unit::Bytes => push_fmt(
            out,
            format_args!(
                "{} {:.0} B {side} bound {bound:.1} B",
                metric.name, ballot.value
            ),
        ),
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
        let mut v = [50.0; 8];
        assert_eq!(
            bounds(&mut v, Floor::Points(5.0), 1.5),
            Some(Bounds {
                lower: 45.0,
                upper: 55.0
            })
        );
        let mut v = [1000.0; 8];
        assert_eq!(
            bounds(&mut v, Floor::MedianShare(0.05), 1.5),
            Some(Bounds {
                lower: 950.0,
                upper: 1050.0
            })
        );
        // Near-zero traffic still gets a fence of one byte.
        let mut v = [0.0; 8];
        assert_eq!(
            bounds(&mut v, Floor::MedianShare(0.05), 1.5),
            Some(Bounds {
                lower: -1.0,
                upper: 1.0
            })
        );
    }

    #[test]
    fn non_finite_values_do_not_panic() {
        let mut v = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0, f64::NAN];
        let _ = bounds(&mut v, Floor::Points(5.0), 1.5);
        let _ = bounds(&mut v, Floor::MedianShare(0.05), 1.5);
    }
}
