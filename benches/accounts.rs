//! Bytes per insured person remembered by the account stage (`early_refill` and
//! `settle_during_stay`, issue 16): every person buys two chronic drugs a month (30- and 28-day
//! boxes), a few also an acute one, and one in twenty is in hospital at the end. A report, not a
//! timing: `cargo bench --bench accounts [-- PERSONS]` (default 1M) prints the engine's
//! accounting by detector and the peak RSS growth per person.

use std::time::Duration;

// Only its peak-RSS reader is needed here.
#[path = "support/stage_bytes.rs"]
mod stage_bytes;
#[allow(dead_code)]
#[path = "support/steady_cards.rs"]
mod steady_cards;

use steady_cards::peak_rss;
use swipeguard_detectors::testing::tx;
use swipeguard_detectors::{
    DetectorName, Engine, EngineConfig, EventType, KeyKind, MaxTrackedKeys, Output, VisitType,
};

const DAY: i64 = 86_400_000;

fn main() {
    let persons: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rss_before = peak_rss().unwrap_or(0);
    let mut cfg = EngineConfig {
        allowed_lateness: Duration::ZERO,
        ..EngineConfig::default()
    };
    cfg.detectors = cfg.detectors.only(&[
        DetectorName::named("early_refill"),
        DetectorName::named("settle_during_stay"),
    ]);
    cfg.max_tracked_keys = MaxTrackedKeys {
        account: persons + 1,
        ..cfg.max_tracked_keys
    };
    let mut engine = Engine::new(cfg).unwrap();
    let mut out = Output::default();
    let t0 = 1_767_196_800_000i64;
    // Two months of refills, persons interleaved in time as a city's pharmacies see them.
    let step = (30 * DAY) / persons.max(1) as i64;
    let mut n = 0u64;
    for month in 0..2i64 {
        for p in 0..persons {
            let ts = t0 + month * 30 * DAY + p as i64 * step;
            let person = format!("a{p:09}");
            let mut b = tx(&format!("s{n:019}"), ts)
                .person(&person)
                .card(&format!("c{p:09}"))
                .visit(VisitType::Pharmacy)
                .item("XA10BAA001", 30, &[])
                .group("metformin")
                .item("XC09CAA002", 28, &[])
                .group("losartan");
            if p % 7 == 0 {
                b = b.item("XJ01CAA04", 7, &[]).group("amoxicillin");
            }
            engine.admit(b.build(), &mut out);
            n += 1;
            if month == 1 && p % 20 == 0 {
                let stay = tx(&format!("s{n:019}"), ts + 1)
                    .card(&format!("c{p:09}"))
                    .stay(EventType::Admission, &person, &format!("v{p}"))
                    .build();
                engine.admit(stay, &mut out);
                n += 1;
            }
            out.alerts.clear();
        }
    }
    stage_bytes::report(
        &format!("accounts/{persons}"),
        "person",
        &engine,
        KeyKind::Account,
        rss_before,
    );
}
