//! What a replay found, measured against the labels of the input when it has them.
//!
//! An event labelled anything but `legit` (case-insensitive) is fraud; its label names its
//! scenario. Per detector, at the event level: an alert is a true positive when any of its
//! evidence events is fraud (precision = true positives / alerts); recall = fraud events that
//! appear in the evidence of some alert of the detector / all fraud events. The same for all
//! detectors together, per scenario, and the alert rate on legitimate events.
//!
//! Only fraud events are remembered one by one (they are few); legitimate events are counted,
//! and an evidence event that is not fraud is taken as legitimate when the input is labelled.

use std::collections::{BTreeMap, HashMap, HashSet};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use swipeguard_detectors::registry::MAX_DETECTORS;
use swipeguard_detectors::{
    Alert, CardId, DetectorName, EventId, EventTime, PerDetector, Severity, Transaction,
};

/// One alert as the report needs it.
#[derive(Clone, Debug)]
pub struct AlertRow {
    pub ts: EventTime,
    pub detector: DetectorName,
    pub severity: Severity,
    pub score: f64,
    /// Some evidence is labelled fraud (`None` when the input has no labels).
    pub true_positive: Option<bool>,
    pub card: CardId,
}

/// A labelled event: which label, and which detectors' alerts name it (bit per detector).
#[derive(Clone, Copy, Debug)]
struct Labelled {
    label: u16,
    covered: u16,
}

#[derive(Debug, Default)]
pub struct Scoring {
    label_names: Vec<String>,
    label_index: HashMap<String, u16>,
    /// Fraud events by id.
    fraud: FastMap<EventId, Labelled>,
    legit_events: u64,
    /// Non-fraud events named in some alert.
    legit_in_alerts: HashSet<EventId, foldhash::fast::RandomState>,
    /// Cards with at least one fraud event (for card-level recall).
    fraud_cards: HashSet<CardId, foldhash::fast::RandomState>,
    /// Every scored event's off_pattern score, binned, fraud and legitimate apart.
    pub scores: ScoreHistogram,
    pub unlabelled_events: u64,
    pub alerts: Vec<AlertRow>,
}

/// Precision and recall of one detector (or of all together).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    pub alerts: u64,
    pub true_positives: u64,
    pub fraud_events_covered: u64,
    pub fraud_events: u64,
}

impl Quality {
    pub fn precision(&self) -> Option<f64> {
        (self.alerts > 0).then(|| self.true_positives as f64 / self.alerts as f64)
    }

    pub fn recall(&self) -> Option<f64> {
        (self.fraud_events > 0).then(|| self.fraud_events_covered as f64 / self.fraud_events as f64)
    }
}

/// The labelled view of a replay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelReport {
    pub fraud_events: u64,
    pub legit_events: u64,
    pub per_detector: Vec<(DetectorName, Quality)>,
    pub overall: Quality,
    /// Alerts with no fraud evidence, per 1 000 legitimate events.
    pub false_alerts_per_1000_legit: f64,
    /// Share of legitimate events named in some alert's evidence.
    pub legit_events_in_alerts: f64,
    /// Per scenario: its events and, per detector, how many of them some alert names.
    pub per_scenario: Vec<(String, u64, PerDetector, u64)>,
}

fn is_fraud(label: &str) -> bool {
    !label.eq_ignore_ascii_case("legit")
}

/// Scores (−log10 p) binned by [`ScoreHistogram::BIN`] from 0 to [`ScoreHistogram::TOP`] (the
/// last bin takes everything above).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoreHistogram {
    pub fraud: Vec<u64>,
    pub legit: Vec<u64>,
}

impl ScoreHistogram {
    pub const BIN: f64 = 0.5;
    pub const TOP: f64 = 20.0;

    fn add(&mut self, value: f64, fraud: bool) {
        let bins = (Self::TOP / Self::BIN) as usize;
        if self.fraud.is_empty() {
            self.fraud = vec![0; bins];
            self.legit = vec![0; bins];
        }
        let b = ((value.max(0.0) / Self::BIN) as usize).min(bins - 1);
        if fraud {
            self.fraud[b] += 1;
        } else {
            self.legit[b] += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fraud.iter().chain(&self.legit).all(|n| *n == 0)
    }
}

impl Scoring {
    /// Notes one event's off_pattern score (alert or not).
    pub fn record_score(&mut self, score: &swipeguard_detectors::Score) {
        let fraud = self.fraud.contains_key(&score.event);
        self.scores.add(score.value, fraud);
    }

