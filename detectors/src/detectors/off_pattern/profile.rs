//! A card's own spending profile for `off_pattern`, in 80 bytes.
//!
//! - **Amounts**: the last [`RING`] approved amounts, each as ln(amount / the population's
//!   typical amount at that kind of merchant) in fixed point (1/256), tagged with its kind in
//!   the two low bits. The window is what robust location and scale are taken from (median and
//!   MAD), so a card's own recent habit is the yardstick, a few outliers do not move it, and a
//!   lasting change becomes the new habit after about half a window.
//! - **Shares**, decaying in event time (every folded swipe has weight 1 that halves every
//!   `half_life`): per merchant kind, per three-hour band of local time, per home region (the
//!   few most frequent, by stable hash), and the share of swipes that arrived somewhere new.
//!   Shares are 8-bit fixed-point fractions of the total weight; the scoring's smoothing
//!   priors resolve far less than 1/255.
//! - **Burst**: the CUSUM of the amounts' normal scores and the length of its current run.
//! - **Cool-down**: its end, as milliseconds after the last folded swipe.
//!
//! A swipe without a merchant kind counts as `other`.

use serde::{Deserialize, Serialize};

use crate::model::{EventTime, MerchantKind, Millis};

pub const KINDS: usize = 4;
/// Three-hour bands of local time.
pub const BANDS: usize = 8;
pub const HOME_REGIONS: usize = 2;
/// Amounts remembered.
pub const RING: usize = 16;
const ONE: f64 = 255.0;
/// Fixed point of a log-amount: 1/256 (the two bits below carry the kind).
const LOG_SCALE: f64 = 256.0;
/// The fixed-point range: ±32 in logs, far beyond any amount.
const LOG_LIMIT: f64 = 8191.0;

/// Where the next log-amount goes in a window of [`RING`]: below `RING`, the count so far (and
/// the next slot); from `RING` on, the window is full and the next slot is `pos - RING`. One
/// byte for both.
fn advance(pos: u8) -> (usize, u8) {
    let pos = usize::from(pos);
    let (slot, full) = if pos < RING {
        (pos, false)
    } else {
        (pos - RING, true)
    };
    let next = (slot + 1) % RING;
    let pos = if full || slot + 1 == RING {
        RING + next
    } else {
        next
    };
    (slot, pos as u8)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Approved swipes folded in (saturating); the `min_history` gate.
    pub n: u16,
    /// Run length of the current burst (swipes since the CUSUM was last 0), saturating.
    pub run: u8,
    /// Share of swipes that arrived outside the home regions.
    pub novel: u8,
    pub home_shares: [u8; HOME_REGIONS],
    pub kinds: [u8; KINDS],
    pub bands: [u8; BANDS],
    /// Decayed total weight of the shares.
    pub weight: f32,
    /// CUSUM of the amounts' normal scores.
    pub cusum: f32,
    /// The detector's cool-down: quiet until `last` + this many ms (see [`Profile::quiet`]).
    pub quiet: u32,
    /// Stable hashes of the home regions; hash 0 with share 0 is an empty slot.
    pub homes: [u32; HOME_REGIONS],
    /// Event time of the last folded swipe, for decay.
    pub last: EventTime,
    /// The last [`RING`] log-amounts in fixed point, kind in the two low bits, oldest
    /// overwritten first.
    pub amounts: [i16; RING],
    /// See [`advance`].
    pub amount_pos: u8,
}

/// What one swipe contributes to a profile.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub ts: EventTime,
    /// ln(amount / typical amount at its kind).
    pub log_amount: f64,
    /// `Other` when the swipe names no kind.
    pub kind: MerchantKind,
    pub band: usize,
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

fn share(x: u8) -> f64 {
    f64::from(x) / ONE
}

fn rescale(x: u8, keep: f64, add: f64) -> u8 {
    (f64::from(x) * keep + add * ONE).round().clamp(0.0, ONE) as u8
}

