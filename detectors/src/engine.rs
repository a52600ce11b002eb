//! The engine of one partition: admits events, holds them until the watermark passes, releases
//! them in (event time, event id) order to every enabled detector, and bounds per-card state.
//!
//! **Lateness rule.** An event is *late* when its time is older than the watermark, or when its
//! (time, id) does not come after the last event already released. A late event is never shown
//! to the detectors (their windows have moved on); [`Engine::admit`] says so, the event is
//! counted, and the caller forwards it to the dead-letter topic or the rejects file with reason
//! `late`, so it is never silently dropped. An event whose (time, id) equals one that is
//! buffered or was just released is a *duplicate*, handled the same way with reason `duplicate`.
//!
//! **Release.** Events at or before the watermark are released; [`Engine::drain`] releases the
//! rest (end of a replay). With allowed lateness 0 every in-order event is released on arrival.
//!
//! **Time.** The engine's clock is the newest released event time or the watermark, whichever
//! is later. Cards idle for longer than the longest horizon of the enabled detectors are
//! forgotten by that clock; a card beyond `max_tracked_cards` pushes out the least recently
//! seen one. Counts of all of it come back in [`Counts`], per call, for the caller to add up.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::cards::{CardTable, Eviction};
use crate::config::{ConfigError, EngineConfig};
use crate::detector::{Detector, Emitter, Versions};
use crate::detectors::failed_pin::FailedPin;
use crate::detectors::impossible_travel::ImpossibleTravel;
use crate::detectors::off_pattern::OffPattern;
use crate::detectors::pin_success::PinSuccess;
use crate::detectors::rapid_fire::RapidFire;
use crate::model::{Alert, DetectorName, EventId, EventTime, Millis, Transaction};
use crate::reject::RejectReason;
use crate::reorder::ReorderBuffer;
use crate::watermark::Watermark;

/// What happened to an event offered to [`Engine::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Buffered or released; the detectors will see it.
    Accepted,
    /// Older than the watermark or than the last released event; not detected.
    Late,
    /// Same (time, id) as an event already admitted.
    Duplicate,
}

impl Admission {
    /// Why the event was refused, for the dead-letter header, rejects file and metrics.
    pub fn reject_reason(self) -> Option<RejectReason> {
        match self {
            Admission::Accepted => None,
            Admission::Late => Some(RejectReason::Late),
            Admission::Duplicate => Some(RejectReason::Duplicate),
        }
    }
}

/// Counts for one batch of calls; the caller adds them to its metrics and resets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub accepted: u64,
    pub released: u64,
    pub late: u64,
    /// Of `late`: late only because an idle advance moved the watermark (wall time's effect).
    pub late_after_idle: u64,
    pub duplicates: u64,
    /// Alerts emitted, by [`DetectorName::index`].
    pub alerts: [u64; 5],
    /// Alerts withheld by a cool-down, by [`DetectorName::index`].
    pub suppressed: [u64; 5],
    pub evicted_idle: u64,
    pub evicted_capacity: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.accepted += other.accepted;
        self.released += other.released;
        self.late += other.late;
        self.late_after_idle += other.late_after_idle;
        self.duplicates += other.duplicates;
        for i in 0..5 {
            self.alerts[i] += other.alerts[i];
            self.suppressed[i] += other.suppressed[i];
        }
        self.evicted_idle += other.evicted_idle;
        self.evicted_capacity += other.evicted_capacity;
    }
}

/// Where the engine puts what a call produced.
#[derive(Debug, Default)]
pub struct Output {
    pub alerts: Vec<Alert>,
    pub counts: Counts,
}

/// How much the engine holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSize {
    pub tracked_cards: usize,
    pub buffered_events: usize,
    /// Estimated bytes of card state and buffered events.
    pub bytes: usize,
}

/// The enabled detectors, built from configuration.
#[derive(Clone, Debug)]
pub(crate) struct Detectors {
    failed_pin: Option<FailedPin>,
    pin_success: Option<PinSuccess>,
    rapid_fire: Option<RapidFire>,
    travel: Option<ImpossibleTravel>,
    off_pattern: Option<OffPattern>,
}

