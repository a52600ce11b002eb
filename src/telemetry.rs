//! Logging: `tracing`, human-readable by default, JSON on request (`log.format`), filtered by
//! `log.level` (or `RUST_LOG`). Messages are lowercase with structured fields; the pipeline logs
//! per batch or per event of note (assignment, snapshot, error), never per swipe.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber; `json_override` forces JSON (the `--log-json` flag).
pub fn init(log: &LogConfig, json_override: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json_override || log.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
