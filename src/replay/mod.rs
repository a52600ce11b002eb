//! `swipeguard replay`: historical logs through exactly the engine the daemon runs.
//!
//! Files are read in the order given, as one partition: events go to one [`Engine`] in file
//! order (or, with `sort`, stably sorted by event time first), and the end of the input drains
//! the reorder buffer. Alerts stream out as JSONL as they are made. Every row that is not
//! detected — invalid, late or duplicate — goes to the rejects file with its file, line, reason
//! and raw text, and is counted by reason; a bad row never stops the replay. A bad mapping does,
//! before any row is read.

pub mod convert;
pub mod input;
mod linecap;
pub mod mapping;
mod read;
pub mod report;
pub mod sample;
pub mod scoring;
pub mod summary;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use swipeguard_detectors::{Engine, Output, RejectReason, Transaction};

use crate::codec::Rejected;
use crate::config::Config;
use crate::encode::{encode_alert, encode_event};
use input::Format;
use mapping::{MappingError, MappingFile};
use scoring::Scoring;
use summary::Summary;

/// What to replay and where to put the results.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Input files; empty means the bundled sample.
    pub files: Vec<PathBuf>,
    pub mapping: Option<PathBuf>,
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
    /// Sort all rows by event time (stable) before detection.
    pub sort: bool,
    /// Rejected rows go here; by default `swipeguard-rejects.jsonl`, created on the first reject.
    pub rejects: Option<PathBuf>,
    /// Write an HTML report into this directory.
    pub report: Option<PathBuf>,
    /// Show a progress bar (only ever on a terminal).
    pub progress: bool,
    /// Threads decoding plain JSONL; 0 = one per core. The alerts do not depend on it.
    pub decode_threads: usize,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("the reader thread stopped unexpectedly (a bug: please report it)")]
    ReaderPanicked,
    #[error("invalid engine configuration: {0}")]
    Engine(#[from] swipeguard_detectors::ConfigError),
}

fn io_err(path: impl Into<String>) -> impl FnOnce(io::Error) -> ReplayError {
    let path = path.into();
    move |source| ReplayError::Io { path, source }
}

#[derive(Serialize)]
struct RejectLine<'a> {
    file: &'a str,
    line: u64,
    reason: RejectReason,
    detail: &'a str,
    raw: std::borrow::Cow<'a, str>,
    /// The raw bytes in hex when they are not UTF-8 (so nothing is lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
}

/// The rejects file, opened on the first reject.
struct Rejects {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl Rejects {
    fn write(
        &mut self,
        file: &str,
        line: u64,
        rejected: &Rejected,
        raw: &[u8],
    ) -> Result<(), ReplayError> {
        let path = self.path.display().to_string();
        if self.out.is_none() {
            self.out = Some(BufWriter::new(
                File::create(&self.path).map_err(io_err(path.clone()))?,
            ));
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let utf8 = std::str::from_utf8(raw).is_ok();
        let rec = RejectLine {
            file,
            line,
            reason: rejected.reason,
            detail: &rejected.detail,
            raw: String::from_utf8_lossy(raw),
            raw_hex: (!utf8).then(|| raw.iter().map(|b| format!("{b:02x}")).collect()),
        };
        serde_json::to_writer(&mut *out, &rec).map_err(|e| io_err(path.clone())(e.into()))?;
        out.write_all(b"\n").map_err(io_err(path))
    }
}

/// Runs the replay, writing alerts to `alerts_out`; returns the summary.
pub fn replay(
    config: &Config,
    opts: &ReplayOptions,
    alerts_out: &mut dyn Write,
) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let mapping = opts.mapping.as_deref().map(MappingFile::load).transpose()?;
    let mut engine = Engine::new(config.engine_config())?;
    let mut out = Output::default();
    let mut summary = Summary::default();
    let mut scoring = Scoring::default();
    let mut rejects = Rejects {
        path: opts
            .rejects
            .clone()
            .unwrap_or_else(|| PathBuf::from("swipeguard-rejects.jsonl")),
        out: None,
    };
    let mut sorted: Vec<(Transaction, std::sync::Arc<str>, u64)> = Vec::new();
    let mut alert_bytes = Vec::with_capacity(1 << 16);
    let total: u64 = opts
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(opts.progress, total);

