//! The traceability-code stage's own store when `trace_code_resettled` is its only detector (as
//! it is today): key and state in one 52-byte record per code, so that a city's year of boxes
//! fits one machine (DESIGN §12).
//!
//! It decides exactly as the generic key table with the detector's store would — the same
//! alerts, evictions, counts and snapshot sections (the stage writes the generic layout, so a
//! snapshot moves freely between the two); a test compares them on random streams. Only the
//! layout differs:
//!
//! - the records form a ring in order of their code's last event (events are released in time
//!   order, so appending keeps it sorted): the front is the least recently seen code. An event
//!   naming a held code moves its record to the back, leaving its old place vacant; eviction,
//!   by horizon or by the ceiling, pops the front. So no recency links;
//! - a record keeps its last event time as the gap to the record before it (4 bytes; a gap of
//!   49 days or more between two consecutive events of a partition is kept aside);
//! - the code and the first settlement's id take 16 bytes each ([`crate::packed`]);
//! - the hash index maps a code to its record's sequence number and grows as the key table's
//!   does ([`crate::key_index`]): a few keys move at each insertion instead of all at once, so
//!   no event waits for a rehash of every code (two seconds at ten million).
//!
//! Vacated places (a refund, a code seen again) are given back when they reach the front: at
//! most the horizon's worth of refunds and repeats, each 52 bytes.

use std::collections::{BTreeMap, VecDeque};

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::detector::{Detector, Emitter};
use crate::detectors::trace_code_resettled::{
    self as tcr, Settled, TraceCodeResettled, TraceCodeResettledState,
};
use crate::key_index::{Entries, KeyIndex};
use crate::model::{DetectorName, EventId, EventTime, Millis, Text, Transaction};
use crate::packed::{LongTexts, Packed};

type Hasher = foldhash::fast::FixedState;

const CHUNK: usize = 4096;
/// A gap too long for 32 bits: the real one is in `CodeBook::long_gaps`.
const LONG_GAP: u32 = u32::MAX;

/// One code: which, since when, by what settlement, where and by whom; and when it was last seen.
#[derive(Clone, Copy, Debug)]
struct Record {
    code: Packed,
    id: Packed,
    /// The first settlement's time, as two halves (keeps the record 4-byte aligned).
    ts: [u32; 2],
    institution: u32,
    person: u32,
    /// Milliseconds from the previous record's last event to this one's.
    gap: u32,
}

const _: () = assert!(std::mem::size_of::<Record>() == 52);

impl Record {
    fn ts(&self) -> EventTime {
        EventTime((u64::from(self.ts[0]) | u64::from(self.ts[1]) << 32) as i64)
    }
}

fn split(t: EventTime) -> [u32; 2] {
    let v = t.0 as u64;
    [v as u32, (v >> 32) as u32]
}

/// What an event did to the book's keys (for the stage's counts).
#[derive(Default)]
pub(crate) struct Evicted {
    pub capacity: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct CodeBook {
    detector: TraceCodeResettled,
    name: DetectorName,
    ring: VecDeque<Vec<Record>>,
    /// Sequence number (wrapping) of the ring's first record.
    head: u32,
    /// Where the first record is in the first chunk.
    head_offset: usize,
    /// Records in the ring, vacant ones included.
    records: usize,
    /// Codes held (records not vacant).
    live: usize,
    max: usize,
    /// Last event time of the first record, and of the last.
    head_time: EventTime,
    tail_time: EventTime,
    long_gaps: BTreeMap<u32, i64>,
    /// Code → sequence number, growing a little at each insertion (no pause at ten million).
    index: KeyIndex,
    hasher: Hasher,
    texts: LongTexts,
}

impl CodeBook {
    pub fn new(detector: TraceCodeResettled, name: DetectorName, max: usize) -> CodeBook {
        CodeBook {
            detector,
            name,
            ring: VecDeque::new(),
            head: 0,
            head_offset: 0,
            records: 0,
            live: 0,
            max,
            head_time: EventTime::MIN,
            tail_time: EventTime::MIN,
            long_gaps: BTreeMap::new(),
            index: KeyIndex::default(),
            hasher: Hasher::with_seed(0x5e1f_9a2d),
            texts: LongTexts::default(),
        }
    }

    pub fn name(&self) -> DetectorName {
        self.name
    }

    pub fn horizon(&self) -> Millis {
        self.detector.horizon()
    }

    /// Codes held.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn place(&self, seq: u32) -> (usize, usize) {
        let at = self.head_offset + seq.wrapping_sub(self.head) as usize;
        (at / CHUNK, at % CHUNK)
    }

    fn record(&self, seq: u32) -> &Record {
        let (c, o) = self.place(seq);
        &self.ring[c][o]
    }

    fn record_mut(&mut self, seq: u32) -> &mut Record {
        let (c, o) = self.place(seq);
        &mut self.ring[c][o]
    }

