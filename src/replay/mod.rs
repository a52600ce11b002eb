//! `swipeguard replay`: historical logs through exactly the engine the daemon runs.
//!
//! Files are read in the order given, as one partition: events go to the engine's stages in
//! file order (or, with `sort`, stably sorted by event time first), each stage on a thread of
//! its own ([`stages`]), and the end of the input drains the reorder buffers. Alerts stream out
//! as JSONL as they are made, in an order that does not depend on the number of threads. Every
//! row that is not detected — invalid, or late or duplicate for a stage — goes to the rejects
//! file with its file, line, reason and raw text, and is counted by reason; a bad row never
//! stops the replay. A bad mapping does, before any row is read. With a report, the inputs are
//! read a second time after detection, for the timelines of its drill-down ([`drill`]).

pub mod convert;
pub mod diff;
pub mod drill;
pub mod group;
pub mod input;
mod linecap;
pub mod mapping;
mod read;
pub mod report;
pub mod sample;
pub mod scoring;
mod sink;
pub mod stages;
pub mod summary;
pub mod sweep;
pub mod timeline;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use swipeguard_detectors::{Engine, KeyKind, Transaction};

use crate::config::Config;
use input::Format;
use mapping::{MappingError, MappingFile};
use scoring::Scoring;
use sink::{Rejects, Sink};
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
    /// Threads running the stages; 0 = one per stage. The alerts do not depend on it.
    pub stage_threads: usize,
    /// Score every value of one numeric detector key in the same pass.
    pub sweep: Option<sweep::Sweep>,
    /// Run a second configuration's engine beside the replay's own in the same pass, its
    /// alerts collected rather than written (`swipeguard diff`).
    pub compare: Option<swipeguard_detectors::EngineConfig>,
    /// Configuration changes at input positions (records read before the change), in order: what
    /// a daemon reloaded on SIGHUP did at a snapshot position (`--reconfigure-at`).
    pub reconfigure: Vec<ReconfigureAt>,
}

