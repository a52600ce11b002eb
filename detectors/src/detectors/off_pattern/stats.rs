//! The distributions `off_pattern` scores with.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

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

/// Fisher's combination of independent p-values: P(χ²(2k) ≥ −2 Σ ln p).
pub fn fisher(ps: &[f64]) -> f64 {
    if ps.is_empty() {
        return 1.0;
    }
    let statistic: f64 = ps.iter().map(|p| -2.0 * p.max(P_FLOOR).ln()).sum();
    ChiSquared::new(2.0 * ps.len() as f64)
        .map_or(1.0, |d| d.sf(statistic))
        .clamp(P_FLOOR, 1.0)
}

/// The normal score of an upper-tail p-value, clamped to [−3, 8]: what the burst statistic
/// adds up (8 bounds what one swipe can contribute however extreme it is).
pub fn normal_score(p: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .map_or(0.0, |n| -n.inverse_cdf(p.clamp(P_FLOOR, 1.0)))
        .clamp(-3.0, 8.0)
}

/// Upper-tail p-value of a standard normal score.
pub fn normal_sf(z: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .map_or(1.0, |n| n.sf(z))
        .clamp(P_FLOOR, 1.0)
}

/// The scale a card's amounts are judged on: log (λ = 0), square root or linear (λ = ½, 1) of
/// the amount relative to its kind's typical amount.
const LAMBDAS: [f64; 3] = [0.0, 0.5, 1.0];

/// How a card's recent amounts judge a new one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AmountJudgement {
    /// Upper-tail p-value of the new amount for the single-swipe test: the card's spread is
    /// at least what its own largest recent amount implies (see [`judge_amount`]).
    pub p: f64,
    /// The same on the card's core spread alone (MAD): what the burst statistic adds up.
    pub p_core: f64,
    /// The card's median, as ln(amount / typical).
    pub median_log: f64,
    /// The largest log-amount the profile learns for this swipe (the median + 3 core spreads):
    /// a fraudster's spree enters the window as "high", never as its full size.
    pub cap_log: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Bowley's quartile skewness: 0 for a symmetric sample.
fn skewness(sorted: &[f64]) -> f64 {
    let (q1, q2, q3) = (
        quantile(sorted, 0.25),
        quantile(sorted, 0.5),
        quantile(sorted, 0.75),
    );
    let iqr = q3 - q1;
    if iqr <= 0.0 {
        0.0
    } else {
        (q3 + q1 - 2.0 * q2) / iqr
    }
}

