//! `autoscaler check`: are the settings valid, does the database answer, and are
//! the configured integrations reachable? Each check is one [`Finding`]; the report
//! passes when none failed.
//!
//! The checks only look: the database check opens one connection, pings it and
//! reads which migrations are applied (no SQL of ours, no migration run, no SQLite
//! file created), and the AWS check resolves credentials without calling a service.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::config::ProvideCredentials;
use sqlx::Connection;
use sqlx::migrate::{Migrate, Migrator};

use crate::config::Settings;
use crate::secret::redact;
use crate::store::DatabaseUrl;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Not configured, so not checked; not a failure.
    Skipped,
    Failed,
}

/// One check's outcome: what was checked, how it went, and what was found.
#[derive(Debug, Clone)]
pub struct Finding {
    pub subject: &'static str,
    pub status: Status,
    pub detail: String,
}

impl Finding {
    fn new(subject: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Finding {
            subject,
            status,
            detail: detail.into(),
        }
    }
}

/// Every check's finding, in the order they ran.
#[derive(Debug, Clone)]
pub struct Report(pub Vec<Finding>);

impl Report {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.0.iter().all(|f| f.status != Status::Failed)
    }

    /// The report when the settings themselves are invalid: nothing else can run.
    pub fn invalid_settings(error: &anyhow::Error) -> Self {
        Report(vec![Finding::new(
            "settings",
            Status::Failed,
            format!("{error:#}"),
        )])
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.0 {
            let status = match finding.status {
                Status::Ok => "ok",
                Status::Skipped => "skipped",
                Status::Failed => "FAILED",
            };
            writeln!(f, "{:<9} {:<8} {}", finding.subject, status, finding.detail)?;
        }
        let verdict = if self.passed() {
            "all checks passed"
        } else {
            "some checks failed"
        };
        writeln!(f, "{verdict}")
    }
}

/// Runs every check against `settings` (already validated).
pub async fn run(settings: &Settings) -> Report {
    let mut findings = vec![Finding::new(
        "settings",
        Status::Ok,
        "every flag and variable is valid (see --help for the full list)",
    )];
    findings.push(database(settings).await);
    findings.push(aws().await);
    findings.push(kubernetes(settings).await);
    // A further integration adds its check here: an async fn returning a Finding,
    // `Status::Skipped` when it is not configured (as `aws` does), so that a
    // deployment without it still passes.
    Report(findings)
}

/// Whether Kubernetes is configured: `KUBECONFIG`, `~/.kube/config`, or a pod's
/// service account.
fn kubernetes_configured(settings: &Settings) -> bool {
    settings.kubeconfig.is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .is_some_and(|home| home.join(".kube/config").is_file())
}

/// Reaches the cluster scale targets would be written to and asks its version.
async fn kubernetes(settings: &Settings) -> Finding {
    if !kubernetes_configured(settings) {
        return Finding::new(
            "kubernetes",
            Status::Skipped,
            "no KUBECONFIG, ~/.kube/config or in-cluster service account: Kubernetes targets are refused",
        );
    }
    let reach = async {
        let config = match &settings.kubeconfig {
            Some(path) => crate::app::kube_config_from(path)
                .await
                .map_err(anyhow::Error::msg)?,
            None => ::kube::Config::infer().await?,
        };
        let url = config.cluster_url.to_string();
        let client = ::kube::Client::try_from(config)?;
        let version = client.apiserver_version().await?;
        anyhow::Ok(format!(
            "{url}: Kubernetes {}.{}",
            version.major, version.minor
        ))
    };
    match tokio::time::timeout(patience(settings), reach).await {
        Ok(Ok(found)) => Finding::new("kubernetes", Status::Ok, found),
        Ok(Err(e)) => Finding::new("kubernetes", Status::Failed, format!("{e:#}")),
        Err(_) => Finding::new(
            "kubernetes",
            Status::Failed,
            "the API server did not answer in time",
        ),
    }
}

/// How long the database (and AWS) checks wait before calling it a failure.
fn patience(settings: &Settings) -> Duration {
    settings.db_acquire_timeout.max(Duration::from_secs(5))
}

async fn database(settings: &Settings) -> Finding {
    let shown = redact(settings.database_url.as_str());
    let within = patience(settings);
    match tokio::time::timeout(within, probe(&settings.database_url)).await {
        Ok(Ok(found)) => Finding::new("database", Status::Ok, format!("{shown}: {found}")),
        Ok(Err(e)) => Finding::new(
            "database",
            Status::Failed,
            format!("{shown} (DATABASE_URL): {e:#}"),
        ),
        Err(_) => Finding::new(
            "database",
            Status::Failed,
            format!("{shown} (DATABASE_URL) did not answer within {within:?}"),
        ),
    }
}

