//! `replay --sweep detectors.<name>.<key>=v1,v2,…` (DESIGN §14): every operating point of one
//! numeric detector key scored in the same pass over the input.
//!
//! Each point is the swept detector alone, under the replay's configuration with the key set
//! to that value, run as extra stages beside the replay's own (so the file is read and decoded
//! once). Its alerts are scored against the input's labels like the replay's: alerts, event-level
//! precision and recall, card-level recall (cards with a fraud event that got an alert naming a
//! fraud event) and false alerts per 1,000 legitimate events. The replay's own output (alerts,
//! rejects) is that of the configuration as given; the sweep adds a table to the summary and a
//! curve to the report.

use std::collections::HashSet;

use swipeguard_detectors::{Alert, CardId, DetectorName, EngineConfig, EventId};

use super::scoring::Scoring;
use crate::config::Config;

/// Why a sweep cannot run; names the key.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("--sweep {0:?}: expected detectors.<name>.<key>=<value>,<value>,…")]
    Syntax(String),
    #[error("--sweep {key}: {message}")]
    Key { key: String, message: String },
}

/// The key swept and its values, as given.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub key: String,
    pub values: Vec<String>,
}

impl Sweep {
    pub fn parse(arg: &str) -> Result<Sweep, SweepError> {
        let syntax = || SweepError::Syntax(arg.to_string());
        let (key, values) = arg.split_once('=').ok_or_else(syntax)?;
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() || key.split('.').count() < 3 || !key.starts_with("detectors.") {
            return Err(syntax());
        }
        Ok(Sweep {
            key: key.trim().to_string(),
            values,
        })
    }

    /// The swept detector.
    pub fn detector(&self) -> Result<DetectorName, SweepError> {
        let name = self.key.split('.').nth(1).unwrap_or_default();
        DetectorName::parse(name).ok_or_else(|| SweepError::Key {
            key: self.key.clone(),
            message: format!("no detector is called {name:?}"),
        })
    }

    /// One engine configuration per value: `base` with the key set, only the swept detector on.
    pub fn configs(&self, base: &Config) -> Result<Vec<EngineConfig>, SweepError> {
        let detector = self.detector()?;
        let err = |message: String| SweepError::Key {
            key: self.key.clone(),
            message,
        };
        let path: Vec<&str> = self.key.split('.').skip(1).collect();
        let mut out = Vec::with_capacity(self.values.len());
        for value in &self.values {
            let number: f64 = value
                .parse()
                .map_err(|_| err(format!("{value:?} is not a number")))?;
            let mut table =
                toml::Value::try_from(&base.detectors).map_err(|e| err(e.to_string()))?;
            let mut at = &mut table;
            for (i, segment) in path.iter().enumerate() {
                let last = i + 1 == path.len();
                let t = at
                    .as_table_mut()
                    .ok_or_else(|| err("is not a table".into()))?;
                let Some(next) = t.get_mut(*segment) else {
                    return Err(err(format!("has no key {segment:?}")));
                };
                if last {
                    *next = match next {
                        toml::Value::Integer(_) if number.fract() == 0.0 => {
                            toml::Value::Integer(number as i64)
                        }
                        toml::Value::Integer(_) | toml::Value::Float(_) => {
                            toml::Value::Float(number)
                        }
                        _ => return Err(err("is not a numeric key".into())),
                    };
                }
                at = next;
            }
            let detectors: swipeguard_detectors::DetectorsConfig = table
                .try_into()
                .map_err(|e: toml::de::Error| err(e.to_string()))?;
            let mut engine = base.engine_config();
            engine.detectors = detectors.only(&[detector]);
            swipeguard_detectors::Engine::new(engine.clone())
                .map_err(|e| err(format!("{value}: {e}")))?;
            out.push(engine);
        }
        Ok(out)
    }
}

/// What one operating point's alerts came to.
#[derive(Clone, Debug, Default)]
pub struct Point {
    pub value: String,
    pub alerts: u64,
    pub true_alerts: u64,
    covered: HashSet<EventId, foldhash::fast::RandomState>,
    cards: HashSet<CardId, foldhash::fast::RandomState>,
}

impl Point {
    pub fn new(value: &str) -> Point {
        Point {
            value: value.to_string(),
            ..Point::default()
        }
    }

    /// Notes one alert of this point, judged by the replay's labels.
    pub fn record(&mut self, alert: &Alert, scoring: &Scoring) {
        self.alerts += 1;
        let mut fraud = false;
        for id in &alert.evidence {
            if scoring.is_fraud(id) {
                fraud = true;
                self.covered.insert(id.clone());
            }
        }
        if fraud {
            self.true_alerts += 1;
            self.cards.insert(alert.card_id.clone());
        }
    }
}

