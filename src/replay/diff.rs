//! `swipeguard diff --config A.toml --config B.toml FILE…` (DESIGN §14): what a configuration
//! change would have caught, and what it would have cost, from one pass over the input.
//!
//! The input is read and decoded once, under A's `[ingest]` settings (B's must be the same, else
//! the alerts could not be told apart by id); A's engine runs as replay's own and B's engine as
//! further stages beside it, each under its own `[engine]` and `[detectors]`. Alerts are matched
//! by `alert_id` (detector, subject, first evidence): an alert present on both sides is "both"
//! even when its body differs (a changed threshold changes `detector_version` and the score).
//!
//! Per detector: alerts only in A, only in B, in both. With labels, per side: alerts, precision
//! (alerts naming a fraud event / alerts) and recall (fraud events named / fraud events); and
//! what B gains and loses against A: fraud events only B's alerts name, fraud events only A's
//! name, and false alerts (naming no fraud event) only in B and only in A. `--out` writes the
//! differing alerts as JSONL, each alert with `"side":"a"` or `"side":"b"` added; `--report`
//! draws the table as a self-contained page.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::Path;

use swipeguard_detectors::{Alert, DetectorName, EventId};

use super::scoring::Scoring;
use super::summary::Summary;
use super::{io_err, ReplayError, ReplayOptions};
use crate::config::Config;
use crate::encode::encode_alert;

/// Both sides' alerts, in output order.
#[derive(Clone, Debug, Default)]
pub struct Sides {
    pub a: Vec<Alert>,
    pub b: Vec<Alert>,
}

/// Why a diff cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{key} differs between the two configurations: the input is decoded once, so both must read it alike")]
    IngestDiffers { key: String },
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// One side's alerts of one detector against the labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SideQuality {
    pub alerts: u64,
    /// Alerts naming at least one fraud event.
    pub true_alerts: u64,
    /// Fraud events named by the side's alerts.
    pub fraud_named: u64,
}

impl SideQuality {
    pub fn precision(&self) -> Option<f64> {
        (self.alerts > 0).then(|| self.true_alerts as f64 / self.alerts as f64)
    }
}

/// The comparison for one detector (or all of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DetectorDiff {
    pub only_a: u64,
    pub only_b: u64,
    pub both: u64,
    pub a: SideQuality,
    pub b: SideQuality,
    /// Fraud events only B's alerts name / only A's alerts name.
    pub gained: u64,
    pub lost: u64,
    /// Alerts naming no fraud event, only in B / only in A.
    pub false_only_b: u64,
    pub false_only_a: u64,
}

/// The whole comparison.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    pub a_name: String,
    pub b_name: String,
    pub per_detector: BTreeMap<DetectorName, DetectorDiff>,
    pub all: DetectorDiff,
    /// Fraud events in the input, when it has labels.
    pub fraud_events: Option<u64>,
    pub summary: Summary,
}

/// Names the first `[ingest]` key whose value differs, if any.
fn ingest_difference(a: &Config, b: &Config) -> Option<String> {
    let (Ok(ta), Ok(tb)) = (
        toml::Value::try_from(&a.ingest),
        toml::Value::try_from(&b.ingest),
    ) else {
        return Some("ingest".into());
    };
    let (Some(ta), Some(tb)) = (ta.as_table(), tb.as_table()) else {
        return (ta != tb).then(|| "ingest".into());
    };
    let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .find(|k| ta.get(*k) != tb.get(*k))
        .map(|k| format!("ingest.{k}"))
}

/// Replays `opts`' input once under both configurations and compares their alerts.
pub fn diff(
    a: &Config,
    b: &Config,
    names: (&str, &str),
    opts: &ReplayOptions,
) -> Result<(Diff, Sides), DiffError> {
    if let Some(key) = ingest_difference(a, b) {
        return Err(DiffError::IngestDiffers { key });
    }
    let mut opts = opts.clone();
    opts.compare = Some(b.engine_config());
    opts.sweep = None;
    opts.report = None;
    let run = super::run(a, &opts, &mut std::io::sink())?;
    let sides = run.sides.unwrap_or_default();
    let mut d = compare(&sides, &run.scoring);
    d.a_name = names.0.to_string();
    d.b_name = names.1.to_string();
    d.summary = run.summary;
    Ok((d, sides))
}