/// Judges `x` (ln(amount / typical)) against `window` (the card's recent log-amounts, at least
/// two). Of the log, square-root and linear scales, the one where the card's amounts are most
/// symmetric (smallest quartile skewness; log on ties) is used: spending is log-normal for most
/// cards and nearer normal for some, and a tail test is only honest on a symmetric scale.
/// There, location = median, and two spreads, each shrunk towards the population's (`spread`,
/// a log-scale standard deviation, worth `prior_weight` swipes):
/// - the **core** spread, MAD × 1.4826: robust, the burst statistic's yardstick;
/// - the **full** spread, at least what the window's largest amount implies (its distance from
///   the median over the expected maximum of n normal draws): a card whose amounts are several
///   habits at once (a hospital visit's fee, examination and drugs) is not surprised by the
///   largest of them. The single-swipe test uses it.
///
/// The predictive distribution is a Student-t with n + `prior_weight` − 1 degrees of freedom.
///
/// With `own_spread` false (the card's amounts are of other kinds of merchant than this one),
/// the card's window gives the location only and the spread is the population's.
pub fn judge_amount(
    window: &mut [f64],
    x: f64,
    spread: f64,
    prior_weight: f64,
    own_spread: bool,
) -> AmountJudgement {
    debug_assert!(window.len() >= 2);
    window.sort_by(f64::total_cmp);
    let n = window.len();
    let mut best = (f64::INFINITY, 0.0);
    let mut scaled = [0.0f64; super::profile::RING];
    for lambda in LAMBDAS {
        let v = &mut scaled[..n];
        for (o, y) in v.iter_mut().zip(window.iter()) {
            *o = transform(*y, lambda);
        }
        let s = skewness(v).abs();
        if s < best.0 - 1e-9 {
            best = (s, lambda);
        }
    }
    let lambda = best.1;
    let v = &mut scaled[..n];
    for (o, y) in v.iter_mut().zip(window.iter()) {
        *o = transform(*y, lambda);
    }
    let median = quantile(v, 0.5);
    let mut deviations = [0.0f64; super::profile::RING];
    let d = &mut deviations[..n];
    for (o, y) in d.iter_mut().zip(v.iter()) {
        *o = (y - median).abs();
    }
    d.sort_by(f64::total_cmp);
    let mad = quantile(d, 0.5) * 1.4826;
    let nf = n as f64;
    let expected_max = Normal::new(0.0, 1.0)
        .map_or(2.0, |d| d.inverse_cdf(1.0 - 1.0 / (2.0 * nf)))
        .max(0.5);
    let full = mad.max((v[n - 1] - median) / expected_max);
    // The population's log spread, on this scale (delta method at the median).
    let prior_scale = if lambda == 0.0 {
        spread
    } else {
        lambda * spread * median
    };
    let predictive = |s: f64| {
        let s = if own_spread { s } else { prior_scale };
        let var = (prior_weight * prior_scale * prior_scale + nf * s * s) / (prior_weight + nf);
        (var * (1.0 + 1.0 / nf)).sqrt().max(1e-9)
    };
    let (core_scale, full_scale) = (predictive(mad), predictive(full));
    let t = StudentsT::new(0.0, 1.0, (nf + prior_weight - 1.0).max(1.0));
    let sf = |scale: f64| {
        let z = (transform(x, lambda) - median) / scale;
        t.as_ref().map_or(1.0, |d| d.sf(z)).clamp(P_FLOOR, 1.0)
    };
    let cap = median + 3.0 * core_scale;
    let cap_log = if lambda == 0.0 {
        cap
    } else if cap > 0.0 {
        cap.ln() / lambda
    } else {
        f64::INFINITY
    };
    AmountJudgement {
        p: sf(full_scale),
        p_core: sf(core_scale),
        median_log: quantile(window, 0.5),
        cap_log,
    }
}

/// `exp(λ y)` for λ > 0 (the amount relative to typical, to the power λ), `y` for λ = 0.
fn transform(y: f64, lambda: f64) -> f64 {
    if lambda == 0.0 {
        y
    } else {
        (lambda * y).exp()
    }
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
    fn fisher_and_normal_scores() {
        assert_eq!(fisher(&[]), 1.0);
        assert!((fisher(&[0.5]) - 0.5).abs() < 1e-12);
        assert!(fisher(&[0.01, 0.01, 0.01]) < 1e-3);
        assert!((normal_score(0.5)).abs() < 1e-9);
        assert!((normal_score(0.025) - 1.959964).abs() < 1e-5);
        assert_eq!(normal_score(1e-300), 8.0);
        assert_eq!(normal_score(1.0), -3.0);
        assert!((normal_sf(1.959964) - 0.025).abs() < 1e-6);
    }

    fn window(values: &[f64]) -> Vec<f64> {
        values.to_vec()
    }

    #[test]
    fn a_log_normal_habit_is_judged_on_the_log_scale() {
        // Log-amounts symmetric around 0 with spread 0.5: four times typical is 2.8 spreads.
        let mut w = window(&[
            -0.6, -0.4, -0.3, -0.2, -0.1, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.6, -0.5, 0.5, -0.05, 0.05,
        ]);
        let ordinary = judge_amount(&mut w.clone(), 0.1, 0.6, 4.0, true);
        assert!(ordinary.p > 0.3, "{ordinary:?}");
        let x10 = judge_amount(&mut w, 10f64.ln(), 0.6, 4.0, true);
        assert!(x10.p < 1e-3, "{x10:?}");
        assert!(x10.cap_log < 10f64.ln());
    }

    #[test]
    fn a_normal_habit_is_judged_on_a_linear_scale() {
        // Amounts 0.5 to 1.5 times typical, evenly: symmetric linearly, skewed in logs. Five
        // times typical is far beyond such a card, though only 1.6 in logs.
        let amounts: Vec<f64> = (0..16).map(|i| (0.5 + f64::from(i) / 15.0).ln()).collect();
        let j = judge_amount(&mut amounts.clone(), 5f64.ln(), 0.6, 4.0, true);
        assert!(j.p < 1e-3 && j.p_core < 1e-4, "{j:?}");
    }
}
