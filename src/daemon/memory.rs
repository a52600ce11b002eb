//! A sink in memory: what a test gives a partition instead of the Kafka producer. It keeps
//! every record handed to it, in order, and acknowledges each at once — or, when told to,
//! fails the next deliveries, so that a test sees the partition send them again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::delivery::{Ack, SendError, Sink};
use super::kafka::OwnedRecord;
use super::source::MemRecord;

#[derive(Default)]
struct Sent {
    records: Vec<(OwnedRecord, i64)>,
    /// The next offset of each topic partition.
    next: HashMap<(String, Option<i32>), i64>,
}

/// Records handed over, each with the offset it got in its topic partition.
#[derive(Default)]
pub struct MemorySink {
    sent: Mutex<Sent>,
    /// Deliveries still to fail.
    failing: AtomicUsize,
}

impl MemorySink {
    /// The next `n` deliveries report a failure (the records are not kept).
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }

    /// Takes every record handed over so far, with its offset.
    pub fn take(&self) -> Vec<(OwnedRecord, i64)> {
        std::mem::take(&mut self.sent.lock().unwrap_or_else(|p| p.into_inner()).records)
    }
}

impl Sink for MemorySink {
    fn send(&self, record: &OwnedRecord) -> Result<Ack, SendError> {
        let failing = self.failing.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing.store(failing - 1, Ordering::SeqCst);
            return Ok(Ack::Ready(Some(Err("failed on purpose".to_string()))));
        }
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        // Offsets count per topic partition, as a broker's would.
        let next = sent
            .next
            .entry((record.topic.to_string(), record.partition))
            .or_insert(0);
        let offset = *next;
        *next += 1;
        sent.records.push((record.clone(), offset));
        Ok(Ack::Ready(Some(Ok(()))))
    }
}

/// A record handed to a sink, as a consumer of its topic partition reads it back.
pub fn read_back(record: &OwnedRecord, offset: i64) -> MemRecord {
    MemRecord {
        topic: record.topic.to_string(),
        partition: record.partition.unwrap_or(0),
        offset,
        key: record.key.clone(),
        payload: Some(record.payload.clone()),
        timestamp_ms: None,
        headers: record
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}
