//! The hash index of a key table — key hash → entry number — growing without a pause.
//!
//! A plain hash table grows by rehashing every key at once, and, when keys come and go all the
//! time (a card is forgotten as soon as none of its detectors holds state), it also rebuilds
//! itself in place whenever deleted markers use up its room. Either rebuild visits every key:
//! tens of milliseconds at a hundred thousand keys on a shared box, seconds at ten million, all
//! charged to the one event whose insertion triggered it — the daemon's slowest hand-offs.
//!
//! Here, when the table is full, it is set aside as the *draining* table and a fresh one with
//! room for twice the keys takes new insertions; every later insertion also moves the keys of a
//! few entry numbers (walking the owner's entries in order, [`Entries`]) from the draining table
//! to the new one, so each key moves once per growth and no single insertion does more than a
//! bounded amount of work. Look-ups and removals consult both tables while a move is under way.
//! The index is internal: which table holds a key is never observable, and nothing depends on
//! hash order.
//!
//! Its owners number entries two ways: the key table by place in its slab (from 0), the
//! traceability-code book by a wrapping sequence number whose front is forgotten as codes age
//! out (`crate::codebook`). A move walks from the front it is given at each call, so entries
//! forgotten meanwhile (and removed from the index by their owner) are simply not visited.

use hashbrown::HashTable;

/// Fewest entry numbers one insertion moves on while draining.
const MIN_STEP: usize = 8;

/// The entry numbers an owner holds: `len` of them from `first` on (wrapping).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entries {
    pub first: u32,
    pub len: usize,
}

impl Entries {
    /// A slab's entries, numbered from 0.
    pub fn slab(len: usize) -> Entries {
        Entries { first: 0, len }
    }

