//! Event builders and the property harness every detector passes (feature `testing`).
//!
//! [`proptest_detector`] runs an engine with one detector enabled over generated event streams
//! and checks the properties the design is judged by:
//!
//! - (a) the same input gives identical alerts (ids, order, content);
//! - (b) any arrival order within the allowed lateness gives the same alerts;
//! - (c) snapshot at any point, restore, continue: identical alerts to the uninterrupted run;
//! - (d) once the idle horizon has passed, no key is tracked;
//! - (e) the tracked-key ceilings are never exceeded, and what they push out is counted.
//!
//! Every registered detector runs it alone (from its own tests, with a stream mix that makes
//! it fire) and all of them together ([`proptest_all_detectors`]), whatever key they use.
//!
//! It also checks that the generated streams make the detector fire in some cases, so that the
//! properties are not vacuous.

#![allow(clippy::panic)] // test support: a failed property is a panic

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::Cell;

use crate::config::EngineConfig;
use crate::engine::{Admission, Engine, Output};
use crate::model::{
    AmountMinor, CardId, Channel, DeclineReason, DetectorName, EventId, EventTime, GeoPoint,
    KeyKind, MerchantKind, Outcome, Transaction,
};
use crate::settlement::{CertType, EventType, Item, Settlement, VisitType};
use crate::Alert;

/// Builder for a test swipe: card `card-1`, ¥50.00 approved by chip at merchant `m1`.
#[derive(Clone, Debug)]
pub struct TxBuilder(Transaction);

/// A swipe with event id `id` at `ts_ms` milliseconds after the epoch.
pub fn tx(id: &str, ts_ms: i64) -> TxBuilder {
    TxBuilder(Transaction {
        event_id: EventId::new(id),
        ts: EventTime(ts_ms),
        card_id: CardId::new("card-1"),
        account_id: None,
        amount: AmountMinor(5000),
        currency: None,
        merchant_id: "m1".into(),
        merchant_kind: None,
        mcc: None,
        terminal_id: None,
        region: None,
        geo: None,
        channel: Some(Channel::Chip),
        outcome: Outcome::Approved,
        decline_reason: None,
        settlement: None,
        label: None,
        meta: Default::default(),
    })
}

impl TxBuilder {
    pub fn card(mut self, card: &str) -> Self {
        self.0.card_id = CardId::new(card);
        self
    }
    pub fn amount(mut self, fen: u64) -> Self {
        self.0.amount = AmountMinor(fen);
        self
    }
    pub fn declined(mut self, reason: DeclineReason) -> Self {
        self.0.outcome = Outcome::Declined;
        self.0.decline_reason = Some(reason);
        self
    }
    pub fn bad_pin(self) -> Self {
        self.declined(DeclineReason::BadPin)
    }
    pub fn terminal(mut self, t: &str) -> Self {
        self.0.terminal_id = Some(t.into());
        self
    }
    pub fn merchant(mut self, m: &str) -> Self {
        self.0.merchant_id = m.into();
        self
    }
    pub fn kind(mut self, k: MerchantKind) -> Self {
        self.0.merchant_kind = Some(k);
        self
    }
    pub fn region(mut self, r: &str) -> Self {
        self.0.region = Some(r.into());
        self
    }
    pub fn geo(mut self, lat: f64, lon: f64) -> Self {
        self.0.geo = Some(GeoPoint { lat, lon });
        self
    }
    pub fn channel(mut self, c: Channel) -> Self {
        self.0.channel = Some(c);
        self
    }
    fn settlement(&mut self) -> &mut Settlement {
        std::sync::Arc::make_mut(self.0.settlement.get_or_insert_with(Default::default))
    }
    pub fn person(mut self, account: &str) -> Self {
        self.0.account_id = Some(account.into());
        self
    }
    /// A return of an earlier settlement.
    pub fn refunded(mut self) -> Self {
        self.0.outcome = Outcome::Refunded;
        self.0.decline_reason = None;
        self
    }
    /// An admission or discharge of `account` for the stay `visit` (approved, as they always are).
    pub fn stay(mut self, t: EventType, account: &str, visit: &str) -> Self {
        self.0.outcome = Outcome::Approved;
        self.0.decline_reason = None;
        self.0.account_id = Some(account.into());
        let s = self.settlement();
        s.event_type = t;
        s.visit_id = Some(visit.into());
        self
    }
    pub fn cert(mut self, c: CertType) -> Self {
        self.settlement().cert_type = Some(c);
        self
    }
    pub fn visit(mut self, v: VisitType) -> Self {
        self.settlement().visit_type = Some(v);
        self
    }
    /// Adds a line item with its days of supply and traceability codes.
    pub fn item(mut self, code: &str, days_supply: u32, trace_codes: &[&str]) -> Self {
        self.settlement().items.push(Item {
            code: code.into(),
            days_supply: Some(days_supply),
            trace_codes: trace_codes.iter().map(|&c| c.into()).collect(),
            ..Item::default()
        });
        self
    }
    /// Puts the last item in supply group `g`.
    pub fn group(mut self, g: &str) -> Self {
        if let Some(item) = self.settlement().items.last_mut() {
            item.group = Some(g.into());
        }
        self
    }
    /// Takes the last item's days of supply away.
    pub fn no_supply(mut self) -> Self {
        if let Some(item) = self.settlement().items.last_mut() {
            item.days_supply = None;
        }
        self
    }
    /// Marks every item as sold out of an opened box (`split`).
    pub fn split_items(mut self) -> Self {
        for item in &mut self.settlement().items {
            item.split = true;
        }
        self
    }
    pub fn label(mut self, l: &str) -> Self {
        self.0.label = Some(l.into());
        self
    }
    pub fn build(self) -> Transaction {
        self.0
    }
}

