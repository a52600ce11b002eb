//! One detector's states within a stage: a slab of `State`s addressed by the slots of the
//! stage's key table, behind an object-safe trait so that a stage holds any mix of detectors.
//!
//! A key gets a state only when its detector leaves something worth keeping
//! ([`Detector::is_idle`] is false after an event); a state that becomes idle again is freed at
//! once. Snapshots encode each store as its own section (see `snapshot`): the states of the
//! keys that have one, each tagged with the key's position in the stage's key order.

use std::fmt::Debug;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};

use crate::chunked::Chunked;
use crate::detector::{Detector, Emitter};
use crate::keys::{Slot, EMPTY};
use crate::model::{DetectorName, EventTime, Millis, Transaction};

/// What a stage needs of a detector and its states, whatever the detector.
pub(crate) trait Stored: Send + Sync + Debug {
    fn name(&self) -> DetectorName;
    fn horizon(&self) -> Millis;
    /// Shows one event to the detector with the key's state in `slot` (allocating or freeing
    /// it as the state becomes worth keeping or idle).
    fn observe(&mut self, slot: &mut Slot, tx: &Transaction, emit: &mut Emitter<'_>);
    /// Lets the state in `slot` forget what cannot matter from `now` on, freeing it if it
    /// becomes idle.
    fn expire(&mut self, slot: &mut Slot, now: EventTime);
    /// Whether `expire` does anything.
    fn expires(&self) -> bool;
    fn expires_after(&self) -> Millis;
    /// Forgets a state (its key is evicted).
    fn free(&mut self, slot: Slot);
    /// States held.
    fn live(&self) -> usize;
    /// Freed slots waiting for reuse.
    fn vacant(&self) -> usize;
    /// Moves the live states to the front of a right-sized slab, renumbering `slots` (every
    /// slot of this store, in any order; `EMPTY` ones are skipped).
    fn compact(&mut self, slots: &mut dyn Iterator<Item = &mut Slot>);
    /// Bytes held: the slab and what its states hold on the heap.
    fn bytes(&self) -> usize;
    /// Encodes the states of `slots` (one per key, in key order; `EMPTY` skipped) as a
    /// sequence of (key position, state).
    fn encode(&self, slots: &mut dyn Iterator<Item = Slot>) -> Vec<u8>;
    /// Decodes what [`Stored::encode`] wrote, calling `place(key position, slot)` for each state.
    fn decode(
        &mut self,
        bytes: &[u8],
        keys: usize,
        place: &mut dyn FnMut(u32, Slot),
    ) -> Result<(), postcard::Error>;
    fn clone_box(&self) -> Box<dyn Stored>;
}

impl Clone for Box<dyn Stored> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// The states of one detector, in a slab with a free list.
#[derive(Clone, Debug)]
pub(crate) struct DetectorStore<D: Detector> {
    detector: D,
    name: DetectorName,
    states: Chunked<D::State>,
    vacant: Vec<Slot>,
}

impl<D: Detector> DetectorStore<D> {
    pub fn new(detector: D, name: DetectorName) -> Self {
        DetectorStore {
            detector,
            name,
            states: Chunked::default(),
            vacant: Vec::new(),
        }
    }

    fn alloc(&mut self, state: D::State) -> Slot {
        match self.vacant.pop() {
            Some(slot) => {
                self.states[slot as usize] = state;
                slot
            }
            None => {
                self.states.push(state);
                (self.states.len() - 1) as Slot
            }
        }
    }
}

impl<D: Detector> Stored for DetectorStore<D> {
    fn name(&self) -> DetectorName {
        self.name
    }

    fn horizon(&self) -> Millis {
        self.detector.horizon()
    }

    fn observe(&mut self, slot: &mut Slot, tx: &Transaction, emit: &mut Emitter<'_>) {
        if *slot == EMPTY && !self.detector.creates_state(tx) {
            return;
        }
        emit.detector = self.name;
        if *slot == EMPTY {
            let mut state = D::State::default();
            self.detector.observe(&mut state, tx, emit);
            if !D::is_idle(&state) {
                *slot = self.alloc(state);
            }
            return;
        }
        let state = &mut self.states[*slot as usize];
        self.detector.observe(state, tx, emit);
        if D::is_idle(state) {
            self.free(*slot);
            *slot = EMPTY;
        }
    }

