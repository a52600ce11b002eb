//! A stage: every enabled detector of one key kind (DESIGN §11), with its own watermark,
//! reorder buffer and key table.
//!
//! **Lateness rule.** An event is *late* when its time is older than the stage's watermark, or
//! when its (time, id) does not come after the last event the stage already released. A late
//! event is never shown to the detectors (their windows have moved on); it is counted and
//! handed back in [`Output::refusals`] with reason `late`, for the caller to forward to the
//! dead-letter topic or the rejects file, so it is never silently dropped. An event whose
//! (time, id) equals one that is buffered or was just released is a *duplicate*, handled the
//! same way with reason `duplicate`.
//!
//! **Release.** Events at or before the watermark are released in (event time, event id)
//! order; [`Stage::drain`] releases the rest (end of a replay). With allowed lateness 0 every
//! in-order event is released on arrival. A released event is shown, for each of its keys of
//! this stage's kind (one, or one per traceability code), to every detector of the stage in
//! registry order.
//!
//! **Time.** The stage's clock is the newest released event time or the watermark, whichever
//! is later. Keys idle for longer than the longest horizon of the stage's detectors are
//! forgotten by that clock; a key beyond the stage's ceiling pushes out the least recently seen
//! one. Counts of all of it come back in [`Output::counts`].

use std::sync::Arc;

use crate::budget::Budgets;
use crate::codebook::{CodeBook, Evicted};
use crate::detector::{Emitter, Versions};
use crate::engine::{Admission, Output, Refusal};
use crate::keys::{KeyTable, Slot, EMPTY};
use crate::model::{EventId, EventTime, KeyKind, Millis, Subject, Text, Transaction};
use crate::reorder::ReorderBuffer;
use crate::store::Stored;
use crate::watermark::Watermark;

/// Most keys the sweep visits per released event (it only has about one to do per event: every
/// key is offered once per quiet spell, and a spell follows an event).
const SWEEP_PER_EVENT: usize = 4;
/// Released events between looks at the stores' vacancies.
const COMPACT_EVERY: u64 = 4096;
/// Vacancies below which a store is never packed.
const COMPACT_MIN: usize = 1024;

/// The detectors of one key kind over one partition's events.
#[derive(Clone, Debug)]
pub struct Stage {
    pub(crate) kind: KeyKind,
    pub(crate) watermark: Watermark,
    pub(crate) pending: ReorderBuffer,
    pub(crate) last_released: Option<(EventTime, EventId)>,
    pub(crate) clock: EventTime,
    pub(crate) keys: KeyTable,
    pub(crate) stores: Vec<Box<dyn Stored>>,
    /// `trace_code_resettled`'s compact store, in place of `keys` and `stores`, when it is the
    /// only detector of the traceability-code stage (see [`crate::codebook`]).
    pub(crate) codes: Option<CodeBook>,
    horizon: Millis,
    /// How long a key must be quiet before the sweep offers it to the detectors that expire
    /// state: the shortest of their windows (0: none expires anything).
    expiry_span: Millis,
    versions: Arc<Versions>,
    /// Events released since the stage was built (restored): paces the packing of stores.
    released: u64,
    /// Record per-event scores in the output (for a report).
    pub(crate) record_scores: bool,
    /// The alert budgets of the stage's detectors (DESIGN §14).
    pub(crate) budgets: Budgets,
    /// The watermark moves only by [`Stage::advance_watermark`] (a stage fed through an
    /// internal topic, whose watermark is its upstream partitions' minimum), not by events.
    external_watermark: bool,
    /// The keys this stage partition owns, as (partition, partitions) of [`partition_of`]
    /// (`None`: every key). An event reaches a stage partition when it owns one of its keys;
    /// the others are another partition's.
    owned: Option<(u32, u32)>,
}

/// Which of `partitions` partitions of a stage holds `key` (DESIGN §11): a stable hash of the
/// key, the same in every process and version (it decides where state lives).
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    crate::detector::stable_hash32(key) % partitions.max(1)
}

