//! Autoscaler: watches cloud instances, stores their metrics and decides every
//! 15 seconds whether each one needs more or less capacity.
//!
//! The module list is the map of the system. `http` and `jobs` sit on top; they use
//! the pure `scaling` engine, the `collect` sources and the `store`; nothing points
//! back at `http`.
#![forbid(unsafe_code)]

pub mod actuate;
pub mod app;
pub mod auth;
/// A candidate policy replayed beside the one in force over stored history.
pub mod backtest;
pub mod check;
pub mod cli;
pub mod collect;
pub mod config;
pub mod events;
pub mod http;
pub mod jobs;
pub mod model;
pub mod policy;
pub mod scaling;
pub mod secret;
pub mod signals;
pub mod store;
pub mod telemetry;
/// Scratch databases for the tests and the benchmarks; not used by the service, so
/// not in its default build: the `testing` feature, which `tests/` turn on through
/// the self dev-dependency in Cargo.toml and the `bench` feature implies.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod webhooks;
