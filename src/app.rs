//! Wiring: settings → store → state → router and jobs → a listening server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::RngExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use chrono::TimeDelta;

use crate::actuate::aws::AsgCloud;
use crate::actuate::kube::KubeCloud;
use crate::actuate::{Cloud, Clouds, Timing};
use crate::auth::{self, JwtKeys, LoginLimiter};
use crate::collect::cloudwatch::CloudWatchSource;
use crate::collect::mock::MockSource;
use crate::collect::{LazySource, MetricSource, SourceKind, Sources};
use crate::config::Settings;
use crate::http::{self, AppState};
use crate::jobs::Jobs;
use crate::jobs::actuation::{self, Actuator, WriteLimiter};
pub use crate::secret::redact;
use crate::signals::Signals;
use crate::store::{self, PoolSettings, Store};
use crate::webhooks::Deliverer;

/// The source each kind of instance is collected from. CloudWatch is set up on
/// first use: a deployment watching only mock instances never loads AWS settings.
fn sources() -> Sources {
    Sources::from_fn(|kind| match kind {
        SourceKind::Mock => Arc::new(MockSource),
        SourceKind::CloudWatch => Arc::new(LazySource::new(|| async {
            Box::new(CloudWatchSource::from_env().await) as Box<dyn MetricSource>
        })),
    })
}

/// The clouds scale targets live in: Auto Scaling through the standard AWS chain
/// (and `AWS_ENDPOINT_URL`), Kubernetes through `KUBECONFIG` or kubectl's inference.
/// A server without Kubernetes configuration refuses Kubernetes targets.
pub async fn clouds(settings: &Settings, signals: &Arc<Signals>) -> Clouds {
    let log = actuation::call_log(signals.clone());
    let aws = Arc::new(AsgCloud::from_env(log.clone()).await) as Arc<dyn Cloud>;
    let config = match &settings.kubeconfig {
        Some(path) => kube_config_from(path).await,
        None => ::kube::Config::infer().await.map_err(|e| e.to_string()),
    };
    let kubernetes = match config.and_then(|c| KubeCloud::from_config(c, log)) {
        Ok(cloud) => Some(Arc::new(cloud) as Arc<dyn Cloud>),
        Err(e) => {
            tracing::info!("Kubernetes not configured, so Kubernetes targets are refused: {e}");
            None
        }
    };
    Clouds { aws, kubernetes }
}

/// The configuration of the kubeconfig at `path` (its current context).
pub async fn kube_config_from(path: &std::path::Path) -> Result<::kube::Config, String> {
    let file = ::kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("KUBECONFIG={}: {e}", path.display()))?;
    ::kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|e| format!("KUBECONFIG={}: {e}", path.display()))
}

/// A built application: listener bound, database migrated, ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    settings: Arc<Settings>,
}

impl Application {
    /// Connects to the database (retrying with backoff while it is unreachable),
    /// applies migrations, loads the JWT secret and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let signals = Arc::new(Signals::new());
        let clouds = clouds(&settings, &signals).await;
        Self::build_with(settings, clouds, signals).await
    }

    /// As [`Application::build`], with the given clouds (tests point them at fakes)
    /// recording into `signals`.
    pub async fn build_with(
        settings: Settings,
        clouds: Clouds,
        signals: Arc<Signals>,
    ) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let store = connect_with_retry(&settings).await?;
        let secret = jwt_secret(&settings)?;
        let listener = TcpListener::bind((settings.host, settings.port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}:{} (check HOST and PORT)",
                    settings.host, settings.port
                )
            })?;
        let state = AppState {
            store,
            keys: JwtKeys::new(secret.as_bytes()),
            login_limiter: LoginLimiter::new(
                settings.login_attempts_per_window,
                auth::LOGIN_WINDOW,
            ),
            settings: settings.clone(),
            signals,
            clouds,
        };
        Ok(Application {
            listener,
            state,
            settings,
        })
    }

    /// The port actually bound (useful with PORT=0).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests and ticks
    /// finish before returning.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let jobs = if self.settings.run_jobs {
            Jobs {
                store: self.state.store.clone(),
                sources: sources(),
                policy: self.settings.policy.clone(),
                metrics_interval: self.settings.metrics_interval,
                scaling_interval: self.settings.scaling_interval,
                metrics_retention_days: self.settings.metrics_retention_days,
                decisions_retention_days: self.settings.decisions_retention_days,
                signals: self.state.signals.clone(),
                actuator: Arc::new(Actuator {
                    clouds: self.state.clouds.clone(),
                    defaults: self.settings.policy.clone(),
                    timing: Timing {
                        resync: TimeDelta::from_std(self.settings.actuation_resync)
                            .unwrap_or(TimeDelta::seconds(60)),
                        converge_timeout: TimeDelta::from_std(
                            self.settings.actuation_converge_timeout,
                        )
                        .unwrap_or(TimeDelta::seconds(900)),
                        ..Timing::default()
                    },
                    limiter: WriteLimiter::new(self.settings.actuation_writes_per_second),
                    signals: self.state.signals.clone(),
                }),
                deliverer: Deliverer::new(
                    self.settings.webhook_allow_private_networks,
                    self.state.signals.clone(),
                ),
            }
            .spawn(cancel.clone())
        } else {
            Vec::new()
        };
        let address = self.listener.local_addr()?;
        let base = browsable_base(address);
        tracing::info!(%address, "listening on {address}");
        tracing::info!("dashboard:        {base}");
        tracing::info!("Swagger UI:       {base}api/docs");
        tracing::info!("OpenAPI document: {base}api/openapi.json");
        tracing::info!("Prometheus:       {base}metrics");
        let app =
            http::router(self.state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        cancel.cancel();
        for job in jobs {
            let _ = job.await;
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// The URL a person opens for a server bound to `address`: `localhost` when it
/// listens on every interface or on loopback.
pub fn browsable_base(address: std::net::SocketAddr) -> String {
    let ip = address.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        format!("http://localhost:{}/", address.port())
    } else {
        format!("http://{address}/")
    }
}

/// `autoscaler migrate`: connects (retrying as start-up does) and applies the
/// migrations, then lets go of the database.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = connect_with_retry(settings).await?;
    drop(store);
    tracing::info!(
        "migrations applied: the database at {} is up to date",
        redact(settings.database_url.as_str())
    );
    Ok(())
}

