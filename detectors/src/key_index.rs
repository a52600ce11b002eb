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
//! few entry numbers (walking the entry slab in order) from the draining table to the new one,
//! so each key moves once per growth and no single insertion does more than a bounded amount
//! of work. Look-ups and removals consult both tables while a move is under way. The index is
//! internal: which table holds a key is never observable, and nothing depends on hash order.

use hashbrown::HashTable;

/// Fewest entry numbers one insertion moves on while draining.
const MIN_STEP: usize = 8;

#[derive(Clone, Debug, Default)]
pub(crate) struct KeyIndex {
    current: HashTable<u32>,
    /// The table being emptied into `current` (empty when no move is under way).
    draining: HashTable<u32>,
    /// The next entry number whose key is to be moved.
    cursor: usize,
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

    /// Adds entry `at` (not present) under `hash`. `entries` is the slab's length and
    /// `hash_of` gives the hash of the key at an entry number (for the keys being moved).
    pub fn insert(&mut self, hash: u64, at: u32, entries: usize, hash_of: impl Fn(u32) -> u64) {
        if self.current.len() == self.current.capacity() {
            self.finish(entries, &hash_of);
            self.start(entries);
        }
        if self.moving() {
            self.move_to(self.cursor.saturating_add(self.step), entries, &hash_of);
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
    pub fn reserve(&mut self, additional: usize, entries: usize, hash_of: impl Fn(u32) -> u64) {
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

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.draining.len()
    }

    /// Sets the full table aside and opens one with room for twice the keys (or the same room
    /// when deletions, not keys, filled it: the new table has no deleted markers), to be
    /// filled by walking the slab of `entries` within as many insertions as the new table has
    /// room for, twice over.
    fn start(&mut self, entries: usize) {
        let keys = self.current.len();
        let fresh = HashTable::with_capacity((2 * keys).max(16));
        self.draining = std::mem::replace(&mut self.current, fresh);
        self.cursor = 0;
        let room = self.current.capacity().saturating_sub(keys).max(1);
        self.step = entries.div_ceil(room).saturating_mul(2).max(MIN_STEP);
    }

    /// Moves the keys of the entry numbers before `end` from the draining table; drops it once
    /// the whole slab has been walked.
    fn move_to(&mut self, end: usize, entries: usize, hash_of: &impl Fn(u32) -> u64) {
        let end = end.min(entries);
        for at in self.cursor..end {
            let at = at as u32;
            let hash = hash_of(at);
            if let Ok(found) = self.draining.find_entry(hash, |&i| i == at) {
                found.remove();
                self.current.insert_unique(hash, at, |&i| hash_of(i));
            }
        }
        self.cursor = end;
        if self.cursor >= entries || self.draining.is_empty() {
            self.draining = HashTable::new();
            self.cursor = 0;
        }
    }

    /// Completes a move under way at once.
    fn finish(&mut self, entries: usize, hash_of: &impl Fn(u32) -> u64) {
        if self.moving() {
            self.move_to(entries, entries, hash_of);
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
                index.insert(h(at), at, slab as usize, h);
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
    fn a_move_ends_within_the_room_the_new_table_has() {
        let mut index = KeyIndex::default();
        for at in 0..100_000u32 {
            index.insert(h(at), at, at as usize + 1, h);
        }
        // Every table is either not moving or moves on at each insertion; nothing was lost.
        for at in 0..100_000u32 {
            assert_eq!(index.find(h(at), |i| i == at), Some(at));
        }
        assert_eq!(index.len(), 100_000);
    }
}
