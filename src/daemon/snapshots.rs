//! The snapshot topic: engine snapshots cut into chunks, and the newest complete one read back.
//!
//! The snapshot of swipes partition `p` goes to snapshot-topic partition `p mod n` (n = the
//! snapshot topic's partition count, normally equal), as consecutive chunks of at most
//! `daemon.snapshot_chunk_bytes`. Each chunk's key is `p/<index>` (so a compacting broker keeps
//! only the latest version of each), and headers name the swipes partition, the snapshot id, the
//! chunk index and count, and the position. Reading takes the newest snapshot whose chunks are all
//! present and consecutive, scanning back from the end of the partition in growing windows, so it
//! stays fast whether or not the broker compacts.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::OwnedRecord;
use crate::config::Config;

const H_PARTITION: &str = "swipeguard.partition";
const H_ID: &str = "swipeguard.snapshot_id";
const H_CHUNK: &str = "swipeguard.chunk";
const H_CHUNKS: &str = "swipeguard.chunks";
const H_POSITION: &str = "swipeguard.position";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotReadError {
    #[error("cannot read the snapshot topic: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("timed out reading the snapshot topic")]
    Timeout,
}

pub struct SnapshotStore {
    pub topic: Arc<str>,
    partitions: i32,
    chunk_bytes: usize,
    reader: rdkafka::ClientConfig,
    /// `daemon.batch_other_threads`: the reader's threads are created `SCHED_BATCH` (a restore
    /// runs on the pipeline thread, which is not).
    batch_threads: bool,
    /// Distinguishes snapshots taken at the same position by this process.
    counter: std::sync::atomic::AtomicU64,
    started_ms: i64,
}

fn header_str<'a>(msg: &'a rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    msg.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl SnapshotStore {
    pub fn new(config: &Config, reader: rdkafka::ClientConfig, partitions: i32) -> SnapshotStore {
        SnapshotStore {
            topic: config.kafka.snapshot_topic.as_str().into(),
            partitions: partitions.max(1),
            chunk_bytes: config.daemon.snapshot_chunk_bytes,
            reader,
            batch_threads: config.daemon.batch_other_threads,
            counter: std::sync::atomic::AtomicU64::new(0),
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        }
    }

    fn target(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.partitions)
    }

    /// The chunks of one snapshot of the stage partition named `slot` (the swipes partition's
    /// number for the card stage, `<key>/<number>` for another stage's `partition`), ready to
    /// send in order.
    pub fn chunks(
        &self,
        slot: &str,
        partition: i32,
        position: i64,
        bytes: &[u8],
    ) -> Vec<OwnedRecord> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{position}-{}-{n}", self.started_ms);
        let pieces: Vec<&[u8]> = if bytes.is_empty() {
            vec![bytes]
        } else {
            bytes.chunks(self.chunk_bytes).collect()
        };
        let count = pieces.len();
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| OwnedRecord {
                topic: self.topic.clone(),
                partition: Some(self.target(partition)),
                key: Some(format!("{slot}/{i}").into_bytes()),
                payload: piece.to_vec(),
                headers: vec![
                    (Cow::Borrowed(H_PARTITION), slot.as_bytes().to_vec()),
                    (Cow::Borrowed(H_ID), id.clone().into_bytes()),
                    (Cow::Borrowed(H_CHUNK), i.to_string().into_bytes()),
                    (Cow::Borrowed(H_CHUNKS), count.to_string().into_bytes()),
                    (Cow::Borrowed(H_POSITION), position.to_string().into_bytes()),
                ],
            })
            .collect()
    }

    /// The newest complete snapshot of the stage partition `slot` (number `partition`), if any.
    pub fn read_latest(
        &self,
        slot: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, SnapshotReadError> {
        let deadline = Instant::now() + timeout;
        let target = self.target(partition);
        let consumer: BaseConsumer = if self.batch_threads {
            super::os_tuning::create_threads_batch(|| self.reader.create())?
        } else {
            self.reader.create()?
        };
        let (low, high) =
            consumer.fetch_watermarks(&self.topic, target, Timeout::After(timeout))?;
        if high <= low {
            return Ok(None);
        }
        let mut window = 256i64;
        loop {
            let start = (high - window).max(low);
            if let Some(found) = self.scan(&consumer, slot, target, start, high, deadline)? {
                return Ok(Some(found));
            }
            if start == low {
                return Ok(None);
            }
            window *= 8;
        }
    }

    /// Reads `[start, high)` and returns the last complete snapshot of `partition` in it.
    fn scan(
        &self,
        consumer: &BaseConsumer,
        slot: &str,
        target: i32,
        start: i64,
        high: i64,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, SnapshotReadError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, target, Offset::Offset(start))?;
        consumer.assign(&tpl)?;
        let wanted = slot;
        // The snapshot being assembled: (id, chunks expected, pieces so far).
        let mut current: Option<(String, usize, Vec<u8>, usize)> = None;
        let mut latest: Option<Vec<u8>> = None;
        loop {
            if Instant::now() > deadline {
                return Err(SnapshotReadError::Timeout);
            }
            let Some(result) = consumer.poll(Timeout::After(Duration::from_millis(200))) else {
                continue;
            };
            let msg = match result {
                Ok(m) => m,
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => break,
                Err(e) => return Err(e.into()),
            };
            let offset = msg.offset();
            if header_str(&msg, H_PARTITION) == Some(wanted) {
                let id = header_str(&msg, H_ID).unwrap_or_default().to_string();
                let index: usize = header_str(&msg, H_CHUNK)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                let count: usize = header_str(&msg, H_CHUNKS)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let payload = msg.payload().unwrap_or_default();
                match &mut current {
                    Some((cid, ccount, buf, next))
                        if *cid == id && *ccount == count && *next == index =>
                    {
                        buf.extend_from_slice(payload);
                        *next += 1;
                    }
                    _ if index == 0 => current = Some((id, count, payload.to_vec(), 1)),
                    _ => current = None,
                }
                if let Some((_, count, _, next)) = &current {
                    if next == count {
                        latest = current.take().map(|(_, _, buf, _)| buf);
                    }
                }
            }
            if offset + 1 >= high {
                break;
            }
        }
        Ok(latest)
    }
}
