//! Drug boxes and their traceability codes (DESIGN §12), drawn once the population has lived:
//!
//! | label | what happens | meant for |
//! |---|---|---|
//! | (legit) every approved pharmacy purchase | one line item: a drug of a small catalogue with its days of supply, and the box's own traceability code | — |
//! | (legit) split-pack sale | one purchase in 25 is sold out of an opened box: `split: true`, and the code of that pharmacy's box of the day, which other customers' split sales repeat | the near miss: a code repeated, legitimately |
//! | (legit) return, then re-sale | a purchase returned 1–3 days later (`refunded`, the same item), and the box sold again at the same pharmacy to another insured person | the near miss: a code settled twice, returned in between |
//! | `resold_drug` | a box bought by one insured person is settled again 2–20 days later at another pharmacy by another (回流药: bought on the insurance, sold back, resold) | `trace_code_resettled` |
//!
//! The items of ordinary purchases come from a hash of the event id, not from the random stream,
//! so adding them changed nothing else the simulator draws. Incidents draw from their own
//! ChaCha8 stream per incident number, like `super::terminals`: byte-identical per seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swipeguard_detectors::{
    AmountMinor, CardId, CertType, EventId, EventTime, Item, MerchantKind, Outcome, Settlement,
    Transaction, VisitType,
};

use super::places;
use super::population::{DAY, HOUR};
use super::terminals::Roster;

/// The label of a resale's events.
pub const RESOLD: &str = "resold_drug";

/// (catalogue code, group, days of supply of one box).
pub(super) const CATALOGUE: [(&str, &str, u32); 8] = [
    ("XA10BAA001", "metformin", 30),
    ("XC09CAA002", "losartan", 28),
    ("XC10AAA005", "atorvastatin", 28),
    ("XR06AXA013", "loratadine", 10),
    ("XJ01CAA04", "amoxicillin", 7),
    ("XN02BEA01", "paracetamol", 5),
    ("XA02BCA01", "omeprazole", 14),
    ("XC08CAA01", "amlodipine", 30),
];

pub(super) fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Gives every approved in-person pharmacy purchase its line item and box code.
pub fn stock(events: &mut [Transaction]) {
    for e in events.iter_mut() {
        let in_person = e.region.is_some();
        if e.merchant_kind != Some(MerchantKind::Pharmacy)
            || e.outcome != Outcome::Approved
            || !in_person
            || e.settlement.is_some()
        {
            continue;
        }
        let h = fnv64(e.event_id.as_str());
        let (code, group, days) = CATALOGUE[(h % CATALOGUE.len() as u64) as usize];
        let split = h % 25 == 7;
        let trace = if split {
            // The pharmacy's opened box of the day.
            let day = e.ts.0.div_euclid(DAY);
            format!("83{:08}{:010}", fnv64(&e.merchant_id) % 100_000_000, day)
        } else {
            format!("8{:019}", (h >> 1) % 10_000_000_000_000_000_000)
        };
        e.settlement = Some(std::sync::Arc::new(Settlement {
            visit_type: Some(VisitType::Pharmacy),
            cert_type: Some(CertType::Card),
            items: vec![Item {
                code: code.into(),
                group: Some(group.into()),
                quantity: Some(if split { 0.5 } else { 1.0 }),
                days_supply: Some(if split { days / 2 } else { days }),
                trace_codes: vec![trace.into()],
                split,
                amount: Some(e.amount),
            }],
            ..Settlement::default()
        }));
    }
}

/// How many resale incidents (and as many legitimate returns) a run gets: about as many as a
/// card-level scenario has victims.
pub fn incidents(cards: u64, fraud_share: f64) -> u64 {
    if cards < 10 {
        return 0;
    }
    ((cards as f64 * fraud_share.clamp(0.0, 1.0) / 10.0).round() as u64).max(1)
}

