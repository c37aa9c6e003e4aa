//! Kubernetes Deployments and StatefulSets: a GET of the workload (its
//! annotations, `spec.replicas`, `status.replicas`) to observe, a merge PATCH of
//! its scale subresource to write, as `kubectl scale` does.

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, Config};
use serde_json::{Value, json};

use super::cloud::{
    CallLog, Cloud, CloudError, CloudResult, Failure, MANAGED_ANNOTATION, OWNER_ANNOTATION,
    Observation,
};
use super::target::{TargetKind, TargetRef, Workload};

/// One cluster, reached with the configuration kubectl would use.
pub struct KubeCloud {
    client: Client,
    log: CallLog,
}

impl KubeCloud {
    /// `KUBECONFIG` (or `~/.kube/config`), else the in-cluster service account;
    /// `None` (with the reason) when neither is there.
    pub async fn infer(log: CallLog) -> Result<Self, String> {
        let config = Config::infer().await.map_err(|e| e.to_string())?;
        Self::from_config(config, log)
    }

    pub fn from_config(mut config: Config, log: CallLog) -> Result<Self, String> {
        // The worker retries with its own backoff, visibly (`retrying`, the metrics);
        // the client's silent retries of 429/503 would hide throttling inside a pass.
        config.default_retry = false;
        let client = Client::try_from(config).map_err(|e| e.to_string())?;
        Ok(KubeCloud { client, log })
    }

    fn api(&self, namespace: &str, resource: Workload) -> Api<DynamicObject> {
        let kind = match resource {
            Workload::Deployments => "Deployment",
            Workload::Statefulsets => "StatefulSet",
        };
        let gvk = GroupVersionKind::gvk("apps", "v1", kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, resource.as_str());
        Api::namespaced_with(self.client.clone(), namespace, &resource)
    }

    fn record(&self, operation: &'static str, outcome: Result<(), Failure>) {
        (self.log)(
            TargetKind::Kubernetes,
            operation,
            outcome.err().map_or("ok", Failure::as_str),
        );
    }

    async fn read(&self, target: &TargetRef) -> CloudResult<Observation> {
        let (namespace, name, resource) = workload(target)?;
        let result = self.api(namespace, resource).get(name).await;
        self.record(
            "get",
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| classify(e, target).failure),
        );
        let object = result.map_err(|e| classify(&e, target))?;
        Ok(observation(&object))
    }
}

/// The namespace, name and kind of a Kubernetes target.
fn workload(target: &TargetRef) -> CloudResult<(&str, &str, Workload)> {
    match target {
        TargetRef::Kubernetes {
            namespace,
            name,
            resource,
        } => Ok((namespace, name, *resource)),
        TargetRef::AwsAsg { .. } => Err(CloudError::new(
            Failure::Invalid,
            "not a Kubernetes workload",
        )),
    }
}

/// What a workload's object tells.
fn observation(object: &DynamicObject) -> Observation {
    let annotation = |key: &str| {
        object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let int = |v: &Value| v.as_i64().map(|n| n.clamp(0, i32::MAX as i64) as i32);
    let spec = &object.data["spec"];
    let status = &object.data["status"];
    // `spec.replicas` defaults to 1 when left out, as the API server does.
    let desired = int(&spec["replicas"]).unwrap_or(1);
    let generation = object.metadata.generation;
    let observed_generation = status["observedGeneration"].as_i64();
    let busy = match (generation, observed_generation) {
        (Some(g), Some(o)) if o < g => Some(format!(
            "the controller has not yet acted on generation {g} (it has seen {o})"
        )),
        _ => None,
    };
    Observation {
        desired,
        current: int(&status["replicas"]).unwrap_or(0),
        min: None,
        max: None,
        busy,
        managed: annotation(MANAGED_ANNOTATION).is_some_and(|v| v.eq_ignore_ascii_case("true")),
        owner: annotation(OWNER_ANNOTATION),
    }
}

/// Sorts a client error into the class the reconciler acts on.
fn classify(err: &kube::Error, target: &TargetRef) -> CloudError {
    match err {
        kube::Error::Api(status) => {
            let failure = match status.code {
                404 => Failure::NotFound,
                401 | 403 => Failure::Denied,
                409 => Failure::Contention,
                429 => Failure::Throttled,
                500.. => Failure::Unavailable,
                _ => Failure::Invalid,
            };
            let message = if failure == Failure::NotFound {
                format!("{} does not exist", target.describe())
            } else {
                format!(
                    "Kubernetes answered {} {}: {}",
                    status.code, status.reason, status.message
                )
            };
            CloudError::new(failure, message)
        }
        other => CloudError::new(
            Failure::Unavailable,
            format!("Kubernetes API unreachable: {other}"),
        ),
    }
}

#[async_trait]
impl Cloud for KubeCloud {
    async fn observe(&self, targets: &[&TargetRef]) -> Vec<CloudResult<Observation>> {
        // One GET per workload (the API has no batch read by name), a few at a time.
        let mut results = Vec::with_capacity(targets.len());
        for chunk in targets.chunks(8) {
            results.extend(
                futures::future::join_all(chunk.iter().copied().map(|t| self.read(t))).await,
            );
        }
        results
    }

    async fn set_capacity(&self, target: &TargetRef, capacity: i32) -> CloudResult<()> {
        self.patch_replicas(target, capacity, false).await
    }

    async fn verify(&self, target: &TargetRef, observed: &Observation) -> CloudResult<()> {
        // A server-side dry run of writing the value it already has: proves the
        // scale subresource exists and that we may patch it, and changes nothing.
        self.patch_replicas(target, observed.desired, true).await
    }
}

impl KubeCloud {
    async fn patch_replicas(
        &self,
        target: &TargetRef,
        replicas: i32,
        dry_run: bool,
    ) -> CloudResult<()> {
        let (namespace, name, resource) = workload(target)?;
        let mut params = PatchParams::default();
        if dry_run {
            params = params.dry_run();
        }
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        let result = self
            .api(namespace, resource)
            .patch_scale(name, &params, &patch)
            .await;
        self.record(
            if dry_run {
                "patch_scale_dry_run"
            } else {
                "patch_scale"
            },
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| classify(e, target).failure),
        );
        result.map(|_| ()).map_err(|e| classify(&e, target))
    }
}
