//! The pipeline: one thread that owns consumption. It polls messages in batches, processes them
//! synchronously, and every tick polls acknowledgements, advances idle watermarks, moves
//! snapshots along and refreshes gauges. On shutdown it stops fetching, then finalizes every
//! partition — flush, snapshot, commit — within the grace period.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use swipeguard_detectors::Output;
use tokio_util::sync::CancellationToken;

use super::partition::{Finalized, Partition, SendError};
use super::rebalance::ConsumerCtx;
use super::{DaemonError, Shared};

const TICK: Duration = Duration::from_millis(50);
/// Refresh of the gauges that cost a pass over the state (bytes) or a clock read per partition.
const GAUGES_EVERY: Duration = Duration::from_secs(2);
const BATCH: usize = 1024;
/// How long the pipeline waits for a message while deliveries are pending.
const ACK_POLL: Duration = Duration::from_millis(2);

/// Flushes, snapshots and commits one partition, blocking until done or `deadline`. Used on
/// revocation and shutdown. Returns whether everything was acknowledged and committed.
pub fn finalize(
    shared: &Shared,
    part: &mut Partition,
    deadline: Instant,
    commit: &dyn Fn(i32, i64) -> KafkaResult<()>,
) -> bool {
    let (position, bytes) = match part.finalize(&shared.ctx(), &shared.snapshot_ctx(), deadline) {
        Finalized::Untouched => return true,
        Finalized::TimedOut => return false,
        Finalized::Committable { position, bytes } => (position, bytes),
    };
    shared
        .metrics
        .snapshot_bytes
        .with_label_values(&[&part.label()])
        .set(bytes as i64);
    match commit(part.id, position) {
        Ok(()) => {
            shared.metrics.commits.with_label_values(&["ok"]).inc();
            tracing::info!(
                partition = %part.label(),
                position,
                bytes,
                "partition snapshotted and committed"
            );
            true
        }
        Err(e) => {
            shared.metrics.commits.with_label_values(&["failed"]).inc();
            tracing::error!(partition = %part.label(), position, error = %e, "commit failed");
            false
        }
    }
}

fn commit_async(
    consumer: &BaseConsumer<ConsumerCtx>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.commit(&tpl, CommitMode::Async)
}

/// Moves a partition's snapshot along and commits the position it makes committable.
fn advance_snapshot(
    shared: &Shared,
    consumer: &BaseConsumer<ConsumerCtx>,
    part: &mut Partition,
) -> Result<(), SendError> {
    let Some(position) = part.advance_snapshot(&shared.snapshot_ctx())? else {
        return Ok(());
    };
    match commit_async(consumer, &part.topic, part.id, position) {
        Ok(()) => shared.metrics.commits.with_label_values(&["ok"]).inc(),
        Err(e) => {
            shared.metrics.commits.with_label_values(&["failed"]).inc();
            tracing::warn!(partition = %part.label(), error = %e, "commit failed; the next snapshot commits again");
        }
    }
    Ok(())
}

/// One tick: acknowledgements, idle watermarks, snapshots, counters, gauges and health.
fn maintain(
    shared: &Shared,
    consumer: &BaseConsumer<ConsumerCtx>,
    out: &mut Output,
    gauges: bool,
) -> Result<(), SendError> {
    let ctx = shared.ctx();
    let cfg = &shared.config;
    let mut parts = shared.partitions();
    let views = shared
        .fetch_views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut lags = Vec::with_capacity(parts.len());
    let live = shared.live();
    for part in parts.values_mut() {
        part.poll_acks(&ctx)?;
        // A downstream stage partition's watermark is its upstream partitions' (their markers).
        if part.stage == swipeguard_detectors::KeyKind::Card {
            let at_end = views.get(&part.pid()).is_some_and(|v| v.at_end);
            part.advance_idle(&ctx, cfg.engine.idle_watermark_after, at_end, out)?;
            part.publish_watermark(&ctx)?;
        }
        // A reloaded configuration is applied at a snapshot taken for it at the current position.
        part.apply(&live, &shared.metrics);
        part.maybe_start_snapshot(
            cfg.engine.snapshot_every_events,
            cfg.engine.snapshot_every,
            false,
        );
        advance_snapshot(shared, consumer, part)?;
        let lag = match (views.get(&part.pid()).map(|v| v.high), part.position()) {
            (Some(high), Some(pos)) => (high - pos).max(0),
            (Some(high), None) => high,
            _ => 0,
        };
        lags.push(lag);
    }
    shared
        .health
        .set_max_lag(lags.iter().copied().max().unwrap_or(0));
    // Counters first, gauges after: a scrape that shows a partition drained also shows every
    // count of the events that drained it.
    shared.metrics.record_counts(&out.counts);
    out.counts = Default::default();
    for (part, lag) in parts.values().zip(lags) {
        set_gauges(shared, part, lag, gauges);
    }
    Ok(())
}