    /// The place of `at` from the front, or `None` when it is before the front (forgotten).
    fn position(self, at: u32) -> Option<usize> {
        let p = at.wrapping_sub(self.first) as usize;
        (p <= self.len).then_some(p)
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct KeyIndex {
    current: HashTable<u32>,
    /// The table being emptied into `current` (empty when no move is under way).
    draining: HashTable<u32>,
    /// The next entry number whose key is to be moved.
    cursor: u32,
    /// Entry numbers moved per insertion, set when a move starts so that it ends well before
    /// `current` runs out of room.
    step: usize,
}

impl KeyIndex {
    pub fn find(&self, hash: u64, eq: impl Fn(u32) -> bool) -> Option<u32> {
        self.current
            .find(hash, |&i| eq(i))
            .or_else(|| self.draining.find(hash, |&i| eq(i)))
            .copied()
    }

    /// Adds entry `at` (not present) under `hash`. `entries` are the owner's entries and
    /// `hash_of` gives the hash of the key at an entry number (for the keys being moved).
    pub fn insert(&mut self, hash: u64, at: u32, entries: Entries, hash_of: impl Fn(u32) -> u64) {
        if self.current.len() == self.current.capacity() {
            self.finish(entries, &hash_of);
            self.start(entries);
        }
        if self.moving() {
            self.move_on(self.step, entries, &hash_of);
        }
        // Room was made above, so this never rebuilds the table.
        self.current.insert_unique(hash, at, |&i| hash_of(i));
    }

    /// Forgets entry `at`, stored under `hash`.
    pub fn remove(&mut self, hash: u64, at: u32) {
        if let Ok(found) = self.current.find_entry(hash, |&i| i == at) {
            found.remove();
        } else if let Ok(found) = self.draining.find_entry(hash, |&i| i == at) {
            found.remove();
        }
    }

    /// Makes room for `additional` more keys at once (restore, where a pause is expected).
    pub fn reserve(&mut self, additional: usize, entries: Entries, hash_of: impl Fn(u32) -> u64) {
        self.finish(entries, &hash_of);
        self.current.reserve(additional, |&i| hash_of(i));
    }

    /// Buckets allocated, over both tables (each bucket: an entry number and a control byte).
    pub fn buckets(&self) -> usize {
        buckets(self.current.capacity()) + buckets(self.draining.capacity())
    }

    /// Whether a move is under way.
    fn moving(&self) -> bool {
        self.draining.capacity() > 0
    }

    /// Whether a move is under way (for the owners' tests).
    #[cfg(test)]
    pub(crate) fn is_moving(&self) -> bool {
        self.moving()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.draining.len()
    }

    /// Sets the full table aside and opens one with room for twice the keys (or the same room
    /// when deletions, not keys, filled it: the new table has no deleted markers), to be
    /// filled by walking `entries` within as many insertions as the new table has room for,
    /// twice over.
    fn start(&mut self, entries: Entries) {
        let keys = self.current.len();
        let fresh = HashTable::with_capacity((2 * keys).max(16));
        self.draining = std::mem::replace(&mut self.current, fresh);
        self.cursor = entries.first;
        let room = self.current.capacity().saturating_sub(keys).max(1);
        self.step = entries.len.div_ceil(room).saturating_mul(2).max(MIN_STEP);
    }

    /// Moves the keys of the next `count` entry numbers from the draining table; drops it
    /// once every entry has been walked.
    fn move_on(&mut self, count: usize, entries: Entries, hash_of: &impl Fn(u32) -> u64) {
        // The owner forgot (and unindexed) what lies before its front: start there if the
        // cursor has fallen behind it.
        let from = entries.position(self.cursor).unwrap_or(0);
        let to = from.saturating_add(count).min(entries.len);
        for p in from..to {
            let at = entries.first.wrapping_add(p as u32);
            let hash = hash_of(at);
            if let Ok(found) = self.draining.find_entry(hash, |&i| i == at) {
                found.remove();
                self.current.insert_unique(hash, at, |&i| hash_of(i));
            }
        }
        self.cursor = entries.first.wrapping_add(to as u32);
        if to >= entries.len || self.draining.is_empty() {
            self.draining = HashTable::new();
        }
    }

    /// Completes a move under way at once.
    fn finish(&mut self, entries: Entries, hash_of: &impl Fn(u32) -> u64) {
        if self.moving() {
            self.move_on(usize::MAX, entries, hash_of);
        }
    }
}

/// Buckets hashbrown allocates for a table of `capacity` (a power of two above 8/7 of it).
pub(crate) fn buckets(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        (capacity * 8 / 7).next_power_of_two()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn h(i: u32) -> u64 {
        // A poor hash on purpose: collisions must be told apart by entry number.
        u64::from(i % 1000).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn keys_stay_findable_while_the_index_grows_and_churns() {
        let mut index = KeyIndex::default();
        let mut model: HashMap<u32, ()> = HashMap::new();
        let mut slab = 0u32;
        let mut vacant: Vec<u32> = Vec::new();
        let mut moves_seen = 0;
        // Grow to 20K keys, then churn: remove the oldest quarter, insert as many again.
        for round in 0..40u32 {
            let inserts = if round < 20 { 1000 } else { 500 };
            for _ in 0..inserts {
                let at = vacant.pop().unwrap_or_else(|| {
                    slab += 1;
                    slab - 1
                });
                index.insert(h(at), at, Entries::slab(slab as usize), h);
                model.insert(at, ());
                moves_seen += usize::from(index.moving());
            }
            if round >= 20 {
                let mut gone: Vec<u32> = model.keys().copied().collect();
                gone.sort_unstable();
                for at in gone.into_iter().take(500) {
                    index.remove(h(at), at);
                    model.remove(&at);
                    vacant.push(at);
                }
            }
            for at in 0..slab {
                let found = index.find(h(at), |i| i == at);
                assert_eq!(found.is_some(), model.contains_key(&at), "entry {at}");
            }
        }
        assert!(moves_seen > 0, "the index never grew incrementally");
        // Capacity follows the keys (about twice them at most), not the churn.
        assert!(index.buckets() <= 4 * 32_768, "{} buckets", index.buckets());
    }

    #[test]
    fn a_ring_whose_front_overtakes_the_move_keeps_every_key_findable() {
        // The code book's numbering: wrapping sequence numbers (starting just before the wrap),
        // appended at the back, forgotten from the front in runs, some vacated in between.
        let mut rng = crate::testing::SplitMix::new(11);
        let mut index = KeyIndex::default();
        let mut first = u32::MAX - 10_000;
        let mut held: std::collections::VecDeque<bool> = Default::default();
        let (mut moves_seen, mut overtaken) = (0, 0);
        for op in 0..60_000u32 {
            let at = first.wrapping_add(held.len() as u32);
            held.push_back(true);
            index.insert(
                h(at),
                at,
                Entries {
                    first,
                    len: held.len(),
                },
                h,
            );
            if rng.below(5) == 0 && !held.is_empty() {
                let p = rng.below(held.len() as u64) as usize;
                if std::mem::replace(&mut held[p], false) {
                    let at = first.wrapping_add(p as u32);
                    index.remove(h(at), at);
                }
            }
            // Runs of old entries forgotten now and then, and more often during a move, so
            // that the front overtakes the move's cursor.
            if rng.below(if index.moving() { 20 } else { 400 }) == 0 {
                for _ in 0..rng.below(400).min(held.len() as u64) {
                    if held.pop_front() == Some(true) {
                        index.remove(h(first), first);
                    }
                    first = first.wrapping_add(1);
                }
            }
            if index.moving() {
                moves_seen += 1;
                let lead = first.wrapping_sub(index.cursor);
                overtaken += usize::from(lead > 0 && lead < u32::MAX / 2);
            }
            if op % 1_000 == 0 || index.moving() && op % 97 == 0 {
                for (p, &is) in held.iter().enumerate() {
                    let at = first.wrapping_add(p as u32);
                    assert_eq!(index.find(h(at), |i| i == at).is_some(), is, "op {op}");
                }
            }
        }
        assert!(first < 1_000_000, "the numbers wrapped");
        assert!(moves_seen > 1_000, "{moves_seen}");
        assert!(overtaken > 0, "the front never overtook a move's cursor");
        assert_eq!(index.len(), held.iter().filter(|&&b| b).count());
    }

    #[test]
    fn a_move_ends_within_the_room_the_new_table_has() {
        let mut index = KeyIndex::default();
        for at in 0..100_000u32 {
            index.insert(h(at), at, Entries::slab(at as usize + 1), h);
        }
        // Every table is either not moving or moves on at each insertion; nothing was lost.
        for at in 0..100_000u32 {
            assert_eq!(index.find(h(at), |i| i == at), Some(at));
        }
        assert_eq!(index.len(), 100_000);
    }
}
