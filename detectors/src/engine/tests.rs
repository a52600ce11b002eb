use super::*;
use crate::model::KeyKind;
use crate::testing::{proptest_all_detectors, run_config, tx};

/// The card detectors only, at the given lateness.
fn cfg(lateness_s: u64) -> EngineConfig {
    let mut c = EngineConfig {
        allowed_lateness: std::time::Duration::from_secs(lateness_s),
        ..EngineConfig::default()
    };
    c.detectors = c.detectors.only_keys(&[KeyKind::Card]);
    c
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
    assert_eq!(out.counts.stage(KeyKind::Card).released, 2);
    assert_eq!(e.admit(tx("d", 29_999).build(), &mut out), Admission::Late);
    assert_eq!(
        e.admit(tx("c", 60_000).build(), &mut out),
        Admission::Duplicate
    );
    assert_eq!(out.counts.stage(KeyKind::Card).late, 1);
    assert_eq!(out.counts.stage(KeyKind::Card).duplicates, 1);
    e.drain(&mut out);
    assert_eq!(out.counts.stage(KeyKind::Card).released, 3);
}

#[test]
fn lateness_zero_releases_on_arrival() {
    let mut e = Engine::new(cfg(0)).unwrap();
    let mut out = Output::default();
    assert_eq!(
        e.admit(tx("a", 1_000).build(), &mut out),
        Admission::Accepted
    );
    assert_eq!(out.counts.stage(KeyKind::Card).released, 1);
    assert_eq!(
        e.admit(tx("b", 1_000).build(), &mut out),
        Admission::Accepted
    );
    assert_eq!(e.admit(tx("a0", 1_000).build(), &mut out), Admission::Late);
    assert_eq!(e.admit(tx("z", 999).build(), &mut out), Admission::Late);
    assert_eq!(out.counts.stage(KeyKind::Card).released, 2);
}

#[test]
fn idle_advance_drains_and_counts_what_it_made_late() {
    let mut e = Engine::new(cfg(30)).unwrap();
    let mut out = Output::default();
    e.admit(tx("a", 100_000).build(), &mut out);
    assert_eq!(out.counts.stage(KeyKind::Card).released, 0);
    e.advance_idle(&mut out);
    assert_eq!(out.counts.stage(KeyKind::Card).released, 1);
    assert_eq!(e.admit(tx("b", 90_000).build(), &mut out), Admission::Late);
    assert_eq!(out.counts.stage(KeyKind::Card).late_after_idle, 1);
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
    assert_eq!(out.counts.stage(KeyKind::Card).evicted_capacity, 1);
    let kept: Vec<_> = engine.stages[0]
        .keys
        .iter()
        .map(|(_, id, _)| id.to_string())
        .collect();
    assert_eq!(kept, ["c1", "c3"]);
}

#[test]
fn state_per_card_with_the_card_detectors_stays_in_budget() {
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
    // 482 B before per-detector stores. At 2,000 cards the windows of the last minutes are
    // still open; `cargo bench --bench state_size` measures a million (233 B).
    assert!(per_card <= 288, "{per_card} bytes per card");
}

#[test]
fn all_detectors_pass_the_property_harness() {
    proptest_all_detectors();
}

#[test]
fn a_card_without_pin_trouble_holds_no_pin_state_and_quiet_keys_are_dropped() {
    let events = [
        tx("a", 1_000).card("ordinary").build(),
        tx("b", 2_000).card("probed").bad_pin().build(),
    ];
    let (_, _, engine) = run_config(cfg(0), events);
    let stage = &engine.stages[0];
    let live: Vec<usize> = stage.stores.iter().map(|s| s.live()).collect();
    // failed_pin and pin_success hold the one wrong PIN; rapid_fire both swipes; travel none
    // (no coordinates); off_pattern none (no approved swipe folded for "probed", one for
    // "ordinary"); card_lock the one wrong PIN of its run.
    assert_eq!(live, [1, 1, 2, 0, 1, 1]);
    let only_rapid = EngineConfig {
        detectors: cfg(0)
            .detectors
            .only(&[DetectorName::named("impossible_travel")]),
        ..cfg(0)
    };
    let (_, _, engine) = run_config(only_rapid, [tx("c", 3_000).build()]);
    assert_eq!(
        engine.state_size().tracked_cards,
        0,
        "nothing to remember, no key"
    );
}

