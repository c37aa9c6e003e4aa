//! Settings from flags, the environment (and `.env`), validated once at start. A bad
//! value fails start-up with a message naming the variable.
//!
//! Each setting is one field of [`Settings`]: its doc comment is its `--help` text,
//! its attribute names the flag, the variable and the default, and its value parser
//! holds the rule. The flag is always the variable in kebab case (`--port` is
//! `PORT`, `--rust-log` is `RUST_LOG`; a test holds every field to it). `--help`,
//! parsing and validation all read that one definition, so they cannot drift. To
//! add a setting, add a field (and, if its rule spans several settings, a line in
//! [`Settings::finish`]); a test then asks for its line in `.env.example`.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use chrono::TimeDelta;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use crate::scaling::Policy;
use crate::secret::Secret;
use crate::store::DatabaseUrl;

/// The SQLite file used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://autoscaler.db";

/// The log filter when `RUST_LOG` is not set: the service at INFO, its noisiest
/// dependencies quieter.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,aws_config=error,aws_smithy_runtime=warn";

const DATABASE: &str = "Database";
const SERVER: &str = "Server";
const LOGS: &str = "Logs";
const JOBS: &str = "Jobs and scaling";
const LIMITS: &str = "Limits";
const SECURITY: &str = "Security";
const ACTUATION: &str = "Scale targets";

