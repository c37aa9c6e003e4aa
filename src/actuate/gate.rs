//! The one way a capacity reaches a cloud. Observe mode, a dry-run policy and a
//! target without the managed marker stop here, whatever path led to the write
//! (nomad-autoscaler PR #845: a "dry run" that still scaled).

use super::cloud::{Cloud, CloudError, CloudResult, Failure};
use super::reconcile::{ClaimedTarget, Write};

/// Writes `write.capacity` to the claimed target, unless it may not be written.
pub async fn write(cloud: &dyn Cloud, target: &ClaimedTarget, write: &Write) -> CloudResult<()> {
    if let Some(why) = target.writes_nothing() {
        return Err(CloudError::new(Failure::Invalid, why));
    }
    if let Some(why) = write
        .observation
        .refusal(&target.spec.target, &target.email)
    {
        return Err(CloudError::new(Failure::Denied, why));
    }
    cloud
        .set_capacity(&target.spec.target, write.capacity)
        .await
}
