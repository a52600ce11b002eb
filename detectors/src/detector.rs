//! The `Detector` trait and what every detector shares: the emitter that names alerts and
//! applies the cool-down.
//!
//! A detector is a small config-derived struct plus a per-key `State`. It declares the key its
//! state lives under ([`KeyKind`]); its stage owns the states (only for keys that need one) and
//! calls [`Detector::observe`] with every event that carries such a key, in (event time, event
//! id) order. Detectors never read a clock: the event's own time is the only time.
//!
//! One burst is one alert: after a detector fires on a subject it stays quiet on it for its
//! `cooldown` of event time ([`Cooldown`]); the events it would have fired on are counted as
//! suppressed. Because the cool-down is measured in event time it is as deterministic as the
//! rest of the state, and it travels in snapshots.

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Counts;
use crate::model::{
    Action, Alert, AlertId, CardId, DetectorName, EventId, EventTime, FeatureSurprise, KeyKind,
    Millis, Severity, Subject, Transaction,
};

/// A detector: configuration-derived parameters plus the per-key state it keeps.
pub trait Detector: Clone + Debug + Send + Sync + 'static {
    /// The detector's wire name (its `[detectors.<name>]` table, its alerts' `detector`).
    const NAME: &'static str;
    /// Bumped whenever the detector's semantics or its state's encoding change; part of
    /// `detector_version`, and a snapshot section of another version starts empty.
    const VERSION: u32;
    /// The key its state is kept under.
    const KEY: KeyKind;
    /// Per-key state. `Default` is the state of a key never seen.
    type State: Default + Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync;

    /// Folds one event into the key's state and emits an alert if one is due.
    fn observe(&self, state: &mut Self::State, tx: &Transaction, emit: &mut Emitter<'_>);

    /// Whether `tx` can change the state of a key that has none (else the stage skips the
    /// call: an ordinary swipe costs the PIN detectors nothing). Must be true whenever
    /// `observe` on the default state would keep something or emit.
    fn creates_state(&self, _tx: &Transaction) -> bool {
        true
    }

    /// How long after a key's last event its state can still change a future decision.
    /// The stage forgets keys idle for longer than the largest horizon of its detectors.
    fn horizon(&self) -> Millis;

    /// The stage's clock reached `now` (no event of this key needed): forget what can no
    /// longer matter to an event at `now` or later — a window that has closed, a cool-down
    /// that has run out — so that the state can become idle and be dropped. Must not change
    /// any future decision. The stage calls it on a few keys per event, round robin.
    fn expire(&self, _state: &mut Self::State, _now: EventTime) {}

    /// Whether [`Detector::expire`] does anything (the sweep skips detectors whose doesn't).
    const EXPIRES: bool = false;

    /// How long a key must be quiet before `expire` is likely to free something (a window's
    /// length). The sweep offers each key once per quiet spell, after the shortest of these
    /// in its stage; what is still held then (a running cool-down) waits for the key's next
    /// event or its eviction.
    fn expires_after(&self) -> Millis {
        self.horizon()
    }

    /// Whether `state` holds nothing worth keeping (the stage then drops it, so that a key
    /// holds state only for detectors that need it). The default compares with `Default`.
    fn is_idle(state: &Self::State) -> bool {
        *state == Self::State::default()
    }

    /// Heap bytes held by a state beyond its inline size, for memory accounting.
    fn heap_bytes(_state: &Self::State) -> usize {
        0
    }
}

/// Event time until which a detector stays quiet on a subject after firing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Cooldown(EventTime);

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown(EventTime::MIN)
    }
}

impl Cooldown {
    /// A quiet period that ends (exclusively) at `end`.
    pub fn until(end: EventTime) -> Cooldown {
        Cooldown(end)
    }

    /// True while `now` falls inside the quiet period (its end is exclusive).
    pub fn holds(self, now: EventTime) -> bool {
        now < self.0
    }

