//! Values a mapping did not know: how many of a closed-vocabulary field's values became `other`
//! because neither the field's `map` nor the vocabulary knew them, and which values they were.
//!
//! The fields counted are those whose unknown values turn into `other` on their own:
//! `merchant_kind`, `channel`, `decline_reason`, `visit_type` and `cert_type`. (An unknown
//! `outcome`, `event_type` or `items.split` is refused as `bad_value` and shows in the rejects;
//! free-text fields keep a value their map does not know as it is.) Only rows read through a
//! mapper are counted, CSV and mapped JSON: plain §2 JSONL speaks the vocabulary already.
//!
//! What counts, per field, over the rows converted into an event (with `group_by`, each
//! settlement's first row, the only row whose event fields are read, even when a later row
//! spoils the settlement):
//!
//! - **seen**: events whose cell (or constant, or joined columns) is not empty. An empty cell
//!   that takes the field's `default` is a *missing* value, not an unknown one, and is not
//!   counted at all — a column that is mostly empty is not a mis-mapped column.
//! - **unknown**: of those, the ones that became `other` although the cell did not say `other`
//!   and the map did not know it (with `split`, none of its parts). A value the map sends to
//!   `other` on purpose (`"超市" = "other"`) is known.
//! - `decline_reason` only on declined events: approved rows often carry the result text
//!   (`成功`) in the column the reason is read from, and their reason means nothing.
//!
//! Memory is bounded: the first [`KEPT_VALUES`] distinct unknown values of a field are counted
//! exactly, each cut to [`KEPT_CHARS`] characters; later distinct values only add to a counter
//! of the rest. A vocabulary column holds a handful of codes, so a column that overflows this
//! is most likely the wrong column altogether, and the hint says how much it did not list.
//!
//! With card hashing on (`[ingest.card_hash]`: the input holds raw card numbers) no value is
//! kept, only counted: a column mapped by mistake may be the card number column, and card
//! numbers never appear in the summary, as the rejects file withholds CSV rows (DESIGN §8).
//!
//! Rows are converted on the one reader thread in input order and tallies of several files
//! merge by summing, keeping the most frequent values (count, then value): the result, and the
//! summary built from it, never depends on the number of decode or stage threads.

use std::collections::BTreeMap;

use swipeguard_detectors::{
    CertType, Channel, DeclineReason, MerchantKind, Outcome, Transaction, VisitType,
};

use super::Mapper;

/// Distinct unknown values counted exactly per field.
pub const KEPT_VALUES: usize = 64;
/// Characters of an unknown value kept (a longer one is cut and ends in `…`).
pub const KEPT_CHARS: usize = 64;

/// The fields counted, with their places in `FIELDS`, in that order.
const COUNTED: [(usize, &str); 5] = [
    (7, "merchant_kind"),
    (13, "channel"),
    (15, "decline_reason"),
    (18, "visit_type"),
    (20, "cert_type"),
];

/// One field's count (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldTally {
    /// Non-empty values read.
    pub seen: u64,
    /// Of them, values that became `other` because nothing knew them.
    pub unknown: u64,
    /// Unknown values (cut to [`KEPT_CHARS`]) and how often each came, at most [`KEPT_VALUES`].
    pub values: BTreeMap<String, u64>,
    /// Unknown values not in `values`: occurrences of the values that did not fit.
    pub rest: u64,
    /// Whether the mapping gives the field a `map`.
    pub mapped: bool,
    /// Whether values were counted without being kept (card hashing on): all are in `rest`.
    pub withheld: bool,
}

impl FieldTally {
    /// Counts one non-empty value, `raw` as the export has it.
    pub fn record(&mut self, raw: &str, unknown: bool) {
        self.seen += 1;
        if !unknown {
            return;
        }
        self.unknown += 1;
        let key = cut(raw);
        if let Some(n) = self.values.get_mut(key.as_str()) {
            *n += 1;
        } else if self.values.len() < KEPT_VALUES {
            self.values.insert(key, 1);
        } else {
            self.rest += 1;
        }
    }

    /// Counts one non-empty value without keeping it (see the module doc on card hashing).
    pub fn record_withheld(&mut self, unknown: bool) {
        self.withheld = true;
        self.seen += 1;
        if unknown {
            self.unknown += 1;
            self.rest += 1;
        }
    }

    /// Adds `other`'s counts; past [`KEPT_VALUES`] distinct values, the least frequent (ties:
    /// the greatest value) move to `rest`, so the outcome does not depend on which is `self`.
    pub fn merge(&mut self, other: FieldTally) {
        self.seen += other.seen;
        self.unknown += other.unknown;
        self.rest += other.rest;
        self.mapped |= other.mapped;
        self.withheld |= other.withheld;
        for (value, n) in other.values {
            *self.values.entry(value).or_default() += n;
        }
        if self.values.len() > KEPT_VALUES {
            let ranked = self.top();
            let dropped: Vec<String> = ranked[KEPT_VALUES..]
                .iter()
                .map(|(v, _)| v.to_string())
                .collect();
            for v in dropped {
                self.rest += self.values.remove(&v).unwrap_or(0);
            }
        }
    }

