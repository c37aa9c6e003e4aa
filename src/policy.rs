//! The engine's tunables as data, their validation, and the rules of an instance's
//! policy: how its own fields resolve over the defaults ([`Policy::resolve`]) and
//! what changing them does ([`PolicyChange`]). A ground-floor module: it imports
//! nothing of the crate, so `model`, `scaling`, `store` and `http` all use it.
//!
//! [`Policy`] is what the engine decides under; its JSON (the API's field names) is
//! what a stored per-instance policy looks like. [`PolicyPatch`] is a partial update,
//! parsed from a `serde_json::Value` so that a wrong type names its field in the same
//! words as an out-of-range value does. Validation is pure and reports the first
//! broken rule: fields in the order they are declared, then the rules between fields.

use chrono::TimeDelta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Whether the jobs act on decisions or only record them. The engine ignores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    #[default]
    Enforce,
    DryRun,
}

/// Weights of the IQR votes per metric; not part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteWeights {
    pub cpu: u32,
    pub memory: u32,
    pub network_in: u32,
    pub network_out: u32,
}

impl Default for VoteWeights {
    fn default() -> Self {
        VoteWeights {
            cpu: 2,
            memory: 2,
            network_in: 1,
            network_out: 1,
        }
    }
}

/// Tunables of the engine. Percent thresholds are strict: a sample is hot above
/// `scale_up_*_above` and idle below `scale_down_*_below`.
///
/// `window` and `cooldown` are durations inside the crate (tests use second-level
/// windows) and whole minutes / seconds in JSON: serialising a window that is not a
/// whole number of minutes truncates it, which [`Policy::validate`] rejects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: PolicyMode,
    pub scale_up_cpu_above: f64,
    pub scale_up_memory_above: f64,
    pub scale_down_cpu_below: f64,
    pub scale_down_memory_below: f64,
    /// Share of the window's samples that must be hot (or idle) for a sustained action.
    pub sustained_ratio: f64,
    /// Length of the evaluation window.
    #[serde(rename = "window_minutes", with = "whole_minutes")]
    pub window: TimeDelta,
    /// Fewest samples in the window for the engine to decide anything.
    pub min_samples: usize,
    /// Tukey fences lie this many IQRs beyond the quartiles.
    pub iqr_multiplier: f64,
    /// Weighted IQR votes needed for an action.
    pub votes_needed: u32,
    /// No further action on an instance this long after an applied one.
    #[serde(rename = "cooldown_seconds", with = "whole_seconds")]
    pub cooldown: TimeDelta,
    pub min_level: i32,
    pub max_level: i32,
    #[serde(skip)]
    pub weights: VoteWeights,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: PolicyMode::Enforce,
            scale_up_cpu_above: 90.0,
            scale_up_memory_above: 90.0,
            scale_down_cpu_below: 10.0,
            scale_down_memory_below: 20.0,
            sustained_ratio: 0.8,
            window: TimeDelta::minutes(5),
            min_samples: 3,
            iqr_multiplier: 1.5,
            votes_needed: 2,
            cooldown: TimeDelta::seconds(300),
            min_level: 1,
            max_level: 10,
            weights: VoteWeights::default(),
        }
    }
}

/// Why a policy or a patch was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy must be a JSON object")]
    NotAnObject,
    #[error("unknown policy field {0}")]
    UnknownField(String),
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
}

impl PolicyError {
    fn invalid(field: &'static str, message: &'static str) -> Self {
        PolicyError::Invalid { field, message }
    }
}

/// A partial policy: every field that is `Some` replaces the base's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<PolicyMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_up_cpu_above: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_up_memory_above: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_down_cpu_below: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_down_memory_below: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sustained_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iqr_multiplier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub votes_needed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_level: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_level: Option<i64>,
}

/// The API fields, in declaration (and so error-reporting) order.
const FIELDS: [&str; 13] = [
    "mode",
    "scale_up_cpu_above",
    "scale_up_memory_above",
    "scale_down_cpu_below",
    "scale_down_memory_below",
    "sustained_ratio",
    "window_minutes",
    "min_samples",
    "iqr_multiplier",
    "votes_needed",
    "cooldown_seconds",
    "min_level",
    "max_level",
];

const MODE: &str = "mode must be \"enforce\" or \"dry_run\"";
const LOW_CPU: &str = "scale_down_cpu_below must be below scale_up_cpu_above";
const LOW_MEMORY: &str = "scale_down_memory_below must be below scale_up_memory_above";
const LEVELS: &str = "min_level must not be above max_level";

