//! `early_refill` (key: account): the same drug bought again long before the last supply ran out
//! — 超量开药, often by switching institutions to buy it again (DESIGN §12).
//!
//! Per person and supply group (an item's `group`, else its `code`) the state is a running
//! supply: an approved settlement's items with `days_supply` extend it to
//! max(previous end, purchase time) + days (the days of every item of the group on the
//! settlement added up). A settlement whose group's supply, before it, ends more than
//! `tolerance` (`chronic_tolerance` when its `visit_type` is `chronic`) after it is an early
//! refill. A `refunded` item gives its days back: the end moves back by them, never before the
//! refund's time. Items without `days_supply`, declined settlements, admissions and discharges
//! change nothing. A supply end is capped at `horizon` after the purchase, so no state matters
//! longer than the horizon after the key's last event.
//!
//! One alert per settlement, naming every group it refilled early; each group then stays quiet
//! for `cooldown` (24 h) on that person, a refill inside it counted as suppressed. Medium, high
//! when an earlier purchase still in supply was at another institution; action `review`.
//! Evidence: this settlement, then the earlier purchases of the running supply (those since the
//! group's supply last ran out, at most [`MAX_CHAIN`] of the latest), oldest first. This
//! settlement comes first so that each early refill has an alert id of its own (as
//! `trace_code_resettled` does).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{stable_hash32, Cooldown, Detector, Emitter, Finding};
use crate::model::{
    Action, EventId, EventTime, KeyKind, Millis, Outcome, Severity, Text, Transaction,
};
use crate::settlement::{EventType, VisitType};

/// Earlier purchases kept per group as evidence (the latest ones).
pub const MAX_CHAIN: usize = 8;
/// Supply groups tracked per person; beyond it the group whose supply ends first is forgotten.
pub const MAX_GROUPS: usize = 32;

const DAY_MS: i64 = 86_400_000;

/// `[detectors.early_refill]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyRefillConfig {
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
    /// A refill is early when the earlier supply ends more than this after it.
    #[serde(with = "humantime_serde")]
    pub tolerance: Duration,
    /// The tolerance for a settlement whose `visit_type` is `chronic` (门诊慢特病).
    #[serde(with = "humantime_serde")]
    pub chronic_tolerance: Duration,
    /// After an alert, how long the same group stays quiet on the same person.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Supply is counted at most this far ahead of a purchase, and forgotten this long after
    /// the person's last event.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
}

impl Default for EarlyRefillConfig {
    fn default() -> Self {
        EarlyRefillConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            tolerance: Duration::from_secs(3 * 86_400),
            chronic_tolerance: Duration::from_secs(7 * 86_400),
            cooldown: Duration::from_secs(86_400),
            horizon: Duration::from_secs(400 * 86_400),
        }
    }
}

impl EarlyRefillConfig {
    pub(crate) fn build(&self, key: &str) -> Result<EarlyRefill, ConfigError> {
        let tolerance = Millis::from_duration(self.tolerance);
        let chronic_tolerance = Millis::from_duration(self.chronic_tolerance);
        let horizon = positive(&format!("{key}.horizon"), self.horizon)?;
        if tolerance.0 >= horizon.0 || chronic_tolerance.0 >= horizon.0 {
            return Err(ConfigError::new(
                format!("{key}.tolerance"),
                "the tolerances must be shorter than the horizon",
            ));
        }
        let cooldown = positive(&format!("{key}.cooldown"), self.cooldown)?;
        if cooldown.0 > horizon.0 {
            return Err(ConfigError::new(
                format!("{key}.cooldown"),
                "must not be longer than the horizon (a person forgotten would forget it)",
            ));
        }
        Ok(EarlyRefill {
            tolerance,
            chronic_tolerance,
            cooldown,
            horizon,
        })
    }
}

#[derive(Clone, Debug)]
pub struct EarlyRefill {
    tolerance: Millis,
    chronic_tolerance: Millis,
    cooldown: Millis,
    horizon: Millis,
}

/// One purchase of the running supply, kept as evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Purchase {
    id: EventId,
    ts: EventTime,
    /// Stable hash of the institution, to say whether the refill is elsewhere.
    institution: u32,
}

/// The running supply of one group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Supply {
    group: Text,
    end: EventTime,
    /// The purchases since the supply last ran out, oldest first.
    chain: Vec<Purchase>,
    cooldown: Cooldown,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyRefillState {
    supplies: Vec<Supply>,
}

