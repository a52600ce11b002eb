//! Folding the rows of one settlement into one event: `[source] group_by` (DESIGN §2, §12).
//!
//! Settlement exports have one row per fee line. With `group_by`, **consecutive** rows with equal
//! values in the `group_by` columns make one event:
//!
//! - its event fields (`event_id`, `ts`, `card_id`, `outcome`, `visit_type`, …) are read from
//!   the group's first row; the same cells of later rows are not read;
//! - its `items` have one item per row, in row order (the `items.*` fields of the mapping);
//! - its `amount_minor` is the sum of the rows' `amount_minor` (`group_amount = "sum"`, for a
//!   per-line fee column), or the first row's (`group_amount = "first"`, for an export that
//!   repeats the settlement's total on every row);
//! - its line number (in alerts' evidence and the rejects file) is the first row's.
//!
//! One bad row refuses the whole event: a bad first row (a missing `card_id`), a bad line item in
//! any row (`bad_value`, `wrong_type`, …), more rows than `ingest.max_items` (`bad_value`,
//! `items: too many`, as the JSON codec refuses a long `items`), more trace codes than the codec
//! allows, or a sum over the amount limit. Then every row of the group is a line of the rejects
//! file with the group's reason: the row at fault with its own detail, the others with the line
//! at fault, so an analyst finds every raw row. Rows are held only while their group is still
//! whole, at most `max_items` of them: a refused group's later rows are refused as they come.
//!
//! Only consecutive rows fold, so memory stays bounded whatever the file's size: the same key
//! appearing again after other rows begins a new event with the same `event_id` and time, which
//! the stages then refuse and count as a `duplicate` (or `late`, once the first part has left
//! their reorder buffer). An export with a settlement's lines apart should be sorted by the key
//! first.
//!
//! The folding is pure (rows in, events and rejects out); reading rows is `replay::input`'s.

use std::collections::VecDeque;

use swipeguard_detectors::{AmountMinor, Item, RejectReason, Transaction};

use super::convert::unknown::Unknowns;
use super::convert::{Line, Mapper};
use crate::codec::{DecodeLimits, Rejected};

/// What comes out of the folding, in the order it is to be delivered.
#[derive(Debug, PartialEq)]
pub enum Folded {
    /// A group's event, with the line number of its first row.
    Event { line: u64, event: Box<Transaction> },
    /// One refused row with its raw bytes.
    Reject {
        line: u64,
        rejected: Rejected,
        raw: Vec<u8>,
    },
}

/// The group being read.
struct Open {
    key: Vec<String>,
    state: State,
}

enum State {
    Whole {
        event: Box<Transaction>,
        first_line: u64,
        /// Items of the rows after the first.
        items: Vec<Item>,
        amount: u64,
        rows: usize,
        trace_codes: usize,
        /// The rows' raw bytes, for the rejects file should a later row spoil the group.
        held: Vec<(u64, Vec<u8>)>,
    },
    Refused {
        at: u64,
        rejected: Rejected,
    },
}

/// Folds consecutive rows with equal keys into events (see the module doc).
pub struct Grouper {
    limits: DecodeLimits,
    open: Option<Open>,
    /// Rows that went into an event after its first, so far: the summary counts rows read.
    folded: u64,
}

impl Grouper {
    pub fn new(limits: DecodeLimits) -> Grouper {
        Grouper {
            limits,
            open: None,
            folded: 0,
        }
    }

    /// Rows folded into an event after its first since the last call.
    pub fn take_folded(&mut self) -> u64 {
        std::mem::take(&mut self.folded)
    }