async fn connect_with_retry(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let pool = PoolSettings {
        max_connections: settings.db_max_connections,
        acquire_timeout: settings.db_acquire_timeout,
    };
    let which = if settings.on_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let shown = redact(settings.database_url.as_str());
    if settings.database_defaulted {
        tracing::info!("DATABASE_URL not set: using the embedded SQLite database {shown}");
    } else {
        tracing::info!("using {which} database {shown}");
    }
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match store::connect(&settings.database_url, &pool).await {
            Ok(store) => return Ok(store),
            Err(e)
                if started.elapsed() + delay < settings.db_startup_timeout && is_transient(&e) =>
            {
                tracing::warn!("database {shown} not reachable yet ({e:#}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the database at DATABASE_URL={shown}"));
            }
        }
    }
}

/// Connection problems are worth retrying; a migration or configuration error is not.
fn is_transient(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))
        ) || cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|db| db.code())
            // 57P03: the server is starting up.
            .is_some_and(|code| code == "57P03")
    })
}

/// The JWT secret: from `JWT_SECRET_KEY`, or on SQLite a random one kept in a file
/// beside the database so tokens survive restarts.
fn jwt_secret(settings: &Settings) -> anyhow::Result<String> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.expose().to_owned());
    }
    let Some(path) = secret_file(settings.database_url.as_str()) else {
        tracing::warn!(
            "JWT_SECRET_KEY not set: using a random secret for this in-memory database; tokens end with the process"
        );
        return Ok(random_secret());
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= 32 {
            tracing::warn!(
                "JWT_SECRET_KEY not set: using the generated secret in {}",
                path.display()
            );
            return Ok(existing);
        }
    }
    let secret = random_secret();
    write_private(&path, &secret).with_context(|| {
        format!(
            "JWT_SECRET_KEY not set and {} cannot be written",
            path.display()
        )
    })?;
    tracing::warn!(
        "JWT_SECRET_KEY not set: generated a random secret and saved it to {}",
        path.display()
    );
    Ok(secret)
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// `<database file>.jwt-secret` for a file-backed SQLite URL.
fn secret_file(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.jwt-secret")))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight work");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_live_beside_file_databases_only() {
        assert_eq!(
            secret_file("sqlite://autoscaler.db"),
            Some(PathBuf::from("autoscaler.db.jwt-secret"))
        );
        assert_eq!(
            secret_file("sqlite:/tmp/a.db?mode=rwc"),
            Some(PathBuf::from("/tmp/a.db.jwt-secret"))
        );
        assert_eq!(secret_file("sqlite::memory:"), None);
    }

    #[test]
    fn the_start_log_names_urls_a_person_can_open() {
        let at = |s: &str| browsable_base(s.parse().unwrap());
        assert_eq!(at("0.0.0.0:5000"), "http://localhost:5000/");
        assert_eq!(at("127.0.0.1:8080"), "http://localhost:8080/");
        assert_eq!(at("[::]:5000"), "http://localhost:5000/");
        assert_eq!(at("10.1.2.3:5000"), "http://10.1.2.3:5000/");
    }

    #[test]
    fn passwords_are_kept_out_of_logs() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
