//! A partition's snapshots (DESIGN §5): when one is taken, when it is written, and the one
//! place that decides what offset may be committed.
//!
//! A snapshot is encoded at a position, written to the snapshot topic only once everything the
//! partition sent before it is acknowledged, and its position becomes committable only once
//! its own chunks are acknowledged. So the newest snapshot on the topic never has an
//! unacknowledged alert behind it.

use std::time::{Duration, Instant};

use futures::FutureExt;
use swipeguard_detectors::Engine;

use super::Partition;
use crate::daemon::delivery::{await_until, Ack, SendError, Sink};
use crate::daemon::kafka::OwnedRecord;
use crate::daemon::snapshots::SnapshotStore;
use crate::metrics::Metrics;

/// A snapshot on its way to the snapshot topic.
pub(super) enum PendingSnapshot {
    /// Encoded; waits until everything sent before it is acknowledged.
    Waiting {
        bytes: Vec<u8>,
        position: i64,
        sent_before: u64,
    },
    /// Written; waits for its chunks' acknowledgements, then the offset may be committed.
    /// A chunk's future is `None` once acknowledged.
    Writing {
        futures: Vec<Option<Ack>>,
        records: Vec<OwnedRecord>,
        position: i64,
        size: usize,
    },
}

/// What writing snapshots needs.
pub struct SnapshotCtx<'a> {
    /// The snapshot producer (a connection of its own).
    pub producer: &'a dyn Sink,
    pub store: &'a SnapshotStore,
    pub metrics: &'a Metrics,
    pub runtime: &'a tokio::runtime::Handle,
}

/// How a partition's final snapshot went.
pub enum Finalized {
    /// Nothing was read: nothing to snapshot or commit.
    Untouched,
    /// Written and acknowledged with everything before it: `position` may be committed.
    Committable { position: i64, bytes: usize },
    /// The deadline passed first: the next owner reprocesses from the previous snapshot.
    TimedOut,
}

impl Partition {
    /// Encodes a snapshot now if one is due and none is on its way.
    pub fn maybe_start_snapshot(
        &mut self,
        every_events: u64,
        every: Duration,
        force: bool,
    ) -> bool {
        let Some(position) = self.position else {
            return false;
        };
        if self.snapshot.is_some() {
            return false;
        }
        let due = self.events_since_snapshot >= every_events
            || (self.events_since_snapshot > 0 && self.last_snapshot_started.elapsed() >= every);
        if !(force || due) {
            return false;
        }
        let encoding = Instant::now();
        let bytes = self.encode_snapshot(position);
        tracing::debug!(
            partition = %self.label(),
            position,
            bytes = bytes.len(),
            took_ms = encoding.elapsed().as_millis() as u64,
            "snapshot encoded"
        );
        self.hold_snapshot(bytes, position);
        true
    }

    /// Holds a snapshot encoded at `position` until everything sent before it is acknowledged;
    /// the snapshot cadence starts again.
    fn hold_snapshot(&mut self, bytes: Vec<u8>, position: i64) {
        self.snapshot = Some(PendingSnapshot::Waiting {
            bytes,
            position,
            sent_before: self.outbox.sent(),
        });
        self.events_since_snapshot = 0;
        self.last_snapshot_started = Instant::now();
    }

    /// Applies the live configuration `live` if the engine runs an older generation: the
    /// engine is snapshotted at the current position (that snapshot replaces one still waiting
    /// to be written, and is the one written next) and becomes that snapshot restored under
    /// `live` — what `replay --reconfigure-at POSITION=FILE` does. While an earlier snapshot is
    /// being written it waits (a later tick applies it). A partition that has read nothing yet
    /// simply starts under `live`.
    pub fn apply(&mut self, live: &crate::daemon::reload::Live, metrics: &crate::metrics::Metrics) {
        if self.generation == live.generation
            || matches!(self.snapshot, Some(PendingSnapshot::Writing { .. }))
        {
            return;
        }
        let config = crate::config::stage_engine_config(&live.engine, self.stage);
        let Some(position) = self.position else {
            if let Ok(engine) = Engine::new(config) {
                self.set_engine(engine);
                self.generation = live.generation;
            }
            return;
        };
        // Encoded now, so that it holds every event read so far: an older waiting snapshot
        // misses those read since, and restoring it would lose them.
        let bytes = self.encode_snapshot(position);
        let restored = Engine::restore(config, crate::daemon::stages::unframe(&bytes).1);
        self.hold_snapshot(bytes, position);
        match restored {
            Ok(r) => {
                metrics.record_discarded(&r.discarded);
                let discarded: Vec<&str> =
                    r.discarded.iter().map(|d| d.detector.as_str()).collect();
                self.set_engine(r.engine);
                self.generation = live.generation;
                tracing::info!(
                    partition = %self.label(),
                    position,
                    generation = live.generation,
                    started_empty = %discarded.join(","),
                    "configuration applied at this snapshot position (replay --reconfigure-at {position}=<file> reproduces it)"
                );
            }
            Err(e) => {
                tracing::error!(partition = %self.label(), position, error = %e, "cannot apply the new configuration; keeping the running one");
                self.generation = live.generation;
            }
        }
    }