impl From<TxBuilder> for Transaction {
    fn from(b: TxBuilder) -> Transaction {
        b.0
    }
}

/// Default engine configuration with only `detector` enabled.
pub fn config_for(detector: &str) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.detectors = cfg.detectors.only(&[DetectorName::named(detector)]);
    cfg
}

/// Runs in-order `events` through an engine with only `detector` enabled; returns its alerts.
pub fn run(detector: &str, events: Vec<TxBuilder>) -> Vec<Alert> {
    run_config(
        config_for(detector),
        events.into_iter().map(TxBuilder::build),
    )
    .0
}

/// Admits every event, drains, and returns the alerts, the counts and the engine.
pub fn run_config(
    cfg: EngineConfig,
    events: impl IntoIterator<Item = Transaction>,
) -> (Vec<Alert>, Output, Engine) {
    let mut engine = match Engine::new(cfg) {
        Ok(e) => e,
        Err(e) => panic!("test configuration is invalid: {e}"),
    };
    let mut out = Output::default();
    for e in events {
        engine.admit(e, &mut out);
    }
    engine.drain(&mut out);
    (std::mem::take(&mut out.alerts), out, engine)
}

/// Knobs of the generated streams, chosen per detector so that each one fires often enough.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub cards: usize,
    pub len: usize,
    /// Largest gap between consecutive swipes, ms.
    pub max_gap: i64,
    /// Chance of a long quiet spell (hours to days) before a swipe.
    pub long_gap: f64,
    pub bad_pin: f64,
    pub geo: f64,
    /// Chance that a swipe follows its card's habit (kind, region, amount) rather than chance.
    pub habit: f64,
    /// How many merchants (each its own terminal) the swipes spread over, at most 16.
    pub merchants: usize,
    /// Chance that an event carries the settlement fields of DESIGN §12 (a refund, an
    /// admission or discharge, an e-voucher settlement, line items with traceability codes).
    pub settlement: f64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            cards: 3,
            len: 120,
            max_gap: 60_000,
            long_gap: 0.02,
            bad_pin: 0.1,
            geo: 0.3,
            habit: 0.0,
            merchants: 16,
            settlement: 0.15,
        }
    }
}

