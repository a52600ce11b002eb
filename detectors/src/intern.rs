//! Re-sharing event ids while a snapshot is restored.
//!
//! A live engine holds one string per event id however many detector windows remember the
//! event (`EventId` is an `Arc`). Deserialising gives each holder its own copy, which made a
//! restored engine 10 % larger than the one that was snapshotted (531 against 482 bytes per card
//! in `benches/snapshot.rs`). While an [`Interning`] guard is alive on this thread, a
//! deserialised id equal to one of the last few deserialised reuses that one's string: a card's
//! state is encoded as one piece, so the ids its windows share are close together.
//!
//! Only memory changes: ids compare by content, so no alert depends on the sharing.

use arcstr::ArcStr;
use std::cell::RefCell;

use serde::{Deserialize, Deserializer};

use crate::model::EventId;

/// Distinct ids remembered: more than the windows of one card share.
const RECENT: usize = 16;

thread_local! {
    static RECENT_IDS: RefCell<Option<Vec<ArcStr>>> = const { RefCell::new(None) };
}

/// While alive, event ids deserialised on this thread share strings with recent equal ones.
pub(crate) struct Interning(());

impl Interning {
    pub(crate) fn begin() -> Interning {
        RECENT_IDS.with(|r| *r.borrow_mut() = Some(Vec::with_capacity(RECENT)));
        Interning(())
    }
}

impl Drop for Interning {
    fn drop(&mut self) {
        RECENT_IDS.with(|r| *r.borrow_mut() = None);
    }
}

fn shared(text: &str) -> ArcStr {
    RECENT_IDS.with(|r| {
        let mut recent = r.borrow_mut();
        let Some(recent) = recent.as_mut() else {
            return ArcStr::from(text);
        };
        if let Some(found) = recent.iter().rev().find(|a| ***a == *text) {
            return found.clone();
        }
        let fresh = ArcStr::from(text);
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push(fresh.clone());
        fresh
    })
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(EventId::from_shared(shared(&text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(ids: &[&str]) -> Vec<EventId> {
        let ids: Vec<EventId> = ids.iter().map(EventId::new).collect();
        postcard::from_bytes(&postcard::to_allocvec(&ids).unwrap()).unwrap()
    }

    #[test]
    fn equal_ids_share_one_string_only_while_interning() {
        let plain = decode(&["a", "b", "a"]);
        assert!(!ArcStr::ptr_eq(&plain[0].shared(), &plain[2].shared()));
        let guard = Interning::begin();
        let ids = decode(&["a", "b", "a"]);
        drop(guard);
        assert_eq!(ids, plain);
        assert!(ArcStr::ptr_eq(&ids[0].shared(), &ids[2].shared()));
        assert!(!ArcStr::ptr_eq(&ids[0].shared(), &ids[1].shared()));
        let after = decode(&["a", "a"]);
        assert!(!ArcStr::ptr_eq(&after[0].shared(), &after[1].shared()));
    }
}
