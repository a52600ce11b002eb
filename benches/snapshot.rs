//! Snapshot of a 1M-card engine (the card detectors on): time to encode (`Engine::snapshot`), size in
//! bytes and per card, and time to rebuild (`Engine::restore`), medians over several runs. A
//! report, not a criterion bench (each run takes seconds): `cargo bench --bench snapshot`
//! [-- RUNS] prints every run and the medians; run 1 is a cold restore (its memory is fresh from
//! the kernel, as in a daemon that has just started), later runs reuse freed memory (see BENCHMARKS.md, "Snapshots (issue 7)").
//!
//! The engine is filled as `benches/state_size.rs` fills it: twelve approved swipes per card an
//! hour apart (a scored `off_pattern` profile, a travel fix, a swipe in every window), lateness 0,
//! so the reorder buffer is empty and the snapshot is all cards. Each restore is checked: the
//! rebuilt engine tracks as many cards, accounts the same bytes (within 2 %: allocation slack)
//! and snapshots to the same bytes.

use std::time::{Duration, Instant};

#[path = "support/steady_cards.rs"]
mod steady_cards;

use steady_cards::peak_rss;
use swipeguard_detectors::{Engine, EngineConfig};

const CARDS: usize = 1_000_000;

/// The allocator the shipped binary uses (src/main.rs): restore is mostly allocation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes flags such as --bench; the only argument taken is a number of runs.
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(7)
        .max(1);
    let mut config = EngineConfig {
        allowed_lateness: Duration::ZERO,
        ..EngineConfig::default()
    };
    config.detectors = config
        .detectors
        .only_keys(&[swipeguard_detectors::KeyKind::Card]);
    assert!(
        config.max_tracked_cards >= CARDS,
        "the ceiling would evict cards"
    );
    let mut engine = Engine::new(config.clone()).expect("config");
    let filling = Instant::now();
    steady_cards::fill(&mut engine, CARDS);
    let size = engine.state_size();
    assert_eq!(size.tracked_cards, CARDS);
    println!(
        "snapshot/{CARDS}_cards: filled in {:.1} s; engine accounting {} B/card; peak RSS {:.0} MiB",
        filling.elapsed().as_secs_f64(),
        size.bytes / CARDS,
        peak_rss().unwrap_or(0) as f64 / 1_048_576.0
    );

    let position = 12 * CARDS as u64;
    let (mut encode, mut restore) = (Vec::new(), Vec::new());
    let mut bytes_len = 0;
    let mut restored_bytes = 0;
    for run in 1..=runs {
        let t0 = Instant::now();
        let bytes = engine.snapshot(position);
        let enc = t0.elapsed();

        let t1 = Instant::now();
        let restored = Engine::restore(config.clone(), &bytes).expect("restore");
        let res = t1.elapsed();

        // Not timed: the round trip is exact.
        assert_eq!(restored.position, position);
        assert!(!restored.config_changed);
        let again = restored.engine.state_size();
        assert_eq!(again.tracked_cards, size.tracked_cards);
        // The same state, up to allocation slack: the key index is sized for every key at once,
        // and an event id that a travel fix and an open window shared is restored twice (each
        // detector's section is read on its own).
        assert!(
            again.bytes.abs_diff(size.bytes) <= size.bytes / 50,
            "restored engine accounts {} bytes, the original {}",
            again.bytes,
            size.bytes
        );
        restored_bytes = again.bytes;
        if run == 1 {
            assert!(
                restored.engine.snapshot(position) == bytes,
                "re-snapshot differs"
            );
        }
        let t2 = Instant::now();
        drop(restored);
        let dropped = t2.elapsed();

        println!(
            "run {run}/{runs}: encode {}, {} bytes, restore {} (then dropping it: {})",
            ms(enc),
            bytes.len(),
            ms(res),
            ms(dropped)
        );
        bytes_len = bytes.len();
        encode.push(enc);
        restore.push(res);
    }
    let (enc, res) = (median(encode), median(restore));
    println!(
        "snapshot/{CARDS}_cards: median of {runs}: encode {} ({:.0} MB/s), size {:.1} MiB \
         ({} B/card), restore {} ({:.2} M cards/s); target restore < 2 s: {}",
        ms(enc),
        bytes_len as f64 / enc.as_secs_f64() / 1e6,
        bytes_len as f64 / 1_048_576.0,
        bytes_len / CARDS,
        ms(res),
        CARDS as f64 / res.as_secs_f64() / 1e6,
        if res < Duration::from_secs(2) {
            format!("met ({:.1}x under)", 2.0 / res.as_secs_f64())
        } else {
            "NOT met".to_string()
        }
    );
    println!(
        "restored engine accounting {} B/card (original {} B/card)",
        restored_bytes / CARDS,
        size.bytes / CARDS
    );
    println!(
        "peak RSS at the end {:.0} MiB (the engine, one snapshot and one restored engine)",
        peak_rss().unwrap_or(0) as f64 / 1_048_576.0
    );
}
