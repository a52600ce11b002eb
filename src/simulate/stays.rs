//! Hospital stays (DESIGN §12, `settle_during_stay`): admissions and discharges, drawn once
//! every other event exists so that a legitimate stay can fall where its person does nothing.
//!
//! | label | what happens | meant for |
//! |---|---|---|
//! | (legit) a stay | an admission to a hospital of the person's city hours after one of their events and a discharge hours before their next one, at least three days later: nothing is settled in between | — |
//! | (legit) a visit on discharge day | when the next event is at a hospital or clinic it becomes an `emergency` visit, hours after the discharge | the near miss |
//! | `pharmacy_during_stay` | a person buys at a pharmacy up to 4 days into a stay at a hospital of their city (admitted after their previous event, so this purchase is the stay's first), 1–5 days before its discharge (挂床: the bed kept while the patient is out); the admission and the purchase carry the label, the discharge is ordinary paperwork and stays `legit` | `settle_during_stay` |
//!
//! Admissions and discharges are not swipes: the card detectors never see them. Each incident
//! draws from its own ChaCha8 stream: byte-identical per seed.

use std::collections::HashMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swipeguard_detectors::{
    AmountMinor, CardId, EventId, EventTime, EventType, MerchantKind, Outcome, Settlement,
    Transaction, VisitType,
};

use super::places;
use super::population::{DAY, HOUR};
use super::terminals::Roster;

/// The label of a pharmacy purchase during a stay, and of that stay's admission.
pub const DURING_STAY: &str = "pharmacy_during_stay";

fn rng_for(seed: u64, salt: u64, k: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ salt ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// An admission or discharge of `card`'s person at `hospital`.
fn stay_event(
    id: String,
    ts: i64,
    (card, account): (&str, &str),
    hospital: &places::Merchant,
    event_type: EventType,
    visit: &str,
    label: &str,
) -> Transaction {
    Transaction {
        event_id: EventId::new(id),
        ts: EventTime(ts),
        card_id: CardId::new(card),
        account_id: Some(account.into()),
        amount: AmountMinor(0),
        currency: Some("CNY".into()),
        merchant_id: hospital.id.as_str().into(),
        merchant_kind: Some(MerchantKind::Hospital),
        mcc: Some(hospital.mcc.into()),
        terminal_id: None,
        region: None,
        geo: None,
        channel: None,
        outcome: Outcome::Approved,
        decline_reason: None,
        settlement: Some(Arc::new(Settlement {
            event_type,
            visit_type: Some(VisitType::Inpatient),
            visit_id: Some(visit.into()),
            ..Settlement::default()
        })),
        label: Some(label.into()),
        meta: Default::default(),
    }
}

/// Per person, (time, index) of each of their events.
fn times_by_account(events: &[Transaction]) -> HashMap<String, Vec<(i64, usize)>> {
    let mut by_account: HashMap<String, Vec<(i64, usize)>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(a) = e.account_id.as_deref() {
            by_account
                .entry(a.to_string())
                .or_default()
                .push((e.ts.0, i));
        }
    }
    by_account
}

/// Per person, the (admission, discharge) times of the stays already in `events`.
fn stays_by_account(events: &[Transaction]) -> HashMap<String, Vec<(i64, i64)>> {
    let mut admitted: HashMap<(String, String), i64> = HashMap::new();
    let mut out: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for e in events {
        let (Some(account), Some(visit)) = (e.account_id.as_deref(), e.visit_id()) else {
            continue;
        };
        let key = (account.to_string(), visit.to_string());
        match e.event_type() {
            EventType::Admission => {
                admitted.insert(key, e.ts.0);
            }
            EventType::Discharge => {
                if let Some(a) = admitted.remove(&key) {
                    out.entry(key.0).or_default().push((a, e.ts.0));
                }
            }
            EventType::Settlement => {}
        }
    }
    out
}

fn account_of(index: usize) -> String {
    format!("a{index:09}")
}

