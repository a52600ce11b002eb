//! `off_pattern`: a swipe improbable for this card's own history — pharmacy cash-out, non-medical
//! buying, a card lent to someone elsewhere.
//!
//! Each card keeps a decaying [`Profile`]. A swipe is scored once the profile holds at least
//! `min_history` approved swipes. Each feature gets a p-value under the card's profile mixed
//! with population priors (so that a young profile is neither jumpy nor deaf):
//!
//! - **amount**: upper tail of the posterior-predictive Student-t of ln(1 + yuan) *at this kind
//!   of merchant*, from a normal-inverse-gamma prior (`typical_amount_yuan`, `amount_spread`,
//!   worth `amount_prior_weight` swipes) updated with the card's own swipes there. Only large
//!   amounts are surprising: small ones are not how money leaves the fund.
//! - **merchant kind**, **hour of day** (local, `utc_offset`; each hour smoothed with its
//!   neighbours) and **region** (home regions compared at `region_prefix`, plus "somewhere
//!   new", weighted by how often the card turns up somewhere new): the card's shares mixed with
//!   `prior_weight` pseudo-swipes spread as the population (`kind_prior`, `hour_prior`,
//!   `away_share`); p-value = the probability of a value no more likely than the one seen.
//!
//! The k p-values are combined two ways, each with half of the `alert_p_value` budget
//! (Bonferroni): Fisher's method (−2 Σ ln p ~ χ² with 2k degrees of freedom), which catches
//! several moderately odd features together (a lent card: new city, odd hour, other kind), and
//! Šidák's minimum (1 − (1 − min p)^k), which catches one extreme feature that Fisher would
//! dilute with three ordinary ones (a cash-out). The combined p-value is twice the smaller of
//! the two, capped at 1; the swipe fires when it is at most `alert_p_value`. The alert's score is
//! −log10 of it, its features list every p-value, and its explanation names the features at or
//! below `feature_p_value`. Every swipe is scored; only approved swipes are folded into the
//! profile, after scoring.

mod config;
mod stats;

pub use config::{OffPatternConfig, PerKind};

use serde::{Deserialize, Serialize};

use super::profile::{Observation, Profile, HOME_REGIONS, HOURS, KINDS};
use crate::detector::{stable_hash32, Cooldown, Detector, Emitter, Finding};
use crate::model::{
    Action, AmountMinor, FeatureSurprise, KeyKind, MerchantKind, Millis, Outcome, Severity,
    Transaction,
};
use stats::{categorical_p, combined, AmountPrior, Thresholds};

