//! Fraud scenarios injected into a card's ordinary life, each labelled with its name so that a
//! replay can measure what the detectors caught. Each one is what a detector is meant to find:
//!
//! | label | what happens | meant for |
//! |---|---|---|
//! | `pin_guessing` | a stolen card: three wrong PINs within minutes, then the card locks | `failed_pin` |
//! | `pin_guess_success` | two wrong PINs, then a guess that works and a large purchase | `pin_success_after_failures` |
//! | `rapid_fire` | a cloned card run through a terminal 5 or 6 times within a minute | `rapid_fire` |
//! | `cloned_card` | a clone swiped in a city 1 000+ km away within the hour | `impossible_travel` |
//! | `cash_out` | a pharmacy purchase of thousands of yuan, far above the card's habit | `off_pattern` |
//! | `non_medical` | hundreds of yuan at a supermarket on a card that only buys medicine | `off_pattern` |
//! | `lent_card` | someone in another city pays a hospital admission deposit with it, at night | `off_pattern` |
//! | `cash_out_split` | the subtler cash-out: 3–5 pharmacy purchases of 4–8 times the card's usual over two or three days, at its usual pharmacy and hours | `off_pattern` |
//! | `lent_card_local` | the subtler lent card: a relative in another city buys at pharmacies (the holder's usual kind) by day, 2–3 times the usual amount | `off_pattern` |
//! | `terminal_pin_probe` | one terminal, one wrong PIN on each of many cards (see `terminals`) | `terminal_pin_probe` |
//! | `resold_drug` | a box bought on one person's insurance is settled again elsewhere by another (see `boxes`) | `trace_code_resettled` |
//! | `refill_elsewhere` | a drug bought again at another pharmacy days before the last supply ran out (see `supply`) | `early_refill` |
//! | `pharmacy_during_stay` | a pharmacy purchase in the middle of a hospital stay (see `stays`) | `settle_during_stay` |
//! | `locked_card_used` | a thief tries PINs on a stolen card over a day or two (never three within `failed_pin`'s ten minutes), the card locks, and a pharmacy whose terminal ignores the lock approves a large purchase within hours | `card_lock` |
//!
//! Their legitimate near misses live in the population: a holder's own wrong PIN now and then,
//! always followed by an approval, which resets `card_lock`'s count.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use swipeguard_detectors::{Channel, DeclineReason, MerchantKind, Outcome};

use super::places;
use super::population::{Card, CST, DAY, HOUR, MINUTE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    PinGuessing,
    PinGuessSuccess,
    RapidFire,
    ClonedCard,
    CashOut,
    NonMedical,
    LentCard,
    CashOutSplit,
    LentCardLocal,
    /// Many cards at one terminal: drawn per run, not per card (`super::terminals`).
    TerminalPinProbe,
    LockedCardUsed,
    /// A box settled again elsewhere: drawn per run (`super::boxes`).
    ResoldDrug,
    /// A drug bought again elsewhere long before its supply ran out: per run (`super::supply`).
    RefillElsewhere,
    /// A pharmacy purchase during a hospital stay: per run (`super::stays`).
    PharmacyDuringStay,
}

impl Scenario {
    pub const ALL: [Scenario; 14] = [
        Scenario::PinGuessing,
        Scenario::PinGuessSuccess,
        Scenario::RapidFire,
        Scenario::ClonedCard,
        Scenario::CashOut,
        Scenario::NonMedical,
        Scenario::LentCard,
        Scenario::CashOutSplit,
        Scenario::LentCardLocal,
        Scenario::TerminalPinProbe,
        Scenario::LockedCardUsed,
        Scenario::ResoldDrug,
        Scenario::RefillElsewhere,
        Scenario::PharmacyDuringStay,
    ];

    /// Whether the scenario happens to one card at a time (else it is drawn per run).
    pub fn per_card(self) -> bool {
        !matches!(
            self,
            Scenario::TerminalPinProbe
                | Scenario::ResoldDrug
                | Scenario::RefillElsewhere
                | Scenario::PharmacyDuringStay
        )
    }