/// Fraud events named by `alerts`.
fn fraud_named<'a>(alerts: impl Iterator<Item = &'a Alert>, scoring: &Scoring) -> HashSet<EventId> {
    alerts
        .flat_map(|a| a.evidence.iter())
        .filter(|id| scoring.is_fraud(id))
        .cloned()
        .collect()
}

fn names_fraud(a: &Alert, scoring: &Scoring) -> bool {
    a.evidence.iter().any(|id| scoring.is_fraud(id))
}

/// Counts per detector and overall; pure (the labels come in `scoring`).
pub fn compare(sides: &Sides, scoring: &Scoring) -> Diff {
    let labels = scoring.has_labels();
    let mut d = Diff {
        fraud_events: labels.then(|| scoring.fraud_events()),
        ..Diff::default()
    };
    let mut detectors: Vec<DetectorName> =
        sides.a.iter().chain(&sides.b).map(|a| a.detector).collect();
    detectors.sort();
    detectors.dedup();
    let ids = |v: &[Alert]| -> HashSet<String> { v.iter().map(|a| a.alert_id.0.clone()).collect() };
    let (ids_a, ids_b) = (ids(&sides.a), ids(&sides.b));
    let one = |pick: &dyn Fn(&Alert) -> bool| -> DetectorDiff {
        let a: Vec<&Alert> = sides.a.iter().filter(|x| pick(x)).collect();
        let b: Vec<&Alert> = sides.b.iter().filter(|x| pick(x)).collect();
        let only_a: Vec<&Alert> = a
            .iter()
            .copied()
            .filter(|x| !ids_b.contains(&x.alert_id.0))
            .collect();
        let only_b: Vec<&Alert> = b
            .iter()
            .copied()
            .filter(|x| !ids_a.contains(&x.alert_id.0))
            .collect();
        let named_a = fraud_named(a.iter().copied(), scoring);
        let named_b = fraud_named(b.iter().copied(), scoring);
        let side = |v: &[&Alert], named: &HashSet<EventId>| SideQuality {
            alerts: v.len() as u64,
            true_alerts: v.iter().filter(|x| names_fraud(x, scoring)).count() as u64,
            fraud_named: named.len() as u64,
        };
        DetectorDiff {
            only_a: only_a.len() as u64,
            only_b: only_b.len() as u64,
            both: (a.len() - only_a.len()) as u64,
            a: side(&a, &named_a),
            b: side(&b, &named_b),
            gained: named_b.difference(&named_a).count() as u64,
            lost: named_a.difference(&named_b).count() as u64,
            false_only_b: if labels {
                only_b.iter().filter(|x| !names_fraud(x, scoring)).count() as u64
            } else {
                0
            },
            false_only_a: if labels {
                only_a.iter().filter(|x| !names_fraud(x, scoring)).count() as u64
            } else {
                0
            },
        }
    };
    for det in detectors {
        d.per_detector
            .insert(det, one(&|x: &Alert| x.detector == det));
    }
    d.all = one(&|_| true);
    d
}

fn alert_ids(v: &[Alert]) -> HashSet<&str> {
    v.iter().map(|a| a.alert_id.0.as_str()).collect()
}

