//! `settle_during_stay` (key: account): an outpatient or pharmacy settlement while the person is
//! an inpatient — 挂床 (a bed kept while the patient is elsewhere) or 虚假住院 (a stay that never
//! was) — and a second admission while a stay at another institution is open (DESIGN §12).
//!
//! An `admission` with a `visit_id` opens a stay; the `discharge` with the same `visit_id` closes
//! it; a stay with no discharge is forgotten `max_stay` (180 d) after its admission. An approved
//! settlement whose `visit_type` is `outpatient` or `pharmacy` (not `emergency`, `chronic`,
//! `inpatient` or absent) falls in a stay when it comes strictly after the admission and before
//! the discharge in the stage's (event time, event id) order — a settlement in the same
//! millisecond as the discharge but with an id that sorts first counts as inside (the stage
//! cannot wait for a discharge that may never come). An admission with no `visit_id` cannot be
//! matched to its discharge and is ignored; a repeated admission of an open stay changes
//! nothing.
//!
//! One alert per stay: the first settlement in it (reason `settled_during_stay`) or the first
//! admission elsewhere while it is open (reason `overlapping_admission`) raises it; later ones
//! are counted as suppressed. An event falling in several stays not yet alerted raises one
//! alert naming them all. High when a stay is at another institution than the event, medium at
//! the same one; action `investigate_stay`. Evidence: this event, then the admissions (this
//! event first, so that each alert has an id of its own).

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{stable_hash32, Detector, Emitter, Finding};
use crate::model::{
    Action, EventId, EventTime, KeyKind, Millis, Outcome, Severity, Text, Transaction,
};
use crate::settlement::{EventType, VisitType};

/// Open stays tracked per person; beyond it the oldest is forgotten.
pub const MAX_STAYS: usize = 8;

/// `[detectors.settle_during_stay]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettleDuringStayConfig {
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
    /// A stay with no discharge is forgotten this long after its admission.
    #[serde(with = "humantime_serde")]
    pub max_stay: Duration,
}

impl Default for SettleDuringStayConfig {
    fn default() -> Self {
        SettleDuringStayConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            max_stay: Duration::from_secs(180 * 86_400),
        }
    }
}

