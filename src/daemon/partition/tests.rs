//! Partitions on the in-memory source and sink, no broker: every stage live over the internal
//! topics equals one engine over the whole input (what `replay` runs), whatever the
//! interleaving of the partitions; restarting every partition from its latest snapshot
//! (a crash) changes no alert; failed deliveries are sent again; invalid events become dead
//! letters. The end-to-end tests (`tests/kafka_stages.rs`) prove the same over a real broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use swipeguard_detectors::{Engine, KeyKind, Output};

use super::{Ctx, Partition};
use crate::codec::{decode_event, DecodeLimits};
use crate::config::{stage_engine_config, Config};
use crate::daemon::memory::{read_back, MemorySink};
use crate::daemon::source::{MemRecord, SourceRecord};
use crate::daemon::stages::{internal_topic, unframe, Downstream, PartitionId};
use crate::encode::encode_alert;
use crate::metrics::Metrics;
use crate::telemetry::LogLimiter;

const SWIPES: &str = "swipes";
const ALERTS: &str = "alerts";
const DEAD_LETTERS: &str = "dead-letters";
/// Partitions of the swipes topic and of every internal topic.
const N: u32 = 2;

/// What a partition needs around it.
struct Bed {
    config: Config,
    sink: MemorySink,
    metrics: Metrics,
    limits: DecodeLimits,
    internal: DecodeLimits,
    alerts: Arc<str>,
    shadow: Arc<str>,
    dead_letters: Arc<str>,
    limiter: LogLimiter,
    runtime: tokio::runtime::Runtime,
    downstreams: Vec<Downstream>,
}

impl Bed {
    fn new() -> Bed {
        let config = Config::parse("[daemon]\nlive_stages = true\n", "test", Vec::new()).unwrap();
        let downstreams = config
            .live_kinds()
            .into_iter()
            .filter(|k| *k != KeyKind::Card)
            .map(|kind| Downstream {
                kind,
                topic: internal_topic("swipeguard", kind).into(),
            })
            .collect();
        Bed {
            limits: config.decode_limits(),
            internal: config.decode_limits(),
            config,
            sink: MemorySink::default(),
            metrics: Metrics::new().unwrap(),
            alerts: ALERTS.into(),
            shadow: "alerts.shadow".into(),
            dead_letters: DEAD_LETTERS.into(),
            limiter: LogLimiter::new(Duration::from_secs(10)),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            downstreams,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            sink: &self.sink,
            metrics: &self.metrics,
            limits: &self.limits,
            alerts_topic: &self.alerts,
            shadow_topic: &self.shadow,
            dead_letter_topic: &self.dead_letters,
            log_limiter: &self.limiter,
            runtime: self.runtime.handle(),
            downstreams: &self.downstreams,
            partitions: N,
            internal_limits: &self.internal,
        }
    }

    fn topic_of(&self, stage: KeyKind) -> Arc<str> {
        match stage {
            KeyKind::Card => SWIPES.into(),
            kind => internal_topic("swipeguard", kind).into(),
        }
    }

    fn stage_config(&self, stage: KeyKind) -> swipeguard_detectors::EngineConfig {
        stage_engine_config(&self.config.engine_config(), stage)
    }

    /// Every stage partition, fresh.
    fn partitions(&self) -> BTreeMap<PartitionId, Partition> {
        let mut kinds = vec![KeyKind::Card];
        kinds.extend(self.downstreams.iter().map(|d| d.kind));
        let mut parts = BTreeMap::new();
        for stage in kinds {
            for id in 0..N as i32 {
                let pid = PartitionId { stage, id };
                let engine = Engine::new(self.stage_config(stage)).unwrap();
                parts.insert(
                    pid,
                    Partition::new(pid, self.topic_of(stage), N, engine, None),
                );
            }
        }
        parts
    }

    /// A partition restored from `bytes`, as the daemon restores one on assignment.
    fn restored(&self, pid: PartitionId, bytes: &[u8]) -> Partition {
        let (upstreams, engine) = unframe(bytes);
        let r = Engine::restore(self.stage_config(pid.stage), engine).unwrap();
        let position = r.position as i64;
        Partition::restored(
            pid,
            self.topic_of(pid.stage),
            N,
            r.engine,
            upstreams,
            position,
            bytes.len(),
        )
    }
}

/// Every topic partition's records, as a broker holds them, and the alerts by id.
#[derive(Default)]
struct Bus {
    logs: HashMap<(String, i32), Vec<MemRecord>>,
    alerts: BTreeMap<String, String>,
    dead_letters: Vec<MemRecord>,
}

impl Bus {
    /// Moves what the sink took into the topics; an alert sent twice must be the same alert.
    fn collect(&mut self, sink: &MemorySink) {
        for (record, offset) in sink.take() {
            let read = read_back(&record, offset);
            match &*record.topic {
                ALERTS => {
                    let body = String::from_utf8(record.payload).unwrap();
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let id = v["alert_id"].as_str().unwrap().to_string();
                    if let Some(before) = self.alerts.insert(id, body.clone()) {
                        assert_eq!(before, body, "one alert id, two bodies");
                    }
                }
                DEAD_LETTERS => self.dead_letters.push(read),
                topic => self
                    .logs
                    .entry((topic.to_string(), read.partition))
                    .or_default()
                    .push(read),
            }
        }
    }
}

