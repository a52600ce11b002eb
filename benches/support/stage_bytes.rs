//! The one report of the memory benches: a stage's bytes per key, by part, beside the peak RSS
//! growth per key.

use swipeguard_detectors::{Engine, KeyKind};

use super::steady_cards::peak_rss;

/// Prints `<name>: held=… engine_bytes_per_<unit>=… (keys=… <detector>=…) peak_rss_delta_bytes_per_<unit>=…`
/// for `engine`'s stage of `kind`; `rss_before` is the peak RSS before the engine was filled.
pub fn report(name: &str, unit: &str, engine: &Engine, kind: KeyKind, rss_before: usize) {
    let Some(stage) = engine.stages().iter().find(|s| s.kind() == kind) else {
        println!("{name}: no {kind} stage runs");
        return;
    };
    let held = stage.held().0.max(1);
    let (keys, parts) = stage.bytes_by_part();
    let rss = peak_rss().unwrap_or(0).saturating_sub(rss_before);
    let total = keys + parts.iter().map(|(_, b)| b).sum::<usize>();
    let parts: Vec<String> = parts
        .iter()
        .map(|(d, b)| format!("{d}={}", b / held))
        .collect();
    println!(
        "{name}: held={held} engine_bytes_per_{unit}={} (keys={} {}) peak_rss_delta_bytes_per_{unit}={}",
        total / held,
        keys / held,
        parts.join(" "),
        rss / held,
    );
}
