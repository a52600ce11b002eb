//! Ordinary insured patients: each card has a home city and district, a few usual merchants,
//! a visit rate, a mix of pharmacy, clinic and hospital visits, personal amounts and hours,
//! occasional declines and PIN typos, rare online orders and trips to another city — and the
//! mess real insured people make: chronic patients' monthly refills several times their usual
//! purchase, an occasional large hospital bill, a move to another city, a new pharmacy, family
//! members buying on one account at their own amounts and hours, a week of seasonal illness.
//!
//! An ordinary card never does what `failed_pin`, `pin_success_after_failures` or `rapid_fire`
//! look for: at most one wrong PIN per visit, typos at least an hour apart, and the swipes of a
//! hospital visit spread over an hour or two.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use swipeguard_detectors::{
    AmountMinor, CardId, Channel, DeclineReason, EventId, EventTime, GeoPoint, MerchantKind,
    Outcome, Transaction,
};

use super::places::{self, Merchant, CITIES};

pub const HOUR: i64 = 3_600_000;
pub const MINUTE: i64 = 60_000;
pub const DAY: i64 = 24 * HOUR;
/// Local time is China Standard Time.
pub const CST: i64 = 8 * HOUR;

/// One simulated card and everything it did.
pub struct Card {
    pub index: u64,
    pub card_id: String,
    pub home_city: usize,
    /// Usual merchants by kind index (hospital, clinic, pharmacy, other).
    pub usual: [Vec<Merchant>; 4],
    pub visits_per_day: f64,
    pub mix: [f64; 3],
    pub amount_factor: f64,
    pub peak_hour: f64,
    pub events: Vec<Transaction>,
    /// A family member buying on this account: their own amount factor and hour, and how often
    /// a visit is theirs.
    family: Option<(f64, f64, f64)>,
    last_typo: i64,
    /// Next event number: ids stay unique even after events are removed.
    next_event: u32,
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    LogNormal::new(median.ln(), sigma).map_or(median, |d| d.sample(rng))
}

impl Card {
    /// A new ordinary card. `chronic` cards visit every two or three days (the ones with enough
    /// history for `off_pattern`, and the likeliest targets of cash-out).
    pub fn new(index: u64, rng: &mut ChaCha8Rng, chronic: bool) -> Card {
        Card::with_mix(index, rng, chronic, false)
    }

    /// As [`Card::new`]; `pharmacy_habit` makes a card that mostly buys at pharmacies (an
    /// elderly chronic patient: the typical card lent to a relative).
    pub fn with_mix(index: u64, rng: &mut ChaCha8Rng, chronic: bool, pharmacy_habit: bool) -> Card {
        let home_city = places::pick_city(rng);
        let district = rng.random_range(0..CITIES[home_city].districts.len());
        let usual = [
            MerchantKind::Hospital,
            MerchantKind::Clinic,
            MerchantKind::Pharmacy,
            MerchantKind::Other,
        ]
        .map(|k| {
            let count = places::merchants_of(k);
            // Prefer merchants in the home district: start from one and step by the district count.
            let start = district + CITIES[home_city].districts.len() * rng.random_range(0..count);
            let n = if k == MerchantKind::Pharmacy { 2 } else { 1 };
            (0..n)
                .map(|i| {
                    places::merchant(home_city, k, start + i * CITIES[home_city].districts.len())
                })
                .collect()
        });
        let visits_per_day = if chronic {
            rng.random_range(0.35..0.5)
        } else {
            lognormal(rng, 0.1, 0.7).min(0.6)
        };
        let p = if pharmacy_habit {
            rng.random_range(0.85..0.95)
        } else {
            rng.random_range(0.45..0.8)
        };
        let c = (1.0 - p) * rng.random_range(0.3..0.9);
        Card {
            index,
            card_id: format!("c{:016x}", rng.random::<u64>()),
            home_city,
            usual,
            visits_per_day,
            mix: [1.0 - p - c, c, p],
            amount_factor: lognormal(rng, 1.0, 0.3),
            peak_hour: Normal::new(11.5f64, 2.0)
                .map_or(11.0, |d| d.sample(rng))
                .clamp(8.0, 18.0),
            events: Vec::new(),
            family: None,
            last_typo: i64::MIN / 2,
            next_event: 0,
        }
    }