/// Days of supply per group on one event, groups in first-seen order.
fn days_by_group(tx: &Transaction) -> Vec<(&str, i64)> {
    let mut out: Vec<(&str, i64)> = Vec::new();
    for item in tx.items() {
        let Some(days) = item.days_supply else {
            continue;
        };
        let group = item.supply_key();
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, d)) => *d += i64::from(days),
            None => out.push((group, i64::from(days))),
        }
    }
    out
}

fn settlement(tx: &Transaction) -> bool {
    tx.event_type() == EventType::Settlement
}

impl EarlyRefill {
    fn tolerance_for(&self, tx: &Transaction) -> Millis {
        if tx.visit_type() == Some(VisitType::Chronic) {
            self.chronic_tolerance
        } else {
            self.tolerance
        }
    }

    fn give_back(&self, state: &mut EarlyRefillState, tx: &Transaction) {
        for (group, days) in days_by_group(tx) {
            if let Some(s) = state.supplies.iter_mut().find(|s| s.group == group) {
                if s.end > tx.ts {
                    s.end = s.end.saturating_sub(Millis(days * DAY_MS)).max(tx.ts);
                }
            }
        }
    }

    fn explain(&self, tx: &Transaction, early: &[(String, Millis, bool)]) -> String {
        let parts: Vec<String> = early
            .iter()
            .map(|(group, left, elsewhere)| {
                format!(
                    "{group} with {:.1} days of supply left{}",
                    left.0 as f64 / DAY_MS as f64,
                    if *elsewhere {
                        ", bought before at another institution"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        format!(
            "bought again while still supplied (tolerance {:.0} days): {}",
            self.tolerance_for(tx).0 as f64 / DAY_MS as f64,
            parts.join("; ")
        )
    }
}

impl Detector for EarlyRefill {
    const NAME: &'static str = "early_refill";
    const VERSION: u32 = 1;
    const KEY: KeyKind = KeyKind::Account;
    type State = EarlyRefillState;

    fn observe(&self, state: &mut EarlyRefillState, tx: &Transaction, emit: &mut Emitter<'_>) {
        // What the sweep may already have forgotten is forgotten here too, so that the group
        // ceiling below sees the same supplies whether the sweep ran or not.
        self.expire(state, tx.ts);
        if !settlement(tx) {
            return;
        }
        if tx.outcome == Outcome::Refunded {
            self.give_back(state, tx);
            return;
        }
        if tx.outcome != Outcome::Approved {
            return;
        }
        let groups = days_by_group(tx);
        if groups.is_empty() {
            return;
        }
        let here = stable_hash32(&tx.merchant_id);
        let tolerance = self.tolerance_for(tx);
        let mut early: Vec<(String, Millis, bool)> = Vec::new();
        let mut earlier: Vec<(EventTime, EventId)> = Vec::new();
        for &(group, _) in &groups {
            let Some(s) = state.supplies.iter_mut().find(|s| s.group == group) else {
                continue;
            };
            let left = s.end.since(tx.ts);
            if left.0 <= tolerance.0 {
                continue;
            }
            if s.cooldown.holds(tx.ts) {
                emit.suppressed();
                continue;
            }
            s.cooldown = Cooldown::until(tx.ts.saturating_add(self.cooldown));
            let elsewhere = s.chain.iter().any(|p| p.institution != here);
            early.push((group.to_string(), left, elsewhere));
            earlier.extend(s.chain.iter().map(|p| (p.ts, p.id.clone())));
        }
        if !early.is_empty() {
            earlier.sort();
            earlier.dedup();
            let window_start = earlier.first().map_or(tx.ts, |p| p.0);
            let mut evidence = vec![tx.event_id.clone()];
            evidence.extend(earlier.into_iter().map(|p| p.1));
            let elsewhere = early.iter().any(|e| e.2);
            let mut f = Finding::new(
                if elsewhere {
                    Severity::High
                } else {
                    Severity::Medium
                },
                Action::Review,
                window_start,
            );
            f.score = early.iter().map(|e| e.1 .0 as f64 / DAY_MS as f64).sum();
            f.explanation = self.explain(tx, &early);
            f.evidence = evidence;
            emit.fire_always(tx, f);
        }
        for (group, days) in groups {
            let cap = tx.ts.saturating_add(self.horizon);
            let add = Millis(days * DAY_MS);
            let purchase = Purchase {
                id: tx.event_id.clone(),
                ts: tx.ts,
                institution: here,
            };
            match state.supplies.iter_mut().find(|s| s.group == group) {
                Some(s) => {
                    if s.end <= tx.ts {
                        s.chain.clear();
                    }
                    s.end = s.end.max(tx.ts).saturating_add(add).min(cap);
                    if s.chain.len() == MAX_CHAIN {
                        s.chain.remove(0);
                    }
                    s.chain.push(purchase);
                }
                None => {
                    if state.supplies.len() == MAX_GROUPS {
                        forget_first_to_end(state);
                    }
                    state.supplies.push(Supply {
                        group: group.into(),
                        end: tx.ts.saturating_add(add).min(cap),
                        chain: vec![purchase],
                        cooldown: Cooldown::default(),
                    });
                }
            }
        }
    }

    fn creates_state(&self, tx: &Transaction) -> bool {
        settlement(tx)
            && tx.outcome == Outcome::Approved
            && tx.items().iter().any(|i| i.days_supply.is_some())
    }

    fn horizon(&self) -> Millis {
        self.horizon
    }

    const EXPIRES: bool = true;

    /// A supply that has run out and whose cool-down is over changes no later decision (the
    /// next purchase starts a new chain either way).
    fn expire(&self, state: &mut EarlyRefillState, now: EventTime) {
        state
            .supplies
            .retain(|s| s.end > now || s.cooldown.holds(now));
    }

    fn expires_after(&self) -> Millis {
        Millis(30 * DAY_MS)
    }

    fn is_idle(state: &EarlyRefillState) -> bool {
        state.supplies.is_empty()
    }

    fn heap_bytes(state: &EarlyRefillState) -> usize {
        state.supplies.capacity() * std::mem::size_of::<Supply>()
            + state
                .supplies
                .iter()
                .map(|s| {
                    s.chain.capacity() * std::mem::size_of::<Purchase>()
                        + s.chain.iter().map(|p| p.id.heap_share()).sum::<usize>()
                })
                .sum::<usize>()
    }
}

fn forget_first_to_end(state: &mut EarlyRefillState) {
    if let Some((i, _)) = state.supplies.iter().enumerate().min_by_key(|(_, s)| s.end) {
        state.supplies.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx, TxBuilder};
    use crate::Alert;

    const DAY: i64 = DAY_MS;

    fn buy(id: &str, day: f64, days: u32) -> TxBuilder {
        tx(id, (day * DAY as f64) as i64)
            .person("p1")
            .merchant("ph-1")
            .visit(VisitType::Pharmacy)
            .item("XA10BAA001", days, &[])
            .group("metformin")
    }

    fn evidence(alerts: &[Alert]) -> Vec<Vec<&str>> {
        alerts
            .iter()
            .map(|a| a.evidence.iter().map(|e| e.as_str()).collect())
            .collect()
    }

    fn alerts(events: Vec<TxBuilder>) -> Vec<Alert> {
        run(EarlyRefill::NAME, events)
    }

    #[test]
    fn a_refill_more_than_the_tolerance_early_fires_and_one_at_the_tolerance_does_not() {
        let early = alerts(vec![buy("b1", 0.0, 30), buy("b2", 26.9, 30)]);
        assert_eq!(evidence(&early), [vec!["b2", "b1"]]);
        let a = &early[0];
        assert_eq!((a.severity, a.action), (Severity::Medium, Action::Review));
        assert_eq!(a.subject.kind, KeyKind::Account);
        assert_eq!(a.subject.id.as_str(), "p1");
        assert!(
            a.explanation.contains("metformin with 3.1 days"),
            "{}",
            a.explanation
        );
        assert!(alerts(vec![buy("b1", 0.0, 30), buy("b2", 27.0, 30)]).is_empty());
    }

    #[test]
    fn a_chronic_visit_has_the_longer_tolerance() {
        let chronic = |b: TxBuilder| b.visit(VisitType::Chronic);
        assert!(alerts(vec![buy("b1", 0.0, 30), chronic(buy("b2", 23.0, 30))]).is_empty());
        assert_eq!(
            alerts(vec![buy("b1", 0.0, 30), chronic(buy("b2", 22.9, 30))]).len(),
            1
        );
    }

    #[test]
    fn supply_accumulates_and_the_chain_restarts_once_it_ran_out() {
        // b1 + b2 supply until day 60: b3 on day 50 is early, its evidence the whole chain.
        let got = alerts(vec![
            buy("b1", 0.0, 30),
            buy("b2", 28.0, 30),
            buy("b3", 50.0, 30),
            // Supply ends on day 90; b4 on day 95 starts a new chain, b5 is early against b4.
            buy("b4", 95.0, 30),
            buy("b5", 100.0, 30),
        ]);
        assert_eq!(evidence(&got), [vec!["b3", "b1", "b2"], vec!["b5", "b4"]]);
    }

    #[test]
    fn another_institution_makes_it_high() {
        let got = alerts(vec![
            buy("b1", 0.0, 30),
            buy("b2", 5.0, 30).merchant("ph-2"),
        ]);
        assert_eq!(got[0].severity, Severity::High);
        assert!(got[0].explanation.contains("another institution"));
    }

    #[test]
    fn a_refund_gives_its_days_back_but_not_before_its_own_time() {
        let refund = |id: &str, day: f64| buy(id, day, 30).refunded();
        assert!(alerts(vec![
            buy("b1", 0.0, 30),
            refund("r1", 1.0),
            buy("b2", 2.0, 30)
        ])
        .is_empty());
        // Two boxes, one returned: 30 days left from day 0, so day 10 is early.
        assert_eq!(
            alerts(vec![
                buy("b1", 0.0, 30)
                    .item("XA10BAA001", 30, &[])
                    .group("metformin"),
                refund("r1", 1.0),
                buy("b2", 10.0, 30),
            ])
            .len(),
            1
        );
    }

    #[test]
    fn the_cooldown_is_per_group_and_lasts_a_day() {
        let other = |id: &str, day: f64| {
            tx(id, (day * DAY as f64) as i64)
                .person("p1")
                .merchant("ph-1")
                .item("XC09CAA002", 28, &[])
        };
        let got = alerts(vec![
            buy("b1", 0.0, 30),
            other("o1", 0.0),
            buy("b2", 5.0, 30),
            buy("b3", 5.5, 30),
            other("o2", 5.6),
            buy("b4", 6.1, 30),
        ]);
        assert_eq!(
            evidence(&got),
            [
                vec!["b2", "b1"],
                vec!["o2", "o1"],
                vec!["b4", "b1", "b2", "b3"]
            ]
        );
    }

    #[test]
    fn two_groups_early_on_one_settlement_raise_one_alert() {
        let both = |id: &str, day: f64| buy(id, day, 30).item("XC09CAA002", 28, &[]);
        let got = alerts(vec![both("b1", 0.0), both("b2", 5.0)]);
        assert_eq!(evidence(&got), [vec!["b2", "b1"]]);
        assert!(
            got[0].explanation.contains("metformin") && got[0].explanation.contains("XC09CAA002")
        );
    }

    #[test]
    fn items_without_supply_declines_stays_and_other_people_change_nothing() {
        let got = alerts(vec![
            buy("b1", 0.0, 30),
            buy("n1", 1.0, 30).no_supply(),
            buy("d1", 2.0, 30).declined(crate::model::DeclineReason::InsufficientFunds),
            buy("o1", 3.0, 30).person("p2"),
            tx("s1", 4 * DAY).stay(EventType::Admission, "p1", "v1"),
        ]);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn supply_is_counted_at_most_a_horizon_ahead_and_bad_tables_are_refused() {
        // A 20-day horizon caps a 30-day box at day 20: on day 15 five days are left (early),
        // on day 18 two (not), where without the cap twelve would be.
        let mut engine = crate::testing::config_for(EarlyRefill::NAME);
        engine.detectors.early_refill.horizon = Duration::from_secs(20 * 86_400);
        let at = |day: f64| {
            crate::testing::run_config(
                engine.clone(),
                vec![buy("b1", 0.0, 30).build(), buy("b2", day, 30).build()],
            )
            .0
            .len()
        };
        assert_eq!((at(15.0), at(18.0)), (1, 0));
        assert_eq!(
            alerts(vec![buy("b1", 0.0, 30), buy("b2", 18.0, 30)]).len(),
            1
        );

        let cfg = EarlyRefillConfig {
            tolerance: Duration::from_secs(500 * 86_400),
            ..EarlyRefillConfig::default()
        };
        let err = cfg.build("detectors.early_refill").unwrap_err();
        assert!(err.to_string().contains("detectors.early_refill.tolerance"));
        assert!(EarlyRefillConfig {
            cooldown: Duration::ZERO,
            ..EarlyRefillConfig::default()
        }
        .build("detectors.early_refill")
        .is_err());
        let err = EarlyRefillConfig {
            cooldown: Duration::from_secs(500 * 86_400),
            ..EarlyRefillConfig::default()
        }
        .build("detectors.early_refill")
        .unwrap_err();
        assert!(err.to_string().contains("detectors.early_refill.cooldown"));
    }

    #[test]
    fn early_refill_passes_the_property_harness() {
        proptest_detector(EarlyRefill::NAME);
    }
}
