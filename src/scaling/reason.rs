//! Why the engine decided what it did, kept as the facts the reason quotes and written
//! out only when it is read. A live tick records every reason, so it writes each one;
//! a replay evaluates tens of thousands of ticks and shows the reasons of its actions
//! alone, and writing out every other reason was an eighth of its instructions
//! (BENCHMARKS.md, session 8).

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use super::iqr;

/// A reason: what decided, and whether the level bounds then held the action back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Reason {
    pub(super) cause: Cause,
    pub(super) suppressed: Option<Bound>,
}

impl From<Cause> for Reason {
    fn from(cause: Cause) -> Self {
        Reason {
            cause,
            suppressed: None,
        }
    }
}

/// The level bound that turned an action into `no_action`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Bound {
    Max(i32),
    Min(i32),
}

/// The rule that decided, with the values its text quotes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Cause {
    Cooldown {
        at: DateTime<Utc>,
        cooldown: TimeDelta,
    },
    AboveMax {
        level: i32,
        max: i32,
    },
    BelowMin {
        level: i32,
        min: i32,
    },
    NoMetrics(Span),
    Insufficient {
        total: usize,
        needed: usize,
        span: Span,
    },
    SustainedDown {
        cpu_below: f64,
        memory_below: f64,
        load: Load,
    },
    SustainedUp {
        hot: Hot,
        cpu_above: f64,
        memory_above: f64,
        load: Load,
    },
    Iqr(iqr::Outcome),
}

/// What a sustained rule saw: the share of the window that was hot (or idle), and the
/// newest sample's CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Load {
    pub percent: f64,
    pub span: Span,
    pub cpu: f64,
    pub memory: Option<f64>,
}

/// Which metric a sustained scale-up credits (see `Tally::sustained_up`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Hot {
    Cpu,
    Memory,
    Either,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = &self.cause;
        match self.suppressed {
            Some(Bound::Max(max)) => write!(
                f,
                "Scale up suppressed: already at maximum scale level {max} ({cause})"
            ),
            Some(Bound::Min(min)) => write!(
                f,
                "Scale down suppressed: already at minimum scale level {min} ({cause})"
            ),
            None => cause.fmt(f),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        match *self {
            Cause::Cooldown { at, cooldown } => {
                let allowed_after = at
                    .checked_add_signed(cooldown)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                write!(
                    f,
                    "Cooldown: last scaling action at {}, next evaluation allowed after {}",
                    time(at),
                    time(allowed_after)
                )
            }
            Cause::AboveMax { level, max } => write!(
                f,
                "Scale down: level {level} is above the policy's maximum level {max}"
            ),
            Cause::BelowMin { level, min } => write!(
                f,
                "Scale up: level {level} is below the policy's minimum level {min}"
            ),
            Cause::NoMetrics(span) => write!(f, "No metrics in the last {span}"),
            Cause::Insufficient {
                total,
                needed,
                span,
            } => {
                let noun = if total == 1 { "sample" } else { "samples" };
                write!(
                    f,
                    "Insufficient data: {total} {noun} in the last {span} (need at least {needed})"
                )
            }
            Cause::SustainedDown {
                cpu_below,
                memory_below,
                load,
            } => write!(
                f,
                "Sustained scale down: CPU < {cpu_below}% and memory < {memory_below}% for \
                 {:.1}% of last {} (Current CPU: {:.2}%, memory: {})",
                load.percent,
                load.span,
                load.cpu,
                MaybePercent(load.memory)
            ),
            Cause::SustainedUp {
                hot,
                cpu_above,
                memory_above,
                load,
            } => {
                let (percent, span) = (load.percent, load.span);
                match hot {
                    Hot::Cpu => write!(
                        f,
                        "Sustained scale up: CPU > {cpu_above}% for {percent:.1}% of last {span} \
                         (Current: {:.2}%)",
                        load.cpu
                    ),
                    Hot::Memory => write!(
                        f,
                        "Sustained scale up: memory > {memory_above}% for {percent:.1}% of last \
                         {span} (Current: {})",
                        MaybePercent(load.memory)
                    ),
                    Hot::Either => {
                        f.write_str("Sustained scale up: ")?;
                        if cpu_above == memory_above {
                            write!(f, "CPU or memory > {cpu_above}%")?;
                        } else {
                            write!(f, "CPU > {cpu_above}% or memory > {memory_above}%")?;
                        }
                        write!(
                            f,
                            " for {percent:.1}% of last {span} (Current CPU: {:.2}%, memory: {})",
                            load.cpu,
                            MaybePercent(load.memory)
                        )
                    }
                }
            }
            Cause::Iqr(ref outcome) => outcome.fmt(f),
        }
    }
}

/// A window length for reasons: "5 minutes", "90 seconds".
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Span(pub TimeDelta);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: i64| if n == 1 { "" } else { "s" };
        let ms = self.0.num_milliseconds();
        if ms != 0 && ms % 60_000 == 0 {
            let m = ms / 60_000;
            write!(f, "{m} minute{}", plural(m))
        } else if ms % 1000 == 0 {
            let s = ms / 1000;
            write!(f, "{s} second{}", plural(s))
        } else {
            write!(f, "{ms} milliseconds")
        }
    }
}

/// A percentage with two decimals, or `n/a` when the value is unknown.
pub(super) struct MaybePercent(pub Option<f64>);

impl fmt::Display for MaybePercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v:.2}%"),
            None => f.write_str("n/a"),
        }
    }
}
