//! The plain values the store traits take and return, shared by both backends.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A new instance to register.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub user_id: Uuid,
    pub instance_id: String,
    pub instance_type: String,
    pub region: String,
    pub is_mock: bool,
}

/// How many instances a user has, and how many of them are monitored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceCounts {
    pub instances: i64,
    pub monitoring: i64,
}

/// One page of a newest-first list, and how many entries the whole list has.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// The page of a list that does not exist: nothing, out of nothing.
impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            items: Vec::new(),
            total: 0,
        }
    }
}

/// Which rows of a newest-first list to read: `limit` of them after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub offset: i64,
}

/// A read on behalf of a user of something that must be theirs.
#[derive(Debug, Clone, PartialEq)]
pub enum Owned<T> {
    Found(T),
    /// No such thing, or someone else's: the caller looks it up to say which.
    NotOwned,
    /// The token's account no longer exists.
    UserGone,
}

/// What deleting an instance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    /// It is being monitored; nothing was deleted.
    Monitoring,
    NotFound,
}

/// A failed-login counter: failures since `window_start`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginFailures {
    pub key: String,
    pub failures: i64,
    pub window_start: DateTime<Utc>,
}

/// One bucket of an instance's metric series. Averages and maxima skip unknown
/// values, so a bucket whose samples all lack memory has `None` there.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBucket {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    pub samples: i64,
    pub cpu_avg: f64,
    pub cpu_max: f64,
    pub memory_avg: Option<f64>,
    pub memory_max: Option<f64>,
    pub network_in_avg: Option<f64>,
    pub network_out_avg: Option<f64>,
}

/// A decision row as the series read returns it, with the levels it records.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesDecision {
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub decision: crate::model::Decision,
    pub reason: String,
    pub level_before: i32,
    pub level_after: i32,
}

/// Connections of a store's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConnections {
    /// Open connections, idle or in use.
    pub size: u32,
    pub idle: u32,
}

impl PoolConnections {
    pub(super) fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        PoolConnections {
            size: pool.size(),
            idle: pool.num_idle() as u32,
        }
    }
}