/// Calls `f` with each key of `kind` the event carries.
pub fn for_each_key(kind: KeyKind, tx: &Transaction, mut f: impl FnMut(&str)) {
    match kind {
        KeyKind::Card => f(tx.card_id.as_str()),
        KeyKind::Terminal => f(tx.terminal_id.as_deref().unwrap_or(&tx.merchant_id)),
        KeyKind::Account => {
            if let Some(account) = tx.account_id.as_deref() {
                f(account)
            }
        }
        // Every code of an item that is not sold in parts (DESIGN §12), once per event, in the
        // order the event names them.
        KeyKind::TraceCode => {
            let mut seen: Vec<&str> = Vec::new();
            for item in tx.items().iter().filter(|i| !i.split) {
                for code in &item.trace_codes {
                    if !seen.contains(&code.as_str()) {
                        seen.push(code);
                        f(code);
                    }
                }
            }
        }
    }
}

/// Whether the event carries a key of `kind` at all (events without one skip the stage).
pub fn has_key(kind: KeyKind, tx: &Transaction) -> bool {
    let mut any = false;
    for_each_key(kind, tx, |_| any = true);
    any
}

impl Stage {
    pub(crate) fn new(
        kind: KeyKind,
        lateness: Millis,
        max_keys: usize,
        stores: Vec<Box<dyn Stored>>,
        versions: Arc<Versions>,
    ) -> Stage {
        let horizon = stores.iter().map(|s| s.horizon()).max().unwrap_or_default();
        let expiry_span = stores
            .iter()
            .filter(|s| s.expires())
            .map(|s| s.expires_after().max(Millis(1)))
            .min()
            .unwrap_or_default();
        Stage {
            kind,
            watermark: Watermark::new(lateness),
            pending: ReorderBuffer::default(),
            last_released: None,
            clock: EventTime::MIN,
            keys: KeyTable::new(stores.len(), max_keys),
            stores,
            codes: None,
            horizon,
            expiry_span,
            versions,
            released: 0,
            record_scores: false,
            budgets: Budgets::default(),
            external_watermark: false,
            owned: None,
        }
    }

    /// Replaces the key table and stores by a code book (a stage of `trace_code_resettled`
    /// alone): the same decisions in a third of the memory.
    pub(crate) fn use_code_book(&mut self, book: CodeBook) {
        self.horizon = book.horizon();
        self.keys = KeyTable::new(0, book.max().max(1));
        self.stores = Vec::new();
        self.expiry_span = Millis(0);
        self.codes = Some(book);
    }

    /// Makes this a downstream stage partition (DESIGN §11): its watermark moves only by
    /// [`Stage::advance_watermark`], and it looks only at the keys of `partition` of
    /// `partitions`. Not part of snapshots: the daemon sets it on every engine it runs so.
    pub fn run_downstream(&mut self, partition: u32, partitions: u32) {
        self.external_watermark = true;
        self.owned = Some((partition, partitions));
    }

    fn owns(&self, key: &str) -> bool {
        self.owned.is_none_or(|(p, n)| partition_of(key, n) == p)
    }

    /// How long an idle key is kept: the longest horizon of the stage's detectors.
    pub fn horizon(&self) -> Millis {
        self.horizon
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Records every scored event's score in [`Output::scores`] from now on.
    pub fn record_scores(&mut self, on: bool) {
        self.record_scores = on;
    }

    /// Whether any detector of the stage expires state (and so the stage sweeps).
    pub(crate) fn sweeps(&self) -> bool {
        self.expiry_span.0 > 0
    }

    pub fn watermark(&self) -> EventTime {
        self.watermark.value()
    }

    /// The newest event time admitted.
    pub fn newest_event_time(&self) -> EventTime {
        self.watermark.newest()
    }

    /// Whether the event is for this stage (it carries a key of the stage's kind).
    pub fn takes(&self, tx: &Transaction) -> bool {
        has_key(self.kind, tx)
    }

    /// The stage's detectors, each with how many keys hold its state.
    pub fn detectors(&self) -> impl Iterator<Item = (crate::model::DetectorName, usize)> + '_ {
        self.stores
            .iter()
            .map(|s| (s.name(), s.live()))
            .chain(self.codes.iter().map(|b| (b.name(), b.len())))
    }

    /// Estimated bytes: the key table's, then each detector's states'.
    pub fn bytes_by_part(&self) -> (usize, Vec<(crate::model::DetectorName, usize)>) {
        if let Some(book) = &self.codes {
            let (key, state) = book.bytes_by_part();
            return (key, vec![(book.name(), state)]);
        }
        (
            self.keys.bytes(),
            self.stores.iter().map(|s| (s.name(), s.bytes())).collect(),
        )
    }

