//! `swipeguard simulate`: labelled synthetic 医保 swipes for tuning and for proving detectors.
//!
//! Ordinary patients ([`population`]) plus, on a share of cards, one injected fraud scenario
//! ([`scenarios`]), plus incidents that involve many cards at one terminal and their near misses
//! ([`terminals`]). Every card draws from its own ChaCha8 stream seeded from the run's seed and
//! the card's index, every incident from one seeded from the seed and its number, and the
//! output is sorted by (event time, event id): the same arguments give byte-identical output
//! on any machine.

pub mod boxes;
pub mod places;
pub mod population;
pub mod scenarios;
pub mod stays;
pub mod supply;
pub mod terminals;

use std::collections::BTreeMap;
use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::encode::encode_event;
use population::Card;
pub use scenarios::Scenario;

/// 2026-01-01T00:00:00+08:00.
pub const DEFAULT_START_MS: i64 = 1_767_196_800_000;

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub cards: u64,
    pub days: u32,
    pub seed: u64,
    /// Local midnight the simulation starts at (UTC milliseconds).
    pub start_ms: i64,
    /// Scenarios to inject; empty for an all-legitimate population.
    pub scenarios: Vec<Scenario>,
    /// Share of cards that suffer one scenario.
    pub fraud_share: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            cards: 1_000,
            days: 30,
            seed: 1,
            start_ms: DEFAULT_START_MS,
            scenarios: Scenario::ALL.to_vec(),
            fraud_share: 0.02,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimStats {
    pub cards: u64,
    pub events: u64,
    /// Victim cards and labelled events per scenario.
    pub scenarios: BTreeMap<&'static str, (u64, u64)>,
}

/// Generates the population and writes it as JSONL, sorted by event time.
pub fn simulate(opts: &SimOptions, out: &mut dyn Write) -> io::Result<SimStats> {
    let mut stats = SimStats {
        cards: opts.cards,
        ..SimStats::default()
    };
    let mut events = Vec::new();
    let per_card: Vec<Scenario> = opts
        .scenarios
        .iter()
        .copied()
        .filter(|s| s.per_card())
        .collect();
    let mut card_ids = Vec::with_capacity(opts.cards as usize);
    let mut home_cities = Vec::with_capacity(opts.cards as usize);
    for index in 0..opts.cards {
        let mut rng =
            ChaCha8Rng::seed_from_u64(opts.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let victim = !per_card.is_empty() && rng.random_bool(opts.fraud_share.clamp(0.0, 1.0));
        let scenario = victim.then(|| per_card[rng.random_range(0..per_card.len())]);
        let chronic = scenario.is_some_and(Scenario::needs_history) || rng.random_bool(0.1);
        let mut card = Card::with_mix(
            index,
            &mut rng,
            chronic,
            scenario == Some(Scenario::LentCard),
        );
        card.live(opts.start_ms, opts.days, &mut rng);
        if let Some(s) = scenario {
            scenarios::inject(&mut card, s, opts.start_ms, opts.days, &mut rng);
            let entry = stats.scenarios.entry(s.label()).or_default();
            entry.0 += 1;
            entry.1 += card
                .events
                .iter()
                .filter(|e| e.label.as_deref() == Some(s.label()))
                .count() as u64;
        }
        card_ids.push(std::mem::take(&mut card.card_id));
        home_cities.push(card.home_city);
        events.append(&mut card.events);
    }
    let roster = terminals::Roster {
        card_ids: &card_ids,
        home_cities: &home_cities,
    };
    // Boxes for the pharmacy purchases, then what happens to some of them afterwards.
    boxes::stock(&mut events);
    supply::reconcile(&mut events);
    if opts.scenarios.contains(&Scenario::ResoldDrug) {
        let count = boxes::incidents(opts.cards, opts.fraud_share);
        let before = events.len();
        let resold = boxes::incidents_into(&mut events, &roster, opts.seed, count, true);
        if resold > 0 {
            let entry = stats
                .scenarios
                .entry(Scenario::ResoldDrug.label())
                .or_default();
            entry.0 += resold;
            entry.1 += 2 * (events.len() - before) as u64;
        }
    }
    if !opts.scenarios.is_empty() {
        let count = boxes::incidents(opts.cards, opts.fraud_share);
        boxes::incidents_into(&mut events, &roster, opts.seed, count, false);
    }
    if opts.scenarios.contains(&Scenario::TerminalPinProbe) {
        let count = terminals::incidents(opts.cards, opts.fraud_share);
        let (mut probes, victims) =
            terminals::probes(&roster, opts.seed, opts.start_ms, opts.days, count);
        if !probes.is_empty() {
            let entry = stats
                .scenarios
                .entry(Scenario::TerminalPinProbe.label())
                .or_default();
            entry.0 += victims;
            entry.1 += probes.len() as u64;
        }
        events.append(&mut probes);
    }
    if !opts.scenarios.is_empty() {
        let count = 2 * terminals::incidents(opts.cards, opts.fraud_share);
        events.append(&mut terminals::busy_terminals(
            &roster,
            opts.seed,
            opts.start_ms,
            opts.days,
            count,
        ));
    }
    if opts.scenarios.contains(&Scenario::RefillElsewhere) {
        let count = boxes::incidents(opts.cards, opts.fraud_share);
        let n = supply::incidents_into(&mut events, &roster, opts.seed, count);
        if n > 0 {
            let entry = stats
                .scenarios
                .entry(Scenario::RefillElsewhere.label())
                .or_default();
            entry.0 += n;
            entry.1 += n;
        }
    }
    // Stays last: a legitimate one falls where its person does nothing at all.
    if opts.scenarios.contains(&Scenario::PharmacyDuringStay) {
        let count = boxes::incidents(opts.cards, opts.fraud_share);
        let n = stays::incidents_into(&mut events, &roster, opts.seed, count);
        if n > 0 {
            let entry = stats
                .scenarios
                .entry(Scenario::PharmacyDuringStay.label())
                .or_default();
            entry.0 += n;
            entry.1 += 2 * n;
        }
    }
    if !opts.scenarios.is_empty() {
        let count = 2 * boxes::incidents(opts.cards, opts.fraud_share);
        stays::legit_into(&mut events, &roster, opts.seed, count);
    }
    events.sort_by(|a, b| (a.ts, &a.event_id).cmp(&(b.ts, &b.event_id)));
    stats.events = events.len() as u64;
    let mut buf = Vec::with_capacity(1 << 20);
    for e in &events {
        encode_event(e, &mut buf);
        if buf.len() > (1 << 20) - 1024 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests;
