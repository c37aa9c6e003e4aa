//! Settings from the environment (and `.env`), validated once at start. A bad value
//! fails start-up with a message naming the variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::TimeDelta;

use crate::scaling::Policy;
use crate::store::DatabaseUrl;

/// The SQLite file used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://autoscaler.db";

/// Typed settings of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    /// True when `DATABASE_URL` was not set and the SQLite default is in use.
    pub database_defaulted: bool,
    /// `None` where the secret is to be generated and kept beside the SQLite file.
    pub jwt_secret: Option<String>,
    pub host: IpAddr,
    pub port: u16,
    pub log_dir: PathBuf,
    pub metrics_interval: Duration,
    pub scaling_interval: Duration,
    pub policy: Policy,
    pub metrics_retention_days: i64,
    pub decisions_retention_days: i64,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    /// How long start-up retries an unreachable database before giving up.
    pub db_startup_timeout: Duration,
    /// Requests served at once; beyond it new requests get a fast 503.
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// Failed logins allowed per email and per client address within 15 minutes.
    pub login_attempts_per_window: u32,
    /// Run the collection and scaling loops in this process.
    pub run_jobs: bool,
    /// When set, `GET /metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// Let webhooks reach loopback and private addresses (tests, private deployments).
    pub webhook_allow_private_networks: bool,
    /// Scale-target writes allowed per second to each region or cluster.
    pub actuation_writes_per_second: u32,
    /// Every scale target is read at least this often (drift detection).
    pub actuation_resync: Duration,
    /// A write whose capacity has not arrived after this long fails the target.
    pub actuation_converge_timeout: Duration,
    /// The kubeconfig to use; unset, the standard inference (`~/.kube/config`, then
    /// the in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
}

impl Settings {
    /// Reads the settings from the process environment (after loading `.env`).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get`, so tests need not touch the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let database_url = var("DATABASE_URL");
        let database_defaulted = database_url.is_none();
        let database_url =
            DatabaseUrl::parse(&database_url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()))
                .map_err(anyhow::Error::msg)?;
        let on_postgres = database_url.is_postgres();
        let jwt_secret = var("JWT_SECRET_KEY");
        match &jwt_secret {
            None if on_postgres => bail!(
                "JWT_SECRET_KEY must be set when DATABASE_URL points at PostgreSQL: every replica must sign tokens with the same secret"
            ),
            Some(s) if s.len() < 16 => bail!("JWT_SECRET_KEY must be at least 16 characters long"),
            _ => {}
        }
        let parse = |name: &str, default: u64, min: u64, max: u64| -> anyhow::Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(v) => {
                    let n: u64 = v
                        .parse()
                        .with_context(|| format!("{name} must be a whole number (got {v:?})"))?;
                    if !(min..=max).contains(&n) {
                        bail!("{name} must be between {min} and {max} (got {n})");
                    }
                    Ok(n)
                }
            }
        };
        let host = match var("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v.parse().with_context(|| {
                format!("HOST must be an IP address such as 0.0.0.0 (got {v:?})")
            })?,
        };
        Ok(Settings {
            database_url,
            database_defaulted,
            jwt_secret,
            host,
            port: parse("PORT", 5000, 0, u16::MAX.into())? as u16,
            log_dir: PathBuf::from(var("LOG_DIR").unwrap_or_else(|| "logs".to_owned())),
            metrics_interval: Duration::from_secs(parse("METRICS_INTERVAL_SECONDS", 30, 1, 3600)?),
            scaling_interval: Duration::from_secs(parse("SCALING_INTERVAL_SECONDS", 15, 1, 3600)?),
            policy: Policy {
                cooldown: TimeDelta::seconds(
                    parse("SCALING_COOLDOWN_SECONDS", 300, 0, 86_400)? as i64
                ),
                max_level: parse("MAX_SCALE_LEVEL", 10, 1, 50)? as i32,
                ..Policy::default()
            },
            metrics_retention_days: parse("METRICS_RETENTION_DAYS", 30, 1, 3650)? as i64,
            decisions_retention_days: parse("DECISIONS_RETENTION_DAYS", 90, 1, 3650)? as i64,
            db_max_connections: parse("DB_MAX_CONNECTIONS", 16, 1, 1000)? as u32,
            db_acquire_timeout: Duration::from_secs(parse("DB_ACQUIRE_TIMEOUT_SECONDS", 3, 1, 60)?),
            db_startup_timeout: Duration::from_secs(parse(
                "DB_STARTUP_TIMEOUT_SECONDS",
                60,
                0,
                3600,
            )?),
            max_concurrent_requests: parse("MAX_CONCURRENT_REQUESTS", 1024, 1, 1_000_000)? as usize,
            request_timeout: Duration::from_secs(parse("REQUEST_TIMEOUT_SECONDS", 10, 1, 600)?),
            login_attempts_per_window: parse("LOGIN_ATTEMPTS_PER_WINDOW", 10, 1, 10_000)? as u32,
            run_jobs: match var("RUN_JOBS").as_deref() {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(v) => bail!("RUN_JOBS must be true or false (got {v:?})"),
            },
            metrics_token: var("METRICS_TOKEN"),
            webhook_allow_private_networks: match var("WEBHOOK_ALLOW_PRIVATE_NETWORKS").as_deref() {
                None | Some("false") | Some("0") => false,
                Some("true") | Some("1") => true,
                Some(v) => {
                    bail!("WEBHOOK_ALLOW_PRIVATE_NETWORKS must be true or false (got {v:?})")
                }
            },
            actuation_writes_per_second: parse("ACTUATION_WRITES_PER_SECOND", 10, 1, 100_000)?
                as u32,
            actuation_resync: Duration::from_secs(parse(
                "ACTUATION_RESYNC_SECONDS",
                60,
                1,
                86_400,
            )?),
            actuation_converge_timeout: Duration::from_secs(parse(
                "ACTUATION_CONVERGE_TIMEOUT_SECONDS",
                900,
                1,
                86_400,
            )?),
            kubeconfig: var("KUBECONFIG").map(PathBuf::from),
        })
    }

    /// Whether the database is PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.database_url.is_postgres()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_sqlite_on_port_5000() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert!(s.database_defaulted);
        assert_eq!(s.port, 5000);
        assert_eq!(s.host.to_string(), "0.0.0.0");
        assert_eq!(s.metrics_interval, Duration::from_secs(30));
        assert_eq!(s.scaling_interval, Duration::from_secs(15));
        assert_eq!(s.policy.cooldown, TimeDelta::seconds(300));
        assert_eq!(s.policy.max_level, 10);
        // Everything else the engine decides under is the built-in default.
        assert_eq!(s.policy, Policy::default());
        assert!(s.jwt_secret.is_none());
    }

    #[test]
    fn postgres_without_a_jwt_secret_names_the_variable() {
        let err = settings(&[("DATABASE_URL", "postgres://localhost/x")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET_KEY"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("PORT", "http"),
            ("PORT", "70000"),
            ("HOST", "not-an-ip"),
            ("SCALING_INTERVAL_SECONDS", "0"),
            ("MAX_SCALE_LEVEL", "-1"),
            ("DATABASE_URL", "mysql://x"),
            ("JWT_SECRET_KEY", "short"),
            ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "maybe"),
            ("ACTUATION_WRITES_PER_SECOND", "0"),
            ("ACTUATION_RESYNC_SECONDS", "soon"),
            ("ACTUATION_CONVERGE_TIMEOUT_SECONDS", "0"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert!(format!("{err:#}").contains(name), "{name}={value}: {err:#}");
        }
    }
}
