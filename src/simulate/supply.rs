//! Drug supply per person (DESIGN §12, `early_refill`): what keeps the simulated population's
//! own purchases honest, and the early refills it hides.
//!
//! | label | what happens | meant for |
//! |---|---|---|
//! | (legit) every purchase | a person does not buy a drug again while more than three days of its last supply are left: [`reconcile`] gives such a purchase another drug of the catalogue, or, when every one is still supplied, an item without days of supply | — |
//! | (legit) refill inside the tolerance | the same drug again with up to three days left | the near miss |
//! | (legit) stockpiling | one purchase in 200 keeps its drug whatever is left (a trip ahead, a lost box) | the messy legitimate person: false alerts measured, not hidden |
//! | `refill_elsewhere` | a person buys a drug they bought 1 day to 5 days before its supply runs out again at another pharmacy of their city, on the e-voucher (超量开药: switching institutions) | `early_refill` |
//!
//! Byte-identical per seed: [`reconcile`] depends only on the events, incidents draw from their
//! own ChaCha8 stream per incident number.

use std::collections::HashMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swipeguard_detectors::{CertType, EventId, EventTime, Outcome, Transaction};

use super::boxes::{fnv64, CATALOGUE};
use super::places;
use super::population::DAY;
use super::terminals::Roster;
use swipeguard_detectors::MerchantKind;

/// The label of an early refill at another institution.
pub const REFILL_ELSEWHERE: &str = "refill_elsewhere";

/// What a legitimate person leaves of a supply before buying the drug again (`early_refill`'s
/// default tolerance for a pharmacy visit).
const TOLERANCE: i64 = 3 * DAY;

/// Legitimate purchases (approved, with a supplied first item) in (person, time, id) order.
fn purchases(events: &[Transaction]) -> Vec<usize> {
    let mut out: Vec<usize> = (0..events.len())
        .filter(|&i| {
            let e = &events[i];
            e.label.as_deref() == Some("legit")
                && e.outcome == Outcome::Approved
                && e.account_id.is_some()
                && e.items().first().is_some_and(|it| it.days_supply.is_some())
        })
        .collect();
    out.sort_by(|&a, &b| {
        let (a, b) = (&events[a], &events[b]);
        (&a.account_id, a.ts, &a.event_id).cmp(&(&b.account_id, b.ts, &b.event_id))
    });
    out
}

/// Gives every legitimate purchase a drug its buyer has no more than three days of supply of.
pub fn reconcile(events: &mut [Transaction]) {
    let order = purchases(events);
    let mut person: Option<String> = None;
    let mut ends: HashMap<&'static str, i64> = HashMap::new();
    for i in order {
        let e = &mut events[i];
        let who = e.account_id.as_deref().unwrap_or("").to_string();
        if person.as_deref() != Some(who.as_str()) {
            person = Some(who);
            ends.clear();
        }
        let ts = e.ts.0;
        let h = fnv64(e.event_id.as_str());
        let Some(settlement) = e.settlement.as_mut() else {
            continue;
        };
        let s = Arc::make_mut(settlement);
        let Some(item) = s.items.first_mut() else {
            continue;
        };
        let free = |g: &str, ends: &HashMap<&'static str, i64>| {
            ends.get(g).is_none_or(|&end| end <= ts + TOLERANCE)
        };
        let current = CATALOGUE
            .iter()
            .find(|(code, _, _)| *code == item.code.as_str());
        let stockpiles = h % 200 == 3;
        let chosen = match current {
            Some(c) if stockpiles || free(c.1, &ends) => Some(*c),
            _ => (0..CATALOGUE.len())
                .map(|k| CATALOGUE[(h as usize + k) % CATALOGUE.len()])
                .find(|c| free(c.1, &ends)),
        };
        match chosen {
            Some((code, group, days)) => {
                let days = if item.split { days / 2 } else { days };
                item.code = code.into();
                item.group = Some(group.into());
                item.days_supply = Some(days);
                let end = ends.entry(group).or_insert(ts);
                *end = (*end).max(ts) + i64::from(days) * DAY;
            }
            // Every drug still supplied: a dressing, a device — nothing with days of supply.
            None => {
                item.code = "XMEDDEV001".into();
                item.group = Some("medical_device".into());
                item.days_supply = None;
            }
        }
    }
}

/// Purchases whose drug lasts long enough for a refill days early to stand out.
fn candidates(events: &[Transaction]) -> Vec<usize> {
    (0..events.len())
        .filter(|&i| {
            let e = &events[i];
            e.label.as_deref() == Some("legit")
                && e.items()
                    .first()
                    .is_some_and(|it| !it.split && it.days_supply.is_some_and(|d| d >= 28))
        })
        .collect()
}

/// Early refills at another pharmacy of the buyer's city; returns the new events' count.
pub fn incidents_into(
    events: &mut Vec<Transaction>,
    roster: &Roster<'_>,
    seed: u64,
    count: u64,
) -> u64 {
    let pool = candidates(events);
    if pool.is_empty() {
        return 0;
    }
    let mut added = Vec::new();
    let mut used = std::collections::HashSet::new();
    for k in 0..count {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ 0xea71 ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let i = pool[rng.random_range(0..pool.len())];
        if !used.insert(i) {
            continue;
        }
        let first = &events[i];
        let Some(home) = roster
            .card_ids
            .iter()
            .position(|c| c == first.card_id.as_str())
        else {
            continue;
        };
        let days = first
            .items()
            .first()
            .and_then(|it| it.days_supply)
            .unwrap_or(28);
        let mut again = first.clone();
        again.event_id = EventId::new(format!("er{k:06}"));
        // Between a day after the purchase and five days before its supply runs out.
        again.ts = EventTime(first.ts.0 + rng.random_range(DAY..(i64::from(days) - 5) * DAY));
        let shop = places::merchant(
            roster.home_cities[home],
            MerchantKind::Pharmacy,
            rng.random_range(0..60),
        );
        again.merchant_id = shop.id.as_str().into();
        again.terminal_id = Some(format!("{}-T1", shop.id).into());
        again.region = Some(shop.region.into());
        // The e-voucher on a phone: no PIN, no place to travel impossibly from.
        again.geo = None;
        again.label = Some(REFILL_ELSEWHERE.into());
        if let Some(s) = again.settlement.as_mut() {
            let s = Arc::make_mut(s);
            s.cert_type = Some(CertType::EVoucher);
            for item in &mut s.items {
                item.trace_codes = vec![format!("86{:018}", k).into()];
            }
        }
        added.push(again);
    }
    let n = added.len() as u64;
    events.append(&mut added);
    n
}