    /// The unknown values kept, most frequent first (ties in value order).
    pub fn top(&self) -> Vec<(&str, u64)> {
        let mut ranked: Vec<(&str, u64)> =
            self.values.iter().map(|(v, n)| (v.as_str(), *n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked
    }

    /// Share of the non-empty values that were unknown.
    pub fn share(&self) -> f64 {
        self.unknown as f64 / self.seen.max(1) as f64
    }
}

/// `raw` cut to [`KEPT_CHARS`] characters: a hostile cell costs no more than a short one.
fn cut(raw: &str) -> String {
    match raw.char_indices().nth(KEPT_CHARS) {
        None => raw.to_string(),
        Some((at, _)) => format!("{}…", &raw[..at]),
    }
}

/// The counts of every counted field (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unknowns {
    fields: [FieldTally; COUNTED.len()],
}

impl Unknowns {
    /// Adds another file's (or lane's) counts.
    pub fn merge(&mut self, other: Unknowns) {
        for (mine, theirs) in self.fields.iter_mut().zip(other.fields) {
            mine.merge(theirs);
        }
    }

    /// Each counted field by name, in `FIELDS` order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &FieldTally)> {
        COUNTED
            .iter()
            .map(|(_, name)| *name)
            .zip(self.fields.iter())
    }

    /// One field's count, by name.
    pub fn field_mut(&mut self, name: &str) -> Option<&mut FieldTally> {
        let at = COUNTED.iter().position(|(_, n)| *n == name)?;
        self.fields.get_mut(at)
    }
}

/// The words of a counted field's vocabulary, for a hint to list.
pub fn words(field: &str) -> Vec<&'static str> {
    fn all<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
        all.iter().map(|t| name(*t)).collect()
    }
    match field {
        "merchant_kind" => all(MerchantKind::ALL, MerchantKind::as_str),
        "channel" => all(Channel::ALL, Channel::as_str),
        "decline_reason" => all(DeclineReason::ALL, DeclineReason::as_str),
        "visit_type" => all(VisitType::ALL, VisitType::as_str),
        "cert_type" => all(CertType::ALL, CertType::as_str),
        _ => Vec::new(),
    }
}

impl Mapper {
    /// [`Mapper::convert`], the event tallied in `into` when the row converts.
    pub fn convert_tallied(
        &self,
        row: &[&str],
        row_number: u64,
        into: &mut Unknowns,
    ) -> Result<Transaction, crate::codec::Rejected> {
        let tx = self.convert(row, row_number)?;
        self.tally(row, row_number, &tx, into);
        Ok(tx)
    }

    /// Counts the counted fields of `tx`, the event just converted from `row`, into `into`.
    pub fn tally(&self, row: &[&str], row_number: u64, tx: &Transaction, into: &mut Unknowns) {
        let settlement = tx.settlement.as_deref();
        // Per counted field: absent (None), or whether the event holds `other`.
        let other = [
            tx.merchant_kind.map(|k| k == MerchantKind::Other),
            tx.channel.map(|c| c == Channel::Other),
            tx.decline_reason
                .filter(|_| tx.outcome == Outcome::Declined)
                .map(|r| r == DeclineReason::Other),
            settlement
                .and_then(|s| s.visit_type)
                .map(|v| v == VisitType::Other),
            settlement
                .and_then(|s| s.cert_type)
                .map(|c| c == CertType::Other),
        ];
        for ((tally, (i, _)), other) in into.fields.iter_mut().zip(COUNTED).zip(other) {
            let Some(other) = other else { continue };
            let raw = self.source_text(i, row, row_number);
            if raw.is_empty() {
                continue;
            }
            tally.mapped |= self.fields[i].map.is_some();
            let unknown = other && raw != "other" && !self.map_knows(i, &raw);
            if self.limits.hasher.is_some() {
                tally.record_withheld(unknown);
            } else {
                tally.record(&raw, unknown);
            }
        }
    }

    /// Whether field `i`'s `map` knows `raw` (with `split`, one of its parts), as `text` reads it.
    fn map_knows(&self, i: usize, raw: &str) -> bool {
        let f = &self.fields[i];
        let Some(map) = &f.map else { return false };
        match &f.split {
            Some(sep) => raw
                .split(sep.as_str())
                .any(|part| map.contains_key(part.trim())),
            None => map.contains_key(raw),
        }
    }
}

#[cfg(test)]
mod tests;
