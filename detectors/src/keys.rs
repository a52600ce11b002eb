//! The keys of one stage — cards, terminals, accounts or traceability codes — and, per key, one
//! slot per detector of the stage pointing at that detector's state (or at nothing).
//!
//! Keys are kept in release order of their last event, which is event-time order: the front is
//! the key seen least recently. That single order serves both bounds:
//!
//! - **idle eviction**: a key whose last event is older than the stage's longest horizon can no
//!   longer influence any decision and is forgotten, oldest first;
//! - **the ceiling**: when a new key would exceed the stage's ceiling, the least recently seen
//!   key is forgotten first (ties cannot arise: the order is the release order).
//!
//! A key none of whose detectors holds state is dropped at once ([`KeyTable::remove`]): a card
//! that only ever made ordinary swipes costs nothing to the PIN detectors.
//!
//! Layout: an entry is one 64-byte cache line — the key (inline up to 24 bytes), its last event
//! time, its links in the recency order and its slots — in a chunked slab with a free list; the
//! hash index holds entry numbers only and grows a little at each insertion
//! ([`crate::key_index`]). No allocation per key, and nothing ever moves.
//! The hasher has a fixed seed and nothing observable depends on hash order.

use crate::chunked::Chunked;
use crate::key_index::{Entries, KeyIndex};
use crate::model::{EventTime, Text};

type Hasher = foldhash::fast::FixedState;

/// Where a detector's state for a key is, in that detector's store.
pub(crate) type Slot = u32;
/// No state.
pub(crate) const EMPTY: Slot = u32::MAX;
const NIL: u32 = u32::MAX;
/// Most detectors one stage may run (slots per key).
pub(crate) const MAX_SLOTS: usize = 6;

#[derive(Clone, Debug)]
struct Entry {
    key: Text,
    last_seen: EventTime,
    prev: u32,
    next: u32,
    slots: [Slot; MAX_SLOTS],
}

#[derive(Clone, Debug)]
pub(crate) struct KeyTable {
    index: KeyIndex,
    hasher: Hasher,
    entries: Chunked<Entry>,
    width: usize,
    vacant: Vec<u32>,
    head: u32,
    tail: u32,
    len: usize,
    max: usize,
    /// The first key, in recency order, that the sweep has not visited since it last moved
    /// (`NIL`: every key has been).
    cursor: u32,
}

/// The hash of the key at an entry number (what the index needs to move or rehash keys).
fn hash_at<'a>(entries: &'a Chunked<Entry>, hasher: &'a Hasher) -> impl Fn(u32) -> u64 + 'a {
    use std::hash::BuildHasher;
    move |i| hasher.hash_one(entries[i as usize].key.as_str())
}

