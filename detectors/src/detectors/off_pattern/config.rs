//! `[detectors.off_pattern]` and its checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::profile::{BANDS, KINDS};
use super::OffPattern;
use crate::config::{positive, ConfigError};
use crate::model::Millis;

/// Hours of the day in `hour_prior`.
const HOURS: usize = 24;

/// One number per merchant kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerKind {
    pub hospital: f64,
    pub clinic: f64,
    pub pharmacy: f64,
    pub other: f64,
}

impl PerKind {
    fn values(&self) -> [f64; KINDS] {
        [self.hospital, self.clinic, self.pharmacy, self.other]
    }
}

/// `[detectors.off_pattern]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffPatternConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Most alerts per hour of event time, per partition; beyond it alerts are withheld and
    /// counted, and one `budget_exceeded` alert says so (DESIGN §14). Absent: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_alerts_per_hour: Option<u32>,
    /// Send its alerts to `<kafka.alerts_topic>.shadow` only, to watch a change before it reaches
    /// the analysts (DESIGN §14).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Approved swipes a card needs in its profile before its swipes are scored.
    pub min_history: u32,
    /// Event time over which a swipe's weight in the profile halves.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// A card idle this long is forgotten (its profile has decayed to little anyway).
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// Fire when the amount alone is this improbable for the card (upper-tail p-value).
    pub alert_p_value: f64,
    /// Fire when the amount, merchant kind, hour and region the swipe carries are together
    /// this improbable (Fisher's combination of their p-values).
    pub context_p_value: f64,
    /// What each swipe's amount must exceed, in normal scores, to add to the burst statistic
    /// (the CUSUM's allowance): a run of moderately high amounts adds up.
    pub burst_drift: f64,
    /// Fire when the burst statistic reaches this (in normal scores above the drift).
    pub burst_threshold: f64,
    /// Name a feature in the explanation when its own p-value is at most this.
    pub feature_p_value: f64,
    /// Pseudo-swipes of population behaviour mixed into each card's kind, hour and region shares.
    pub prior_weight: f64,
    /// Population share of swipes per merchant kind (normalised).
    pub kind_prior: PerKind,
    /// Population share of swipes per local hour 0..23 (normalised): most swipes are by day.
    /// Cards are profiled in three-hour bands, so the prior is summed per band.
    pub hour_prior: Vec<f64>,
    /// Population share of swipes made outside the card's home regions.
    pub away_share: f64,
    /// Compare regions by this many leading characters of the code: 4 is the city level of
    /// China's six-digit administrative codes (districts of one city are home); 0 = whole code.
    pub region_prefix: usize,
    /// Typical amount per merchant kind in yuan: amounts are judged relative to it, so a card's
    /// hospital bills and pharmacy purchases share one habit.
    pub typical_amount_yuan: PerKind,
    /// Typical spread of ln(amount) within one card at one kind of merchant (0.6 ≈ ×1.8).
    pub amount_spread: f64,
    /// The same at hospitals: their bills vary more (registration, examinations, deposits).
    pub hospital_amount_spread: f64,
    /// Pseudo-swipes the amount prior is worth: more makes young profiles less jumpy.
    pub amount_prior_weight: f64,
    /// Offset of local time from UTC for the hour of day, `+08:00` for China.
    pub utc_offset: String,
    /// Quiet period on the card after an alert (at most 49 days).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for OffPatternConfig {
    fn default() -> Self {
        OffPatternConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            min_history: 10,
            half_life: Duration::from_secs(30 * 86_400),
            horizon: Duration::from_secs(90 * 86_400),
            alert_p_value: 2e-3,
            context_p_value: 3e-4,
            burst_drift: 0.5,
            burst_threshold: 6.0,
            feature_p_value: 0.05,
            prior_weight: 1.0,
            kind_prior: PerKind {
                hospital: 0.25,
                clinic: 0.25,
                pharmacy: 0.49,
                other: 0.01,
            },
            hour_prior: vec![
                0.3, 0.2, 0.2, 0.2, 0.3, 0.6, 1.5, 3.0, 6.0, 8.0, 8.5, 8.0, 6.5, 6.5, 7.0, 7.0,
                6.5, 5.5, 4.5, 3.5, 2.5, 1.5, 0.8, 0.5,
            ],
            away_share: 0.03,
            region_prefix: 4,
            typical_amount_yuan: PerKind {
                hospital: 300.0,
                clinic: 100.0,
                pharmacy: 60.0,
                other: 50.0,
            },
            amount_spread: 0.6,
            hospital_amount_spread: 0.9,
            amount_prior_weight: 4.0,
            utc_offset: "+08:00".into(),
            cooldown: Duration::from_secs(3600),
        }
    }
}

