//! What a scale target is: the group or workload, how levels map to capacity, and
//! what to do when someone else changes it. Parsed once from the API's body into
//! these types; the store keeps the spec as the JSON `TargetSpec` serialises to.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The Kubernetes workload kinds whose scale subresource we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Deployments,
    Statefulsets,
}

impl Workload {
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Deployments => "deployments",
            Workload::Statefulsets => "statefulsets",
        }
    }

    /// The kind as people say it.
    pub fn singular(self) -> &'static str {
        match self {
            Workload::Deployments => "Deployment",
            Workload::Statefulsets => "StatefulSet",
        }
    }
}

/// Which thing in which cloud is scaled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetRef {
    AwsAsg {
        group_name: String,
        region: String,
    },
    Kubernetes {
        namespace: String,
        name: String,
        resource: Workload,
    },
}

/// The two kinds of target, as the API and the metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    AwsAsg,
    Kubernetes,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::AwsAsg => "aws_asg",
            TargetKind::Kubernetes => "kubernetes",
        }
    }
}

impl TargetRef {
    pub fn kind(&self) -> TargetKind {
        match self {
            TargetRef::AwsAsg { .. } => TargetKind::AwsAsg,
            TargetRef::Kubernetes { .. } => TargetKind::Kubernetes,
        }
    }

    /// What identifies the group or workload across all instances: two instances
    /// may not drive the same one (they would fight over its value).
    pub fn key(&self) -> String {
        match self {
            TargetRef::AwsAsg { group_name, region } => format!("aws_asg/{region}/{group_name}"),
            TargetRef::Kubernetes {
                namespace,
                name,
                resource,
            } => format!("kubernetes/{namespace}/{}/{name}", resource.as_str()),
        }
    }

    /// Writes are rate-limited per region (AWS) and per cluster (Kubernetes: the
    /// server talks to one).
    pub fn scope(&self) -> String {
        match self {
            TargetRef::AwsAsg { region, .. } => format!("aws_asg/{region}"),
            TargetRef::Kubernetes { .. } => "kubernetes".to_owned(),
        }
    }

    /// How messages name it.
    pub fn describe(&self) -> String {
        match self {
            TargetRef::AwsAsg { group_name, region } => {
                format!("Auto Scaling group {group_name} ({region})")
            }
            TargetRef::Kubernetes {
                namespace,
                name,
                resource,
            } => format!("{} {namespace}/{name}", resource.singular()),
        }
    }
}

/// How a level becomes a capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sizing {
    /// The capacity of level 1, 2, ... in turn.
    Capacities(Vec<i32>),
    /// Level L has ceil(base × 1.5^(L−1)): the step the capacity figures use.
    BaseCapacity(i32),
}

impl Sizing {
    /// The capacity of `level` (levels below 1 count as 1; past an explicit list's
    /// end, its last entry).
    pub fn capacity(&self, level: i32) -> i32 {
        let level = level.max(1);
        match self {
            Sizing::Capacities(list) => {
                let i = (level as usize - 1).min(list.len().saturating_sub(1));
                list.get(i).copied().unwrap_or(0)
            }
            Sizing::BaseCapacity(base) => {
                let value = (*base as f64) * 1.5f64.powi(level - 1);
                // Rounded to 9 places first, so 2 × 1.5² = 4.5 stays 5 and an exact
                // 4.000000000001 is not pushed to 5.
                let value = (value * 1e9).round() / 1e9;
                value.ceil().min(i32::MAX as f64) as i32
            }
        }
    }

    /// The lowest level in `min..=max` whose capacity reaches `capacity` (`max` when
    /// none does): the level an outside change is adopted as.
    pub fn level_for(&self, capacity: i32, min: i32, max: i32) -> i32 {
        (min..=max)
            .find(|&level| self.capacity(level) >= capacity)
            .unwrap_or(max)
    }
}

/// What to do when the group's desired capacity was changed by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDrift {
    /// Take the outside value as the instance's level (and start the cooldown).
    Adopt,
    /// Write our value back.
    Enforce,
}

/// Whether the target is written or only watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetMode {
    Apply,
    /// Record what would be written, write nothing.
    Observe,
}

