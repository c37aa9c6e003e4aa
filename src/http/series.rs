//! Chart data for one instance: its metrics bucketed over a span, the scaling
//! actions in it and the level path they drew.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ErrorBody, InstanceErrors};
use super::extract::AuthUser;
use super::instances::owned_instance;
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::scaling::Decision;
use crate::scaling::capacity_for_level;
use crate::store::{SeriesBucket, SeriesDecision};

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new().endpoints(routes!(metric_series))
}

/// Most buckets one answer holds.
pub const MAX_BUCKETS: i64 = 1000;
/// Longest span one request covers.
pub const MAX_SPAN_DAYS: i64 = 90;
/// Steps a default is chosen from: round numbers a time axis reads well.
const NICE_STEPS: [i64; 20] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800,
];

/// `?from=&to=&step=`: the span and the bucket width.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// RFC 3339 start of the span (inclusive); default one hour before `to`.
    #[param(value_type = Option<String>, format = DateTime, example = "2026-01-22T04:00:00Z")]
    pub from: Option<String>,
    /// RFC 3339 end of the span (exclusive); default now.
    #[param(value_type = Option<String>, format = DateTime, example = "2026-01-22T05:00:00Z")]
    pub to: Option<String>,
    /// Bucket width in whole seconds; default the smallest round step giving at most
    /// 1000 buckets and at least the sampling interval.
    #[param(value_type = Option<i64>, minimum = 1, example = 60)]
    pub step: Option<String>,
}

/// A validated span: `from < to`, at most 90 days, at most 1000 buckets of `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesSpan {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: i64,
}

fn timestamp(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    // A `+` offset sent unescaped in a query string arrives as a space.
    DateTime::parse_from_rfc3339(&raw.trim().replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::bad_series_time(name))
}

impl SeriesQuery {
    /// Validates the query at time `now`, for samples taken every `sampling` seconds.
    pub fn validate(&self, now: DateTime<Utc>, sampling: i64) -> Result<SeriesSpan, ApiError> {
        let to = match &self.to {
            Some(raw) => timestamp("to", raw)?,
            None => now,
        };
        let from = match &self.from {
            Some(raw) => timestamp("from", raw)?,
            None => to - TimeDelta::hours(1),
        };
        if from >= to {
            return Err(ApiError::from_not_before_to());
        }
        if to - from > TimeDelta::days(MAX_SPAN_DAYS) {
            return Err(ApiError::span_too_long(MAX_SPAN_DAYS));
        }
        let span_micros = (to - from).num_microseconds().unwrap_or(i64::MAX);
        let buckets = |step: i64| (span_micros + step * 1_000_000 - 1) / (step * 1_000_000);
        let max_step = MAX_SPAN_DAYS * 86_400;
        let step = match &self.step {
            Some(raw) => {
                let step = raw
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|s| (1..=max_step).contains(s))
                    .ok_or_else(|| ApiError::bad_step(max_step))?;
                if buckets(step) > MAX_BUCKETS {
                    let needed =
                        (span_micros + MAX_BUCKETS * 1_000_000 - 1) / (MAX_BUCKETS * 1_000_000);
                    return Err(ApiError::too_many_buckets(MAX_BUCKETS, needed));
                }
                step
            }
            None => NICE_STEPS
                .into_iter()
                .find(|&s| s >= sampling && buckets(s) <= MAX_BUCKETS)
                // A sampling interval beyond the list (up to an hour) is its own step.
                .unwrap_or_else(|| sampling.max(1)),
        };
        Ok(SeriesSpan { from, to, step })
    }
}

/// One bucket of samples.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPoint {
    /// Start of the bucket; buckets are `step` seconds wide, counted from `from`.
    #[schema(value_type = String, format = DateTime, example = "2026-01-22T04:00:00.000000Z")]
    pub timestamp: ApiTime,
    #[schema(example = 2)]
    pub samples: i64,
    #[schema(example = 45.2)]
    pub cpu_avg: f64,
    #[schema(example = 47.9)]
    pub cpu_max: f64,
    /// Null when no sample in the bucket knows its memory.
    #[schema(example = 62.8)]
    pub memory_avg: Option<f64>,
    #[schema(example = 63.1)]
    pub memory_max: Option<f64>,
    #[schema(example = 1024000.0)]
    pub network_in_avg: Option<f64>,
    #[schema(example = 512000.0)]
    pub network_out_avg: Option<f64>,
}

