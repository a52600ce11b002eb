//! `off_pattern`: a swipe improbable for this card's own history — pharmacy cash-out, non-medical
//! buying, a card lent to someone elsewhere.
//!
//! Each card keeps a decaying [`Profile`]. A swipe is scored once the profile holds at least
//! `min_history` approved swipes. Each feature gets a p-value under the profile:
//!
//! - **amount**: upper tail of the posterior-predictive Student-t of ln(1 + yuan) (location and
//!   spread from the profile, `amount_sd_floor` as the least spread, ν = weight − 1). Only large
//!   amounts are surprising: small ones are not how money leaves the fund.
//! - **merchant kind**, **hour of day** (local, `utc_offset`; each hour smoothed with its
//!   neighbours) and **region** (home regions plus "somewhere new", whose weight is how often the
//!   card has turned up somewhere new): Dirichlet-smoothed shares (`prior_weight` pseudo-swipes),
//!   p-value = the probability of a value no more likely than the one seen.
//!
//! The k p-values are combined two ways, each with half of the `alert_p_value` budget
//! (Bonferroni): Fisher's method (−2 Σ ln p ~ χ² with 2k degrees of freedom), which catches
//! several moderately odd features together (a lent card: new region, other kind, odd hour),
//! and Šidák's minimum (1 − (1 − min p)^k), which catches one extreme feature that Fisher would
//! dilute with three ordinary ones (a cash-out). The combined p-value is twice the smaller of
//! the two, capped at 1; the swipe fires when it is at most `alert_p_value`. The alert's score is
//! −log10 of it, its features list every p-value, and its explanation names the features at or
//! below `feature_p_value`. Every swipe is scored; only approved swipes are folded into the
//! profile, after scoring.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};
use statrs::function::gamma::gamma_ur;

use super::profile::{Observation, Profile, HOME_REGIONS, HOURS, KINDS};
use crate::config::{positive, ConfigError};
use crate::detector::{stable_hash32, Cooldown, Detector, Emitter, Finding};
use crate::model::{
    Action, AmountMinor, DetectorName, FeatureSurprise, MerchantKind, Millis, Outcome, Severity,
    Transaction,
};

/// `[detectors.off_pattern]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffPatternConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Approved swipes a card needs in its profile before its swipes are scored.
    pub min_history: u32,
    /// Event time over which a swipe's weight in the profile halves.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// A card idle this long is forgotten (its profile has decayed to little anyway).
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// Fire when the combined (Fisher) p-value of the swipe is at most this.
    pub alert_p_value: f64,
    /// Name a feature in the explanation when its own p-value is at most this.
    pub feature_p_value: f64,
    /// Pseudo-swipes spread evenly over the categories of kind, hour and region.
    pub prior_weight: f64,
    /// Least spread of ln(1 + amount in yuan) assumed for a card (0.3 ≈ amounts within ±35 %).
    pub amount_sd_floor: f64,
    /// Offset of local time from UTC for the hour of day, `+08:00` for China.
    pub utc_offset: String,
    /// Quiet period on the card after an alert.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for OffPatternConfig {
    fn default() -> Self {
        OffPatternConfig {
            enabled: true,
            min_history: 10,
            half_life: Duration::from_secs(30 * 86_400),
            horizon: Duration::from_secs(90 * 86_400),
            alert_p_value: 1e-4,
            feature_p_value: 0.05,
            prior_weight: 0.5,
            amount_sd_floor: 0.3,
            utc_offset: "+08:00".into(),
            cooldown: Duration::from_secs(3600),
        }
    }
}

/// `+08:00` → +8 h in milliseconds.
fn parse_utc_offset(s: &str) -> Option<i64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 60 + m) * 60_000)
}