/// A scale target as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    #[serde(flatten)]
    pub target: TargetRef,
    #[serde(flatten)]
    pub sizing: Sizing,
    pub on_drift: OnDrift,
    pub mode: TargetMode,
}

/// Longest list of capacities accepted (levels go up to 50).
const MAX_CAPACITIES: usize = 50;

impl TargetSpec {
    /// Parses the API's body; the error names the field that is wrong. `max_level`
    /// is the instance's policy's: an explicit list must cover every level.
    pub fn parse(body: &Value, max_level: i32) -> Result<TargetSpec, String> {
        let obj = body
            .as_object()
            .ok_or_else(|| "The body must be a JSON object".to_owned())?;
        let kind = str_field(obj, "kind")?
            .ok_or_else(|| "kind is required: \"aws_asg\" or \"kubernetes\"".to_owned())?;
        let (target, allowed): (TargetRef, &[&str]) = match kind {
            "aws_asg" => {
                let group_name = required_name(obj, "group_name", 255)?;
                let region = required_name(obj, "region", 32)?;
                if !crate::model::is_aws_region(&region) {
                    return Err("region must be an AWS region name such as us-east-1".into());
                }
                (
                    TargetRef::AwsAsg { group_name, region },
                    &["group_name", "region"],
                )
            }
            "kubernetes" => {
                let namespace = required_name(obj, "namespace", 63)?;
                let name = required_name(obj, "name", 253)?;
                for (field, value) in [("namespace", &namespace), ("name", &name)] {
                    if !is_dns_name(value) {
                        return Err(format!(
                            "{field} must be a Kubernetes name: lowercase letters, digits, '-' and '.'"
                        ));
                    }
                }
                let resource = match str_field(obj, "resource")? {
                    None | Some("deployments") => Workload::Deployments,
                    Some("statefulsets") => Workload::Statefulsets,
                    Some(_) => {
                        return Err(
                            "resource must be \"deployments\" or \"statefulsets\"".to_owned()
                        );
                    }
                };
                (
                    TargetRef::Kubernetes {
                        namespace,
                        name,
                        resource,
                    },
                    &["namespace", "name", "resource"],
                )
            }
            _ => return Err("kind must be \"aws_asg\" or \"kubernetes\"".to_owned()),
        };
        const COMMON: [&str; 5] = ["kind", "capacities", "base_capacity", "on_drift", "mode"];
        if let Some(unknown) = obj
            .keys()
            .find(|k| !COMMON.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
        {
            return Err(format!("{unknown} is not a field of a {kind} target"));
        }
        let present = |field: &str| obj.get(field).filter(|v| !v.is_null());
        let sizing = match (present("capacities"), present("base_capacity")) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("Give exactly one of capacities and base_capacity".to_owned());
            }
            (Some(list), None) => Sizing::Capacities(parse_capacities(list, max_level)?),
            (None, Some(base)) => match whole(base) {
                Some(b) if (1..=1_000_000).contains(&b) => Sizing::BaseCapacity(b as i32),
                _ => return Err("base_capacity must be a whole number from 1 to 1000000".into()),
            },
        };
        let on_drift = match str_field(obj, "on_drift")? {
            None | Some("adopt") => OnDrift::Adopt,
            Some("enforce") => OnDrift::Enforce,
            Some(_) => return Err("on_drift must be \"adopt\" or \"enforce\"".to_owned()),
        };
        let mode = match str_field(obj, "mode")? {
            None | Some("apply") => TargetMode::Apply,
            Some("observe") => TargetMode::Observe,
            Some(_) => return Err("mode must be \"apply\" or \"observe\"".to_owned()),
        };
        Ok(TargetSpec {
            target,
            sizing,
            on_drift,
            mode,
        })
    }

    /// The spec as the API shows it (and the store keeps it).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

fn required_name(obj: &Map<String, Value>, field: &str, max: usize) -> Result<String, String> {
    match str_field(obj, field)? {
        Some(s) if !s.is_empty() && s.len() <= max && s.trim() == s => Ok(s.to_owned()),
        Some(_) => Err(format!(
            "{field} must be 1 to {max} characters without surrounding spaces"
        )),
        None => Err(format!("{field} is required")),
    }
}

