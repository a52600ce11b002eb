//! The DESIGN §12 fields of a mapped row: the visit and credential, and the row's line item.
//!
//! A row carries at most one line item: the `items.*` fields read one fee line. Several lines
//! make one event only through `[source] group_by` (see `replay::group`). The item is validated
//! as the JSON codec validates one: an empty `items.code` when the code is mapped, a negative
//! quantity or `days_supply`, a `split` flag that is not yes or no — `bad_value`, like any other.

use std::borrow::Cow;
use std::sync::Arc;

use swipeguard_detectors::{
    AmountMinor, CertType, EventType, Item, Outcome, RejectReason, Settlement, Text, VisitType,
};

use super::{Mapper, Source};
use crate::codec::Rejected;

// Places in `FIELDS`.
const EVENT_TYPE: usize = 17;
const VISIT_TYPE: usize = 18;
const VISIT_ID: usize = 19;
const CERT_TYPE: usize = 20;
const DIAGNOSIS: usize = 21;
const CODE: usize = 22;
const GROUP: usize = 23;
const QUANTITY: usize = 24;
const DAYS_SUPPLY: usize = 25;
const TRACE_CODES: usize = 26;
const SPLIT: usize = 27;
const ITEM_AMOUNT: usize = 28;
const AMOUNT: usize = 4;

/// What a row other than the first adds to a folded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Its line item, when the mapping reads items.
    pub item: Option<Item>,
    /// Its `amount_minor`, added to the event's; 0 with `group_amount = "first"`.
    pub amount: AmountMinor,
}

fn bad_value(field: &'static str) -> Rejected {
    Rejected::new(RejectReason::BadValue, field)
}

impl Mapper {
    /// Whether rows have a line item: `items.code` is mapped (or the header names it).
    fn has_items(&self) -> bool {
        !matches!(self.fields[CODE].source, Source::Absent)
    }

    /// What a row adds to the event its group's first row began (see [`Line`]).
    pub fn line(&self, row: &[&str], row_number: u64) -> Result<Line, Rejected> {
        let amount = if self.group_sum {
            let text = self
                .text(AMOUNT, row, row_number)
                .ok_or_else(|| Rejected::new(RejectReason::MissingField, "amount_minor"))?;
            self.amount(AMOUNT, &text, row)?
        } else {
            AmountMinor(0)
        };
        Ok(Line {
            item: self.item(row, row_number)?,
            amount,
        })
    }

    /// The §12 fields of a row, when it has any. Admissions and discharges must name the person
    /// and the stay, as in the JSON codec.
    pub(super) fn settlement(
        &self,
        row: &[&str],
        row_number: u64,
        outcome: Outcome,
        has_account: bool,
    ) -> Result<Option<Arc<Settlement>>, Rejected> {
        let t = |i: usize| self.text(i, row, row_number);
        let event_type = match t(EVENT_TYPE) {
            None => EventType::Settlement,
            Some(v) => EventType::parse(&v).ok_or_else(|| bad_value("event_type"))?,
        };
        let visit_id = t(VISIT_ID).map(|v| Text::from(v.as_ref()));
        if event_type != EventType::Settlement {
            if visit_id.is_none() {
                return Err(Rejected::new(RejectReason::MissingField, "visit_id"));
            }
            if !has_account {
                return Err(Rejected::new(RejectReason::MissingField, "account_id"));
            }
            if outcome != Outcome::Approved {
                return Err(bad_value("outcome"));
            }
        }
        let items: Vec<Item> = self.item(row, row_number)?.into_iter().collect();
        if items.len() > self.limits.max_items {
            return Err(bad_value("items: too many"));
        }
        let settlement = Settlement {
            event_type,
            visit_type: t(VISIT_TYPE).map(|v| VisitType::parse(&v)),
            visit_id,
            cert_type: t(CERT_TYPE).map(|v| CertType::parse(&v)),
            diagnosis: t(DIAGNOSIS).map(|v| Text::from(v.as_ref())),
            items,
        };
        Ok((settlement != Settlement::default()).then(|| Arc::new(settlement)))
    }

    /// The row's line item; `None` when the mapping reads no items.
    fn item(&self, row: &[&str], row_number: u64) -> Result<Option<Item>, Rejected> {
        if !self.has_items() {
            return Ok(None);
        }
        let t = |i: usize| self.text(i, row, row_number);
        let code = t(CODE).ok_or_else(|| bad_value("items.code"))?;
        let number = |i: usize, field: &'static str| -> Result<Option<f64>, Rejected> {
            let Some(v) = t(i) else { return Ok(None) };
            let n = v
                .parse::<f64>()
                .map_err(|_| Rejected::new(RejectReason::WrongType, field))?;
            if !n.is_finite() || n < 0.0 {
                return Err(bad_value(field));
            }
            Ok(Some(n))
        };
        let quantity = number(QUANTITY, "items.quantity")?;
        let days_supply = match number(DAYS_SUPPLY, "items.days_supply")? {
            None => None,
            Some(d) if d <= 36_500.0 => Some(d.round() as u32),
            Some(_) => return Err(bad_value("items.days_supply")),
        };
        let split = match t(SPLIT).as_deref() {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(_) => return Err(bad_value("items.split")),
        };
        let amount = match t(ITEM_AMOUNT) {
            None => None,
            Some(v) => Some(self.amount(ITEM_AMOUNT, &v, row)?),
        };
        Ok(Some(Item {
            code: Text::from(code.as_ref()),
            group: t(GROUP).map(|v| Text::from(v.as_ref())),
            quantity,
            days_supply,
            trace_codes: self.trace_codes(row, row_number)?,
            split,
            amount,
        }))
    }

    /// Every code in the cell: parts between `split` separators, each through `map` if it
    /// knows the part, empty parts skipped.
    fn trace_codes(&self, row: &[&str], row_number: u64) -> Result<Vec<Text>, Rejected> {
        let f = &self.fields[TRACE_CODES];
        let mut text = self.source_text(TRACE_CODES, row, row_number);
        if text.is_empty() {
            match &f.default {
                Some(d) => text = Cow::Owned(d.clone()),
                None => return Ok(Vec::new()),
            }
        }
        let parts: Box<dyn Iterator<Item = &str>> = match &f.split {
            Some(sep) => Box::new(text.split(sep.as_str())),
            None => Box::new(std::iter::once(text.as_ref())),
        };
        let mut codes = Vec::new();
        for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
            if codes.len() == self.limits.max_trace_codes {
                return Err(bad_value("items.trace_codes: too many"));
            }
            let code = f
                .map
                .as_ref()
                .and_then(|m| m.get(part))
                .map_or(part, String::as_str);
            codes.push(Text::from(code));
        }
        Ok(codes)
    }
}
