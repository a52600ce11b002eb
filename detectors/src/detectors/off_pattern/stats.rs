//! The distributions `off_pattern` scores with.

use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::gamma::gamma_ur;

use crate::detectors::profile::KINDS;

/// Smallest p-value used, so that logarithms stay finite.
pub const P_FLOOR: f64 = 1e-300;

/// P(a category no more likely than `observed`) under a card's shares of `weight` swipes mixed
/// with `prior` pseudo-swipes spread as the population shares `population`. Allocation-free:
/// it runs on every swipe.
pub fn categorical_p(
    shares: &[f64],
    population: &[f64],
    weight: f64,
    prior: f64,
    observed: usize,
) -> f64 {
    debug_assert_eq!(shares.len(), population.len());
    let prob = |i: usize| shares[i] * weight + population[i] * prior;
    let total: f64 = (0..shares.len()).map(prob).sum();
    let p_obs = prob(observed) * (1.0 + 1e-9);
    let tail: f64 = (0..shares.len()).map(prob).filter(|&p| p <= p_obs).sum();
    (tail / total).clamp(P_FLOOR, 1.0)
}

/// Normal-inverse-gamma prior of a card's log-amounts at each kind of merchant: centred on the
/// population's typical amount, with the population's typical spread, worth a few swipes.
#[derive(Clone, Debug)]
pub struct AmountPrior {
    mean: [f64; KINDS],
    kappa: f64,
    alpha: f64,
    beta: f64,
}

impl AmountPrior {
    /// `weight` pseudo-swipes inform the spread (α = weight / 2, so ν ≥ weight); a quarter of
    /// them inform the centre (κ = weight / 4), since a card's level varies more than its spread.
    pub fn new(typical_yuan: [f64; KINDS], spread: f64, weight: f64) -> AmountPrior {
        let alpha = weight / 2.0;
        AmountPrior {
            mean: typical_yuan.map(|y| y.ln_1p()),
            kappa: weight / 4.0,
            alpha,
            beta: alpha * spread * spread,
        }
    }

    /// Upper-tail p-value of log-amount `x` under the posterior predictive (a Student-t) given a
    /// card's weighted stats at this kind: weight `w`, mean, and sum of squared deviations `m2`.
    pub fn upper_p(&self, kind: usize, w: f64, mean: f64, m2: f64, x: f64) -> f64 {
        let mu0 = self.mean[kind];
        let kn = self.kappa + w;
        let mu = (self.kappa * mu0 + w * mean) / kn;
        let an = self.alpha + w / 2.0;
        let bn = self.beta + m2 / 2.0 + self.kappa * w * (mean - mu0).powi(2) / (2.0 * kn);
        let scale = (bn * (kn + 1.0) / (an * kn)).sqrt();
        let t = (x - mu) / scale;
        StudentsT::new(0.0, 1.0, 2.0 * an)
            .map_or(1.0, |d| d.sf(t))
            .clamp(P_FLOOR, 1.0)
    }

    /// The typical amount the posterior expects, in yuan.
    pub fn expected_yuan(&self, kind: usize, w: f64, mean: f64) -> f64 {
        let mu = (self.kappa * self.mean[kind] + w * mean) / (self.kappa + w);
        mu.exp() - 1.0
    }
}

/// Where each half of the combined test fires for k features.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Fisher statistic at or above which its p-value is at most `alert_p_value / 2`.
    pub fisher: f64,
    /// Smallest feature p-value at or below which Šidák's p-value is at most `alert_p_value / 2`.
    pub min_p: f64,
}

/// 2 × min(Fisher, Šidák) over the p-values, if it can clear the threshold; `None` otherwise
/// (decided without evaluating a distribution for ordinary swipes).
pub fn combined(ps: &[f64], thresholds: &[Thresholds; 5]) -> Option<f64> {
    let k = ps.len();
    let t = thresholds.get(k).filter(|_| k > 0)?;
    let statistic: f64 = ps.iter().map(|p| -2.0 * p.ln()).sum();
    let min_p = ps.iter().copied().fold(1.0, f64::min);
    if statistic < t.fisher && min_p > t.min_p {
        return None;
    }
    let fisher = gamma_ur(k as f64, statistic / 2.0);
    let sidak = -(k as f64 * (-min_p).ln_1p()).exp_m1();
    Some((2.0 * fisher.min(sidak)).clamp(P_FLOOR, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categorical_tail_mass() {
        // Card always at kind 0; population spreads evenly; observing kind 3 is rare.
        let p = categorical_p(&[1.0, 0.0, 0.0, 0.0], &[0.25; 4], 20.0, 1.0, 3);
        assert!((p - 0.75 / 21.0).abs() < 1e-12, "{p}");
        assert_eq!(
            categorical_p(&[1.0, 0.0, 0.0, 0.0], &[0.25; 4], 20.0, 1.0, 0),
            1.0
        );
    }

    #[test]
    fn a_fresh_card_is_judged_by_the_population() {
        let prior = AmountPrior::new([300.0, 100.0, 60.0, 50.0], 0.6, 10.0);
        let typical = prior.upper_p(2, 0.0, 0.0, 0.0, 61f64.ln());
        assert!((typical - 0.5).abs() < 1e-9, "{typical}");
        let big = prior.upper_p(2, 0.0, 0.0, 0.0, 6001f64.ln());
        assert!(big < 1e-3, "{big}");
    }

    #[test]
    fn a_steady_habit_makes_jumps_more_surprising() {
        let prior = AmountPrior::new([300.0, 100.0, 60.0, 50.0], 0.6, 10.0);
        let x = 2001f64.ln();
        let young = prior.upper_p(2, 0.0, 0.0, 0.0, x);
        let habit = prior.upper_p(2, 20.0, 61f64.ln(), 20.0 * 0.3 * 0.3, x);
        assert!(habit < young / 100.0, "{habit} vs {young}");
    }

    #[test]
    fn combination_fires_on_one_extreme_or_several_moderate() {
        let mut t = [Thresholds {
            fisher: f64::INFINITY,
            min_p: 0.0,
        }; 5];
        let half = 5e-4;
        for (k, th) in t.iter_mut().enumerate().skip(1) {
            use statrs::distribution::ChiSquared;
            let chi = ChiSquared::new(2.0 * k as f64).unwrap();
            *th = Thresholds {
                fisher: chi.inverse_cdf(1.0 - half),
                min_p: -((-half).ln_1p() / k as f64).exp_m1(),
            };
        }
        assert!(combined(&[1e-6, 1.0, 1.0, 1.0], &t).is_some());
        assert!(combined(&[0.003, 0.003, 0.01, 0.5], &t).is_some());
        assert!(combined(&[0.05, 0.2, 0.5, 0.5], &t).is_none());
    }
}
