//! The tracked cards of one partition and the per-card state of every detector.
//!
//! Cards are kept in release order of their last swipe, which is event-time order: the front is
//! the card seen least recently. That single order serves both bounds:
//!
//! - **idle eviction**: a card whose last swipe is older than the detectors' longest horizon
//!   can no longer influence any decision and is forgotten, oldest first;
//! - **the ceiling**: when a new card would exceed `max_tracked_cards`, the least recently seen
//!   card is forgotten first (ties cannot arise: the order is the release order).
//!
//! Both depend only on the event sequence, so they are as deterministic as the detectors. The
//! hasher has a fixed seed; iteration order is never the hash order, so nothing observable
//! depends on it.

use hashlink::LinkedHashMap;
use serde::{Deserialize, Serialize};

use crate::detector::{heap_block, Detector};
use crate::detectors::failed_pin::{FailedPin, FailedPinState};
use crate::detectors::impossible_travel::{ImpossibleTravel, ImpossibleTravelState};
use crate::detectors::off_pattern::OffPatternState;
use crate::detectors::pin_success::{PinSuccess, PinSuccessState};
use crate::detectors::rapid_fire::{RapidFire, RapidFireState};
use crate::model::{CardId, EventTime};

type Hasher = foldhash::fast::FixedState;

/// Everything the detectors remember about one card.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CardState {
    pub last_seen: EventTime,
    pub failed_pin: FailedPinState,
    pub pin_success: PinSuccessState,
    pub rapid_fire: RapidFireState,
    pub travel: ImpossibleTravelState,
    pub off_pattern: OffPatternState,
}

impl CardState {
    fn heap_bytes(&self) -> usize {
        FailedPin::heap_bytes(&self.failed_pin)
            + PinSuccess::heap_bytes(&self.pin_success)
            + RapidFire::heap_bytes(&self.rapid_fire)
            + ImpossibleTravel::heap_bytes(&self.travel)
    }
}

/// Why a card was forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Idle,
    Capacity,
}

#[derive(Clone, Debug)]
pub struct CardTable {
    cards: LinkedHashMap<CardId, CardState, Hasher>,
    max_cards: usize,
}

impl CardTable {
    pub fn new(max_cards: usize) -> Self {
        debug_assert!(max_cards > 0);
        CardTable {
            cards: LinkedHashMap::with_hasher(Hasher::with_seed(0x5e1f_9a2d)),
            max_cards,
        }
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    /// The card's state, moved to the most-recently-seen end; a new card starts from default,
    /// forgetting the least recently seen card first if the table is full.
    pub fn touch(
        &mut self,
        card: &CardId,
        mut on_evict: impl FnMut(Eviction),
    ) -> Option<&mut CardState> {
        if !self.cards.contains_key(card) {
            if self.cards.len() >= self.max_cards && self.cards.pop_front().is_some() {
                on_evict(Eviction::Capacity);
            }
            self.cards.insert(card.clone(), CardState::default());
        }
        self.cards.to_back(card)
    }

    /// Forgets every card last seen before `cutoff`; returns how many.
    pub fn evict_idle(&mut self, cutoff: EventTime) -> u64 {
        let mut evicted = 0;
        while self
            .cards
            .front()
            .is_some_and(|(_, s)| s.last_seen < cutoff)
        {
            self.cards.pop_front();
            evicted += 1;
        }
        evicted
    }

    /// Cards from least to most recently seen.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&CardId, &CardState)> {
        self.cards.iter()
    }

    /// Reads a sequence of `(card, state)` pairs in least-to-most-recently-seen order (as
    /// [`CardTable::iter`] gives them) straight into a table. A million cards restore in one
    /// pass: collecting them into a `Vec` first cost more than the decoding, in copies of the
    /// growing vector and fresh pages.
    pub(crate) fn deserialize_ordered<'de, D: serde::Deserializer<'de>>(
        max_cards: usize,
        deserializer: D,
    ) -> Result<Self, D::Error> {
        struct Cards(CardTable);
        impl<'de> serde::de::Visitor<'de> for Cards {
            type Value = CardTable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of (card, state) pairs")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                mut self,
                mut seq: A,
            ) -> Result<CardTable, A::Error> {
                // The length comes from the snapshot: trust it only up to the ceiling.
                let hint = seq.size_hint().unwrap_or(0).min(self.0.max_cards);
                self.0.cards.reserve(hint);
                while let Some((id, state)) = seq.next_element::<(CardId, CardState)>()? {
                    self.0.cards.insert(id, state);
                }
                Ok(self.0)
            }
        }
        deserializer.deserialize_seq(Cards(CardTable::new(max_cards)))
    }

    /// Estimated bytes held: the hash table's slots, one heap node per card (key, state and
    /// list links), each card id's string, and what detector states hold on the heap.
    pub fn state_bytes(&self) -> usize {
        let node = std::mem::size_of::<(CardId, CardState)>() + 2 * std::mem::size_of::<usize>();
        let buckets = (self.cards.capacity() * 8 / 7).next_power_of_two();
        let table = buckets * (std::mem::size_of::<usize>() + 1);
        let cards: usize = self
            .cards
            .iter()
            .map(|(id, s)| heap_block(node) + heap_block(id.as_str().len()) + s.heap_bytes())
            .sum();
        table + cards
    }
}
