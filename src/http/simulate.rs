//! `POST /api/metrics/simulate`: load to test the engine with, one sample now or a
//! series ending now.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{BodyErrors, ErrorBody, InstanceErrors};
use super::extract::{ApiJson, AuthUser};
use super::instances::owned_instance;
use super::route::{ApiRouter, Endpoints};
use super::time::ApiTime;
use super::{ApiError, AppState};
use crate::model::{NewMetric, SampleSource};

pub(super) fn routes() -> ApiRouter {
    ApiRouter::new().endpoints(routes!(simulate))
}

/// Most metrics one prolonged simulation creates.
pub const MAX_SIMULATED_POINTS: i64 = 10_000;

/// Load to simulate: one sample now, or (with `duration_minutes`) a series ending now.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SimulateRequest {
    #[schema(required = true, value_type = String, min_length = 1, example = "mock-test-1")]
    pub instance_id: Option<String>,
    /// Percent, 0-100.
    #[schema(required = true, value_type = f64, minimum = 0, maximum = 100, example = 95.0)]
    pub cpu_utilization: Option<f64>,
    /// Percent, 0-100; omitted means unknown.
    #[schema(minimum = 0, maximum = 100, example = 50.0)]
    pub memory_usage: Option<f64>,
    /// Bytes, 0 or more.
    #[schema(minimum = 0, maximum = 9.0e15, example = 3072000)]
    pub network_in: Option<f64>,
    /// Bytes, 0 or more.
    #[schema(minimum = 0, maximum = 9.0e15, example = 1536000)]
    pub network_out: Option<f64>,
    /// Minutes of history to create, 1-1440. Makes the simulation prolonged. At most
    /// 10,000 metrics: duration_minutes × 60 / interval_seconds.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1440, example = 10)]
    pub duration_minutes: Option<f64>,
    /// Seconds between samples, at least 1 and at most duration_minutes × 60
    /// (default 30); needs duration_minutes.
    #[schema(value_type = Option<i64>, minimum = 1, example = 30)]
    pub interval_seconds: Option<f64>,
    /// Delete the instance's earlier metrics first, in the same transaction as the
    /// new ones are written (default false).
    #[schema(example = false)]
    pub clear_existing: Option<bool>,
}

/// A validated simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub instance_id: String,
    pub cpu: f64,
    pub memory: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
    /// `(duration_minutes, interval_seconds, points)` for a prolonged simulation.
    pub series: Option<(i64, i64, i64)>,
    /// Replace the instance's metrics rather than add to them.
    pub clear_existing: bool,
}

fn percent(name: &str, v: Option<f64>) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=100.0).contains(&x) => {
            Err(ApiError::bad_percentage(name))
        }
        other => Ok(other),
    }
}

fn bytes(name: &str, v: Option<f64>) -> Result<Option<i64>, ApiError> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=9.0e15).contains(&x) => {
            Err(ApiError::bad_byte_count(name))
        }
        other => Ok(other.map(|x| x.round() as i64)),
    }
}

fn whole(v: f64) -> Option<i64> {
    (v.is_finite() && v.fract() == 0.0 && v.abs() < 1e12).then_some(v as i64)
}

impl SimulateRequest {
    pub fn validate(self) -> Result<Simulation, ApiError> {
        let instance_id = self
            .instance_id
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let (Some(instance_id), Some(_)) = (instance_id, self.cpu_utilization) else {
            return Err(ApiError::simulation_fields_required());
        };
        let cpu = percent("cpu_utilization", self.cpu_utilization)?.unwrap_or_default();
        let memory = percent("memory_usage", self.memory_usage)?;
        let network_in = bytes("network_in", self.network_in)?;
        let network_out = bytes("network_out", self.network_out)?;
        let series = match (self.duration_minutes, self.interval_seconds) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ApiError::duration_required());
            }
            (Some(d), interval) => {
                let duration = whole(d)
                    .filter(|d| (1..=1440).contains(d))
                    .ok_or_else(ApiError::bad_duration)?;
                let interval = whole(interval.unwrap_or(30.0))
                    .filter(|i| *i >= 1)
                    .ok_or_else(ApiError::bad_interval)?;
                let points = duration * 60 / interval;
                if points < 1 {
                    return Err(ApiError::interval_over_duration());
                }
                if points > MAX_SIMULATED_POINTS {
                    return Err(ApiError::too_many_points(MAX_SIMULATED_POINTS));
                }
                Some((duration, interval, points))
            }
        };
        Ok(Simulation {
            instance_id,
            cpu,
            memory,
            network_in,
            network_out,
            series,
            clear_existing: self.clear_existing.unwrap_or(false),
        })
    }
}

