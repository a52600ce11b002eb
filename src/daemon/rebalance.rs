//! The consumer's context: partition assignment restores engines, revocation snapshots and
//! retires them, and librdkafka's statistics and errors feed metrics and health.
//!
//! The callbacks run inside the consumer's poll, on the pipeline's task, so they may block on
//! the broker (reading a snapshot, waiting for acknowledgements): nothing else is consuming
//! meanwhile, and rebalances are rare.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use swipeguard_detectors::Engine;

use super::kafka::record_statistics;
use super::partition::Partition;
use super::pipeline::finalize;
use super::stages::{unframe, PartitionId};
use super::{FetchView, Shared};

pub struct ConsumerCtx {
    pub shared: Arc<Shared>,
}

impl ClientContext for ConsumerCtx {
    fn stats(&self, stats: Statistics) {
        let up = record_statistics(&self.shared.metrics, "consumer", &stats);
        self.shared.health.set_broker_up(up > 0);
        let mut views = self
            .shared
            .fetch_views
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (name, topic) in &stats.topics {
            for (p, s) in &topic.partitions {
                // Before its first fetch response a partition's high watermark is unknown.
                if *p < 0 || s.hi_offset < 0 {
                    continue;
                }
                if let Some(pid) = self.shared.partition_of(name, *p) {
                    views.insert(
                        pid,
                        FetchView {
                            high: s.hi_offset,
                            at_end: s.next_offset >= s.hi_offset && s.fetchq_cnt == 0,
                        },
                    );
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.shared.health.set_broker_up(false);
        }
        if let Some(suppressed) = self.shared.log_limiter.allow("kafka client error") {
            tracing::warn!(%error, %reason, suppressed, "kafka client error (at most one per 10 s)");
        }
    }
}

/// Attempts at reading a partition's newest snapshot before the daemon gives up and exits.
const READ_ATTEMPTS: u32 = 10;

/// The newest snapshot of `pid`, read again while the snapshot topic cannot be read: starting
/// afresh from the committed offset would silently lose the state that offset stands on (every
/// event before it). After [`READ_ATTEMPTS`] the process exits, so that a supervisor restarts it
/// against a broker that may have recovered, rather than run on with the state lost.
fn read_snapshot(shared: &Shared, pid: PartitionId) -> Option<Vec<u8>> {
    let timeout = shared.config.daemon.revoke_timeout;
    let label = pid.label();
    let partition = label.as_str();
    for attempt in 1..=READ_ATTEMPTS {
        let started = Instant::now();
        match shared.snapshots.read_latest(partition, pid.id, timeout) {
            Ok(found) => {
                tracing::info!(
                    partition,
                    took_ms = started.elapsed().as_millis() as u64,
                    found = found.is_some(),
                    "snapshot topic read"
                );
                return found;
            }
            Err(e) => {
                shared.metrics.restores.with_label_values(&["failed"]).inc();
                tracing::warn!(partition, attempt, error = %e, took_ms = started.elapsed().as_millis() as u64, "cannot read the snapshot topic; reading again");
            }
        }
    }
    tracing::error!(partition, attempts = READ_ATTEMPTS, "the snapshot topic stayed unreadable; exiting rather than running the partition without its state");
    std::process::exit(i32::from(crate::exit::FAILURE))
}

/// Builds the engine of a newly assigned partition: from its newest snapshot if there is one.
fn restore(shared: &Shared, pid: PartitionId) -> Partition {
    let live = shared.live();
    let config = crate::config::stage_engine_config(&live.engine, pid.stage);
    let fresh = || Engine::new(config.clone());
    let topic = shared.topic_of(pid.stage);
    let n = shared.swipes_partitions;
    let partition = pid.label();
    let partition = partition.as_str();
    match read_snapshot(shared, pid) {
        Some(bytes) => match Engine::restore(config.clone(), unframe(&bytes).1) {
            Ok(r) => {
                shared
                    .metrics
                    .restores
                    .with_label_values(&["restored"])
                    .inc();
                if r.config_changed {
                    tracing::warn!(partition, "snapshot was taken under another configuration; continuing with the current one");
                }
                shared.metrics.record_discarded(&r.discarded);
                for d in &r.discarded {
                    tracing::warn!(
                        partition,
                        detector = %d.detector,
                        reason = d.reason.as_str(),
                        "a detector's snapshot section was not loaded; it starts empty"
                    );
                }
                tracing::info!(
                    partition,
                    position = r.position,
                    bytes = bytes.len(),
                    "restored partition from snapshot"
                );
                let upstreams = unframe(&bytes).0;
                let mut p = Partition::restored(
                    pid,
                    topic,
                    n,
                    r.engine,
                    upstreams,
                    r.position as i64,
                    bytes.len(),
                );
                p.generation = live.generation;
                return p;
            }
            Err(e) => {
                shared.metrics.restores.with_label_values(&["failed"]).inc();
                tracing::error!(partition, error = %e, "snapshot unusable; starting the partition afresh from its committed offset");
            }
        },
        None => {
            shared.metrics.restores.with_label_values(&["fresh"]).inc();
            tracing::info!(
                partition,
                "no snapshot; starting afresh from the committed offset"
            );
        }
    }
    match fresh() {
        Ok(engine) => {
            let mut p = Partition::new(pid, topic, n, engine, None);
            p.generation = live.generation;
            p
        }
        // The configuration was validated at start-up; this cannot fail.
        Err(e) => unreachable_config(e),
    }
}

#[cold]
fn unreachable_config(e: swipeguard_detectors::ConfigError) -> Partition {
    tracing::error!(error = %e, "engine configuration invalid after validation");
    std::process::exit(2)
}

impl ConsumerCtx {
    fn on_assign(&self, tpl: &mut TopicPartitionList) {
        let shared = &self.shared;
        let ids: Vec<PartitionId> = tpl
            .elements()
            .iter()
            .filter_map(|e| shared.partition_of(e.topic(), e.partition()))
            .collect();
        for _ in &ids {
            shared.health.restoring_started();
        }
        {
            // What was reported before this assignment does not say where its fetching stands.
            let mut views = shared.fetch_views.lock().unwrap_or_else(|p| p.into_inner());
            for pid in &ids {
                views.remove(pid);
            }
        }
        for pid in ids {
            let part = restore(shared, pid);
            if let Some(position) = part.position() {
                if let Err(e) =
                    tpl.set_partition_offset(&part.topic, pid.id, Offset::Offset(position))
                {
                    tracing::error!(partition = %pid.label(), error = %e, "cannot set the start offset");
                }
            }
            shared.partitions().insert(pid, part);
            shared.health.restoring_done();
        }
        shared
            .metrics
            .partitions_assigned
            .set(shared.partitions().len() as i64);
        shared.health.set_joined();
        tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions assigned");
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.config.daemon.revoke_timeout;
        let ids: Vec<PartitionId> = tpl
            .elements()
            .iter()
            .filter_map(|e| shared.partition_of(e.topic(), e.partition()))
            .collect();
        let mut parts = shared.partitions();
        for pid in ids {
            if let Some(mut part) = parts.remove(&pid) {
                let topic = part.topic.clone();
                let commit = |p: i32, offset: i64| commit_sync(consumer, &topic, p, offset);
                if !finalize(shared, &mut part, deadline, &commit) {
                    tracing::error!(partition = %pid.label(), "revocation: could not flush and snapshot in time; the next owner reprocesses from the previous snapshot");
                }
                shared.metrics.forget_partition(&topic, &pid.label());
            }
        }
        shared.metrics.partitions_assigned.set(parts.len() as i64);
        tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions revoked");
    }
}

/// Commits `offset` for one partition synchronously.
pub fn commit_sync<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.commit(&tpl, CommitMode::Sync)
}

impl ConsumerContext for ConsumerCtx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(tpl);
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassigning partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}