impl From<SeriesBucket> for SeriesPoint {
    fn from(b: SeriesBucket) -> Self {
        SeriesPoint {
            timestamp: b.start.into(),
            samples: b.samples,
            cpu_avg: b.cpu_avg,
            cpu_max: b.cpu_max,
            memory_avg: b.memory_avg,
            memory_max: b.memory_max,
            network_in_avg: b.network_in_avg,
            network_out_avg: b.network_out_avg,
        }
    }
}

/// A scaling action in the span.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesDecisionView {
    pub id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: ApiTime,
    /// `scale_up` or `scale_down`.
    pub decision: Decision,
    #[schema(
        example = "Sustained scale up: CPU > 90% for 85.0% of last 5 minutes (Current: 92.50%)"
    )]
    pub reason: String,
    #[schema(example = 1)]
    pub level_before: i32,
    #[schema(example = 2)]
    pub level_after: i32,
}

/// The instance's level from a moment on.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelPoint {
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: ApiTime,
    #[schema(example = 2)]
    pub level: i32,
    /// 100 × 1.5^(level − 1), the capacity in percent of the base size.
    #[schema(example = 150.0)]
    pub capacity: f64,
}

/// Chart data for one instance over a span, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesResponse {
    #[schema(example = "mock-test-1")]
    pub instance_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub from: ApiTime,
    #[schema(value_type = String, format = DateTime)]
    pub to: ApiTime,
    /// Bucket width in seconds.
    #[schema(example = 30)]
    pub step: i64,
    /// Buckets that hold samples.
    pub points: Vec<SeriesPoint>,
    /// The scale_up and scale_down actions in the span.
    pub decisions: Vec<SeriesDecisionView>,
    /// The level at `from`, then one point per level change in the span.
    pub levels: Vec<LevelPoint>,
}

/// The level path: `start` at `from`, then the level after each action that
/// changed it. Decision rows are written in the same transaction as the level
/// change they record, so they are the level's history.
pub fn level_path(
    from: DateTime<Utc>,
    start: i32,
    decisions: &[SeriesDecision],
) -> Vec<LevelPoint> {
    let point = |timestamp, level| LevelPoint {
        timestamp,
        level,
        capacity: capacity_for_level(level),
    };
    std::iter::once(point(from.into(), start))
        .chain(
            decisions
                .iter()
                .filter(|d| d.decision.is_action() && d.level_after != d.level_before)
                .map(|d| point(d.timestamp.into(), d.level_after)),
        )
        .collect()
}

/// Get an instance's metrics bucketed over a span, with its scaling actions and
/// level path: the dashboard's chart data. Aggregated in the database.
#[utoipa::path(get, path = "/api/metrics/{instance_id}/series", tag = "metrics",
    security(("bearer" = [])),
    params(("instance_id" = String, Path, description = "The instance's id"), SeriesQuery),
    responses(
        (status = 200, description = "Buckets, actions and levels, oldest first", body = SeriesResponse),
        (status = 400, description = "Bad from, to or step", body = ErrorBody,
            example = json!({"error": "from must be before to"})),
        InstanceErrors,
    ))]