async fn probe(url: &DatabaseUrl) -> anyhow::Result<String> {
    match url {
        DatabaseUrl::Postgres(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let took = ping(&mut conn).await?;
            let migrations = migrations(&mut conn, &sqlx::migrate!("./migrations/postgres")).await;
            Ok(format!("PostgreSQL answered in {took} ms; {migrations}"))
        }
        DatabaseUrl::Sqlite(url) => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .create_if_missing(false)
                .read_only(true);
            match sqlx::SqliteConnection::connect_with(&options).await {
                Ok(mut conn) => {
                    let took = ping(&mut conn).await?;
                    let migrations =
                        migrations(&mut conn, &sqlx::migrate!("./migrations/sqlite")).await;
                    Ok(format!("SQLite answered in {took} ms; {migrations}"))
                }
                // The default on a fresh directory: nothing to fix.
                Err(sqlx::Error::Database(e)) if e.message().contains("unable to open") => Ok(
                    "the SQLite file does not exist yet; `autoscaler migrate` or the server's start creates it"
                        .into(),
                ),
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn ping(conn: &mut impl Connection) -> anyhow::Result<u128> {
    let started = Instant::now();
    conn.ping().await?;
    Ok(started.elapsed().as_millis())
}

/// How many of the binary's migrations the database has.
async fn migrations(conn: &mut impl Migrate, migrator: &Migrator) -> String {
    let known = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count();
    match conn.list_applied_migrations(&migrator.table_name).await {
        Ok(applied) => {
            let pending = migrator
                .iter()
                .filter(|m| m.migration_type.is_up_migration())
                .filter(|m| !applied.iter().any(|a| a.version == m.version))
                .count();
            match pending {
                0 => format!("all {known} migrations applied"),
                n => format!(
                    "{n} of {known} migrations pending (`autoscaler migrate` or the server's start applies them)"
                ),
            }
        }
        Err(_) => format!(
            "no migrations applied yet: a new database (`autoscaler migrate` or the server's start applies all {known})"
        ),
    }
}

/// The variables that point the AWS SDK at an account or a region (others, such
/// as `AWS_CA_BUNDLE`, only tune it).
const AWS_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
];

/// Whether AWS is configured: one of [`AWS_VARIABLES`] is set, or a shared config
/// or credentials file exists.
fn aws_configured() -> bool {
    let variable = AWS_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    let files = std::env::var_os("HOME").is_some_and(|home| {
        let dir = std::path::Path::new(&home).join(".aws");
        dir.join("credentials").exists() || dir.join("config").exists()
    });
    variable || files
}

async fn aws() -> Finding {
    if !aws_configured() {
        return Finding::new(
            "aws",
            Status::Skipped,
            "not configured (no AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID or ~/.aws files): \
             only mock instances can be collected; set AWS_REGION on a host with a role to check it",
        );
    }
    match tokio::time::timeout(Duration::from_secs(10), aws_credentials()).await {
        Ok(Ok(found)) => Finding::new("aws", Status::Ok, found),
        Ok(Err(e)) => Finding::new(
            "aws",
            Status::Failed,
            format!("no credentials from the standard chain: {e:#}"),
        ),
        Err(_) => Finding::new(
            "aws",
            Status::Failed,
            "the standard credential chain did not answer within 10 s",
        ),
    }
}

/// Resolves credentials the way the CloudWatch source will, and says what it got
/// (never the secret key; the access key only by its ends).
async fn aws_credentials() -> anyhow::Result<String> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| anyhow::anyhow!("no credential provider is configured"))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(anyhow::Error::new)?;
    let key = credentials.access_key_id();
    let shown = if key.len() > 8 {
        format!("{}…{}", &key[..4], &key[key.len() - 4..])
    } else {
        "…".to_owned()
    };
    let source = if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        "AWS_ACCESS_KEY_ID".to_owned()
    } else if let Some(profile) = std::env::var_os("AWS_PROFILE") {
        format!("profile {}", profile.to_string_lossy())
    } else {
        "the standard chain (profile files, SSO, web identity, container or instance role)".into()
    };
    let mut found = format!("credentials from {source}, access key {shown}");
    if credentials.session_token().is_some() {
        found.push_str(" (temporary)");
    }
    match config.region() {
        Some(region) => found.push_str(&format!(", region {region}")),
        None => found.push_str(", no default region (each instance's own region is used)"),
    }
    if let Some(endpoint) = config.endpoint_url() {
        found.push_str(&format!(", endpoint {endpoint}"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_unless_a_check_failed() {
        let report = Report(vec![
            Finding::new("settings", Status::Ok, "fine"),
            Finding::new("aws", Status::Skipped, "not configured"),
        ]);
        assert!(report.passed());
        assert_eq!(
            report.to_string(),
            "settings  ok       fine\naws       skipped  not configured\nall checks passed\n"
        );
        let failed = Report::invalid_settings(&anyhow::anyhow!("PORT must be a whole number"));
        assert!(!failed.passed());
        assert!(
            failed
                .to_string()
                .contains("FAILED   PORT must be a whole number")
        );
    }
}
