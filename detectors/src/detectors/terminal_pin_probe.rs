//! `terminal_pin_probe` (key: terminal): PIN probing across many cards at one terminal — a
//! skimmer, or a clerk trying stolen cards one after another. Fires when, within the sliding
//! window (t − `window`, t], at least `min_cards` distinct cards had a `bad_pin` decline at the
//! terminal and `bad_pin` declines are at least `min_failure_share` of the PIN attempts there
//! (approved + `bad_pin`); a busy terminal where a few customers mistype is not a probe.
//!
//! The condition is judged at every PIN attempt (an approval that pushes an old approval out of
//! the window can complete it too). Recommends `inspect_terminal`; evidence: the `bad_pin`
//! events in the window, oldest first. Cool-down per terminal: `cooldown` (30 min).
//!
//! Bounded state: at most `max_remembered` wrong PINs (the most recent) and
//! [`MAX_APPROVALS`] approval times per terminal; past them the oldest are forgotten first.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{heap_block, stable_hash32, Cooldown, Detector, Emitter, Finding};
use crate::model::{Action, EventId, EventTime, KeyKind, Millis, Severity, Transaction};

/// `[detectors.terminal_pin_probe]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerminalPinProbeConfig {
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
    /// Distinct cards with a wrong PIN at the terminal within `window` needed to fire.
    pub min_cards: u32,
    /// Sliding event-time window, (t − window, t].
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Smallest share of wrong PINs among the terminal's PIN attempts in the window.
    pub min_failure_share: f64,
    /// Most wrong PINs remembered per terminal (the evidence of one alert).
    pub max_remembered: u32,
    /// Quiet period on the terminal after an alert.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for TerminalPinProbeConfig {
    fn default() -> Self {
        TerminalPinProbeConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            min_cards: 5,
            window: Duration::from_secs(10 * 60),
            min_failure_share: 0.5,
            max_remembered: 64,
            cooldown: Duration::from_secs(30 * 60),
        }
    }
}

/// Most approval times remembered per terminal: far beyond any real terminal's rate in a
/// window, so that a flood of approvals cannot grow one terminal's state without bound.
pub const MAX_APPROVALS: usize = 4096;

impl TerminalPinProbeConfig {
    pub(crate) fn build(&self, key: &str) -> Result<TerminalPinProbe, ConfigError> {
        if self.min_cards < 1 {
            return Err(ConfigError::new(
                format!("{key}.min_cards"),
                "must be at least 1",
            ));
        }
        if !(self.min_failure_share.is_finite() && (0.0..=1.0).contains(&self.min_failure_share)) {
            return Err(ConfigError::new(
                format!("{key}.min_failure_share"),
                "must be a number from 0 to 1",
            ));
        }
        if self.max_remembered < self.min_cards {
            return Err(ConfigError::new(
                format!("{key}.max_remembered"),
                "must be at least min_cards",
            ));
        }
        Ok(TerminalPinProbe {
            min_cards: self.min_cards as usize,
            window: positive(&format!("{key}.window"), self.window)?,
            min_share: self.min_failure_share,
            max_remembered: self.max_remembered as usize,
            cooldown: Millis::from_duration(self.cooldown),
        })
    }
}

#[derive(Clone, Debug)]
pub struct TerminalPinProbe {
    min_cards: usize,
    window: Millis,
    min_share: f64,
    max_remembered: usize,
    cooldown: Millis,
}

/// One wrong PIN at the terminal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Failure {
    ts: EventTime,
    id: EventId,
    /// Stable hash of the card, to count distinct cards without keeping their ids.
    card: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TerminalPinProbeState {
    failures: VecDeque<Failure>,
    approvals: VecDeque<EventTime>,
    cooldown: Cooldown,
}

impl TerminalPinProbe {
    /// Forgets what fell out of (now − window, now].
    fn expire_window(&self, state: &mut TerminalPinProbeState, now: EventTime) {
        let cutoff = now.saturating_sub(self.window);
        while state.failures.front().is_some_and(|f| f.ts <= cutoff) {
            state.failures.pop_front();
        }
        while state.approvals.front().is_some_and(|t| *t <= cutoff) {
            state.approvals.pop_front();
        }
        if state.failures.is_empty() && state.failures.capacity() > 0 {
            state.failures = VecDeque::new();
        }
        if state.approvals.is_empty() && state.approvals.capacity() > 0 {
            state.approvals = VecDeque::new();
        }
    }
}

