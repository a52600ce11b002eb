//! One assigned partition of the swipes topic: its engine, its position, and what it has sent
//! that the broker has not yet acknowledged.
//!
//! Delivery promise: every alert and dead letter is held (with its bytes) until the broker
//! acknowledges it, and sent again if delivery fails. A snapshot is encoded at a position, but
//! written to the snapshot topic only once everything sent before it is acknowledged, and the
//! offset is committed only once the snapshot is acknowledged. So the newest snapshot on the
//! topic never has an unacknowledged alert behind it: restoring it and reprocessing from its
//! position loses nothing and re-sends the same alert ids.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::DeliveryFuture;
use rdkafka::util::Timeout;
use swipeguard_detectors::{Admission, Alert, Engine, EventMeta, Output, RejectReason};

use super::kafka::{copy_headers, OwnedRecord, Producer};
use crate::codec::{decode_event, DecodeLimits, Rejected};
use crate::encode::encode_alert;
use crate::metrics::Metrics;

/// Why something could not be sent at all (not a failed delivery, which is retried).
#[derive(Debug, thiserror::Error)]
#[error("cannot send to {topic}: {source}")]
pub struct SendError {
    pub topic: String,
    pub source: rdkafka::error::KafkaError,
}

/// Sends a record, waiting while the producer's queue is full.
pub fn send(producer: &Producer, record: &OwnedRecord) -> Result<DeliveryFuture, SendError> {
    loop {
        match producer.send_result(record.to_future_record()) {
            Ok(f) => return Ok(f),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => {
                producer.poll(Timeout::After(Duration::from_millis(5)));
            }
            Err((e, _)) => {
                return Err(SendError {
                    topic: record.topic.to_string(),
                    source: e,
                })
            }
        }
    }
}

/// A message on its way to the broker.
struct InFlight {
    future: DeliveryFuture,
    record: OwnedRecord,
    /// For latency metrics when it is an alert: when its triggering event was released, and the
    /// event's own bookkeeping.
    alert: Option<(Instant, EventMeta)>,
}

/// A snapshot on its way to the snapshot topic.
pub enum PendingSnapshot {
    /// Encoded; waits until everything sent before it is acknowledged.
    Waiting {
        bytes: Vec<u8>,
        position: i64,
        sent_before: u64,
    },
    /// Written; waits for its chunks' acknowledgements, then the offset is committed.
    /// A chunk's future is `None` once acknowledged.
    Writing {
        futures: Vec<Option<DeliveryFuture>>,
        records: Vec<OwnedRecord>,
        position: i64,
        size: usize,
    },
}

pub struct Partition {
    pub id: i32,
    pub engine: Engine,
    /// Next offset to process; `None` until the first message when starting from the reset policy.
    pub position: Option<i64>,
    in_flight: VecDeque<InFlight>,
    /// Records sent, and acknowledged in send order (a prefix), since assignment.
    sent: u64,
    acked: u64,
    pub snapshot: Option<PendingSnapshot>,
    pub events_since_snapshot: u64,
    pub last_snapshot_started: Instant,
    pub last_snapshot_acked: Option<Instant>,
    pub last_snapshot_bytes: usize,
    pub last_message: Instant,
    pub idle_advanced: bool,
    /// The live configuration generation the engine runs (see `super::reload`).
    pub generation: u64,
}