/// The mix each registered detector's harness run uses (the default where none is named).
pub fn mix(detector: &str) -> Mix {
    let base = Mix::default();
    match detector {
        "failed_pin" | "pin_success_after_failures" => Mix {
            bad_pin: 0.45,
            max_gap: 240_000,
            ..base
        },
        "rapid_fire" => Mix {
            max_gap: 30_000,
            ..base
        },
        "impossible_travel" => Mix {
            geo: 0.8,
            max_gap: 1_800_000,
            ..base
        },
        "off_pattern" => Mix {
            cards: 2,
            len: 200,
            max_gap: 3 * 86_400_000,
            long_gap: 0.0,
            habit: 0.95,
            ..base
        },
        // Wrong PINs hours apart: runs that lock, approvals that reset, locks that run out.
        "card_lock" => Mix {
            bad_pin: 0.5,
            max_gap: 6 * 3_600_000,
            long_gap: 0.05,
            ..base
        },
        // Few codes, many settlements and refunds: codes are settled again and returned.
        "trace_code_resettled" => Mix {
            settlement: 0.8,
            max_gap: 6 * 3_600_000,
            ..base
        },
        // Purchases of a few drugs by a few people hours apart: supplies overlap, refunds return
        // days; admissions and discharges open and close stays around them.
        "early_refill" | "settle_during_stay" => Mix {
            settlement: 0.8,
            max_gap: 12 * 3_600_000,
            long_gap: 0.05,
            ..base
        },
        "terminal_pin_probe" => Mix {
            cards: 9,
            len: 200,
            bad_pin: 0.6,
            max_gap: 40_000,
            merchants: 2,
            ..base
        },
        _ => base,
    }
}

/// The visit types of generated purchases: the ones `settle_during_stay` counts and not.
const VISITS: [VisitType; 4] = [
    VisitType::Pharmacy,
    VisitType::Outpatient,
    VisitType::Chronic,
    VisitType::Emergency,
];

const CITIES: [(f64, f64, &str); 4] = [
    (39.9042, 116.4074, "110101"),
    (31.2304, 121.4737, "310101"),
    (31.3000, 121.5000, "310115"),
    (23.1291, 113.2644, "440104"),
];

/// Generated events in event-time order (ids sort with it), each with an arrival jitter in
/// `[0, lateness)` that defines an admissible out-of-order arrival.
fn stream(m: Mix, lateness: i64) -> impl Strategy<Value = Vec<(Transaction, i64)>> {
    let one = (
        (
            0..m.cards,
            0..m.max_gap,
            prop::bool::weighted(m.long_gap),
            0..(5 * 86_400_000i64),
        ),
        (
            prop::bool::weighted(m.bad_pin),
            prop::bool::weighted(0.05),
            prop::bool::weighted(m.geo),
            0..CITIES.len(),
            prop::bool::weighted(0.1),
        ),
        (
            (4.0f64..13.0).prop_map(|l| l.exp() as u64),
            0..4usize,
            0..lateness.max(1),
            prop::bool::weighted(m.habit),
        ),
        (prop::bool::weighted(m.settlement), 0..5usize, 0..6u32),
    );
    prop::collection::vec(one, 1..m.len).prop_map(move |rows| {
        let mut ts = 1_700_000_000_000i64;
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                let (
                    (card, gap, long, long_ms),
                    (bad_pin, other_decline, geo, city, online),
                    (amount, kind, jitter, habit),
                    (settles, what, code),
                ) = row;
                ts += gap + if long { long_ms } else { 0 };
                // A habitual swipe: the card's own kind and city, about ¥50.
                let (city, kind, amount) = if habit {
                    (card % CITIES.len(), card % 4, 5_000 + amount % 1_000)
                } else {
                    (city, kind, amount)
                };
                let (lat, lon, region) = CITIES[city];
                let merchant = (city * 4 + kind) % m.merchants.clamp(1, 16);
                let mut b = tx(&format!("e{i:06}"), ts)
                    .card(&format!("card-{card}"))
                    .amount(amount)
                    .merchant(&format!("m{merchant}"))
                    .kind(MerchantKind::ALL[kind])
                    .region(region);
                if bad_pin {
                    b = b.bad_pin();
                } else if other_decline {
                    b = b.declined(DeclineReason::InsufficientFunds);
                }
                if geo {
                    b = b.geo(lat, lon);
                }
                if online {
                    b = b.channel(Channel::Online);
                }
                if settles {
                    let person = format!("p{card}");
                    let stay = format!("stay-{card}-{}", code % 2);
                    b = match what {
                        0 => b.person(&person).refunded().item(
                            &format!("d{code}"),
                            10,
                            &[&format!("t{code}")],
                        ),
                        1 => b.stay(EventType::Admission, &person, &stay),
                        2 => b.stay(EventType::Discharge, &person, &stay),
                        3 => b.cert(CertType::EVoucher),
                        _ => b
                            .person(&person)
                            .visit(VISITS[code as usize % VISITS.len()])
                            .item(&format!("d{code}"), 30, &[&format!("t{code}")]),
                    };
                }
                (b.build(), jitter)
            })
            .collect()
    })
}

