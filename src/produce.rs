//! `swipeguard produce FILE --topic T [--rate R]`: pushes a log into Kafka keyed by card, for
//! demos and load. JSONL lines go out unchanged (invalid ones too, so the dead-letter path can be
//! shown); CSV and mapped files are converted to §2 JSON first. An optional rate paces the sends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

use crate::config::Config;
use crate::daemon::kafka::{producer_config, KafkaSetupError};
use crate::encode::encode_event;
use crate::replay::input::{self, Format, Rows};
use crate::replay::mapping::{MappingError, MappingFile};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("cannot create the producer: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("{0} messages were not acknowledged by the broker")]
    Undelivered(u64),
}

pub struct ProduceOptions {
    pub file: PathBuf,
    pub topic: String,
    /// Messages per second; `None` for as fast as the broker takes them.
    pub rate: Option<f64>,
    pub mapping: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct ProduceStats {
    pub sent: u64,
    pub skipped: u64,
    pub delivered: u64,
    pub failed: u64,
    pub wall: Duration,
}

#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct Ctx(Arc<Counting>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The card id of a JSON line, for the message key (none if the line has none).
fn card_key(line: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    match v.get("card_id")? {
        serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

pub fn produce(config: &Config, opts: &ProduceOptions) -> Result<ProduceStats, ProduceError> {
    let started = Instant::now();
    let counting = Arc::new(Counting::default());
    let producer: ThreadedProducer<Ctx> =
        producer_config(config)?.create_with_context(Ctx(counting.clone()))?;
    let mapping = opts.mapping.as_deref().map(MappingFile::load).transpose()?;
    let path = opts.file.display().to_string();
    let mut file = input::open(&opts.file).map_err(|source| ProduceError::Io {
        path: path.clone(),
        source,
    })?;
    let format = input::detect(&mut *file.reader).map_err(|source| ProduceError::Io {
        path: path.clone(),
        source,
    })?;
    let mut stats = ProduceStats::default();
    let send = |key: Option<Vec<u8>>, payload: &[u8], stats: &mut ProduceStats| {
        if let Some(rate) = opts.rate {
            let due = started + Duration::from_secs_f64(stats.sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(&opts.topic).payload(payload);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        stats.sent += 1;
    };
    match (format, &mapping) {
        (Format::Jsonl, None) => {
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = std::io::BufRead::read_until(&mut file.reader, b'\n', &mut line).map_err(
                    |source| ProduceError::Io {
                        path: path.clone(),
                        source,
                    },
                )?;
                if n == 0 {
                    break;
                }
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                if line.is_empty() {
                    continue;
                }
                send(card_key(&line), &line, &mut stats);
            }
        }
        _ => {
            let mut rows = Rows::new(file, format, mapping.as_ref(), config.decode_limits())?;
            let mut buf = Vec::new();
            while let Some((_, result)) = rows.next_row().map_err(|source| ProduceError::Io {
                path: path.clone(),
                source,
            })? {
                match result {
                    Ok(tx) => {
                        buf.clear();
                        encode_event(&tx, &mut buf);
                        buf.pop();
                        send(
                            Some(tx.card_id.as_str().as_bytes().to_vec()),
                            &buf,
                            &mut stats,
                        );
                    }
                    Err(_) => stats.skipped += 1,
                }
            }
        }
    }
    let _ = producer.flush(Timeout::After(Duration::from_secs(120)));
    stats.delivered = counting.delivered.load(Ordering::Relaxed);
    stats.failed = counting.failed.load(Ordering::Relaxed);
    stats.wall = started.elapsed();
    if stats.delivered < stats.sent {
        return Err(ProduceError::Undelivered(stats.sent - stats.delivered));
    }
    Ok(stats)
}