/// Typed settings of the service.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Where the data lives: postgres://user:password@host:5432/db (any number of
    /// replicas may share it) or sqlite:path. Tables are created on first start.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL,
        value_parser = setting(|_, v| DatabaseUrl::parse(v).map(SecretUrl)),
        hide_env_values = true, global = true, help_heading = DATABASE)]
    pub database_url: SecretUrl,
    /// True when `DATABASE_URL` was not set and the SQLite default is in use.
    #[arg(skip)]
    pub database_defaulted: bool,
    /// Connections in the pool.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value = "16", value_parser = whole::<u32>(1, 1000),
        global = true, help_heading = DATABASE)]
    pub db_max_connections: u32,
    /// Seconds a request waits for a connection before it is answered 503.
    #[arg(long = "db-acquire-timeout-seconds", env = "DB_ACQUIRE_TIMEOUT_SECONDS", default_value = "3", value_parser = seconds(1, 60),
        global = true, help_heading = DATABASE)]
    pub db_acquire_timeout: Duration,
    /// Seconds start-up retries an unreachable database before exiting non-zero.
    #[arg(long = "db-startup-timeout-seconds", env = "DB_STARTUP_TIMEOUT_SECONDS", default_value = "60", value_parser = seconds(0, 3600),
        global = true, help_heading = DATABASE)]
    pub db_startup_timeout: Duration,

    /// Address to listen on: an IP address (0.0.0.0 for every interface, 127.0.0.1
    /// for this machine only), not a host name.
    #[arg(long, env = "HOST", default_value = "0.0.0.0", value_parser = setting(|name, v| {
        v.parse::<IpAddr>().map_err(|_| format!("{name} must be an IP address such as 0.0.0.0 (got {v:?})"))
    }), global = true, help_heading = SERVER)]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value = "5000", value_parser = whole::<u16>(0, u16::MAX.into()),
        global = true, help_heading = SERVER)]
    pub port: u16,
    /// Requests served at once; beyond it new requests get an immediate 503.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value = "1024",
        value_parser = whole::<usize>(1, 1_000_000), global = true, help_heading = LIMITS)]
    pub max_concurrent_requests: usize,
    /// Seconds a request may run before it is answered 503.
    #[arg(long = "request-timeout-seconds", env = "REQUEST_TIMEOUT_SECONDS", default_value = "10", value_parser = seconds(1, 600),
        global = true, help_heading = LIMITS)]
    pub request_timeout: Duration,
    /// Failed logins per email in 15 minutes before 429 (a client address gets ten
    /// times as many).
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_WINDOW", default_value = "10",
        value_parser = whole::<u32>(1, 10_000), global = true, help_heading = LIMITS)]
    pub login_attempts_per_window: u32,

    /// Log filter for stdout and the files, e.g. autoscaler=debug.
    #[arg(long = "rust-log", env = "RUST_LOG", default_value = DEFAULT_LOG_FILTER, value_parser = setting(|name, v| {
        tracing_subscriber::EnvFilter::try_new(v)
            .map(|_| v.to_owned())
            .map_err(|e| format!("{name} is not a valid log filter ({e}; got {v:?})"))
    }), global = true, help_heading = LOGS)]
    pub log_filter: String,
    /// Log line format: text, or json (one JSON object a line) for log shippers.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = setting(|name, v| {
        match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{name} must be text or json (got {v:?})")),
        }
    }), global = true, help_heading = LOGS)]
    pub log_format: LogFormat,
    /// Directory of the daily log files (logs also go to stdout); empty turns the
    /// files off.
    #[arg(long, env = "LOG_DIR", default_value = "logs", value_parser = blank_kept(|_, v| {
        Ok(LogDir((!v.is_empty()).then(|| PathBuf::from(v))))
    }), global = true, help_heading = LOGS)]
    pub log_dir: LogDir,
    /// Daily log files kept in LOG_DIR (today's included); older ones are deleted.
    #[arg(long, env = "LOG_RETENTION_DAYS", default_value = "14", value_parser = whole::<usize>(1, 3650),
        global = true, help_heading = LOGS)]
    pub log_retention_days: usize,

    /// Seconds between metric collections.
    #[arg(long = "metrics-interval-seconds", env = "METRICS_INTERVAL_SECONDS", default_value = "30", value_parser = seconds(1, 3600),
        global = true, help_heading = JOBS)]
    pub metrics_interval: Duration,
    /// Seconds between scaling evaluations.
    #[arg(long = "scaling-interval-seconds", env = "SCALING_INTERVAL_SECONDS", default_value = "15", value_parser = seconds(1, 3600),
        global = true, help_heading = JOBS)]
    pub scaling_interval: Duration,
    /// Seconds after an action during which an instance gets no new one.
    #[arg(long = "scaling-cooldown-seconds", env = "SCALING_COOLDOWN_SECONDS", default_value = "300", value_parser = seconds(0, 86_400),
        global = true, help_heading = JOBS)]
    pub scaling_cooldown: Duration,
    /// Highest scale level (levels run from 1).
    #[arg(long, env = "MAX_SCALE_LEVEL", default_value = "10", value_parser = whole::<i32>(1, 50),
        global = true, help_heading = JOBS)]
    pub max_scale_level: i32,
    /// The engine's default policy: SCALING_COOLDOWN_SECONDS and MAX_SCALE_LEVEL over
    /// the built-in rules.
    #[arg(skip)]
    pub policy: Policy,
    /// Days of metrics kept.
    #[arg(long, env = "METRICS_RETENTION_DAYS", default_value = "30", value_parser = whole::<i64>(1, 3650),
        global = true, help_heading = JOBS)]
    pub metrics_retention_days: i64,
    /// Days of decisions kept.
    #[arg(long, env = "DECISIONS_RETENTION_DAYS", default_value = "90", value_parser = whole::<i64>(1, 3650),
        global = true, help_heading = JOBS)]
    pub decisions_retention_days: i64,
    /// Run the collection, scaling, retention and webhook loops in this process
    /// (false serves the API only).
    #[arg(long, env = "RUN_JOBS", default_value = "true", value_parser = boolean(),
        action = clap::ArgAction::Set, global = true, help_heading = JOBS)]
    pub run_jobs: bool,

    /// HS256 signing secret, 16+ characters. Required on PostgreSQL, so every
    /// replica signs alike; on SQLite, when unset, one is generated and kept in
    /// <database>.jwt-secret.
    #[arg(long = "jwt-secret-key", env = "JWT_SECRET_KEY", value_parser = setting(|_, v| Ok(Secret::new(v))),
        hide_env_values = true, global = true, help_heading = SECURITY)]
    pub jwt_secret: Option<Secret>,
    /// When set, GET /metrics requires "Authorization: Bearer <token>"; unset, it
    /// is open.
    #[arg(long, env = "METRICS_TOKEN", value_parser = setting(|_, v| Ok(Secret::new(v))),
        hide_env_values = true, global = true, help_heading = SECURITY)]
    pub metrics_token: Option<Secret>,
    /// Let webhooks reach loopback and private addresses (tests, private
    /// deployments).
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE_NETWORKS", default_value = "false", value_parser = boolean(),
        action = clap::ArgAction::Set, global = true, help_heading = SECURITY)]
    pub webhook_allow_private_networks: bool,
    /// Scale-target writes allowed per second to each AWS region or Kubernetes
    /// cluster.
    #[arg(long, env = "ACTUATION_WRITES_PER_SECOND", default_value = "10",
        value_parser = whole::<u32>(1, 100_000), global = true, help_heading = ACTUATION)]
    pub actuation_writes_per_second: u32,
    /// Seconds between reads of every scale target (how soon an outside change is seen).
    #[arg(long = "actuation-resync-seconds", env = "ACTUATION_RESYNC_SECONDS", default_value = "60",
        value_parser = seconds(1, 86_400), global = true, help_heading = ACTUATION)]
    pub actuation_resync: Duration,
    /// Seconds a written capacity may take to arrive before the target is failed.
    #[arg(long = "actuation-converge-timeout-seconds", env = "ACTUATION_CONVERGE_TIMEOUT_SECONDS",
        default_value = "900", value_parser = seconds(1, 86_400), global = true, help_heading = ACTUATION)]
    pub actuation_converge_timeout: Duration,
    /// The kubeconfig for Kubernetes targets; unset, kubectl's inference
    /// (~/.kube/config, then the in-cluster service account).
    #[arg(long, env = "KUBECONFIG", value_parser = setting(|_, v| Ok(PathBuf::from(v))),
        global = true, help_heading = ACTUATION)]
    pub kubeconfig: Option<PathBuf>,
}

