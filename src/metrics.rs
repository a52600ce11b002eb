//! The metric catalogue (DESIGN §6): every metric's name, help text and label set, declared
//! once, here, on an explicit registry. Nothing else in the code names a metric.
//!
//! Labels are bounded: detector, severity, reason, result, topic, partition, client, from — never
//! a card, merchant or event id. Counters end in `_total`; units are in the names.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use swipeguard_detectors::{Counts, DetectorName, DiscardReason, KeyKind, RejectReason, Severity};

/// Buckets for latencies from sub-millisecond to a minute (event→alert and per batch).
/// Microseconds to tens of milliseconds: work inside the daemon, no broker round trip.
const HANDOFF_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.05, 0.25, 1.0,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric swipeguard exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub events: IntCounterVec,
    pub consumed: IntCounter,
    pub invalid_events: IntCounterVec,
    pub late_after_idle: IntCounter,
    pub alerts: IntCounterVec,
    pub alerts_suppressed: IntCounterVec,
    pub alerts_withheld: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub event_time_lag: GaugeVec,
    pub batch_duration: Histogram,
    pub event_to_alert: HistogramVec,
    pub consumer_lag: IntGaugeVec,
    pub tracked_cards: IntGaugeVec,
    pub state_bytes: IntGaugeVec,
    pub buffered_events: IntGaugeVec,
    pub in_flight_records: IntGaugeVec,
    pub state_discarded: IntCounterVec,
    pub evictions: IntCounterVec,
    pub snapshot_age: GaugeVec,
    pub snapshot_bytes: IntGaugeVec,
    pub snapshots: IntCounterVec,
    pub restores: IntCounterVec,
    pub commits: IntCounterVec,
    pub delivery_failures: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub partitions_assigned: IntGauge,
    pub ready: IntGauge,
    pub kafka_brokers_up: IntGaugeVec,
    pub kafka_queue_messages: IntGaugeVec,
    pub kafka_rtt: GaugeVec,
    pub kafka_tx_errors: IntGaugeVec,
    pub kafka_rx_messages: IntGaugeVec,
    pub kafka_tx_messages: IntGaugeVec,
    pub forwarded: IntCounterVec,
    pub redelivered: IntCounterVec,
    pub stage_events: IntCounterVec,
    pub alert_handoff: Histogram,
}

/// Names of every metric, for the tests that check dashboards and rules against the catalogue.
pub const NAMES: &[&str] = &[
    "swipeguard_events_total",
    "swipeguard_invalid_events_total",
    "swipeguard_late_after_idle_total",
    "swipeguard_alerts_total",
    "swipeguard_alerts_suppressed_total",
    "swipeguard_event_time_lag_seconds",
    "swipeguard_batch_duration_seconds",
    "swipeguard_event_to_alert_seconds",
    "swipeguard_consumer_lag_messages",
    "swipeguard_tracked_cards",
    "swipeguard_state_bytes",
    "swipeguard_buffered_events",
    "swipeguard_evictions_total",
    "swipeguard_snapshot_age_seconds",
    "swipeguard_snapshot_bytes",
    "swipeguard_snapshots_total",
    "swipeguard_snapshot_restores_total",
    "swipeguard_commits_total",
    "swipeguard_producer_delivery_failures_total",
    "swipeguard_dead_letters_total",
    "swipeguard_partitions_assigned",
    "swipeguard_ready",
    "swipeguard_kafka_brokers_up",
    "swipeguard_kafka_queue_messages",
    "swipeguard_kafka_rtt_seconds",
    "swipeguard_kafka_tx_errors",
    "swipeguard_kafka_rx_messages",
    "swipeguard_kafka_tx_messages",
    "swipeguard_consumed_messages_total",
    "swipeguard_in_flight_records",
    "swipeguard_state_discarded_total",
    "swipeguard_alerts_withheld_total",
    "swipeguard_config_reloads_total",
    "swipeguard_forwarded_records_total",
    "swipeguard_redelivered_records_total",
    "swipeguard_stage_events_total",
    "swipeguard_alert_handoff_seconds",
];

