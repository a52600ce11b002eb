//! Live stages (DESIGN §11): which stage a partition belongs to, what the card stage forwards
//! to the others, and how a downstream stage partition knows its watermark and what it has
//! already seen.
//!
//! - **Forwarding.** The card stage forwards each admitted event, re-encoded (hashed ids
//!   included), to `<prefix>.by-<key>` for every other live stage whose key it carries: one
//!   record per downstream partition that owns one of its keys ([`partition_of`]), headed with
//!   the upstream partition and offset. Forwarded records are in flight like alerts, so an
//!   upstream offset is committed only once what it forwarded is acknowledged.
//! - **Markers.** Each card partition publishes its watermark into every partition of every
//!   internal topic (a record with marker headers), after the records it forwarded
//!   before it, whenever it moves and at least every second; idle partitions say so.
//! - **Downstream watermark.** The minimum of the upstream partitions' watermarks — an idle one
//!   counts at its own (its events when it wakes are no older), one not yet heard from holds it
//!   at the beginning of time, one idle without ever having had an event does not count; when
//!   every upstream partition is idle, the newest of their watermarks, so that the end of the
//!   input is released as replay releases it. It never moves back. The price of that last rule
//!   is the price of DESIGN §3's idle advance: idleness is wall time, and a card partition is
//!   idle only once the broker has reported it read to its end, so a partition with records the
//!   broker holds back never releases the stages early; but records produced after that report
//!   and held back by the broker for longer than `engine.idle_watermark_after` count as late.
//! - **Redelivery.** A crashed upstream partition forwards again what it forwarded after its
//!   last commit; a downstream partition remembers the highest upstream offset it took from
//!   each upstream partition and drops older ones (counted as redelivered, never late).
//!
//! The upstream marks and offsets travel in the downstream partition's snapshot, framed around
//! the engine's ([`frame`], [`unframe`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use swipeguard_detectors::stage::{for_each_key, partition_of};
use swipeguard_detectors::{EventTime, KeyKind, Transaction};

use super::kafka::OwnedRecord;
use super::source::SourceRecord;

const H_UPSTREAM: &str = "swipeguard.upstream";
const H_OFFSET: &str = "swipeguard.offset";
const H_MARKER: &str = "swipeguard.watermark";
const H_IDLE: &str = "swipeguard.idle";
/// Starts a downstream partition's snapshot (an engine snapshot starts `SGSN`).
const FRAME: &[u8; 4] = b"SGDS";

/// The internal topic of a stage.
pub fn internal_topic(prefix: &str, kind: KeyKind) -> String {
    format!("{prefix}.by-{}", kind.as_str())
}

/// One stage partition: the card stage's partitions are the swipes topic's; every other
/// stage's are its internal topic's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId {
    pub stage: KeyKind,
    pub id: i32,
}

impl PartitionId {
    pub fn card(id: i32) -> PartitionId {
        PartitionId {
            stage: KeyKind::Card,
            id,
        }
    }

    /// Its `partition` label and snapshot slot: the number for the card stage (as always), else
    /// `<key>/<number>`.
    pub fn label(&self) -> String {
        match self.stage {
            KeyKind::Card => self.id.to_string(),
            kind => format!("{}/{}", kind.as_str(), self.id),
        }
    }
}

/// Where a card partition forwards to.
#[derive(Clone, Debug)]
pub struct Downstream {
    pub kind: KeyKind,
    pub topic: Arc<str>,
}

/// The records that forward `tx` (consumed at `offset` of upstream partition `upstream`) to
/// `to`: one per downstream partition owning one of its keys; `payload` is the event encoded.
pub fn forwards(
    to: &Downstream,
    partitions: u32,
    tx: &Transaction,
    upstream: i32,
    offset: i64,
    payload: &[u8],
) -> Vec<OwnedRecord> {
    let mut targets: Vec<(u32, String)> = Vec::new();
    for_each_key(to.kind, tx, |key| {
        let p = partition_of(key, partitions);
        if !targets.iter().any(|(t, _)| *t == p) {
            targets.push((p, key.to_string()));
        }
    });
    targets
        .into_iter()
        .map(|(p, key)| OwnedRecord {
            topic: to.topic.clone(),
            partition: Some(p as i32),
            key: Some(key.into_bytes()),
            payload: payload.to_vec(),
            headers: vec![
                (Cow::Borrowed(H_UPSTREAM), upstream.to_string().into_bytes()),
                (Cow::Borrowed(H_OFFSET), offset.to_string().into_bytes()),
            ],
        })
        .collect()
}

