//! Scenarios that involve many cards at one terminal, drawn once per run rather than per card:
//!
//! | label | what happens | meant for |
//! |---|---|---|
//! | `terminal_pin_probe` | a skimmer at a pharmacy terminal tries one PIN on each of 6–9 cards within minutes; nearly all fail | `terminal_pin_probe` |
//! | (legit) busy terminal | a busy pharmacy terminal where 5–6 customers mistype their PIN once and succeed on the retry, among many ordinary purchases | the near miss: enough cards, too small a share |
//!
//! Each incident draws from its own ChaCha8 stream seeded from the run's seed and the incident's
//! number, and picks its cards among the population by index, so the output stays byte-identical
//! per seed whatever the order of generation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swipeguard_detectors::{
    AmountMinor, CardId, Channel, DeclineReason, EventId, EventTime, GeoPoint, MerchantKind,
    Outcome, Transaction,
};

use super::places::{self, Merchant};
use super::population::{DAY, HOUR, MINUTE};

/// The label of a probe's events.
pub const PROBE: &str = "terminal_pin_probe";

/// Cards by index: their ids and home cities, for events made outside their own life.
pub struct Roster<'a> {
    pub card_ids: &'a [String],
    pub home_cities: &'a [usize],
}

/// How many probe incidents a run gets: about as many probed cards as a card-level scenario
/// has victims (`cards × fraud_share / 8`), six to nine cards an incident.
pub fn incidents(cards: u64, fraud_share: f64) -> u64 {
    if cards < 10 {
        return 0;
    }
    ((cards as f64 * fraud_share.clamp(0.0, 1.0) / 8.0 / 7.5).round() as u64).max(1)
}

fn incident_rng(seed: u64, salt: u64, k: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ salt ^ k.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Distinct card indices, `n` of them (fewer when the population is smaller).
fn pick_cards(rng: &mut ChaCha8Rng, cards: u64, n: usize) -> Vec<u64> {
    let mut picked: Vec<u64> = Vec::with_capacity(n);
    while picked.len() < n.min(cards as usize) {
        let c = rng.random_range(0..cards);
        if !picked.contains(&c) {
            picked.push(c);
        }
    }
    picked
}

/// Distinct cards living in `city`, `n` of them (fewer if the city has fewer).
fn pick_locals(rng: &mut ChaCha8Rng, roster: &Roster<'_>, city: usize, n: usize) -> Vec<u64> {
    let locals: Vec<u64> = (0..roster.home_cities.len() as u64)
        .filter(|c| roster.home_cities[*c as usize] == city)
        .collect();
    pick_cards(rng, locals.len() as u64, n)
        .into_iter()
        .map(|i| locals[i as usize])
        .collect()
}

struct Place {
    merchant: Merchant,
    terminal: String,
}

fn place(rng: &mut ChaCha8Rng) -> Place {
    let city = places::pick_city(rng);
    let merchant = places::merchant(
        city,
        MerchantKind::Pharmacy,
        rng.random_range(0..places::merchants_of(MerchantKind::Pharmacy)),
    );
    let terminal = format!("{}-T{}", merchant.id, rng.random_range(1..=4));
    Place { merchant, terminal }
}

#[allow(clippy::too_many_arguments)]
fn event(
    id: String,
    ts: i64,
    card: &str,
    at: &Place,
    amount: u64,
    outcome: Outcome,
    decline: Option<DeclineReason>,
    label: &str,
) -> Transaction {
    let m = &at.merchant;
    Transaction {
        event_id: EventId::new(id),
        ts: EventTime(ts),
        card_id: CardId::new(card),
        account_id: None,
        amount: AmountMinor(amount),
        currency: Some("CNY".into()),
        merchant_id: m.id.as_str().into(),
        merchant_kind: Some(m.kind),
        mcc: Some(m.mcc.into()),
        terminal_id: Some(at.terminal.as_str().into()),
        region: Some(m.region.into()),
        geo: Some(GeoPoint {
            lat: (m.lat * 1e4).round() / 1e4,
            lon: (m.lon * 1e4).round() / 1e4,
        }),
        channel: Some(Channel::Chip),
        outcome,
        decline_reason: decline,
        settlement: None,
        label: Some(label.into()),
        meta: Default::default(),
    }
}

/// A local daytime moment in `[start, start + days)`.
fn daytime(rng: &mut ChaCha8Rng, start: i64, days: u32) -> i64 {
    let day = rng.random_range(0..i64::from(days.max(1)));
    start + day * DAY + rng.random_range(9 * HOUR..20 * HOUR)
}

/// Probe incidents: at one terminal, one wrong PIN on each of several cards within minutes
/// (an occasional guess works). Returns the events and how many cards were probed.
pub fn probes(
    roster: &Roster<'_>,
    seed: u64,
    start: i64,
    days: u32,
    count: u64,
) -> (Vec<Transaction>, u64) {
    let mut events = Vec::new();
    let mut victims = 0;
    let cards = roster.card_ids.len() as u64;
    for k in 0..count {
        let mut rng = incident_rng(seed, 0x7072_6f62_6573, k);
        let at = place(&mut rng);
        let mut t = daytime(&mut rng, start, days);
        let n = rng.random_range(6..=9);
        let probed = pick_cards(&mut rng, cards, n);
        victims += probed.len() as u64;
        for (j, c) in probed.iter().enumerate() {
            let guessed = rng.random_bool(0.1);
            let (outcome, decline, amount) = if guessed {
                (Outcome::Approved, None, rng.random_range(20_000..90_000))
            } else {
                (Outcome::Declined, Some(DeclineReason::BadPin), 0)
            };
            events.push(event(
                format!("probe{k:05}-{j:02}"),
                t,
                &roster.card_ids[*c as usize],
                &at,
                amount,
                outcome,
                decline,
                PROBE,
            ));
            t += rng.random_range(20_000..70_000);
        }
    }
    (events, victims)
}

/// Busy-terminal near misses: 5–6 customers mistype once and succeed on the retry, among a
/// dozen ordinary purchases, all within ten minutes, by people who live in the city. Labelled
/// legitimate.
pub fn busy_terminals(
    roster: &Roster<'_>,
    seed: u64,
    start: i64,
    days: u32,
    count: u64,
) -> Vec<Transaction> {
    let mut events = Vec::new();
    for k in 0..count {
        let mut rng = incident_rng(seed, 0x6275_7379, k);
        let at = place(&mut rng);
        let t0 = daytime(&mut rng, start, days);
        let n = rng.random_range(16..=20);
        // Customers of a pharmacy live in its city (a stranger there would look like a clone).
        let customers = pick_locals(&mut rng, roster, at.merchant.city, n);
        let typos = rng.random_range(5..=6).min(customers.len());
        for (j, c) in customers.iter().enumerate() {
            let card = &roster.card_ids[*c as usize];
            let t = t0 + rng.random_range(0..9 * MINUTE);
            let amount = rng.random_range(1_500..15_000);
            if j < typos {
                events.push(event(
                    format!("busy{k:05}-{j:02}a"),
                    t,
                    card,
                    &at,
                    0,
                    Outcome::Declined,
                    Some(DeclineReason::BadPin),
                    "legit",
                ));
            }
            events.push(event(
                format!("busy{k:05}-{j:02}b"),
                t + rng.random_range(10_000..40_000),
                card,
                &at,
                amount,
                Outcome::Approved,
                None,
                "legit",
            ));
        }
    }
    events
}
