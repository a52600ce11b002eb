//! One assigned partition of the swipes topic: its engine, its position, and what it has sent
//! that the broker has not yet acknowledged.
//!
//! Delivery promise: every alert and dead letter is held (with its bytes) until the broker
//! acknowledges it, and sent again if delivery fails. A snapshot is encoded at a position, but
//! written to the snapshot topic only once everything sent before it is acknowledged, and the
//! offset is committed only once the snapshot is acknowledged. So the newest snapshot on the
//! topic never has an unacknowledged alert behind it: restoring it and reprocessing from its
//! position loses nothing and re-sends the same alert ids.

mod forwarding;
mod snapshotting;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use std::sync::Arc;

use swipeguard_detectors::{
    Admission, Alert, Engine, EventMeta, EventTime, KeyKind, Output, RejectReason,
};

pub use super::delivery::SendError;
use super::delivery::{DeliveryCtx, Outbox, Sink};
use super::kafka::OwnedRecord;
use super::source::SourceRecord;
use super::stages::{self, Downstream, Inbound, PartitionId, Upstreams};
use crate::codec::{decode_event, DecodeLimits, Rejected};
use crate::encode::encode_alert;
use crate::metrics::Metrics;
use snapshotting::PendingSnapshot;
pub use snapshotting::{Finalized, SnapshotCtx};

pub struct Partition {
    pub id: i32,
    /// The stage it belongs to (the card stage's partitions are the swipes topic's).
    pub stage: KeyKind,
    /// The topic it reads.
    pub topic: Arc<str>,
    /// A downstream stage partition's view of its upstream partitions.
    upstreams: Option<Upstreams>,
    /// A card partition feeding live stages: the last watermark it published, and when.
    published: Option<(EventTime, bool, Instant)>,
    pub engine: Engine,
    /// Next offset to process; `None` until the first message when starting from the reset policy.
    position: Option<i64>,
    outbox: Outbox,
    snapshot: Option<PendingSnapshot>,
    events_since_snapshot: u64,
    last_snapshot_started: Instant,
    last_snapshot_acked: Option<Instant>,
    last_snapshot_bytes: usize,
    last_message: Instant,
    idle_advanced: bool,
    /// The live configuration generation the engine runs (see `super::reload`).
    pub generation: u64,
}

