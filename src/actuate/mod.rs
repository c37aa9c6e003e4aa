//! Acting on the world: scale targets (AWS Auto Scaling groups, Kubernetes
//! Deployments and StatefulSets) that the instances' levels drive.
//!
//! `target` is what a target is, `cloud` the one trait both clouds implement
//! (`aws`, `kube`), `reconcile` the pure pass over one target. The loop that
//! claims due targets and carries the passes out is `jobs::actuation`; every
//! write it makes goes through [`gate::write`], which dry runs cannot pass.

pub mod aws;
pub mod cloud;
pub mod gate;
pub mod kube;
pub mod reconcile;
pub mod target;

pub use cloud::{Cloud, CloudError, Clouds, Failure, Observation};
pub use reconcile::{ActuationEvent, ClaimedTarget, Progress, TargetState, Timing, Update};
pub use target::{TargetKind, TargetRef, TargetSpec};

#[cfg(test)]
mod reconcile_tests;
