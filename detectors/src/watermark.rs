//! Per-partition watermark: bounded out-of-orderness in event time.
//!
//! The watermark is the newest event time seen minus the allowed lateness, and never moves
//! back. An event older than the watermark is *late*. In live mode the shell may also advance
//! the watermark to the newest event time seen when a partition has been idle (DESIGN §3); wall
//! time decides only when that happens, never the value. Events that are late only because of
//! such an advance are told apart so that the effect of wall time can be counted.

use serde::{Deserialize, Serialize};

use crate::model::{EventTime, Millis};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    lateness: Millis,
    newest: EventTime,
    value: EventTime,
}

impl Watermark {
    pub fn new(lateness: Millis) -> Self {
        Watermark {
            lateness,
            newest: EventTime::MIN,
            value: EventTime::MIN,
        }
    }

    pub fn lateness(&self) -> Millis {
        self.lateness
    }

    /// The current watermark: events older than this are late.
    pub fn value(&self) -> EventTime {
        self.value
    }

    /// The newest event time seen.
    pub fn newest(&self) -> EventTime {
        self.newest
    }

    pub fn is_late(&self, ts: EventTime) -> bool {
        ts < self.value
    }

    /// True for a late event that the lateness alone would have admitted: it is late only
    /// because an idle advance moved the watermark.
    pub fn late_only_by_idle_advance(&self, ts: EventTime) -> bool {
        self.is_late(ts) && ts >= self.newest.saturating_sub(self.lateness)
    }

    /// Takes an admitted event's time into account.
    pub fn observe(&mut self, ts: EventTime) {
        if ts > self.newest {
            self.newest = ts;
            self.value = self.value.max(ts.saturating_sub(self.lateness));
        }
    }

    /// Takes an admitted event's time into account without moving the watermark (a stage
    /// whose watermark comes from upstream: DESIGN §11).
    pub fn note(&mut self, ts: EventTime) {
        self.newest = self.newest.max(ts);
    }

    /// Idle advance: the watermark jumps to the newest event time seen. Returns whether it moved.
    pub fn advance_to_newest(&mut self) -> bool {
        self.advance_to(self.newest)
    }

    /// Moves the watermark forward to `to` (never back). Returns whether it moved.
    pub fn advance_to(&mut self, to: EventTime) -> bool {
        if to > self.value {
            self.value = to;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_the_newest_event_by_the_lateness_and_never_goes_back() {
        let mut w = Watermark::new(Millis(30_000));
        w.observe(EventTime(100_000));
        assert_eq!(w.value(), EventTime(70_000));
        w.observe(EventTime(90_000));
        assert_eq!(w.value(), EventTime(70_000));
        assert!(w.is_late(EventTime(69_999)));
        assert!(!w.is_late(EventTime(70_000)));
    }

    #[test]
    fn idle_advance_makes_recent_stragglers_late_and_says_so() {
        let mut w = Watermark::new(Millis(30_000));
        w.observe(EventTime(100_000));
        assert!(w.advance_to_newest());
        assert_eq!(w.value(), EventTime(100_000));
        assert!(w.late_only_by_idle_advance(EventTime(80_000)));
        assert!(!w.late_only_by_idle_advance(EventTime(60_000)));
        assert!(!w.advance_to_newest());
    }
}