impl Simulation {
    /// The samples to store for `instance`: one at `now`, or `points` spaced by the
    /// interval so that the newest is stamped `now`.
    pub fn samples(&self, instance: Uuid, now: DateTime<Utc>) -> Vec<NewMetric> {
        let (points, interval) = match self.series {
            Some((_, interval, points)) => (points, interval),
            None => (1, 0),
        };
        (0..points)
            .map(|i| NewMetric {
                instance,
                timestamp: now - TimeDelta::seconds((points - 1 - i) * interval),
                cpu_utilization: self.cpu,
                memory_usage: self.memory,
                network_in: self.network_in,
                network_out: self.network_out,
                source: SampleSource::Simulated,
            })
            .collect()
    }
}

/// The metric an instant simulation created.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulatedMetricView {
    pub id: Uuid,
    #[schema(example = "mock-test-1")]
    pub instance_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: ApiTime,
    pub cpu_utilization: f64,
    pub memory_usage: Option<f64>,
    pub network_in: Option<i64>,
    pub network_out: Option<i64>,
}

/// Answer to an instant simulation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulateInstantResponse {
    #[schema(example = "Simulated metric created successfully")]
    pub message: &'static str,
    pub metric: SimulatedMetricView,
}

/// Answer to a prolonged simulation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulateProlongedResponse {
    #[schema(example = "Created 20 simulated metrics over 10 minutes")]
    pub message: String,
    #[schema(example = 20)]
    pub metrics_created: i64,
    #[schema(example = 10)]
    pub duration_minutes: i64,
    #[schema(example = 30)]
    pub interval_seconds: i64,
    /// The first three metrics created (the oldest).
    pub sample_metrics: Vec<SampleMetricView>,
}

/// One of the metrics a prolonged simulation created.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleMetricView {
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: ApiTime,
    #[schema(example = 95.0)]
    pub cpu_utilization: f64,
    #[schema(example = 50.0)]
    pub memory_usage: Option<f64>,
}

/// Simulate metrics for testing: one sample now, or a prolonged series (written
/// all or nothing) ending now.
#[utoipa::path(post, path = "/api/metrics/simulate", tag = "metrics", security(("bearer" = [])),
    request_body(content = SimulateRequest, examples(
        ("Instant" = (value = json!({"instance_id": "mock-test-1", "cpu_utilization": 95.5, "memory_usage": 70.2, "network_in": 3072000, "network_out": 1536000}))),
        ("Prolonged" = (value = json!({"instance_id": "mock-test-1", "cpu_utilization": 95.0, "memory_usage": 50.0, "duration_minutes": 10, "interval_seconds": 30}))),
    )),
    responses(
        (status = 201, description = "Created: an instant (SimulateInstantResponse) or a prolonged (SimulateProlongedResponse) simulation",
            body = SimulateResponse),
        (status = 400, description = "Missing or invalid fields", body = ErrorBody,
            example = json!({"error": "cpu_utilization must be a number between 0 and 100"})),
        InstanceErrors,
        BodyErrors,
    ))]
