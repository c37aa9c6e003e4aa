//! The clouds a target lives in, behind one trait: read a batch of targets, write
//! one capacity. Errors are sorted into the few classes the reconciler acts on, so
//! throttling is never mistaken for failure (kubernetes/autoscaler #5271).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::target::{TargetKind, TargetRef};

/// The tag (AWS) and annotation (Kubernetes) that allow the service to write a
/// group or workload at all, and the one that names its owner.
pub const MANAGED_TAG: &str = "autoscaler:managed";
pub const OWNER_TAG: &str = "autoscaler:owner";
pub const MANAGED_ANNOTATION: &str = "autoscaler/managed";
pub const OWNER_ANNOTATION: &str = "autoscaler/owner";

/// What a read of a target found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The capacity the group or workload is asked to have (`DesiredCapacity`,
    /// `spec.replicas`).
    pub desired: i32,
    /// What it has now: InService instances, or the scale subresource's
    /// `status.replicas`.
    pub current: i32,
    /// The cloud's bounds (an Auto Scaling group's MinSize and MaxSize).
    pub min: Option<i32>,
    pub max: Option<i32>,
    /// A change still under way that a write would fight, said in words.
    pub busy: Option<String>,
    /// Carries the managed marker.
    pub managed: bool,
    /// The owner the marker names, if any.
    pub owner: Option<String>,
}

impl Observation {
    /// Why the service may not write this target for a user with `email`, if it may not.
    pub fn refusal(&self, target: &TargetRef, email: &str) -> Option<String> {
        let (managed, owner) = match target.kind() {
            TargetKind::AwsAsg => (MANAGED_TAG, OWNER_TAG),
            TargetKind::Kubernetes => (MANAGED_ANNOTATION, OWNER_ANNOTATION),
        };
        let what = match target.kind() {
            TargetKind::AwsAsg => "tag",
            TargetKind::Kubernetes => "annotation",
        };
        if !self.managed {
            return Some(format!(
                "{} does not carry the {what} {managed}=true, so the autoscaler may not scale it",
                target.describe()
            ));
        }
        match &self.owner {
            Some(o) if !o.eq_ignore_ascii_case(email) => Some(format!(
                "{} belongs to another user: its {what} {owner} is not {email}",
                target.describe()
            )),
            _ => None,
        }
    }
}

/// The classes of cloud failure, by what to do about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The group or workload does not exist.
    NotFound,
    /// Our credentials were refused, or there are none.
    Denied,
    /// The request was refused as invalid (AWS `ValidationError`, HTTP 400/422).
    Invalid,
    /// Slow down (AWS `Throttling`, HTTP 429).
    Throttled,
    /// Could not be reached, timed out or answered 5xx.
    Unavailable,
    /// Someone else is changing it at the same moment (`ResourceContention`, HTTP 409).
    Contention,
    /// An activity is still in progress (`ScalingActivityInProgress`).
    Busy,
    /// This server has no configuration for that cloud (no kubeconfig).
    NotConfigured,
}

impl Failure {
    /// Retried with backoff, the target staying `pending`.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Failure::Throttled | Failure::Unavailable | Failure::Contention
        )
    }

    /// The metric label of an outcome with this failure.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NotFound => "not_found",
            Failure::Denied => "denied",
            Failure::Invalid => "invalid",
            Failure::Throttled => "throttled",
            Failure::Unavailable => "unavailable",
            Failure::Contention => "contention",
            Failure::Busy => "busy",
            Failure::NotConfigured => "not_configured",
        }
    }
}

/// A failed cloud call: its class and what the cloud said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudError {
    pub failure: Failure,
    pub message: String,
}

impl CloudError {
    pub fn new(failure: Failure, message: impl Into<String>) -> Self {
        CloudError {
            failure,
            message: message.into(),
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CloudError {}

pub type CloudResult<T> = Result<T, CloudError>;

/// Where each cloud call is counted: kind, operation and outcome (`ok` or the
/// failure's label), for `autoscaler_cloud_requests_total`.
pub type CallLog = Arc<dyn Fn(TargetKind, &'static str, &'static str) + Send + Sync>;

/// One cloud's API, as the reconciler uses it.
#[async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// Reads `targets` (all of this cloud's kind) in as few calls as the API
    /// allows; one result per target, in order.
    async fn observe(&self, targets: &[&TargetRef]) -> Vec<CloudResult<Observation>>;

    /// Sets the desired capacity. Only [`super::gate::Gate`] calls this.
    async fn set_capacity(&self, target: &TargetRef, capacity: i32) -> CloudResult<()>;

    /// Reads one target.
    async fn observe_one(&self, target: &TargetRef) -> CloudResult<Observation> {
        self.observe(&[target])
            .await
            .pop()
            .unwrap_or_else(|| Err(CloudError::new(Failure::Unavailable, "no answer")))
    }

    /// Checks, before a target is accepted (and after its marker was), that a write
    /// would be allowed, without changing it: a server-side dry run where the API
    /// has one. By default, reading it was the check.
    async fn verify(&self, _target: &TargetRef, _observed: &Observation) -> CloudResult<()> {
        Ok(())
    }
}

/// The clouds of this server, by kind. Kubernetes is `None` when no configuration
/// was found (no kubeconfig, not in a cluster): its targets are refused.
#[derive(Clone)]
pub struct Clouds {
    pub aws: Arc<dyn Cloud>,
    pub kubernetes: Option<Arc<dyn Cloud>>,
}

impl Clouds {
    pub fn of(&self, kind: TargetKind) -> CloudResult<&Arc<dyn Cloud>> {
        match kind {
            TargetKind::AwsAsg => Ok(&self.aws),
            TargetKind::Kubernetes => self.kubernetes.as_ref().ok_or_else(|| {
                CloudError::new(
                    Failure::NotConfigured,
                    "Kubernetes is not configured on this server (no KUBECONFIG, ~/.kube/config or in-cluster service account)",
                )
            }),
        }
    }
}
