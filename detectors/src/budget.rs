//! Alert budgets (DESIGN §14): `[detectors.<name>] max_alerts_per_hour` caps what one detector
//! may send per hour of event time, per partition, so that a rule gone mad overnight cannot flood
//! the analysts' queue — without turning it off.
//!
//! The hour is the alert's minute of event time and the 59 minutes before it; its rate counts
//! every alert the detector raised in it, sent or withheld (a detector still firing at a mad rate
//! stays muted). An alert that brings the rate above the budget is withheld and counted
//! (`withheld`); the first one withheld raises one `budget_exceeded` alert in its place (the
//! withheld alert's detector, subject and evidence, reason `budget_exceeded`, its own id), and
//! the detector resumes with the first alert that finds the hour's rate within the budget.
//!
//! Budgets gate output only: detectors keep their state and see each other's alerts as before
//! (`card_lock` reacts to alerts withheld here). The gate depends on alert times alone, never on
//! arrival or the clock, and its state travels in snapshots: replay ≡ live, crash ≡ no crash.

use std::borrow::Cow;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Counts;
use crate::model::{Action, Alert, AlertId, DetectorName, Severity};

const MINUTE_MS: i64 = 60_000;
/// Minutes in the sliding hour.
const MINUTES: i64 = 60;

/// The reason of the alert that says a budget ran out.
pub const BUDGET_EXCEEDED: &str = "budget_exceeded";

/// One detector's budget and the hour behind it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    /// (minute of event time, alerts raised in it), oldest first; at most [`MINUTES`] entries.
    minutes: VecDeque<(i64, u32)>,
    /// Alerts are being withheld (the `budget_exceeded` alert has been sent).
    exceeded: bool,
}

impl BudgetState {
    /// Counts one alert at `ts_ms` and says whether it fits the budget `limit`.
    fn admit(&mut self, ts_ms: i64, limit: u32) -> bool {
        let minute = ts_ms.div_euclid(MINUTE_MS);
        while self
            .minutes
            .front()
            .is_some_and(|&(m, _)| m <= minute - MINUTES)
        {
            self.minutes.pop_front();
        }
        match self.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n = n.saturating_add(1),
            // Alerts leave in event-time order; an older minute (never expected) joins the newest.
            Some((m, n)) if *m > minute => *n = n.saturating_add(1),
            _ => self.minutes.push_back((minute, 1)),
        }
        let rate: u64 = self.minutes.iter().map(|&(_, n)| u64::from(n)).sum();
        rate <= u64::from(limit)
    }
}

/// The budgets of one stage's detectors.
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    /// (detector, alerts per hour, state), for the detectors that have a budget.
    pub(crate) entries: Vec<(DetectorName, u32, BudgetState)>,
}