/// What processing needs besides the partition.
pub struct Ctx<'a> {
    /// Where alerts, dead letters, forwarded records and markers go.
    pub sink: &'a dyn Sink,
    pub metrics: &'a Metrics,
    pub limits: &'a DecodeLimits,
    pub alerts_topic: &'a std::sync::Arc<str>,
    pub shadow_topic: &'a std::sync::Arc<str>,
    pub dead_letter_topic: &'a std::sync::Arc<str>,
    pub log_limiter: &'a crate::telemetry::LogLimiter,
    /// The runtime whose timer bounds waits for delivery reports.
    pub runtime: &'a tokio::runtime::Handle,
    /// The live stages a card partition forwards to (empty: none).
    pub downstreams: &'a [Downstream],
    /// Partitions of the swipes topic, and so of every internal topic.
    pub partitions: u32,
    /// Decoding of forwarded events: their ids are hashed already.
    pub internal_limits: &'a DecodeLimits,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Partition {
    /// A partition of `stage` (of `partitions`) reading `topic`, with a new or restored engine.
    pub fn new(
        pid: PartitionId,
        topic: Arc<str>,
        partitions: u32,
        mut engine: Engine,
        position: Option<i64>,
    ) -> Partition {
        let now = Instant::now();
        let upstreams = (pid.stage != KeyKind::Card).then(|| {
            engine.run_downstream(pid.id as u32, partitions);
            Upstreams::new(partitions)
        });
        Partition {
            id: pid.id,
            stage: pid.stage,
            topic,
            upstreams,
            published: None,
            engine,
            position,
            outbox: Outbox::default(),
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

    /// A partition restored from a snapshot of `bytes` bytes at `position` (it counts as the
    /// newest acknowledged snapshot).
    pub fn restored(
        pid: PartitionId,
        topic: Arc<str>,
        partitions: u32,
        engine: Engine,
        upstreams: Option<Upstreams>,
        position: i64,
        bytes: usize,
    ) -> Partition {
        let mut p = Partition::new(pid, topic, partitions, engine, Some(position));
        if let (Some(mine), Some(restored)) = (p.upstreams.as_mut(), upstreams) {
            *mine = restored;
        }
        p.last_snapshot_acked = Some(Instant::now());
        p.last_snapshot_bytes = bytes;
        p
    }

    /// Replaces the engine (a reload), running it as this partition's stage.
    fn set_engine(&mut self, mut engine: Engine) {
        if let Some(u) = &self.upstreams {
            engine.run_downstream(self.id as u32, u.partitions);
        }
        self.engine = engine;
    }

    pub fn pid(&self) -> PartitionId {
        PartitionId {
            stage: self.stage,
            id: self.id,
        }
    }

    /// Its `partition` label (see [`PartitionId::label`]).
    pub fn label(&self) -> String {
        self.pid().label()
    }

    /// The engine's snapshot at `position`, with the upstream view of a downstream partition.
    fn encode_snapshot(&self, position: i64) -> Vec<u8> {
        let engine = self.engine.snapshot(position as u64);
        match &self.upstreams {
            Some(u) => stages::frame(u, engine),
            None => engine,
        }
    }

    /// Next offset to process (`None` before the first message when starting from the reset
    /// policy).
    pub fn position(&self) -> Option<i64> {
        self.position
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Records sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.outbox.in_flight()
    }

    /// Bytes of the last snapshot acknowledged.
    pub fn last_snapshot_bytes(&self) -> usize {
        self.last_snapshot_bytes
    }

    /// Since when the newest snapshot has been acknowledged (or started, if none was).
    pub fn snapshot_age(&self) -> Duration {
        self.last_snapshot_acked
            .unwrap_or(self.last_snapshot_started)
            .elapsed()
    }

    fn delivery<'a>(&self, ctx: &Ctx<'a>) -> DeliveryCtx<'a> {
        DeliveryCtx {
            sink: ctx.sink,
            metrics: ctx.metrics,
            log_limiter: ctx.log_limiter,
            runtime: ctx.runtime,
            partition: self.id,
        }
    }

    fn push(
        &mut self,
        ctx: &Ctx<'_>,
        record: OwnedRecord,
        alert: Option<(Instant, EventMeta)>,
    ) -> Result<(), SendError> {
        self.outbox.push(ctx.sink, record, alert)
    }

    /// Takes acknowledged deliveries, without waiting.
    pub fn poll_acks(&mut self, ctx: &Ctx<'_>) -> Result<(), SendError> {
        let delivery = self.delivery(ctx);
        self.outbox.take_acked(&delivery)
    }

    /// Waits up to `deadline` for the oldest delivery report; whether one came.
    pub fn wait_ack(&mut self, ctx: &Ctx<'_>, deadline: Instant) -> Result<bool, SendError> {
        let delivery = self.delivery(ctx);
        self.outbox.wait_oldest(&delivery, deadline)
    }

    /// Live mode's idle advance (DESIGN §3), once per quiet spell of `after`: the watermark
    /// moves to the newest event time seen and what it releases is sent. Only a partition read
    /// to its end (`at_end`: the broker last reported nothing beyond what was taken) is idle;
    /// one whose records the broker holds back is stalled, and advancing it would make those
    /// records late in every downstream stage.
    pub fn advance_idle(
        &mut self,
        ctx: &Ctx<'_>,
        after: Duration,
        at_end: bool,
        out: &mut Output,
    ) -> Result<(), SendError> {
        if self.idle_advanced || !at_end || self.last_message.elapsed() < after {
            return Ok(());
        }
        let released = total_released(out);
        self.engine.advance_idle(out);
        self.idle_advanced = true;
        if total_released(out) > released {
            // The state moved without a message: make the time cadence snapshot it.
            self.events_since_snapshot = self.events_since_snapshot.max(1);
        }
        self.send_alerts(ctx, &mut out.alerts, None)
    }

    /// Sends the alerts the engine produced; `arrived`: when the message that raised them
    /// arrived (observed as the hand-off latency).
    pub fn send_alerts(
        &mut self,
        ctx: &Ctx<'_>,
        alerts: &mut Vec<Alert>,
        arrived: Option<Instant>,
    ) -> Result<(), SendError> {
        if alerts.is_empty() {
            return Ok(()); // The common case: no clock read per message.
        }
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
            if let Some(arrived) = arrived {
                ctx.metrics
                    .alert_handoff
                    .observe(arrived.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// Forwards a consumed message unchanged to the dead-letter topic, the reason in headers.
    fn dead_letter(
        &mut self,
        ctx: &Ctx<'_>,
        msg: &impl SourceRecord,
        rejected: &Rejected,
    ) -> Result<(), SendError> {
        let hasher = ctx.limits.hasher.as_deref();
        // With card hashing on, the producer's own headers are not forwarded: they could carry
        // raw card numbers too (crate::ingest states what a dead letter carries then).
        let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> = match hasher {
            Some(_) => Vec::new(),
            None => msg
                .headers()
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
        msg: &impl SourceRecord,
        out: &mut Output,
    ) -> Result<(), SendError> {
        let arrived = Instant::now();
        let offset = msg.offset();
        if self.position.is_some_and(|p| offset < p) {
            return Ok(()); // Seen already: a fetch restarted inside what was processed.
        }
        if let Some(p) = self.position.filter(|p| offset > *p) {
            // Compacted or transactional topics skip offsets; a plain swipes topic never should.
            if let Some(suppressed) = ctx.log_limiter.allow("offset gap") {
                tracing::warn!(
                    partition = %self.label(),
                    expected = p,
                    got = offset,
                    suppressed,
                    "offset gap in the swipes topic"
                );
            }
        }
        self.position = Some(offset + 1);
        self.events_since_snapshot += 1;
        self.last_message = arrived;
        self.idle_advanced = false;
        let mut limits = ctx.limits;
        if let Some(upstreams) = self.upstreams.as_mut() {
            limits = ctx.internal_limits;
            match stages::classify(msg) {
                Inbound::Marker {
                    upstream,
                    watermark,
                    idle,
                } => {
                    if let Some(w) = upstreams.mark(upstream, watermark, idle) {
                        self.engine.advance_watermark(w, out);
                    }
                    return self.send_alerts(ctx, &mut out.alerts, Some(arrived));
                }
                Inbound::Event { upstream, offset } if !upstreams.take(upstream, offset) => {
                    ctx.metrics
                        .redelivered
                        .with_label_values(&[self.stage.as_str()])
                        .inc();
                    return Ok(());
                }
                Inbound::Event { .. } | Inbound::Foreign => {}
            }
        }
        let decoded = match msg.payload() {
            None => Err(Rejected::new(
                RejectReason::MissingField,
                "message has no value",
            )),
            Some(bytes) => decode_event(bytes, limits),
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
                    produced_at_ms: msg.timestamp_ms().unwrap_or(0),
                    arrived_at_ms: wall_ms(),
                };
                let forwards = self.forwards(ctx, &tx, offset, msg.payload());
                let admission = self.engine.admit(tx, out);
                // The refused event itself is not needed: the message's own bytes go out.
                out.refusals.clear();
                if let Some(reason) = admission.reject_reason() {
                    debug_assert_ne!(admission, Admission::Accepted);
                    self.dead_letter(ctx, msg, &Rejected::new(reason, "engine"))?;
                } else {
                    for (kind, record) in forwards {
                        ctx.metrics
                            .forwarded
                            .with_label_values(&[kind.as_str()])
                            .inc();
                        self.push(ctx, record, None)?;
                    }
                }
            }
        }
        self.send_alerts(ctx, &mut out.alerts, Some(arrived))
    }
}

#[cfg(test)]
mod tests;

fn total_released(out: &Output) -> u64 {
    out.counts.stages.iter().map(|s| s.released).sum()
}
