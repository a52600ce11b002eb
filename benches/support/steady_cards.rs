//! Shared by `state_size` and `snapshot`: an engine full of cards in steady use, and the
//! process's peak RSS.

use swipeguard_detectors::testing::tx;
use swipeguard_detectors::{Engine, MerchantKind, Output};

/// Twelve approved swipes per card, an hour apart: every card has a scored `off_pattern`
/// profile, a travel fix and a swipe in its windows, as a card in steady use would.
pub fn fill(engine: &mut Engine, cards: usize) {
    let mut out = Output::default();
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
        out.alerts.clear();
    }
}

/// Peak resident set size of this process, from /proc (Linux), in bytes.
pub fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
