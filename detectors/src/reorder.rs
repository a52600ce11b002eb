//! The per-partition reorder buffer: holds admitted events until the watermark passes them,
//! then releases them in (event time, event id) order, the order every detector sees.
//!
//! A deque kept sorted by that order. Streams are nearly in order (terminals' clocks and the
//! bus reorder by seconds, not minutes), so an arriving event is appended or inserted a few
//! places from the back, and the oldest leaves from the front: O(1) for the usual case and
//! O(log n) to find the place otherwise. Events are boxed so that a far-back insertion moves
//! pointers, not whole events.

use std::collections::VecDeque;

use crate::model::{EventId, EventTime, Transaction};

/// The release order of events: event time, then event id.
pub type OrderKey = (EventTime, EventId);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReorderBuffer {
    pending: VecDeque<Box<Transaction>>,
}

fn key_of(tx: &Transaction) -> (EventTime, &EventId) {
    (tx.ts, &tx.event_id)
}

impl ReorderBuffer {
    /// Where `key` is or would go.
    fn search(&self, key: (EventTime, &EventId)) -> Result<usize, usize> {
        match self.pending.back() {
            None => Err(0),
            Some(last) if key_of(last) < key => Err(self.pending.len()),
            Some(_) => self.pending.binary_search_by(|tx| key_of(tx).cmp(&key)),
        }
    }

    pub fn contains(&self, ts: EventTime, id: &EventId) -> bool {
        self.search((ts, id)).is_ok()
    }

    /// Inserts in release order; an event with the key of a buffered one is ignored (the engine
    /// checks for duplicates before inserting).
    pub fn insert(&mut self, tx: Transaction) {
        if let Err(at) = self.search(key_of(&tx)) {
            self.pending.insert(at, Box::new(tx));
        }
    }

    /// Removes and returns the first event if its time is at or before `watermark`.
    pub fn pop_ready(&mut self, watermark: EventTime) -> Option<Transaction> {
        if self.pending.front()?.ts <= watermark {
            self.pop_first()
        } else {
            None
        }
    }

    /// Removes and returns the first event, whatever its time (end of input).
    pub fn pop_first(&mut self) -> Option<Transaction> {
        self.pending.pop_front().map(|b| *b)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The buffered events in release order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Transaction> {
        self.pending.iter().map(|b| &**b)
    }

    /// Approximate heap bytes: the deque slots, each boxed event and its strings.
    pub fn heap_bytes(&self) -> usize {
        let per_event =
            std::mem::size_of::<Box<Transaction>>() + std::mem::size_of::<Transaction>() + 96;
        self.pending.capacity() * std::mem::size_of::<Box<Transaction>>()
            + self.pending.len() * per_event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tx;

    #[test]
    fn releases_in_time_then_id_order_whatever_the_insertion_order() {
        let mut b = ReorderBuffer::default();
        for (id, ts) in [("c", 30), ("a", 10), ("b", 30), ("d", 5), ("e", 40)] {
            b.insert(tx(id, ts).build());
        }
        assert!(b.contains(EventTime(30), &EventId::new("b")));
        assert!(!b.contains(EventTime(31), &EventId::new("b")));
        assert_eq!(b.pop_ready(EventTime(4)), None);
        let mut order = Vec::new();
        while let Some(t) = b.pop_ready(EventTime(30)) {
            order.push(t.event_id.as_str().to_string());
        }
        assert_eq!(order, ["d", "a", "b", "c"]);
        assert_eq!(b.len(), 1);
    }
}
