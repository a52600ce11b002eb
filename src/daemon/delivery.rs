//! What a partition has sent and the broker has not yet acknowledged (DESIGN §5).
//!
//! Records go to a [`Sink`]: the Kafka producer, or memory in tests. Every record is held, with
//! its bytes, until its delivery report arrives; a failed delivery is sent again. The
//! producer's reports arrive through librdkafka's delivery callback, which completes each
//! record's future. The pipeline takes the completed ones without blocking
//! ([`Outbox::take_acked`]) and, when it has to wait for one — back-pressure, revocation,
//! shutdown — awaits the oldest on the runtime's timer, up to a deadline
//! ([`Outbox::wait_oldest`]): it never sleeps to poll.
//!
//! Reports are taken in send order, so `acked` counts a prefix of what was sent: "everything
//! sent before X is acknowledged" is `acked() >= sent() at X`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::producer::DeliveryFuture;
use rdkafka::util::Timeout;
use swipeguard_detectors::EventMeta;

use super::kafka::{OwnedRecord, Producer};
use crate::metrics::Metrics;

/// Why something could not be sent at all (not a failed delivery, which is retried).
#[derive(Debug, thiserror::Error)]
#[error("cannot send to {topic}: {source}")]
pub struct SendError {
    pub topic: String,
    pub source: rdkafka::error::KafkaError,
}

/// Where a partition's records go: the Kafka producer, or memory in tests
/// ([`super::memory::MemorySink`]).
pub trait Sink {
    /// Hands `record` over; its delivery report comes through the returned [`Ack`].
    fn send(&self, record: &OwnedRecord) -> Result<Ack, SendError>;
}

/// A record's delivery report to come: `Ok` once the destination holds it, else why not.
pub enum Ack {
    Kafka(DeliveryFuture),
    /// Known at once (a sink in memory); taken by the first poll.
    Ready(Option<Result<(), String>>),
}

impl Future for Ack {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Ack::Kafka(future) => future.poll_unpin(cx).map(|report| match report {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("delivery report lost".to_string()),
            }),
            Ack::Ready(report) => Poll::Ready(
                report
                    .take()
                    .unwrap_or_else(|| Err("delivery report taken twice".to_string())),
            ),
        }
    }
}

impl Sink for Producer {
    /// Sends a record, waiting while the producer's queue is full.
    fn send(&self, record: &OwnedRecord) -> Result<Ack, SendError> {
        loop {
            match self.send_result(record.to_future_record()) {
                Ok(f) => return Ok(Ack::Kafka(f)),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    // Serves delivery callbacks until there is room (librdkafka's own wait).
                    self.poll(Timeout::After(Duration::from_millis(5)));
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
}

/// Waits for `future` until `deadline` on `runtime`'s timer; `None` if the deadline came first
/// (the future is left as it was, to be awaited again).
pub fn await_until<F: Future + Unpin>(
    runtime: &tokio::runtime::Handle,
    future: &mut F,
    deadline: Instant,
) -> Option<F::Output> {
    if let Some(out) = future.now_or_never() {
        return Some(out);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    runtime.block_on(tokio::time::timeout(left, future)).ok()
}

/// What delivery needs besides the outbox.
pub struct DeliveryCtx<'a> {
    pub sink: &'a dyn Sink,
    pub metrics: &'a Metrics,
    pub log_limiter: &'a crate::telemetry::LogLimiter,
    pub runtime: &'a tokio::runtime::Handle,
    /// The swipes partition the records belong to (for logs).
    pub partition: i32,
}

/// A message on its way to the broker.
struct InFlight {
    future: Ack,
    record: OwnedRecord,
    /// For latency metrics when it is an alert: when its triggering event was released, and the
    /// event's own bookkeeping.
    alert: Option<(Instant, EventMeta)>,
}

/// The records of one partition on their way, oldest first.
#[derive(Default)]
pub struct Outbox {
    in_flight: VecDeque<InFlight>,
    /// Records sent, and acknowledged in send order (a prefix), since assignment.
    sent: u64,
    acked: u64,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Outbox {
    /// Records sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Sends `record` and holds it until acknowledged.
    pub fn push(
        &mut self,
        sink: &dyn Sink,
        record: OwnedRecord,
        alert: Option<(Instant, EventMeta)>,
    ) -> Result<(), SendError> {
        let future = sink.send(&record)?;
        self.in_flight.push_back(InFlight {
            future,
            record,
            alert,
        });
        self.sent += 1;
        Ok(())
    }

    /// Takes the acknowledged records off the front, without waiting.
    pub fn take_acked(&mut self, ctx: &DeliveryCtx<'_>) -> Result<(), SendError> {
        while let Some(front) = self.in_flight.front_mut() {
            let Some(report) = (&mut front.future).now_or_never() else {
                break;
            };
            if !self.settle(ctx, report)? {
                break;
            }
        }
        Ok(())
    }

    /// Waits for the oldest record's report until `deadline`, then takes every acknowledged
    /// record; whether a report came in time (true when nothing is in flight).
    pub fn wait_oldest(
        &mut self,
        ctx: &DeliveryCtx<'_>,
        deadline: Instant,
    ) -> Result<bool, SendError> {
        let Some(front) = self.in_flight.front_mut() else {
            return Ok(true);
        };
        let Some(report) = await_until(ctx.runtime, &mut front.future, deadline) else {
            return Ok(false);
        };
        if self.settle(ctx, report)? {
            self.take_acked(ctx)?;
        }
        Ok(true)
    }

    /// Waits until everything sent is acknowledged, or `deadline`; whether it was.
    pub fn flush(&mut self, ctx: &DeliveryCtx<'_>, deadline: Instant) -> bool {
        while self.in_flight() > 0 {
            match self.wait_oldest(ctx, deadline) {
                Ok(true) => {}
                Ok(false) | Err(_) => return false,
            }
        }
        true
    }

    /// Applies the front record's report: acknowledged (taken off; true) or failed (sent
    /// again; false).
    fn settle(
        &mut self,
        ctx: &DeliveryCtx<'_>,
        report: Result<(), String>,
    ) -> Result<bool, SendError> {
        let Some(front) = self.in_flight.front_mut() else {
            return Ok(false);
        };
        if let Err(error) = report {
            ctx.metrics
                .delivery_failures
                .with_label_values(&[&front.record.topic])
                .inc();
            if let Some(suppressed) = ctx.log_limiter.allow("delivery failed") {
                tracing::warn!(topic = %front.record.topic, partition = ctx.partition, %error, suppressed, "delivery failed; sending again");
            }
            front.future = ctx.sink.send(&front.record)?;
            return Ok(false);
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
        Ok(true)
    }
}