/// How one numeric field is checked.
#[derive(Clone, Copy)]
enum Rule {
    /// A finite number in `lo..=hi`.
    Number(f64, f64, &'static str),
    /// A finite number in `(lo, hi]`.
    Positive(f64, &'static str),
    /// An integer in `lo..=hi`.
    Integer(i64, i64, &'static str),
}

fn rule(field: &str) -> Rule {
    match field {
        "scale_up_cpu_above" => Rule::Number(
            0.0,
            100.0,
            "scale_up_cpu_above must be a number between 0 and 100",
        ),
        "scale_up_memory_above" => Rule::Number(
            0.0,
            100.0,
            "scale_up_memory_above must be a number between 0 and 100",
        ),
        "scale_down_cpu_below" => Rule::Number(
            0.0,
            100.0,
            "scale_down_cpu_below must be a number between 0 and 100",
        ),
        "scale_down_memory_below" => Rule::Number(
            0.0,
            100.0,
            "scale_down_memory_below must be a number between 0 and 100",
        ),
        "sustained_ratio" => {
            Rule::Positive(1.0, "sustained_ratio must be greater than 0 and at most 1")
        }
        "window_minutes" => {
            Rule::Integer(1, 60, "window_minutes must be an integer between 1 and 60")
        }
        "min_samples" => {
            Rule::Integer(1, 1000, "min_samples must be an integer between 1 and 1000")
        }
        "iqr_multiplier" => {
            Rule::Positive(10.0, "iqr_multiplier must be greater than 0 and at most 10")
        }
        "votes_needed" => Rule::Integer(1, 6, "votes_needed must be an integer between 1 and 6"),
        "cooldown_seconds" => Rule::Integer(
            0,
            86_400,
            "cooldown_seconds must be an integer between 0 and 86400",
        ),
        "min_level" => Rule::Integer(1, 50, "min_level must be an integer between 1 and 50"),
        "max_level" => Rule::Integer(1, 50, "max_level must be an integer between 1 and 50"),
        _ => unreachable!("{field} is not a numeric policy field"),
    }
}

fn field_name(field: &str) -> &'static str {
    FIELDS
        .iter()
        .find(|f| **f == field)
        .copied()
        .unwrap_or("policy")
}

/// Checks a float field against its rule.
fn check_number(field: &str, value: f64) -> Result<f64, PolicyError> {
    let (ok, message) = match rule(field) {
        Rule::Number(lo, hi, m) => ((lo..=hi).contains(&value), m),
        Rule::Positive(hi, m) => (value > 0.0 && value <= hi, m),
        Rule::Integer(..) => unreachable!("{field} is an integer field"),
    };
    // NaN fails both range tests above, so `ok` also means finite.
    ok.then_some(value)
        .ok_or_else(|| PolicyError::invalid(field_name(field), message))
}

/// Checks an integer field against its rule.
fn check_integer(field: &str, value: i64) -> Result<i64, PolicyError> {
    let Rule::Integer(lo, hi, message) = rule(field) else {
        unreachable!("{field} is a number field");
    };
    (lo..=hi)
        .contains(&value)
        .then_some(value)
        .ok_or_else(|| PolicyError::invalid(field_name(field), message))
}

/// A value of the wrong JSON type gets the same message as one out of range.
fn type_error(field: &str) -> PolicyError {
    match rule(field) {
        Rule::Integer(_, _, m) | Rule::Number(_, _, m) | Rule::Positive(_, m) => {
            PolicyError::invalid(field_name(field), m)
        }
    }
}

/// A JSON number with an integral value (`5` or `5.0`), else the field's message.
fn json_integer(field: &str, value: &Value) -> Result<i64, PolicyError> {
    let n = value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    });
    n.ok_or_else(|| type_error(field))
        .and_then(|n| check_integer(field, n))
}

fn json_number(field: &str, value: &Value) -> Result<f64, PolicyError> {
    value
        .as_f64()
        .ok_or_else(|| type_error(field))
        .and_then(|n| check_number(field, n))
}

