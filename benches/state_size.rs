//! State size per tracked card with all detectors on: the engine's own accounting and the
//! process's peak RSS, for 10K and 1M cards. A report, not a timing: `cargo bench --bench
//! state_size` prints one line per size (see BENCHMARKS.md).

use std::time::Duration;

use swipeguard_detectors::testing::tx;
use swipeguard_detectors::{Engine, EngineConfig, MerchantKind, Output};

/// Peak resident set size of this process, from /proc (Linux), in bytes.
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    // `cargo bench` passes flags such as --bench; this report takes none.
    let rss_before = peak_rss().unwrap_or(0);
    for cards in [10_000usize, 1_000_000] {
        let cfg = EngineConfig {
            allowed_lateness: Duration::ZERO,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(cfg).unwrap();
        let mut out = Output::default();
        // Twelve swipes per card an hour apart: every card has a scored profile, a travel fix and
        // a swipe in its windows, as a card in steady use would.
        for round in 0..12i64 {
            for c in 0..cards {
                let t = 1_767_225_600_000 + round * 3_600_000 + c as i64;
                let e = tx(&format!("evt-{round:02}-{c:08}"), t)
                    .card(&format!("card-{c:08}"))
                    .amount(3_000 + (c % 97) as u64 * 100)
                    .kind(MerchantKind::Pharmacy)
                    .region("310101")
                    .geo(31.23, 121.47)
                    .build();
                engine.admit(e, &mut out);
            }
        }
        let size = engine.state_size();
        let rss = peak_rss().unwrap_or(0).saturating_sub(rss_before);
        println!(
            "state_size/{cards}_cards: tracked={} engine_bytes_per_card={} peak_rss_delta_bytes_per_card={} peak_rss_mib={:.0}",
            size.tracked_cards,
            size.bytes / size.tracked_cards.max(1),
            rss / size.tracked_cards.max(1),
            peak_rss().unwrap_or(0) as f64 / 1048576.0
        );
        drop(engine);
    }
}
