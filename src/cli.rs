//! The command line (DESIGN §7). Every command reads the same configuration file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "swipeguard",
    version,
    about = "Streaming anomaly detection for medical-insurance card swipes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: consume swipes from Kafka, emit alerts, serve metrics.
    Run {
        /// The TOML configuration file.
        #[arg(long, env = "SWIPEGUARD_CONFIG")]
        config: std::path::PathBuf,
        /// Log as JSON lines whatever `log.format` says.
        #[arg(long)]
        log_json: bool,
    },
    /// Push a JSONL or (mapped) CSV log into a Kafka topic, keyed by card.
    Produce {
        /// The log file (JSONL lines are sent unchanged; CSV rows as §2 JSON).
        file: std::path::PathBuf,
        /// Topic to send to.
        #[arg(long)]
        topic: String,
        /// Messages per second (default: as fast as the broker takes them).
        #[arg(long)]
        rate: Option<f64>,
        /// Mapping file for CSV exports.
        #[arg(long)]
        mapping: Option<std::path::PathBuf>,
        /// Configuration file (for `kafka.brokers` and client settings).
        #[arg(long, env = "SWIPEGUARD_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// Brokers, overriding the configuration.
        #[arg(long)]
        brokers: Option<String>,
    },
    /// Replay historical logs through the detection engine (no FILE: the bundled sample).
    Replay(ReplayArgs),
    /// Replay once under two configurations and compare their alerts (DESIGN §14).
    Diff(DiffArgs),
    /// Generate labelled synthetic swipes, with injected fraud scenarios.
    Simulate(SimulateArgs),
    /// Validate a configuration file and print the effective configuration (secrets masked).
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

/// What to read, as `replay` and `diff` take it.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Input files: JSONL or CSV, gzip'd or not (detected from the content); none: the bundled
    /// sample.
    pub files: Vec<PathBuf>,
    /// Mapping file (TOML) from the export's columns to event fields.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Sort all rows by event time (stable) before detection, for files not in time order.
    #[arg(long)]
    pub sort: bool,
    /// Write rejected rows (JSONL, with file, line, reason and raw text) here
    /// [default: swipeguard-rejects.jsonl, created only if a row is rejected].
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Input format instead of detecting it.
    #[arg(long, value_parser = ["jsonl", "csv"])]
    pub format: Option<String>,
    /// CSV delimiter instead of detecting it (`,` `|` `;` or `tab`).
    #[arg(long)]
    pub delimiter: Option<String>,
    /// No progress bar (it is never drawn when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The two configurations, A then B: `--config A.toml --config B.toml`.
    #[arg(long = "config", required = true, num_args = 1)]
    pub configs: Vec<PathBuf>,
    /// Write the alerts only one side raised (JSONL, each with `"side":"a"` or `"b"`) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the comparison as an HTML page (index.html) into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Configuration file (the daemon's; keys only the daemon uses are ignored).
    #[arg(long, env = "SWIPEGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write alerts (JSONL) here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write an HTML report (index.html) into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Allowed lateness, overriding the configuration (`engine.allowed_lateness`), e.g. `10m`.
    #[arg(long)]
    pub allowed_lateness: Option<String>,
    /// Run only these detectors (comma-separated names), overriding the configuration.
    #[arg(long, value_delimiter = ',')]
    pub detectors: Option<Vec<String>>,
    /// Threads decoding JSONL input [default: one per core]; the alerts never depend on it.
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub decode_threads: usize,
    /// Threads running the detector stages (card, terminal, …) [default: one per stage]; the
    /// alerts and their order never depend on it.
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub stage_threads: usize,
    /// Score every value of one numeric detector key in the same pass, e.g.
    /// `detectors.off_pattern.alert_p_value=1e-4,1e-3,1e-2`: a table in the summary, a curve in
    /// the report (the alerts written are those of the configuration as given).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Apply another configuration file after POSITION input rows, as a daemon reloaded on
    /// SIGHUP did at that snapshot position (it logs the position): `POSITION=FILE`, repeatable.
    #[arg(long = "reconfigure-at", value_name = "POSITION=FILE")]
    pub reconfigure_at: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of cards.
    #[arg(long, default_value_t = 1000)]
    pub cards: u64,
    /// Days of activity.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Seed: the same seed and arguments give byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Scenarios to inject, comma-separated, or `none` for an all-legitimate population.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub scenarios: Vec<String>,
    /// Share of cards that suffer one scenario.
    #[arg(long, default_value_t = 0.02)]
    pub fraud_share: f64,
    /// First day, local (UTC+8) date `YYYY-MM-DD`.
    #[arg(long, default_value = "2026-01-01")]
    pub start: String,
}