/// The database URL, as settings hold it: a [`DatabaseUrl`] (it derefs to one)
/// whose `Debug` leaves the password out, so formatting the settings shows none.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(pub DatabaseUrl);

impl std::ops::Deref for SecretUrl {
    type Target = DatabaseUrl;

    fn deref(&self) -> &DatabaseUrl {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", crate::secret::redact(self.0.as_str()))
    }
}

impl PartialEq<&str> for SecretUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object a line.
    Json,
}

/// Where the daily log files go; `None` when `LOG_DIR` is empty (files off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir(pub Option<PathBuf>);

impl Settings {
    /// Reads the settings from the process environment (after loading `.env`).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get` (variable name to value), so tests need not
    /// touch the environment. The same definitions as the command line, with the
    /// process environment left out.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let command = Settings::augment_args(Command::new("autoscaler").no_binary_name(true));
        let mut argv = Vec::new();
        for arg in command.get_arguments() {
            if let (Some(long), Some(value)) = (arg.get_long(), get(&variable(arg))) {
                argv.push(format!("--{long}={value}"));
            }
        }
        let matches = command
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(argv)
            .map_err(|e| anyhow::anyhow!(clap_message(&e)))?;
        let settings =
            Settings::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!(clap_message(&e)))?;
        settings.finish(&matches)
    }

    /// The rules that span several settings, and the values derived from them.
    /// `matches` are the parsed arguments the settings came from.
    pub fn finish(mut self, matches: &ArgMatches) -> anyhow::Result<Self> {
        self.database_defaulted =
            matches.value_source("database_url") == Some(ValueSource::DefaultValue);
        // An empty value is the same as none.
        self.jwt_secret = self.jwt_secret.filter(|s| !s.is_empty());
        self.metrics_token = self.metrics_token.filter(|s| !s.is_empty());
        match &self.jwt_secret {
            None if self.on_postgres() => bail!(
                "JWT_SECRET_KEY must be set when DATABASE_URL points at PostgreSQL: every replica must sign tokens with the same secret"
            ),
            Some(s) if s.len() < 16 => bail!("JWT_SECRET_KEY must be at least 16 characters long"),
            _ => {}
        }
        self.policy = Policy {
            cooldown: TimeDelta::from_std(self.scaling_cooldown)?,
            max_level: self.max_scale_level,
            ..Policy::default()
        };
        Ok(self)
    }

    /// Whether the database is PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.database_url.is_postgres()
    }
}