/// Writes the alerts only one side raised, tagged with their side, A's first.
pub fn write_differing(sides: &Sides, out: &mut dyn Write) -> std::io::Result<()> {
    let (ids_a, ids_b) = (alert_ids(&sides.a), alert_ids(&sides.b));
    let mut buf = Vec::new();
    for (side, alerts, other) in [("a", &sides.a, &ids_b), ("b", &sides.b, &ids_a)] {
        for alert in alerts
            .iter()
            .filter(|x| !other.contains(x.alert_id.0.as_str()))
        {
            buf.clear();
            encode_alert(alert, &mut buf);
            // The encoder writes one object and a newline: the tag goes before its brace.
            while buf.last().is_some_and(|b| b.is_ascii_whitespace()) {
                buf.pop();
            }
            buf.pop();
            out.write_all(&buf)?;
            writeln!(out, r#","side":"{side}"}}"#)?;
        }
    }
    out.flush()
}

fn pct(p: Option<f64>) -> String {
    p.map_or("—".into(), |p| format!("{:.1}%", 100.0 * p))
}

fn recall(q: &SideQuality, fraud: u64) -> Option<f64> {
    (fraud > 0).then(|| q.fraud_named as f64 / fraud as f64)
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "diff: A = {}, B = {} ({} rows, one pass)",
            self.a_name, self.b_name, self.summary.rows
        )?;
        writeln!(
            f,
            "  {:<28} {:>9} {:>9} {:>9}",
            "detector", "only A", "only B", "both"
        )?;
        let rows = self
            .per_detector
            .iter()
            .map(|(d, x)| (d.as_str(), x))
            .chain(std::iter::once(("all detectors", &self.all)));
        for (name, x) in rows.clone() {
            writeln!(
                f,
                "  {name:<28} {:>9} {:>9} {:>9}",
                x.only_a, x.only_b, x.both
            )?;
        }
        let Some(fraud) = self.fraud_events else {
            return writeln!(f, "  (no labels: precision and recall cannot be measured)");
        };
        writeln!(f, "labels: {fraud} fraud events; B against A")?;
        writeln!(
            f,
            "  {:<28} {:>11} {:>11} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
            "detector",
            "precision A",
            "precision B",
            "recall A",
            "recall B",
            "gains",
            "loses",
            "+false",
            "-false"
        )?;
        for (name, x) in rows {
            writeln!(
                f,
                "  {name:<28} {:>11} {:>11} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
                pct(x.a.precision()),
                pct(x.b.precision()),
                pct(recall(&x.a, fraud)),
                pct(recall(&x.b, fraud)),
                x.gained,
                x.lost,
                x.false_only_b,
                x.false_only_a
            )?;
        }
        writeln!(
            f,
            "  gains/loses: fraud events only B's / only A's alerts name; +false/-false: false alerts only in B / only in A"
        )
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The comparison as one self-contained page: the table and a bar per side and detector.
pub fn render_html(d: &Diff) -> String {
    let max = d
        .per_detector
        .values()
        .map(|x| x.only_a.max(x.only_b).max(x.both))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bar = |n: u64, colour: &str| {
        format!(
            r#"<svg width="160" height="12"><rect width="{:.1}" height="12" fill="{colour}"/></svg> {n}"#,
            160.0 * n as f64 / max
        )
    };
    let mut rows = String::new();
    for (det, x) in &d.per_detector {
        let quality = match d.fraud_events {
            Some(fraud) => format!(
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                pct(x.a.precision()),
                pct(x.b.precision()),
                pct(recall(&x.a, fraud)),
                pct(recall(&x.b, fraud)),
                x.gained,
                x.lost
            ),
            None => String::new(),
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{quality}</tr>\n",
            escape(det.as_str()),
            bar(x.only_a, "#1f77b4"),
            bar(x.only_b, "#d62728"),
            bar(x.both, "#7f7f7f"),
        ));
    }
    let quality_head = if d.fraud_events.is_some() {
        "<th>precision A</th><th>precision B</th><th>recall A</th><th>recall B</th><th>B gains</th><th>B loses</th>"
    } else {
        ""
    };
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>swipeguard diff</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:left}}</style></head>
<body><h1>A = {a}, B = {b}</h1><p>{rows_read} rows, one pass. Alerts matched by id.</p>
<table id="diff"><tr><th>detector</th><th>only A</th><th>only B</th><th>both</th>{quality_head}</tr>
{rows}</table></body></html>
"#,
        a = escape(&d.a_name),
        b = escape(&d.b_name),
        rows_read = d.summary.rows,
    )
}

/// Writes `index.html` into `dir`.
pub fn write_report(dir: &Path, d: &Diff) -> Result<(), ReplayError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir.display().to_string()))?;
    let path = dir.join(super::report::PAGE);
    std::fs::write(&path, render_html(d)).map_err(io_err(path.display().to_string()))
}
