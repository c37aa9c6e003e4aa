//! The command line: `autoscaler [serve]`, `autoscaler migrate`, `autoscaler check`.
//! Every setting is a flag and the environment variable of the same name
//! ([`Settings`]); a flag wins over the variable, the variable over `.env`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::{self, Application, shutdown_signal};
use crate::check;
use crate::config::Settings;

/// What a bad flag or value exits with (clap's own usage errors do the same).
const USAGE: u8 = 2;

/// Watches cloud instances, stores their metrics and decides every 15 seconds
/// whether each needs more or less capacity.
#[derive(Debug, Parser)]
#[command(name = "autoscaler", version, max_term_width = 100)]
#[command(
    after_help = "Every flag is also the environment variable shown with it, which \
    may come from a .env file in the working directory; a flag wins over both. \
    NO_COLOR=1 turns colour off on a terminal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

/// The subcommands; none is `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the server (what `autoscaler` alone does).
    Serve,
    /// Apply the database migrations and exit (for deploy pipelines and init
    /// containers).
    Migrate,
    /// Validate the settings, reach the database and the configured integrations
    /// (AWS), print what was found; exit 0 when all is well, 1 otherwise.
    Check,
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: .env could not be read: {e}");
        return ExitCode::from(USAGE);
    }
    // `--help`, `--version` and usage errors end here: no port, no database.
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let settings = match cli.settings.finish(&matches) {
        Ok(settings) => settings,
        Err(e) if command == Command::Check => {
            print!("{}", check::Report::invalid_settings(&e));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: invalid configuration: {e:#}");
            return ExitCode::from(USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(command, settings))
}

async fn run(command: Command, settings: Settings) -> ExitCode {
    // Only the server writes log files; the one-shot commands log to stdout.
    let _guard = match crate::telemetry::init(&settings, command == Command::Serve) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => app::migrate(&settings).await,
        Command::Check => {
            let report = check::run(&settings).await;
            print!("{report}");
            return if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    Application::build(settings)
        .await?
        .run_until(shutdown_signal())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Option<Command>, Settings), clap::Error> {
        let matches = Cli::command().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        Ok((cli.command, cli.settings.finish(&matches).unwrap()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn settings_flags_work_before_and_after_the_subcommand() {
        let (command, s) = parse(&["autoscaler", "--port", "6001"]).unwrap();
        assert_eq!((command, s.port), (None, 6001));
        let (command, s) = parse(&["autoscaler", "serve", "--port", "6002"]).unwrap();
        assert_eq!((command, s.port), (Some(Command::Serve), 6002));
        let (command, s) = parse(&["autoscaler", "--run-jobs", "false", "check"]).unwrap();
        assert_eq!((command, s.run_jobs), (Some(Command::Check), false));
    }

    #[test]
    fn a_bad_value_is_a_usage_error_naming_the_variable() {
        let err = parse(&["autoscaler", "--port", "http"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("PORT must be a whole number"),
            "{err}"
        );
        let err = parse(&["autoscaler", "--no-such-flag"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--no-such-flag"), "{err}");
    }
}
