use std::time::{Duration, Instant};
use swipeguard_detectors::testing::synthetic_stream;
use swipeguard_detectors::{Engine, EngineConfig, Output};
fn main() {
    let lateness: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let events = synthetic_stream(200_000, 10_000, 5_000, 7);
    let cfg = EngineConfig {
        allowed_lateness: Duration::from_secs(lateness),
        ..EngineConfig::default()
    };
    for _ in 0..5 {
        let evs = events.clone();
        let t = Instant::now();
        let mut e = Engine::new(cfg.clone()).unwrap();
        let mut out = Output::default();
        for x in evs {
            e.admit(x, &mut out);
        }
        e.drain(&mut out);
        println!(
            "{:?} {:?} alerts={}",
            t.elapsed(),
            out.counts,
            out.alerts.len()
        );
    }
}