    /// The label its events carry.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::PinGuessing => "pin_guessing",
            Scenario::PinGuessSuccess => "pin_guess_success",
            Scenario::RapidFire => "rapid_fire",
            Scenario::ClonedCard => "cloned_card",
            Scenario::CashOut => "cash_out",
            Scenario::NonMedical => "non_medical",
            Scenario::LentCard => "lent_card",
            Scenario::CashOutSplit => "cash_out_split",
            Scenario::LentCardLocal => "lent_card_local",
            Scenario::TerminalPinProbe => super::terminals::PROBE,
            Scenario::LockedCardUsed => "locked_card_used",
            Scenario::ResoldDrug => super::boxes::RESOLD,
            Scenario::RefillElsewhere => super::supply::REFILL_ELSEWHERE,
            Scenario::PharmacyDuringStay => super::stays::DURING_STAY,
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.label() == s)
    }

    /// The detector meant to find it (its registered name).
    pub fn detector(self) -> &'static str {
        match self {
            Scenario::PinGuessing => "failed_pin",
            Scenario::PinGuessSuccess => "pin_success_after_failures",
            Scenario::RapidFire => "rapid_fire",
            Scenario::ClonedCard => "impossible_travel",
            Scenario::CashOut
            | Scenario::NonMedical
            | Scenario::LentCard
            | Scenario::CashOutSplit
            | Scenario::LentCardLocal => "off_pattern",
            Scenario::TerminalPinProbe => "terminal_pin_probe",
            Scenario::LockedCardUsed => "card_lock",
            Scenario::ResoldDrug => "trace_code_resettled",
            Scenario::RefillElsewhere => "early_refill",
            Scenario::PharmacyDuringStay => "settle_during_stay",
        }
    }

    /// Whether the victim needs a history (the profile `off_pattern` judges by).
    pub fn needs_history(self) -> bool {
        self.detector() == "off_pattern"
    }
}

/// A time after the card's `n`-th placed swipe (the history `off_pattern` needs), adding
/// ordinary visits first if the card has not made that many.
fn after_history(card: &mut Card, n: usize, start: i64, rng: &mut ChaCha8Rng) -> i64 {
    let mut day = start;
    while card.placed_swipes().len() <= n {
        day += DAY;
        card.visit(day, rng);
    }
    let placed = card.placed_swipes();
    let anchor = placed.get(n).map_or(start, |&i| card.events[i].ts.0);
    anchor + rng.random_range(2 * HOUR..2 * DAY)
}

/// A local time of day (hours after local midnight) on the day of `ts`.
fn at_local_hour(ts: i64, hour: f64) -> i64 {
    let midnight = (ts + CST).div_euclid(DAY) * DAY - CST;
    midnight + (hour * HOUR as f64) as i64
}

