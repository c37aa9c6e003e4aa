//! The command line, run as a newcomer and an operator would: the built binary as a
//! process, with an environment of its own.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use process::{binary, free_port, signal, wait_exit, wait_healthy};

/// The binary with nothing but `PATH` in its environment, working in `dir`.
fn bare(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autoscaler"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Runs a one-shot command to its end.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("the binary runs")
}

fn migrations(backend: &str) -> usize {
    std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend),
    )
    .unwrap()
    .count()
}

#[test]
fn help_lists_every_setting_with_its_variable_and_default_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(bare(dir.path()).arg("--help"));
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(took < Duration::from_secs(1), "--help took {took:?}");
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage: autoscaler [OPTIONS] [COMMAND]"),
        "{help}"
    );
    for command in ["serve", "migrate", "check"] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command}: {help}"
        );
    }
    // From the very definitions the settings are parsed with (lines unwrapped).
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let settings = autoscaler::config::Settings::augment_args(clap::Command::new("autoscaler"));
    for arg in settings.get_arguments() {
        let variable = arg.get_env().unwrap().to_str().unwrap();
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable}: {help}"
        );
        assert!(
            help.contains(&format!("--{}", arg.get_long().unwrap())),
            "{variable}"
        );
        for default in arg.get_default_values() {
            let shown = format!("[default: {}]", default.to_str().unwrap());
            assert!(help.contains(&shown), "{variable} {shown}: {help}");
        }
    }
    // No database file, no log directory: nothing was opened.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "--help left {left:?}");
}

#[test]
fn help_shows_no_secret_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bare(dir.path())
        .arg("--help")
        .env("JWT_SECRET_KEY", "jwt-key-from-the-env-0123")
        .env("METRICS_TOKEN", "metrics-token-from-the-env")
        .env("DATABASE_URL", "postgres://u:db-password-here@h/db"));
    let help = text(&out.stdout);
    for secret in [
        "jwt-key-from-the-env",
        "metrics-token-from-the-env",
        "db-password-here",
    ] {
        assert!(!help.contains(secret), "--help shows {secret}");
    }
}

#[test]
fn version_is_the_crate_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bare(dir.path()).arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("autoscaler {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_flag_or_a_bad_value_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env, named) in [
        (&["--no-such-flag"][..], None, "--no-such-flag"),
        (
            &["serve", "--port", "http"][..],
            None,
            "PORT must be a whole number (got \"http\")",
        ),
        (
            &[][..],
            Some(("LOG_FORMAT", "xml")),
            "LOG_FORMAT must be text or json (got \"xml\")",
        ),
        (
            &["migrate"][..],
            Some(("DATABASE_URL", "postgres://h/db")),
            "JWT_SECRET_KEY must be set",
        ),
        (&["no-such-command"][..], None, "no-such-command"),
    ] {
        let mut cmd = bare(dir.path());
        cmd.args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {out:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(named), "{args:?} {env:?}: {stderr}");
    }
}

/// `check` before and after `migrate` on `database_url`.
fn migrate_then_check(dir: &Path, database_url: &str, backend: &str, before: &str) {
    let db = [
        ("DATABASE_URL", database_url),
        ("JWT_SECRET_KEY", helpers::JWT_SECRET),
    ];
    let out = run(bare(dir).arg("check").envs(db));
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains(before), "{report}");

    let out = run(bare(dir).arg("migrate").envs(db).env("LOG_DIR", "logs"));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("migrations applied"));
    assert!(!dir.join("logs").exists(), "migrate writes no log files");

    let out = run(bare(dir).arg("check").envs(db));
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    let all = format!("all {} migrations applied", migrations(backend));
    assert!(report.contains(&all), "{report}");
    assert!(report.contains("aws       skipped"), "{report}");
    assert!(report.ends_with("all checks passed\n"), "{report}");
}

#[test]
fn migrate_and_check_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    migrate_then_check(
        dir.path(),
        &url,
        "sqlite",
        "the SQLite file does not exist yet",
    );
    assert!(dir.path().join("fresh.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set TEST_DATABASE_URL"
)]
async fn migrate_and_check_on_postgres() {
    let (url, _guard) = helpers::fresh_database(helpers::Db::Postgres)
        .await
        .expect("TEST_DATABASE_URL is set");
    let dir = tempfile::tempdir().unwrap();
    migrate_then_check(dir.path(), &url, "postgres", "no migrations applied yet");
}

#[test]
fn check_fails_with_1_when_the_database_is_unreachable_or_settings_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bare(dir.path()).arg("check").envs([
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing"),
        ("JWT_SECRET_KEY", helpers::JWT_SECRET),
    ]));
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("database  FAILED"), "{report}");
    assert!(report.contains("DATABASE_URL"), "{report}");

    let out = run(bare(dir.path()).arg("check").env("JWT_SECRET_KEY", "short"));
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("settings  FAILED   JWT_SECRET_KEY must be at least 16"),
        "{report}"
    );
}