/// Pharmacy purchases during a stay; returns how many stays were made.
pub fn incidents_into(
    events: &mut Vec<Transaction>,
    roster: &Roster<'_>,
    seed: u64,
    count: u64,
) -> u64 {
    let pool: Vec<usize> = (0..events.len())
        .filter(|&i| {
            let e = &events[i];
            e.label.as_deref() == Some("legit")
                && e.outcome == Outcome::Approved
                && e.visit_type() == Some(VisitType::Pharmacy)
        })
        .collect();
    if pool.is_empty() {
        return 0;
    }
    let times = times_by_account(events);
    let mut added = Vec::new();
    let mut used = std::collections::HashSet::new();
    for k in 0..count {
        let mut rng = rng_for(seed, 0x57a1, k);
        let i = pool[rng.random_range(0..pool.len())];
        let card = events[i].card_id.as_str().to_string();
        let Some(home) = roster.card_ids.iter().position(|c| *c == card) else {
            continue;
        };
        if !used.insert(home) {
            continue;
        }
        let hospital = places::merchant(
            roster.home_cities[home],
            MerchantKind::Hospital,
            rng.random_range(0..12),
        );
        let ts = events[i].ts.0;
        let account = account_of(home);
        // The person's last event before this purchase: the admission comes after it.
        let previous = times
            .get(&account)
            .and_then(|t| t.iter().map(|&(at, _)| at).filter(|&at| at < ts).max());
        let room = previous.map_or(4 * DAY, |p| (ts - p).min(4 * DAY));
        if room <= HOUR + 1 {
            continue;
        }
        let visit = format!("fs{k:06}");
        added.push(stay_event(
            format!("fa{k:06}"),
            ts - rng.random_range(HOUR..room),
            (&card, &account),
            &hospital,
            EventType::Admission,
            &visit,
            DURING_STAY,
        ));
        added.push(stay_event(
            format!("fd{k:06}"),
            ts + rng.random_range(DAY..5 * DAY),
            (&card, &account),
            &hospital,
            EventType::Discharge,
            &visit,
            "legit",
        ));
        events[i].label = Some(DURING_STAY.into());
    }
    let n = added.len() as u64 / 2;
    events.append(&mut added);
    n
}

/// Legitimate stays in the quiet spells of `count` people's lives.
pub fn legit_into(events: &mut Vec<Transaction>, roster: &Roster<'_>, seed: u64, count: u64) {
    let n = roster.card_ids.len();
    if n == 0 {
        return;
    }
    let mut by_account = times_by_account(events);
    let mut spans = stays_by_account(events);
    let mut added = Vec::new();
    for k in 0..count {
        let mut rng = rng_for(seed, 0x1e91, k);
        let home = rng.random_range(0..n);
        let account = account_of(home);
        let Some(mut times) = by_account.get(&account).cloned() else {
            continue;
        };
        times.sort_unstable();
        let start = rng.random_range(0..times.len());
        let open = spans.get(&account).cloned().unwrap_or_default();
        // A quiet spell of three days or more, not inside a stay the person already has.
        let gap = (0..times.len().saturating_sub(1))
            .map(|d| (start + d) % (times.len() - 1))
            .find(|&j| {
                let (from, to) = (times[j].0, times[j + 1].0);
                to - from >= 3 * DAY && open.iter().all(|&(a, d)| d <= from || a >= to)
            });
        let Some(j) = gap else {
            continue;
        };
        let (before, after) = (times[j].0, times[j + 1]);
        let hospital = places::merchant(
            roster.home_cities[home],
            MerchantKind::Hospital,
            rng.random_range(0..12),
        );
        let card = roster.card_ids[home].as_str();
        let visit = format!("st{k:06}");
        let admitted = before + rng.random_range(2 * HOUR..12 * HOUR);
        let discharged = after.0 - rng.random_range(HOUR..6 * HOUR);
        spans
            .entry(account.clone())
            .or_default()
            .push((admitted, discharged));
        for (id, ts, t) in [
            (format!("ad{k:06}"), admitted, EventType::Admission),
            (format!("dc{k:06}"), discharged, EventType::Discharge),
        ] {
            let e = stay_event(id, ts, (card, &account), &hospital, t, &visit, "legit");
            by_account
                .entry(account.clone())
                .or_default()
                .push((ts, usize::MAX));
            added.push(e);
        }
        let Some(next) = events.get_mut(after.1) else {
            continue;
        };
        if matches!(
            next.merchant_kind,
            Some(MerchantKind::Hospital | MerchantKind::Clinic)
        ) && next.settlement.is_none()
            && next.outcome == Outcome::Approved
        {
            next.settlement = Some(Arc::new(Settlement {
                visit_type: Some(VisitType::Emergency),
                ..Settlement::default()
            }));
        }
    }
    events.append(&mut added);
}