impl PolicyPatch {
    /// Parses a patch from a JSON object. Unknown fields, wrong types (strings for
    /// numbers, fractions for integers, `null`) and out-of-range values are errors.
    pub fn from_json(value: &Value) -> Result<Self, PolicyError> {
        let object: &Map<String, Value> = value.as_object().ok_or(PolicyError::NotAnObject)?;
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(PolicyError::UnknownField(unknown.clone()));
        }
        let mut patch = PolicyPatch::default();
        for field in FIELDS {
            let Some(v) = object.get(field) else {
                continue;
            };
            let int = || json_integer(field, v);
            let num = || json_number(field, v);
            match field {
                "mode" => {
                    patch.mode = Some(match v.as_str() {
                        Some("enforce") => PolicyMode::Enforce,
                        Some("dry_run") => PolicyMode::DryRun,
                        _ => return Err(PolicyError::invalid("mode", MODE)),
                    })
                }
                "scale_up_cpu_above" => patch.scale_up_cpu_above = Some(num()?),
                "scale_up_memory_above" => patch.scale_up_memory_above = Some(num()?),
                "scale_down_cpu_below" => patch.scale_down_cpu_below = Some(num()?),
                "scale_down_memory_below" => patch.scale_down_memory_below = Some(num()?),
                "sustained_ratio" => patch.sustained_ratio = Some(num()?),
                "window_minutes" => patch.window_minutes = Some(int()?),
                "min_samples" => patch.min_samples = Some(int()?),
                "iqr_multiplier" => patch.iqr_multiplier = Some(num()?),
                "votes_needed" => patch.votes_needed = Some(int()?),
                "cooldown_seconds" => patch.cooldown_seconds = Some(int()?),
                "min_level" => patch.min_level = Some(int()?),
                "max_level" => patch.max_level = Some(int()?),
                _ => unreachable!("every field of FIELDS is handled"),
            }
        }
        Ok(patch)
    }

    /// `base` with this patch's fields replaced, if the result is a valid policy.
    pub fn apply_over(&self, base: &Policy) -> Result<Policy, PolicyError> {
        let mut p = base.clone();
        let num = |field, v: Option<f64>, old| v.map_or(Ok(old), |v| check_number(field, v));
        // Integers are range-checked before they become durations or narrower types.
        let int = |field, v: Option<i64>| v.map(|v| check_integer(field, v)).transpose();
        if let Some(mode) = self.mode {
            p.mode = mode;
        }
        p.scale_up_cpu_above = num(
            "scale_up_cpu_above",
            self.scale_up_cpu_above,
            p.scale_up_cpu_above,
        )?;
        p.scale_up_memory_above = num(
            "scale_up_memory_above",
            self.scale_up_memory_above,
            p.scale_up_memory_above,
        )?;
        p.scale_down_cpu_below = num(
            "scale_down_cpu_below",
            self.scale_down_cpu_below,
            p.scale_down_cpu_below,
        )?;
        p.scale_down_memory_below = num(
            "scale_down_memory_below",
            self.scale_down_memory_below,
            p.scale_down_memory_below,
        )?;
        p.sustained_ratio = num("sustained_ratio", self.sustained_ratio, p.sustained_ratio)?;
        if let Some(m) = int("window_minutes", self.window_minutes)? {
            p.window = TimeDelta::minutes(m);
        }
        if let Some(n) = int("min_samples", self.min_samples)? {
            p.min_samples = n as usize;
        }
        p.iqr_multiplier = num("iqr_multiplier", self.iqr_multiplier, p.iqr_multiplier)?;
        if let Some(n) = int("votes_needed", self.votes_needed)? {
            p.votes_needed = n as u32;
        }
        if let Some(s) = int("cooldown_seconds", self.cooldown_seconds)? {
            p.cooldown = TimeDelta::seconds(s);
        }
        if let Some(n) = int("min_level", self.min_level)? {
            p.min_level = n as i32;
        }
        if let Some(n) = int("max_level", self.max_level)? {
            p.max_level = n as i32;
        }
        p.validate()?;
        Ok(p)
    }
}

/// Whole units of `unit` in `d`, or `None` when `d` is not a whole number of them.
fn whole(d: TimeDelta, unit: TimeDelta) -> Option<i64> {
    let (d, unit) = (d.num_nanoseconds()?, unit.num_nanoseconds()?);
    (d % unit == 0).then_some(d / unit)
}

impl Policy {
    /// The first rule this policy breaks, if any.
    pub fn validate(&self) -> Result<(), PolicyError> {
        check_number("scale_up_cpu_above", self.scale_up_cpu_above)?;
        check_number("scale_up_memory_above", self.scale_up_memory_above)?;
        check_number("scale_down_cpu_below", self.scale_down_cpu_below)?;
        check_number("scale_down_memory_below", self.scale_down_memory_below)?;
        check_number("sustained_ratio", self.sustained_ratio)?;
        let minutes = whole(self.window, TimeDelta::minutes(1));
        check_integer("window_minutes", minutes.unwrap_or(-1))?;
        check_integer("min_samples", i64::try_from(self.min_samples).unwrap_or(-1))?;
        check_number("iqr_multiplier", self.iqr_multiplier)?;
        check_integer("votes_needed", i64::from(self.votes_needed))?;
        let seconds = whole(self.cooldown, TimeDelta::seconds(1));
        check_integer("cooldown_seconds", seconds.unwrap_or(-1))?;
        check_integer("min_level", i64::from(self.min_level))?;
        check_integer("max_level", i64::from(self.max_level))?;
        if self.scale_down_cpu_below >= self.scale_up_cpu_above {
            return Err(PolicyError::invalid("scale_down_cpu_below", LOW_CPU));
        }
        if self.scale_down_memory_below >= self.scale_up_memory_above {
            return Err(PolicyError::invalid("scale_down_memory_below", LOW_MEMORY));
        }
        if self.min_level > self.max_level {
            return Err(PolicyError::invalid("min_level", LEVELS));
        }
        Ok(())
    }
}