fn distinct_cards(failures: &VecDeque<Failure>) -> usize {
    let mut cards: Vec<u32> = failures.iter().map(|f| f.card).collect();
    cards.sort_unstable();
    cards.dedup();
    cards.len()
}

impl Detector for TerminalPinProbe {
    const NAME: &'static str = "terminal_pin_probe";
    const VERSION: u32 = 1;
    const EXPIRES: bool = true;
    const KEY: KeyKind = KeyKind::Terminal;
    type State = TerminalPinProbeState;

    fn observe(&self, state: &mut TerminalPinProbeState, tx: &Transaction, emit: &mut Emitter<'_>) {
        self.expire_window(state, tx.ts);
        // Only PIN attempts (DESIGN §12) move the terminal's share.
        if !tx.is_pin_attempt() {
            return;
        }
        if tx.is_bad_pin() {
            if state.failures.len() == self.max_remembered {
                state.failures.pop_front();
            }
            state.failures.push_back(Failure {
                ts: tx.ts,
                id: tx.event_id.clone(),
                card: stable_hash32(tx.card_id.as_str()),
            });
        } else {
            if state.approvals.len() == MAX_APPROVALS {
                state.approvals.pop_front();
            }
            state.approvals.push_back(tx.ts);
        }
        let failed = state.failures.len();
        if failed < self.min_cards {
            return;
        }
        let attempts = failed + state.approvals.len();
        let share = failed as f64 / attempts as f64;
        if share < self.min_share {
            return;
        }
        let cards = distinct_cards(&state.failures);
        if cards < self.min_cards {
            return;
        }
        let failures = &state.failures;
        emit.fire(&mut state.cooldown, self.cooldown, tx, || {
            let start = failures.front().map_or(tx.ts, |f| f.ts);
            let mut f = Finding::new(Severity::High, Action::InspectTerminal, start);
            f.evidence = failures.iter().map(|f| f.id.clone()).collect();
            f.score = cards as f64;
            f.explanation = format!(
                "{failed} wrong PINs on {cards} cards in {} at one terminal ({:.0}% of {attempts} PIN attempts)",
                tx.ts.since(start),
                share * 100.0
            );
            f
        });
    }

    fn expire(&self, state: &mut TerminalPinProbeState, now: EventTime) {
        self.expire_window(state, now);
        state.cooldown.expire(now);
    }

    fn creates_state(&self, tx: &Transaction) -> bool {
        tx.is_pin_attempt()
    }

    fn expires_after(&self) -> Millis {
        self.window
    }

    fn horizon(&self) -> Millis {
        self.window.max(self.cooldown)
    }

    fn is_idle(state: &TerminalPinProbeState) -> bool {
        state.failures.is_empty()
            && state.approvals.is_empty()
            && state.cooldown == Cooldown::default()
    }

    fn heap_bytes(state: &TerminalPinProbeState) -> usize {
        heap_block(state.failures.capacity() * std::mem::size_of::<Failure>())
            + state
                .failures
                .iter()
                .map(|f| f.id.heap_share())
                .sum::<usize>()
            + heap_block(state.approvals.capacity() * std::mem::size_of::<EventTime>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx, TxBuilder};

    const MIN: i64 = 60_000;

    /// A wrong PIN of `card` at terminal `t1` at `ms`.
    fn probe(id: &str, card: &str, ms: i64) -> TxBuilder {
        tx(id, ms).card(card).terminal("t1").bad_pin()
    }

    fn approval(id: &str, card: &str, ms: i64) -> TxBuilder {
        tx(id, ms).card(card).terminal("t1")
    }

    #[test]
    fn five_cards_with_wrong_pins_within_ten_minutes_fire() {
        let events: Vec<_> = (0..5)
            .map(|i| probe(&format!("p{i}"), &format!("c{i}"), i * 2 * MIN))
            .collect();
        let alerts = run(TerminalPinProbe::NAME, events);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.subject.kind, KeyKind::Terminal);
        assert_eq!(a.subject.id.as_str(), "t1");
        assert_eq!(a.card_id.as_str(), "c4", "the card of the triggering event");
        assert_eq!(a.action, Action::InspectTerminal);
        assert_eq!(a.evidence.len(), 5);
        assert_eq!(a.score, 5.0);
        assert_eq!(
            a.explanation,
            "5 wrong PINs on 5 cards in 8m at one terminal (100% of 5 PIN attempts)"
        );
    }