/// The environment variable of a setting: its flag in upper snake case
/// (`--db-max-connections` is `DB_MAX_CONNECTIONS`).
pub fn variable(arg: &Arg) -> String {
    arg.get_long()
        .unwrap_or_else(|| arg.get_id().as_str())
        .to_uppercase()
        .replace('-', "_")
}

/// A clap error as the one line that says what is wrong.
pub fn clap_message(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

type Rule<T> = Arc<dyn Fn(&str, &str) -> Result<T, String> + Send + Sync>;

/// A setting's value parser: trims the value, reads a blank one as the default (as
/// if unset), and hands it with the variable's name to `rule`, whose message
/// becomes the error.
#[derive(Clone)]
pub struct Setting<T> {
    rule: Rule<T>,
    blank_is_default: bool,
}

fn setting<T>(
    rule: impl Fn(&str, &str) -> Result<T, String> + Send + Sync + 'static,
) -> Setting<T> {
    Setting {
        rule: Arc::new(rule),
        blank_is_default: true,
    }
}

/// Like [`setting`], but a blank value reaches `rule` (for `LOG_DIR=`, files off).
fn blank_kept<T>(
    rule: impl Fn(&str, &str) -> Result<T, String> + Send + Sync + 'static,
) -> Setting<T> {
    Setting {
        rule: Arc::new(rule),
        blank_is_default: false,
    }
}

/// A whole number within `min..=max`.
fn whole<T: TryFrom<u64> + Clone + Send + Sync + 'static>(min: u64, max: u64) -> Setting<T> {
    setting(move |name, v| {
        let n: u64 = v
            .parse()
            .map_err(|_| format!("{name} must be a whole number (got {v:?})"))?;
        if !(min..=max).contains(&n) {
            return Err(format!("{name} must be between {min} and {max} (got {n})"));
        }
        T::try_from(n).map_err(|_| format!("{name} is out of range (got {n})"))
    })
}

/// Whole seconds within `min..=max`.
fn seconds(min: u64, max: u64) -> Setting<Duration> {
    let count = whole::<u64>(min, max);
    setting(move |name, v| (count.rule)(name, v).map(Duration::from_secs))
}

