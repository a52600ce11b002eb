//! What a partition reads: a record at a position of a topic partition. The pipeline hands
//! partitions the Kafka consumer's messages; tests hand them [`MemRecord`]s, so that a
//! partition's processing, forwarding and snapshots run without a broker
//! ([`super::memory`]).

use rdkafka::message::{BorrowedMessage, Headers, Message};

/// A consumed record and where it was read.
pub trait SourceRecord {
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    /// The producer's timestamp, ms since the epoch.
    fn timestamp_ms(&self) -> Option<i64>;
    /// The first header named `key`, if it has a value.
    fn header(&self, key: &str) -> Option<&[u8]>;
    /// Every header, in order.
    fn headers(&self) -> Vec<(String, Vec<u8>)>;

    /// The first header named `key` as text.
    fn header_str(&self, key: &str) -> Option<&str> {
        self.header(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl SourceRecord for BorrowedMessage<'_> {
    fn topic(&self) -> &str {
        Message::topic(self)
    }

    fn partition(&self) -> i32 {
        Message::partition(self)
    }

    fn offset(&self) -> i64 {
        Message::offset(self)
    }

    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }

    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }

    fn timestamp_ms(&self) -> Option<i64> {
        Message::timestamp(self).to_millis()
    }

    fn header(&self, key: &str) -> Option<&[u8]> {
        Message::headers(self)?
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
    }

    fn headers(&self) -> Vec<(String, Vec<u8>)> {
        Message::headers(self)
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A record held in memory: what a test feeds a partition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl SourceRecord for MemRecord {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn offset(&self) -> i64 {
        self.offset
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.headers.clone()
    }
}
