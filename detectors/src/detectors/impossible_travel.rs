//! `impossible_travel`: two consecutive card-present swipes of a card (channel not `online`,
//! coordinates known) more than `min_distance_km` apart whose great-circle distance over the
//! time between them implies more than `max_speed_kmh`. Two swipes at the same instant and far
//! apart have infinite speed. The same card in two cities at once is a clone.
//!
//! "Consecutive" counts only swipes that can be placed: online swipes and swipes without
//! coordinates neither trigger nor reset the comparison. The score is the implied speed over the
//! limit, capped at 1000 so that it stays a finite JSON number.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::detector::{Cooldown, Detector, Emitter, Finding};
use crate::model::{Action, EventId, EventTime, GeoPoint, KeyKind, Millis, Severity, Transaction};

/// `[detectors.impossible_travel]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImpossibleTravelConfig {
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
    /// Implied ground speed above which two swipes cannot be the same card (km/h).
    pub max_speed_kmh: f64,
    /// Swipes closer than this never fire, whatever the speed (km); absorbs geocoding noise.
    pub min_distance_km: f64,
    /// Quiet period on the card after an alert.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for ImpossibleTravelConfig {
    fn default() -> Self {
        ImpossibleTravelConfig {
            enabled: true,
            max_alerts_per_hour: None,
            shadow: false,
            max_speed_kmh: 900.0,
            min_distance_km: 50.0,
            cooldown: Duration::from_secs(3600),
        }
    }
}

impl ImpossibleTravelConfig {
    pub(crate) fn build(&self, key: &str) -> Result<ImpossibleTravel, ConfigError> {
        if !(self.max_speed_kmh.is_finite() && self.max_speed_kmh > 0.0) {
            return Err(ConfigError::new(
                format!("{key}.max_speed_kmh"),
                "must be a positive number",
            ));
        }
        if !(self.min_distance_km.is_finite() && self.min_distance_km >= 0.0) {
            return Err(ConfigError::new(
                format!("{key}.min_distance_km"),
                "must be a non-negative number",
            ));
        }
        Ok(ImpossibleTravel {
            max_speed_kmh: self.max_speed_kmh,
            min_distance_km: self.min_distance_km,
            cooldown: Millis::from_duration(self.cooldown),
        })
    }
}

#[derive(Clone, Debug)]
pub struct ImpossibleTravel {
    max_speed_kmh: f64,
    min_distance_km: f64,
    cooldown: Millis,
}

/// Where and when the card was last placed. Coordinates are kept as f32 (about a metre).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Fix {
    ts: EventTime,
    id: EventId,
    lat: f32,
    lon: f32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImpossibleTravelState {
    last: Option<Fix>,
    cooldown: Cooldown,
}

/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6371.0088;
/// Half the Earth's circumference: no two points are further apart.
const MAX_GREAT_CIRCLE_KM: f64 = std::f64::consts::PI * EARTH_RADIUS_KM;

/// Great-circle distance by the haversine formula, km.
pub fn haversine_km(a: GeoPoint, b: GeoPoint) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

impl Detector for ImpossibleTravel {
    const NAME: &'static str = "impossible_travel";
    const VERSION: u32 = 1;
    const KEY: KeyKind = KeyKind::Card;
    type State = ImpossibleTravelState;

