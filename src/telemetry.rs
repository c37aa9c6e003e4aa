//! Logs to stdout and to daily files in `LOG_DIR`, filtered by `RUST_LOG`.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The file layer's field formatter: `DefaultFields` under a type of its own. Two
/// layers with the same formatter type share one formatted copy of each span's
/// fields, so the file would get the terminal's colour codes and every
/// `Span::record` would be appended twice.
struct FileFields(DefaultFields);

impl<'w> FormatFields<'w> for FileFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

/// Installs the global subscriber. Keep the guard alive: dropping it flushes the
/// file writer.
pub fn init(log_dir: &Path) -> anyhow::Result<WorkerGuard> {
    std::fs::create_dir_all(log_dir)
        .map_err(|e| anyhow::anyhow!("LOG_DIR {} cannot be created: {e}", log_dir.display()))?;
    let file = tracing_appender::rolling::daily(log_dir, "autoscaler.log");
    let (file, guard) = tracing_appender::non_blocking(file);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_config=error,aws_smithy_runtime=warn")
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer())
        .with(
            fmt::layer()
                .with_ansi(false)
                .fmt_fields(FileFields(DefaultFields::new()))
                .with_writer(file),
        )
        .try_init()?;
    Ok(guard)
}
