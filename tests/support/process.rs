//! Running the built server binary as a process: start it, wait for it to answer,
//! signal it, wait for its exit. Shared by the fault and command-line tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server binary on `database_url`, working in `dir`, with an environment of
/// its own: only `PATH` and the settings given.
pub fn binary(
    dir: &std::path::Path,
    database_url: &str,
    port: u16,
    extra: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autoscaler"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET_KEY", crate::helpers::JWT_SECRET)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_DIR", dir.join("logs"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// [`binary`], started.
pub fn start_binary(
    dir: &std::path::Path,
    database_url: &str,
    port: u16,
    extra: &[(&str, &str)],
) -> Child {
    binary(dir, database_url, port, extra)
        .spawn()
        .expect("server binary starts")
}

pub async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/api/")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never answered");
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process still running after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