/// Reads one figure of a point (for the curve).
type Figure = fn(&PointFigures) -> Option<f64>;

/// A point's figures, once the input is read.
#[derive(Clone, Debug, PartialEq)]
pub struct PointFigures {
    pub value: String,
    pub alerts: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub card_recall: Option<f64>,
    pub false_per_1000: Option<f64>,
}

/// The sweep's result: the key and one row per value.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepReport {
    pub key: String,
    pub points: Vec<PointFigures>,
}

impl SweepReport {
    pub fn new(key: &str, points: &[Point], scoring: &Scoring) -> SweepReport {
        let labelled = scoring.has_labels();
        let fraud_events = scoring.fraud_events();
        let fraud_cards = scoring.fraud_cards();
        let legit = scoring.legit_events();
        let ratio = |n: u64, d: u64| (labelled && d > 0).then(|| n as f64 / d as f64);
        SweepReport {
            key: key.to_string(),
            points: points
                .iter()
                .map(|p| PointFigures {
                    value: p.value.clone(),
                    alerts: p.alerts,
                    precision: ratio(p.true_alerts, p.alerts),
                    recall: ratio(p.covered.len() as u64, fraud_events),
                    card_recall: ratio(p.cards.len() as u64, fraud_cards),
                    false_per_1000: ratio(1000 * (p.alerts - p.true_alerts), legit),
                })
                .collect(),
        }
    }
}

impl SweepReport {
    /// The curve for the report: precision, event recall and card recall (0–100 %) at each
    /// value, in the order given, with a table of every figure beneath.
    pub fn curve_svg(&self) -> String {
        use std::fmt::Write as _;
        let (w, h, left, bottom) = (640.0, 260.0, 40.0, 30.0);
        let plot_w = w - left - 20.0;
        let plot_h = h - bottom - 10.0;
        let n = self.points.len().max(1);
        let x = |i: usize| left + plot_w * (i as f64 + 0.5) / n as f64;
        let y = |v: f64| 10.0 + plot_h * (1.0 - v.clamp(0.0, 1.0));
        let mut svg = format!(
            r#"<svg id="sweep-curve" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="precision and recall per value of {}">"#,
            self.key
        );
        for tick in 0..=4 {
            let v = f64::from(tick) / 4.0;
            let _ = write!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{:.0}%</text>"##,
                w - 20.0,
                y(v),
                y(v),
                left - 4.0,
                y(v) + 3.0,
                v * 100.0
            );
        }
        let series: [(&str, &str, Figure); 3] = [
            ("precision", "#1f77b4", |p| p.precision),
            ("event recall", "#d62728", |p| p.recall),
            ("card recall", "#2ca02c", |p| p.card_recall),
        ];
        for (name, color, get) in series {
            let pts: Vec<String> = self
                .points
                .iter()
                .enumerate()
                .filter_map(|(i, p)| get(p).map(|v| format!("{:.1},{:.1}", x(i), y(v))))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline class="series" data-series="{name}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                pts.join(" ")
            );
        }
        for (i, p) in self.points.iter().enumerate() {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
                x(i),
                h - 12.0,
                p.value
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_parses_and_builds_one_configuration_per_value() {
        let s = Sweep::parse("detectors.off_pattern.alert_p_value=1e-4, 1e-3,1e-2").unwrap();
        assert_eq!(s.values, ["1e-4", "1e-3", "1e-2"]);
        let configs = s.configs(&Config::default()).unwrap();
        assert_eq!(configs.len(), 3);
        assert_eq!(configs[0].detectors.off_pattern.alert_p_value, 1e-4);
        assert_eq!(
            configs[2].detectors.enabled(),
            [DetectorName::parse("off_pattern").unwrap()]
        );
        let ints = Sweep::parse("detectors.rapid_fire.min_swipes=4,6")
            .unwrap()
            .configs(&Config::default())
            .unwrap();
        assert_eq!(ints[1].detectors.rapid_fire.min_swipes, 6);
    }

    #[test]
    fn a_bad_sweep_names_what_is_wrong() {
        assert!(Sweep::parse("alert_p_value=1").is_err());
        let err = |arg: &str| {
            Sweep::parse(arg)
                .and_then(|s| s.configs(&Config::default()))
                .unwrap_err()
                .to_string()
        };
        assert!(err("detectors.nope.x=1").contains("no detector is called"));
        assert!(err("detectors.off_pattern.nope=1").contains("has no key \"nope\""));
        assert!(err("detectors.off_pattern.alert_p_value=abc").contains("not a number"));
        assert!(err("detectors.off_pattern.alert_p_value=2")
            .contains("detectors.off_pattern.alert_p_value"));
    }
}