/// `+08:00` → +8 h in milliseconds.
pub fn parse_utc_offset(s: &str) -> Option<i64> {
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

/// Positive finite numbers, normalised to sum 1.
fn shares(key: &str, values: &[f64]) -> Result<Vec<f64>, ConfigError> {
    if values.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return Err(ConfigError::new(
            key,
            "every share must be a positive number",
        ));
    }
    let total: f64 = values.iter().sum();
    Ok(values.iter().map(|v| v / total).collect())
}

impl OffPatternConfig {
    pub(crate) fn build(&self, key: &str) -> Result<OffPattern, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let prob = |name: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(v)
            } else {
                Err(ConfigError::new(
                    k(name),
                    "must be strictly between 0 and 1",
                ))
            }
        };
        let positive_number = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(ConfigError::new(k(name), "must be a positive number"))
            }
        };
        let alert_p = prob("alert_p_value", self.alert_p_value)?;
        let utc_offset = parse_utc_offset(&self.utc_offset)
            .ok_or_else(|| ConfigError::new(k("utc_offset"), "must look like +08:00 or -05:30"))?;
        if self.hour_prior.len() != HOURS {
            return Err(ConfigError::new(
                k("hour_prior"),
                "must list 24 shares, hour 0 to 23",
            ));
        }
        let hour_prior = shares(&k("hour_prior"), &self.hour_prior)?;
        let kind_prior = shares(&k("kind_prior"), &self.kind_prior.values())?;
        let typical = self.typical_amount_yuan.values();
        if typical.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err(ConfigError::new(
                k("typical_amount_yuan"),
                "every amount must be a positive number",
            ));
        }
        let context_p = prob("context_p_value", self.context_p_value)?;
        let burst_drift = positive_number("burst_drift", self.burst_drift)?;
        let burst_threshold = positive_number("burst_threshold", self.burst_threshold)?;
        if self.min_history < 2 {
            return Err(ConfigError::new(k("min_history"), "must be at least 2"));
        }
        let band_prior: [f64; BANDS] =
            std::array::from_fn(|b| hour_prior[b * 3..b * 3 + 3].iter().sum());
        Ok(OffPattern {
            min_history: self.min_history.min(u32::from(u16::MAX)) as u16,
            half_life: positive(&k("half_life"), self.half_life)?,
            horizon: positive(&k("horizon"), self.horizon)?,
            alert_p,
            context_p,
            burst_drift,
            burst_threshold,
            feature_p: prob("feature_p_value", self.feature_p_value)?,
            prior: positive_number("prior_weight", self.prior_weight)?,
            kind_prior: [kind_prior[0], kind_prior[1], kind_prior[2], kind_prior[3]],
            band_prior,
            away_share: prob("away_share", self.away_share)?,
            region_prefix: self.region_prefix,
            typical_yuan: typical,
            spreads: {
                let base = positive_number("amount_spread", self.amount_spread)?;
                let hospital =
                    positive_number("hospital_amount_spread", self.hospital_amount_spread)?;
                let mut s = [base; KINDS];
                s[crate::model::MerchantKind::Hospital.index()] = hospital;
                s
            },
            amount_prior_weight: positive_number("amount_prior_weight", self.amount_prior_weight)?,
            utc_offset: Millis(utc_offset),
            cooldown: {
                let c = Millis::from_duration(self.cooldown);
                if c.0 > i64::from(u32::MAX) {
                    return Err(ConfigError::new(k("cooldown"), "must be at most 49 days"));
                }
                c
            },
        })
    }
}
