//! Replay's reading half: files → rows in batches, decoded on several threads, delivered to the
//! engine thread in exactly the order of the input.
//!
//! One reader thread reads every input in turn. Plain §2 JSONL, the common case and the one
//! where decoding dominates, leaves the reader undecoded, as batches of raw lines; CSV and
//! mapped JSON are decoded by the reader itself (their parsing is tied to the reader's state).
//! Batch `k` goes to decode lane `k mod N` and the engine thread takes lane `k mod N`'s next
//! result for its `k`-th batch, so with every lane FIFO the order of rows is the input's, for
//! any N and any scheduling: the alerts of a replay do not depend on its thread count.
//!
//! Ends: the reader finishing closes the lanes, the lanes' workers finish and close their
//! outputs, and the engine's next receive on an empty, closed lane means the input is done. If
//! the engine side stops early (an error writing alerts), dropping the outputs unwinds the
//! workers and then the reader. A thread that panicked is reported by [`Batches::finish`], so
//! a replay can never end short without an error.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use indicatif::ProgressBar;
use swipeguard_detectors::Transaction;

use super::convert::unknown::Unknowns;
use super::input::{self, Format, Rows};
use super::mapping::MappingFile;
use super::{io_err, open_all, ReplayError, ReplayOptions};
use crate::codec::{decode_event, DecodeLimits, Rejected};
use crate::config::Config;

/// One row: its line number, and an event or why it was refused with the raw bytes that go to
/// the rejects file (see [`redact`]).
pub(super) type Row = (u64, Result<Transaction, (Rejected, Vec<u8>)>);

/// Rows of one file, in order: what the engine thread receives.
pub(super) struct Batch {
    pub file: Arc<str>,
    pub rows: Vec<Row>,
    /// Rows read besides those in `rows`: folded into one of its events by `group_by`.
    pub folded: u64,
}

/// What the reader hands a decode lane.
enum Work {
    /// Already decoded by the reader.
    Decoded(Batch),
    /// Plain JSONL lines still to decode: `lines[i]` = (line number, its range in `bytes`).
    Lines {
        file: Arc<str>,
        bytes: Vec<u8>,
        lines: Vec<(u64, Range<usize>)>,
    },
}

const BATCH_ROWS: usize = 2048;
/// Batches in flight per lane, each way: enough to ride out scheduling hiccups, little memory.
const LANE_DEPTH: usize = 4;

/// The raw bytes of a refused row as they may be written to the rejects file: unchanged, or
/// with card hashing on, redacted (JSON) or withheld (CSV) as `crate::ingest` describes.
pub(super) fn redact(config: &Config, format: Format, raw: &[u8]) -> Vec<u8> {
    match (&config.hasher, format) {
        (None, _) => raw.to_vec(),
        (Some(h), Format::Jsonl) => h.redact_payload(raw),
        (Some(_), Format::Csv { .. }) => crate::ingest::withheld(raw.len()),
    }
}

/// Decode lanes to use: `wanted`, or with 0 one per available core; at least 1, at most 16.
pub(super) fn lanes(wanted: usize) -> usize {
    let n = if wanted == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        wanted
    };
    n.clamp(1, 16)
}

/// The engine thread's end of the pipeline: batches in input order.
pub(super) struct Batches<'scope> {
    outputs: Vec<Receiver<Batch>>,
    next: usize,
    reader: ScopedJoinHandle<'scope, Result<Read, ReplayError>>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let lane = self.next % self.outputs.len();
        let batch = self.outputs[lane].recv().ok()?;
        self.next += 1;
        Some(batch)
    }
}

/// What the reader found besides the rows.
#[derive(Debug, Default)]
pub(super) struct Read {
    /// The names of the inputs read, in order.
    pub names: Vec<String>,
    /// The values their mapping did not know, over all of them.
    pub unknown: Unknowns,
}

impl Batches<'_> {
    /// Waits for every thread; returns what the reader found, or why reading failed.
    pub fn finish(self) -> Result<Read, ReplayError> {
        drop(self.outputs);
        let read = self
            .reader
            .join()
            .unwrap_or(Err(ReplayError::ReaderPanicked))?;
        for w in self.workers {
            w.join().map_err(|_| ReplayError::ReaderPanicked)?;
        }
        Ok(read)
    }
}

/// Starts the reader and `lanes` decode workers in `scope`.
pub(super) fn start<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    opts: &'env ReplayOptions,
    mapping: Option<&'env MappingFile>,
    config: &'env Config,
    bar: &'env ProgressBar,
    lanes: usize,
) -> Batches<'scope> {
    let mut inputs = Vec::with_capacity(lanes);
    let mut outputs = Vec::with_capacity(lanes);
    let mut workers = Vec::with_capacity(lanes);
    // Line buffers go back to the reader once decoded: fresh megabyte buffers for every batch
    // cost a tenth of the replay in the kernel zeroing pages.
    let (recycle, reuse) = sync_channel::<Vec<u8>>(lanes * (2 * LANE_DEPTH + 1));
    for _ in 0..lanes {
        let (to_lane, lane_in) = sync_channel::<Work>(LANE_DEPTH);
        let (lane_out, from_lane) = sync_channel::<Batch>(LANE_DEPTH);
        let limits = config.decode_limits();
        let recycle = recycle.clone();
        workers.push(scope.spawn(move || {
            decode_lane(config, &limits, lane_in, lane_out, recycle);
        }));
        inputs.push(to_lane);
        outputs.push(from_lane);
    }
    drop(recycle);
    let reader = scope.spawn(move || read_all(opts, mapping, config, bar, inputs, reuse));
    Batches {
        outputs,
        next: 0,
        reader,
        workers,
    }
}

