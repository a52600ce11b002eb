//! Replay's detecting half: the engine's stages (DESIGN §11) on threads of their own, fed the
//! same events, with output that does not depend on the number of threads.
//!
//! Events travel in the reader's batches of rows (a row: line number and an event or why it was
//! refused; the same cut for any thread count), moved, never copied into new ones. Every batch
//! goes to every worker; a worker runs its stages (round-robin over the workers, in
//! stage order) over the batch and sends each stage's output back. The caller takes the output
//! of batch `k` stage by stage, in stage order, before batch `k + 1`: so alerts and refusals
//! leave in the same order whether one thread runs every stage or each stage has its own.
//! At most [`IN_FLIGHT`] batches are ahead of the caller, which bounds memory.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use swipeguard_detectors::{KeyKind, Output, Refusal, Stage, Transaction};

use super::read::Row;

/// Events per batch when replay makes the batches itself (`--sort`).
pub const STAGE_BATCH: usize = 4096;

/// Rows of one file, in input order: what every stage gets.
pub struct StageBatch {
    pub file: Arc<str>,
    pub rows: Vec<Row>,
}
/// Batches the workers may be ahead of the caller.
const IN_FLIGHT: usize = 4;

/// What one stage made of one batch.
pub struct StageOutput {
    pub stage: usize,
    pub output: Output,
    /// The batch's file, and for each refusal in `output.refusals` the event's line.
    pub file: Option<Arc<str>>,
    pub refused_at: Vec<u64>,
}

/// A stage's size at the end.
pub struct StageEnd {
    pub kind: KeyKind,
    pub tracked: usize,
    pub bytes: usize,
}

/// A configuration change for the replay's own stages (those before `own`).
pub struct Reconfigure {
    pub own: usize,
    pub old: swipeguard_detectors::EngineConfig,
    pub new: swipeguard_detectors::EngineConfig,
}

enum Job {
    Batch(Arc<StageBatch>),
    /// Carry the own stages over into a new configuration, as a snapshot restored under it.
    Reconfigure(Arc<Reconfigure>),
    /// End of input: drain.
    Drain,
}

/// Results of one job from one worker: one output per stage it runs.
type Done = Vec<StageOutput>;

/// The workers and the order their results are taken in.
pub struct StageRunner<'scope> {
    jobs: Vec<SyncSender<Job>>,
    results: Vec<Receiver<Done>>,
    handles: Vec<ScopedJoinHandle<'scope, Vec<StageEnd>>>,
    stages: usize,
    /// Jobs sent whose results are not yet taken.
    pending: VecDeque<()>,
}

/// Worker threads to use for `stages` stages: `wanted`, or with 0 one per stage; at least one,
/// at most one per stage.
pub fn workers(wanted: usize, stages: usize) -> usize {
    let n = if wanted == 0 { stages } else { wanted };
    n.clamp(1, stages.max(1))
}

fn run_worker(
    mut stages: Vec<(usize, Stage)>,
    jobs: Receiver<Job>,
    done: Sender<Done>,
) -> Vec<StageEnd> {
    while let Ok(job) = jobs.recv() {
        let outputs = match job {
            Job::Batch(events) => {
                let last = stages.len().saturating_sub(1);
                let mut outputs = Vec::with_capacity(stages.len());
                let mut events = Some(events);
                for (i, (index, stage)) in stages.iter_mut().enumerate() {
                    let Some(batch) = events.take() else { break };
                    if i < last {
                        outputs.push(run_batch(*index, stage, Shared::Arc(batch.clone())));
                        events = Some(batch);
                    } else {
                        // The last stage takes the events themselves when no other worker holds
                        // them (one stage, or one thread): no copy.
                        let batch = match Arc::try_unwrap(batch) {
                            Ok(owned) => Shared::Owned(owned),
                            Err(shared) => Shared::Arc(shared),
                        };
                        outputs.push(run_batch(*index, stage, batch));
                    }
                }
                outputs
            }
            Job::Reconfigure(change) => stages
                .iter_mut()
                .map(|(index, stage)| {
                    if *index < change.own {
                        carry_over(stage, &change);
                    }
                    StageOutput {
                        stage: *index,
                        output: Output::default(),
                        file: None,
                        refused_at: Vec::new(),
                    }
                })
                .collect(),
            Job::Drain => stages
                .iter_mut()
                .map(|(index, stage)| {
                    let mut output = Output::default();
                    stage.drain(&mut output);
                    StageOutput {
                        stage: *index,
                        output,
                        file: None,
                        refused_at: Vec::new(),
                    }
                })
                .collect(),
        };
        if done.send(outputs).is_err() {
            break;
        }
    }
    stages
        .iter()
        .map(|(_, s)| StageEnd {
            kind: s.kind(),
            tracked: s.held().0,
            bytes: s.bytes(),
        })
        .collect()
}

/// Replaces `stage` by itself carried over into the new configuration. The change was checked
/// before the replay started (same stages); a stage that cannot be carried over keeps running
/// as it was.
fn carry_over(stage: &mut Stage, change: &Reconfigure) {
    if let Ok((next, _)) = stage.reconfigured(&change.old, &change.new) {
        *stage = next;
    }
}

/// A batch as a stage gets it: its own events, or shared ones to copy from.
enum Shared {
    Owned(StageBatch),
    Arc(Arc<StageBatch>),
}

