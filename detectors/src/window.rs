//! A sliding event-time window over one card's recent swipes, bounded in length.
//!
//! Count rules ("≥ k swipes within w") only ever need the k most recent qualifying swipes: the
//! rule holds exactly when the oldest of those k is at most `w` older than the newest. So the
//! window keeps at most k entries, and memory per card is bounded whatever the card does. The
//! allocation is kept exact (no growth slack) because most cards hold one entry or none.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::detector::heap_block;
use crate::model::{EventId, EventTime, Millis};

/// One remembered swipe.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Mark {
    pub ts: EventTime,
    pub id: EventId,
    /// Stable hash of the terminal (or merchant) that took it, to say "at N terminals".
    pub place: u32,
}

/// The most recent swipes of a card, oldest first, at most `cap` of them. The first is held
/// inline; the allocation beyond grows one entry at a time and is freed when the window
/// empties, so a quiet card holds nothing on the heap. Encoded as a plain sequence.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Recent(SmallVec<[Mark; 1]>);

impl Recent {
    /// Expires marks more than `window` older than `mark`, then appends `mark`, dropping the
    /// oldest beyond `cap`. Reuses the allocation: a busy card's window never reallocates.
    pub fn record(&mut self, mark: Mark, window: Millis, cap: usize) {
        debug_assert!(cap > 0);
        debug_assert!(
            self.0.last().is_none_or(|m| m.ts <= mark.ts),
            "marks arrive in time order"
        );
        let cutoff = mark.ts.saturating_sub(window);
        let stale = self.0.iter().take_while(|m| m.ts < cutoff).count();
        let excess = (self.0.len() - stale + 1).saturating_sub(cap);
        if stale + excess > 0 {
            self.0.drain(..stale + excess);
        }
        if self.0.len() == self.0.capacity() {
            self.0.reserve_exact(1);
        }
        self.0.push(mark);
    }

    /// Forgets marks more than `window` older than `now` (a mark exactly `window` old stays).
    pub fn expire(&mut self, now: EventTime, window: Millis) {
        let cutoff = now.saturating_sub(window);
        let stale = self.0.iter().take_while(|m| m.ts < cutoff).count();
        if stale == self.0.len() {
            self.clear();
        } else if stale > 0 {
            self.0.drain(..stale);
        }
    }

    pub fn clear(&mut self) {
        self.0 = SmallVec::new();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&Mark> {
        self.0.first()
    }

    pub fn marks(&self) -> &[Mark] {
        &self.0
    }

    /// Event ids, oldest first.
    pub fn ids(&self) -> Vec<EventId> {
        self.0.iter().map(|m| m.id.clone()).collect()
    }

    /// How many distinct places the marks were taken at.
    pub fn distinct_places(&self) -> usize {
        let mut places: Vec<u32> = self.0.iter().map(|m| m.place).collect();
        places.sort_unstable();
        places.dedup();
        places.len()
    }

    /// Heap bytes: the spilled entry array plus each id's share of its string.
    pub fn heap_bytes(&self) -> usize {
        let array = if self.0.spilled() {
            heap_block(self.0.capacity() * std::mem::size_of::<Mark>())
        } else {
            0
        };
        array + self.0.iter().map(|m| m.id.heap_share()).sum::<usize>()
    }
}