impl Detectors {
    fn build(cfg: &crate::config::DetectorsConfig) -> Result<Detectors, ConfigError> {
        let d = cfg;
        Ok(Detectors {
            failed_pin: d
                .failed_pin
                .enabled
                .then(|| d.failed_pin.build("detectors.failed_pin"))
                .transpose()?,
            pin_success: d
                .pin_success_after_failures
                .enabled
                .then(|| {
                    d.pin_success_after_failures
                        .build("detectors.pin_success_after_failures")
                })
                .transpose()?,
            rapid_fire: d
                .rapid_fire
                .enabled
                .then(|| d.rapid_fire.build("detectors.rapid_fire"))
                .transpose()?,
            travel: d
                .impossible_travel
                .enabled
                .then(|| d.impossible_travel.build("detectors.impossible_travel"))
                .transpose()?,
            off_pattern: d
                .off_pattern
                .enabled
                .then(|| d.off_pattern.build("detectors.off_pattern"))
                .transpose()?,
        })
    }

    /// The longest horizon of the enabled detectors (0 when none is enabled).
    fn horizon(&self) -> Millis {
        [
            self.failed_pin.as_ref().map(Detector::horizon),
            self.pin_success.as_ref().map(Detector::horizon),
            self.rapid_fire.as_ref().map(Detector::horizon),
            self.travel.as_ref().map(Detector::horizon),
            self.off_pattern.as_ref().map(Detector::horizon),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default()
    }
}

/// `detector_version` = `<name>/v<VERSION>+<first 8 hex of SHA-256 of the detector's config>`,
/// so alerts made under different thresholds are told apart.
fn versions(cfg: &crate::config::DetectorsConfig) -> Versions {
    fn one<T: serde::Serialize>(name: DetectorName, version: u32, cfg: &T) -> Arc<str> {
        let bytes = postcard::to_allocvec(cfg).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Arc::from(format!("{}/v{version}+{hex}", name.as_str()))
    }
    Versions([
        one(DetectorName::FailedPin, FailedPin::VERSION, &cfg.failed_pin),
        one(
            DetectorName::PinSuccessAfterFailures,
            PinSuccess::VERSION,
            &cfg.pin_success_after_failures,
        ),
        one(DetectorName::RapidFire, RapidFire::VERSION, &cfg.rapid_fire),
        one(
            DetectorName::ImpossibleTravel,
            ImpossibleTravel::VERSION,
            &cfg.impossible_travel,
        ),
        one(
            DetectorName::OffPattern,
            OffPattern::VERSION,
            &cfg.off_pattern,
        ),
    ])
}

/// The detector engine of one partition.
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    detectors: Detectors,
    versions: Versions,
    horizon: Millis,
    pub(crate) watermark: Watermark,
    pub(crate) pending: ReorderBuffer,
    pub(crate) last_released: Option<(EventTime, EventId)>,
    pub(crate) clock: EventTime,
    pub(crate) cards: CardTable,
}