    let names = std::thread::scope(|scope| -> Result<Vec<String>, ReplayError> {
        let lanes = read::lanes(opts.decode_threads);
        let mut batches = read::start(scope, opts, mapping.as_ref(), config, &bar, lanes);
        for batch in &mut batches {
            for (line, result) in batch.rows {
                summary.rows += 1;
                match result {
                    Err((rejected, raw)) => {
                        *summary.rejects.entry(rejected.reason).or_default() += 1;
                        rejects.write(&batch.file, line, &rejected, &raw)?;
                    }
                    Ok(tx) if opts.sort => {
                        scoring.observe(&tx);
                        sorted.push((tx, batch.file.clone(), line));
                    }
                    Ok(tx) => {
                        scoring.observe(&tx);
                        admit(
                            &mut engine,
                            tx,
                            &batch.file,
                            line,
                            &mut out,
                            &mut summary,
                            &mut rejects,
                        )?;
                    }
                }
            }
            flush_alerts(
                &mut out,
                &mut scoring,
                &mut summary,
                &mut alert_bytes,
                alerts_out,
            )?;
        }
        batches.finish()
    })?;
    summary.files = names;
    if opts.sort {
        sorted.sort_by_key(|(tx, _, _)| tx.ts);
        for (tx, file, line) in sorted {
            admit(
                &mut engine,
                tx,
                &file,
                line,
                &mut out,
                &mut summary,
                &mut rejects,
            )?;
            if out.alerts.len() >= 4096 {
                flush_alerts(
                    &mut out,
                    &mut scoring,
                    &mut summary,
                    &mut alert_bytes,
                    alerts_out,
                )?;
            }
        }
    }
    engine.drain(&mut out);
    flush_alerts(
        &mut out,
        &mut scoring,
        &mut summary,
        &mut alert_bytes,
        alerts_out,
    )?;
    alerts_out.flush().map_err(io_err("alerts output"))?;
    if let Some(r) = rejects.out.as_mut() {
        r.flush()
            .map_err(io_err(rejects.path.display().to_string()))?;
        summary.rejects_file = Some(rejects.path.display().to_string());
    }
    bar.finish_and_clear();

    summary.counts = std::mem::take(&mut out.counts);
    let size = engine.state_size();
    summary.tracked_cards = size.tracked_cards;
    summary.state_bytes = size.bytes;
    summary.wall = started.elapsed();
    if scoring.has_labels() {
        summary.labels = Some(scoring.report());
    }
    if let Some(dir) = &opts.report {
        report::write(dir, &summary, &scoring).map_err(io_err(dir.display().to_string()))?;
    }
    Ok(summary)
}

/// Offers an event to the engine; a late or duplicate one goes to the rejects file, re-encoded
/// in the §2 format (the reader keeps raw bytes only of rows it refused itself).
fn admit(
    engine: &mut Engine,
    tx: Transaction,
    file: &str,
    line: u64,
    out: &mut Output,
    summary: &mut Summary,
    rejects: &mut Rejects,
) -> Result<(), ReplayError> {
    // Cheap to keep: a late or duplicate event needs its content for the rejects file.
    let keep = if engine.would_refuse(&tx) {
        Some(tx.clone())
    } else {
        None
    };
    let admission = engine.admit(tx, out);
    if let (Some(reason), Some(tx)) = (admission.reject_reason(), keep) {
        *summary.rejects.entry(reason).or_default() += 1;
        let mut raw = Vec::new();
        encode_event(&tx, &mut raw);
        raw.pop();
        rejects.write(file, line, &Rejected::new(reason, "engine"), &raw)?;
    }
    Ok(())
}

fn forced_format(m: &MappingFile) -> Option<Format> {
    match m.source.format.as_deref() {
        Some("jsonl") => Some(Format::Jsonl),
        Some("csv") => Some(Format::Csv {
            delimiter: m
                .source
                .delimiter
                .as_deref()
                .and_then(|d| d.bytes().next())
                .unwrap_or(b','),
        }),
        _ => m
            .source
            .delimiter
            .as_deref()
            .and_then(|d| d.bytes().next())
            .map(|delimiter| Format::Csv { delimiter }),
    }
}

fn open_all(opts: &ReplayOptions) -> Result<Vec<input::Input>, ReplayError> {
    // Opened on the reader thread: inputs are not Send (progress counters are Rc).
    if opts.files.is_empty() {
        return Ok(vec![sample::open().map_err(io_err(sample::NAME))?]);
    }
    opts.files
        .iter()
        .map(|p| input::open(p).map_err(io_err(p.display().to_string())))
        .collect()
}

fn progress_bar(wanted: bool, total: u64) -> ProgressBar {
    if !wanted || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Writes the alerts made so far and notes them for the summary and the labels.
fn flush_alerts(
    out: &mut Output,
    scoring: &mut Scoring,
    summary: &mut Summary,
    buf: &mut Vec<u8>,
    sink: &mut dyn Write,
) -> Result<(), ReplayError> {
    if out.alerts.is_empty() {
        return Ok(());
    }
    buf.clear();
    for alert in out.alerts.drain(..) {
        encode_alert(&alert, buf);
        *summary
            .alerts
            .entry((alert.detector, alert.severity))
            .or_default() += 1;
        scoring.record(&alert);
    }
    sink.write_all(buf).map_err(io_err("alerts output"))
}

#[cfg(test)]
mod tests;