/// A small deterministic generator for schedules.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

fn simulated(cards: u64, days: u32, seed: u64) -> Vec<String> {
    let opts = crate::simulate::SimOptions {
        cards,
        days,
        seed,
        fraud_share: 0.1,
        ..Default::default()
    };
    let mut out = Vec::new();
    crate::simulate::simulate(&opts, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// What `replay` raises: one engine with every stage over the whole input, drained at the end.
fn one_engine(bed: &Bed, lines: &[String]) -> BTreeMap<String, String> {
    let mut engine = Engine::new(bed.config.engine_config()).unwrap();
    let mut out = Output::default();
    for line in lines {
        if let Ok(tx) = decode_event(line.as_bytes(), &bed.limits) {
            engine.admit(tx, &mut out);
        }
    }
    engine.drain(&mut out);
    out.alerts
        .iter()
        .map(|a| {
            let mut body = Vec::new();
            encode_alert(a, &mut body);
            body.pop();
            (a.alert_id.0.to_string(), String::from_utf8(body).unwrap())
        })
        .collect()
}

/// The swipes topic: each line in the partition of its card.
fn swipes(lines: &[String]) -> Bus {
    let mut bus = Bus::default();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let card = v["card_id"].as_str().unwrap_or_default();
        let p = swipeguard_detectors::stage::partition_of(card, N) as i32;
        let log = bus.logs.entry((SWIPES.to_string(), p)).or_default();
        log.push(MemRecord {
            topic: SWIPES.into(),
            partition: p,
            offset: log.len() as i64,
            payload: Some(line.clone().into_bytes()),
            ..MemRecord::default()
        });
    }
    bus
}

/// Runs every stage partition over `lines`, picking which partition reads next (and how
/// many records) from `seed`; with `crash_every`, every partition snapshots now and then and,
/// every so many steps, all of them restart from their latest snapshots, dropping what they
/// held. Returns the distinct alerts by id and the events dropped as redelivered, having
/// checked that no stage other than the card's counted an event late or duplicate.
fn live(bed: &Bed, lines: &[String], seed: u64, crash_every: Option<usize>) -> (Bus, u64) {
    let ctx = bed.ctx();
    let mut bus = swipes(lines);
    let mut parts = bed.partitions();
    let mut snapshots: BTreeMap<PartitionId, Vec<u8>> = BTreeMap::new();
    let mut schedule = Schedule(seed | 1);
    let mut out = Output::default();
    let pids: Vec<PartitionId> = parts.keys().copied().collect();
    let next_offset = |p: &Partition| p.position().unwrap_or(0) as usize;
    let mut step = 0usize;
    let mut idle = false;
    loop {
        step += 1;
        let pid = pids[schedule.next(pids.len())];
        let part = parts.get_mut(&pid).unwrap();
        let topic = part.topic.to_string();
        let log = bus
            .logs
            .get(&(topic, pid.id))
            .map_or(&[][..], Vec::as_slice);
        for _ in 0..=schedule.next(8) {
            let Some(record) = log.get(next_offset(part)) else {
                break;
            };
            part.process(&ctx, record, &mut out).unwrap();
            out.alerts.clear();
            if pid.stage == KeyKind::Card && schedule.next(4) == 0 {
                part.publish_markers(&ctx).unwrap();
            }
        }
        // The idle time passes now and then, whether or not the broker has delivered all it
        // holds (a stalled broker): only a partition read to its end may fall idle.
        if pid.stage == KeyKind::Card && schedule.next(8) == 0 {
            let at_end = next_offset(part) >= log.len();
            part.advance_idle(&ctx, Duration::ZERO, at_end, &mut out)
                .unwrap();
            part.publish_markers(&ctx).unwrap();
            out.alerts.clear();
        }
        if crash_every.is_some() && schedule.next(16) == 0 {
            if let Some(position) = part.position() {
                snapshots.insert(pid, part.encode_snapshot(position));
            }
        }
        bus.collect(&bed.sink);
        if crash_every.is_some_and(|every| step % every == 0) {
            for (pid, part) in parts.iter_mut() {
                *part = match snapshots.get(pid) {
                    Some(bytes) => bed.restored(*pid, bytes),
                    None => bed.partitions().remove(pid).unwrap(),
                };
            }
            idle = false;
        }
        let left = |parts: &BTreeMap<PartitionId, Partition>, bus: &Bus| {
            parts.iter().any(|(pid, p)| {
                let log = bus.logs.get(&(p.topic.to_string(), pid.id));
                log.is_some_and(|l| l.len() > next_offset(p))
            })
        };
        if !left(&parts, &bus) {
            if idle {
                break;
            }
            // The swipes are all read: the card partitions fall idle and say so.
            for (_, part) in parts.iter_mut().filter(|(p, _)| p.stage == KeyKind::Card) {
                part.advance_idle(&ctx, Duration::ZERO, true, &mut out)
                    .unwrap();
                part.publish_markers(&ctx).unwrap();
            }
            out.alerts.clear();
            bus.collect(&bed.sink);
            idle = true;
        }
    }
    for kind in bed.downstreams.iter().map(|d| d.kind) {
        let counts = out.counts.stage(kind);
        assert!(counts.released > 0, "{kind:?} released nothing");
        assert_eq!(
            (counts.late, counts.duplicates),
            (0, 0),
            "{kind:?}: late, duplicates"
        );
    }
    let redelivered = KeyKind::ALL
        .iter()
        .map(|k| {
            bed.metrics
                .redelivered
                .with_label_values(&[k.as_str()])
                .get()
        })
        .sum();
    (bus, redelivered)
}

#[test]
fn every_stage_over_memory_equals_one_engine_whatever_the_interleaving() {
    let lines = simulated(300, 20, 3);
    let bed = Bed::new();
    let expected = one_engine(&bed, &lines);
    let kinds: std::collections::BTreeSet<String> = expected
        .values()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["subject"]["kind"].to_string()
        })
        .collect();
    assert!(kinds.len() >= 3, "too few stages fire: {kinds:?}");
    for seed in [1, 7, 42] {
        let bed = Bed::new();
        let (bus, redelivered) = live(&bed, &lines, seed, None);
        assert_eq!(bus.alerts, expected, "seed {seed}");
        assert_eq!(redelivered, 0);
        assert!(bus.dead_letters.is_empty());
    }
}