#[derive(Clone, Debug)]
pub struct OffPattern {
    min_history: u32,
    half_life: Millis,
    horizon: Millis,
    feature_p: f64,
    prior: f64,
    kind_prior: [f64; KINDS],
    hour_prior: [f64; HOURS],
    away_share: f64,
    region_prefix: usize,
    amount: AmountPrior,
    utc_offset: Millis,
    cooldown: Millis,
    thresholds: [Thresholds; 5],
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OffPatternState {
    profile: Profile,
    cooldown: Cooldown,
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

/// Home-region slots in use.
fn homes(profile: &Profile) -> impl Iterator<Item = &(u32, u16)> {
    profile.regions.iter().filter(|r| r.1 > 0 || r.0 != 0)
}

impl OffPattern {
    fn local_hour(&self, tx: &Transaction) -> usize {
        let local = tx.ts.0.saturating_add(self.utc_offset.0);
        (local.rem_euclid(86_400_000) / 3_600_000) as usize
    }

    fn observation(&self, tx: &Transaction) -> Observation {
        let region = tx.region.as_deref().map(|r| {
            let cut = if self.region_prefix == 0 {
                r.len()
            } else {
                r.len().min(self.region_prefix)
            };
            stable_hash32(r.get(..cut).unwrap_or(r))
        });
        Observation {
            ts: tx.ts,
            log_amount: (tx.amount.0 as f64 / 100.0).ln_1p(),
            kind: tx.merchant_kind.unwrap_or(MerchantKind::Other),
            hour: self.local_hour(tx),
            region,
        }
    }

    /// Per-feature p-values of `obs` under `profile`, as of the swipe's time.
    fn score(&self, profile: &Profile, obs: &Observation, kind_known: bool) -> Scores {
        let weight = profile.weight_at(obs.ts, self.half_life);
        let mut p = [None; 4];
        let k = obs.kind.index();
        let (w, mean, m2) = profile.amount_stats(obs.kind, weight);
        p[AMOUNT] = Some(self.amount.upper_p(k, w, mean, m2, obs.log_amount));
        if kind_known {
            p[KIND] = Some(categorical_p(
                &profile.kind_shares(),
                &self.kind_prior,
                weight,
                self.prior,
                k,
            ));
        }
        let hours = smoothed_hours(&profile.hour_shares());
        p[HOUR] = Some(categorical_p(
            &hours,
            &self.hour_prior,
            weight,
            self.prior,
            obs.hour,
        ));

        let mut region_is_home = false;
        if let Some(region) = obs.region {
            // Home regions share what the population does at home; "somewhere new" gets the rest.
            let mut shares = [0.0; HOME_REGIONS + 1];
            let mut population = [0.0; HOME_REGIONS + 1];
            let n = homes(profile).count();
            let mut at = None;
            for (i, &(hash, share)) in homes(profile).enumerate() {
                if hash == region {
                    at = Some(i);
                }
                shares[i] = f64::from(share) / 65535.0;
                population[i] = (1.0 - self.away_share) / n as f64;
            }
            if n > 0 {
                shares[n] = profile.novelty_share();
                population[n] = self.away_share;
                region_is_home = at.is_some();
                let observed = at.unwrap_or(n);
                p[REGION] = Some(categorical_p(
                    &shares[..=n],
                    &population[..=n],
                    weight,
                    self.prior,
                    observed,
                ));
            }
        }
        Scores { p, region_is_home }
    }

    /// Puts each scored feature into words: what the swipe did and what the card usually does.
    fn describe(
        &self,
        scores: &Scores,
        profile: &Profile,
        obs: &Observation,
        tx: &Transaction,
    ) -> Vec<FeatureSurprise> {
        let weight = profile.weight_at(obs.ts, self.half_life);
        let mut out = Vec::with_capacity(4);
        for (i, p) in scores.p.iter().enumerate() {
            let Some(p_value) = *p else { continue };
            let (observed, usual) = match i {
                AMOUNT => {
                    let (w, mean, _) = profile.amount_stats(obs.kind, weight);
                    let typical = self.amount.expected_yuan(obs.kind.index(), w, mean);
                    let usual = AmountMinor((typical * 100.0).round().max(0.0) as u64);
                    (
                        tx.amount.to_string(),
                        format!("about {usual} at a {}", obs.kind.as_str()),
                    )
                }
                KIND => {
                    let shares = profile.kind_shares();
                    let top = (0..KINDS)
                        .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
                        .unwrap_or(0);
                    (
                        obs.kind.as_str().to_string(),
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
                    let n = homes(profile).count();
                    let home_share: f64 = homes(profile).map(|r| f64::from(r.1) / 65535.0).sum();
                    let region = tx.region.as_deref().unwrap_or_default();
                    let observed = if scores.region_is_home {
                        region.to_string()
                    } else {
                        format!("{region} (new for this card)")
                    };
                    let plural = if n == 1 { "" } else { "s" };
                    (
                        observed,
                        format!("{n} home region{plural}, {} of swipes", percent(home_share)),
                    )
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
    const NAME: &'static str = "off_pattern";
    const VERSION: u32 = 1;
    const KEY: KeyKind = KeyKind::Card;
    type State = OffPatternState;

    fn observe(&self, state: &mut OffPatternState, tx: &Transaction, emit: &mut Emitter<'_>) {
        let obs = self.observation(tx);
        if state.profile.n >= self.min_history {
            let scores = self.score(&state.profile, &obs, tx.merchant_kind.is_some());
            let mut ps = [0.0; 4];
            let mut k = 0;
            for p in scores.p.iter().flatten() {
                ps[k] = *p;
                k += 1;
            }
            if let Some(p) = combined(&ps[..k], &self.thresholds) {
                let profile = &state.profile;
                emit.fire(&mut state.cooldown, self.cooldown, tx, || {
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
                    let severity = if score >= 6.0 {
                        Severity::High
                    } else if score >= 4.0 {
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
                        reason: None,
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
