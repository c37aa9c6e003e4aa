//! Metric sources: where each monitored instance's samples come from.
//! Mock instances get generated values; real ones are read from CloudWatch.
//! Each `SourceKind` has one `MetricSource` in the app's `Sources`.

pub mod cloudwatch;
pub mod kind;
pub mod mock;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use kind::{PerKind, SourceKind};

use crate::model::NewMetric;

/// An instance due for collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectTarget {
    /// Internal id.
    pub id: Uuid,
    /// User-facing id (`i-...` for EC2).
    pub instance_id: String,
    pub region: String,
    /// Which source it is read from.
    pub source: SourceKind,
    /// Timestamp of the newest sample already stored from this source; anything
    /// at or before it is not stored again.
    pub last_collected_at: Option<DateTime<Utc>>,
}

/// The outcome of collecting one instance, recorded on its row.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionStatus {
    pub instance: Uuid,
    /// Newest timestamp now stored for it (unchanged when `None`).
    pub last_collected_at: Option<DateTime<Utc>>,
    /// Why the collection failed; `None` clears an earlier error.
    pub error: Option<String>,
}

/// What collecting one instance produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    pub instance: Uuid,
    /// New samples, oldest first, or why none could be read.
    pub result: Result<Vec<NewMetric>, String>,
}

impl Collected {
    /// What collecting the instance records: its new samples, and its status (the
    /// newest sample's time, or why it failed; a success clears an earlier error).
    pub fn into_record(self) -> (CollectionStatus, Vec<NewMetric>) {
        let instance = self.instance;
        match self.result {
            Ok(samples) => (
                CollectionStatus {
                    instance,
                    last_collected_at: samples.iter().map(|m| m.timestamp).max(),
                    error: None,
                },
                samples,
            ),
            Err(error) => (
                CollectionStatus {
                    instance,
                    last_collected_at: None,
                    error: Some(error),
                },
                Vec::new(),
            ),
        }
    }
}

/// A source of metrics for a batch of instances.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Reads the samples of `targets` that are newer than their high-water marks.
    /// One instance's failure is reported in its own `Collected`, never for the batch.
    async fn collect(&self, targets: &[CollectTarget], now: DateTime<Utc>) -> Vec<Collected>;
}

/// The registry of sources: the one each kind's instances are collected from.
pub type Sources = PerKind<Arc<dyn MetricSource>>;

/// A source built on first use: the AWS configuration (credential chain, region,
/// endpoint) is only loaded once a real instance is actually monitored.
pub struct LazySource<F> {
    make: F,
    source: tokio::sync::OnceCell<Box<dyn MetricSource>>,
}

impl<F, Fut> LazySource<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Box<dyn MetricSource>> + Send,
{
    pub fn new(make: F) -> Self {
        LazySource {
            make,
            source: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait]
impl<F, Fut> MetricSource for LazySource<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Box<dyn MetricSource>> + Send,
{
    async fn collect(&self, targets: &[CollectTarget], now: DateTime<Utc>) -> Vec<Collected> {
        let source = self.source.get_or_init(|| (self.make)()).await;
        source.collect(targets, now).await
    }
}