/// `--reconfigure-at POSITION=FILE`.
#[derive(Clone, Debug)]
pub struct ReconfigureAt {
    pub position: u64,
    pub config: swipeguard_detectors::EngineConfig,
    pub name: String,
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
    #[error(transparent)]
    Stage(#[from] stages::StagePanicked),
    #[error(transparent)]
    Sweep(#[from] sweep::SweepError),
    #[error("invalid engine configuration: {0}")]
    Engine(#[from] swipeguard_detectors::ConfigError),
    #[error("--reconfigure-at {name}: {message}")]
    Reconfigure { name: String, message: String },
}

fn io_err(path: impl Into<String>) -> impl FnOnce(io::Error) -> ReplayError {
    let path = path.into();
    move |source| ReplayError::Io { path, source }
}

/// Runs the replay, writing alerts to `alerts_out`; returns the summary.
pub fn replay(
    config: &Config,
    opts: &ReplayOptions,
    alerts_out: &mut dyn Write,
) -> Result<Summary, ReplayError> {
    run(config, opts, alerts_out).map(|r| r.summary)
}

/// What one pass produced: the summary, the labels (and the own alerts scored against them),
/// and, with [`ReplayOptions::compare`], both sides' alerts.
pub(crate) struct Run {
    pub summary: Summary,
    pub scoring: Scoring,
    pub sides: Option<diff::Sides>,
}

pub(crate) fn run(
    config: &Config,
    opts: &ReplayOptions,
    alerts_out: &mut dyn Write,
) -> Result<Run, ReplayError> {
    let started = Instant::now();
    let mapping = opts.mapping.as_deref().map(MappingFile::load).transpose()?;
    let engine = Engine::new(config.engine_config())?;
    let mut sink = Sink {
        summary: Summary::default(),
        scoring: Scoring::default(),
        rejects: Rejects {
            path: opts
                .rejects
                .clone()
                .unwrap_or_else(|| PathBuf::from("swipeguard-rejects.jsonl")),
            out: None,
        },
        alert_bytes: Vec::with_capacity(1 << 16),
        alerts_out,
        own_stages: 0,
        points: Vec::new(),
        point_of: Vec::new(),
        sides: None,
        compare_stages: 0,
        drill: opts.report.as_ref().map(|_| drill::Recorder::default()),
    };
    sink.summary.stages = engine.stages().iter().map(|s| s.kind()).collect();
    sink.summary.alert_p_value = config.detectors.off_pattern.alert_p_value;
    let mut engine = engine;
    // The report's score chart draws every scored event, not only the alerted ones.
    engine.record_scores(opts.report.is_some());
    let mut stages = engine.into_stages();
    let own = stages.len();
    // A sweep's points run as further stages, the swept detector alone in each.
    if let Some(sw) = &opts.sweep {
        for (value, cfg) in sw.values.iter().zip(sw.configs(config)?) {
            for stage in Engine::new(cfg)?.into_stages() {
                sink.point_of.push(sink.points.len());
                stages.push(stage);
            }
            sink.points.push(sweep::Point::new(value));
        }
    }
    check_reconfigure(opts, &stages[..own])?;
    let mut running = config.engine_config();
    let mut changes = opts.reconfigure.iter().peekable();
    if let Some(cfg) = &opts.compare {
        for stage in Engine::new(cfg.clone())?.into_stages() {
            sink.compare_stages += 1;
            stages.push(stage);
        }
        sink.sides = Some(diff::Sides::default());
    }
    sink.own_stages = own;
    let workers = stages::workers(opts.stage_threads, stages.len());
    let total: u64 = opts
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress_bar(opts.progress, total);

    let (read, ends) = std::thread::scope(|scope| -> Result<_, ReplayError> {
        let mut runner =
            stages::StageRunner::start(scope, stages, workers).map_err(io_err("stage threads"))?;
        let lanes = read::lanes(opts.decode_threads);
        let mut batches = read::start(scope, opts, mapping.as_ref(), config, &bar, lanes);
        let mut sorted: Vec<(Transaction, std::sync::Arc<str>, u64)> = Vec::new();
        // Input records (a line, or a settlement folded from several rows): what POSITION of
        // `--reconfigure-at` counts, as a Kafka offset counts the messages of a partition.
        let mut records: u64 = 0;
        for mut batch in &mut batches {
            let first_record = records;
            records += batch.rows.len() as u64;
            // Rejected rows are written here, in input order; the batch then goes to the stages
            // whole (the events in it moved, not copied).
            sink.summary.rows += batch.folded;
            for (line, result) in &batch.rows {
                sink.summary.rows += 1;
                match result {
                    Err((rejected, raw)) => {
                        *sink.summary.rejects.entry(rejected.reason).or_default() += 1;
                        sink.rejects.write(&batch.file, *line, rejected, raw)?;
                    }
                    Ok(tx) => sink.scoring.observe(tx),
                }
            }
            if opts.sort {
                for (line, result) in batch.rows {
                    if let Ok(tx) = result {
                        sorted.push((tx, batch.file.clone(), line));
                    }
                }
                continue;
            }
            // A change due inside this batch splits it: the rows before go under the running
            // configuration, the rest under the new one.
            let mut start = first_record;
            while let Some(change) = changes.next_if(|c| c.position < records) {
                let cut = (change.position.saturating_sub(start) as usize).min(batch.rows.len());
                let rest = batch.rows.split_off(cut);
                let rows: Vec<read::Row> = std::mem::replace(&mut batch.rows, rest)
                    .into_iter()
                    .filter(|(_, r)| r.is_ok())
                    .collect();
                start += cut as u64;
                if !rows.is_empty() {
                    let file = batch.file.clone();
                    sink.send(&mut runner, stages::StageBatch { file, rows })?;
                }
                sink.reconfigure(&mut runner, own, &mut running, change)?;
            }
            let rows: Vec<read::Row> = batch.rows.into_iter().filter(|(_, r)| r.is_ok()).collect();
            sink.send(
                &mut runner,
                stages::StageBatch {
                    file: batch.file,
                    rows,
                },
            )?;
        }
        // A change at the end applies before the final drain; one past it names a position
        // the input never reached.
        for change in changes {
            if change.position > records {
                return Err(ReplayError::Reconfigure {
                    name: format!("{}={}", change.position, change.name),
                    message: format!("the input has only {records} records"),
                });
            }
            sink.reconfigure(&mut runner, own, &mut running, change)?;
        }
        let read = batches.finish()?;
        if opts.sort {
            sorted.sort_by_key(|(tx, _, _)| tx.ts);
            // Batches of one file each, at most STAGE_BATCH events: a cut fixed by the data.
            let mut rows: Vec<read::Row> = Vec::with_capacity(stages::STAGE_BATCH);
            let mut file: Option<std::sync::Arc<str>> = None;
            for (tx, f, line) in sorted {
                if rows.len() == stages::STAGE_BATCH || file.as_ref().is_some_and(|c| *c != f) {
                    if let Some(file) = file.take() {
                        let rows =
                            std::mem::replace(&mut rows, Vec::with_capacity(stages::STAGE_BATCH));
                        sink.send(&mut runner, stages::StageBatch { file, rows })?;
                    }
                }
                file = Some(f);
                rows.push((line, Ok(tx)));
            }
            if let Some(file) = file {
                sink.send(&mut runner, stages::StageBatch { file, rows })?;
            }
        }
        let (outputs, ends) = runner.finish()?;
        sink.write(outputs)?;
        Ok((read, ends))
    })?;
    let Sink {
        mut summary,
        scoring,
        mut rejects,
        alerts_out,
        points,
        sides,
        drill,
        ..
    } = sink;
    if let Some(sw) = &opts.sweep {
        summary.sweep = Some(sweep::SweepReport::new(&sw.key, &points, &scoring));
    }
    summary.files = read.names;
    summary.unknown = read.unknown;
    alerts_out.flush().map_err(io_err("alerts output"))?;
    if let Some(r) = rejects.out.as_mut() {
        r.flush()
            .map_err(io_err(rejects.path.display().to_string()))?;
        summary.rejects_file = Some(rejects.path.display().to_string());
    }
    bar.finish_and_clear();

    summary.tracked = ends.iter().map(|e| (e.kind, e.tracked)).collect();
    summary.state_bytes = ends.iter().map(|e| e.bytes).sum();
    summary.wall = started.elapsed();
    if scoring.has_labels() {
        summary.labels = Some(scoring.report());
    }
    if let Some(dir) = &opts.report {
        // After detection: a second pass over the inputs for the alerted subjects' events.
        let plan = drill.map(drill::Recorder::plan).unwrap_or_default();
        let drill = drill::collect(opts, mapping.as_ref(), config, plan)?;
        report::write(dir, &summary, &scoring, &drill)
            .map_err(io_err(dir.display().to_string()))?;
    }
    Ok(Run {
        summary,
        scoring,
        sides,
    })
}

/// Refuses `--reconfigure-at` where it cannot mean what the daemon did: after `--sort` (rows
/// are no longer at their input positions), out of order, or changing which stages run.
fn check_reconfigure(
    opts: &ReplayOptions,
    own: &[swipeguard_detectors::Stage],
) -> Result<(), ReplayError> {
    let kinds: Vec<KeyKind> = own.iter().map(|s| s.kind()).collect();
    let mut last = 0;
    for change in &opts.reconfigure {
        let refuse = |message: String| ReplayError::Reconfigure {
            name: format!("{}={}", change.position, change.name),
            message,
        };
        if opts.sort {
            return Err(refuse(
                "positions are input rows; it cannot be combined with --sort".into(),
            ));
        }
        if change.position < last {
            return Err(refuse("positions must be given in increasing order".into()));
        }
        last = change.position;
        let theirs: Vec<KeyKind> = Engine::new(change.config.clone())
            .map_err(|e| refuse(e.to_string()))?
            .stages()
            .iter()
            .map(|s| s.kind())
            .collect();
        if theirs != kinds {
            return Err(refuse(format!(
                "it runs the stages {theirs:?} where the replay runs {kinds:?}: a change can retune and switch detectors within the running stages only"
            )));
        }
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

#[cfg(test)]
mod tests;