fn run_batch(index: usize, stage: &mut Stage, batch: Shared) -> StageOutput {
    let mut output = Output::default();
    let mut refused_at = Vec::new();
    let mut admit = |line: u64, tx: Transaction, stage: &mut Stage, output: &mut Output| {
        let before = output.refusals.len();
        stage.admit(tx, output);
        refused_at.extend(std::iter::repeat_n(line, output.refusals.len() - before));
    };
    let (file, shared): (Arc<str>, Option<Arc<StageBatch>>) = match batch {
        Shared::Owned(batch) => {
            for (line, row) in batch.rows {
                if let Ok(tx) = row {
                    if stage.takes(&tx) {
                        admit(line, tx, stage, &mut output);
                    }
                }
            }
            (batch.file, None)
        }
        Shared::Arc(batch) => (batch.file.clone(), Some(batch)),
    };
    if let Some(batch) = shared {
        for (line, row) in &batch.rows {
            if let Ok(tx) = row {
                if stage.takes(tx) {
                    admit(*line, tx.clone(), stage, &mut output);
                }
            }
        }
    }
    StageOutput {
        stage: index,
        output,
        file: Some(file),
        refused_at,
    }
}

impl<'scope> StageRunner<'scope> {
    /// Starts `workers` threads in `scope` running `stages` (their outputs come back by their
    /// position in this list).
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        stages: Vec<Stage>,
        workers: usize,
    ) -> std::io::Result<Self> {
        let count = stages.len();
        let workers = workers.clamp(1, count.max(1));
        let mut assigned: Vec<Vec<(usize, Stage)>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, stage) in stages.into_iter().enumerate() {
            assigned[i % workers].push((i, stage));
        }
        let mut jobs = Vec::with_capacity(workers);
        let mut results = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for mine in assigned {
            let (job_tx, job_rx) = sync_channel(IN_FLIGHT);
            let (done_tx, done_rx) = channel();
            handles.push(
                std::thread::Builder::new()
                    .name("swipeguard-stage".into())
                    .spawn_scoped(scope, move || run_worker(mine, job_rx, done_tx))?,
            );
            jobs.push(job_tx);
            results.push(done_rx);
        }
        Ok(StageRunner {
            jobs,
            results,
            handles,
            stages: count,
            pending: VecDeque::new(),
        })
    }

    /// Hands a batch to every stage. Returns the outputs of the oldest batch, in stage order,
    /// once more than [`IN_FLIGHT`] batches are out (else an empty list).
    pub fn send(&mut self, batch: StageBatch) -> Result<Vec<StageOutput>, StagePanicked> {
        let batch = Arc::new(batch);
        self.dispatch(|| Job::Batch(batch.clone()));
        drop(batch);
        if self.pending.len() > IN_FLIGHT {
            self.take()
        } else {
            Ok(Vec::new())
        }
    }

    /// Carries the own stages over into a new configuration after everything sent so far;
    /// returns outputs like [`StageRunner::send`].
    pub fn reconfigure(&mut self, change: Reconfigure) -> Result<Vec<StageOutput>, StagePanicked> {
        let change = Arc::new(change);
        self.dispatch(|| Job::Reconfigure(change.clone()));
        if self.pending.len() > IN_FLIGHT {
            self.take()
        } else {
            Ok(Vec::new())
        }
    }

    /// Drains every stage; returns every remaining output in order, then the stages' sizes.
    pub fn finish(mut self) -> Result<(Vec<StageOutput>, Vec<StageEnd>), StagePanicked> {
        self.dispatch(|| Job::Drain);
        let mut outputs = Vec::new();
        while !self.pending.is_empty() {
            outputs.extend(self.take()?);
        }
        drop(self.jobs);
        let mut ends: Vec<StageEnd> = Vec::with_capacity(self.stages);
        for h in self.handles {
            ends.extend(h.join().map_err(|_| StagePanicked)?);
        }
        ends.sort_by_key(|e| e.kind);
        Ok((outputs, ends))
    }

    fn dispatch(&mut self, job: impl Fn() -> Job) {
        for j in &self.jobs {
            // A worker gone means it panicked; `take` reports the missing output.
            let _ = j.send(job());
        }
        self.pending.push_back(());
    }

    /// The outputs of the oldest pending job, in stage order. A worker that stopped answering
    /// panicked: its stages' output is lost, and the replay must say so rather than end short.
    fn take(&mut self) -> Result<Vec<StageOutput>, StagePanicked> {
        self.pending.pop_front();
        let mut outputs: Vec<StageOutput> = Vec::with_capacity(self.stages);
        for r in &self.results {
            outputs.extend(r.recv().map_err(|_| StagePanicked)?);
        }
        outputs.sort_by_key(|o| o.stage);
        Ok(outputs)
    }
}

/// A stage thread stopped (a bug: it panicked).
#[derive(Debug, thiserror::Error)]
#[error("a stage thread stopped unexpectedly (a bug: please report it)")]
pub struct StagePanicked;

/// The refusals of one output with the line of each event.
pub fn refusals(out: &mut StageOutput) -> impl Iterator<Item = (u64, Refusal)> + '_ {
    out.refused_at.drain(..).zip(out.output.refusals.drain(..))
}
