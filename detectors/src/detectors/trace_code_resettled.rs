//! `trace_code_resettled` (key: trace_code): a drug's traceability code (追溯码, one per box)
//! settled again — the resold-drug pattern (回流药) of DESIGN §12.
//!
//! An approved settlement registers every code of its items; an approved settlement naming a
//! code that an earlier approved settlement already named, and that no `refunded` event has
//! returned since, raises one alert per code, every time it happens. A refund naming the code
//! returns it: the next sale registers it afresh. Items with `split: true` (a box sold in parts)
//! neither register their codes nor are checked — the stage never routes them here
//! ([`crate::stage::for_each_key`]). Declined settlements, admissions and discharges change
//! nothing. A code is remembered for `horizon` (400 days) after its last event.
//!
//! High, action `investigate_resale`; evidence: this settlement, then the first one (the first
//! id names the alert, so each re-settlement of one code has an alert id of its own); the
//! explanation says whether the institution and the person differ.
//!
//! Alone in its stage (as today), it keeps its codes in a [`crate::codebook`] — 52 bytes a code
//! instead of the generic key table's ~140 — with exactly the decisions written here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{positive, ConfigError};
use crate::detector::{stable_hash32, Detector, Emitter, Finding};
use crate::model::{Action, EventId, EventTime, KeyKind, Millis, Outcome, Severity, Transaction};
use crate::settlement::EventType;

/// `[detectors.trace_code_resettled]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceCodeResettledConfig {
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
    /// How long a code is remembered after its last event.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
}

impl Default for TraceCodeResettledConfig {
    fn default() -> Self {
        TraceCodeResettledConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            horizon: Duration::from_secs(400 * 86_400),
        }
    }
}