pub async fn metric_series(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(instance_id): Path<String>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::repeated_series_param())?;
    let sampling = state.settings.metrics_interval.as_secs() as i64;
    let span = query.validate(Utc::now(), sampling)?;
    let instance = owned_instance(&state, user.id, &instance_id).await?;
    let store = &state.store;
    let (buckets, decisions, start) = tokio::try_join!(
        store.metric_series(instance.id, span.from, span.to, span.step),
        store.decisions_between(instance.id, span.from, span.to),
        store.level_at(instance.id, span.from),
    )?;
    let start = start.ok_or_else(ApiError::instance_not_found)?;
    let levels = level_path(span.from, start, &decisions);
    Ok(Json(SeriesResponse {
        instance_id: instance.instance_id,
        from: span.from.into(),
        to: span.to.into(),
        step: span.step,
        points: buckets.into_iter().map(Into::into).collect(),
        decisions: decisions
            .into_iter()
            .filter(|d| d.decision.is_action())
            .map(|d| SeriesDecisionView {
                id: d.id,
                timestamp: d.timestamp.into(),
                decision: d.decision,
                reason: d.reason,
                level_before: d.level_before,
                level_after: d.level_after,
            })
            .collect(),
        levels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn q(from: Option<&str>, to: Option<&str>, step: Option<&str>) -> SeriesQuery {
        SeriesQuery {
            from: from.map(Into::into),
            to: to.map(Into::into),
            step: step.map(Into::into),
        }
    }

    fn err(query: SeriesQuery) -> String {
        query
            .validate(at("2026-01-22T05:00:00Z"), 30)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_are_the_last_hour_at_the_sampling_interval() {
        let now = at("2026-01-22T05:00:00Z");
        let span = SeriesQuery::default().validate(now, 30).unwrap();
        assert_eq!(
            span,
            SeriesSpan {
                from: at("2026-01-22T04:00:00Z"),
                to: now,
                step: 30
            }
        );
    }

    #[test]
    fn the_default_step_is_the_smallest_round_one_within_1000_buckets() {
        let now = at("2026-01-22T05:00:00Z");
        let step = |from: &str, sampling| {
            q(Some(from), None, None)
                .validate(now, sampling)
                .unwrap()
                .step
        };
        assert_eq!(step("2026-01-22T04:00:00Z", 30), 30);
        assert_eq!(step("2026-01-22T04:00:00Z", 1), 5); // 3600 s / 5 = 720 buckets
        assert_eq!(step("2026-01-21T05:00:00Z", 30), 120); // a day: 720 buckets
        assert_eq!(step("2026-01-15T05:00:00Z", 30), 900); // 7 days: 672 buckets
        assert_eq!(step("2026-01-22T04:00:00Z", 45), 60); // 45 s is not round
        assert_eq!(step("2025-10-24T05:00:00Z", 30), 10800); // 90 days
    }

    #[test]
    fn offsets_are_read_and_a_plus_sent_unescaped_too() {
        let span = q(
            Some("2026-01-22T06:00:00 02:00"),
            Some("2026-01-22T06:00:00+01:00"),
            Some("60"),
        )
        .validate(Utc::now(), 30)
        .unwrap();
        assert_eq!(span.from, at("2026-01-22T04:00:00Z"));
        assert_eq!(span.to, at("2026-01-22T05:00:00Z"));
    }

    #[test]
    fn bad_spans_and_steps_name_their_parameter() {
        let from = Some("2026-01-22T04:00:00Z");
        let to = Some("2026-01-22T05:00:00Z");
        assert!(err(q(Some("yesterday"), to, None)).starts_with("from must be an RFC 3339"));
        assert!(err(q(from, Some("2026-01-22"), None)).starts_with("to must be an RFC 3339"));
        assert_eq!(err(q(to, to, None)), "from must be before to");
        assert_eq!(
            err(q(Some("2025-10-01T00:00:00Z"), to, None)),
            "from must be at most 90 days before to"
        );
        for bad in ["0", "-5", "1.5", "x", "", "7776001"] {
            assert_eq!(
                err(q(from, to, Some(bad))),
                "step must be a whole number of seconds between 1 and 7776000",
                "{bad}"
            );
        }
        assert_eq!(
            err(q(from, to, Some("3"))),
            "step must give at most 1000 buckets: this span needs a step of at least 4 seconds"
        );
        assert!(q(from, to, Some("4")).validate(Utc::now(), 30).is_ok());
    }

    #[test]
    fn the_level_path_starts_at_from_and_follows_the_actions() {
        let decision = |ts: &str, decision: &str, before, after| SeriesDecision {
            id: Uuid::nil(),
            timestamp: at(ts),
            decision: Decision::parse(decision).unwrap(),
            reason: String::new(),
            level_before: before,
            level_after: after,
        };
        let path = level_path(
            at("2026-01-22T04:00:00Z"),
            2,
            &[
                decision("2026-01-22T04:10:00Z", "scale_up", 2, 3),
                decision("2026-01-22T04:20:00Z", "no_action", 3, 3),
                decision("2026-01-22T04:30:00Z", "scale_down", 3, 2),
            ],
        );
        let levels: Vec<(DateTime<Utc>, i32, f64)> = path
            .iter()
            .map(|p| (p.timestamp.0, p.level, p.capacity))
            .collect();
        assert_eq!(
            levels,
            vec![
                (at("2026-01-22T04:00:00Z"), 2, 150.0),
                (at("2026-01-22T04:10:00Z"), 3, 225.0),
                (at("2026-01-22T04:30:00Z"), 2, 150.0),
            ]
        );
    }
}
