//! Kafka client settings and the producer's context.
//!
//! Our defaults come first and `kafka.client` is applied on top, untouched, so an operator can set
//! any librdkafka property (TLS, SASL, timeouts) and it wins. The defaults make delivery
//! at-least-once by construction: manual offset commits only, an idempotent producer with
//! `acks=all` that retries until the broker answers (no message timeout), and statistics every
//! second for the metrics.

use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, ProducerContext};
use rdkafka::statistics::{Statistics, Window};
use rdkafka::ClientContext;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;

/// Why the daemon cannot talk to Kafka as configured.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka.brokers: required by this command")]
    NoBrokers,
    #[error("cannot create the Kafka {client}: {source}")]
    Client {
        client: &'static str,
        source: rdkafka::error::KafkaError,
    },
}

fn base(config: &Config, defaults: &[(&str, &str)]) -> Result<ClientConfig, KafkaSetupError> {
    let brokers = config
        .kafka
        .brokers
        .as_deref()
        .ok_or(KafkaSetupError::NoBrokers)?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c.set("statistics.interval.ms", "1000");
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &config.kafka.client {
        c.set(k.as_str(), v.as_str());
    }
    Ok(c)
}

/// The group member reading swipes.
pub fn consumer_config(config: &Config) -> Result<ClientConfig, KafkaSetupError> {
    let mut c = base(
        config,
        &[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            // librdkafka pauses a partition's fetching for this long once its local queue is
            // full (default 1 s): a consumer that processes slower than the broker serves then
            // idles, queue drained, for most of that second. Resume fetching promptly instead.
            ("fetch.queue.backoff.ms", "10"),
            // Alerts should leave within milliseconds: do not let the broker hold a fetch for
            // the default half second waiting for more data.
            ("fetch.wait.max.ms", "10"),
        ],
    )?;
    c.set("group.id", config.kafka.group_id.as_str());
    for (k, v) in &config.kafka.client {
        if k == "group.id" {
            c.set(k.as_str(), v.as_str());
        }
    }
    Ok(c)
}

/// The producer of alerts, dead letters and snapshots.
pub fn producer_config(config: &Config) -> Result<ClientConfig, KafkaSetupError> {
    base(
        config,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "0"),
            ("linger.ms", "2"),
            ("queue.buffering.max.messages", "1000000"),
        ],
    )
}

/// A reader of the snapshot topic (assigned by hand; never commits).
pub fn reader_config(config: &Config) -> Result<ClientConfig, KafkaSetupError> {
    let mut c = base(
        config,
        &[
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
        ],
    )?;
    c.set(
        "group.id",
        format!("{}.snapshot-reader", config.kafka.group_id),
    );
    c.set("statistics.interval.ms", "0");
    Ok(c)
}

/// Copies a useful subset of librdkafka's statistics into the metrics.
pub fn record_statistics(metrics: &Metrics, client: &str, stats: &Statistics) -> usize {
    let up = stats
        .brokers
        .values()
        .filter(|b| b.nodeid >= 0 && b.state == "UP")
        .count();
    let rtt = mean_rtt_seconds(stats.brokers.values().filter_map(|b| b.rtt.as_ref()));
    metrics
        .kafka_brokers_up
        .with_label_values(&[client])
        .set(up as i64);
    metrics
        .kafka_queue_messages
        .with_label_values(&[client])
        .set(stats.msg_cnt as i64);
    metrics
        .kafka_tx_errors
        .with_label_values(&[client])
        .set(stats.brokers.values().map(|b| b.txerrs as i64).sum());
    metrics
        .kafka_rx_messages
        .with_label_values(&[client])
        .set(stats.rxmsgs);
    metrics
        .kafka_tx_messages
        .with_label_values(&[client])
        .set(stats.txmsgs);
    if let Some(rtt) = rtt {
        metrics.kafka_rtt.with_label_values(&[client]).set(rtt);
    }
    up
}

/// The mean round trip, in seconds, of the brokers that answered requests in the last
/// statistics window; `None` when none did. An idle connection's window reads 0, which is no
/// round trip: the gauge then keeps its last reading instead of dropping to 0.
fn mean_rtt_seconds<'a>(windows: impl Iterator<Item = &'a Window>) -> Option<f64> {
    let answered: Vec<f64> = windows
        .filter(|w| w.cnt > 0)
        .map(|w| w.avg as f64 / 1e6)
        .collect();
    (!answered.is_empty()).then(|| answered.iter().sum::<f64>() / answered.len() as f64)
}

/// The producer's context: statistics into metrics.
pub struct ProducerCtx {
    pub metrics: Metrics,
    pub health: Arc<Health>,
}

impl ClientContext for ProducerCtx {
    fn stats(&self, stats: Statistics) {
        record_statistics(&self.metrics, "producer", &stats);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

pub type Producer = FutureProducer<ProducerCtx>;

/// An owned message, kept until the broker acknowledges it so that it can be sent again.
#[derive(Clone, Debug)]
pub struct OwnedRecord {
    pub topic: Arc<str>,
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(std::borrow::Cow<'static, str>, Vec<u8>)>,
}

impl OwnedRecord {
    pub fn to_future_record(&self) -> rdkafka::producer::FutureRecord<'_, [u8], [u8]> {
        let mut headers = rdkafka::message::OwnedHeaders::new_with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers = headers.insert(rdkafka::message::Header {
                key: k.as_ref(),
                value: Some(v.as_slice()),
            });
        }
        let mut r = rdkafka::producer::FutureRecord::to(&self.topic)
            .payload(self.payload.as_slice())
            .headers(headers);
        if let Some(k) = &self.key {
            r = r.key(k.as_slice());
        }
        if let Some(p) = self.partition {
            r = r.partition(p);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(avg_us: i64, cnt: i64) -> Window {
        Window {
            avg: avg_us,
            cnt,
            ..Window::default()
        }
    }

    #[test]
    fn the_round_trip_counts_only_brokers_that_answered() {
        let windows = [window(4_000, 12), window(0, 0), window(2_000, 3)];
        assert_eq!(mean_rtt_seconds(windows.iter()), Some(0.003));
        // Every connection idle in the window: no reading, not a round trip of 0.
        assert_eq!(mean_rtt_seconds([window(0, 0)].iter()), None);
        assert_eq!(mean_rtt_seconds([].iter()), None);
    }
}
