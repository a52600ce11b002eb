//! State size per tracked card with all detectors on: the engine's own accounting and the
//! process's peak RSS, for 10K and 1M cards. A report, not a timing: `cargo bench --bench
//! state_size` prints one line per size (see BENCHMARKS.md).

use std::time::Duration;

#[path = "support/steady_cards.rs"]
mod steady_cards;

use steady_cards::peak_rss;
use swipeguard_detectors::{Engine, EngineConfig};

fn main() {
    // `cargo bench` passes flags such as --bench; this report takes none.
    let rss_before = peak_rss().unwrap_or(0);
    for cards in [10_000usize, 1_000_000] {
        let cfg = EngineConfig {
            allowed_lateness: Duration::ZERO,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(cfg).unwrap();
        steady_cards::fill(&mut engine, cards);
        let size = engine.state_size();
        let rss = peak_rss().unwrap_or(0).saturating_sub(rss_before);
        println!(
            "state_size/{cards}_cards: tracked={} engine_bytes_per_card={} peak_rss_delta_bytes_per_card={} peak_rss_mib={:.0}",
            size.tracked_cards,
            size.bytes / size.tracked_cards.max(1),
            rss / size.tracked_cards.max(1),
            peak_rss().unwrap_or(0) as f64 / 1048576.0
        );
        for stage in engine.stages() {
            let (keys, parts) = stage.bytes_by_part();
            let n = stage.held().0.max(1);
            let parts: Vec<String> = parts
                .iter()
                .map(|(d, b)| format!("{d}={}", b / n))
                .collect();
            println!(
                "  {} stage, bytes per key: keys={} {}",
                stage.kind(),
                keys / n,
                parts.join(" ")
            );
        }
        drop(engine);
    }
}
