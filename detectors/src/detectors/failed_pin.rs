//! `failed_pin`: at least `min_failures` `bad_pin` declines on one card within `window`
//! (inclusive: the first and the last failure at most `window` apart). PIN guessing on a stolen
//! card. Recommends `lock_card` for `lock_for`, as the fund's own rule does after three wrong
//! PINs. Fires on the failure that completes the count; further failures within `cooldown` of
//! an alert are suppressed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{stable_hash32, Cooldown, Detector, Emitter, Finding};
use crate::model::{Action, EventTime, KeyKind, Millis, Severity, Transaction};
use crate::window::{Mark, Recent};

/// `[detectors.failed_pin]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedPinConfig {
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
    /// Wrong-PIN declines needed within `window` to fire.
    pub min_failures: u32,
    /// Sliding event-time window the failures must fall in.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long the recommended card lock should last.
    #[serde(with = "humantime_serde")]
    pub lock_for: Duration,
    /// Quiet period on the card after an alert.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for FailedPinConfig {
    fn default() -> Self {
        FailedPinConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            min_failures: 3,
            window: Duration::from_secs(10 * 60),
            lock_for: Duration::from_secs(24 * 3600),
            cooldown: Duration::from_secs(10 * 60),
        }
    }
}

impl FailedPinConfig {
    pub(crate) fn build(&self, key: &str) -> Result<FailedPin, ConfigError> {
        if self.min_failures < 1 {
            return Err(ConfigError::new(
                format!("{key}.min_failures"),
                "must be at least 1",
            ));
        }
        Ok(FailedPin {
            min_failures: self.min_failures as usize,
            window: positive(&format!("{key}.window"), self.window)?,
            lock_for: Millis::from_duration(self.lock_for),
            cooldown: Millis::from_duration(self.cooldown),
        })
    }
}

#[derive(Clone, Debug)]
pub struct FailedPin {
    min_failures: usize,
    window: Millis,
    lock_for: Millis,
    cooldown: Millis,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FailedPinState {
    failures: Recent,
    cooldown: Cooldown,
}

impl Detector for FailedPin {
    const NAME: &'static str = "failed_pin";
    const VERSION: u32 = 1;
    const EXPIRES: bool = true;
    const KEY: KeyKind = KeyKind::Card;
    type State = FailedPinState;

    fn observe(&self, state: &mut FailedPinState, tx: &Transaction, emit: &mut Emitter<'_>) {
        // Refunds, admissions and discharges are not swipes (DESIGN §12).
        if !tx.is_swipe() {
            return;
        }
        if !tx.is_bad_pin() {
            state.failures.expire(tx.ts, self.window);
            return;
        }
        let place = tx.terminal_id.as_deref().unwrap_or(&tx.merchant_id);
        let mark = Mark {
            ts: tx.ts,
            id: tx.event_id.clone(),
            place: stable_hash32(place),
        };
        state.failures.record(mark, self.window, self.min_failures);
        if state.failures.len() < self.min_failures {
            return;
        }
        let failures = &state.failures;
        emit.fire(&mut state.cooldown, self.cooldown, tx, || {
            let start = failures.first().map_or(tx.ts, |m| m.ts);
            let n = failures.len();
            let places = failures.distinct_places();
            Finding {
                severity: Severity::High,
                window_start: start,
                evidence: failures.ids(),
                score: n as f64,
                action: Action::LockCard,
                action_for: Some(self.lock_for),
                explanation: format!(
                    "{n} wrong PINs in {} at {places} terminal{}",
                    tx.ts.since(start),
                    if places == 1 { "" } else { "s" }
                ),
                features: Vec::new(),
                reason: None,
            }
        });
    }

    fn expire(&self, state: &mut Self::State, now: EventTime) {
        state.failures.expire(now, self.window);
        state.cooldown.expire(now);
    }

    fn creates_state(&self, tx: &Transaction) -> bool {
        tx.is_swipe() && tx.is_bad_pin()
    }

    fn expires_after(&self) -> Millis {
        self.window
    }

    fn horizon(&self) -> Millis {
        self.window.max(self.cooldown)
    }

    fn heap_bytes(state: &FailedPinState) -> usize {
        state.failures.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx};

    fn minutes(m: i64) -> i64 {
        m * 60_000
    }

    #[test]
    fn three_failures_within_ten_minutes_fire() {
        let events = vec![
            tx("e1", 0).bad_pin().terminal("t1"),
            tx("e2", minutes(4)).bad_pin().terminal("t2"),
            tx("e3", minutes(10)).bad_pin().terminal("t1"),
        ];
        let alerts = run(FailedPin::NAME, events);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.detector.as_str(), "failed_pin");
        assert_eq!(a.action, Action::LockCard);
        assert_eq!(a.action_for, Some(Millis(24 * 3_600_000)));
        assert_eq!(
            a.evidence.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            ["e1", "e2", "e3"]
        );
        assert_eq!(a.explanation, "3 wrong PINs in 10m at 2 terminals");
    }

    #[test]
    fn three_failures_in_ten_minutes_and_a_second_do_not_fire() {
        let events = vec![
            tx("e1", 0).bad_pin(),
            tx("e2", minutes(5)).bad_pin(),
            tx("e3", minutes(10) + 1000).bad_pin(),
        ];
        assert!(run(FailedPin::NAME, events).is_empty());
    }

    #[test]
    fn other_declines_and_approvals_do_not_count() {
        let events = vec![
            tx("e1", 0).bad_pin(),
            tx("e2", 1000).declined(crate::model::DeclineReason::InsufficientFunds),
            tx("e3", 2000),
            tx("e4", 3000).bad_pin(),
        ];
        assert!(run(FailedPin::NAME, events).is_empty());
    }

    #[test]
    fn cooldown_suppresses_the_rest_of_the_burst_then_a_new_burst_fires() {
        let mut events: Vec<_> = (0..6)
            .map(|i| tx(&format!("a{i}"), i * 10_000).bad_pin())
            .collect();
        // A second burst after the 10-minute cool-down.
        events.extend((0..3).map(|i| tx(&format!("b{i}"), minutes(30) + i * 10_000).bad_pin()));
        let alerts = run(FailedPin::NAME, events);
        let firsts: Vec<_> = alerts.iter().map(|a| a.evidence[0].as_str()).collect();
        assert_eq!(firsts, ["a0", "b0"]);
    }

    #[test]
    fn passes_the_property_harness() {
        proptest_detector(FailedPin::NAME);
    }
}