/// Injects `scenario` into `card` somewhere in `[start, start + days)`.
pub fn inject(card: &mut Card, scenario: Scenario, start: i64, days: u32, rng: &mut ChaCha8Rng) {
    let end = start + i64::from(days) * DAY;
    let label = scenario.label();
    let home = card.home_city;
    let random_time =
        |rng: &mut ChaCha8Rng| start + rng.random_range(DAY..(end - start).max(DAY + 1));
    match scenario {
        // Drawn per run (`super::terminals`, `super::boxes`), never injected into one card.
        Scenario::TerminalPinProbe
        | Scenario::ResoldDrug
        | Scenario::RefillElsewhere
        | Scenario::PharmacyDuringStay => {}
        Scenario::CashOutSplit => {
            let t = after_history(card, 12, start, rng);
            let m = card.usual[MerchantKind::Pharmacy.index()][0].clone();
            let usual = 5_800.0 * card.amount_factor;
            let mut day = t;
            for _ in 0..rng.random_range(3..=5) {
                let hour = (card.peak_hour + rng.random_range(-1.5..1.5)).clamp(8.0, 20.0);
                let amount = (usual * rng.random_range(4.0..8.0)).round() as u64;
                card.swipe(
                    at_local_hour(day, hour),
                    &m,
                    amount,
                    Outcome::Approved,
                    None,
                    Channel::Chip,
                    label,
                    rng,
                );
                day += rng.random_range(6 * HOUR..20 * HOUR);
            }
        }
        Scenario::LentCardLocal => {
            // A relative elsewhere: the holder stays at home meanwhile, so no clone is implied.
            let t = after_history(card, 12, start, rng);
            card.events
                .retain(|e| e.ts.0 < t - DAY || e.ts.0 > t + 3 * DAY);
            let city = places::far_city(rng, home, 500.0);
            let usual = 5_800.0 * card.amount_factor;
            let mut day = t;
            for _ in 0..rng.random_range(2..=3) {
                let m = places::merchant(city, MerchantKind::Pharmacy, rng.random_range(0..60));
                let amount = (usual * rng.random_range(2.0..3.0)).round() as u64;
                card.swipe(
                    at_local_hour(day, rng.random_range(9.0..19.0)),
                    &m,
                    amount,
                    Outcome::Approved,
                    None,
                    Channel::Chip,
                    label,
                    rng,
                );
                day += rng.random_range(12 * HOUR..30 * HOUR);
            }
        }
        Scenario::PinGuessing | Scenario::PinGuessSuccess => {
            let m = places::merchant(home, MerchantKind::Pharmacy, rng.random_range(0..60));
            let mut t = at_local_hour(random_time(rng), rng.random_range(9.0..20.0));
            let guesses = if scenario == Scenario::PinGuessing {
                3
            } else {
                2
            };
            for _ in 0..guesses {
                card.swipe(
                    t,
                    &m,
                    0,
                    Outcome::Declined,
                    Some(DeclineReason::BadPin),
                    Channel::Chip,
                    label,
                    rng,
                );
                t += rng.random_range(15_000..90_000);
            }
            if scenario == Scenario::PinGuessSuccess {
                let amount = rng.random_range(30_000..150_000);
                card.swipe(
                    t,
                    &m,
                    amount,
                    Outcome::Approved,
                    None,
                    Channel::Chip,
                    label,
                    rng,
                );
            }
        }
        Scenario::LockedCardUsed => {
            // The holder has lost the card: nothing of theirs from the first guess on.
            let first = at_local_hour(random_time(rng), rng.random_range(9.0..12.0));
            card.events.retain(|e| e.ts.0 < first);
            let m = places::merchant(home, MerchantKind::Pharmacy, rng.random_range(0..60));
            let mut t = first;
            for i in 0..3 {
                if i > 0 {
                    t += rng.random_range(20 * MINUTE..10 * HOUR);
                }
                card.swipe(
                    t,
                    &m,
                    0,
                    Outcome::Declined,
                    Some(DeclineReason::BadPin),
                    Channel::Chip,
                    label,
                    rng,
                );
            }
            let elsewhere = places::merchant(home, MerchantKind::Pharmacy, rng.random_range(0..60));
            let amount = rng.random_range(30_000..150_000);
            card.swipe(
                t + rng.random_range(HOUR..12 * HOUR),
                &elsewhere,
                amount,
                Outcome::Approved,
                None,
                Channel::Chip,
                label,
                rng,
            );
        }
        Scenario::RapidFire => {
            let kind = if rng.random_bool(0.5) {
                MerchantKind::Clinic
            } else {
                MerchantKind::Pharmacy
            };
            let first = places::merchant(home, kind, rng.random_range(0..30));
            let second = places::merchant(home, kind, rng.random_range(0..30));
            let mut t = at_local_hour(random_time(rng), rng.random_range(9.0..21.0));
            let n = if rng.random_bool(0.8) { 5 } else { 6 };
            for i in 0..n {
                let m = if i < 3 { &first } else { &second };
                let amount = rng.random_range(5_000..20_000);
                card.swipe(
                    t,
                    m,
                    amount,
                    Outcome::Approved,
                    None,
                    Channel::Swipe,
                    label,
                    rng,
                );
                t += rng.random_range(3_000..12_000);
            }
        }
        Scenario::ClonedCard => {
            // Right after one of the card's own swipes, the clone is swiped far away.
            after_history(card, 0, start, rng);
            let placed = card.placed_swipes();
            let Some(&anchor) = placed.get(rng.random_range(0..placed.len().max(1))) else {
                return;
            };
            let t0 = card.events[anchor].ts.0;
            let city = places::far_city(rng, home, 1_000.0);
            let km = places::distance_km(home, city);
            // At least 1 000 km/h between the two swipes.
            let dt = rng.random_range(
                5 * MINUTE..((km / 1_000.0 * HOUR as f64) as i64).max(5 * MINUTE + 1),
            );
            let m = places::merchant(city, MerchantKind::Pharmacy, rng.random_range(0..60));
            let amount = rng.random_range(20_000..200_000);
            card.swipe(
                t0 + dt,
                &m,
                amount,
                Outcome::Approved,
                None,
                Channel::Swipe,
                label,
                rng,
            );
        }
        Scenario::CashOut => {
            let t = after_history(card, 12, start, rng);
            let m = card.usual[MerchantKind::Pharmacy.index()][0].clone();
            let hour = (card.peak_hour + rng.random_range(-1.0..1.0)).clamp(8.0, 20.0);
            let amount = rng.random_range(200_000..800_000);
            card.swipe(
                at_local_hour(t, hour),
                &m,
                amount,
                Outcome::Approved,
                None,
                Channel::Chip,
                label,
                rng,
            );
        }
        Scenario::NonMedical => {
            let t = after_history(card, 12, start, rng);
            let m = card.usual[MerchantKind::Other.index()][0].clone();
            let hour = rng.random_range(10.0..21.0);
            let amount = rng.random_range(60_000..250_000);
            card.swipe(
                at_local_hour(t, hour),
                &m,
                amount,
                Outcome::Approved,
                None,
                Channel::Contactless,
                label,
                rng,
            );
        }
        Scenario::LentCard => {
            // The borrower is far away; the holder is quiet for the two days around it.
            let t = after_history(card, 12, start, rng);
            card.events
                .retain(|e| e.ts.0 < t - DAY || e.ts.0 > t + 2 * DAY);
            let city = places::far_city(rng, home, 500.0);
            let m = places::merchant(city, MerchantKind::Hospital, rng.random_range(0..12));
            let hour = rng.random_range(19.5..23.5);
            // An admission deposit (住院押金): thousands of yuan.
            let amount = rng.random_range(200_000..600_000);
            card.swipe(
                at_local_hour(t, hour),
                &m,
                amount,
                Outcome::Approved,
                None,
                Channel::Chip,
                label,
                rng,
            );
        }
    }
}