impl Engine {
    /// Builds an engine, checking every configured value.
    pub fn new(config: EngineConfig) -> Result<Engine, ConfigError> {
        if config.max_tracked_cards == 0 {
            return Err(ConfigError::new(
                "engine.max_tracked_cards",
                "must be at least 1",
            ));
        }
        let detectors = Detectors::build(&config.detectors)?;
        Ok(Engine {
            versions: versions(&config.detectors),
            horizon: detectors.horizon(),
            detectors,
            watermark: Watermark::new(Millis::from_duration(config.allowed_lateness)),
            pending: ReorderBuffer::default(),
            last_released: None,
            clock: EventTime::MIN,
            cards: CardTable::new(config.max_tracked_cards),
            config,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn watermark(&self) -> EventTime {
        self.watermark.value()
    }

    /// The newest event time admitted.
    pub fn newest_event_time(&self) -> EventTime {
        self.watermark.newest()
    }

    /// Whether [`Engine::admit`] would refuse `tx` as late or duplicate (without admitting it).
    pub fn would_refuse(&self, tx: &Transaction) -> bool {
        let key = (tx.ts, &tx.event_id);
        let not_after_last = self
            .last_released
            .as_ref()
            .is_some_and(|(ts, id)| key <= (*ts, id));
        not_after_last
            || self.watermark.is_late(tx.ts)
            || self.pending.contains(tx.ts, &tx.event_id)
    }

    /// Offers one event. Accepted events are buffered and released (possibly this one and
    /// others) when the watermark passes them; their alerts land in `out`.
    pub fn admit(&mut self, tx: Transaction, out: &mut Output) -> Admission {
        let after_last = self
            .last_released
            .as_ref()
            .is_none_or(|(ts, id)| (tx.ts, &tx.event_id) > (*ts, id));
        let is_last = self
            .last_released
            .as_ref()
            .is_some_and(|(ts, id)| *ts == tx.ts && *id == tx.event_id);
        if is_last || self.pending.contains(tx.ts, &tx.event_id) {
            out.counts.duplicates += 1;
            return Admission::Duplicate;
        }
        if self.watermark.is_late(tx.ts) || !after_last {
            out.counts.late += 1;
            if self.watermark.late_only_by_idle_advance(tx.ts) {
                out.counts.late_after_idle += 1;
            }
            return Admission::Late;
        }
        out.counts.accepted += 1;
        self.watermark.observe(tx.ts);
        if self.pending.is_empty() && tx.ts <= self.watermark.value() {
            // Nothing waits ahead of it: release without buffering (lateness 0, in order).
            self.release(tx, out);
        } else {
            self.pending.insert(tx);
            self.release_ready(out);
        }
        Admission::Accepted
    }

    /// Idle advance (live mode only): the watermark jumps to the newest event time seen,
    /// releasing everything buffered.
    pub fn advance_idle(&mut self, out: &mut Output) {
        if self.watermark.advance_to_newest() {
            self.release_ready(out);
        }
    }

    /// Moves event time forward to `to` without an event (a heartbeat): releases what the new
    /// watermark passes and forgets cards idle by then.
    pub fn advance_watermark(&mut self, to: EventTime, out: &mut Output) {
        if self.watermark.advance_to(to) {
            self.release_ready(out);
            self.tick(to, out);
        }
    }

    /// End of input: releases every buffered event in order.
    pub fn drain(&mut self, out: &mut Output) {
        while let Some(tx) = self.pending.pop_first() {
            self.release(tx, out);
        }
    }

    pub fn state_size(&self) -> StateSize {
        StateSize {
            tracked_cards: self.cards.len(),
            buffered_events: self.pending.len(),
            bytes: self.cards.state_bytes() + self.pending.heap_bytes(),
        }
    }

    fn release_ready(&mut self, out: &mut Output) {
        while let Some(tx) = self.pending.pop_ready(self.watermark.value()) {
            self.release(tx, out);
        }
    }

    /// Advances the clock and forgets cards idle for longer than the horizon.
    fn tick(&mut self, now: EventTime, out: &mut Output) {
        if now > self.clock {
            self.clock = now;
            out.counts.evicted_idle += self.cards.evict_idle(now.saturating_sub(self.horizon));
        }
    }

    /// Shows one event to every enabled detector, in the fixed detector order.
    fn release(&mut self, tx: Transaction, out: &mut Output) {
        debug_assert!(self
            .last_released
            .as_ref()
            .is_none_or(|(ts, id)| (tx.ts, &tx.event_id) > (*ts, id)));
        self.tick(tx.ts, out);
        out.counts.released += 1;
        let counts = &mut out.counts;
        let Some(card) = self.cards.touch(&tx.card_id, |e| match e {
            Eviction::Capacity => counts.evicted_capacity += 1,
            Eviction::Idle => counts.evicted_idle += 1,
        }) else {
            return;
        };
        card.last_seen = tx.ts;
        let mut emit = Emitter {
            card: &tx.card_id,
            alerts: &mut out.alerts,
            counts: &mut out.counts,
            versions: &self.versions,
        };
        let d = &self.detectors;
        if let Some(det) = &d.failed_pin {
            det.observe(&mut card.failed_pin, &tx, &mut emit);
        }
        if let Some(det) = &d.pin_success {
            det.observe(&mut card.pin_success, &tx, &mut emit);
        }
        if let Some(det) = &d.rapid_fire {
            det.observe(&mut card.rapid_fire, &tx, &mut emit);
        }
        if let Some(det) = &d.travel {
            det.observe(&mut card.travel, &tx, &mut emit);
        }
        if let Some(det) = &d.off_pattern {
            det.observe(&mut card.off_pattern, &tx, &mut emit);
        }
        self.last_released = Some((tx.ts, tx.event_id));
    }
}

#[cfg(test)]
mod tests;
