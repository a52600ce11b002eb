//! The 医保 settlement fields of an event (DESIGN §12): what kind of event it is (a settlement, an
//! admission, a discharge), the visit and credential, and the line items with their drug
//! traceability codes. A plain card swipe carries none of them and pays one empty pointer for
//! the possibility ([`Transaction::settlement`]).
//!
//! Vocabularies: `event_type` is closed (an unknown value is refused by the decoder, because an
//! admission read as a settlement would mislead every detector); `visit_type` and `cert_type`
//! map values the feed adds later to `Other`.

use serde::{Deserialize, Serialize};

use crate::model::{AmountMinor, DeclineReason, Outcome, Text, Transaction};

crate::model::wire_enum!(
    /// What the event records; absent means a settlement.
    EventType { Settlement = "settlement", Admission = "admission", Discharge = "discharge" }
);

crate::model::wire_enum!(
    /// The kind of visit (the national platform's `med_type`); unknown values map to `Other`.
    VisitType {
        Outpatient = "outpatient",
        Emergency = "emergency",
        Chronic = "chronic",
        Inpatient = "inpatient",
        Pharmacy = "pharmacy",
        Other = "other",
    }
);

crate::model::wire_enum!(
    /// The credential presented (`mdtrt_cert_type`); only `card` is PIN-protected.
    CertType { Card = "card", EVoucher = "e_voucher", IdCard = "id_card", Other = "other" }
);

impl EventType {
    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl VisitType {
    pub fn parse(s: &str) -> VisitType {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .unwrap_or(VisitType::Other)
    }
}

impl CertType {
    pub fn parse(s: &str) -> CertType {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .unwrap_or(CertType::Other)
    }
}

/// One line of a settlement: a drug, a test, a service. Only `code` is required.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Item {
    /// The catalogue code (`med_list_codg`).
    pub code: Text,
    /// The drug class the supply rules compare by; `code` when absent.
    pub group: Option<Text>,
    /// How many units (`cnt`); may be fractional (half a box).
    pub quantity: Option<f64>,
    /// How many days the item supplies (`prd_days`).
    pub days_supply: Option<u32>,
    /// The boxes' traceability codes (`drug_trac_codg`, 追溯码).
    pub trace_codes: Vec<Text>,
    /// Sold out of an opened box (`trdn_flag`, 拆零): its codes legitimately repeat.
    pub split: bool,
    /// The line's amount (`det_item_fee_sumamt`).
    pub amount: Option<AmountMinor>,
}

impl Item {
    /// What supply is compared by: the group, else the code.
    pub fn supply_key(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.code)
    }
}

/// The §12 fields of one event.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Settlement {
    pub event_type: EventType,
    pub visit_type: Option<VisitType>,
    /// The visit or stay the event belongs to (`mdtrt_id`).
    pub visit_id: Option<Text>,
    pub cert_type: Option<CertType>,
    /// The main diagnosis, ICD-10.
    pub diagnosis: Option<Text>,
    pub items: Vec<Item>,
}

// Written out: `wire_enum!` declares the enum and takes no attribute on a variant.
#[allow(clippy::derivable_impls)]
impl Default for EventType {
    fn default() -> Self {
        EventType::Settlement
    }
}

impl Transaction {
    /// What the event records (a plain swipe is a settlement).
    pub fn event_type(&self) -> EventType {
        self.settlement
            .as_ref()
            .map_or(EventType::Settlement, |s| s.event_type)
    }

    pub fn visit_type(&self) -> Option<VisitType> {
        self.settlement.as_ref().and_then(|s| s.visit_type)
    }

    pub fn visit_id(&self) -> Option<&str> {
        self.settlement.as_ref().and_then(|s| s.visit_id.as_deref())
    }

    pub fn cert_type(&self) -> Option<CertType> {
        self.settlement.as_ref().and_then(|s| s.cert_type)
    }

    pub fn items(&self) -> &[Item] {
        self.settlement.as_ref().map_or(&[], |s| &s.items)
    }

    /// A swipe that pays: a settlement, not a refund, an admission or a discharge. The card
    /// detectors of DESIGN §3 look at these only.
    pub fn is_swipe(&self) -> bool {
        self.event_type() == EventType::Settlement && self.outcome != Outcome::Refunded
    }

    /// A swipe with the PIN-protected card (or no credential named): a use of the card.
    pub fn uses_card(&self) -> bool {
        self.is_swipe() && matches!(self.cert_type(), None | Some(CertType::Card))
    }

    /// A PIN attempt (DESIGN §12): a use of the card that was approved or declined for a wrong
    /// PIN. Nothing else moves a PIN count.
    pub fn is_pin_attempt(&self) -> bool {
        self.uses_card()
            && (self.outcome == Outcome::Approved
                || self.decline_reason == Some(DeclineReason::BadPin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tx;

    #[test]
    fn a_plain_swipe_is_a_settlement_with_no_items() {
        let t = tx("c", 0).build();
        assert_eq!(t.event_type(), EventType::Settlement);
        assert!(t.items().is_empty() && t.is_swipe() && t.is_pin_attempt());
    }

    #[test]
    fn only_card_settlements_approved_or_declined_for_the_pin_are_pin_attempts() {
        let with = |f: &dyn Fn(&mut Settlement), outcome: Outcome| {
            let mut t = tx("c", 0).build();
            t.outcome = outcome;
            let mut s = Settlement::default();
            f(&mut s);
            t.settlement = Some(std::sync::Arc::new(s));
            t
        };
        assert!(with(&|s| s.cert_type = Some(CertType::Card), Outcome::Approved).is_pin_attempt());
        assert!(!with(
            &|s| s.cert_type = Some(CertType::EVoucher),
            Outcome::Approved
        )
        .is_pin_attempt());
        assert!(
            !with(&|s| s.event_type = EventType::Admission, Outcome::Approved).is_pin_attempt()
        );
        assert!(!with(&|_| {}, Outcome::Refunded).is_pin_attempt());
        assert!(!with(&|_| {}, Outcome::Refunded).is_swipe());
        let mut declined = with(&|_| {}, Outcome::Declined);
        assert!(!declined.is_pin_attempt());
        declined.decline_reason = Some(DeclineReason::BadPin);
        assert!(declined.is_pin_attempt() && declined.is_bad_pin());
    }
}