impl SettleDuringStayConfig {
    pub(crate) fn build(&self, key: &str) -> Result<SettleDuringStay, ConfigError> {
        Ok(SettleDuringStay {
            max_stay: positive(&format!("{key}.max_stay"), self.max_stay)?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct SettleDuringStay {
    max_stay: Millis,
}

/// An open stay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Stay {
    visit: Text,
    admitted: EventTime,
    admission: EventId,
    /// Stable hash of the institution, to say whether the event is elsewhere.
    institution: u32,
    /// Whether the stay has raised its alert.
    alerted: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SettleDuringStayState {
    stays: Vec<Stay>,
}

/// An approved settlement of a kind that cannot happen while in a hospital bed.
fn counted_settlement(tx: &Transaction) -> bool {
    tx.event_type() == EventType::Settlement
        && tx.outcome == Outcome::Approved
        && matches!(
            tx.visit_type(),
            Some(VisitType::Outpatient | VisitType::Pharmacy)
        )
}

impl SettleDuringStay {
    fn forget_old(&self, state: &mut SettleDuringStayState, now: EventTime) {
        state
            .stays
            .retain(|s| now.since(s.admitted).0 <= self.max_stay.0);
    }

    /// Raises one alert for the stays in `inside` not yet alerted, or counts it as suppressed.
    fn judge(
        &self,
        state: &mut SettleDuringStayState,
        tx: &Transaction,
        inside: impl Fn(&Stay) -> bool,
        reason: &'static str,
        emit: &mut Emitter<'_>,
    ) {
        let here = stable_hash32(&tx.merchant_id);
        let mut any = false;
        let mut named: Vec<&mut Stay> = Vec::new();
        for s in state.stays.iter_mut().filter(|s| inside(s)) {
            any = true;
            if !s.alerted {
                named.push(s);
            }
        }
        if named.is_empty() {
            if any {
                emit.suppressed();
            }
            return;
        }
        let elsewhere = named.iter().any(|s| s.institution != here);
        let first = named.iter().map(|s| s.admitted).min().unwrap_or(tx.ts);
        let mut f = Finding::new(
            if elsewhere {
                Severity::High
            } else {
                Severity::Medium
            },
            Action::InvestigateStay,
            first,
        );
        f.evidence = std::iter::once(tx.event_id.clone())
            .chain(named.iter().map(|s| s.admission.clone()))
            .collect();
        f.score = named.len() as f64 + f64::from(u8::from(elsewhere));
        let stays: Vec<String> = named
            .iter()
            .map(|s| {
                format!(
                    "{} (admitted {} before, {})",
                    s.visit,
                    tx.ts.since(s.admitted),
                    if s.institution == here {
                        "same institution"
                    } else {
                        "another institution"
                    }
                )
            })
            .collect();
        f.explanation = match reason {
            "overlapping_admission" => format!("admitted while still in stay {}", stays.join(", ")),
            _ => format!(
                "{} settlement while an inpatient in stay {}",
                tx.visit_type().map_or("a", |v| v.as_str()),
                stays.join(", ")
            ),
        };
        f.reason = Some(Cow::Borrowed(reason));
        for s in named {
            s.alerted = true;
        }
        emit.fire_always(tx, f);
    }
}

impl Detector for SettleDuringStay {
    const NAME: &'static str = "settle_during_stay";
    const VERSION: u32 = 1;
    const KEY: KeyKind = KeyKind::Account;
    type State = SettleDuringStayState;

    fn observe(&self, state: &mut SettleDuringStayState, tx: &Transaction, emit: &mut Emitter<'_>) {
        self.forget_old(state, tx.ts);
        match tx.event_type() {
            EventType::Admission => {
                let Some(visit) = tx.visit_id() else {
                    return;
                };
                if state.stays.iter().any(|s| s.visit == visit) {
                    return;
                }
                let here = stable_hash32(&tx.merchant_id);
                let now = tx.ts;
                self.judge(
                    state,
                    tx,
                    |s| s.institution != here && s.admitted < now,
                    "overlapping_admission",
                    emit,
                );
                if state.stays.len() == MAX_STAYS {
                    state.stays.remove(0);
                }
                state.stays.push(Stay {
                    visit: visit.into(),
                    admitted: tx.ts,
                    admission: tx.event_id.clone(),
                    institution: here,
                    alerted: false,
                });
            }
            EventType::Discharge => {
                if let Some(visit) = tx.visit_id() {
                    state.stays.retain(|s| s.visit != visit);
                }
            }
            EventType::Settlement => {
                if counted_settlement(tx) {
                    let now = tx.ts;
                    self.judge(state, tx, |s| s.admitted < now, "settled_during_stay", emit);
                }
            }
        }
    }

    fn creates_state(&self, tx: &Transaction) -> bool {
        tx.event_type() == EventType::Admission && tx.visit_id().is_some()
    }

    fn horizon(&self) -> Millis {
        self.max_stay
    }

    const EXPIRES: bool = true;

    fn expire(&self, state: &mut SettleDuringStayState, now: EventTime) {
        self.forget_old(state, now);
    }

    fn is_idle(state: &SettleDuringStayState) -> bool {
        state.stays.is_empty()
    }

    fn heap_bytes(state: &SettleDuringStayState) -> usize {
        state.stays.capacity() * std::mem::size_of::<Stay>()
            + state
                .stays
                .iter()
                .map(|s| {
                    s.admission.heap_share()
                        + if s.visit.is_heap_allocated() {
                            s.visit.len()
                        } else {
                            0
                        }
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx, TxBuilder};
    use crate::Alert;

    const DAY: i64 = 86_400_000;

    fn admit(id: &str, day: f64, visit: &str, at: &str) -> TxBuilder {
        tx(id, (day * DAY as f64) as i64)
            .stay(EventType::Admission, "p1", visit)
            .merchant(at)
    }

    fn discharge(id: &str, day: f64, visit: &str, at: &str) -> TxBuilder {
        tx(id, (day * DAY as f64) as i64)
            .stay(EventType::Discharge, "p1", visit)
            .merchant(at)
    }

    fn buy(id: &str, day: f64, at: &str, v: VisitType) -> TxBuilder {
        tx(id, (day * DAY as f64) as i64)
            .person("p1")
            .merchant(at)
            .visit(v)
    }

    fn evidence(alerts: &[Alert]) -> Vec<(Vec<&str>, &str)> {
        alerts
            .iter()
            .map(|a| {
                (
                    a.evidence.iter().map(|e| e.as_str()).collect(),
                    a.reason.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    fn alerts(events: Vec<TxBuilder>) -> Vec<Alert> {
        run(SettleDuringStay::NAME, events)
    }

    #[test]
    fn a_pharmacy_settlement_during_a_stay_fires_once_per_stay() {
        let got = alerts(vec![
            admit("a1", 0.0, "v1", "hosp-1"),
            buy("p1", 2.0, "ph-9", VisitType::Pharmacy),
            buy("p2", 3.0, "ph-9", VisitType::Outpatient),
            discharge("d1", 5.0, "v1", "hosp-1"),
            buy("p3", 6.0, "ph-9", VisitType::Pharmacy),
        ]);
        assert_eq!(evidence(&got), [(vec!["p1", "a1"], "settled_during_stay")]);
        let a = &got[0];
        assert_eq!(
            (a.severity, a.action),
            (Severity::High, Action::InvestigateStay)
        );
        assert_eq!(a.subject.kind, KeyKind::Account);
        assert!(
            a.explanation.contains("another institution"),
            "{}",
            a.explanation
        );
    }

    #[test]
    fn only_outpatient_and_pharmacy_settlements_strictly_inside_count() {
        let got = alerts(vec![
            buy("p0", 1.0, "hosp-1", VisitType::Pharmacy),
            admit("a1", 1.0, "v1", "hosp-1"),
            buy("e1", 2.0, "hosp-1", VisitType::Emergency),
            buy("i1", 2.0, "hosp-1", VisitType::Inpatient),
            buy("c1", 2.0, "hosp-1", VisitType::Chronic),
            buy("r1", 2.5, "hosp-1", VisitType::Pharmacy).refunded(),
            buy("n1", 3.0, "hosp-1", VisitType::Pharmacy)
                .declined(crate::model::DeclineReason::InsufficientFunds),
            discharge("d1", 4.0, "v1", "hosp-1"),
            // The same day, after the discharge: the near miss.
            buy("e2", 4.1, "hosp-1", VisitType::Emergency),
            buy("p2", 4.2, "ph-1", VisitType::Pharmacy),
        ]);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn the_same_institution_is_medium() {
        let got = alerts(vec![
            admit("a1", 0.0, "v1", "hosp-1"),
            buy("o1", 1.0, "hosp-1", VisitType::Outpatient),
        ]);
        assert_eq!(got[0].severity, Severity::Medium);
    }

    #[test]
    fn a_second_admission_elsewhere_fires_and_one_at_the_same_place_does_not() {
        let got = alerts(vec![
            admit("a1", 0.0, "v1", "hosp-1"),
            admit("a2", 1.0, "v2", "hosp-1"),
            admit("a1-again", 1.5, "v1", "hosp-1"),
            admit("a3", 2.0, "v3", "hosp-2"),
            buy("p1", 3.0, "ph-1", VisitType::Pharmacy),
        ]);
        // a3 opens while v1 and v2 are open at hosp-1: one alert naming both; p1 falls in v3,
        // which has not alerted yet.
        assert_eq!(
            evidence(&got),
            [
                (vec!["a3", "a1", "a2"], "overlapping_admission"),
                (vec!["p1", "a3"], "settled_during_stay"),
            ]
        );
    }

    #[test]
    fn a_stay_without_discharge_is_forgotten_after_max_stay() {
        assert_eq!(
            alerts(vec![
                admit("a1", 0.0, "v1", "hosp-1"),
                buy("p1", 180.0, "ph-1", VisitType::Pharmacy),
            ])
            .len(),
            1
        );
        assert!(alerts(vec![
            admit("a1", 0.0, "v1", "hosp-1"),
            buy("p1", 180.01, "ph-1", VisitType::Pharmacy),
        ])
        .is_empty());
    }

    #[test]
    fn an_admission_without_visit_id_is_ignored() {
        let mut a = admit("a1", 0.0, "v1", "hosp-1").build();
        if let Some(s) = a.settlement.as_mut() {
            std::sync::Arc::make_mut(s).visit_id = None;
        }
        let got = crate::testing::run_config(
            crate::testing::config_for(SettleDuringStay::NAME),
            vec![a, buy("p1", 1.0, "ph-1", VisitType::Pharmacy).build()],
        )
        .0;
        assert!(got.is_empty());
    }

    #[test]
    fn settle_during_stay_passes_the_property_harness() {
        proptest_detector(SettleDuringStay::NAME);
    }
}
