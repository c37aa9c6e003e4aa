//! AWS Auto Scaling groups: `DescribeAutoScalingGroups` for up to 100 groups a
//! call per region, `SetDesiredCapacity` (HonorCooldown false: the service keeps
//! its own cooldown) for a write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::config::Region;
use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::config::timeout::TimeoutConfig;
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_autoscaling::types::{AutoScalingGroup, LifecycleState};

use super::cloud::{
    CallLog, Cloud, CloudError, CloudResult, Failure, MANAGED_TAG, OWNER_TAG, Observation,
};
use super::target::{TargetKind, TargetRef};

/// Most group names one `DescribeAutoScalingGroups` call takes (an AWS limit).
pub const GROUPS_PER_CALL: usize = 100;
/// Applied when the `SdkConfig` sets none, so an unreachable endpoint can't stall a pass.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Auto Scaling groups, one client per region.
pub struct AsgCloud {
    make_client: Box<dyn Fn(&str) -> Client + Send + Sync>,
    clients: Mutex<HashMap<String, Client>>,
    log: CallLog,
}

impl AsgCloud {
    /// Uses `sdk_config` (credentials, endpoint, retries) with each target's region.
    pub fn new(sdk_config: SdkConfig, log: CallLog) -> Self {
        let timeouts = sdk_config.timeout_config().cloned();
        Self::with_client_factory(
            move |region| {
                let mut builder = aws_sdk_autoscaling::config::Builder::from(&sdk_config)
                    .region(Region::new(region.to_owned()));
                if timeouts
                    .as_ref()
                    .is_none_or(|t| t.operation_timeout().is_none())
                {
                    builder = builder.timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(OPERATION_TIMEOUT)
                            .build(),
                    );
                }
                Client::from_conf(builder.build())
            },
            log,
        )
    }

    /// The standard AWS chain (environment, profile, SSO, instance role) and
    /// `AWS_ENDPOINT_URL`, as the CloudWatch source reads them.
    pub async fn from_env(log: CallLog) -> Self {
        Self::new(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await,
            log,
        )
    }

    /// Builds each region's client with `make_client` (tests with mocked clients).
    pub fn with_client_factory(
        make_client: impl Fn(&str) -> Client + Send + Sync + 'static,
        log: CallLog,
    ) -> Self {
        AsgCloud {
            make_client: Box::new(make_client),
            clients: Mutex::new(HashMap::new()),
            log,
        }
    }

    fn client_for(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(region.to_owned())
            .or_insert_with(|| (self.make_client)(region))
            .clone()
    }

    fn record(&self, operation: &'static str, outcome: Result<(), Failure>) {
        (self.log)(
            TargetKind::AwsAsg,
            operation,
            outcome.err().map_or("ok", Failure::as_str),
        );
    }

    /// Reads up to [`GROUPS_PER_CALL`] groups of one region.
    async fn describe(
        &self,
        region: &str,
        names: &[&str],
    ) -> CloudResult<HashMap<String, Observation>> {
        let client = self.client_for(region);
        let result = client
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(names.iter().map(|n| n.to_string()).collect()))
            .max_records(GROUPS_PER_CALL as i32)
            .send()
            .await;
        self.record(
            "describe_auto_scaling_groups",
            result.as_ref().map(|_| ()).map_err(|e| classify(e).failure),
        );
        let output = result.map_err(|e| classify(&e))?;
        Ok(output
            .auto_scaling_groups()
            .iter()
            .filter_map(|g| Some((g.auto_scaling_group_name()?.to_owned(), observation(g))))
            .collect())
    }
}

