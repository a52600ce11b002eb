//! What a replay costs per event on one core, split into decoding and detection, and the best
//! replay rate two cores could give if both were perfectly parallel and did nothing else:
//! 2 / (decode + detect). Reading the file, line splitting, hand-offs between threads and
//! writing alerts are left out, so the ceiling is generous. Each figure is the fastest of five
//! runs (noise on a shared machine only ever slows a run down).
//!   cargo run --release --example cpu_budget -- FILE
use std::time::Instant;
use swipeguard::codec::{decode_event, DecodeLimits};
use swipeguard_detectors::{Engine, EngineConfig, KeyKind, Output, Transaction};

const RUNS: usize = 5;
/// Lines per batch, as replay's reader hands a decode lane (src/replay/read.rs).
const BATCH: usize = 2048;

// The allocator the binary runs with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let path = std::env::args().nth(1).expect("FILE");
    let text = std::fs::read_to_string(path).expect("readable");
    let lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
    let limits = DecodeLimits::default();
    let events: Vec<Transaction> = lines
        .iter()
        .filter_map(|l| decode_event(l, &limits).ok())
        .collect();
    // Decoding as replay's lanes do it, a batch at a time into recycled memory; each batch is
    // dropped here, so the time of dropping events (which detection also pays) is taken off.
    let mut batch = Vec::with_capacity(BATCH);
    let decode_and_drop = fastest(|| {
        for chunk in lines.chunks(BATCH) {
            batch.extend(chunk.iter().filter_map(|l| decode_event(l, &limits).ok()));
            batch.clear();
        }
    });
    let drop_only = (0..RUNS)
        .map(|_| {
            let evs = events.clone();
            let t = Instant::now();
            drop(evs);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let decode = decode_and_drop - drop_only;
    let n = events.len() as f64;
    let per = |s: f64| s / n * 1e6;
    println!(
        "{} events ({} lines, {:.0} B/line): decode {:.2} µs/event",
        events.len(),
        lines.len(),
        text.len() as f64 / lines.len() as f64,
        per(decode)
    );
    let mut card = EngineConfig::default();
    card.detectors = card.detectors.only_keys(&[KeyKind::Card]);
    for (name, cfg) in [
        ("five card detectors", card),
        ("every detector", EngineConfig::default()),
    ] {
        let detect = (0..RUNS)
            .map(|_| {
                // Cloning the decoded events is not what replay pays: outside the timer.
                let evs = events.clone();
                let t = Instant::now();
                let mut e = Engine::new(cfg.clone()).expect("config");
                let mut out = Output::default();
                for x in evs {
                    e.admit(x, &mut out);
                    out.alerts.clear();
                }
                e.drain(&mut out);
                drop(e);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "{name}: detect {:.2} µs/event; one core {:.0}K events/s; two perfect cores {:.0}K events/s",
            per(detect),
            n / (decode + detect) / 1e3,
            2.0 * n / (decode + detect) / 1e3
        );
    }
}

/// Seconds of the fastest of [`RUNS`] runs.
fn fastest(mut run: impl FnMut()) -> f64 {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}