fn incident_rng(seed: u64, salt: u64, k: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ salt ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Purchases whose box can travel on: unsplit, legitimate, not yet part of an incident.
fn candidates(events: &[Transaction]) -> Vec<usize> {
    (0..events.len())
        .filter(|&i| {
            let e = &events[i];
            e.label.as_deref() == Some("legit") && e.items().first().is_some_and(|it| !it.split)
        })
        .collect()
}

/// `from`'s box bought again by roster card `buyer` at `ts`, at the same place.
fn sold_again(
    from: &Transaction,
    id: String,
    ts: i64,
    buyer: (&str, u64),
    label: &str,
) -> Transaction {
    let mut e = from.clone();
    e.event_id = EventId::new(id);
    e.ts = EventTime(ts);
    e.card_id = CardId::new(buyer.0);
    e.account_id = Some(format!("a{:09}", buyer.1).into());
    e.label = Some(label.into());
    e
}

/// Moves a purchase to `merchant`.
fn move_to(e: &mut Transaction, merchant: &places::Merchant) {
    e.merchant_id = merchant.id.as_str().into();
    e.terminal_id = Some(format!("{}-T1", merchant.id).into());
    e.region = Some(merchant.region.into());
    e.geo = e.geo.map(|mut g| {
        g.lat = (merchant.lat * 1e4).round() / 1e4;
        g.lon = (merchant.lon * 1e4).round() / 1e4;
        g
    });
}

/// Another card living in `city` (the next one after a random start), if any.
fn local_buyer(rng: &mut ChaCha8Rng, roster: &Roster<'_>, city: usize, not: &str) -> Option<u64> {
    let n = roster.card_ids.len();
    let start = rng.random_range(0..n);
    (0..n)
        .map(|d| (start + d) % n)
        .find(|&c| roster.home_cities[c] == city && roster.card_ids[c] != not)
        .map(|c| c as u64)
}

/// Resold boxes (when `fraud`) and legitimate returns followed by a re-sale. Returns the new
/// events and, for resales, how many boxes were resold; relabels each resold box's first
/// purchase `resold_drug`.
pub fn incidents_into(
    events: &mut Vec<Transaction>,
    roster: &Roster<'_>,
    seed: u64,
    count: u64,
    fraud: bool,
) -> u64 {
    let pool = candidates(events);
    if pool.is_empty() || roster.card_ids.len() < 2 {
        return 0;
    }
    let mut added = Vec::new();
    let mut resold = 0;
    let mut used = std::collections::HashSet::new();
    for k in 0..count {
        let mut rng = incident_rng(seed, if fraud { 0x5e11 } else { 0x4e70 }, k);
        let i = pool[rng.random_range(0..pool.len())];
        if !used.insert(i) {
            continue;
        }
        let first = events[i].clone();
        let owner = first.card_id.as_str();
        let Some(home) = roster.card_ids.iter().position(|c| c == owner) else {
            continue;
        };
        // A buyer from the same city: nobody travels impossibly for the box.
        let Some(buyer) = local_buyer(&mut rng, roster, roster.home_cities[home], owner) else {
            continue;
        };
        let buyer = (roster.card_ids[buyer as usize].as_str(), buyer);
        if fraud {
            let shop = places::merchant(
                roster.home_cities[home],
                MerchantKind::Pharmacy,
                rng.random_range(0..60),
            );
            let ts = first.ts.0 + rng.random_range(2 * DAY..20 * DAY);
            let mut again = sold_again(&first, format!("rs{k:06}"), ts, buyer, RESOLD);
            move_to(&mut again, &shop);
            added.push(again);
            events[i].label = Some(RESOLD.into());
            resold += 1;
        } else {
            let mut refund = first.clone();
            refund.event_id = EventId::new(format!("rf{k:06}"));
            refund.ts = EventTime(first.ts.0 + rng.random_range(DAY..3 * DAY));
            refund.outcome = Outcome::Refunded;
            refund.amount = AmountMinor(first.amount.0);
            let ts = refund.ts.0 + rng.random_range(2 * HOUR..5 * DAY);
            added.push(sold_again(&first, format!("rr{k:06}"), ts, buyer, "legit"));
            added.push(refund);
        }
    }
    events.append(&mut added);
    resold
}