    #[test]
    fn the_window_is_open_at_its_start() {
        // The first failure is exactly ten minutes before the fifth: outside (t − 10m, t].
        let mut events: Vec<_> = (0..4)
            .map(|i| probe(&format!("p{i}"), &format!("c{i}"), i * MIN))
            .collect();
        events[0] = probe("p0", "c0", 0);
        events.push(probe("p4", "c4", 10 * MIN));
        assert!(run(TerminalPinProbe::NAME, events.clone()).is_empty());
        events.pop();
        events.push(probe("p4", "c4", 10 * MIN - 1));
        assert_eq!(run(TerminalPinProbe::NAME, events).len(), 1);
    }

    #[test]
    fn four_cards_or_one_card_five_times_do_not_fire() {
        let four: Vec<_> = (0..4)
            .map(|i| probe(&format!("p{i}"), &format!("c{i}"), i * MIN))
            .collect();
        assert!(run(TerminalPinProbe::NAME, four).is_empty());
        let one: Vec<_> = (0..5)
            .map(|i| probe(&format!("p{i}"), "c0", i * MIN))
            .collect();
        assert!(run(TerminalPinProbe::NAME, one).is_empty());
    }

    #[test]
    fn a_busy_terminal_with_a_few_mistakes_is_not_a_probe() {
        // Five cards mistype once each, among six approvals: 5 of 11 attempts is under half.
        let mut events = Vec::new();
        for i in 0..6 {
            events.push(approval(&format!("a{i}"), &format!("ok{i}"), i * 30_000));
        }
        for i in 0..5 {
            events.push(probe(
                &format!("p{i}"),
                &format!("c{i}"),
                200_000 + i * 30_000,
            ));
        }
        assert!(run(TerminalPinProbe::NAME, events.clone()).is_empty());
        // Exactly half fires (5 of 10), the share is "at least".
        events.remove(0);
        let alerts = run(TerminalPinProbe::NAME, events);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].explanation.contains("(50% of 10 PIN attempts)"));
    }

    #[test]
    fn other_declines_and_other_terminals_do_not_count() {
        let mut events: Vec<_> = (0..4)
            .map(|i| probe(&format!("p{i}"), &format!("c{i}"), i * MIN))
            .collect();
        events.push(
            tx("x", 5 * MIN)
                .card("c9")
                .terminal("t1")
                .declined(crate::model::DeclineReason::InsufficientFunds),
        );
        events.push(tx("y", 6 * MIN).card("c8").terminal("t2").bad_pin());
        assert!(run(TerminalPinProbe::NAME, events).is_empty());
    }

    #[test]
    fn cooldown_holds_for_thirty_minutes_per_terminal() {
        let mut events: Vec<_> = (0..8)
            .map(|i| probe(&format!("a{i}"), &format!("c{i}"), i * MIN))
            .collect();
        events
            .extend((0..5).map(|i| probe(&format!("b{i}"), &format!("d{i}"), 40 * MIN + i * MIN)));
        let alerts = run(TerminalPinProbe::NAME, events);
        let firsts: Vec<_> = alerts.iter().map(|a| a.evidence[0].as_str()).collect();
        assert_eq!(firsts, ["a0", "b0"]);
    }

    #[test]
    fn a_terminal_without_terminal_id_is_its_merchant() {
        let events: Vec<_> = (0..5)
            .map(|i| {
                tx(&format!("p{i}"), i * MIN)
                    .card(&format!("c{i}"))
                    .merchant("pharmacy-7")
                    .bad_pin()
            })
            .collect();
        let alerts = run(TerminalPinProbe::NAME, events);
        assert_eq!(alerts[0].subject.id.as_str(), "pharmacy-7");
    }

    #[test]
    fn state_goes_once_the_window_is_empty() {
        let mut s = TerminalPinProbeState::default();
        let d = TerminalPinProbeConfig::default().build("k").unwrap();
        s.approvals.push_back(EventTime(0));
        d.expire_window(&mut s, EventTime(10 * MIN));
        assert!(TerminalPinProbe::is_idle(&s));
    }

    #[test]
    fn passes_the_property_harness() {
        proptest_detector(TerminalPinProbe::NAME);
    }
}
