//! moto's server for the AWS tests (`tests/cloudwatch_moto.rs`, `tests/asg_moto.rs`):
//! where it is, and an SDK configuration that reaches it and nothing else.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudwatch::config::Credentials;

pub const REGION: &str = "us-east-1";

/// moto's URL, or `None` (skip) when unset outside CI.
pub fn moto_endpoint() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but AWS_ENDPOINT_URL is unset: start moto with scripts/moto.sh")
        }
        _ => {
            eprintln!("skipped: set AWS_ENDPOINT_URL to a moto server (scripts/moto.sh)");
            None
        }
    }
}

/// Fake credentials and a fixed region, so nothing depends on the machine's AWS setup.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}