    /// Appends one swipe; returns its index in `events`.
    #[allow(clippy::too_many_arguments)]
    pub fn swipe(
        &mut self,
        ts: i64,
        m: &Merchant,
        amount_fen: u64,
        outcome: Outcome,
        decline: Option<DeclineReason>,
        channel: Channel,
        label: &str,
        rng: &mut ChaCha8Rng,
    ) -> usize {
        let k = self.events.len();
        let n = self.next_event;
        self.next_event += 1;
        let online = channel == Channel::Online;
        self.events.push(Transaction {
            event_id: EventId::new(format!("e{:07}-{n:04}", self.index)),
            ts: EventTime(ts),
            card_id: CardId::new(self.card_id.as_str()),
            account_id: Some(format!("a{:09}", self.index).into()),
            amount: AmountMinor(amount_fen),
            currency: Some("CNY".into()),
            merchant_id: m.id.as_str().into(),
            merchant_kind: Some(m.kind),
            mcc: Some(m.mcc.into()),
            terminal_id: Some(format!("{}-T{}", m.id, rng.random_range(1..=4)).into()),
            region: (!online).then(|| m.region.into()),
            geo: (!online).then_some(GeoPoint {
                lat: (m.lat * 1e4).round() / 1e4,
                lon: (m.lon * 1e4).round() / 1e4,
            }),
            channel: Some(channel),
            outcome,
            decline_reason: decline,
            settlement: None,
            label: Some(label.into()),
            meta: Default::default(),
        });
        k
    }

    fn channel(rng: &mut ChaCha8Rng) -> Channel {
        match rng.random_range(0..100) {
            0..60 => Channel::Chip,
            60..80 => Channel::Contactless,
            80..90 => Channel::Qr,
            _ => Channel::Swipe,
        }
    }

    fn amount(&self, kind: MerchantKind, rng: &mut ChaCha8Rng) -> u64 {
        let (median, sigma) = match kind {
            MerchantKind::Hospital => (380.0, 0.8),
            MerchantKind::Clinic => (110.0, 0.5),
            MerchantKind::Pharmacy => (58.0, 0.55),
            MerchantKind::Other => (40.0, 0.5),
        };
        ((lognormal(rng, median * self.amount_factor, sigma) * 100.0).round() as u64)
            .clamp(100, 5_000_000)
    }

    /// A paid swipe at `m`, sometimes preceded by one PIN typo or declined for funds.
    fn pay(&mut self, ts: i64, m: &Merchant, amount: u64, rng: &mut ChaCha8Rng) -> i64 {
        let channel = Card::channel(rng);
        let mut t = ts;
        if ts - self.last_typo > HOUR && rng.random_bool(0.01) {
            self.last_typo = ts;
            self.swipe(
                t,
                m,
                amount,
                Outcome::Declined,
                Some(DeclineReason::BadPin),
                channel,
                "legit",
                rng,
            );
            t += rng.random_range(15_000..60_000);
        }
        if rng.random_bool(0.015) {
            self.swipe(
                t,
                m,
                amount,
                Outcome::Declined,
                Some(DeclineReason::InsufficientFunds),
                channel,
                "legit",
                rng,
            );
            t += rng.random_range(60_000..300_000);
            let smaller = (amount / 2).max(100);
            self.swipe(
                t,
                m,
                smaller,
                Outcome::Approved,
                None,
                channel,
                "legit",
                rng,
            );
            return t;
        }
        self.swipe(t, m, amount, Outcome::Approved, None, channel, "legit", rng);
        t
    }

    fn local_time(&self, day_start: i64, rng: &mut ChaCha8Rng) -> i64 {
        self.local_time_at(self.peak_hour, day_start, rng)
    }

    fn local_time_at(&self, peak: f64, day_start: i64, rng: &mut ChaCha8Rng) -> i64 {
        let hour: f64 = Normal::new(peak, 1.8)
            .map_or(peak, |d| d.sample(rng))
            .clamp(7.5, 21.0);
        day_start + (hour * HOUR as f64) as i64 + rng.random_range(0..MINUTE)
    }

