//! `rapid_fire`: at least `min_swipes` swipes (any outcome, any channel) on one card within
//! `window` (inclusive). Cloned cards and scripted abuse. Fires on the swipe that completes the
//! count; the rest of the burst falls in the cool-down. The score is how much faster than the
//! threshold rate the burst ran (1.0 = exactly `min_swipes` in `window`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{stable_hash32, Cooldown, Detector, Emitter, Finding};
use crate::model::{Action, EventTime, KeyKind, Millis, Severity, Transaction};
use crate::window::{Mark, Recent};

/// `[detectors.rapid_fire]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RapidFireConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Most alerts per hour of event time, per partition; beyond it alerts are withheld and
    /// counted, and one `budget_exceeded` alert says so (DESIGN §14). Absent: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_alerts_per_hour: Option<u32>,
    /// Send its alerts to `<kafka.alerts_topic>.shadow` only, to watch a change before it reaches
    /// the analysts (DESIGN §14).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Swipes needed within `window` to fire.
    pub min_swipes: u32,
    /// Sliding event-time window the swipes must fall in.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Quiet period on the card after an alert.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for RapidFireConfig {
    fn default() -> Self {
        RapidFireConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            min_swipes: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(10 * 60),
        }
    }
}

impl RapidFireConfig {
    pub(crate) fn build(&self, key: &str) -> Result<RapidFire, ConfigError> {
        if self.min_swipes < 2 {
            return Err(ConfigError::new(
                format!("{key}.min_swipes"),
                "must be at least 2",
            ));
        }
        Ok(RapidFire {
            min_swipes: self.min_swipes as usize,
            window: positive(&format!("{key}.window"), self.window)?,
            cooldown: Millis::from_duration(self.cooldown),
        })
    }
}

#[derive(Clone, Debug)]
pub struct RapidFire {
    min_swipes: usize,
    window: Millis,
    cooldown: Millis,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RapidFireState {
    swipes: Recent,
    cooldown: Cooldown,
}

/// Intensity of a burst relative to the threshold rate, with the span floored at one second.
fn intensity(n: usize, span: Millis, min_swipes: usize, window: Millis) -> f64 {
    let rate = n as f64 / span.0.max(1000) as f64;
    let threshold = min_swipes as f64 / window.0 as f64;
    (rate / threshold * 100.0).round() / 100.0
}

impl Detector for RapidFire {
    const NAME: &'static str = "rapid_fire";
    const VERSION: u32 = 1;
    const EXPIRES: bool = true;
    const KEY: KeyKind = KeyKind::Card;
    type State = RapidFireState;

    fn creates_state(&self, tx: &Transaction) -> bool {
        tx.is_swipe()
    }

    fn observe(&self, state: &mut RapidFireState, tx: &Transaction, emit: &mut Emitter<'_>) {
        // Refunds, admissions and discharges are not swipes (DESIGN §12).
        if !tx.is_swipe() {
            return;
        }
        let mark = Mark {
            ts: tx.ts,
            id: tx.event_id.clone(),
            place: stable_hash32(&tx.merchant_id),
        };
        state.swipes.record(mark, self.window, self.min_swipes);
        if state.swipes.len() < self.min_swipes {
            return;
        }
        let swipes = &state.swipes;
        emit.fire(&mut state.cooldown, self.cooldown, tx, || {
            let start = swipes.first().map_or(tx.ts, |m| m.ts);
            let n = swipes.len();
            let span = tx.ts.since(start);
            let score = intensity(n, span, self.min_swipes, self.window);
            let places = swipes.distinct_places();
            Finding {
                severity: if score >= 4.0 {
                    Severity::High
                } else {
                    Severity::Medium
                },
                window_start: start,
                evidence: swipes.ids(),
                score,
                action: Action::VerifyCardholder,
                action_for: None,
                explanation: format!(
                    "{n} swipes in {span} at {places} merchant{}",
                    if places == 1 { "" } else { "s" }
                ),
                features: Vec::new(),
                reason: None,
            }
        });
    }

    fn expire(&self, state: &mut Self::State, now: EventTime) {
        state.swipes.expire(now, self.window);
        state.cooldown.expire(now);
    }

    fn expires_after(&self) -> Millis {
        self.window
    }

    fn horizon(&self) -> Millis {
        self.window.max(self.cooldown)
    }

    fn heap_bytes(state: &RapidFireState) -> usize {
        state.swipes.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx};

    #[test]
    fn five_swipes_within_sixty_seconds_fire() {
        let events: Vec<_> = (0..5).map(|i| tx(&format!("s{i}"), i * 15_000)).collect();
        let alerts = run(RapidFire::NAME, events);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].evidence.len(), 5);
        assert_eq!(alerts[0].score, 1.0);
        assert_eq!(alerts[0].explanation, "5 swipes in 1m at 1 merchant");
    }

    #[test]
    fn four_swipes_or_five_over_sixty_one_seconds_do_not_fire() {
        let four: Vec<_> = (0..4).map(|i| tx(&format!("s{i}"), i * 1000)).collect();
        assert!(run(RapidFire::NAME, four).is_empty());
        let slow: Vec<_> = (0..5).map(|i| tx(&format!("s{i}"), i * 15_250)).collect();
        assert!(run(RapidFire::NAME, slow).is_empty());
    }

    #[test]
    fn cooldown_suppresses_the_sixth_and_seventh_and_a_later_burst_fires() {
        let mut events: Vec<_> = (0..7).map(|i| tx(&format!("a{i}"), i * 5_000)).collect();
        events.extend((0..5).map(|i| tx(&format!("b{i}"), 20 * 60_000 + i * 5_000)));
        let alerts = run(RapidFire::NAME, events);
        let firsts: Vec<_> = alerts.iter().map(|a| a.evidence[0].as_str()).collect();
        assert_eq!(firsts, ["a0", "b0"]);
    }

    #[test]
    fn passes_the_property_harness() {
        proptest_detector(RapidFire::NAME);
    }
}