#[test]
fn check_reports_aws_credentials_from_the_standard_chain() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let out = run(bare(dir.path()).arg("check").envs([
        ("DATABASE_URL", url.as_str()),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ]));
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("aws       ok       credentials from AWS_ACCESS_KEY_ID, access key AKIA…MPLE, region eu-west-1"),
        "{report}"
    );
    assert!(
        !report.contains("wJalrXUtnFEMI"),
        "the secret key is never shown"
    );
}

/// Starts the server on SQLite in `dir` with `extra` settings and stdout piped,
/// waits until it answers, stops it with SIGTERM and returns what it printed.
async fn serve_and_stop(dir: &Path, extra: &[(&str, &str)]) -> (u16, String) {
    let port = free_port();
    let url = format!("sqlite://{}", dir.join("a.db").display());
    let mut settings = vec![("RUST_LOG", "info"), ("RUN_JOBS", "false")];
    settings.extend_from_slice(extra);
    let mut child = binary(dir, &url, port, &settings)
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    wait_healthy(&format!("http://127.0.0.1:{port}")).await;
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    (port, stdout)
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("autoscaler.log"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_logs_have_no_colour_and_the_start_log_names_the_urls() {
    let dir = tempfile::tempdir().unwrap();
    let (port, stdout) = serve_and_stop(dir.path(), &[]).await;
    assert!(
        !stdout.contains('\x1b'),
        "an escape byte in piped stdout:\n{stdout}"
    );
    for url in ["", "api/docs", "api/openapi.json", "metrics"] {
        let url = format!("http://localhost:{port}/{url}");
        assert!(
            stdout.lines().any(|l| l.ends_with(&url)),
            "{url} not in:\n{stdout}"
        );
    }
    let files = log_files(&dir.path().join("logs"));
    assert_eq!(files.len(), 1, "{files:?}");
    let file = std::fs::read_to_string(dir.path().join("logs").join(&files[0])).unwrap();
    assert!(
        file.contains("api/docs") && !file.contains('\x1b'),
        "{file}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_with_level_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stdout) = serve_and_stop(dir.path(), &[("LOG_FORMAT", "json")]).await;
    let logs = dir.path().join("logs");
    let file = std::fs::read_to_string(logs.join(&log_files(&logs)[0])).unwrap();
    for (source, text) in [("stdout", &stdout), ("file", &file)] {
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 5, "{source}: {text}");
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{source}: not JSON ({e}): {line}"));
            assert!(event["level"].is_string(), "{source}: {line}");
            assert!(event["message"].is_string(), "{source}: {line}");
        }
        assert!(text.contains("/api/docs"), "{source}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_log_files_are_pruned_and_an_empty_log_dir_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for day in 1..=5 {
        std::fs::write(logs.join(format!("autoscaler.log.2026-01-0{day}")), "old\n").unwrap();
    }
    std::fs::write(logs.join("unrelated.txt"), "kept\n").unwrap();
    serve_and_stop(dir.path(), &[("LOG_RETENTION_DAYS", "2")]).await;
    let files = log_files(&logs);
    assert_eq!(files.len(), 2, "{files:?}");
    let today = chrono::Utc::now()
        .format("autoscaler.log.%Y-%m-%d")
        .to_string();
    assert!(files.contains(&today), "{files:?}");
    assert!(logs.join("unrelated.txt").exists());

    let dir = tempfile::tempdir().unwrap();
    let (_, stdout) = serve_and_stop(dir.path(), &[("LOG_DIR", "")]).await;
    assert!(stdout.contains("api/docs"));
    assert!(!dir.path().join("logs").exists());
}

#[test]
fn env_example_is_all_comments_and_names_every_setting_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    let example = std::fs::read_to_string(&path).unwrap();
    for line in example.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "not a comment: {line}"
        );
    }
    // So a copy sets nothing: dotenvy reads no variable from it.
    assert_eq!(dotenvy::from_path_iter(&path).unwrap().count(), 0);
    let settings = autoscaler::config::Settings::augment_args(clap::Command::new("autoscaler"));
    for arg in settings.get_arguments() {
        let variable = arg.get_env().unwrap().to_str().unwrap();
        let shown = match arg.get_default_values().first() {
            Some(default) => format!("\n# {variable}={}\n", default.to_str().unwrap()),
            None => format!("\n# {variable}="),
        };
        assert!(example.contains(&shown), "{shown:?} not in .env.example");
    }
}

#[test]
fn a_copy_of_env_example_checks_as_the_defaults_do() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    std::fs::copy(example, dir.path().join(".env")).unwrap();
    let out = run(bare(dir.path()).arg("check"));
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("sqlite://autoscaler.db"));
}

#[test]
fn the_readme_configuration_table_names_every_setting() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = &readme[readme.find("| Variable | Default | Meaning |").unwrap()..];
    let table = &table[..table.find("\n\n").unwrap()];
    let settings = autoscaler::config::Settings::augment_args(clap::Command::new("autoscaler"));
    for arg in settings.get_arguments() {
        let variable = arg.get_env().unwrap().to_str().unwrap();
        assert!(
            table.contains(&format!("`{variable}`")),
            "{variable} is not in the README's table"
        );
    }
}