/// Why a metric could not be registered (a programming error caught at start-up).
#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let m = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn fgauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, MetricsError> {
    let m = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let m = Metrics {
            events: counter_vec(
                &r,
                NAMES[0],
                "Events consumed, by result: processed, late, duplicate or invalid.",
                &["result"],
            )?,
            invalid_events: counter_vec(
                &r,
                NAMES[1],
                "Events refused before detection, by reason.",
                &["reason"],
            )?,
            late_after_idle: {
                let c = IntCounter::new(NAMES[2], "Late events that were late only because an idle partition's watermark was advanced by wall time.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            alerts: counter_vec(
                &r,
                NAMES[3],
                "Alerts emitted, by detector and severity.",
                &["detector", "severity"],
            )?,
            alerts_suppressed: counter_vec(
                &r,
                NAMES[4],
                "Alerts withheld by a detector's cool-down, by detector.",
                &["detector"],
            )?,
            event_time_lag: fgauge_vec(
                &r,
                NAMES[5],
                "Wall clock minus the partition's watermark, seconds.",
                &["partition"],
            )?,
            batch_duration: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        NAMES[6],
                        "Time to process one batch of consumed events, seconds.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            event_to_alert: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        NAMES[7],
                        "From the triggering event (its release by the watermark, its arrival, or its produce time) to the alert's broker acknowledgement, seconds.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["from"],
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            consumer_lag: gauge_vec(
                &r,
                NAMES[8],
                "Messages between the partition's high watermark and the next offset to process.",
                &["topic", "partition"],
            )?,
            tracked_cards: gauge_vec(
                &r,
                NAMES[9],
                "Cards with detector state, per partition.",
                &["partition"],
            )?,
            state_bytes: gauge_vec(
                &r,
                NAMES[10],
                "Estimated bytes of detector state and buffered events, per partition.",
                &["partition"],
            )?,
            buffered_events: gauge_vec(
                &r,
                NAMES[11],
                "Events waiting in the reorder buffer for the watermark, per partition.",
                &["partition"],
            )?,
            evictions: counter_vec(
                &r,
                NAMES[12],
                "Cards forgotten, by reason: idle past the horizon, or pushed out at the ceiling.",
                &["reason"],
            )?,
            snapshot_age: fgauge_vec(
                &r,
                NAMES[13],
                "Seconds since the partition's last acknowledged snapshot.",
                &["partition"],
            )?,
            snapshot_bytes: gauge_vec(
                &r,
                NAMES[14],
                "Size of the partition's last snapshot, bytes.",
                &["partition"],
            )?,
            snapshots: counter_vec(&r, NAMES[15], "Snapshots written, by result.", &["result"])?,
            restores: counter_vec(
                &r,
                NAMES[16],
                "Partition assignments, by how their state was obtained: restored, fresh (no snapshot); failed counts each failed attempt at reading the snapshot topic and each unusable snapshot.",
                &["result"],
            )?,
            commits: counter_vec(&r, NAMES[17], "Offset commits, by result.", &["result"])?,
            delivery_failures: counter_vec(
                &r,
                NAMES[18],
                "Messages the producer failed to deliver (they are sent again), by topic.",
                &["topic"],
            )?,
            dead_letters: counter_vec(
                &r,
                NAMES[19],
                "Events forwarded to the dead-letter topic, by reason.",
                &["reason"],
            )?,
            partitions_assigned: {
                let g = IntGauge::new(
                    NAMES[20],
                    "Partitions of the swipes topic assigned to this daemon.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            ready: {
                let g = IntGauge::new(NAMES[21], "1 when every assigned partition is restored, the broker is reachable and lag is under the threshold.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            kafka_brokers_up: gauge_vec(
                &r,
                NAMES[22],
                "Brokers the Kafka client sees in state UP (librdkafka statistics).",
                &["client"],
            )?,
            kafka_queue_messages: gauge_vec(
                &r,
                NAMES[23],
                "Messages waiting in the Kafka client's queues (librdkafka msg_cnt).",
                &["client"],
            )?,
            kafka_rtt: fgauge_vec(
                &r,
                NAMES[24],
                "Average broker round-trip time seen by the Kafka client over its last statistics window with requests, seconds.",
                &["client"],
            )?,
            kafka_tx_errors: gauge_vec(
                &r,
                NAMES[25],
                "Transmission errors since the Kafka client started (librdkafka txerrs).",
                &["client"],
            )?,
            kafka_rx_messages: gauge_vec(
                &r,
                NAMES[26],
                "Messages received since the Kafka client started (librdkafka rxmsgs).",
                &["client"],
            )?,
            kafka_tx_messages: gauge_vec(
                &r,
                NAMES[27],
                "Messages sent since the Kafka client started (librdkafka txmsgs).",
                &["client"],
            )?,
            consumed: {
                let c = IntCounter::new(
                    NAMES[28],
                    "Messages consumed from the swipes topic (before detection; events may wait in the reorder buffer).",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            in_flight_records: gauge_vec(
                &r,
                NAMES[29],
                "Alerts and dead letters sent but not yet acknowledged by the broker, per partition.",
                &["partition"],
            )?,
            state_discarded: counter_vec(
                &r,
                NAMES[30],
                "Detector state sections of a restored snapshot that were not loaded (their detector started empty), by detector and reason: version, config, not_running, corrupt.",
                &["detector", "reason"],
            )?,
            alerts_withheld: counter_vec(
                &r,
                NAMES[31],
                "Alerts withheld because their detector went over its max_alerts_per_hour budget, by detector.",
                &["detector"],
            )?,
            config_reloads: counter_vec(
                &r,
                NAMES[32],
                "Configuration reloads on SIGHUP, by result: accepted (applied at each partition's next snapshot), unchanged, refused (the running configuration kept).",
                &["result"],
            )?,
            forwarded: counter_vec(
                &r,
                NAMES[33],
                "Admitted events the card stage forwarded to another live stage's internal topic (one per owning partition), by stage.",
                &["stage"],
            )?,
            redelivered: counter_vec(
                &r,
                NAMES[34],
                "Forwarded events a stage partition had taken already (an upstream partition restarted and forwarded them again); dropped, by stage.",
                &["stage"],
            )?,
            stage_events: counter_vec(
                &r,
                NAMES[35],
                "Events each stage released to its detectors (processed), refused as late, or refused as duplicates, by stage (card, terminal, account, trace_code).",
                &["stage", "result"],
            )?,
            alert_handoff: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        NAMES[36],
                        "From the arrival of the message whose processing raised an alert (the triggering event itself at allowed lateness 0; else the message whose watermark released it) to the alert handed to the producer, seconds: the daemon's own share of the latency, without the broker's.",
                    )
                    .buckets(HANDOFF_BUCKETS.to_vec()),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            registry: r,
        };
        m.touch_label_sets();
        Ok(m)
    }

    /// Creates every bounded label combination up front, so each series exists (at 0) from start.
    fn touch_label_sets(&self) {
        for r in ["accepted", "unchanged", "refused"] {
            self.config_reloads.with_label_values(&[r]);
        }
        for r in ["processed", "late", "duplicate", "invalid"] {
            self.events.with_label_values(&[r]);
        }
        for reason in RejectReason::ALL {
            self.invalid_events.with_label_values(&[reason.as_str()]);
            self.dead_letters.with_label_values(&[reason.as_str()]);
        }
        for d in DetectorName::all() {
            self.alerts_suppressed.with_label_values(&[d.as_str()]);
            self.alerts_withheld.with_label_values(&[d.as_str()]);
            for reason in DiscardReason::ALL {
                self.state_discarded
                    .with_label_values(&[d.as_str(), reason.as_str()]);
            }
            for s in Severity::ALL {
                self.alerts.with_label_values(&[d.as_str(), s.as_str()]);
            }
        }
        for kind in KeyKind::ALL.iter().filter(|k| **k != KeyKind::Card) {
            self.forwarded.with_label_values(&[kind.as_str()]);
            self.redelivered.with_label_values(&[kind.as_str()]);
        }
        for kind in KeyKind::ALL.iter().copied() {
            for result in ["processed", "late", "duplicate"] {
                self.stage_events
                    .with_label_values(&[kind.as_str(), result]);
            }
        }
        for from in ["release", "arrival", "produce"] {
            self.event_to_alert.with_label_values(&[from]);
        }
        for reason in ["idle", "capacity"] {
            self.evictions.with_label_values(&[reason]);
        }
        for result in ["ok", "failed"] {
            self.snapshots.with_label_values(&[result]);
            self.commits.with_label_values(&[result]);
        }
        for result in ["restored", "fresh", "failed"] {
            self.restores.with_label_values(&[result]);
        }
        for client in ["consumer", "producer"] {
            self.kafka_brokers_up.with_label_values(&[client]);
            self.kafka_queue_messages.with_label_values(&[client]);
            self.kafka_rtt.with_label_values(&[client]);
            self.kafka_tx_errors.with_label_values(&[client]);
            self.kafka_rx_messages.with_label_values(&[client]);
            self.kafka_tx_messages.with_label_values(&[client]);
        }
    }

    /// Creates the per-topic series of the topics the daemon produces to.
    pub fn touch_topics(&self, topics: &[&str]) {
        for t in topics {
            self.delivery_failures.with_label_values(&[t]);
        }
    }

    /// Adds one batch's engine counts. Event results are the card stage's (the stage that reads
    /// the swipes topic); evictions are every stage's.
    pub fn record_counts(&self, c: &Counts) {
        let card = c.stage(KeyKind::Card);
        self.events
            .with_label_values(&["processed"])
            .inc_by(card.released);
        self.events.with_label_values(&["late"]).inc_by(card.late);
        self.events
            .with_label_values(&["duplicate"])
            .inc_by(card.duplicates);
        self.late_after_idle.inc_by(card.late_after_idle);
        for d in DetectorName::all() {
            self.alerts_suppressed
                .with_label_values(&[d.as_str()])
                .inc_by(c.suppressed[d.index()]);
            self.alerts_withheld
                .with_label_values(&[d.as_str()])
                .inc_by(c.withheld[d.index()]);
        }
        for kind in KeyKind::ALL.iter().copied() {
            let s = c.stage(kind);
            for (result, n) in [
                ("processed", s.released),
                ("late", s.late),
                ("duplicate", s.duplicates),
            ] {
                if n > 0 {
                    self.stage_events
                        .with_label_values(&[kind.as_str(), result])
                        .inc_by(n);
                }
            }
        }
        let (idle, capacity) = c.stages.iter().fold((0, 0), |(i, k), s| {
            (i + s.evicted_idle, k + s.evicted_capacity)
        });
        self.evictions.with_label_values(&["idle"]).inc_by(idle);
        self.evictions
            .with_label_values(&["capacity"])
            .inc_by(capacity);
    }

    /// Counts the snapshot sections a restore did not load.
    pub fn record_discarded(&self, discarded: &[swipeguard_detectors::Discarded]) {
        for d in discarded {
            self.state_discarded
                .with_label_values(&[&d.detector, d.reason.as_str()])
                .inc();
        }
    }

    /// Drops the per-partition series of a partition this daemon no longer owns.
    pub fn forget_partition(&self, topic: &str, label: &str) {
        let p = label.to_string();
        let _ = self.consumer_lag.remove_label_values(&[topic, &p]);
        for g in [
            &self.tracked_cards,
            &self.state_bytes,
            &self.buffered_events,
            &self.in_flight_records,
            &self.snapshot_bytes,
        ] {
            let _ = g.remove_label_values(&[&p]);
        }
        for g in [&self.event_time_lag, &self.snapshot_age] {
            let _ = g.remove_label_values(&[&p]);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_name_is_registered_and_exposed() {
        let m = Metrics::new().unwrap();
        m.tracked_cards.with_label_values(&["0"]).set(1);
        m.state_bytes.with_label_values(&["0"]).set(1);
        m.buffered_events.with_label_values(&["0"]).set(1);
        m.in_flight_records.with_label_values(&["0"]).set(1);
        m.snapshot_bytes.with_label_values(&["0"]).set(1);
        m.snapshot_age.with_label_values(&["0"]).set(1.0);
        m.event_time_lag.with_label_values(&["0"]).set(1.0);
        m.consumer_lag.with_label_values(&["swipes", "0"]).set(1);
        m.batch_duration.observe(0.001);
        m.touch_topics(&["alerts"]);
        let text = m.render();
        for name in NAMES {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} is not exposed"
            );
        }
        let registered: Vec<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(registered.len(), NAMES.len(), "{registered:?}");
    }
}
