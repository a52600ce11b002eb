//! Bytes per remembered traceability code (issue 16: ≤ 64 B per code with its first
//! settlement): `trace_code_resettled` alone, every settlement naming one new box, as a
//! pharmacy's year of sales would. A report, not a timing: `cargo bench --bench trace_codes
//! [-- CODES]` (default 1M; BENCHMARKS.md quotes 10M) prints the engine's accounting, the split
//! by part and the peak RSS growth per code; and, as `admit_tail` does for cards, the slowest
//! single admit (the code index growing used to stop the stage for a whole rehash).

use std::time::{Duration, Instant};

// Only its peak-RSS reader is needed here.
#[path = "support/stage_bytes.rs"]
mod stage_bytes;
#[allow(dead_code)]
#[path = "support/steady_cards.rs"]
mod steady_cards;

use steady_cards::peak_rss;
use swipeguard_detectors::testing::tx;
use swipeguard_detectors::{DetectorName, Engine, EngineConfig, KeyKind, MaxTrackedKeys, Output};

fn main() {
    let codes: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rss_before = peak_rss().unwrap_or(0);
    let mut cfg = EngineConfig {
        allowed_lateness: Duration::ZERO,
        ..EngineConfig::default()
    };
    cfg.detectors = cfg
        .detectors
        .only(&[DetectorName::named("trace_code_resettled")]);
    cfg.max_tracked_keys = MaxTrackedKeys {
        trace_code: codes + 1,
        ..cfg.max_tracked_keys
    };
    let mut engine = Engine::new(cfg).unwrap();
    let mut out = Output::default();
    let t0 = 1_767_196_800_000i64;
    let (mut slowest, mut over_1ms) = (Duration::ZERO, 0u32);
    for i in 0..codes {
        // A realistic id (20 characters) and a 20-digit code, one box per settlement, a few
        // seconds apart: about a city's pharmacies for a year at 10M.
        let e = tx(&format!("s{:019}", i), t0 + i as i64 * 3_000)
            .card(&format!("c{}", i % 100_000))
            .item(
                "XA10BAA001",
                30,
                &[&format!(
                    "8{:019}",
                    i.wrapping_mul(2_654_435_761) % 10_000_000_000_000_000_000
                )],
            )
            .build();
        let t = Instant::now();
        engine.admit(e, &mut out);
        let took = t.elapsed();
        slowest = slowest.max(took);
        over_1ms += u32::from(took > Duration::from_millis(1));
        out.alerts.clear();
    }
    stage_bytes::report(
        &format!("trace_codes/{codes}"),
        "code",
        &engine,
        KeyKind::TraceCode,
        rss_before,
    );
    println!(
        "trace_codes/{codes}: slowest admit {:.1} ms, {over_1ms} admits over 1 ms",
        slowest.as_secs_f64() * 1e3
    );
}