/// The markers that publish upstream partition `upstream`'s watermark into every partition of
/// `to`.
pub fn markers(
    to: &Downstream,
    partitions: u32,
    upstream: i32,
    watermark: EventTime,
    idle: bool,
) -> Vec<OwnedRecord> {
    (0..partitions as i32)
        .map(|p| OwnedRecord {
            topic: to.topic.clone(),
            partition: Some(p),
            key: Some(format!("upstream-{upstream}").into_bytes()),
            // The headers say it all; the value is for people reading the topic.
            payload: format!(
                r#"{{"upstream":{upstream},"watermark":{},"idle":{idle}}}"#,
                watermark.0
            )
            .into_bytes(),
            headers: vec![
                (Cow::Borrowed(H_UPSTREAM), upstream.to_string().into_bytes()),
                (
                    Cow::Borrowed(H_MARKER),
                    watermark.0.to_string().into_bytes(),
                ),
                (
                    Cow::Borrowed(H_IDLE),
                    if idle { b"1".to_vec() } else { b"0".to_vec() },
                ),
            ],
        })
        .collect()
}

/// What a record of an internal topic is.
pub enum Inbound {
    /// An upstream partition's watermark.
    Marker {
        upstream: i32,
        watermark: EventTime,
        idle: bool,
    },
    /// A forwarded event.
    Event { upstream: i32, offset: i64 },
    /// Neither: not written by a swipeguard upstream.
    Foreign,
}

pub fn classify(msg: &impl SourceRecord) -> Inbound {
    let Some(upstream) = msg.header_str(H_UPSTREAM).and_then(|v| v.parse().ok()) else {
        return Inbound::Foreign;
    };
    if let Some(w) = msg.header_str(H_MARKER).and_then(|v| v.parse().ok()) {
        return Inbound::Marker {
            upstream,
            watermark: EventTime(w),
            idle: msg.header_str(H_IDLE) == Some("1"),
        };
    }
    match msg.header_str(H_OFFSET).and_then(|v| v.parse().ok()) {
        Some(offset) => Inbound::Event { upstream, offset },
        None => Inbound::Foreign,
    }
}

/// A downstream partition's view of its upstream partitions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Upstreams {
    /// Upstream partitions (the swipes topic's count).
    pub partitions: u32,
    /// Per upstream partition: its last watermark and whether it was idle.
    pub marks: BTreeMap<i32, (EventTime, bool)>,
    /// Per upstream partition: the highest offset whose event was taken.
    pub seen: BTreeMap<i32, i64>,
    /// The watermark given to the engine so far.
    pub watermark: Option<EventTime>,
}

impl Upstreams {
    pub fn new(partitions: u32) -> Upstreams {
        Upstreams {
            partitions,
            ..Upstreams::default()
        }
    }

    /// Takes a marker; the downstream watermark if it moved.
    pub fn mark(&mut self, upstream: i32, watermark: EventTime, idle: bool) -> Option<EventTime> {
        let entry = self
            .marks
            .entry(upstream)
            .or_insert((EventTime::MIN, false));
        *entry = (entry.0.max(watermark), idle);
        let all_idle =
            (0..self.partitions as i32).all(|p| self.marks.get(&p).is_some_and(|(_, idle)| *idle));
        let next = if all_idle {
            self.marks.values().map(|(w, _)| *w).max()?
        } else {
            (0..self.partitions as i32)
                .filter_map(|p| match self.marks.get(&p) {
                    None => Some(EventTime::MIN),
                    // Idle and never an event: nothing of it to wait for.
                    Some((w, true)) if *w == EventTime::MIN => None,
                    Some((w, _)) => Some(*w),
                })
                .min()?
        };
        if next == EventTime::MIN || self.watermark.is_some_and(|w| w >= next) {
            return None;
        }
        self.watermark = Some(next);
        Some(next)
    }