/// A DNS-1123 subdomain, as Kubernetes names are.
fn is_dns_name(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

fn whole(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

fn parse_capacities(list: &Value, max_level: i32) -> Result<Vec<i32>, String> {
    let items = list
        .as_array()
        .ok_or_else(|| "capacities must be a list of whole numbers".to_owned())?;
    if items.len() > MAX_CAPACITIES {
        return Err(format!(
            "capacities may list at most {MAX_CAPACITIES} levels"
        ));
    }
    let mut out: Vec<i32> = Vec::with_capacity(items.len());
    for item in items {
        let value = match whole(item) {
            Some(v) if (0..=1_000_000).contains(&v) => v as i32,
            _ => {
                return Err("capacities must be whole numbers from 0 to 1000000".to_owned());
            }
        };
        if out.last().is_some_and(|&prev| value < prev) {
            return Err("capacities must never decrease from one level to the next".to_owned());
        }
        out.push(value);
    }
    if (out.len() as i64) < max_level as i64 {
        return Err(format!(
            "capacities must give one capacity for each level up to the policy's max_level {max_level} (got {})",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base_capacity_steps_by_one_and_a_half_rounding_up() {
        let s = Sizing::BaseCapacity(2);
        let caps: Vec<i32> = (1..=5).map(|l| s.capacity(l)).collect();
        // 2, 3, 4.5, 6.75, 10.125
        assert_eq!(caps, vec![2, 3, 5, 7, 11]);
        assert_eq!(Sizing::BaseCapacity(4).capacity(3), 9);
    }

    #[test]
    fn an_outside_capacity_is_adopted_as_the_lowest_level_that_reaches_it() {
        let s = Sizing::Capacities(vec![1, 2, 4, 8]);
        assert_eq!(s.level_for(4, 1, 4), 3);
        assert_eq!(s.level_for(3, 1, 4), 3);
        assert_eq!(s.level_for(0, 2, 4), 2);
        assert_eq!(s.level_for(100, 1, 4), 4);
    }

    #[test]
    fn an_aws_body_parses_with_its_defaults() {
        let spec = TargetSpec::parse(
            &json!({"kind": "aws_asg", "group_name": "web", "region": "us-east-1", "base_capacity": 2}),
            10,
        )
        .unwrap();
        assert_eq!(
            spec.to_json(),
            json!({"kind": "aws_asg", "group_name": "web", "region": "us-east-1",
                   "base_capacity": 2, "on_drift": "adopt", "mode": "apply"})
        );
        let back: TargetSpec = serde_json::from_value(spec.to_json()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn each_wrong_field_is_named() {
        let cases = [
            (json!({"kind": "gcp"}), "kind must be"),
            (
                json!({"kind": "aws_asg", "region": "us-east-1", "base_capacity": 1}),
                "group_name is required",
            ),
            (
                json!({"kind": "aws_asg", "group_name": "w", "region": "moon", "base_capacity": 1}),
                "region must be",
            ),
            (
                json!({"kind": "aws_asg", "group_name": "w", "region": "us-east-1"}),
                "exactly one of",
            ),
            (
                json!({"kind": "aws_asg", "group_name": "w", "region": "us-east-1", "base_capacity": 0}),
                "base_capacity must be",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "Web", "base_capacity": 1}),
                "name must be a Kubernetes name",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "web", "resource": "pods", "base_capacity": 1}),
                "resource must be",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "web", "capacities": [1, 3, 2]}),
                "never decrease",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "web", "capacities": [1, 2]}),
                "max_level 3",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "web", "capacities": [1, 2, 2.5]}),
                "whole numbers",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "web", "base_capacity": 1, "on_drift": "x"}),
                "on_drift must be",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "web", "base_capacity": 1, "mode": "x"}),
                "mode must be",
            ),
            (
                json!({"kind": "kubernetes", "namespace": "default", "name": "web", "base_capacity": 1, "group_name": "x"}),
                "group_name is not a field",
            ),
        ];
        for (body, expected) in cases {
            let err = TargetSpec::parse(&body, 3).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }
}