    fn observe(&self, state: &mut ImpossibleTravelState, tx: &Transaction, emit: &mut Emitter<'_>) {
        // Refunds, admissions and discharges are not swipes (DESIGN §12).
        if !tx.is_swipe() {
            return;
        }
        let Some(geo) = tx.geo.filter(|_| tx.is_card_present()) else {
            return;
        };
        let here = Fix {
            ts: tx.ts,
            id: tx.event_id.clone(),
            lat: geo.lat as f32,
            lon: geo.lon as f32,
        };
        let Some(prev) = state.last.replace(here) else {
            return;
        };
        let from = GeoPoint {
            lat: f64::from(prev.lat),
            lon: f64::from(prev.lon),
        };
        let to = GeoPoint {
            lat: f64::from(geo.lat as f32),
            lon: f64::from(geo.lon as f32),
        };
        let km = haversine_km(from, to);
        if km <= self.min_distance_km {
            return;
        }
        let elapsed = tx.ts.since(prev.ts);
        let kmh = if elapsed.0 <= 0 {
            f64::INFINITY
        } else {
            km / elapsed.hours_f64()
        };
        if kmh <= self.max_speed_kmh {
            return;
        }
        emit.fire(&mut state.cooldown, self.cooldown, tx, || {
            let speed = if kmh.is_finite() {
                format!("{:.0} km/h", kmh)
            } else {
                "infinite speed".into()
            };
            let region = tx
                .region
                .as_deref()
                .map(|r| format!(" in region {r}"))
                .unwrap_or_default();
            Finding {
                severity: Severity::High,
                window_start: prev.ts,
                evidence: vec![prev.id.clone(), tx.event_id.clone()],
                score: ((kmh / self.max_speed_kmh) * 100.0).round().min(100_000.0) / 100.0,
                action: Action::LockCard,
                action_for: None,
                explanation: format!(
                    "{km:.0} km in {elapsed} ({speed}): ({:.4}, {:.4}) then ({:.4}, {:.4}){region}",
                    from.lat, from.lon, to.lat, to.lon
                ),
                features: Vec::new(),
                reason: None,
            }
        });
    }

    fn creates_state(&self, tx: &Transaction) -> bool {
        tx.is_swipe() && tx.geo.is_some() && tx.is_card_present()
    }

    fn horizon(&self) -> Millis {
        // Past this, any two points on Earth are reachable below the speed limit.
        let reachable =
            Millis((MAX_GREAT_CIRCLE_KM / self.max_speed_kmh * 3_600_000.0).ceil() as i64);
        reachable.max(self.cooldown)
    }

    fn heap_bytes(state: &ImpossibleTravelState) -> usize {
        state.last.as_ref().map_or(0, |f| f.id.heap_share())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{proptest_detector, run, tx};

    /// A point `km` east of (30°N, 120°E) along the parallel is awkward; along a meridian it is
    /// exact: one degree of latitude is 2πR/360 km.
    fn north_of_origin(km: f64) -> (f64, f64) {
        (
            30.0 + km / (EARTH_RADIUS_KM * std::f64::consts::PI / 180.0),
            120.0,
        )
    }

    fn pair(km: f64, seconds: i64) -> Vec<crate::testing::TxBuilder> {
        let (lat, lon) = north_of_origin(km);
        vec![
            tx("a", 0).geo(30.0, 120.0),
            tx("b", seconds * 1000).geo(lat, lon),
        ]
    }

    #[test]
    fn speed_boundary_899_vs_901_kmh() {
        // 450 km: 899 km/h takes 1802.0 s; 901 km/h takes 1798.0 s.
        assert!(run(ImpossibleTravel::NAME, pair(450.0, 1802)).is_empty());
        let alerts = run(ImpossibleTravel::NAME, pair(450.0, 1798));
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0]
                .explanation
                .starts_with("450 km in 29m58s (901 km/h)"),
            "{}",
            alerts[0].explanation
        );
    }

    #[test]
    fn distance_boundary_49_vs_51_km() {
        assert!(run(ImpossibleTravel::NAME, pair(49.0, 1)).is_empty());
        assert_eq!(run(ImpossibleTravel::NAME, pair(51.0, 1)).len(), 1);
    }

    #[test]
    fn same_instant_far_apart_is_infinite_speed() {
        let alerts = run(ImpossibleTravel::NAME, pair(1000.0, 0));
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].explanation.contains("infinite speed"));
        assert!(alerts[0].score.is_finite());
    }

    #[test]
    fn online_and_unplaced_swipes_are_skipped() {
        let (lat, lon) = north_of_origin(1000.0);
        let events = vec![
            tx("a", 0).geo(30.0, 120.0),
            tx("b", 1000)
                .geo(lat, lon)
                .channel(crate::model::Channel::Online),
            tx("c", 2000),
            tx("d", 3000).geo(30.0, 120.0),
        ];
        assert!(run(ImpossibleTravel::NAME, events).is_empty());
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // Beijing to Shanghai, about 1068 km.
        let bj = GeoPoint {
            lat: 39.9042,
            lon: 116.4074,
        };
        let sh = GeoPoint {
            lat: 31.2304,
            lon: 121.4737,
        };
        let d = haversine_km(bj, sh);
        assert!((d - 1067.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn passes_the_property_harness() {
        proptest_detector(ImpossibleTravel::NAME);
    }
}
