//! The `Detector` trait and what every detector shares: the emitter that names alerts and
//! applies the cool-down.
//!
//! A detector is a small config-derived struct plus a per-card `State`. The engine owns the
//! states (one per tracked card) and calls [`Detector::observe`] with every swipe of that card,
//! in event-time order. Detectors never read a clock: the swipe's own time is the only time.
//!
//! One burst is one alert: after a detector fires on a card it stays quiet on that card for its
//! `cooldown` of event time ([`Cooldown`]); the swipes it would have fired on are counted as
//! suppressed. Because the cool-down is measured in event time it is as deterministic as the
//! rest of the state, and it travels in snapshots.

use std::fmt::Debug;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Counts;
use crate::model::{
    Action, Alert, AlertId, CardId, DetectorName, EventId, EventTime, FeatureSurprise, Millis,
    Severity, Transaction,
};

/// A detector: configuration-derived parameters plus the per-card state it keeps.
pub trait Detector {
    /// The detector's wire name.
    const NAME: DetectorName;
    /// Bumped whenever the detector's semantics change; part of `detector_version`.
    const VERSION: u32;
    /// Per-card state. `Default` is the state of a card never seen.
    type State: Default + Clone + PartialEq + Debug + Serialize + DeserializeOwned;

    /// Folds one swipe of the card into its state and emits an alert if one is due.
    fn observe(&self, state: &mut Self::State, tx: &Transaction, emit: &mut Emitter<'_>);

    /// How long after a card's last swipe its state can still change a future decision.
    /// The engine forgets cards idle for longer than the largest horizon of enabled detectors.
    fn horizon(&self) -> Millis;

    /// Heap bytes held by a state beyond its inline size, for memory accounting.
    fn heap_bytes(_state: &Self::State) -> usize {
        0
    }
}

/// Event time until which a detector stays quiet on a card after firing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Cooldown(EventTime);

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown(EventTime::MIN)
    }
}

impl Cooldown {
    /// True while `now` falls inside the quiet period (its end is exclusive).
    pub fn holds(self, now: EventTime) -> bool {
        now < self.0
    }
}

/// What a detector found, before the emitter names it and stamps it.
pub struct Finding {
    pub severity: Severity,
    pub window_start: EventTime,
    /// Oldest first; the first id names the alert.
    pub evidence: Vec<EventId>,
    pub score: f64,
    pub action: Action,
    pub action_for: Option<Millis>,
    pub explanation: String,
    pub features: Vec<FeatureSurprise>,
}

/// `detector_version` strings, one per detector, fixed when the engine is built.
#[derive(Clone, Debug)]
pub struct Versions(pub [Arc<str>; 5]);

/// Collects alerts for one swipe and applies cool-downs. Handed to detectors by the engine.
pub struct Emitter<'a> {
    pub(crate) card: &'a CardId,
    pub(crate) alerts: &'a mut Vec<Alert>,
    pub(crate) counts: &'a mut Counts,
    pub(crate) versions: &'a Versions,
}

impl Emitter<'_> {
    /// Emits the finding for `tx` unless `cooldown` holds, in which case it is counted as
    /// suppressed. `finding` is only built when the alert actually leaves.
    pub fn fire(
        &mut self,
        detector: DetectorName,
        cooldown: &mut Cooldown,
        quiet_for: Millis,
        tx: &Transaction,
        finding: impl FnOnce() -> Finding,
    ) -> bool {
        if cooldown.holds(tx.ts) {
            self.counts.suppressed[detector.index()] += 1;
            return false;
        }
        *cooldown = Cooldown(tx.ts.saturating_add(quiet_for));
        let f = finding();
        debug_assert!(!f.evidence.is_empty(), "an alert always names its evidence");
        let first = f.evidence.first().map(EventId::as_str).unwrap_or("");
        self.alerts.push(Alert {
            alert_id: alert_id(detector, self.card, first),
            detector,
            severity: f.severity,
            card_id: self.card.clone(),
            ts: tx.ts,
            window_start: f.window_start,
            window_end: tx.ts,
            evidence: f.evidence,
            score: f.score,
            action: f.action,
            action_for: f.action_for,
            explanation: f.explanation,
            features: f.features,
            detector_version: self.versions.0[detector.index()].clone(),
            trigger_meta: tx.meta,
        });
        self.counts.alerts[detector.index()] += 1;
        true
    }
}

/// `alert_id` = first 128 bits of SHA-256 over detector, card and first evidence id, in hex.
/// The same situation gets the same id in replay, live, after restarts and on any instance.
pub fn alert_id(detector: DetectorName, card: &CardId, first_evidence: &str) -> AlertId {
    let mut h = Sha256::new();
    h.update(detector.as_str().as_bytes());
    h.update([0x1f]);
    h.update(card.as_str().as_bytes());
    h.update([0x1f]);
    h.update(first_evidence.as_bytes());
    let digest = h.finalize();
    let mut hex = String::with_capacity(32);
    for b in &digest[..16] {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    AlertId(hex)
}

/// A small, stable 32-bit hash (FNV-1a) for remembering *which* terminal, merchant or region
/// without keeping the string. Stable across versions because it is part of snapshots.
pub fn stable_hash32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// glibc-like size of a heap block holding `n` bytes: what the allocator really spends.
pub(crate) fn heap_block(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).div_ceil(16).max(2) * 16
    }
}