    /// Adds one row: `head` makes the event when the row begins a group, `line` reads what it
    /// adds when it continues one. Whatever is finished goes to `out`.
    pub fn push(
        &mut self,
        key: Vec<String>,
        line: u64,
        raw: &[u8],
        head: impl FnOnce() -> Result<Transaction, Rejected>,
        more: impl FnOnce() -> Result<Line, Rejected>,
        out: &mut VecDeque<Folded>,
    ) {
        let continues = self.open.as_ref().is_some_and(|o| o.key == key);
        if !continues {
            self.finish(out);
            let state = match head() {
                Ok(event) => {
                    let trace_codes = event.items().iter().map(|i| i.trace_codes.len()).sum();
                    State::Whole {
                        amount: event.amount.0,
                        event: Box::new(event),
                        first_line: line,
                        items: Vec::new(),
                        rows: 1,
                        trace_codes,
                        held: vec![(line, raw.to_vec())],
                    }
                }
                Err(rejected) => {
                    out.push_back(Folded::Reject {
                        line,
                        rejected: rejected.clone(),
                        raw: raw.to_vec(),
                    });
                    State::Refused { at: line, rejected }
                }
            };
            self.open = Some(Open { key, state });
            return;
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        match &mut open.state {
            State::Refused { at, rejected } => out.push_back(Folded::Reject {
                line,
                rejected: of_group(rejected, *at),
                raw: raw.to_vec(),
            }),
            State::Whole {
                items,
                amount,
                rows,
                trace_codes,
                held,
                ..
            } => {
                let added = more().and_then(|l| {
                    *rows += 1;
                    // A row is an event whatever the limit; only folding is bounded by it.
                    if *rows > self.limits.max_items.max(1) {
                        return Err(Rejected::new(RejectReason::BadValue, "items: too many"));
                    }
                    if let Some(item) = &l.item {
                        *trace_codes += item.trace_codes.len();
                        if *trace_codes > self.limits.max_trace_codes {
                            return Err(Rejected::new(
                                RejectReason::BadValue,
                                "items.trace_codes: too many",
                            ));
                        }
                    }
                    *amount = amount
                        .checked_add(l.amount.0)
                        .filter(|a| *a <= self.limits.max_amount_minor)
                        .ok_or_else(|| Rejected::new(RejectReason::AbsurdAmount, "amount_minor"))?;
                    items.extend(l.item);
                    Ok(())
                });
                match added {
                    Ok(()) => held.push((line, raw.to_vec())),
                    Err(rejected) => self.refuse(line, raw, rejected, out),
                }
            }
        }
    }

    /// Refuses the open group because of row `line`: its held rows and this one go out as
    /// rejects, and its later rows will follow them.
    fn refuse(&mut self, line: u64, raw: &[u8], rejected: Rejected, out: &mut VecDeque<Folded>) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let state = std::mem::replace(
            &mut open.state,
            State::Refused {
                at: line,
                rejected: rejected.clone(),
            },
        );
        if let State::Whole { held, .. } = state {
            for (l, r) in held {
                out.push_back(Folded::Reject {
                    line: l,
                    rejected: of_group(&rejected, line),
                    raw: r,
                });
            }
        }
        out.push_back(Folded::Reject {
            line,
            rejected,
            raw: raw.to_vec(),
        });
    }

    /// Closes the open group (at a new key, or at the end of the input).
    pub fn finish(&mut self, out: &mut VecDeque<Folded>) {
        let Some(open) = self.open.take() else {
            return;
        };
        if let State::Whole {
            mut event,
            first_line,
            items,
            amount,
            rows,
            ..
        } = open.state
        {
            self.folded += rows as u64 - 1;
            event.amount = AmountMinor(amount);
            if !items.is_empty() {
                let settlement = event.settlement.get_or_insert_with(Default::default);
                std::sync::Arc::make_mut(settlement).items.extend(items);
            }
            out.push_back(Folded::Event {
                line: first_line,
                event,
            });
        }
    }
}

/// What `replay::input` keeps to read a file through a [`Grouper`]: folded rows waiting to be
/// returned, and the raw bytes of the refused row returned last.
pub(super) struct Grouping {
    pub grouper: Grouper,
    pub ready: VecDeque<Folded>,
    pub raw: Vec<u8>,
    pub ended: bool,
}

impl Grouping {
    /// The grouping state for `mapper`, when it groups rows.
    pub fn new(mapper: Option<&Mapper>, limits: &DecodeLimits) -> Option<Grouping> {
        mapper.filter(|m| m.grouped()).map(|_| Grouping {
            grouper: Grouper::new(limits.clone()),
            ready: VecDeque::new(),
            raw: Vec::new(),
            ended: false,
        })
    }

    /// Folds a row with cells; a group's first row, the one its event fields come from, is
    /// tallied in `unknown`.
    pub fn fold(
        &mut self,
        mapper: &Mapper,
        cells: &[&str],
        line: u64,
        raw: &[u8],
        unknown: &mut Unknowns,
    ) {
        self.grouper.push(
            mapper.group_key(cells),
            line,
            raw,
            || mapper.convert_tallied(cells, line, unknown),
            || mapper.line(cells, line),
            &mut self.ready,
        );
    }

    /// A row with cells that is refused whatever its group: it still spoils its group.
    pub fn refuse(&mut self, key: Vec<String>, line: u64, raw: &[u8], rejected: Rejected) {
        self.grouper.push(
            key,
            line,
            raw,
            || Err(rejected.clone()),
            || Err(rejected.clone()),
            &mut self.ready,
        );
    }

    /// A row that belongs to no group.
    pub fn alone(&mut self, line: u64, raw: &[u8], rejected: Rejected) {
        self.ready.push_back(Folded::Reject {
            line,
            rejected,
            raw: raw.to_vec(),
        });
    }
}

/// The refusal of a row that is fine itself but belongs to a group refused at line `at`.
fn of_group(rejected: &Rejected, at: u64) -> Rejected {
    Rejected::new(
        rejected.reason,
        format!("{} (at line {at}, same group)", rejected.detail),
    )
}

#[cfg(test)]
mod tests;