    /// One visit starting on the local day beginning at `day_start` (UTC ms of local midnight).
    pub fn visit(&mut self, day_start: i64, rng: &mut ChaCha8Rng) {
        let ts = self.local_time(day_start, rng);
        if rng.random_bool(0.03) {
            // An order from an online pharmacy: no place, no region.
            let m = self.usual[MerchantKind::Pharmacy.index()][0].clone();
            let amount = self.amount(MerchantKind::Pharmacy, rng);
            self.swipe(
                ts,
                &m,
                amount,
                Outcome::Approved,
                None,
                Channel::Online,
                "legit",
                rng,
            );
            return;
        }
        let r: f64 = rng.random();
        let kind = if r < self.mix[0] {
            MerchantKind::Hospital
        } else if r < self.mix[0] + self.mix[1] {
            MerchantKind::Clinic
        } else {
            MerchantKind::Pharmacy
        };
        let choices = &self.usual[kind.index()];
        let m = choices[rng.random_range(0..choices.len())].clone();
        if kind == MerchantKind::Hospital {
            // Registration, then examinations, then the hospital pharmacy.
            let fee = rng.random_range(1_000..5_000);
            let mut t = self.pay(ts, &m, fee, rng);
            t += rng.random_range(25 * MINUTE..90 * MINUTE);
            let exam = self.amount(kind, rng);
            t = self.pay(t, &m, exam, rng);
            if rng.random_bool(0.7) {
                t += rng.random_range(10 * MINUTE..40 * MINUTE);
                let drugs = self.amount(MerchantKind::Pharmacy, rng);
                self.pay(t, &m, drugs, rng);
            }
        } else {
            let amount = self.amount(kind, rng);
            self.pay(ts, &m, amount, rng);
        }
    }

    /// A trip: a few swipes in another city, reached at a believable speed.
    pub fn trip(&mut self, day_start: i64, rng: &mut ChaCha8Rng) {
        let city = places::far_city(rng, self.home_city, 300.0);
        let kind = if rng.random_bool(0.7) {
            MerchantKind::Pharmacy
        } else {
            MerchantKind::Clinic
        };
        let m = places::merchant(city, kind, rng.random_range(0..places::merchants_of(kind)));
        let ts = self.local_time(day_start, rng);
        let amount = self.amount(kind, rng);
        self.pay(ts, &m, amount, rng);
    }

    /// A visit by the family member sharing the card: their amounts and hours.
    fn family_visit(&mut self, day_start: i64, rng: &mut ChaCha8Rng) {
        let Some((factor, peak, _)) = self.family else {
            return self.visit(day_start, rng);
        };
        let (own_factor, own_peak) = (self.amount_factor, self.peak_hour);
        self.amount_factor = factor;
        self.peak_hour = peak;
        self.visit(day_start, rng);
        self.amount_factor = own_factor;
        self.peak_hour = own_peak;
    }

    /// A chronic patient's monthly refill: several times the usual purchase, at a usual pharmacy.
    fn refill(&mut self, day_start: i64, rng: &mut ChaCha8Rng) {
        let m = self.usual[MerchantKind::Pharmacy.index()][0].clone();
        let ts = self.local_time(day_start, rng);
        let amount = self.amount(MerchantKind::Pharmacy, rng) * rng.random_range(3..=6);
        self.pay(ts, &m, amount, rng);
    }

    /// A large hospital bill: an inpatient deposit, surgery, a course of treatment.
    fn large_bill(&mut self, day_start: i64, rng: &mut ChaCha8Rng) {
        let m = self.usual[MerchantKind::Hospital.index()][0].clone();
        let ts = self.local_time(day_start, rng);
        let amount = (lognormal(rng, 2_500.0, 0.6) * 100.0).round() as u64;
        self.pay(ts, &m, amount.clamp(50_000, 5_000_000), rng);
    }