/// The partition's gauges. What a reader waits on ("drained": nothing buffered, nothing
/// unacknowledged) is exact as of every tick; the byte estimate (a pass over the state) and the
/// rest refresh when `all` is set, every [`GAUGES_EVERY`].
fn set_gauges(shared: &Shared, part: &Partition, lag: i64, all: bool) {
    let p = part.label();
    let m = &shared.metrics;
    // In flight before buffered: a scrape renders buffered first (by name), so a buffered
    // reading of 0 is never paired with an in-flight reading older than it.
    let (tracked, buffered) = part.engine().counts_held();
    m.in_flight_records
        .with_label_values(&[&p])
        .set(part.in_flight() as i64);
    m.tracked_cards.with_label_values(&[&p]).set(tracked as i64);
    m.buffered_events
        .with_label_values(&[&p])
        .set(buffered as i64);
    if !all {
        return;
    }
    m.state_bytes
        .with_label_values(&[&p])
        .set(part.engine().state_size().bytes as i64);
    m.consumer_lag
        .with_label_values(&[&*part.topic, &p])
        .set(lag);
    m.snapshot_bytes
        .with_label_values(&[&p])
        .set(part.last_snapshot_bytes() as i64);
    let age = part.snapshot_age().as_secs_f64();
    m.snapshot_age.with_label_values(&[&p]).set(age);
    let watermark = part.engine().watermark().0;
    if watermark > i64::MIN / 2 {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        m.event_time_lag
            .with_label_values(&[&p])
            .set((now_ms - watermark) as f64 / 1000.0);
    }
}

/// Takes acknowledged deliveries off every partition (and observes their latency).
fn poll_all_acks(shared: &Shared) -> Result<(), SendError> {
    let ctx = shared.ctx();
    for part in shared.partitions().values_mut() {
        part.poll_acks(&ctx)?;
    }
    Ok(())
}

/// Waits until `deadline` for the oldest delivery report of the partition with most in flight.
fn wait_for_an_ack(shared: &Shared, deadline: Instant) -> Result<(), SendError> {
    let ctx = shared.ctx();
    let mut parts = shared.partitions();
    if let Some(part) = parts.values_mut().max_by_key(|p| p.in_flight()) {
        part.wait_ack(&ctx, deadline)?;
    }
    Ok(())
}

fn in_flight(shared: &Shared) -> usize {
    shared.partitions().values().map(Partition::in_flight).sum()
}

/// Processes what the consumer has for us, as one batch.
fn process(
    shared: &Shared,
    msg: &rdkafka::message::BorrowedMessage<'_>,
    out: &mut Output,
) -> Result<(), SendError> {
    use rdkafka::message::Message;
    let ctx = shared.ctx();
    let mut parts = shared.partitions();
    let part = shared
        .partition_of(msg.topic(), msg.partition())
        .and_then(|pid| parts.get_mut(&pid));
    match part {
        Some(part) => part.process(&ctx, msg, out),
        // A message of a partition already revoked: its new owner reprocesses it.
        None => Ok(()),
    }
}

/// Runs until `shutdown`, then finalizes every partition.
pub fn run(
    shared: &Shared,
    consumer: &BaseConsumer<ConsumerCtx>,
    shutdown: &CancellationToken,
) -> Result<(), DaemonError> {
    consumer.subscribe(&shared.topics())?;
    let mut out = Output::default();
    let mut last_tick = Instant::now();
    let mut last_gauges = Instant::now();
    while !shutdown.is_cancelled() {
        if in_flight(shared) >= shared.config.daemon.max_in_flight {
            // Back-pressure: consume nothing until the broker has acknowledged enough; wait
            // for the oldest report of the busiest partition, at most until the next tick.
            wait_for_an_ack(shared, last_tick + TICK)?;
            maintain(shared, consumer, &mut out, false)?;
            last_tick = Instant::now();
            continue;
        }
        // Wait for a message at most until the next tick (and briefly while deliveries are
        // pending, so that acknowledgements are taken promptly); then take what is fetched.
        let started = Instant::now();
        let mut consumed = 0u64;
        let pending = in_flight(shared) > 0;
        let mut wait =
            TICK.saturating_sub(last_tick.elapsed())
                .min(if pending { ACK_POLL } else { TICK });
        while consumed < BATCH as u64 {
            match consumer.poll(Timeout::After(wait)) {
                Some(Ok(msg)) => {
                    consumed += 1;
                    process(shared, &msg, &mut out)?;
                }
                Some(Err(e)) => {
                    if let Some(suppressed) = shared.log_limiter.allow("consume error") {
                        tracing::warn!(error = %e, suppressed, "consume error (at most one per 10 s)");
                    }
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        if pending || consumed > 0 {
            poll_all_acks(shared)?;
        }
        if consumed > 0 {
            shared.metrics.consumed.inc_by(consumed);
            shared
                .metrics
                .batch_duration
                .observe(started.elapsed().as_secs_f64());
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            let gauges = last_gauges.elapsed() >= GAUGES_EVERY;
            if gauges {
                last_gauges = Instant::now();
            }
            maintain(shared, consumer, &mut out, gauges)?;
        }
    }
    tracing::info!("stopping: flushing alerts, snapshotting and committing every partition");
    let deadline = Instant::now() + shared.config.daemon.shutdown_grace;
    let mut all = true;
    let mut parts = std::mem::take(&mut *shared.partitions());
    for part in parts.values_mut() {
        let topic = part.topic.clone();
        let commit = |p: i32, offset: i64| {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, p, Offset::Offset(offset))?;
            consumer.commit(&tpl, CommitMode::Sync)
        };
        all &= finalize(shared, part, deadline, &commit);
    }
    shared.metrics.record_counts(&out.counts);
    if all {
        tracing::info!("stopped cleanly");
        Ok(())
    } else {
        Err(DaemonError::GraceExceeded)
    }
}