    fn expires(&self) -> bool {
        D::EXPIRES
    }

    fn expires_after(&self) -> Millis {
        self.detector.expires_after()
    }

    fn expire(&mut self, slot: &mut Slot, now: EventTime) {
        let Some(state) = self.states.get_mut(*slot as usize) else {
            return;
        };
        self.detector.expire(state, now);
        if D::is_idle(state) {
            self.free(*slot);
            *slot = EMPTY;
        }
    }

    fn free(&mut self, slot: Slot) {
        if let Some(state) = self.states.get_mut(slot as usize) {
            // Dropping what the state holds now (window arrays, shared ids) is the point.
            *state = D::State::default();
            self.vacant.push(slot);
        }
    }

    fn live(&self) -> usize {
        self.states.len() - self.vacant.len()
    }

    fn vacant(&self) -> usize {
        self.vacant.len()
    }

    fn compact(&mut self, slots: &mut dyn Iterator<Item = &mut Slot>) {
        // In place: live states move down to the lowest numbers, in slot order, so no second
        // slab is ever allocated (the packing must not raise the peak it is meant to lower).
        let mut live: Vec<&mut Slot> = slots.filter(|s| **s != EMPTY).collect();
        live.sort_unstable_by_key(|s| **s);
        for (to, slot) in live.into_iter().enumerate() {
            let from = *slot as usize;
            if from != to {
                self.states.swap(from, to);
            }
            *slot = to as Slot;
        }
        let live = self.live();
        self.states.truncate(live);
        self.vacant = Vec::new();
    }

    fn bytes(&self) -> usize {
        // What is written (live states and vacancies); growth room beyond it is never touched,
        // so it costs address space, not memory.
        let slab = self.states.bytes();
        let vacant = self.vacant.capacity() * std::mem::size_of::<Slot>();
        let heap: usize = self.states.iter().map(D::heap_bytes).sum();
        slab + vacant + heap
    }

    fn encode(&self, slots: &mut dyn Iterator<Item = Slot>) -> Vec<u8> {
        let held: Vec<(u32, &D::State)> = slots
            .enumerate()
            .filter(|(_, s)| *s != EMPTY)
            .map(|(position, s)| (position as u32, &self.states[s as usize]))
            .collect();
        let out = Vec::with_capacity(16 + held.len() * std::mem::size_of::<D::State>());
        // Encoding plain data into a Vec cannot fail.
        postcard::to_extend(&held, out).unwrap_or_default()
    }

    fn decode(
        &mut self,
        bytes: &[u8],
        keys: usize,
        place: &mut dyn FnMut(u32, Slot),
    ) -> Result<(), postcard::Error> {
        let mut decoder = postcard::Deserializer::from_bytes(bytes);
        Sections::<D> {
            store: self,
            keys,
            place,
        }
        .deserialize(&mut decoder)?;
        Ok(())
    }

    fn clone_box(&self) -> Box<dyn Stored> {
        Box::new(self.clone())
    }
}

/// Reads (key position, state) pairs straight into the slab: a million states restore without
/// an intermediate vector.
struct Sections<'a, D: Detector> {
    store: &'a mut DetectorStore<D>,
    keys: usize,
    place: &'a mut dyn FnMut(u32, Slot),
}

impl<'de, D: Detector> DeserializeSeed<'de> for Sections<'_, D> {
    type Value = ();
    fn deserialize<De: serde::Deserializer<'de>>(self, d: De) -> Result<(), De::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, D: Detector> Visitor<'de> for Sections<'_, D> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of (key position, state) pairs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        // The length comes from the snapshot: trust it only up to the number of keys.
        let mut last: Option<u32> = None;
        while let Some((position, state)) = seq.next_element::<(u32, D::State)>()? {
            if position as usize >= self.keys || last.is_some_and(|l| position <= l) {
                return Err(A::Error::custom("state of a key out of order or unknown"));
            }
            last = Some(position);
            let slot = self.store.alloc(state);
            (self.place)(position, slot);
        }
        Ok(())
    }
}