    /// Forgets a quiet period that is over by `now` (it cannot hold for any later time).
    pub fn expire(&mut self, now: EventTime) {
        if !self.holds(now) {
            *self = Cooldown::default();
        }
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
    /// Which of the detector's findings this is, for detectors with several.
    pub reason: Option<Cow<'static, str>>,
}

impl Finding {
    /// A finding with no features and no reason.
    pub fn new(severity: Severity, action: Action, window_start: EventTime) -> Finding {
        Finding {
            severity,
            window_start,
            evidence: Vec::new(),
            score: 0.0,
            action,
            action_for: None,
            explanation: String::new(),
            features: Vec::new(),
            reason: None,
        }
    }
}

/// `detector_version` strings, one per registered detector, fixed when the engine is built.
#[derive(Clone, Debug)]
pub struct Versions(pub Vec<Arc<str>>);

/// Collects the alerts of one detector for one event and applies cool-downs. Handed to
/// detectors by their stage.
pub struct Emitter<'a> {
    pub(crate) detector: DetectorName,
    pub(crate) subject: &'a Subject,
    pub(crate) alerts: &'a mut Vec<Alert>,
    pub(crate) counts: &'a mut Counts,
    pub(crate) versions: &'a Versions,
    pub(crate) scores: Option<&'a mut Vec<crate::engine::Score>>,
    /// Where this event's alerts on this key begin in `alerts`.
    pub(crate) event_start: usize,
}

impl Emitter<'_> {
    /// Emits the finding for `tx` unless `cooldown` holds, in which case it is counted as
    /// suppressed. `finding` is only built when the alert actually leaves.
    pub fn fire(
        &mut self,
        cooldown: &mut Cooldown,
        quiet_for: Millis,
        tx: &Transaction,
        finding: impl FnOnce() -> Finding,
    ) -> bool {
        if cooldown.holds(tx.ts) {
            self.counts.suppressed[self.detector.index()] += 1;
            return false;
        }
        *cooldown = Cooldown(tx.ts.saturating_add(quiet_for));
        self.push(tx, finding());
        true
    }

    /// Emits `finding` for `tx` with no cool-down (the detector decides itself what repeats).
    pub fn fire_always(&mut self, tx: &Transaction, finding: Finding) {
        self.push(tx, finding);
    }

    /// Counts an alert the detector withheld by its own rule (as a cool-down would).
    pub fn suppressed(&mut self) {
        self.counts.suppressed[self.detector.index()] += 1;
    }

    /// Notes how surprising `tx` was (−log10 of a p-value), alert or not, when scores are
    /// being recorded.
    pub fn score(&mut self, tx: &Transaction, value: f64) {
        if let Some(scores) = self.scores.as_mut() {
            scores.push(crate::engine::Score {
                detector: self.detector,
                event: tx.event_id.clone(),
                value,
            });
        }
    }

    /// The alerts the detectors before this one (in registry order) raised on this key for this
    /// event: how a detector may react to the others' findings, deterministically.
    pub fn earlier_alerts(&self) -> &[Alert] {
        self.alerts.get(self.event_start..).unwrap_or(&[])
    }

    /// The subject this emitter names alerts after.
    pub fn subject(&self) -> &Subject {
        self.subject
    }

    fn push(&mut self, tx: &Transaction, f: Finding) {
        debug_assert!(!f.evidence.is_empty(), "an alert always names its evidence");
        let first = f.evidence.first().map(EventId::as_str).unwrap_or("");
        self.alerts.push(Alert {
            alert_id: alert_id(self.detector, self.subject, &tx.card_id, first),
            detector: self.detector,
            severity: f.severity,
            card_id: tx.card_id.clone(),
            ts: tx.ts,
            window_start: f.window_start,
            window_end: tx.ts,
            evidence: f.evidence,
            score: f.score,
            action: f.action,
            action_for: f.action_for,
            explanation: f.explanation,
            features: f.features,
            detector_version: self.versions.0[self.detector.index()].clone(),
            subject: self.subject.clone(),
            reason: f.reason,
            trigger_meta: tx.meta,
        });
        self.counts.alerts[self.detector.index()] += 1;
    }
}

/// `alert_id` = first 128 bits of SHA-256, in hex, over detector, card and first evidence id for
/// a card subject (the ids card alerts have always had), and over detector, subject kind,
/// subject id and first evidence id for any other subject. The same situation gets the same id
/// in replay, live, after restarts and on any instance.
pub fn alert_id(
    detector: DetectorName,
    subject: &Subject,
    card: &CardId,
    first_evidence: &str,
) -> AlertId {
    let mut h = Sha256::new();
    h.update(detector.as_str().as_bytes());
    h.update([0x1f]);
    if subject.kind == KeyKind::Card {
        debug_assert_eq!(subject.id.as_str(), card.as_str());
    } else {
        h.update(subject.kind.as_str().as_bytes());
        h.update([0x1f]);
    }
    h.update(subject.id.as_bytes());
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