    /// Tracked keys and buffered events.
    pub fn held(&self) -> (usize, usize) {
        let codes = self.codes.as_ref().map_or(0, CodeBook::len);
        (self.keys.len() + codes, self.pending.len())
    }

    /// Estimated bytes of key table, states and buffered events.
    pub fn bytes(&self) -> usize {
        let (key, states) = self.bytes_by_part();
        key + states.iter().map(|(_, b)| b).sum::<usize>() + self.pending.heap_bytes()
    }

    /// Offers one event (the caller checked [`Stage::takes`]). Accepted events are buffered and
    /// released (possibly this one and others) when the watermark passes them; their alerts
    /// land in `out`. A refused event goes to `out.refusals`.
    pub fn admit(&mut self, tx: Transaction, out: &mut Output) -> Admission {
        let counts = out.counts.stage_mut(self.kind);
        let after_last = self
            .last_released
            .as_ref()
            .is_none_or(|(ts, id)| (tx.ts, &tx.event_id) > (*ts, id));
        let is_last = self
            .last_released
            .as_ref()
            .is_some_and(|(ts, id)| *ts == tx.ts && *id == tx.event_id);
        let refused = if is_last || self.pending.contains(tx.ts, &tx.event_id) {
            counts.duplicates += 1;
            Admission::Duplicate
        } else if self.watermark.is_late(tx.ts) || !after_last {
            counts.late += 1;
            if self.watermark.late_only_by_idle_advance(tx.ts) {
                counts.late_after_idle += 1;
            }
            Admission::Late
        } else {
            Admission::Accepted
        };
        if let Some(reason) = refused.reject_reason() {
            out.refusals.push(Refusal {
                stage: self.kind,
                reason,
                event: tx,
            });
            return refused;
        }
        counts.accepted += 1;
        if self.external_watermark {
            self.watermark.note(tx.ts);
        } else {
            self.watermark.observe(tx.ts);
        }
        if self.pending.is_empty() && tx.ts <= self.watermark.value() {
            // Nothing waits ahead of it: release without buffering (lateness 0, in order).
            self.release(tx, out);
        } else {
            self.pending.insert(tx);
            self.release_ready(out);
        }
        Admission::Accepted
    }

    /// Idle advance (live mode only): the watermark jumps to the newest event time seen,
    /// releasing everything buffered.
    pub fn advance_idle(&mut self, out: &mut Output) {
        if !self.external_watermark && self.watermark.advance_to_newest() {
            self.release_ready(out);
        }
    }

    /// Moves event time forward to `to` without an event (a heartbeat or an upstream
    /// watermark): releases what the new watermark passes and forgets keys idle by then.
    pub fn advance_watermark(&mut self, to: EventTime, out: &mut Output) {
        if self.watermark.advance_to(to) {
            self.release_ready(out);
            self.tick(to, out);
        }
    }

    /// End of input: releases every buffered event in order.
    pub fn drain(&mut self, out: &mut Output) {
        while let Some(tx) = self.pending.pop_first() {
            self.release(tx, out);
        }
    }

    fn release_ready(&mut self, out: &mut Output) {
        while let Some(tx) = self.pending.pop_ready(self.watermark.value()) {
            self.release(tx, out);
        }
    }

    /// Advances the clock and forgets keys idle for longer than the horizon.
    fn tick(&mut self, now: EventTime, out: &mut Output) {
        if now <= self.clock {
            return;
        }
        self.clock = now;
        let cutoff = now.saturating_sub(self.horizon);
        let mut evicted = self.codes.as_mut().map_or(0, |b| b.evict_before(cutoff));
        while let Some(at) = self.keys.oldest_before(cutoff) {
            free_all(&mut self.stores, self.keys.slots(at));
            self.keys.remove(at);
            evicted += 1;
        }
        out.counts.stage_mut(self.kind).evicted_idle += evicted;
    }