fn engine(cfg: &EngineConfig) -> Engine {
    match Engine::new(cfg.clone()) {
        Ok(e) => e,
        Err(e) => panic!("harness configuration is invalid: {e}"),
    }
}

/// Admits `events` in arrival order (event time plus jitter), checking none is late.
fn feed(
    engine: &mut Engine,
    events: &[(Transaction, i64)],
    out: &mut Output,
) -> Result<(), TestCaseError> {
    for (e, _) in events {
        let admitted = engine.admit(e.clone(), out);
        prop_assert_eq!(
            admitted,
            Admission::Accepted,
            "event {} arrived within the lateness",
            e.event_id
        );
    }
    Ok(())
}

fn by_arrival(events: &[(Transaction, i64)]) -> Vec<(Transaction, i64)> {
    let mut arrival: Vec<_> = events.to_vec();
    arrival.sort_by_key(|(e, jitter)| e.ts.0 + jitter);
    arrival
}

/// The property harness of the module doc, for one detector, with its [`mix`].
pub fn proptest_detector(detector: &str) {
    check_properties(config_for(detector), mix(detector), detector);
}

/// The same harness with every detector enabled: the stages' fan-out is part of what is proven.
pub fn proptest_all_detectors() {
    let m = Mix {
        cards: 6,
        len: 200,
        max_gap: 3_600_000,
        long_gap: 0.01,
        bad_pin: 0.3,
        geo: 0.6,
        habit: 0.8,
        merchants: 4,
        settlement: 0.2,
    };
    check_properties(EngineConfig::default(), m, "all detectors");
}

/// Every detector enabled, each with an alert budget of `per_hour`.
pub fn config_with_budgets(per_hour: u32) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    for r in crate::registry::REGISTRY {
        (r.set_budget)(&mut cfg.detectors, Some(per_hour));
    }
    cfg
}

/// The harness with every detector on a tight alert budget: withholding is as deterministic,
/// order-independent and snapshot-proof as detection.
pub fn proptest_all_detectors_with_budgets() {
    let m = Mix {
        cards: 6,
        len: 200,
        max_gap: 600_000,
        long_gap: 0.01,
        bad_pin: 0.4,
        geo: 0.6,
        habit: 0.5,
        merchants: 4,
        settlement: 0.3,
    };
    check_properties(config_with_budgets(2), m, "all detectors, budgets");
}