    fn hash_of(&self, code: Packed, text: Option<&str>) -> u64 {
        use std::hash::BuildHasher;
        match text {
            Some(s) => self.hasher.hash_one(s),
            None => self.hasher.hash_one(code.bits()),
        }
    }

    fn find(&self, code: &str, inline: Option<Packed>) -> Option<u32> {
        let hash = match inline {
            Some(p) => self.hash_of(p, None),
            None => self.hash_of(Packed::VACANT, Some(code)),
        };
        self.index.find(hash, |seq| {
            self.texts.is(self.record(seq).code, code, inline)
        })
    }

    /// Appends a record last seen at `time` (never before the last one's).
    fn push_back(&mut self, mut record: Record, time: EventTime) -> u32 {
        let seq = self.head.wrapping_add(self.records as u32);
        if self.records == 0 {
            self.head_time = time;
            record.gap = 0;
        } else {
            let gap = time.0.saturating_sub(self.tail_time.0).max(0);
            record.gap = match u32::try_from(gap) {
                Ok(g) if g != LONG_GAP => g,
                _ => {
                    self.long_gaps.insert(seq, gap);
                    LONG_GAP
                }
            };
        }
        self.tail_time = time;
        let end = self.head_offset + self.records;
        if end == self.ring.len() * CHUNK {
            self.ring.push_back(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.ring.back_mut() {
            last.push(record);
        }
        self.records += 1;
        if !record.code.is_vacant() {
            let text = self.texts.long(record.code).map(str::to_string);
            let hash = self.hash_of(record.code, text.as_deref());
            let (ring, texts, hasher, head, head_offset) = (
                &self.ring,
                &self.texts,
                &self.hasher,
                self.head,
                self.head_offset,
            );
            let entries = Entries {
                first: head,
                len: self.records,
            };
            self.index.insert(hash, seq, entries, |s| {
                use std::hash::BuildHasher;
                let at = head_offset + s.wrapping_sub(head) as usize;
                let code = ring[at / CHUNK][at % CHUNK].code;
                match texts.long(code) {
                    Some(t) => hasher.hash_one(t),
                    None => hasher.hash_one(code.bits()),
                }
            });
            self.live += 1;
        }
        seq
    }

    /// Takes `seq` out of the index and marks its place vacant; its record as it was.
    fn vacate(&mut self, seq: u32) -> Record {
        let record = *self.record(seq);
        let text = self.texts.long(record.code).map(str::to_string);
        let hash = self.hash_of(record.code, text.as_deref());
        self.index.remove(hash, seq);
        self.record_mut(seq).code = Packed::VACANT;
        self.live -= 1;
        record
    }

    /// Forgets a record's strings (it is gone, not moved).
    fn drop_texts(&mut self, record: &Record) {
        self.texts.free(record.code);
        self.texts.free(record.id);
    }

    /// Pops the front record (forgetting it if held); whether it was held.
    fn pop_front(&mut self) -> bool {
        if self.records == 0 {
            return false;
        }
        let seq = self.head;
        let held = !self.record(seq).code.is_vacant();
        if held {
            let record = self.vacate(seq);
            self.drop_texts(&record);
        }
        self.head = self.head.wrapping_add(1);
        self.head_offset += 1;
        self.records -= 1;
        if self.head_offset == CHUNK {
            self.ring.pop_front();
            self.head_offset = 0;
        }
        if self.records > 0 {
            let next = self.record(self.head).gap;
            let gap = if next == LONG_GAP {
                self.long_gaps.remove(&self.head).unwrap_or(0)
            } else {
                i64::from(next)
            };
            self.head_time = EventTime(self.head_time.0.saturating_add(gap));
        } else {
            self.long_gaps.clear();
        }
        held
    }

    /// Gives back vacant places at the front.
    fn trim(&mut self) {
        while self.records > 0 && self.record(self.head).code.is_vacant() {
            self.pop_front();
        }
    }

    /// Forgets codes last seen before `cutoff`; how many.
    pub fn evict_before(&mut self, cutoff: EventTime) -> u64 {
        let mut evicted = 0;
        loop {
            self.trim();
            if self.records == 0 || self.head_time >= cutoff {
                return evicted;
            }
            self.pop_front();
            evicted += 1;
        }
    }

    /// Forgets the least recently seen code.
    fn evict_oldest(&mut self) {
        self.trim();
        self.pop_front();
    }

    /// Shows the detector one event naming `code`, as the generic stage would: a new code
    /// beyond the ceiling pushes out the least recently seen one first (even if this event
    /// then holds nothing for it); a held code is seen again (moved to the back).
    pub fn observe(
        &mut self,
        code: &str,
        tx: &Transaction,
        emit: &mut Emitter<'_>,
        evicted: &mut Evicted,
    ) {
        emit.detector = self.name;
        let inline = Packed::inline(code);
        let Some(seq) = self.find(code, inline) else {
            if self.live >= self.max && self.live > 0 {
                self.evict_oldest();
                evicted.capacity += 1;
            }
            if tcr::settles(tx) {
                let record = Record {
                    code: self.texts.pack(code),
                    id: self.texts.pack(tx.event_id.as_str()),
                    ts: split(tx.ts),
                    institution: tcr::institution(tx),
                    person: tcr::person(tx),
                    gap: 0,
                };
                self.push_back(record, tx.ts);
            }
            return;
        };
        let record = self.vacate(seq);
        if tcr::returns(tx) {
            self.drop_texts(&record);
            self.trim();
            return;
        }
        if tcr::settles(tx) {
            let first = self.settled(&record);
            emit.fire_always(tx, first.resettled_by(tx, code));
        }
        self.push_back(record, tx.ts);
        self.trim();
    }

    fn settled(&self, r: &Record) -> Settled {
        Settled {
            ts: r.ts(),
            id: EventId::new(self.texts.string(r.id)),
            institution: r.institution,
            person: r.person,
        }
    }

    /// Held codes from least to most recently seen, with their last event time.
    pub fn keys(&self) -> impl Iterator<Item = (String, EventTime)> + '_ {
        self.held().map(|(r, t)| (self.texts.string(r.code), t))
    }

    fn held(&self) -> impl Iterator<Item = (&Record, EventTime)> + '_ {
        let mut time = self.head_time;
        let mut seq = self.head;
        self.ring
            .iter()
            .flatten()
            .skip(self.head_offset)
            .enumerate()
            .filter_map(move |(i, r)| {
                if i > 0 {
                    let gap = if r.gap == LONG_GAP {
                        self.long_gaps.get(&seq).copied().unwrap_or(0)
                    } else {
                        i64::from(r.gap)
                    };
                    time = EventTime(time.0.saturating_add(gap));
                }
                seq = seq.wrapping_add(1);
                (!r.code.is_vacant()).then_some((r, time))
            })
    }