/// What a described group tells: its sizes, its InService instances, whether an
/// activity is under way (instances still launching or terminating), its tags.
fn observation(group: &AutoScalingGroup) -> Observation {
    let tag = |key: &str| {
        group
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    let instances = group.instances();
    let in_service = instances
        .iter()
        .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
        .count() as i32;
    let moving: Vec<&str> = instances
        .iter()
        .filter_map(|i| i.lifecycle_state())
        .filter(|s| {
            let s = s.as_str();
            s.starts_with("Pending") || s.starts_with("Terminating")
        })
        .map(|s| s.as_str())
        .collect();
    let busy = (!moving.is_empty()).then(|| {
        format!(
            "an Auto Scaling activity is in progress ({} instance{} {})",
            moving.len(),
            if moving.len() == 1 { "" } else { "s" },
            moving.join(", ")
        )
    });
    Observation {
        desired: group.desired_capacity().unwrap_or(0),
        current: in_service,
        min: group.min_size(),
        max: group.max_size(),
        busy,
        managed: tag(MANAGED_TAG).is_some_and(|v| v.eq_ignore_ascii_case("true")),
        owner: tag(OWNER_TAG),
    }
}

/// Sorts an SDK error into the class the reconciler acts on.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = DisplayErrorContext(err).to_string();
    let failure = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            if text.contains("credentials") {
                Failure::Denied
            } else {
                Failure::Unavailable
            }
        }
        SdkError::ConstructionFailure(_) => Failure::Denied,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match err.code().unwrap_or_default() {
                "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException" => Failure::Throttled,
                "ResourceContention" => Failure::Contention,
                "ScalingActivityInProgress" => Failure::Busy,
                "AccessDenied"
                | "AccessDeniedException"
                | "UnauthorizedOperation"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "UnrecognizedClientException"
                | "AuthFailure" => Failure::Denied,
                "ValidationError" if text.contains("not found") => Failure::NotFound,
                "ValidationError" => Failure::Invalid,
                _ if status >= 500 => Failure::Unavailable,
                _ => Failure::Invalid,
            }
        }
        _ => Failure::Unavailable,
    };
    let message = match err.message() {
        Some(m) => format!("{}: {m}", err.code().unwrap_or("error")),
        None => text,
    };
    CloudError::new(failure, message)
}

#[async_trait]
impl Cloud for AsgCloud {
    async fn observe(&self, targets: &[&TargetRef]) -> Vec<CloudResult<Observation>> {
        // Per region, the distinct names in calls of up to 100.
        let mut by_region: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for target in targets {
            if let TargetRef::AwsAsg { group_name, region } = target {
                by_region.entry(region).or_default().push(group_name);
            }
        }
        let mut found: HashMap<(&str, &str), CloudResult<Observation>> = HashMap::new();
        let calls = by_region.iter_mut().flat_map(|(region, names)| {
            names.sort_unstable();
            names.dedup();
            names
                .chunks(GROUPS_PER_CALL)
                .map(move |chunk| (*region, chunk))
        });
        let answers = futures::future::join_all(calls.map(|(region, chunk)| async move {
            (region, chunk, self.describe(region, chunk).await)
        }))
        .await;
        for (region, chunk, answer) in answers {
            for &name in chunk {
                let result = match &answer {
                    Err(e) => Err(e.clone()),
                    Ok(groups) => groups.get(name).cloned().ok_or_else(|| {
                        CloudError::new(
                            Failure::NotFound,
                            format!("Auto Scaling group {name} does not exist in {region}"),
                        )
                    }),
                };
                found.insert((region, name), result);
            }
        }
        targets
            .iter()
            .map(|target| match target {
                TargetRef::AwsAsg { group_name, region } => found
                    .get(&(region.as_str(), group_name.as_str()))
                    .cloned()
                    .unwrap_or_else(|| Err(CloudError::new(Failure::Unavailable, "not read"))),
                TargetRef::Kubernetes { .. } => Err(CloudError::new(
                    Failure::Invalid,
                    "not an Auto Scaling group",
                )),
            })
            .collect()
    }

    async fn set_capacity(&self, target: &TargetRef, capacity: i32) -> CloudResult<()> {
        let TargetRef::AwsAsg { group_name, region } = target else {
            return Err(CloudError::new(
                Failure::Invalid,
                "not an Auto Scaling group",
            ));
        };
        let result = self
            .client_for(region)
            .set_desired_capacity()
            .auto_scaling_group_name(group_name)
            .desired_capacity(capacity)
            .honor_cooldown(false)
            .send()
            .await;
        self.record(
            "set_desired_capacity",
            result.as_ref().map(|_| ()).map_err(|e| classify(e).failure),
        );
        result.map(|_| ()).map_err(|e| classify(&e))
    }
}
