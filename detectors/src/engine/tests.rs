use super::*;
use crate::testing::{proptest_all_detectors, run_config, tx};

fn cfg(lateness_s: u64) -> EngineConfig {
    EngineConfig {
        allowed_lateness: std::time::Duration::from_secs(lateness_s),
        ..EngineConfig::default()
    }
}

#[test]
fn out_of_order_within_lateness_is_reordered_and_older_is_late() {
    let mut e = Engine::new(cfg(30)).unwrap();
    let mut out = Output::default();
    assert_eq!(
        e.admit(tx("b", 10_000).build(), &mut out),
        Admission::Accepted
    );
    assert_eq!(
        e.admit(tx("a", 5_000).build(), &mut out),
        Admission::Accepted
    );
    assert_eq!(
        e.admit(tx("c", 60_000).build(), &mut out),
        Admission::Accepted
    );
    // Watermark is now 30 s: a and b were released in time order.
    assert_eq!(out.counts.released, 2);
    assert_eq!(e.admit(tx("d", 29_999).build(), &mut out), Admission::Late);
    assert_eq!(
        e.admit(tx("c", 60_000).build(), &mut out),
        Admission::Duplicate
    );
    assert_eq!(out.counts.late, 1);
    assert_eq!(out.counts.duplicates, 1);
    e.drain(&mut out);
    assert_eq!(out.counts.released, 3);
}

#[test]
fn lateness_zero_releases_on_arrival() {
    let mut e = Engine::new(cfg(0)).unwrap();
    let mut out = Output::default();
    assert_eq!(
        e.admit(tx("a", 1_000).build(), &mut out),
        Admission::Accepted
    );
    assert_eq!(out.counts.released, 1);
    assert_eq!(
        e.admit(tx("b", 1_000).build(), &mut out),
        Admission::Accepted
    );
    assert_eq!(e.admit(tx("a0", 1_000).build(), &mut out), Admission::Late);
    assert_eq!(e.admit(tx("z", 999).build(), &mut out), Admission::Late);
    assert_eq!(out.counts.released, 2);
}

#[test]
fn idle_advance_drains_and_counts_what_it_made_late() {
    let mut e = Engine::new(cfg(30)).unwrap();
    let mut out = Output::default();
    e.admit(tx("a", 100_000).build(), &mut out);
    assert_eq!(out.counts.released, 0);
    e.advance_idle(&mut out);
    assert_eq!(out.counts.released, 1);
    assert_eq!(e.admit(tx("b", 90_000).build(), &mut out), Admission::Late);
    assert_eq!(out.counts.late_after_idle, 1);
}

#[test]
fn the_ceiling_forgets_the_least_recently_seen_card() {
    let config = EngineConfig {
        max_tracked_cards: 2,
        ..cfg(0)
    };
    let events = [("c1", 1), ("c2", 2), ("c1", 3), ("c3", 4)]
        .map(|(c, t)| tx(&format!("{c}-{t}"), t * 1000).card(c).build());
    let (_, out, engine) = run_config(config, events);
    assert_eq!(out.counts.evicted_capacity, 1);
    let kept: Vec<_> = engine
        .cards
        .iter()
        .map(|(id, _)| id.as_str().to_string())
        .collect();
    assert_eq!(kept, ["c1", "c3"]);
}

#[test]
fn state_stays_under_512_bytes_per_card_with_all_detectors() {
    // Every card has a profile with history and a swipe in each window.
    let events = (0..2_000).flat_map(|c| {
        (0..12).map(move |i| {
            tx(&format!("evt-{c:05}-{i:02}"), i * 3_600_000 + c)
                .card(&format!("card-{c:08}"))
                .region("310101")
                .geo(31.23, 121.47)
                .kind(crate::MerchantKind::Pharmacy)
                .build()
        })
    });
    let mut sorted: Vec<_> = events.collect();
    sorted.sort_by_key(|t| (t.ts, t.event_id.clone()));
    let (_, _, engine) = run_config(cfg(0), sorted);
    let size = engine.state_size();
    assert_eq!(size.tracked_cards, 2_000);
    let per_card = size.bytes / size.tracked_cards;
    assert!(per_card <= 512, "{per_card} bytes per card");
}

#[test]
fn all_detectors_pass_the_property_harness() {
    proptest_all_detectors();
}