    /// Notes an input event's label (before the engine sees it).
    pub fn observe(&mut self, tx: &Transaction) {
        let Some(label) = tx.label.as_deref() else {
            self.unlabelled_events += 1;
            return;
        };
        if !is_fraud(label) {
            self.legit_events += 1;
            return;
        }
        let index = match self.label_index.get(label) {
            Some(i) => *i,
            None => {
                let i = self.label_names.len() as u16;
                self.label_names.push(label.to_string());
                self.label_index.insert(label.to_string(), i);
                i
            }
        };
        self.fraud.insert(
            tx.event_id.clone(),
            Labelled {
                label: index,
                covered: 0,
            },
        );
        self.fraud_cards.insert(tx.card_id.clone());
    }

    /// Whether the event is labelled fraud.
    pub fn is_fraud(&self, id: &EventId) -> bool {
        self.fraud.contains_key(id)
    }

    pub fn fraud_events(&self) -> u64 {
        self.fraud.len() as u64
    }

    /// Cards with at least one fraud event.
    pub fn fraud_cards(&self) -> u64 {
        self.fraud_cards.len() as u64
    }

    pub fn legit_events(&self) -> u64 {
        self.legit_events
    }

    pub fn has_labels(&self) -> bool {
        self.legit_events + self.fraud.len() as u64 > 0
    }

    /// Notes an alert: marks its evidence covered and keeps a row for the report.
    pub fn record(&mut self, alert: &Alert) {
        let bit = 1u16 << alert.detector.index();
        let mut fraud = false;
        for id in &alert.evidence {
            match self.fraud.get_mut(id) {
                Some(l) => {
                    l.covered |= bit;
                    fraud = true;
                }
                None => {
                    self.legit_in_alerts.insert(id.clone());
                }
            }
        }
        self.alerts.push(AlertRow {
            ts: alert.ts,
            detector: alert.detector,
            severity: alert.severity,
            score: alert.score,
            true_positive: self.has_labels().then_some(fraud),
            card: alert.card_id.clone(),
        });
    }

    pub fn report(&self) -> LabelReport {
        let mut r = LabelReport {
            legit_events: self.legit_events,
            ..LabelReport::default()
        };
        let mut per: [Quality; MAX_DETECTORS] = std::array::from_fn(|_| Quality::default());
        let legit_covered = self.legit_in_alerts.len() as u64;
        let mut scenarios: BTreeMap<u16, (u64, PerDetector, u64)> = BTreeMap::new();
        for l in self.fraud.values() {
            {
                r.fraud_events += 1;
                let s = scenarios.entry(l.label).or_default();
                s.0 += 1;
                for (d, q) in per.iter_mut().enumerate() {
                    q.fraud_events += 1;
                    if l.covered & (1 << d) != 0 {
                        q.fraud_events_covered += 1;
                        s.1[d] += 1;
                    }
                }
                r.overall.fraud_events += 1;
                if l.covered != 0 {
                    r.overall.fraud_events_covered += 1;
                    s.2 += 1;
                }
            }
        }
        let mut false_alerts = 0u64;
        for a in &self.alerts {
            let q = &mut per[a.detector.index()];
            q.alerts += 1;
            r.overall.alerts += 1;
            if a.true_positive == Some(true) {
                q.true_positives += 1;
                r.overall.true_positives += 1;
            } else {
                false_alerts += 1;
            }
        }
        r.per_detector = DetectorName::all()
            .map(|d| (d, per[d.index()].clone()))
            .collect();
        if r.legit_events > 0 {
            r.false_alerts_per_1000_legit = false_alerts as f64 * 1000.0 / r.legit_events as f64;
            r.legit_events_in_alerts = legit_covered as f64 / r.legit_events as f64;
        }
        r.per_scenario = scenarios
            .into_iter()
            .map(|(label, (n, by, any))| (self.label_names[label as usize].clone(), n, by, any))
            .collect();
        r
    }
}