impl TraceCodeResettledConfig {
    pub(crate) fn build(&self, key: &str) -> Result<TraceCodeResettled, ConfigError> {
        Ok(TraceCodeResettled {
            horizon: positive(&format!("{key}.horizon"), self.horizon)?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct TraceCodeResettled {
    horizon: Millis,
}

/// The settlement that holds the code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settled {
    pub ts: EventTime,
    pub id: EventId,
    /// Stable hashes of the institution and the person, to say whether they differ.
    pub institution: u32,
    pub person: u32,
}

impl Settled {
    pub(crate) fn of(tx: &Transaction) -> Settled {
        Settled {
            ts: tx.ts,
            id: tx.event_id.clone(),
            institution: institution(tx),
            person: person(tx),
        }
    }

    /// The alert for `tx`, which settles `code` again.
    pub(crate) fn resettled_by(&self, tx: &Transaction, code: &str) -> Finding {
        let other_place = self.institution != institution(tx);
        let other_person = self.person != person(tx);
        let mut f = Finding::new(Severity::High, Action::InvestigateResale, self.ts);
        f.evidence = vec![tx.event_id.clone(), self.id.clone()];
        f.score = 1.0 + f64::from(u8::from(other_place)) + f64::from(u8::from(other_person));
        f.explanation = format!(
            "traceability code {code} settled again {} after its first settlement, {} and {}",
            tx.ts.since(self.ts),
            if other_place {
                "at another institution"
            } else {
                "at the same institution"
            },
            if other_person {
                "by another person"
            } else {
                "by the same person"
            },
        );
        f
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceCodeResettledState {
    pub(crate) held: Option<Settled>,
}

pub(crate) fn institution(tx: &Transaction) -> u32 {
    stable_hash32(&tx.merchant_id)
}

pub(crate) fn person(tx: &Transaction) -> u32 {
    stable_hash32(tx.account_id.as_deref().unwrap_or(tx.card_id.as_str()))
}

/// An approved settlement: registers the codes it names, or re-settles them.
pub(crate) fn settles(tx: &Transaction) -> bool {
    tx.event_type() == EventType::Settlement && tx.outcome == Outcome::Approved
}

/// A refund: returns the codes it names.
pub(crate) fn returns(tx: &Transaction) -> bool {
    tx.event_type() == EventType::Settlement && tx.outcome == Outcome::Refunded
}

impl Detector for TraceCodeResettled {
    const NAME: &'static str = "trace_code_resettled";
    const VERSION: u32 = 1;
    const KEY: KeyKind = KeyKind::TraceCode;
    type State = TraceCodeResettledState;

    fn observe(
        &self,
        state: &mut TraceCodeResettledState,
        tx: &Transaction,
        emit: &mut Emitter<'_>,
    ) {
        if returns(tx) {
            state.held = None;
            return;
        }
        if !settles(tx) {
            return;
        }
        let Some(first) = &state.held else {
            state.held = Some(Settled::of(tx));
            return;
        };
        let f = first.resettled_by(tx, emit.subject().id.as_str());
        emit.fire_always(tx, f);
    }

    fn creates_state(&self, tx: &Transaction) -> bool {
        settles(tx)
    }

    fn horizon(&self) -> Millis {
        self.horizon
    }

    fn is_idle(state: &TraceCodeResettledState) -> bool {
        state.held.is_none()
    }

    fn heap_bytes(state: &TraceCodeResettledState) -> usize {
        state.held.as_ref().map_or(0, |s| s.id.heap_share())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx, TxBuilder};

    const DAY: i64 = 86_400_000;

    fn sale(id: &str, ms: i64, code: &str) -> TxBuilder {
        tx(id, ms).item("drug", 30, &[code])
    }

    fn evidence(alerts: &[crate::Alert]) -> Vec<Vec<&str>> {
        alerts
            .iter()
            .map(|a| a.evidence.iter().map(|e| e.as_str()).collect())
            .collect()
    }

    #[test]
    fn a_code_settled_twice_raises_one_alert_per_resettlement() {
        let alerts = run(
            TraceCodeResettled::NAME,
            vec![
                sale("s1", 0, "8100001"),
                sale("s2", DAY, "8100001").merchant("ph-far").person("p9"),
                sale("s3", 2 * DAY, "8100001"),
                sale("other", 3 * DAY, "8100002"),
            ],
        );
        assert_eq!(evidence(&alerts), [vec!["s2", "s1"], vec!["s3", "s1"]]);
        let a = &alerts[0];
        assert_eq!(a.subject.kind, KeyKind::TraceCode);
        assert_eq!(a.subject.id.as_str(), "8100001");
        assert_eq!(
            (a.severity, a.action),
            (Severity::High, Action::InvestigateResale)
        );
        assert!(a
            .explanation
            .contains("at another institution and by another person"));
        assert!(alerts[1]
            .explanation
            .contains("at the same institution and by the same person"));
        assert_ne!(alerts[0].alert_id, alerts[1].alert_id);
    }

    #[test]
    fn a_refund_returns_the_code_and_the_next_sale_registers_it_afresh() {
        let alerts = run(
            TraceCodeResettled::NAME,
            vec![
                sale("s1", 0, "81"),
                sale("r1", DAY, "81").refunded(),
                sale("s2", 2 * DAY, "81"),
                sale("s3", 3 * DAY, "81"),
            ],
        );
        assert_eq!(evidence(&alerts), [vec!["s3", "s2"]]);
    }

    #[test]
    fn split_items_declines_and_stays_neither_register_nor_check() {
        let mut split = sale("p1", 0, "81");
        split = split.split_items();
        let alerts = run(
            TraceCodeResettled::NAME,
            vec![
                split.clone(),
                sale("p2", DAY, "81").split_items(),
                sale("d1", 2 * DAY, "81").bad_pin(),
                sale("s1", 3 * DAY, "81"),
                sale("d2", 4 * DAY, "81").declined(crate::model::DeclineReason::InsufficientFunds),
            ],
        );
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn two_resold_codes_in_one_settlement_raise_two_alerts_and_a_repeated_code_one() {
        let alerts = run(
            TraceCodeResettled::NAME,
            vec![
                tx("s1", 0).item("a", 30, &["81", "82"]),
                tx("s2", DAY).item("a", 30, &["81", "82", "81"]),
            ],
        );
        let codes: Vec<&str> = alerts.iter().map(|a| a.subject.id.as_str()).collect();
        assert_eq!(codes, ["81", "82"]);
    }

    #[test]
    fn a_code_is_forgotten_after_the_horizon() {
        let alerts = run(
            TraceCodeResettled::NAME,
            vec![sale("s1", 0, "81"), sale("s2", 401 * DAY, "81")],
        );
        assert!(alerts.is_empty());
    }

    #[test]
    fn trace_code_resettled_passes_the_property_harness() {
        proptest_detector(TraceCodeResettled::NAME);
    }
}
