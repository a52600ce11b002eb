//! `off_pattern`: a swipe improbable for this card's own history — pharmacy cash-out, non-medical
//! buying, a card lent to someone elsewhere, a stolen card spent fast.
//!
//! Each card keeps an 80-byte [`Profile`]: its last sixteen amounts and decaying shares of
//! merchant kind, time of day and home region. Once it holds `min_history` approved swipes,
//! every swipe of the card is judged by three tests, and fires when any of them does:
//!
//! 1. **The amount alone** (`alert_p_value`, 2e-3): the upper-tail p-value of the amount
//!    (relative to its kind's typical amount) under the card's own recent amounts at that kind
//!    of merchant (all its recent amounts while it has fewer than four there): the median —
//!    robust, so a few odd purchases do not move it — on whichever of the log, square-root and
//!    linear scales the card's amounts are most symmetric on, a spread at least what the
//!    card's own largest recent amount implies, shrunk towards the population's spread
//!    (`amount_spread`; `hospital_amount_spread` at hospitals, whose bills vary more), worth
//!    `amount_prior_weight` swipes, and a Student-t predictive (see `stats::judge_amount`). Money
//!    leaves the fund through amounts; this test gets the whole alert budget for them, so an
//!    extreme amount is never diluted by an ordinary hour, kind and region (the reason the
//!    previous Fisher-with-Šidák combination caught a fifth of a third-party data set's
//!    compromised cards).
//! 2. **Everything the swipe carries together** (`context_p_value`, 3e-4): Fisher's combination
//!    of the amount's p-value with those of merchant kind, three-hour band of local time
//!    (`utc_offset`) and region — each the probability of a value no more likely than the one
//!    seen, under the card's shares mixed with `prior_weight` pseudo-swipes spread as the
//!    population. A feature the event does not carry (no `merchant_kind`, no `region`) is left
//!    out, never guessed: it neither dilutes nor fakes the test. This catches a lent card: a
//!    new city at night at another kind of merchant, each only somewhat odd.
//! 3. **A burst** (`burst_threshold`, 6): a CUSUM of the amounts' normal scores above
//!    `burst_drift` (0.5), judged on the card's core spread (MAD) alone. Several moderately high amounts in a row — cash-out in medium slices,
//!    a stolen card spent over a day — add up where each alone would pass. It restarts after
//!    firing.
//!
//! Only approved swipes are learnt (after scoring), each amount capped at the card's median +
//! 3 scales so that a spree enters the window as "high" rather than at its full size; a lasting
//! new level still becomes the habit within about a window. The alert's score is −log10 of the
//! smallest p-value among the tests that fired (the burst's is that of its run's mean normal
//! score); its features list every p-value, and its explanation names those at or below
//! `feature_p_value`.

mod config;
pub mod profile;
mod stats;

pub use config::{OffPatternConfig, PerKind};

use serde::{Deserialize, Serialize};

use crate::detector::{stable_hash32, Detector, Emitter, Finding};
use crate::model::{
    Action, AmountMinor, FeatureSurprise, KeyKind, MerchantKind, Millis, Outcome, Severity,
    Transaction,
};
use profile::{Observation, Profile, BANDS, KINDS, RING};
use stats::{categorical_p, fisher, judge_amount, normal_score, normal_sf, AmountJudgement};

#[derive(Clone, Debug)]
pub struct OffPattern {
    min_history: u16,
    half_life: Millis,
    horizon: Millis,
    alert_p: f64,
    context_p: f64,
    burst_drift: f64,
    burst_threshold: f64,
    feature_p: f64,
    prior: f64,
    kind_prior: [f64; KINDS],
    band_prior: [f64; BANDS],
    away_share: f64,
    region_prefix: usize,
    typical_yuan: [f64; KINDS],
    spreads: [f64; KINDS],
    amount_prior_weight: f64,
    utc_offset: Millis,
    cooldown: Millis,
}

/// A card's state: its profile, cool-down included (80 bytes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OffPatternState {
    profile: Profile,
}

/// Amounts at one kind of merchant needed to judge a swipe there by them alone.
const MIN_SAME_KIND: usize = 4;

