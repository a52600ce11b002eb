use super::config::parse_utc_offset;
use super::*;
use crate::model::DeclineReason;
use crate::testing::{proptest_detector, run, tx, TxBuilder};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// A card with a steady habit: pharmacy in region 310101 around 10:00 local, about ¥80.
fn habit(n: i64) -> Vec<TxBuilder> {
    (0..n)
        .map(|i| {
            tx(&format!("h{i}"), i * 2 * DAY + 2 * HOUR + (i % 3) * 600_000)
                .amount(7_000 + (i % 5) as u64 * 500)
                .kind(MerchantKind::Pharmacy)
                .region("310101")
        })
        .collect()
}

fn with(mut events: Vec<TxBuilder>, last: TxBuilder) -> Vec<TxBuilder> {
    events.push(last);
    events
}

#[test]
fn silent_before_ten_prior_swipes() {
    let spree = |n| {
        let t = n * 2 * DAY + 2 * HOUR;
        with(
            habit(n),
            tx("x", t)
                .amount(900_000)
                .kind(MerchantKind::Pharmacy)
                .region("310101"),
        )
    };
    assert!(run(OffPattern::NAME, spree(9)).is_empty());
    let alerts = run(OffPattern::NAME, spree(10));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence[0].as_str(), "x");
}

#[test]
fn an_ordinary_swipe_is_quiet() {
    let t = 30 * 2 * DAY + 2 * HOUR;
    let events = with(
        habit(30),
        tx("x", t)
            .amount(8_000)
            .kind(MerchantKind::Pharmacy)
            .region("310101"),
    );
    assert!(run(OffPattern::NAME, events).is_empty());
}

#[test]
fn cash_out_names_the_amount() {
    let t = 30 * 2 * DAY + 2 * HOUR;
    let events = with(
        habit(30),
        tx("x", t)
            .amount(650_000)
            .kind(MerchantKind::Pharmacy)
            .region("310101"),
    );
    let alerts = run(OffPattern::NAME, events);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert!(
        a.explanation
            .starts_with("amount ¥6,500.00 vs usual about ¥"),
        "{}",
        a.explanation
    );
    assert!(!a.explanation.contains("region"), "{}", a.explanation);
    assert_eq!(a.features.len(), 4);
    assert!(a.score >= 4.0);
}

#[test]
fn a_lent_card_elsewhere_at_night_is_flagged_on_several_features() {
    // 18:00 UTC = 02:00 local, another kind, another region, a somewhat larger amount.
    let t = 30 * 2 * DAY + 18 * HOUR;
    let events = with(
        habit(30),
        tx("x", t)
            .amount(30_000)
            .kind(MerchantKind::Hospital)
            .region("440305"),
    );
    let alerts = run(OffPattern::NAME, events);
    assert_eq!(alerts.len(), 1);
    let e = &alerts[0].explanation;
    assert!(e.contains("region 440305 (new for this card)"), "{e}");
    assert!(e.contains("merchant_kind hospital"), "{e}");
    assert!(e.contains("hour 00:00-02:59"), "{e}");
}

#[test]
fn a_feature_the_feed_does_not_carry_is_left_out() {
    // No merchant kind, no region: only amount and hour are scored, and an ordinary amount at
    // the usual hour raises nothing, however little the card's profile knows of kinds.
    let bare = |n: i64| -> Vec<TxBuilder> {
        (0..n)
            .map(|i| {
                tx(&format!("h{i}"), i * 2 * DAY + 2 * HOUR).amount(7_000 + (i % 5) as u64 * 500)
            })
            .collect()
    };
    let t = 30 * 2 * DAY + 2 * HOUR;
    assert!(run(OffPattern::NAME, with(bare(30), tx("x", t).amount(8_000))).is_empty());
    let alerts = run(OffPattern::NAME, with(bare(30), tx("x", t).amount(200_000)));
    assert_eq!(alerts.len(), 1);
    let names: Vec<&str> = alerts[0]
        .features
        .iter()
        .map(|f| f.feature.as_str())
        .collect();
    assert_eq!(names, ["amount", "hour"]);
}

#[test]
fn several_medium_amounts_in_a_row_add_up_to_a_burst() {
    // Each about twice the habit: one alone is not enough, a run of them is.
    let mut events = habit(30);
    let t = 30 * 2 * DAY + 2 * HOUR;
    events.push(
        tx("m0", t)
            .amount(16_000)
            .kind(MerchantKind::Pharmacy)
            .region("310101"),
    );
    assert!(
        run(OffPattern::NAME, events.clone()).is_empty(),
        "one medium amount"
    );
    for i in 1..6 {
        events.push(
            tx(&format!("m{i}"), t + i * 3 * HOUR)
                .amount(16_000)
                .kind(MerchantKind::Pharmacy)
                .region("310101"),
        );
    }
    let alerts = run(OffPattern::NAME, events);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].evidence[0].as_str().starts_with('m'));
    assert!(
        alerts[0].features.iter().any(|f| f.feature == "burst"),
        "{:?}",
        alerts[0].features
    );
}

#[test]
fn a_spree_is_learnt_capped_so_the_next_big_swipe_still_stands_out() {
    let mut events = habit(30);
    let t = 30 * 2 * DAY + 2 * HOUR;
    events.push(
        tx("x1", t)
            .amount(650_000)
            .kind(MerchantKind::Pharmacy)
            .region("310101"),
    );
    // After the one-hour cool-down, the same again.
    events.push(
        tx("x2", t + 2 * HOUR)
            .amount(650_000)
            .kind(MerchantKind::Pharmacy)
            .region("310101"),
    );
    let alerts = run(OffPattern::NAME, events);
    let firsts: Vec<&str> = alerts.iter().map(|a| a.evidence[0].as_str()).collect();
    assert_eq!(firsts, ["x1", "x2"]);
}

#[test]
fn declined_swipes_are_scored_but_not_learned() {
    // Ten declines teach the profile nothing, so the card is still too new to score.
    let events: Vec<_> = (0..10)
        .map(|i| tx(&format!("d{i}"), i * DAY).declined(DeclineReason::InsufficientFunds))
        .chain([tx("x", 11 * DAY).amount(900_000)])
        .collect();
    assert!(run(OffPattern::NAME, events).is_empty());
}

#[test]
fn utc_offsets_parse_and_bad_ones_name_the_key() {
    assert_eq!(parse_utc_offset("+08:00"), Some(8 * HOUR));
    assert_eq!(parse_utc_offset("-05:30"), Some(-(5 * HOUR + 30 * 60_000)));
    assert_eq!(parse_utc_offset("8"), None);
    let cfg = OffPatternConfig {
        utc_offset: "UTC+8".into(),
        ..Default::default()
    };
    let err = cfg
        .build("detectors.off_pattern")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("detectors.off_pattern.utc_offset: must look like +08:00 or -05:30")
    );
}

#[test]
fn passes_the_property_harness() {
    proptest_detector(OffPattern::NAME);
}
