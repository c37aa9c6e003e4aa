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
            // A modeled fault names itself in its type even where the metadata
            // carries no code.
            let code = match err.code() {
                Some(code) => code,
                None if text.contains("ScalingActivityInProgressFault") => {
                    "ScalingActivityInProgress"
                }
                None if text.contains("ResourceContentionFault") => "ResourceContention",
                None => "",
            };
            match code {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_sdk_autoscaling::error::ErrorMetadata;
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
    use aws_sdk_autoscaling::operation::set_desired_capacity::{
        SetDesiredCapacityError, SetDesiredCapacityOutput,
    };
    use aws_sdk_autoscaling::types::error::{
        ResourceContentionFault, ScalingActivityInProgressFault,
    };
    use aws_sdk_autoscaling::types::{Instance, TagDescription};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;

    fn quiet() -> CallLog {
        Arc::new(|_, _, _| {})
    }

    fn cloud(rules: &[&Rule]) -> AsgCloud {
        let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, rules);
        AsgCloud::with_client_factory(move |_| client.clone(), quiet())
    }

    fn group(name: &str, desired: i32, states: &[LifecycleState]) -> AutoScalingGroup {
        let mut g = AutoScalingGroup::builder()
            .auto_scaling_group_name(name)
            .min_size(1)
            .max_size(10)
            .desired_capacity(desired)
            .tags(
                TagDescription::builder()
                    .key(MANAGED_TAG)
                    .value("true")
                    .build(),
            )
            .tags(
                TagDescription::builder()
                    .key(OWNER_TAG)
                    .value("a@example.com")
                    .build(),
            );
        for (n, state) in states.iter().enumerate() {
            g = g.instances(
                Instance::builder()
                    .instance_id(format!("i-{n:017x}"))
                    .lifecycle_state(state.clone())
                    .build(),
            );
        }
        g.build()
    }

    fn asg(name: &str, region: &str) -> TargetRef {
        TargetRef::AwsAsg {
            group_name: name.into(),
            region: region.into(),
        }
    }

    fn set_error(code: &'static str) -> Rule {
        mock!(Client::set_desired_capacity).then_error(move || {
            SetDesiredCapacityError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("from the mock")
                    .build(),
            )
        })
    }

    #[tokio::test]
    async fn a_group_reads_as_its_sizes_in_service_instances_activity_and_tags() {
        use LifecycleState::{InService, Pending};
        let describe = mock!(Client::describe_auto_scaling_groups).then_output(|| {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(group("web", 3, &[InService, InService, Pending]))
                .build()
        });
        let cloud = cloud(&[&describe]);
        let read = cloud
            .observe(&[&asg("web", "us-east-1"), &asg("gone", "us-east-1")])
            .await;
        assert_eq!(
            read[0],
            Ok(Observation {
                desired: 3,
                current: 2,
                min: Some(1),
                max: Some(10),
                busy: Some("an Auto Scaling activity is in progress (1 instance Pending)".into()),
                managed: true,
                owner: Some("a@example.com".into()),
            })
        );
        assert_eq!(
            read[1],
            Err(CloudError::new(
                Failure::NotFound,
                "Auto Scaling group gone does not exist in us-east-1"
            ))
        );
        assert_eq!(describe.num_calls(), 1, "both names in one call");
    }

    #[tokio::test]
    async fn ten_thousand_groups_are_read_in_a_hundred_calls() {
        let describe = mock!(Client::describe_auto_scaling_groups).then_compute_output(|req| {
            let mut out = DescribeAutoScalingGroupsOutput::builder();
            for name in req.auto_scaling_group_names() {
                out = out.auto_scaling_groups(group(name, 2, &[]));
            }
            out.build()
        });
        let cloud = cloud(&[&describe]);
        let targets: Vec<TargetRef> = (0..10_000)
            .map(|n| {
                asg(
                    &format!("g{n}"),
                    if n % 2 == 0 { "us-east-1" } else { "eu-west-1" },
                )
            })
            .collect();
        let refs: Vec<&TargetRef> = targets.iter().collect();
        let read = cloud.observe(&refs).await;
        assert!(
            read.iter()
                .all(|r| r.as_ref().is_ok_and(|o| o.desired == 2))
        );
        assert_eq!(describe.num_calls(), 100);
    }

    #[tokio::test]
    async fn each_error_class_is_recognised() {
        let cases: [(Rule, Failure); 6] = [
            (set_error("Throttling"), Failure::Throttled),
            (set_error("ValidationError"), Failure::Invalid),
            (set_error("AccessDenied"), Failure::Denied),
            (
                mock!(Client::set_desired_capacity).then_error(|| {
                    SetDesiredCapacityError::ScalingActivityInProgressFault(
                        ScalingActivityInProgressFault::builder()
                            .message("Scaling activity in progress")
                            .build(),
                    )
                }),
                Failure::Busy,
            ),
            (
                mock!(Client::set_desired_capacity).then_error(|| {
                    SetDesiredCapacityError::ResourceContentionFault(
                        ResourceContentionFault::builder()
                            .message("contention")
                            .build(),
                    )
                }),
                Failure::Contention,
            ),
            (
                mock!(Client::set_desired_capacity).then_error(|| {
                    SetDesiredCapacityError::generic(
                        ErrorMetadata::builder()
                            .code("ValidationError")
                            .message("AutoScalingGroup name not found - no such group")
                            .build(),
                    )
                }),
                Failure::NotFound,
            ),
        ];
        for (rule, failure) in cases {
            let err = cloud(&[&rule])
                .set_capacity(&asg("web", "us-east-1"), 3)
                .await
                .unwrap_err();
            assert_eq!(err.failure, failure, "{err:?}");
        }
        let ok = mock!(Client::set_desired_capacity)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some("web")
                    && r.desired_capacity() == Some(3)
                    && r.honor_cooldown() == Some(false)
            })
            .then_output(|| SetDesiredCapacityOutput::builder().build());
        cloud(&[&ok])
            .set_capacity(&asg("web", "us-east-1"), 3)
            .await
            .unwrap();
        assert_eq!(ok.num_calls(), 1);
    }
}