fn percent(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

/// What one swipe scored.
struct Scores {
    amount: AmountJudgement,
    kind: Option<f64>,
    band: f64,
    region: Option<(f64, bool)>,
    context: f64,
    /// The burst statistic after this swipe, its run length, and the run's p-value.
    burst: (f64, u8, f64),
}

impl Scores {
    /// A burst is a run: one extreme amount alone is the single-swipe test's to judge.
    fn burst_fired(&self, threshold: f64) -> bool {
        self.burst.0 >= threshold && self.burst.1 >= 2
    }
}

impl OffPattern {
    fn band(&self, tx: &Transaction) -> usize {
        let local = tx.ts.0.saturating_add(self.utc_offset.0);
        (local.rem_euclid(86_400_000) / 10_800_000) as usize
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
        let kind = tx.merchant_kind.unwrap_or(MerchantKind::Other);
        let yuan = (tx.amount.0 as f64 / 100.0).max(0.01);
        Observation {
            ts: tx.ts,
            log_amount: (yuan / self.typical_yuan[kind.index()]).ln(),
            kind,
            band: self.band(tx),
            region,
        }
    }

    fn score(&self, profile: &Profile, obs: &Observation, tx: &Transaction) -> Scores {
        // The card's amounts at this kind of merchant when it has a habit there, else all.
        let mut window = [0.0f64; RING];
        let mut n = 0;
        for (kind, v) in profile.amount_values() {
            if kind == obs.kind {
                window[n] = v;
                n += 1;
            }
        }
        if n < MIN_SAME_KIND {
            n = 0;
            for ((_, v), w) in profile.amount_values().zip(window.iter_mut()) {
                *w = v;
                n += 1;
            }
        }
        let amount = judge_amount(
            &mut window[..n],
            obs.log_amount,
            self.spreads[obs.kind.index()],
            self.amount_prior_weight,
            true,
        );
        let weight = profile.weight_at(obs.ts, self.half_life);
        let kind = tx.merchant_kind.map(|k| {
            categorical_p(
                &profile.kind_shares(),
                &self.kind_prior,
                weight,
                self.prior,
                k.index(),
            )
        });
        let band = categorical_p(
            &smoothed_bands(&profile.band_shares()),
            &self.band_prior,
            weight,
            self.prior,
            obs.band,
        );
        let region = obs.region.and_then(|region| {
            // Home regions share what the population does at home; "somewhere new" the rest.
            let homes: Vec<(u32, f64)> = profile.homes().collect();
            if homes.is_empty() {
                return None;
            }
            let n = homes.len();
            let mut shares = [0.0; profile::HOME_REGIONS + 1];
            let mut population = [0.0; profile::HOME_REGIONS + 1];
            let mut at = None;
            for (i, (hash, share)) in homes.iter().enumerate() {
                if *hash == region {
                    at = Some(i);
                }
                shares[i] = *share;
                population[i] = (1.0 - self.away_share) / n as f64;
            }
            shares[n] = profile.novelty_share();
            population[n] = self.away_share;
            let p = categorical_p(
                &shares[..=n],
                &population[..=n],
                weight,
                self.prior,
                at.unwrap_or(n),
            );
            Some((p, at.is_some()))
        });
        let mut present = vec![amount.p, band];
        present.extend(kind);
        present.extend(region.map(|r| r.0));
        let context = fisher(&present);
        let z = normal_score(amount.p_core);
        let cusum = (f64::from(profile.cusum) + z - self.burst_drift).max(0.0);
        let run = if cusum > 0.0 {
            profile.run.saturating_add(1)
        } else {
            0
        };
        let burst_p = if run > 0 {
            let runf = f64::from(run);
            normal_sf((cusum + self.burst_drift * runf) / runf.sqrt())
        } else {
            1.0
        };
        Scores {
            amount,
            kind,
            band,
            region,
            context,
            burst: (cusum, run, burst_p),
        }
    }

    /// Puts each scored feature into words: what the swipe did and what the card usually does.
    fn describe(
        &self,
        s: &Scores,
        profile: &Profile,
        obs: &Observation,
        tx: &Transaction,
    ) -> Vec<FeatureSurprise> {
        let mut out = Vec::with_capacity(5);
        let typical = self.typical_yuan[obs.kind.index()] * s.amount.median_log.exp();
        let usual = AmountMinor((typical * 100.0).round().max(0.0) as u64);
        out.push(FeatureSurprise {
            feature: "amount".into(),
            observed: tx.amount.to_string(),
            usual: format!("about {usual} at a {}", obs.kind.as_str()),
            p_value: s.amount.p,
        });
        if let Some(p) = s.kind {
            let shares = profile.kind_shares();
            let top = (0..KINDS)
                .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
                .unwrap_or(0);
            out.push(FeatureSurprise {
                feature: "merchant_kind".into(),
                observed: obs.kind.as_str().to_string(),
                usual: format!(
                    "{} {}",
                    MerchantKind::ALL[top].as_str(),
                    percent(shares[top])
                ),
                p_value: p,
            });
        }
        let bands = profile.band_shares();
        let top = (0..BANDS)
            .max_by(|&a, &b| bands[a].total_cmp(&bands[b]))
            .unwrap_or(0);
        let span = |b: usize| format!("{:02}:00-{:02}:59", b * 3, b * 3 + 2);
        out.push(FeatureSurprise {
            feature: "hour".into(),
            observed: span(obs.band),
            usual: format!("{} {}", span(top), percent(bands[top])),
            p_value: s.band,
        });
        if let Some((p, home)) = s.region {
            let homes: Vec<(u32, f64)> = profile.homes().collect();
            let home_share: f64 = homes.iter().map(|h| h.1).sum();
            let region = tx.region.as_deref().unwrap_or_default();
            let plural = if homes.len() == 1 { "" } else { "s" };
            out.push(FeatureSurprise {
                feature: "region".into(),
                observed: if home {
                    region.to_string()
                } else {
                    format!("{region} (new for this card)")
                },
                usual: format!(
                    "{} home region{plural}, {} of swipes",
                    homes.len(),
                    percent(home_share)
                ),
                p_value: p,
            });
        }
        if s.burst_fired(self.burst_threshold) {
            out.push(FeatureSurprise {
                feature: "burst".into(),
                observed: format!("{} swipes in a row above habit", s.burst.1),
                usual: "an odd amount now and then".into(),
                p_value: s.burst.2,
            });
        }
        out
    }
}

/// Band shares smoothed with each band's neighbours (½ own, ¼ each side).
fn smoothed_bands(raw: &[f64; BANDS]) -> [f64; BANDS] {
    std::array::from_fn(|b| {
        0.5 * raw[b] + 0.25 * (raw[(b + BANDS - 1) % BANDS] + raw[(b + 1) % BANDS])
    })
}

impl Detector for OffPattern {
    const NAME: &'static str = "off_pattern";
    const VERSION: u32 = 2;
    const KEY: KeyKind = KeyKind::Card;
    type State = OffPatternState;

    fn observe(&self, state: &mut OffPatternState, tx: &Transaction, emit: &mut Emitter<'_>) {
        // Refunds, admissions and discharges are not swipes (DESIGN §12).
        if !tx.is_swipe() {
            return;
        }
        let obs = self.observation(tx);
        let profile = &mut state.profile;
        let mut learned = obs.log_amount;
        if profile.n >= self.min_history && profile.amount_count() >= 2 {
            let s = self.score(profile, &obs, tx);
            learned = learned.min(s.amount.cap_log);
            let burst = s.burst_fired(self.burst_threshold);
            let amount = s.amount.p <= self.alert_p;
            let context = s.context <= self.context_p;
            let strongest = if burst { s.burst.2 } else { 1.0 }
                .min(s.amount.p)
                .min(s.context);
            emit.score(tx, -strongest.log10());
            if burst {
                profile.cusum = 0.0;
                profile.run = 0;
            } else {
                profile.cusum = s.burst.0 as f32;
                profile.run = s.burst.1;
            }
            if (amount || context || burst) && state.profile.quiet(tx.ts) {
                emit.suppressed();
            } else if amount || context || burst {
                let profile = &state.profile;
                let finding = {
                    let features = self.describe(&s, profile, &obs, tx);
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
                    let mut p: f64 = 1.0;
                    if amount {
                        p = p.min(s.amount.p);
                    }
                    if context {
                        p = p.min(s.context);
                    }
                    if burst {
                        p = p.min(s.burst.2);
                    }
                    let score = (-p.log10() * 100.0).round() / 100.0;
                    let severity = if score >= 6.0 {
                        Severity::High
                    } else if score >= 4.0 {
                        Severity::Medium
                    } else {
                        Severity::Low
                    };
                    let mut f = Finding::new(severity, Action::Review, tx.ts);
                    f.evidence = vec![tx.event_id.clone()];
                    f.score = score;
                    f.explanation = explanation;
                    f.features = features;
                    f
                };
                emit.fire_always(tx, finding);
                state.profile.quiet_from(tx.ts, self.cooldown);
            }
        }
        if tx.outcome == Outcome::Approved {
            state.profile.fold(&obs, self.half_life, learned);
        }
    }

    fn creates_state(&self, tx: &Transaction) -> bool {
        tx.is_swipe() && tx.outcome == Outcome::Approved
    }

    fn horizon(&self) -> Millis {
        self.horizon.max(self.cooldown)
    }

    fn is_idle(state: &OffPatternState) -> bool {
        state.profile.n == 0
    }
}

#[cfg(test)]
mod tests;
