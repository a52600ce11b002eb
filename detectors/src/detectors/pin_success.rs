//! `pin_success_after_failures`: an approved swipe after at least `min_failures` `bad_pin`
//! declines within `window` (inclusive, from the oldest counted failure to the approval): the
//! guess succeeded. An approval resets the card's failure count, as a correct PIN resets the
//! card's own try counter; so each approval is judged only on the failures since the previous
//! one, and no two alerts share their first evidence. Up to [`MAX_REMEMBERED`] failures are
//! kept as evidence, so the alert can say "after 4 wrong PINs" when there were four.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{stable_hash32, Cooldown, Detector, Emitter, Finding};
use crate::model::{Action, EventTime, KeyKind, Millis, Outcome, Severity, Transaction};
use crate::window::{Mark, Recent};

/// `[detectors.pin_success_after_failures]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinSuccessConfig {
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
    /// Wrong-PIN declines that must precede the approval within `window`.
    pub min_failures: u32,
    /// Event-time window from the oldest counted failure to the approval.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Quiet period on the card after an alert.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for PinSuccessConfig {
    fn default() -> Self {
        PinSuccessConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            min_failures: 2,
            window: Duration::from_secs(10 * 60),
            cooldown: Duration::from_secs(10 * 60),
        }
    }
}

impl PinSuccessConfig {
    pub(crate) fn build(&self, key: &str) -> Result<PinSuccess, ConfigError> {
        if self.min_failures < 1 {
            return Err(ConfigError::new(
                format!("{key}.min_failures"),
                "must be at least 1",
            ));
        }
        Ok(PinSuccess {
            min_failures: self.min_failures as usize,
            window: positive(&format!("{key}.window"), self.window)?,
            cooldown: Millis::from_duration(self.cooldown),
        })
    }
}

/// Most failures remembered per card (the evidence of one alert).
pub const MAX_REMEMBERED: usize = 8;

#[derive(Clone, Debug)]
pub struct PinSuccess {
    min_failures: usize,
    window: Millis,
    cooldown: Millis,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PinSuccessState {
    failures: Recent,
    cooldown: Cooldown,
}

impl Detector for PinSuccess {
    const NAME: &'static str = "pin_success_after_failures";
    const VERSION: u32 = 1;
    const EXPIRES: bool = true;
    const KEY: KeyKind = KeyKind::Card;
    type State = PinSuccessState;

    fn observe(&self, state: &mut PinSuccessState, tx: &Transaction, emit: &mut Emitter<'_>) {
        // Refunds, admissions and discharges are not swipes (DESIGN §12).
        if !tx.is_swipe() {
            return;
        }
        if tx.is_bad_pin() {
            let place = tx.terminal_id.as_deref().unwrap_or(&tx.merchant_id);
            let mark = Mark {
                ts: tx.ts,
                id: tx.event_id.clone(),
                place: stable_hash32(place),
            };
            state
                .failures
                .record(mark, self.window, self.min_failures.max(MAX_REMEMBERED));
            return;
        }
        state.failures.expire(tx.ts, self.window);
        if tx.outcome != Outcome::Approved {
            return;
        }
        if state.failures.len() >= self.min_failures {
            let failures = &state.failures;
            emit.fire(&mut state.cooldown, self.cooldown, tx, || {
                let start = failures.first().map_or(tx.ts, |m| m.ts);
                let n = failures.len();
                let mut evidence = failures.ids();
                evidence.push(tx.event_id.clone());
                Finding {
                    severity: Severity::High,
                    window_start: start,
                    evidence,
                    score: n as f64,
                    action: Action::VerifyCardholder,
                    action_for: None,
                    explanation: format!(
                        "approved {} after {n} wrong PINs (first {} earlier)",
                        tx.amount,
                        tx.ts.since(start)
                    ),
                    features: Vec::new(),
                    reason: None,
                }
            });
        }
        state.failures.clear();
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

    fn heap_bytes(state: &PinSuccessState) -> usize {
        state.failures.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx};

    const MIN: i64 = 60_000;

    #[test]
    fn approval_after_two_failures_fires() {
        let events = vec![
            tx("f1", 0).bad_pin(),
            tx("f2", MIN).bad_pin(),
            tx("ok", 10 * MIN).amount(1234),
        ];
        let alerts = run(PinSuccess::NAME, events);
        assert_eq!(alerts.len(), 1);
        let ids: Vec<_> = alerts[0].evidence.iter().map(|e| e.as_str()).collect();
        assert_eq!(ids, ["f1", "f2", "ok"]);
        assert_eq!(
            alerts[0].explanation,
            "approved ¥12.34 after 2 wrong PINs (first 10m earlier)"
        );
    }

    #[test]
    fn approval_after_one_failure_or_outside_window_is_quiet() {
        let one = vec![tx("f1", 0).bad_pin(), tx("ok", MIN)];
        assert!(run(PinSuccess::NAME, one).is_empty());
        let late = vec![
            tx("f1", 0).bad_pin(),
            tx("f2", MIN).bad_pin(),
            tx("ok", 10 * MIN + 1),
        ];
        assert!(run(PinSuccess::NAME, late).is_empty());
    }

    #[test]
    fn an_approval_resets_the_failures() {
        let events = vec![
            tx("f1", 0).bad_pin(),
            tx("f2", MIN).bad_pin(),
            tx("ok1", 2 * MIN),
            tx("ok2", 3 * MIN),
            tx("f3", 30 * MIN).bad_pin(),
            tx("ok3", 31 * MIN),
        ];
        let alerts = run(PinSuccess::NAME, events);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].evidence[0].as_str(), "f1");
    }

    #[test]
    fn passes_the_property_harness() {
        proptest_detector(PinSuccess::NAME);
    }
}
