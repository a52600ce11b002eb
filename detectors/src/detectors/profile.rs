//! A card's own spending profile, decaying in event time, for `off_pattern`.
//!
//! Every folded swipe has weight 1 that halves every `half_life` of event time. The profile keeps
//! the decayed total weight; per merchant kind the weighted mean and spread of log-amount (a
//! pharmacy habit and a hospital habit are different habits); and the share of weight per
//! merchant kind, per local hour of day and per home region (the few most frequent regions, by
//! stable hash), plus the share of swipes that arrived in a region outside the home set at the
//! time ("novelty": a card that wanders a lot is not surprised by a new region). A swipe without
//! a merchant kind counts as `other`.
//!
//! Shares are stored as 16-bit fixed-point fractions of the total weight: 24 hours cost 48 bytes
//! instead of 96, and the 1/65535 resolution is far below what the scoring priors resolve.

use serde::{Deserialize, Serialize};

use crate::model::{EventTime, MerchantKind, Millis};

pub const KINDS: usize = 4;
pub const HOURS: usize = 24;
pub const HOME_REGIONS: usize = 4;
const ONE: f32 = 65535.0;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Swipes folded in (saturating); the `min_history` gate.
    pub n: u32,
    /// Event time of the last folded swipe, for decay.
    pub last: EventTime,
    /// Decayed total weight.
    pub weight: f32,
    /// Per merchant kind: weighted mean of ln(1 + amount in yuan).
    pub amount_mean: [f32; KINDS],
    /// Per merchant kind: weighted sum of squared deviations of ln(1 + amount in yuan).
    pub amount_m2: [f32; KINDS],
    pub kinds: [u16; KINDS],
    pub hours: [u16; HOURS],
    /// (stable region hash, share); hash 0 with share 0 is an empty slot.
    pub regions: [(u32, u16); HOME_REGIONS],
    pub novel: u16,
}

/// What one swipe contributes to a profile.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub ts: EventTime,
    pub log_amount: f64,
    /// `Other` when the swipe names no kind.
    pub kind: MerchantKind,
    pub hour: usize,
    pub region: Option<u32>,
}

/// The decay factor after `elapsed` with the given half-life.
pub fn decay(elapsed: Millis, half_life: Millis) -> f64 {
    if elapsed.0 <= 0 {
        1.0
    } else {
        (-(elapsed.0 as f64) / half_life.0 as f64).exp2()
    }
}

fn share(x: u16) -> f64 {
    f64::from(x) / f64::from(ONE)
}

fn rescale(x: u16, keep: f64, add: f64) -> u16 {
    (f64::from(x) * keep + add * f64::from(ONE))
        .round()
        .clamp(0.0, f64::from(ONE)) as u16
}