impl OffPatternConfig {
    pub(crate) fn build(&self, key: &str) -> Result<OffPattern, ConfigError> {
        let prob = |name: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(v)
            } else {
                Err(ConfigError::new(
                    format!("{key}.{name}"),
                    "must be strictly between 0 and 1",
                ))
            }
        };
        let alert_p = prob("alert_p_value", self.alert_p_value)?;
        let feature_p = prob("feature_p_value", self.feature_p_value)?;
        if !(self.prior_weight.is_finite() && self.prior_weight > 0.0) {
            return Err(ConfigError::new(
                format!("{key}.prior_weight"),
                "must be a positive number",
            ));
        }
        if !(self.amount_sd_floor.is_finite() && self.amount_sd_floor > 0.0) {
            return Err(ConfigError::new(
                format!("{key}.amount_sd_floor"),
                "must be a positive number",
            ));
        }
        let utc_offset = parse_utc_offset(&self.utc_offset).ok_or_else(|| {
            ConfigError::new(
                format!("{key}.utc_offset"),
                "must look like +08:00 or -05:30",
            )
        })?;
        // Per k = 1..=4 features, the thresholds at which each half of the test fires, so that
        // ordinary swipes are dismissed without evaluating a distribution.
        let half = alert_p / 2.0;
        let mut thresholds = [Thresholds {
            fisher: f64::INFINITY,
            min_p: 0.0,
        }; 5];
        for (k, t) in thresholds.iter_mut().enumerate().skip(1) {
            let chi = ChiSquared::new(2.0 * k as f64)
                .map_err(|e| ConfigError::new(format!("{key}.alert_p_value"), e.to_string()))?;
            *t = Thresholds {
                fisher: chi.inverse_cdf(1.0 - half),
                min_p: -((-half).ln_1p() / k as f64).exp_m1(),
            };
        }
        Ok(OffPattern {
            min_history: self.min_history,
            half_life: positive(&format!("{key}.half_life"), self.half_life)?,
            horizon: positive(&format!("{key}.horizon"), self.horizon)?,
            feature_p,
            prior: self.prior_weight,
            sd_floor: self.amount_sd_floor,
            utc_offset: Millis(utc_offset),
            cooldown: Millis::from_duration(self.cooldown),
            thresholds,
        })
    }
}

#[derive(Clone, Debug)]
pub struct OffPattern {
    min_history: u32,
    half_life: Millis,
    horizon: Millis,
    feature_p: f64,
    prior: f64,
    sd_floor: f64,
    utc_offset: Millis,
    cooldown: Millis,
    thresholds: [Thresholds; 5],
}

/// Where each half of the combined test fires for k features.
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    /// Fisher statistic at or above which its p-value is at most `alert_p_value / 2`.
    fisher: f64,
    /// Smallest feature p-value at or below which Šidák's p-value is at most `alert_p_value / 2`.
    min_p: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OffPatternState {
    profile: Profile,
    cooldown: Cooldown,
}

/// Smallest p-value used, so that ln stays finite.
const P_FLOOR: f64 = 1e-300;

/// P(a category no more likely than `observed`) under Dirichlet-smoothed shares of a total
/// `weight` with `prior` pseudo-swipes spread evenly. Allocation-free: it runs on every swipe.
fn categorical_p(shares: &[f64], weight: f64, prior: f64, observed: usize) -> f64 {
    let each = prior / shares.len() as f64;
    let prob = |s: f64| s * weight + each;
    let total: f64 = shares.iter().map(|&s| prob(s)).sum();
    let p_obs = prob(shares[observed]) * (1.0 + 1e-9);
    let tail: f64 = shares
        .iter()
        .map(|&s| prob(s))
        .filter(|&p| p <= p_obs)
        .sum();
    (tail / total).clamp(P_FLOOR, 1.0)
}