#[test]
fn restarting_every_partition_from_its_latest_snapshot_changes_no_alert() {
    let lines = simulated(300, 20, 3);
    let bed = Bed::new();
    let expected = one_engine(&bed, &lines);
    for (seed, every) in [(3, 97), (11, 250), (29, 600)] {
        let bed = Bed::new();
        let (bus, redelivered) = live(&bed, &lines, seed, Some(every));
        assert!(
            redelivered > 0,
            "seed {seed}: no restart re-forwarded anything"
        );
        assert_eq!(
            bus.alerts, expected,
            "seed {seed}, a crash every {every} steps"
        );
    }
}

#[test]
fn a_failed_delivery_is_sent_again_and_an_invalid_event_is_a_dead_letter() {
    let bed = Bed::new();
    let ctx = bed.ctx();
    let mut parts = bed.partitions();
    let part = parts.get_mut(&PartitionId::card(0)).unwrap();
    let mut out = Output::default();
    let bad = MemRecord {
        topic: SWIPES.into(),
        payload: Some(b"{\"event_id\": 1}".to_vec()),
        headers: vec![("origin".into(), b"till-7".to_vec())],
        ..MemRecord::default()
    };
    bed.sink.fail_next(1);
    part.process(&ctx, &bad, &mut out).unwrap();
    assert_eq!(part.in_flight(), 1, "held until acknowledged");
    assert!(bed.sink.take().is_empty(), "the first delivery failed");
    part.poll_acks(&ctx).unwrap();
    assert_eq!(part.in_flight(), 1, "sent again after the failure");
    part.poll_acks(&ctx).unwrap();
    assert_eq!(part.in_flight(), 0);
    let sent = bed.sink.take();
    assert_eq!(sent.len(), 1);
    let letter = read_back(&sent[0].0, sent[0].1);
    assert_eq!(letter.topic, DEAD_LETTERS);
    assert_eq!(letter.payload.as_deref(), bad.payload.as_deref());
    assert_eq!(letter.header("origin"), Some(&b"till-7"[..]));
    assert!(letter.header("swipeguard.reason").is_some());
    assert_eq!(part.position(), Some(1));
}

/// A card partition whose broker still holds records for it is stalled, not idle: however long
/// nothing arrives, it keeps its buffer (and tells the stages nothing) until it has been read to
/// its end; then the idle advance releases it.
#[test]
fn only_a_partition_read_to_its_end_falls_idle() {
    let bed = Bed::new();
    let ctx = bed.ctx();
    let pid = PartitionId::card(0);
    let mut part = bed.partitions().remove(&pid).unwrap();
    let mut out = Output::default();
    let bus = swipes(&simulated(40, 2, 7));
    let log = &bus.logs[&(SWIPES.to_string(), 0)];
    for record in &log[..log.len() / 2] {
        part.process(&ctx, record, &mut out).unwrap();
    }
    let buffered = part.engine.watermark();
    part.advance_idle(&ctx, Duration::ZERO, false, &mut out)
        .unwrap();
    assert_eq!(part.engine.watermark(), buffered, "stalled, yet advanced");
    part.advance_idle(&ctx, Duration::ZERO, true, &mut out)
        .unwrap();
    assert!(
        part.engine.watermark() > buffered,
        "read to its end, yet held"
    );
}
