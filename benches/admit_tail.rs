//! The slowest single admissions: how long the one event that lands on a pause waits. The card
//! stage admits a skewed synthetic stream (`testing::synthetic_stream`, lateness 0) that keeps
//! bringing new cards, so the key table grows — and, with cards forgotten once quiet, churns —
//! the whole run; each `Engine::admit` is timed alone. Throughput hides a pause of tens of
//! milliseconds among millions of microsecond admits; the daemon's hand-off latency does not.
//!
//! `cargo bench --bench admit_tail [-- EVENTS CARDS]` (default 2M events over 1M cards) —
//! prints events/s, per-admit p50 / p99.9 / p99.99 / max and the admits over 1 ms; results in
//! BENCHMARKS.md.

use std::time::{Duration, Instant};

use swipeguard_detectors::testing::synthetic_stream;
use swipeguard_detectors::{Engine, EngineConfig, KeyKind, Output};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(2_000_000);
    let cards = args.get(1).copied().unwrap_or(1_000_000);
    let stream = synthetic_stream(events, cards, 0, 11);
    let all = EngineConfig {
        allowed_lateness: Duration::ZERO,
        ..EngineConfig::default()
    };
    let config = EngineConfig {
        detectors: all.detectors.only_keys(&[KeyKind::Card]),
        ..all
    };
    let Ok(mut engine) = Engine::new(config) else {
        panic!("the default configuration is valid");
    };
    let mut out = Output::default();
    let mut took = Vec::with_capacity(events);
    let start = Instant::now();
    for tx in stream {
        let t = Instant::now();
        engine.admit(tx, &mut out);
        took.push(t.elapsed());
        out.alerts.clear();
    }
    let total = start.elapsed();
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    let over_1ms = took
        .iter()
        .filter(|d| **d > Duration::from_millis(1))
        .count();
    println!(
        "admit_tail: {events} events, {cards} cards: {:.0} events/s; per admit p50 {:?} p99.9 {:?} \
         p99.99 {:?} max {:?}; {over_1ms} admits over 1 ms",
        events as f64 / total.as_secs_f64(),
        at(0.5),
        at(0.999),
        at(0.9999),
        took[took.len() - 1],
    );
}