impl Profile {
    /// Total weight as of `now` (the stored weight decayed to `now`).
    pub fn weight_at(&self, now: EventTime, half_life: Millis) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        f64::from(self.weight) * decay(now.since(self.last), half_life)
    }

    /// Decayed weight, mean and sum of squared deviations of log-amount at `kind`, as of the
    /// weight `total` (the profile's weight decayed to now).
    pub fn amount_stats(&self, kind: MerchantKind, total: f64) -> (f64, f64, f64) {
        let k = kind.index();
        let w = share(self.kinds[k]) * total;
        let decayed = if self.weight > 0.0 {
            total / f64::from(self.weight)
        } else {
            0.0
        };
        (
            w,
            f64::from(self.amount_mean[k]),
            f64::from(self.amount_m2[k]) * decayed,
        )
    }

    pub fn kind_shares(&self) -> [f64; KINDS] {
        self.kinds.map(share)
    }

    pub fn hour_shares(&self) -> [f64; HOURS] {
        self.hours.map(share)
    }

    pub fn novelty_share(&self) -> f64 {
        share(self.novel)
    }

    /// Folds one swipe in: everything decays to `obs.ts`, then the swipe adds weight 1.
    pub fn fold(&mut self, obs: &Observation, half_life: Millis) {
        let d = if self.n == 0 {
            0.0
        } else {
            decay(obs.ts.since(self.last), half_life)
        };
        let old = f64::from(self.weight) * d;
        let total = old + 1.0;
        let (keep, add) = (old / total, 1.0 / total);

        // Weighted incremental mean and spread of the swipe's kind (West, 1979); every kind's
        // spread decays with its weight.
        let k = obs.kind.index();
        let kind_old = share(self.kinds[k]) * old;
        let x = obs.log_amount;
        let mean = f64::from(self.amount_mean[k]);
        let delta = x - mean;
        let new_mean = mean + delta / (kind_old + 1.0);
        for (i, m2) in self.amount_m2.iter_mut().enumerate() {
            let fresh = if i == k { delta * (x - new_mean) } else { 0.0 };
            *m2 = (f64::from(*m2) * d + fresh) as f32;
        }
        self.amount_mean[k] = new_mean as f32;
        self.weight = total as f32;

        for (i, s) in self.kinds.iter_mut().enumerate() {
            *s = rescale(*s, keep, if i == k { add } else { 0.0 });
        }
        for (h, v) in self.hours.iter_mut().enumerate() {
            *v = rescale(*v, keep, if h == obs.hour { add } else { 0.0 });
        }
        let home = obs.region.and_then(|r| {
            self.regions
                .iter()
                .position(|&(h, s)| h == r && (s > 0 || h != 0))
        });
        for (i, (_, s)) in self.regions.iter_mut().enumerate() {
            *s = rescale(*s, keep, if home == Some(i) { add } else { 0.0 });
        }
        let had_home = self.regions.iter().any(|r| r.1 > 0);
        let is_new = obs.region.is_some() && home.is_none();
        // The first region a card is seen in is its home, not a novelty.
        let is_novel = is_new && had_home;
        self.novel = rescale(self.novel, keep, if is_novel { add } else { 0.0 });
        if let (Some(region), true) = (obs.region, is_new) {
            // A new region takes the slot of the least-used home region (first such on ties).
            let mut weakest = 0;
            for i in 1..HOME_REGIONS {
                if self.regions[i].1 < self.regions[weakest].1 {
                    weakest = i;
                }
            }
            self.regions[weakest] = (region, rescale(0, 0.0, add));
        }
        self.last = obs.ts;
        self.n = self.n.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(ts: i64, yuan: f64, hour: usize, region: u32) -> Observation {
        Observation {
            ts: EventTime(ts),
            log_amount: (1.0 + yuan).ln(),
            kind: MerchantKind::Pharmacy,
            hour,
            region: Some(region),
        }
    }

    #[test]
    fn decay_halves_per_half_life() {
        let hl = Millis(1000);
        assert_eq!(decay(Millis(0), hl), 1.0);
        assert!((decay(Millis(1000), hl) - 0.5).abs() < 1e-12);
        assert!((decay(Millis(3000), hl) - 0.125).abs() < 1e-12);
    }

    #[test]
    fn shares_track_what_the_card_does() {
        let mut p = Profile::default();
        let hl = Millis(30 * 86_400_000);
        for i in 0..20 {
            p.fold(&obs(i * 86_400_000, 50.0, 10, 7), hl);
        }
        assert_eq!(p.n, 20);
        assert!((p.kind_shares()[MerchantKind::Pharmacy.index()] - 1.0).abs() < 1e-3);
        assert!((p.hour_shares()[10] - 1.0).abs() < 1e-3);
        assert_eq!(p.regions[0].0, 7);
        assert!((f64::from(p.regions[0].1) / 65535.0 - 1.0).abs() < 1e-3);
        assert_eq!(p.novelty_share(), 0.0);
        let (w, mean, m2) = p.amount_stats(MerchantKind::Pharmacy, f64::from(p.weight));
        assert!((w - f64::from(p.weight)).abs() < 1e-2);
        assert!((mean - 51f64.ln()).abs() < 1e-4);
        assert!(m2 < 1e-6);
    }

    #[test]
    fn the_least_used_home_region_gives_way() {
        let mut p = Profile::default();
        let hl = Millis(86_400_000);
        for (i, r) in [1, 1, 1, 2, 2, 3, 4, 5].into_iter().enumerate() {
            p.fold(&obs(i as i64 * 1000, 10.0, 9, r), hl);
        }
        let hashes: Vec<u32> = p.regions.iter().map(|r| r.0).collect();
        assert!(
            hashes.contains(&1) && hashes.contains(&2) && hashes.contains(&5),
            "{hashes:?}"
        );
    }
}