fn boolean() -> Setting<bool> {
    setting(|name, v| match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{name} must be true or false (got {v:?})")),
    })
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Setting<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let name = arg.map(variable).unwrap_or_default();
        let fail = |message: String| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n")).with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail(format!("{name} must be valid UTF-8")))?
            .trim();
        let default = arg
            .and_then(|a| a.get_default_values().first())
            .and_then(|d| d.to_str());
        let text = match default {
            Some(default) if text.is_empty() && self.blank_is_default => default,
            _ => text,
        };
        (self.rule)(&name, text).map_err(fail)
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
        assert_eq!(s.log_dir, LogDir(Some(PathBuf::from("logs"))));
        assert_eq!(s.log_filter, DEFAULT_LOG_FILTER);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.log_retention_days, 14);
        assert!(s.run_jobs);
        assert!(!s.webhook_allow_private_networks);
    }

    #[test]
    fn blank_values_are_the_defaults_but_an_empty_log_dir_turns_files_off() {
        let s = settings(&[("PORT", " "), ("JWT_SECRET_KEY", ""), ("LOG_DIR", "")]).unwrap();
        assert_eq!(s.port, 5000);
        assert!(s.jwt_secret.is_none());
        assert_eq!(s.log_dir, LogDir(None));
        let s = settings(&[("PORT", " 8080 "), ("LOG_FORMAT", "json")]).unwrap();
        assert_eq!((s.port, s.log_format), (8080, LogFormat::Json));
    }

    #[test]
    fn postgres_without_a_jwt_secret_names_the_variable() {
        let err = settings(&[("DATABASE_URL", "postgres://localhost/x")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET_KEY"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value, message) in [
            ("PORT", "http", "PORT must be a whole number (got \"http\")"),
            (
                "PORT",
                "70000",
                "PORT must be between 0 and 65535 (got 70000)",
            ),
            (
                "HOST",
                "not-an-ip",
                "HOST must be an IP address such as 0.0.0.0 (got \"not-an-ip\")",
            ),
            (
                "SCALING_INTERVAL_SECONDS",
                "0",
                "SCALING_INTERVAL_SECONDS must be between 1 and 3600 (got 0)",
            ),
            (
                "MAX_SCALE_LEVEL",
                "-1",
                "MAX_SCALE_LEVEL must be a whole number (got \"-1\")",
            ),
            (
                "DATABASE_URL",
                "mysql://x",
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got \"mysql://x\")",
            ),
            (
                "JWT_SECRET_KEY",
                "short",
                "JWT_SECRET_KEY must be at least 16 characters long",
            ),
            (
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS",
                "maybe",
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS must be true or false (got \"maybe\")",
            ),
            (
                "RUN_JOBS",
                "yes",
                "RUN_JOBS must be true or false (got \"yes\")",
            ),
            (
                "LOG_FORMAT",
                "xml",
                "LOG_FORMAT must be text or json (got \"xml\")",
            ),
            (
                "LOG_RETENTION_DAYS",
                "0",
                "LOG_RETENTION_DAYS must be between 1 and 3650 (got 0)",
            ),
            (
                "ACTUATION_WRITES_PER_SECOND",
                "0",
                "ACTUATION_WRITES_PER_SECOND must be between 1 and 100000 (got 0)",
            ),
            (
                "ACTUATION_RESYNC_SECONDS",
                "soon",
                "ACTUATION_RESYNC_SECONDS must be a whole number (got \"soon\")",
            ),
            (
                "ACTUATION_CONVERGE_TIMEOUT_SECONDS",
                "0",
                "ACTUATION_CONVERGE_TIMEOUT_SECONDS must be between 1 and 86400 (got 0)",
            ),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(format!("{err:#}"), message, "{name}={value}");
        }
    }

    #[test]
    fn every_flag_is_its_variable_in_kebab_case() {
        let command = Settings::augment_args(Command::new("autoscaler"));
        let mut seen = 0;
        for arg in command.get_arguments() {
            let env = arg.get_env().expect("every setting has a variable");
            assert_eq!(env.to_str().unwrap(), variable(arg), "{:?}", arg.get_id());
            assert!(arg.get_help().is_some(), "{env:?} has no help text");
            seen += 1;
        }
        assert!(seen >= 20, "{seen}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = settings(&[
            ("JWT_SECRET_KEY", "jwt-secret-value-0123456789"),
            ("METRICS_TOKEN", "metrics-token-value-42"),
            ("DATABASE_URL", "postgres://app:db-password-7@db/autoscaler"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("jwt-secret-value"), "{shown}");
        assert!(!shown.contains("metrics-token-value"), "{shown}");
        assert!(!shown.contains("db-password-7"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db/autoscaler"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