#[test]
fn every_detector_lands_in_the_stage_of_its_key() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let kinds: Vec<KeyKind> = engine.stages().iter().map(|s| s.kind()).collect();
    assert_eq!(
        kinds,
        [
            KeyKind::Card,
            KeyKind::Terminal,
            KeyKind::Account,
            KeyKind::TraceCode
        ]
    );
    for stage in engine.stages() {
        for store in &stage.stores {
            assert_eq!(store.name().key(), stage.kind());
        }
    }
}

#[test]
fn a_stage_refuses_for_itself_and_hands_the_event_back() {
    let mut e = Engine::new(EngineConfig {
        allowed_lateness: std::time::Duration::ZERO,
        ..EngineConfig::default()
    })
    .unwrap();
    let mut out = Output::default();
    e.admit(tx("a", 5_000).card("c1").terminal("t1").build(), &mut out);
    assert_eq!(
        e.admit(tx("b", 4_000).card("c1").terminal("t1").build(), &mut out),
        Admission::Late
    );
    let refused: Vec<(KeyKind, &str)> = out
        .refusals
        .iter()
        .map(|r| (r.stage, r.event.event_id.as_str()))
        .collect();
    assert_eq!(refused, [(KeyKind::Card, "b"), (KeyKind::Terminal, "b")]);
}

#[test]
fn closed_windows_are_swept_without_an_event_of_their_card() {
    // A thousand cards swipe once; an hour later, other traffic flows. Their rapid_fire windows
    // (60 s) have closed: the sweep drops those states, and the cards keep only what still
    // matters (the travel fix and the profile), whatever the order of the sweep.
    let mut events: Vec<_> = (0..1_000)
        .map(|c| {
            tx(&format!("a{c:04}"), c)
                .card(&format!("c{c:04}"))
                .geo(31.2, 121.4)
                .build()
        })
        .collect();
    events.extend((0..1_200).map(|i| {
        tx(&format!("b{i:04}"), 3_600_000 + i)
            .card(&format!("other{}", i % 7))
            .build()
    }));
    let (_, _, engine) = run_config(cfg(0), events);
    let live: std::collections::BTreeMap<String, usize> = engine.stages[0]
        .detectors()
        .map(|(d, n)| (d.to_string(), n))
        .collect();
    assert!(live["rapid_fire"] <= 7, "{live:?}");
    assert_eq!(live["impossible_travel"], 1_000);
}

/// A downstream stage partition (DESIGN §11) releases only when told its watermark, looks only
/// at the keys it owns, and refuses nothing the upstream watermark admits.
#[test]
fn a_downstream_stage_waits_for_its_upstream_watermark_and_sees_only_its_keys() {
    let mut c = EngineConfig::default();
    c.detectors = c.detectors.only_keys(&[KeyKind::TraceCode]);
    let codes: Vec<String> = (0..40).map(|i| format!("8{i:019}")).collect();
    let (mine, theirs): (Vec<&String>, Vec<&String>) = codes
        .iter()
        .partition(|c| crate::stage::partition_of(c, 3) == 1);
    assert!(!mine.is_empty() && !theirs.is_empty());
    let (m, t) = (mine[0].as_str(), theirs[0].as_str());
    let mut e = Engine::new(c).unwrap();
    e.run_downstream(1, 3);
    let mut out = Output::default();
    for (id, ms) in [("s1", 1_000), ("s2", 2_000)] {
        let sale = tx(id, ms).item("d", 30, &[m, t]).build();
        assert_eq!(e.admit(sale, &mut out), Admission::Accepted);
    }
    assert_eq!(
        out.counts.stage(KeyKind::TraceCode).released,
        0,
        "no event released on its own"
    );
    e.advance_watermark(EventTime(1_999), &mut out);
    assert!(out.alerts.is_empty());
    // An event at the upstream watermark, older than the newest this stage holds: accepted.
    let older = tx("s0", 1_999).item("d", 30, &["other"]).build();
    assert_eq!(e.admit(older, &mut out), Admission::Accepted);
    e.advance_watermark(EventTime(2_000), &mut out);
    let alerted: Vec<&str> = out.alerts.iter().map(|a| a.subject.id.as_str()).collect();
    assert_eq!(alerted, [m], "only the owned code is this partition's");
    assert_eq!(out.counts.stage(KeyKind::TraceCode).released, 3);
}
