//! Times the detector engine alone on a decoded JSONL file (the card detectors), three runs.
//!   cargo run --release --example engine_on_file -- FILE
use std::time::Instant;
use swipeguard::codec::{decode_event, DecodeLimits};
use swipeguard_detectors::{Engine, EngineConfig, Output};
fn main() {
    let path = std::env::args().nth(1).expect("FILE");
    let text = std::fs::read_to_string(path).expect("readable");
    let limits = DecodeLimits::default();
    let events: Vec<_> = text
        .lines()
        .filter_map(|l| decode_event(l.as_bytes(), &limits).ok())
        .collect();
    let cfg = card_only(EngineConfig::default());
    for _ in 0..3 {
        let evs = events.clone();
        let t = Instant::now();
        let mut e = Engine::new(cfg.clone()).expect("config");
        let mut out = Output::default();
        for x in evs {
            e.admit(x, &mut out);
            out.alerts.clear();
        }
        e.drain(&mut out);
        let s = t.elapsed().as_secs_f64();
        println!(
            "{} events in {s:.3} s: {:.0} events/s",
            events.len(),
            events.len() as f64 / s
        );
    }
}
// The card detectors: this tree runs stages, so the others are switched off. Everything from
// this line on is replaced by `scripts/bench-vs.sh` when timing a commit without stages.
fn card_only(mut c: EngineConfig) -> EngineConfig {
    c.detectors = c
        .detectors
        .only_keys(&[swipeguard_detectors::KeyKind::Card]);
    c
}