impl Budgets {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Withholds, from `alerts[start..]`, what goes over a budget (counted in
    /// `counts.withheld`), putting one `budget_exceeded` alert in place of the first one
    /// withheld in a spell.
    pub fn gate(&mut self, alerts: &mut Vec<Alert>, start: usize, counts: &mut Counts) {
        if self.entries.is_empty() || alerts.len() <= start {
            return;
        }
        let mut kept = start;
        for i in start..alerts.len() {
            let detector = alerts[i].detector;
            let verdict = self
                .entries
                .iter_mut()
                .find(|(d, _, _)| *d == detector)
                .map(|(_, limit, state)| {
                    let fits = state.admit(alerts[i].ts.0, *limit);
                    let first_out = !fits && !state.exceeded;
                    state.exceeded = !fits;
                    (fits, first_out, *limit)
                });
            match verdict {
                None | Some((true, _, _)) => {
                    alerts.swap(kept, i);
                    kept += 1;
                }
                Some((false, first_out, limit)) => {
                    counts.withheld[detector.index()] += 1;
                    if first_out {
                        let notice = budget_alert(&alerts[i], limit);
                        counts.alerts[detector.index()] += 1;
                        alerts[i] = notice;
                        alerts.swap(kept, i);
                        kept += 1;
                    }
                    counts.alerts[detector.index()] -= 1;
                }
            }
        }
        alerts.truncate(kept);
    }

    /// The states to snapshot, by detector name.
    pub(crate) fn states(&self) -> Vec<(String, BudgetState)> {
        self.entries
            .iter()
            .map(|(d, _, s)| (d.as_str().to_string(), s.clone()))
            .collect()
    }

    /// Puts back snapshotted states of detectors that still have a budget.
    pub(crate) fn restore(&mut self, states: Vec<(String, BudgetState)>) {
        for (name, state) in states {
            if let Some(entry) = self.entries.iter_mut().find(|(d, _, _)| d.as_str() == name) {
                entry.2 = state;
            }
        }
    }
}

/// The alert that says `withheld`'s detector went over its budget.
fn budget_alert(withheld: &Alert, limit: u32) -> Alert {
    let mut h = Sha256::new();
    h.update(withheld.alert_id.0.as_bytes());
    h.update([0x1f]);
    h.update(BUDGET_EXCEEDED.as_bytes());
    let digest = h.finalize();
    let mut a = withheld.clone();
    a.alert_id = AlertId(digest[..16].iter().map(|b| format!("{b:02x}")).collect());
    a.severity = Severity::Medium;
    a.action = Action::Review;
    a.action_for = None;
    a.features = Vec::new();
    a.score = f64::from(limit);
    a.reason = Some(Cow::Borrowed(BUDGET_EXCEEDED));
    a.explanation = format!(
        "{} raised more than its budget of {limit} alerts in an hour of event time; its alerts \
         are withheld (and counted) until its rate falls back within the budget. The first \
         withheld alert's evidence is attached",
        withheld.detector.as_str()
    );
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::engine::{Engine, Output};
    use crate::registry::REGISTRY;
    use crate::testing::{proptest_all_detectors_with_budgets, run_config, tx};

    const MIN: i64 = MINUTE_MS;

    #[test]
    fn the_hour_counts_this_minute_and_the_59_before() {
        let mut s = BudgetState::default();
        assert!(s.admit(0, 2));
        assert!(s.admit(59 * MIN, 2));
        assert!(!s.admit(59 * MIN + 1, 2), "three in the hour");
        // Minute 60: minute 0 has left the hour; minutes 59 (two alerts) and 60 remain.
        assert!(!s.admit(60 * MIN, 2));
        assert!(
            !s.admit(118 * MIN, 2),
            "minute 59 still counts at minute 118"
        );
        // Withheld alerts count too: minutes 60, 118 and 119 make three.
        assert!(!s.admit(119 * MIN, 2));
        // At minute 178 only minutes 119 and 178 are left: two, within the budget.
        assert!(s.admit(178 * MIN, 2));
        let mut quiet = BudgetState::default();
        assert!(quiet.admit(0, 1));
        assert!(
            quiet.admit(60 * MIN, 1),
            "an hour later the rate is back to one"
        );
    }

    /// Five cards, each with three wrong PINs within a minute, one card every five minutes:
    /// `failed_pin` fires once per card.
    fn bursts(start: i64, cards: usize) -> Vec<crate::model::Transaction> {
        (0..cards)
            .flat_map(|c| {
                (0..3).map(move |k| {
                    tx(
                        &format!("e{start}-{c}-{k}"),
                        start + c as i64 * 5 * MIN + k * 1000,
                    )
                    .card(&format!("card{start}-{c}"))
                    .bad_pin()
                    .build()
                })
            })
            .collect()
    }

    fn budget_cfg(per_hour: u32) -> EngineConfig {
        let mut cfg = crate::testing::config_for("failed_pin");
        for r in REGISTRY.iter().filter(|r| r.name == "failed_pin") {
            (r.set_budget)(&mut cfg.detectors, Some(per_hour));
        }
        cfg
    }

    #[test]
    fn over_budget_alerts_are_withheld_one_notice_says_so_and_the_detector_resumes() {
        let mut events = bursts(0, 5);
        // Two hours later the rate is back within the budget.
        events.extend(bursts(3 * 60 * MIN, 1));
        let (alerts, out, _) = run_config(budget_cfg(2), events.clone());
        let reasons: Vec<Option<&str>> = alerts.iter().map(|a| a.reason.as_deref()).collect();
        assert_eq!(reasons, [None, None, Some(BUDGET_EXCEEDED), None]);
        let fp = crate::model::DetectorName::named("failed_pin").index();
        assert_eq!(out.counts.withheld[fp], 3, "cards 3, 4 and 5");
        assert_eq!(out.counts.alerts[fp], 4);
        let notice = &alerts[2];
        assert_eq!(notice.card_id.as_str(), "card0-2");
        assert!(notice.explanation.contains("budget of 2 alerts"));
        let (unbudgeted, _, _) = run_config(crate::testing::config_for("failed_pin"), events);
        assert_eq!(unbudgeted.len(), 6);
        assert_eq!(notice.evidence, unbudgeted[2].evidence);
        assert_ne!(notice.alert_id, unbudgeted[2].alert_id);
        assert_eq!(alerts[3].alert_id, unbudgeted[5].alert_id);
    }

    #[test]
    fn the_budget_state_travels_in_snapshots_and_leaves_detector_versions_alone() {
        let events = bursts(0, 5);
        let (reference, _, _) = run_config(budget_cfg(2), events.clone());
        for cut in 0..events.len() {
            let mut first = Engine::new(budget_cfg(2)).unwrap();
            let mut out = Output::default();
            for e in &events[..cut] {
                first.admit(e.clone(), &mut out);
            }
            let restored = Engine::restore(budget_cfg(2), &first.snapshot(0)).unwrap();
            let mut second = restored.engine;
            for e in &events[cut..] {
                second.admit(e.clone(), &mut out);
            }
            second.drain(&mut out);
            assert_eq!(out.alerts, reference, "cut at {cut}");
        }
        // A budget changes neither `detector_version` nor the section's fingerprint.
        let (plain, _, _) = run_config(crate::testing::config_for("failed_pin"), events);
        assert_eq!(plain[0].detector_version, reference[0].detector_version);
    }

    #[test]
    fn a_budget_of_zero_is_refused_naming_its_key() {
        let err = Engine::new(budget_cfg(0)).unwrap_err();
        assert!(
            err.to_string()
                .contains("detectors.failed_pin.max_alerts_per_hour"),
            "{err}"
        );
    }

    #[test]
    fn every_detector_on_a_budget_passes_the_property_harness() {
        proptest_all_detectors_with_budgets();
    }
}