impl KeyTable {
    /// A table for keys with `width` detector slots each, holding at most `max` keys.
    pub fn new(width: usize, max: usize) -> Self {
        debug_assert!(max > 0);
        debug_assert!(width <= MAX_SLOTS);
        KeyTable {
            index: KeyIndex::default(),
            hasher: Hasher::with_seed(0x5e1f_9a2d),
            entries: Chunked::default(),
            width: width.min(MAX_SLOTS),
            vacant: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            max,
            cursor: NIL,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn hash(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    pub fn find(&self, key: &str) -> Option<u32> {
        let entries = &self.entries;
        self.index
            .find(self.hash(key), |i| entries[i as usize].key == key)
    }

    /// The key's entry, moved to the most-recently-seen end with `now` as its last event; a new
    /// key gets empty slots, pushing out the least recently seen key first if the table is
    /// full (`evicted` is shown its slots before they are forgotten).
    pub fn touch(&mut self, key: &str, now: EventTime, evicted: impl FnOnce(&[Slot])) -> u32 {
        let at = match self.find(key) {
            Some(at) => {
                self.unlink(at);
                at
            }
            None => {
                if self.len >= self.max && self.head != NIL {
                    let oldest = self.head;
                    evicted(self.slots(oldest));
                    self.remove(oldest);
                }
                self.insert(key)
            }
        };
        self.entries[at as usize].last_seen = now;
        self.link_back(at);
        at
    }

    /// Appends a new key (not present) at the most-recently-seen end: restore's path.
    pub fn push_back(&mut self, key: &str, last_seen: EventTime) -> u32 {
        let at = self.insert(key);
        self.entries[at as usize].last_seen = last_seen;
        self.link_back(at);
        at
    }

    fn insert(&mut self, key: &str) -> u32 {
        let entry = Entry {
            key: Text::new(key),
            last_seen: EventTime::MIN,
            prev: NIL,
            next: NIL,
            slots: [EMPTY; MAX_SLOTS],
        };
        let at = match self.vacant.pop() {
            Some(at) => {
                self.entries[at as usize] = entry;
                at
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        let hash = self.hash(key);
        let entries = Entries::slab(self.entries.len());
        self.index
            .insert(hash, at, entries, hash_at(&self.entries, &self.hasher));
        self.len += 1;
        at
    }

    /// Forgets a key (its slots must already be empty or freed by the caller).
    pub fn remove(&mut self, at: u32) {
        let hash = self.hash(&self.entries[at as usize].key);
        self.index.remove(hash, at);
        self.unlink(at);
        let e = &mut self.entries[at as usize];
        e.key = Text::default();
        e.last_seen = EventTime::MIN;
        e.slots = [EMPTY; MAX_SLOTS];
        self.vacant.push(at);
        self.len -= 1;
    }

    fn unlink(&mut self, at: u32) {
        let (prev, next) = {
            let e = &self.entries[at as usize];
            (e.prev, e.next)
        };
        if self.cursor == at {
            self.cursor = next;
        }
        if prev == NIL {
            if self.head == at {
                self.head = next;
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            if self.tail == at {
                self.tail = prev;
            }
        } else {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[at as usize];
        e.prev = NIL;
        e.next = NIL;
    }

    fn link_back(&mut self, at: u32) {
        if self.cursor == NIL {
            self.cursor = at;
        }
        let tail = self.tail;
        {
            let e = &mut self.entries[at as usize];
            e.prev = tail;
            e.next = NIL;
        }
        if tail == NIL {
            self.head = at;
        } else {
            self.entries[tail as usize].next = at;
        }
        self.tail = at;
    }

    pub fn slots(&self, at: u32) -> &[Slot] {
        &self.entries[at as usize].slots[..self.width]
    }

    pub fn slots_mut(&mut self, at: u32) -> &mut [Slot] {
        let width = self.width;
        &mut self.entries[at as usize].slots[..width]
    }

    /// Every entry's slot of detector `column` (vacant entries' are `EMPTY`).
    pub fn column_mut(&mut self, column: usize) -> impl Iterator<Item = &mut Slot> + '_ {
        self.entries.iter_mut().map(move |e| &mut e.slots[column])
    }

    /// The least recently seen key, if it was last seen before `cutoff`.
    pub fn oldest_before(&self, cutoff: EventTime) -> Option<u32> {
        (self.head != NIL && self.entries[self.head as usize].last_seen < cutoff)
            .then_some(self.head)
    }

    /// The next key for the sweep: the first one it has not visited since it last moved, if
    /// that key was last seen before `cutoff`. Every key is offered once per quiet spell.
    pub fn sweep_next(&mut self, cutoff: EventTime) -> Option<u32> {
        let at = self.cursor;
        if at == NIL || self.entries[at as usize].last_seen >= cutoff {
            return None;
        }
        self.cursor = self.entries[at as usize].next;
        Some(at)
    }

    /// The sweep's position as a key's place in recency order (for snapshots).
    pub fn sweep_position(&self) -> Option<u32> {
        if self.cursor == NIL {
            return None;
        }
        self.iter()
            .position(|(at, _, _)| at == self.cursor)
            .map(|p| p as u32)
    }

    /// Puts the sweep at the key in place `position` of recency order (restore).
    pub fn set_sweep_position(&mut self, position: Option<u32>) {
        self.cursor = position
            .and_then(|p| self.iter().nth(p as usize).map(|(at, _, _)| at))
            .unwrap_or(NIL);
    }

    /// Keys from least to most recently seen: (entry, key, last event).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str, EventTime)> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let e = &self.entries[at as usize];
            let item = (at, e.key.as_str(), e.last_seen);
            at = e.next;
            Some(item)
        })
    }

    /// Makes room for `additional` keys at once (restore).
    pub fn reserve(&mut self, additional: usize) {
        let additional = additional.min(self.max);
        let entries = Entries::slab(self.entries.len());
        self.index
            .reserve(additional, entries, hash_at(&self.entries, &self.hasher));
    }

    /// Estimated bytes held: entries, the hash index, vacancies and long keys' strings.
    /// Entries count what is written; the rest of their chunk is never touched (address space,
    /// not memory). The hash index's control bytes are all written, so it counts whole.
    pub fn bytes(&self) -> usize {
        let entries = self.entries.bytes();
        let index = self.index.buckets() * (std::mem::size_of::<u32>() + 1);
        let vacant = self.vacant.capacity() * 4;
        let long_keys: usize = self
            .entries
            .iter()
            .filter(|e| e.key.is_heap_allocated())
            .map(|e| crate::detector::heap_block(e.key.len()))
            .sum();
        entries + index + vacant + long_keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(t: &KeyTable) -> Vec<String> {
        t.iter().map(|(_, k, _)| k.to_string()).collect()
    }

    #[test]
    fn recency_order_ceiling_and_removal() {
        let mut t = KeyTable::new(2, 3);
        for (i, k) in ["a", "b", "c", "a"].into_iter().enumerate() {
            t.touch(k, EventTime(i as i64), |_| panic!("no eviction yet"));
        }
        assert_eq!(keys(&t), ["b", "c", "a"]);
        let mut evicted = 0;
        let d = t.touch("d", EventTime(9), |s| {
            assert_eq!(s, [EMPTY, EMPTY]);
            evicted += 1;
        });
        assert_eq!(evicted, 1);
        assert_eq!(keys(&t), ["c", "a", "d"]);
        t.slots_mut(d)[1] = 7;
        assert_eq!(t.slots(t.find("d").unwrap()), [EMPTY, 7]);
        t.remove(t.find("a").unwrap());
        assert_eq!(keys(&t), ["c", "d"]);
        assert_eq!(t.find("a"), None);
        let e = t.touch("e", EventTime(10), |_| panic!("room after removal"));
        assert_eq!(t.slots(e), [EMPTY, EMPTY], "a reused entry starts empty");
        assert_eq!(keys(&t), ["c", "d", "e"]);
        assert_eq!(t.oldest_before(EventTime(3)), t.find("c"));
        assert_eq!(t.oldest_before(EventTime(2)), None);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn long_keys_live_on_the_heap_and_are_found() {
        let mut t = KeyTable::new(1, 10);
        let long = "a-traceability-code-of-more-than-24-bytes";
        let at = t.touch(long, EventTime(1), |_| {});
        assert_eq!(t.find(long), Some(at));
        assert!(t.bytes() > 0);
    }
}