    /// Moves the card's home to another city: its usual merchants are there from now on.
    fn relocate(&mut self, rng: &mut ChaCha8Rng) {
        let city = places::far_city(rng, self.home_city, 300.0);
        self.home_city = city;
        for (k, kind) in MerchantKind::ALL.iter().enumerate() {
            let n = self.usual[k].len();
            self.usual[k] = (0..n)
                .map(|_| {
                    places::merchant(
                        city,
                        *kind,
                        rng.random_range(0..places::merchants_of(*kind)),
                    )
                })
                .collect();
        }
    }

    /// Ordinary life from `start` for `days`, trips, refills, bills, moves, a new pharmacy,
    /// family purchases and a spell of seasonal illness included.
    pub fn live(&mut self, start: i64, days: u32, rng: &mut ChaCha8Rng) {
        let gap = Exp::new(self.visits_per_day).ok();
        let days_f = f64::from(days);
        let trip_day = rng
            .random_bool(0.05)
            .then(|| rng.random_range(0..days.max(1)));
        // What this card's life holds besides the routine, drawn up front.
        let chronic = self.visits_per_day >= 0.35;
        let refill_day = (chronic && rng.random_bool(0.7)).then(|| rng.random_range(0..30u32));
        let bill_day = rng
            .random_bool(0.06 * days_f / 30.0)
            .then(|| rng.random_range(0..days.max(1)));
        let move_day = rng
            .random_bool(0.02)
            .then(|| rng.random_range(1..days.max(2)));
        let new_pharmacy_day = rng
            .random_bool(0.2)
            .then(|| rng.random_range(0..days.max(1)));
        if rng.random_bool(0.15) {
            self.family = Some((
                lognormal(rng, 1.0, 0.5),
                rng.random_range(8.0..19.0),
                rng.random_range(0.2..0.5),
            ));
        }
        let illness = rng.random_bool(0.2).then(|| {
            (
                rng.random_range(0..days.max(1)),
                rng.random_range(5..=10u32),
            )
        });
        let mut day = 0.0f64;
        let mut moved = false;
        let mut new_pharmacy = false;
        loop {
            let ill = illness.is_some_and(|(from, len)| {
                let d = day as u32;
                d >= from && d < from + len
            });
            // A spell of illness: three times the visits.
            let rate_boost = if ill { 3.0 } else { 1.0 };
            day += gap
                .as_ref()
                .map_or(f64::INFINITY, |g| g.sample(rng) / rate_boost)
                .max(0.25);
            if day >= days_f {
                break;
            }
            let d = day.floor() as u32;
            if !moved && move_day.is_some_and(|m| d >= m) {
                moved = true;
                self.relocate(rng);
            }
            if !new_pharmacy && new_pharmacy_day.is_some_and(|n| d >= n) {
                new_pharmacy = true;
                let city = self.home_city;
                let extra = places::merchant(
                    city,
                    MerchantKind::Pharmacy,
                    rng.random_range(0..places::merchants_of(MerchantKind::Pharmacy)),
                );
                self.usual[MerchantKind::Pharmacy.index()].insert(0, extra);
            }
            let day_start = start + i64::from(d) * DAY;
            match self.family {
                Some((_, _, share)) if rng.random_bool(share) => self.family_visit(day_start, rng),
                _ => self.visit(day_start, rng),
            }
        }
        if let Some(first) = refill_day {
            let mut d = first;
            while d < days {
                self.refill(start + i64::from(d) * DAY, rng);
                d += rng.random_range(28..=32);
            }
        }
        if let Some(d) = bill_day {
            self.large_bill(start + i64::from(d) * DAY, rng);
        }
        if let Some(d) = trip_day {
            // Nothing at home for a day and a half either side: the trip is travelled, not teleported.
            let day_start = start + i64::from(d) * DAY;
            self.events
                .retain(|e| (e.ts.0 - day_start).abs() > 36 * HOUR);
            self.trip(day_start, rng);
        }
    }

    /// Approved card-present swipes with coordinates, in time order: anchors for scenarios.
    pub fn placed_swipes(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.events.len())
            .filter(|&i| {
                let e = &self.events[i];
                e.geo.is_some()
                    && e.outcome == Outcome::Approved
                    && e.channel != Some(Channel::Online)
            })
            .collect();
        idx.sort_by_key(|&i| self.events[i].ts);
        idx
    }
}