    /// The detector's section, as the generic store writes it: (place in `keys`, state) pairs.
    pub fn encode(&self) -> Vec<u8> {
        let out = Vec::with_capacity(16 + self.live * 48);
        postcard::to_extend(&States(self), out).unwrap_or_default()
    }

    /// Restores a section written under the keys `keys` (generic layout); keys before `skip`
    /// (cut by a lower ceiling) are left out.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        keys: &[(Text, EventTime)],
        skip: usize,
    ) -> Result<(), postcard::Error> {
        let mut decoder = postcard::Deserializer::from_bytes(bytes);
        let loaded = Load {
            book: &mut *self,
            keys,
            skip,
        }
        .deserialize(&mut decoder);
        if loaded.is_err() {
            *self = CodeBook::new(self.detector.clone(), self.name, self.max);
        }
        loaded
    }

    /// Bytes held, as (key part, state part): a code's record is split between its key (code,
    /// gap) and its first settlement (id, time, institution, person); the index and
    /// vacant places count to the key, long strings to where they belong.
    pub fn bytes_by_part(&self) -> (usize, usize) {
        let index = self.index.buckets() * (std::mem::size_of::<u32>() + 1);
        let vacant = (self.records - self.live) * std::mem::size_of::<Record>();
        let gaps = self.long_gaps.len() * 48;
        let key = self.live * 20 + index + vacant + gaps;
        let state = self.live * 32 + self.texts.bytes();
        (key, state)
    }
}

/// The section's sequence, written without collecting it first.
struct States<'a>(&'a CodeBook);

impl Serialize for States<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let book = self.0;
        let mut seq = s.serialize_seq(Some(book.live))?;
        for (position, (record, _)) in book.held().enumerate() {
            let state = TraceCodeResettledState {
                held: Some(book.settled(record)),
            };
            seq.serialize_element(&(position as u32, &state))?;
        }
        seq.end()
    }
}

/// Reads (key position, state) pairs straight into the ring.
struct Load<'a> {
    book: &'a mut CodeBook,
    keys: &'a [(Text, EventTime)],
    skip: usize,
}

impl<'de> DeserializeSeed<'de> for Load<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Load<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of (key position, state) pairs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut last: Option<u32> = None;
        while let Some((position, state)) = seq.next_element::<(u32, TraceCodeResettledState)>()? {
            let Some((code, seen)) = self.keys.get(position as usize) else {
                return Err(A::Error::custom("state of an unknown key"));
            };
            if last.is_some_and(|l| position <= l) || *seen < self.book.tail_time {
                return Err(A::Error::custom("state of a key out of order"));
            }
            last = Some(position);
            let Some(first) = state.held else { continue };
            if (position as usize) < self.skip
                || self.book.find(code, Packed::inline(code)).is_some()
            {
                continue;
            }
            let record = Record {
                code: self.book.texts.pack(code),
                id: self.book.texts.pack(first.id.as_str()),
                ts: split(first.ts),
                institution: first.institution,
                person: first.person,
                gap: 0,
            };
            self.book.push_back(record, *seen);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