    /// Whether the event at `offset` of `upstream` is new (and notes it); false for one taken
    /// already (a redelivery after an upstream restart).
    pub fn take(&mut self, upstream: i32, offset: i64) -> bool {
        let seen = self.seen.entry(upstream).or_insert(-1);
        if offset <= *seen {
            return false;
        }
        *seen = offset;
        true
    }
}

/// A downstream partition's snapshot: the frame, the upstream view, then the engine's.
pub fn frame(upstreams: &Upstreams, engine: Vec<u8>) -> Vec<u8> {
    let out = FRAME.to_vec();
    match postcard::to_extend(upstreams, out) {
        Ok(mut v) => {
            v.extend_from_slice(&engine);
            v
        }
        Err(_) => engine,
    }
}

/// Splits what [`frame`] wrote; a plain engine snapshot has no upstream view.
pub fn unframe(bytes: &[u8]) -> (Option<Upstreams>, &[u8]) {
    let Some(rest) = bytes.strip_prefix(FRAME.as_slice()) else {
        return (None, bytes);
    };
    match postcard::take_from_bytes::<Upstreams>(rest) {
        Ok((u, engine)) => (Some(u), engine),
        Err(_) => (None, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_downstream_watermark_is_the_slowest_busy_upstream_and_never_moves_back() {
        let mut u = Upstreams::new(3);
        assert_eq!(u.mark(0, EventTime(100), false), None, "1 and 2 unheard");
        assert_eq!(u.mark(1, EventTime(50), false), None);
        assert_eq!(u.mark(2, EventTime(70), false), Some(EventTime(50)));
        assert_eq!(u.mark(1, EventTime(90), false), Some(EventTime(70)));
        // An idle partition still holds the others back at its own watermark (its events
        // when it wakes are no older), so waking makes none of them late.
        assert_eq!(u.mark(2, EventTime(80), true), Some(EventTime(80)));
        // A lower marker (a restarted upstream) changes nothing.
        assert_eq!(u.mark(1, EventTime(10), false), None);
        // All idle: everything forwarded is in; the newest watermark.
        u.mark(1, EventTime(90), true);
        assert_eq!(u.mark(0, EventTime(100), true), Some(EventTime(100)));
        assert_eq!(u.watermark, Some(EventTime(100)));
        // A partition that never had an event does not hold the others back once idle.
        let mut u = Upstreams::new(2);
        assert_eq!(u.mark(0, EventTime(40), false), None);
        assert_eq!(u.mark(1, EventTime::MIN, true), Some(EventTime(40)));
    }

    #[test]
    fn redelivered_offsets_are_recognised_per_upstream_partition() {
        let mut u = Upstreams::new(2);
        assert!(u.take(0, 5));
        assert!(u.take(1, 3));
        assert!(!u.take(0, 5));
        assert!(!u.take(0, 4));
        assert!(u.take(0, 6));
    }

    #[test]
    fn the_frame_round_trips_and_a_plain_snapshot_passes() {
        let mut u = Upstreams::new(4);
        u.mark(3, EventTime(7), true);
        u.take(2, 9);
        let bytes = frame(&u, b"SGSN-engine".to_vec());
        let (back, engine) = unframe(&bytes);
        assert_eq!(back, Some(u));
        assert_eq!(engine, b"SGSN-engine");
        assert_eq!(unframe(b"SGSN-plain"), (None, &b"SGSN-plain"[..]));
    }

    #[test]
    fn an_event_is_forwarded_once_per_owning_partition() {
        let to = Downstream {
            kind: KeyKind::TraceCode,
            topic: "p.by-trace_code".into(),
        };
        let codes: Vec<String> = (0..12).map(|i| format!("8{i:019}")).collect();
        let refs: Vec<&str> = codes.iter().map(String::as_str).collect();
        let tx = swipeguard_detectors::testing::tx("e1", 0)
            .item("d", 30, &refs)
            .build();
        let records = forwards(&to, 4, &tx, 2, 41, b"{}");
        let mut parts: Vec<i32> = records.iter().filter_map(|r| r.partition).collect();
        let n = parts.len();
        parts.sort_unstable();
        parts.dedup();
        assert_eq!(parts.len(), n, "one record per partition");
        let expected: std::collections::BTreeSet<i32> =
            refs.iter().map(|c| partition_of(c, 4) as i32).collect();
        assert_eq!(parts, expected.into_iter().collect::<Vec<_>>());
    }
}