    /// Shows one event to every detector of the stage, once per key it carries.
    fn release(&mut self, tx: Transaction, out: &mut Output) {
        debug_assert!(self
            .last_released
            .as_ref()
            .is_none_or(|(ts, id)| (tx.ts, &tx.event_id) > (*ts, id)));
        self.tick(tx.ts, out);
        self.sweep();
        self.released += 1;
        if self.released % COMPACT_EVERY == 0 {
            self.compact();
        }
        out.counts.stage_mut(self.kind).released += 1;
        let kind = self.kind;
        let first_alert = out.alerts.len();
        for_each_key(kind, &tx, |key| {
            if self.owns(key) {
                self.observe(key, &tx, out)
            }
        });
        self.budgets
            .gate(&mut out.alerts, first_alert, &mut out.counts);
        self.last_released = Some((tx.ts, tx.event_id));
    }

    /// Gives back the slots of detectors that hold far fewer states than they once did (most
    /// cards' `rapid_fire` windows close within minutes): a store with more vacancies than
    /// states is packed. Slot numbers are internal: nothing observable changes.
    fn compact(&mut self) {
        for (i, store) in self.stores.iter_mut().enumerate() {
            if store.vacant() > COMPACT_MIN && store.vacant() > store.live() {
                store.compact(&mut self.keys.column_mut(i));
            }
        }
    }

    /// Offers keys that have been quiet for longer than the stage's expiry span (the shortest
    /// window of the detectors that expire anything) to those detectors, at most
    /// [`SWEEP_PER_EVENT`] per event, in recency order, each once per quiet spell: closed
    /// windows and finished cool-downs are dropped, and keys left with nothing are forgotten.
    /// Memory follows what matters rather than what was last touched; the alerts cannot tell.
    fn sweep(&mut self) {
        if self.expiry_span.0 <= 0 {
            return;
        }
        let cutoff = self.clock.saturating_sub(self.expiry_span);
        for _ in 0..SWEEP_PER_EVENT {
            let Some(at) = self.keys.sweep_next(cutoff) else {
                return;
            };
            let mut holds = false;
            let slots = self.keys.slots_mut(at);
            for (slot, store) in slots.iter_mut().zip(self.stores.iter_mut()) {
                if *slot != EMPTY {
                    if store.expires() {
                        store.expire(slot, self.clock);
                    }
                    holds |= *slot != EMPTY;
                }
            }
            if !holds {
                self.keys.remove(at);
            }
        }
    }

    fn observe(&mut self, key: &str, tx: &Transaction, out: &mut Output) {
        if self.codes.is_some() {
            return self.observe_code(key, tx, out);
        }
        let stores = &mut self.stores;
        let mut capacity = 0;
        let at = self.keys.touch(key, tx.ts, |slots| {
            free_all(stores, slots);
            capacity += 1;
        });
        out.counts.stage_mut(self.kind).evicted_capacity += capacity;
        let subject = Subject {
            kind: self.kind,
            id: Text::new(key),
        };
        let event_start = out.alerts.len();
        let mut emit = Emitter {
            event_start,
            detector: stores[0].name(),
            subject: &subject,
            alerts: &mut out.alerts,
            counts: &mut out.counts,
            versions: &self.versions,
            scores: self.record_scores.then_some(&mut out.scores),
        };
        let slots = self.keys.slots_mut(at);
        let mut holds = false;
        for (slot, store) in slots.iter_mut().zip(stores.iter_mut()) {
            store.observe(slot, tx, &mut emit);
            holds |= *slot != EMPTY;
        }
        if !holds {
            self.keys.remove(at);
        }
    }
}

impl Stage {
    fn observe_code(&mut self, code: &str, tx: &Transaction, out: &mut Output) {
        let Some(book) = self.codes.as_mut() else {
            return;
        };
        let subject = Subject {
            kind: self.kind,
            id: Text::new(code),
        };
        let mut emit = Emitter {
            event_start: out.alerts.len(),
            detector: book.name(),
            subject: &subject,
            alerts: &mut out.alerts,
            counts: &mut out.counts,
            versions: &self.versions,
            scores: self.record_scores.then_some(&mut out.scores),
        };
        let mut evicted = Evicted::default();
        book.observe(code, tx, &mut emit, &mut evicted);
        out.counts.stage_mut(self.kind).evicted_capacity += evicted.capacity;
    }
}

fn free_all(stores: &mut [Box<dyn Stored>], slots: &[Slot]) {
    for (slot, store) in slots.iter().zip(stores.iter_mut()) {
        if *slot != EMPTY {
            store.free(*slot);
        }
    }
}