fn check_properties(cfg: EngineConfig, m: Mix, detector: &str) {
    let lateness = cfg.allowed_lateness.as_millis() as i64;
    let fired = Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &(stream(m, lateness), 0..1000usize, 1..4usize),
        |(events, cut, ceiling)| {
            // (a) same input, same alerts.
            let in_order = || events.iter().map(|(e, _)| e.clone());
            let (reference, ref_out, ref_engine) = run_config(cfg.clone(), in_order());
            let (again, _, _) = run_config(cfg.clone(), in_order());
            prop_assert_eq!(&reference, &again);
            prop_assert!(ref_out.refusals.is_empty(), "in-order input refused");
            if !reference.is_empty() {
                fired.set(fired.get() + 1);
            }

            // (b) arrival order within the lateness changes nothing.
            let arrival = by_arrival(&events);
            let mut e = engine(&cfg);
            let mut out = Output::default();
            feed(&mut e, &arrival, &mut out)?;
            e.drain(&mut out);
            prop_assert_eq!(&reference, &out.alerts);

            // (c) snapshot after any prefix, restore, continue.
            let cut = cut % (arrival.len() + 1);
            let mut first = engine(&cfg);
            let mut out = Output::default();
            feed(&mut first, &arrival[..cut], &mut out)?;
            let bytes = first.snapshot(cut as u64);
            drop(first);
            let restored = Engine::restore(cfg.clone(), &bytes)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(restored.position, cut as u64);
            let mut second = restored.engine;
            feed(&mut second, &arrival[cut..], &mut out)?;
            second.drain(&mut out);
            prop_assert_eq!(&reference, &out.alerts);

            // (d) past the horizon nothing is tracked.
            let mut idle = ref_engine;
            let tracked_before = idle.state_size().tracked_cards;
            let last = events.last().map_or(0, |(e, _)| e.ts.0);
            let mut out = Output::default();
            let horizon = idle
                .stages()
                .iter()
                .map(|s| s.horizon().0)
                .max()
                .unwrap_or(0);
            idle.advance_watermark(EventTime(last + horizon + 86_400_000), &mut out);
            prop_assert_eq!(idle.state_size().tracked_cards, 0);
            let evicted: u64 = out.counts.stages.iter().map(|s| s.evicted_idle).sum();
            prop_assert_eq!(evicted as usize, tracked_before);

            // (e) the ceilings hold after every event and their evictions are counted: a stage
            // whose keys, unbounded, would have outnumbered the ceiling shows capacity evictions.
            let mut peak = [0usize; KeyKind::COUNT];
            let mut unbounded = engine(&cfg);
            let mut out = Output::default();
            for (e, _) in &events {
                unbounded.admit(e.clone(), &mut out);
                for stage in unbounded.stages() {
                    let p = &mut peak[stage.kind().index()];
                    *p = (*p).max(stage.held().0);
                }
            }
            let mut small_cfg = cfg.clone();
            small_cfg.max_tracked_cards = ceiling;
            small_cfg.max_tracked_keys.terminal = ceiling;
            small_cfg.max_tracked_keys.account = ceiling;
            small_cfg.max_tracked_keys.trace_code = ceiling;
            let mut small = engine(&small_cfg);
            let mut out = Output::default();
            for (e, _) in &events {
                small.admit(e.clone(), &mut out);
                for stage in small.stages() {
                    prop_assert!(
                        stage.held().0 <= ceiling,
                        "{:?} over its ceiling",
                        stage.kind()
                    );
                }
            }
            small.drain(&mut out);
            for stage in small.stages() {
                let kind = stage.kind();
                prop_assert!(stage.held().0 <= ceiling);
                if peak[kind.index()] > ceiling {
                    prop_assert!(
                        out.counts.stage(kind).evicted_capacity > 0,
                        "{:?}: {} keys under a ceiling of {} and no eviction counted",
                        kind,
                        peak[kind.index()],
                        ceiling
                    );
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{detector} fails the property harness: {e}");
    }
    assert!(
        fired.get() > 0,
        "{detector} never fired on generated streams: the harness proves nothing"
    );
}

/// SplitMix64: a tiny, seedable generator for synthetic streams (tests and benches only).
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A benchmark-shaped stream: `events` swipes over `cards` cards with a skew (the busiest 1 % of
/// cards make about 10 % of the swipes), 2 % wrong PINs, coordinates for card-present swipes,
/// about 5 swipes per second of event time, and arrival up to `jitter_ms` earlier than event
/// order (keep it under the allowed lateness, or the excess is late).
pub fn synthetic_stream(
    events: usize,
    cards: usize,
    jitter_ms: u64,
    seed: u64,
) -> Vec<Transaction> {
    let mut rng = SplitMix::new(seed);
    let mut ts = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut out = Vec::with_capacity(events);
    for i in 0..events {
        ts += rng.below(400) as i64;
        let card = ((rng.unit().powi(2)) * cards as f64) as usize;
        let (lat, lon, region) = CITIES[card % CITIES.len()];
        let kind = MerchantKind::ALL[(card + (rng.below(10) == 0) as usize) % 4];
        let amount = 2_000 + (rng.unit() * rng.unit() * 30_000.0) as u64;
        let mut b = tx(&format!("evt-{i:09}"), ts - rng.below(jitter_ms + 1) as i64)
            .card(&format!("card-{card:08}"))
            .amount(amount)
            .merchant(&format!(
                "m-{:05}",
                (card * 7 + rng.below(3) as usize) % 50_000
            ))
            .kind(kind)
            .region(region)
            .geo(lat + rng.unit() * 0.1, lon + rng.unit() * 0.1);
        if rng.below(50) == 0 {
            b = b.bad_pin();
        } else if rng.below(40) == 0 {
            b = b.declined(DeclineReason::InsufficientFunds);
        }
        out.push(b.build());
    }
    out
}