fn percent(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

const AMOUNT: usize = 0;
const KIND: usize = 1;
const HOUR: usize = 2;
const REGION: usize = 3;
const FEATURES: [&str; 4] = ["amount", "merchant_kind", "hour", "region"];

/// The p-value of each feature a swipe has (`None` where it lacks the feature).
struct Scores {
    p: [Option<f64>; 4],
    /// Whether the swipe's region is one of the card's home regions.
    region_is_home: bool,
}

/// Hour shares smoothed with each hour's neighbours (½ own, ¼ each side).
fn smoothed_hours(raw: &[f64; HOURS]) -> [f64; HOURS] {
    std::array::from_fn(|h| {
        0.5 * raw[h] + 0.25 * (raw[(h + HOURS - 1) % HOURS] + raw[(h + 1) % HOURS])
    })
}

impl OffPattern {
    fn local_hour(&self, tx: &Transaction) -> usize {
        let local = tx.ts.0.saturating_add(self.utc_offset.0);
        (local.rem_euclid(86_400_000) / 3_600_000) as usize
    }

    fn observation(&self, tx: &Transaction) -> Observation {
        Observation {
            ts: tx.ts,
            log_amount: (1.0 + tx.amount.0 as f64 / 100.0).ln(),
            kind: tx.merchant_kind,
            hour: self.local_hour(tx),
            region: tx.region.as_deref().map(stable_hash32),
        }
    }

    /// Per-feature p-values of `obs` under `profile`, as of the swipe's time.
    fn score(&self, profile: &Profile, obs: &Observation) -> Scores {
        let weight = profile.weight_at(obs.ts, self.half_life);
        let mut p = [None; 4];

        let sd = profile.amount_variance().sqrt().max(self.sd_floor) * (1.0 + 1.0 / weight).sqrt();
        let t = (obs.log_amount - f64::from(profile.mean)) / sd;
        let p_amount = StudentsT::new(0.0, 1.0, (weight - 1.0).max(1.0)).map_or(1.0, |d| d.sf(t));
        p[AMOUNT] = Some(p_amount.clamp(P_FLOOR, 1.0));

        if let Some(kind) = obs.kind {
            p[KIND] = Some(categorical_p(
                &profile.kind_shares(),
                weight,
                self.prior,
                kind.index(),
            ));
        }
        let hours = smoothed_hours(&profile.hour_shares());
        p[HOUR] = Some(categorical_p(&hours, weight, self.prior, obs.hour));

        let mut region_is_home = false;
        if let Some(region) = obs.region {
            // Home regions, then "somewhere new" weighted by how often the card goes somewhere new.
            let mut shares = [0.0; HOME_REGIONS + 1];
            let mut n = 0;
            let mut at = None;
            for &(hash, share) in profile.regions.iter().filter(|r| r.1 > 0 || r.0 != 0) {
                if hash == region {
                    at = Some(n);
                }
                shares[n] = f64::from(share) / 65535.0;
                n += 1;
            }
            if n > 0 {
                shares[n] = profile.novelty_share();
                region_is_home = at.is_some();
                p[REGION] = Some(categorical_p(
                    &shares[..=n],
                    weight,
                    self.prior,
                    at.unwrap_or(n),
                ));
            }
        }
        Scores { p, region_is_home }
    }

    /// The combined p-value (module doc) if it clears the alert threshold.
    fn combined(&self, scores: &Scores) -> Option<f64> {
        let ps = scores.p.iter().flatten();
        let k = ps.clone().count();
        let t = self.thresholds.get(k).filter(|_| k > 0)?;
        let statistic: f64 = ps.clone().map(|p| -2.0 * p.ln()).sum();
        let min_p = ps.fold(1.0, |m, &p| f64::min(m, p));
        if statistic < t.fisher && min_p > t.min_p {
            return None;
        }
        let fisher = gamma_ur(k as f64, statistic / 2.0);
        let sidak = -(k as f64 * (-min_p).ln_1p()).exp_m1();
        Some((2.0 * fisher.min(sidak)).clamp(P_FLOOR, 1.0))
    }

    /// Puts each scored feature into words: what the swipe did and what the card usually does.
    fn describe(
        &self,
        scores: &Scores,
        profile: &Profile,
        obs: &Observation,
        tx: &Transaction,
    ) -> Vec<FeatureSurprise> {
        let mut out = Vec::with_capacity(4);
        for (i, p) in scores.p.iter().enumerate() {
            let Some(p_value) = *p else { continue };
            let (observed, usual) = match i {
                AMOUNT => {
                    let typical = ((f64::from(profile.mean).exp() - 1.0) * 100.0)
                        .round()
                        .max(0.0);
                    (
                        tx.amount.to_string(),
                        format!("about {}", AmountMinor(typical as u64)),
                    )
                }
                KIND => {
                    let shares = profile.kind_shares();
                    let top = (0..KINDS)
                        .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
                        .unwrap_or(0);
                    let kind = obs.kind.map_or("", MerchantKind::as_str);
                    (
                        kind.to_string(),
                        format!(
                            "{} {}",
                            MerchantKind::ALL[top].as_str(),
                            percent(shares[top])
                        ),
                    )
                }
                HOUR => {
                    let raw = profile.hour_shares();
                    let top = (0..HOURS)
                        .max_by(|&a, &b| raw[a].total_cmp(&raw[b]))
                        .unwrap_or(0);
                    (
                        format!("{:02}:00-{:02}:59", obs.hour, obs.hour),
                        format!("{top:02}:00-{top:02}:59 {}", percent(raw[top])),
                    )
                }
                _ => {
                    let homes: Vec<f64> = profile
                        .regions
                        .iter()
                        .filter(|r| r.1 > 0 || r.0 != 0)
                        .map(|r| f64::from(r.1) / 65535.0)
                        .collect();
                    let region = tx.region.as_deref().unwrap_or_default();
                    let observed = if scores.region_is_home {
                        region.to_string()
                    } else {
                        format!("{region} (new for this card)")
                    };
                    let plural = if homes.len() == 1 { "" } else { "s" };
                    let usual = format!(
                        "{} home region{plural}, {} of swipes",
                        homes.len(),
                        percent(homes.iter().sum())
                    );
                    (observed, usual)
                }
            };
            out.push(FeatureSurprise {
                feature: FEATURES[i].to_string(),
                observed,
                usual,
                p_value,
            });
        }
        out
    }
}

impl Detector for OffPattern {
    const NAME: DetectorName = DetectorName::OffPattern;
    const VERSION: u32 = 1;
    type State = OffPatternState;

    fn observe(&self, state: &mut OffPatternState, tx: &Transaction, emit: &mut Emitter<'_>) {
        let obs = self.observation(tx);
        if state.profile.n >= self.min_history {
            let scores = self.score(&state.profile, &obs);
            if let Some(p) = self.combined(&scores) {
                let profile = &state.profile;
                emit.fire(Self::NAME, &mut state.cooldown, self.cooldown, tx, || {
                    let features = self.describe(&scores, profile, &obs, tx);
                    let mut named: Vec<&FeatureSurprise> = features
                        .iter()
                        .filter(|f| f.p_value <= self.feature_p)
                        .collect();
                    if named.is_empty() {
                        named.extend(
                            features
                                .iter()
                                .min_by(|a, b| a.p_value.total_cmp(&b.p_value)),
                        );
                    }
                    named.sort_by(|a, b| a.p_value.total_cmp(&b.p_value));
                    let explanation = named
                        .iter()
                        .map(|f| {
                            format!(
                                "{} {} vs usual {} (p={:.1e})",
                                f.feature, f.observed, f.usual, f.p_value
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    let score = (-p.log10() * 100.0).round() / 100.0;
                    let severity = if score >= 8.0 {
                        Severity::High
                    } else if score >= 6.0 {
                        Severity::Medium
                    } else {
                        Severity::Low
                    };
                    Finding {
                        severity,
                        window_start: tx.ts,
                        evidence: vec![tx.event_id.clone()],
                        score,
                        action: Action::Review,
                        action_for: None,
                        explanation,
                        features,
                    }
                });
            }
        }
        if tx.outcome == Outcome::Approved {
            state.profile.fold(&obs, self.half_life);
        }
    }

    fn horizon(&self) -> Millis {
        self.horizon.max(self.cooldown)
    }
}

#[cfg(test)]
mod tests;