pub async fn simulate(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<SimulateRequest>,
) -> Result<(StatusCode, Json<SimulateResponse>), ApiError> {
    let simulation = body.validate()?;
    let instance = owned_instance(&state, user.id, &simulation.instance_id).await?;
    let samples = simulation.samples(instance.id, Utc::now());
    let stored = if simulation.clear_existing {
        state.store.replace_metrics(instance.id, &samples).await?
    } else {
        state.store.insert_metrics(&samples).await?
    };
    let response = match simulation.series {
        None => {
            let m = stored
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no metric stored")))?;
            SimulateResponse::Instant(SimulateInstantResponse {
                message: "Simulated metric created successfully",
                metric: SimulatedMetricView {
                    id: m.id,
                    instance_id: instance.instance_id,
                    timestamp: m.timestamp.into(),
                    cpu_utilization: m.cpu_utilization,
                    memory_usage: m.memory_usage,
                    network_in: m.network_in,
                    network_out: m.network_out,
                },
            })
        }
        Some((duration, interval, points)) => {
            SimulateResponse::Prolonged(SimulateProlongedResponse {
                message: format!("Created {points} simulated metrics over {duration} minutes"),
                metrics_created: points,
                duration_minutes: duration,
                interval_seconds: interval,
                sample_metrics: stored
                    .iter()
                    .take(3)
                    .map(|m| SampleMetricView {
                        timestamp: m.timestamp.into(),
                        cpu_utilization: m.cpu_utilization,
                        memory_usage: m.memory_usage,
                    })
                    .collect(),
            })
        }
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// Either simulation answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SimulateResponse {
    Instant(SimulateInstantResponse),
    Prolonged(SimulateProlongedResponse),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> SimulateRequest {
        SimulateRequest {
            instance_id: Some("mock-1".into()),
            cpu_utilization: Some(95.0),
            memory_usage: Some(50.0),
            network_in: None,
            network_out: None,
            duration_minutes: None,
            interval_seconds: None,
            clear_existing: None,
        }
    }

    fn err(r: SimulateRequest) -> String {
        r.validate().unwrap_err().to_string()
    }

    #[test]
    fn values_out_of_range_are_rejected() {
        assert_eq!(
            err(SimulateRequest {
                cpu_utilization: Some(150.0),
                ..req()
            }),
            "cpu_utilization must be a number between 0 and 100"
        );
        assert_eq!(
            err(SimulateRequest {
                memory_usage: Some(-0.1),
                ..req()
            }),
            "memory_usage must be a number between 0 and 100"
        );
        assert_eq!(
            err(SimulateRequest {
                network_in: Some(-1.0),
                ..req()
            }),
            "network_in must be a number of bytes, 0 or more"
        );
        assert_eq!(
            err(SimulateRequest {
                cpu_utilization: None,
                ..req()
            }),
            "instance_id and cpu_utilization are required"
        );
    }

    #[test]
    fn prolonged_simulations_are_bounded() {
        let series = |d: f64, i: Option<f64>| SimulateRequest {
            duration_minutes: Some(d),
            interval_seconds: i,
            ..req()
        };
        assert_eq!(
            series(10.0, Some(30.0)).validate().unwrap().series,
            Some((10, 30, 20))
        );
        assert_eq!(
            series(10.0, None).validate().unwrap().series,
            Some((10, 30, 20))
        );
        assert!(err(series(0.0, Some(30.0))).starts_with("duration_minutes must be"));
        assert!(err(series(1441.0, Some(30.0))).starts_with("duration_minutes must be"));
        assert!(err(series(-2.0, Some(30.0))).starts_with("duration_minutes must be"));
        assert!(err(series(10.0, Some(0.0))).starts_with("interval_seconds must be"));
        assert!(err(series(1.0, Some(61.0))).starts_with("interval_seconds must not exceed"));
        assert!(err(series(1440.0, Some(1.0))).starts_with("A simulation creates at most 10000"));
    }

    #[test]
    fn a_series_ends_now_spaced_by_the_interval() {
        let sim = SimulateRequest {
            duration_minutes: Some(10.0),
            interval_seconds: Some(30.0),
            ..req()
        }
        .validate()
        .unwrap();
        let now = Utc::now();
        let samples = sim.samples(Uuid::new_v4(), now);
        assert_eq!(samples.len(), 20);
        assert_eq!(samples[19].timestamp, now);
        assert_eq!(samples[0].timestamp, now - TimeDelta::seconds(19 * 30));
        assert!(
            samples
                .windows(2)
                .all(|w| w[1].timestamp - w[0].timestamp == TimeDelta::seconds(30))
        );
    }
}
