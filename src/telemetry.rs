//! Logs to stdout and to daily files in `LOG_DIR`, filtered by `RUST_LOG`, as text
//! or as one JSON object a line (`LOG_FORMAT=json`).

use std::io::IsTerminal;
use std::path::Path;

use tracing::Subscriber;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{LogFormat, Settings};

/// The daily files are `autoscaler.log.YYYY-MM-DD`.
pub const LOG_FILE_PREFIX: &str = "autoscaler.log";

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

/// Whether stdout gets colour: only on a terminal, and not when `NO_COLOR` is set
/// to anything (<https://no-color.org>). Files never do.
pub fn colour_on_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

fn stdout_layer<S>(format: LogFormat) -> BoxedLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Text => fmt::layer().with_ansi(colour_on_stdout()).boxed(),
        LogFormat::Json => fmt::layer().json().flatten_event(true).boxed(),
    }
}

fn file_layer<S>(
    format: LogFormat,
    file: tracing_appender::non_blocking::NonBlocking,
) -> BoxedLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(false)
            .fmt_fields(FileFields(DefaultFields::new()))
            .with_writer(file)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(file)
            .boxed(),
    }
}

/// Opens `dir` for daily files, keeping the newest `keep` (older ones are deleted
/// now and at each day's rotation).
fn daily_files(dir: &Path, keep: usize) -> anyhow::Result<RollingFileAppender> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("LOG_DIR {} cannot be created: {e}", dir.display()))?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_FILE_PREFIX)
        .max_log_files(keep)
        .build(dir)
        .map_err(|e| anyhow::anyhow!("LOG_DIR {} cannot be written: {e}", dir.display()))
}

/// Installs the global subscriber: stdout always, the files of `LOG_DIR` when
/// `files` is true and `LOG_DIR` is not empty. Keep the guard alive: dropping it
/// flushes the file writer.
pub fn init(settings: &Settings, files: bool) -> anyhow::Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_new(&settings.log_filter)?;
    let mut layers = vec![stdout_layer(settings.log_format)];
    let mut guard = None;
    if let (true, Some(dir)) = (files, &settings.log_dir.0) {
        let (file, flush) =
            tracing_appender::non_blocking(daily_files(dir, settings.log_retention_days)?);
        layers.push(file_layer(settings.log_format, file));
        guard = Some(flush);
    }
    tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .try_init()?;
    Ok(guard)
}