impl Profile {
    /// Total weight of the shares as of `now`.
    pub fn weight_at(&self, now: EventTime, half_life: Millis) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        f64::from(self.weight) * decay(now.since(self.last), half_life)
    }

    pub fn kind_shares(&self) -> [f64; KINDS] {
        self.kinds.map(share)
    }

    pub fn band_shares(&self) -> [f64; BANDS] {
        self.bands.map(share)
    }

    pub fn novelty_share(&self) -> f64 {
        share(self.novel)
    }

    /// How many log-amounts the window holds.
    pub fn amount_count(&self) -> usize {
        usize::from(self.amount_pos).min(RING)
    }

    /// The remembered log-amounts with their kinds, in no particular order.
    pub fn amount_values(&self) -> impl Iterator<Item = (MerchantKind, f64)> + '_ {
        self.amounts[..self.amount_count()].iter().map(|q| {
            let kind = MerchantKind::ALL[(*q & 3) as usize];
            (kind, f64::from(*q >> 2) / LOG_SCALE)
        })
    }

    fn push_amount(&mut self, kind: MerchantKind, log_amount: f64) {
        let q = (log_amount * LOG_SCALE)
            .round()
            .clamp(-LOG_LIMIT, LOG_LIMIT) as i16;
        let (slot, pos) = advance(self.amount_pos);
        self.amounts[slot] = (q << 2) | kind.index() as i16;
        self.amount_pos = pos;
    }

    /// Home-region slots in use: (hash, share).
    pub fn homes(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.homes
            .iter()
            .zip(self.home_shares)
            .filter(|(h, s)| *s > 0 || **h != 0)
            .map(|(h, s)| (*h, share(s)))
    }

    /// Whether the cool-down holds at `now` (its end is exclusive).
    pub fn quiet(&self, now: EventTime) -> bool {
        now < self.last.saturating_add(Millis(i64::from(self.quiet)))
    }

    /// Starts a cool-down at `now` for `quiet_for` (at most 49 days: the end is kept as
    /// milliseconds after `last`, which is never after `now`).
    pub fn quiet_from(&mut self, now: EventTime, quiet_for: Millis) {
        let end = now.saturating_add(quiet_for);
        self.quiet = end.since(self.last).0.clamp(0, i64::from(u32::MAX)) as u32;
    }

    /// Folds an approved swipe in: everything decays to `obs.ts`, then the swipe adds weight
    /// 1 to the shares and `learned_amount` to the window (the caller winsorises it).
    pub fn fold(&mut self, obs: &Observation, half_life: Millis, learned_amount: f64) {
        let d = if self.n == 0 {
            0.0
        } else {
            decay(obs.ts.since(self.last), half_life)
        };
        let old = f64::from(self.weight) * d;
        let total = old + 1.0;
        let (keep, add) = (old / total, 1.0 / total);
        self.weight = total as f32;
        let k = obs.kind.index();
        for (i, s) in self.kinds.iter_mut().enumerate() {
            *s = rescale(*s, keep, if i == k { add } else { 0.0 });
        }
        for (b, v) in self.bands.iter_mut().enumerate() {
            *v = rescale(*v, keep, if b == obs.band { add } else { 0.0 });
        }
        let home = obs.region.and_then(|r| {
            (0..HOME_REGIONS)
                .find(|&i| self.homes[i] == r && (self.home_shares[i] > 0 || self.homes[i] != 0))
        });
        for (i, s) in self.home_shares.iter_mut().enumerate() {
            *s = rescale(*s, keep, if home == Some(i) { add } else { 0.0 });
        }
        let had_home = self.home_shares.iter().any(|s| *s > 0);
        let is_new = obs.region.is_some() && home.is_none();
        // The first region a card is seen in is its home, not a novelty.
        self.novel = rescale(self.novel, keep, if is_new && had_home { add } else { 0.0 });
        if let (Some(region), true) = (obs.region, is_new) {
            // A new region takes the slot of the least-used home region (first such on ties).
            let mut weakest = 0;
            for i in 1..HOME_REGIONS {
                if self.home_shares[i] < self.home_shares[weakest] {
                    weakest = i;
                }
            }
            self.homes[weakest] = region;
            self.home_shares[weakest] = rescale(0, 0.0, add);
        }
        self.push_amount(obs.kind, learned_amount);
        // The cool-down's end stays where it was.
        let end = self.last.saturating_add(Millis(i64::from(self.quiet)));
        self.quiet = end.since(obs.ts).0.clamp(0, i64::from(u32::MAX)) as u32;
        self.last = obs.ts;
        self.n = self.n.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(ts: i64, log_amount: f64, band: usize, region: u32) -> Observation {
        Observation {
            ts: EventTime(ts),
            log_amount,
            kind: MerchantKind::Pharmacy,
            band,
            region: Some(region),
        }
    }

    #[test]
    fn the_profile_is_eighty_bytes() {
        assert_eq!(std::mem::size_of::<Profile>(), 80);
    }

    #[test]
    fn decay_halves_per_half_life() {
        let hl = Millis(1000);
        assert_eq!(decay(Millis(0), hl), 1.0);
        assert!((decay(Millis(1000), hl) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn shares_and_amounts_track_what_the_card_does() {
        let mut p = Profile::default();
        let hl = Millis(30 * 86_400_000);
        for i in 0..20 {
            p.fold(&obs(i * 86_400_000, 0.25, 3, 7), hl, 0.25);
        }
        assert_eq!(p.n, 20);
        assert!((p.kind_shares()[MerchantKind::Pharmacy.index()] - 1.0).abs() < 0.01);
        assert!((p.band_shares()[3] - 1.0).abs() < 0.01);
        assert_eq!(p.homes().collect::<Vec<_>>().len(), 1);
        assert_eq!(p.novelty_share(), 0.0);
        assert_eq!(p.amount_count(), RING);
        assert!(p
            .amount_values()
            .all(|(k, v)| k == MerchantKind::Pharmacy && (v - 0.25).abs() < 1e-2));
    }

    #[test]
    fn the_window_keeps_the_last_sixteen_amounts() {
        let mut r = Profile::default();
        for i in 0..20 {
            r.push_amount(MerchantKind::Clinic, f64::from(i));
            assert_eq!(r.amount_count(), (i + 1).min(16) as usize);
        }
        let mut v: Vec<f64> = r.amount_values().map(|(_, v)| v).collect();
        v.sort_by(f64::total_cmp);
        assert_eq!(v.first().copied(), Some(4.0));
        assert_eq!(v.last().copied(), Some(19.0));
    }

    #[test]
    fn the_least_used_home_region_gives_way() {
        let mut p = Profile::default();
        let hl = Millis(86_400_000);
        for (i, r) in [1, 1, 1, 2, 2, 3, 4].into_iter().enumerate() {
            p.fold(&obs(i as i64 * 1000, 0.0, 3, r), hl, 0.0);
        }
        let hashes: Vec<u32> = p.homes().map(|h| h.0).collect();
        assert!(hashes.contains(&1) && hashes.contains(&4), "{hashes:?}");
    }
}