    /// Moves the pending snapshot one step: written once what precedes it is acknowledged;
    /// done once its chunks are. Returns the position that may now be committed, if any.
    pub fn advance_snapshot(&mut self, sc: &SnapshotCtx<'_>) -> Result<Option<i64>, SendError> {
        match self.snapshot.take() {
            None => Ok(None),
            Some(PendingSnapshot::Waiting {
                bytes,
                position,
                sent_before,
            }) if self.outbox.acked() >= sent_before => {
                let records = sc.store.chunks(&self.label(), self.id, position, &bytes);
                let futures = records
                    .iter()
                    .map(|r| sc.producer.send(r).map(Some))
                    .collect::<Result<Vec<_>, _>>()?;
                self.snapshot = Some(PendingSnapshot::Writing {
                    futures,
                    records,
                    position,
                    size: bytes.len(),
                });
                Ok(None)
            }
            Some(waiting @ PendingSnapshot::Waiting { .. }) => {
                self.snapshot = Some(waiting);
                Ok(None)
            }
            Some(PendingSnapshot::Writing {
                mut futures,
                records,
                position,
                size,
            }) => {
                let mut pending = false;
                for (slot, record) in futures.iter_mut().zip(&records) {
                    let Some(future) = slot else { continue };
                    match future.now_or_never() {
                        Some(Ok(())) => *slot = None,
                        None => pending = true,
                        Some(Err(_)) => {
                            chunk_failed(sc);
                            *slot = Some(sc.producer.send(record)?);
                            pending = true;
                        }
                    }
                }
                if pending {
                    self.snapshot = Some(PendingSnapshot::Writing {
                        futures,
                        records,
                        position,
                        size,
                    });
                    return Ok(None);
                }
                sc.metrics.snapshots.with_label_values(&["ok"]).inc();
                self.last_snapshot_acked = Some(Instant::now());
                self.last_snapshot_bytes = size;
                Ok(Some(position))
            }
        }
    }

    /// Waits for everything in flight, then writes a snapshot at the current position and
    /// waits for it, all before `deadline` (revocation and shutdown).
    pub fn finalize(
        &mut self,
        ctx: &super::Ctx<'_>,
        sc: &SnapshotCtx<'_>,
        deadline: Instant,
    ) -> Finalized {
        let delivery = self.delivery(ctx);
        if !self.outbox.flush(&delivery, deadline) {
            return Finalized::TimedOut;
        }
        let Some(position) = self.position else {
            return Finalized::Untouched;
        };
        let bytes = self.encode_snapshot(position);
        for record in &sc.store.chunks(&self.label(), self.id, position, &bytes) {
            loop {
                let Ok(mut future) = sc.producer.send(record) else {
                    return Finalized::TimedOut;
                };
                match await_until(sc.runtime, &mut future, deadline) {
                    Some(Ok(())) => break,
                    Some(Err(_)) => chunk_failed(sc),
                    None => return Finalized::TimedOut,
                }
            }
        }
        sc.metrics.snapshots.with_label_values(&["ok"]).inc();
        self.last_snapshot_bytes = bytes.len();
        Finalized::Committable {
            position,
            bytes: bytes.len(),
        }
    }
}

fn chunk_failed(sc: &SnapshotCtx<'_>) {
    sc.metrics.snapshots.with_label_values(&["failed"]).inc();
    sc.metrics
        .delivery_failures
        .with_label_values(&[&sc.store.topic])
        .inc();
}