/// The patch's own JSON reading, so that `Json<PolicyPatch>` gives the same messages.
impl<'de> Deserialize<'de> for PolicyPatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PolicyPatch::from_json(&value).map_err(serde::de::Error::custom)
    }
}

impl Policy {
    /// The policy an instance is decided under: its own fields over the defaults. A
    /// stored patch that the defaults have since made invalid (say `min_level` above a
    /// lowered `MAX_SCALE_LEVEL`) falls back to the defaults, loudly.
    pub fn resolve(defaults: &Policy, own: Option<&PolicyPatch>) -> Policy {
        match own.map(|patch| patch.apply_over(defaults)) {
            None => defaults.clone(),
            Some(Ok(policy)) => policy,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "stored policy no longer valid over the defaults; using the defaults");
                defaults.clone()
            }
        }
    }
}

/// What setting an instance's own fields does: the policy then in force, and
/// whether the dry run's shadow state starts again from the real one. A change of
/// mode resets the shadow: a dry run that starts follows the real level from now
/// on, rather than a shadow left behind by an earlier one.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyChange {
    pub policy: Policy,
    pub reset_shadow: bool,
}

impl PolicyChange {
    /// Going from the instance's `current` fields to `next` (`None`: the defaults);
    /// an error when `next` is not valid over the defaults.
    pub fn new(
        defaults: &Policy,
        current: Option<&PolicyPatch>,
        next: Option<&PolicyPatch>,
    ) -> Result<Self, PolicyError> {
        let before = Policy::resolve(defaults, current);
        let policy = match next {
            Some(p) => p.apply_over(defaults)?,
            None => defaults.clone(),
        };
        Ok(PolicyChange {
            reset_shadow: before.mode != policy.mode,
            policy,
        })
    }
}

/// The OpenAPI schema of the policy's fields, built from [`FIELDS`] and each
/// field's [`rule`] (its bounds, and its message as the description) with the
/// defaults as `default`: the document cannot drift from the validation, and a new
/// field documents itself. With `required`, every field is (a policy as served);
/// without, none is (a patch).
fn fields_schema(required: bool) -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let defaults = serde_json::to_value(Policy::default()).unwrap_or_default();
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for field in FIELDS {
        let property = ObjectBuilder::new().default(defaults.get(field).cloned());
        let property = if field == "mode" {
            property
                .schema_type(Type::String)
                .enum_values(Some(["enforce", "dry_run"]))
                .description(Some(
                    "enforce: act on decisions; dry_run: record what would be done",
                ))
        } else {
            match rule(field) {
                Rule::Number(lo, hi, m) => property
                    .schema_type(Type::Number)
                    .minimum(Some(lo))
                    .maximum(Some(hi))
                    .description(Some(m)),
                Rule::Positive(hi, m) => property
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(0.0))
                    .maximum(Some(hi))
                    .description(Some(m)),
                Rule::Integer(lo, hi, m) => property
                    .schema_type(Type::Integer)
                    .minimum(Some(lo))
                    .maximum(Some(hi))
                    .description(Some(m)),
            }
        };
        object = object.property(field, property);
        if required {
            object = object.required(field);
        }
    }
    object
        .description(Some(format!(
            "{}; across fields, {LOW_CPU}, {LOW_MEMORY} and {LEVELS}.",
            if required {
                "Every field of a policy"
            } else {
                "Any subset of a policy's fields; the others keep their defaults"
            }
        )))
        .into()
}

impl utoipa::PartialSchema for Policy {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        fields_schema(true).into()
    }
}

impl utoipa::ToSchema for Policy {}

impl utoipa::PartialSchema for PolicyPatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        fields_schema(false).into()
    }
}

impl utoipa::ToSchema for PolicyPatch {}

mod whole_minutes {
    use super::*;

    pub fn serialize<S: Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_minutes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimeDelta, D::Error> {
        let m = i64::deserialize(d)?;
        TimeDelta::try_minutes(m)
            .ok_or_else(|| serde::de::Error::custom("window_minutes is out of range"))
    }
}

mod whole_seconds {
    use super::*;

    pub fn serialize<S: Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimeDelta, D::Error> {
        let secs = i64::deserialize(d)?;
        TimeDelta::try_seconds(secs)
            .ok_or_else(|| serde::de::Error::custom("cooldown_seconds is out of range"))
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