/// What processing needs besides the partition.
pub struct Ctx<'a> {
    pub producer: &'a Producer,
    pub metrics: &'a Metrics,
    pub limits: &'a DecodeLimits,
    pub alerts_topic: &'a std::sync::Arc<str>,
    pub shadow_topic: &'a std::sync::Arc<str>,
    pub dead_letter_topic: &'a std::sync::Arc<str>,
    pub log_limiter: &'a crate::telemetry::LogLimiter,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Partition {
    pub fn new(id: i32, engine: Engine, position: Option<i64>) -> Partition {
        let now = Instant::now();
        Partition {
            id,
            engine,
            position,
            in_flight: VecDeque::new(),
            sent: 0,
            acked: 0,
            snapshot: None,
            events_since_snapshot: 0,
            last_snapshot_started: now,
            last_snapshot_acked: None,
            last_snapshot_bytes: 0,
            last_message: now,
            // A restored buffer must be released by an idle advance too, if no message comes.
            idle_advanced: false,
            generation: 0,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    fn push(
        &mut self,
        ctx: &Ctx<'_>,
        record: OwnedRecord,
        alert: Option<(Instant, EventMeta)>,
    ) -> Result<(), SendError> {
        let future = send(ctx.producer, &record)?;
        self.in_flight.push_back(InFlight {
            future,
            record,
            alert,
        });
        self.sent += 1;
        Ok(())
    }

    /// Sends the alerts the engine produced.
    pub fn send_alerts(&mut self, ctx: &Ctx<'_>, alerts: &mut Vec<Alert>) -> Result<(), SendError> {
        let released = Instant::now();
        for alert in alerts.drain(..) {
            let mut payload = Vec::with_capacity(512);
            encode_alert(&alert, &mut payload);
            payload.pop();
            ctx.metrics
                .alerts
                .with_label_values(&[alert.detector.as_str(), alert.severity.as_str()])
                .inc();
            let shadow = (alert.detector.registration().shadow)(&self.engine.config().detectors);
            let record = OwnedRecord {
                topic: if shadow {
                    ctx.shadow_topic.clone()
                } else {
                    ctx.alerts_topic.clone()
                },
                partition: None,
                key: Some(alert.card_id.as_str().as_bytes().to_vec()),
                payload,
                headers: vec![
                    (
                        Cow::Borrowed("swipeguard.detector"),
                        alert.detector.as_str().as_bytes().to_vec(),
                    ),
                    (
                        Cow::Borrowed("swipeguard.alert_id"),
                        alert.alert_id.0.as_bytes().to_vec(),
                    ),
                ],
            };
            self.push(ctx, record, Some((released, alert.trigger_meta)))?;
        }
        Ok(())
    }

    /// Forwards a consumed message unchanged to the dead-letter topic, the reason in headers.
    fn dead_letter(
        &mut self,
        ctx: &Ctx<'_>,
        msg: &BorrowedMessage<'_>,
        rejected: &Rejected,
    ) -> Result<(), SendError> {
        let hasher = ctx.limits.hasher.as_deref();
        // With card hashing on, the producer's own headers are not forwarded: they could carry
        // raw card numbers too (crate::ingest states what a dead letter carries then).
        let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> = match hasher {
            Some(_) => Vec::new(),
            None => copy_headers(msg)
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), v))
                .collect(),
        };
        headers.push((
            Cow::Borrowed("swipeguard.reason"),
            rejected.reason.as_str().as_bytes().to_vec(),
        ));
        headers.push((
            Cow::Borrowed("swipeguard.detail"),
            rejected.detail.as_bytes().to_vec(),
        ));
        headers.push((
            Cow::Borrowed("swipeguard.source"),
            format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset()).into_bytes(),
        ));
        let record = OwnedRecord {
            topic: ctx.dead_letter_topic.clone(),
            partition: None,
            key: msg
                .key()
                .map(|k| hasher.map_or_else(|| k.to_vec(), |h| h.redact_key(k))),
            payload: msg
                .payload()
                .map(|p| hasher.map_or_else(|| p.to_vec(), |h| h.redact_payload(p)))
                .unwrap_or_default(),
            headers,
        };
        ctx.metrics
            .dead_letters
            .with_label_values(&[rejected.reason.as_str()])
            .inc();
        self.push(ctx, record, None)
    }

    /// Processes one consumed message: decode, admit, send alerts or dead-letter it.
    pub fn process(
        &mut self,
        ctx: &Ctx<'_>,
        msg: &BorrowedMessage<'_>,
        out: &mut Output,
    ) -> Result<(), SendError> {
        let offset = msg.offset();
        if self.position.is_some_and(|p| offset < p) {
            return Ok(()); // Seen already: a fetch restarted inside what was processed.
        }
        if let Some(p) = self.position.filter(|p| offset > *p) {
            // Compacted or transactional topics skip offsets; a plain swipes topic never should.
            if let Some(suppressed) = ctx.log_limiter.allow("offset gap") {
                tracing::warn!(
                    partition = self.id,
                    expected = p,
                    got = offset,
                    suppressed,
                    "offset gap in the swipes topic"
                );
            }
        }
        self.position = Some(offset + 1);
        self.events_since_snapshot += 1;
        self.last_message = Instant::now();
        self.idle_advanced = false;
        let decoded = match msg.payload() {
            None => Err(Rejected::new(
                RejectReason::MissingField,
                "message has no value",
            )),
            Some(bytes) => decode_event(bytes, ctx.limits),
        };
        match decoded {
            Err(rejected) => {
                ctx.metrics.events.with_label_values(&["invalid"]).inc();
                ctx.metrics
                    .invalid_events
                    .with_label_values(&[rejected.reason.as_str()])
                    .inc();
                self.dead_letter(ctx, msg, &rejected)?;
            }
            Ok(mut tx) => {
                tx.meta = EventMeta {
                    produced_at_ms: msg.timestamp().to_millis().unwrap_or(0),
                    arrived_at_ms: wall_ms(),
                };
                let admission = self.engine.admit(tx, out);
                // The refused event itself is not needed: the message's own bytes go out.
                out.refusals.clear();
                if let Some(reason) = admission.reject_reason() {
                    debug_assert_ne!(admission, Admission::Accepted);
                    self.dead_letter(ctx, msg, &Rejected::new(reason, "engine"))?;
                }
            }
        }
        self.send_alerts(ctx, &mut out.alerts)
    }

    /// Takes acknowledged records off the front; records whose delivery failed are sent again.
    pub fn poll_acks(&mut self, ctx: &Ctx<'_>) -> Result<(), SendError> {
        while let Some(front) = self.in_flight.front_mut() {
            let failure = match (&mut front.future).now_or_never() {
                None => break,
                Some(Ok(Ok(_))) => None,
                Some(Ok(Err((e, _)))) => Some(e.to_string()),
                Some(Err(_)) => Some("delivery report lost".to_string()),
            };
            if let Some(error) = failure {
                ctx.metrics
                    .delivery_failures
                    .with_label_values(&[&front.record.topic])
                    .inc();
                if let Some(suppressed) = ctx.log_limiter.allow("delivery failed") {
                    tracing::warn!(topic = %front.record.topic, partition = self.id, %error, suppressed, "delivery failed; sending again");
                }
                front.future = send(ctx.producer, &front.record)?;
                break;
            }
            if let Some((released, meta)) = front.alert {
                let now_ms = wall_ms();
                let h = &ctx.metrics.event_to_alert;
                h.with_label_values(&["release"])
                    .observe(released.elapsed().as_secs_f64());
                if meta.arrived_at_ms > 0 {
                    h.with_label_values(&["arrival"])
                        .observe((now_ms - meta.arrived_at_ms).max(0) as f64 / 1000.0);
                }
                if meta.produced_at_ms > 0 {
                    h.with_label_values(&["produce"])
                        .observe((now_ms - meta.produced_at_ms).max(0) as f64 / 1000.0);
                }
            }
            self.in_flight.pop_front();
            self.acked += 1;
        }
        Ok(())
    }

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
        let bytes = self.engine.snapshot(position as u64);
        tracing::debug!(
            partition = self.id,
            position,
            bytes = bytes.len(),
            took_ms = encoding.elapsed().as_millis() as u64,
            "snapshot encoded"
        );
        self.snapshot = Some(PendingSnapshot::Waiting {
            bytes,
            position,
            sent_before: self.sent,
        });
        self.events_since_snapshot = 0;
        self.last_snapshot_started = Instant::now();
        true
    }

    /// Applies the live configuration `live` if the engine runs an older generation: the
    /// engine is snapshotted at the current position (that snapshot replaces one still waiting
    /// to be written, and is the one written next) and becomes that snapshot restored under
    /// `live` — what `replay --reconfigure-at POSITION=FILE` does. While an earlier snapshot is
    /// being written it waits (a later tick applies it). A partition that has read nothing yet
    /// simply starts under `live`.
    pub fn apply(&mut self, live: &super::reload::Live, metrics: &crate::metrics::Metrics) {
        if self.generation == live.generation
            || matches!(self.snapshot, Some(PendingSnapshot::Writing { .. }))
        {
            return;
        }
        let Some(position) = self.position else {
            if let Ok(engine) = Engine::new(live.engine.clone()) {
                self.engine = engine;
                self.generation = live.generation;
            }
            return;
        };
        // Encoded now, so that it holds every event read so far: an older waiting snapshot
        // misses those read since, and restoring it would lose them.
        let bytes = self.engine.snapshot(position as u64);
        let restored = Engine::restore(live.engine.clone(), &bytes);
        self.snapshot = Some(PendingSnapshot::Waiting {
            bytes,
            position,
            sent_before: self.sent,
        });
        self.events_since_snapshot = 0;
        self.last_snapshot_started = Instant::now();
        match restored {
            Ok(r) => {
                metrics.record_discarded(&r.discarded);
                let discarded: Vec<&str> =
                    r.discarded.iter().map(|d| d.detector.as_str()).collect();
                self.engine = r.engine;
                self.generation = live.generation;
                tracing::info!(
                    partition = self.id,
                    position,
                    generation = live.generation,
                    started_empty = %discarded.join(","),
                    "configuration applied at this snapshot position (replay --reconfigure-at {position}=<file> reproduces it)"
                );
            }
            Err(e) => {
                tracing::error!(partition = self.id, position, error = %e, "cannot apply the new configuration; keeping the running one");
                self.generation = live.generation;
            }
        }
    }
}
