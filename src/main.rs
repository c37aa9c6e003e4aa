//! The autoscaler server: `cargo run --release`.

use autoscaler::app::{Application, shutdown_signal};
use autoscaler::config::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: .env could not be read: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: invalid configuration: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let _guard = match autoscaler::telemetry::init(&settings.log_dir) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = async {
        Application::build(settings)
            .await?
            .run_until(shutdown_signal())
            .await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