fn decode_lane(
    config: &Config,
    limits: &DecodeLimits,
    work: Receiver<Work>,
    out: SyncSender<Batch>,
    recycle: SyncSender<Vec<u8>>,
) {
    for w in work {
        let batch = match w {
            Work::Decoded(batch) => batch,
            Work::Lines {
                file,
                mut bytes,
                lines,
            } => {
                let rows = lines
                    .into_iter()
                    .map(|(line, range)| {
                        let raw = &bytes[range];
                        let row = decode_event(raw, limits)
                            .map_err(|r| (r, redact(config, Format::Jsonl, raw)));
                        (line, row)
                    })
                    .collect();
                bytes.clear();
                // A full pool or a finished reader: the buffer is simply freed.
                let _ = recycle.try_send(bytes);
                Batch {
                    file,
                    rows,
                    folded: 0,
                }
            }
        };
        if out.send(batch).is_err() {
            return;
        }
    }
}

/// Hands batches to the lanes in turn; `false` when the engine side has gone.
struct Dispatch {
    lanes: Vec<SyncSender<Work>>,
    next: usize,
    /// Emptied line buffers coming back from the lanes.
    reuse: Receiver<Vec<u8>>,
}

impl Dispatch {
    fn buffer(&self) -> Vec<u8> {
        self.reuse
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(1 << 20))
    }

    fn send(&mut self, work: Work) -> bool {
        let lane = self.next % self.lanes.len();
        self.next += 1;
        self.lanes[lane].send(work).is_ok()
    }
}

/// Reads every input on the calling thread (inputs are not `Send`: their progress counters are
/// `Rc`), sending its rows to the lanes in batches. Mapped rows are converted here, in input
/// order, so their tally of unknown values is the same for any number of lanes.
fn read_all(
    opts: &ReplayOptions,
    mapping: Option<&MappingFile>,
    config: &Config,
    bar: &ProgressBar,
    lanes: Vec<SyncSender<Work>>,
    reuse: Receiver<Vec<u8>>,
) -> Result<Read, ReplayError> {
    let mut dispatch = Dispatch {
        lanes,
        next: 0,
        reuse,
    };
    let inputs = open_all(opts)?;
    let mut read = Read::default();
    let mut done_before = 0u64;
    for mut input in inputs {
        let name: Arc<str> = input.name.as_str().into();
        read.names.push(input.name.clone());
        let size = input.size;
        let format = match opts
            .format
            .or_else(|| mapping.and_then(super::forced_format))
        {
            Some(f) => f,
            None => input::detect(&mut *input.reader).map_err(io_err(name.to_string()))?,
        };
        let mut rows = Rows::new(input, format, mapping, config.decode_limits())?;
        let completed = if rows.decodes_apart() {
            send_lines(&mut rows, &name, bar, done_before, &mut dispatch)?
        } else {
            send_decoded(
                &mut rows,
                format,
                &name,
                config,
                bar,
                done_before,
                &mut dispatch,
            )?
        };
        read.unknown.merge(rows.take_unknown());
        if !completed {
            break;
        }
        done_before += size;
    }
    Ok(read)
}

/// Plain JSONL: raw lines in batches, decoded by the lanes. `false` if the engine side left.
fn send_lines(
    rows: &mut Rows,
    name: &Arc<str>,
    bar: &ProgressBar,
    done_before: u64,
    dispatch: &mut Dispatch,
) -> Result<bool, ReplayError> {
    let mut bytes = dispatch.buffer();
    let mut lines = Vec::with_capacity(BATCH_ROWS);
    loop {
        let next = rows
            .next_line(&mut bytes)
            .map_err(io_err(name.to_string()))?;
        let at_end = next.is_none();
        if let Some(line) = next {
            lines.push(line);
        }
        if lines.len() == BATCH_ROWS || (at_end && !lines.is_empty()) {
            bar.set_position(done_before + rows.progress());
            let work = Work::Lines {
                file: name.clone(),
                bytes: std::mem::replace(&mut bytes, dispatch.buffer()),
                lines: std::mem::replace(&mut lines, Vec::with_capacity(BATCH_ROWS)),
            };
            if !dispatch.send(work) {
                return Ok(false);
            }
        }
        if at_end {
            return Ok(true);
        }
    }
}

/// CSV and mapped JSON: decoded here, batches passed through the lanes. `false` if the engine
/// side left.
fn send_decoded(
    rows: &mut Rows,
    format: Format,
    name: &Arc<str>,
    config: &Config,
    bar: &ProgressBar,
    done_before: u64,
    dispatch: &mut Dispatch,
) -> Result<bool, ReplayError> {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    loop {
        let next = rows.next_row().map_err(io_err(name.to_string()))?;
        let at_end = next.is_none();
        if let Some((line, result)) = next {
            batch.push((
                line,
                result.map_err(|r| (r, redact(config, format, rows.raw()))),
            ));
        }
        if batch.len() == BATCH_ROWS || (at_end && !batch.is_empty()) {
            bar.set_position(done_before + rows.progress());
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
            if !dispatch.send(Work::Decoded(Batch {
                file: name.clone(),
                rows: full,
                folded: rows.take_folded(),
            })) {
                return Ok(false);
            }
        }
        if at_end {
            return Ok(true);
        }
    }
}
