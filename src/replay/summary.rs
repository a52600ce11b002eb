//! The end-of-replay summary an analyst reads on stderr, with hints at what went wrong in the
//! input: rows out of time order ([`LATE_HINT_SHARE`]), a vocabulary column its mapping did not
//! know ([`UNKNOWN_HINT_SHARE`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use swipeguard_detectors::{Counts, DetectorName, KeyKind, RejectReason, Severity};

use super::convert::unknown::{words, Unknowns};
use super::scoring::LabelReport;

/// From this share of late rows on, the summary suggests `--sort`.
pub const LATE_HINT_SHARE: f64 = 0.1;

/// From this share of a vocabulary field's non-empty values becoming `other` unknown on, the
/// summary names the values to map. At half, `other` is what the field mostly says: a column
/// mapped from the wrong codes, not the odd new value the vocabulary's `other` is there for.
pub const UNKNOWN_HINT_SHARE: f64 = 0.5;

/// Unknown values a hint names at most.
const HINT_VALUES: usize = 5;

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub files: Vec<String>,
    /// Rows read (events and rejects; with `group_by`, every row of a folded event).
    pub rows: u64,
    pub counts: Counts,
    /// Refusals by reason: rows the reader refused, and events a stage refused (late or
    /// duplicate for that stage).
    pub rejects: BTreeMap<RejectReason, u64>,
    /// Alerts by detector and severity.
    pub alerts: BTreeMap<(DetectorName, Severity), u64>,
    /// The stages that ran, in order.
    pub stages: Vec<KeyKind>,
    /// Keys each stage tracked at the end.
    pub tracked: Vec<(KeyKind, usize)>,
    pub state_bytes: usize,
    pub wall: Duration,
    pub labels: Option<LabelReport>,
    /// Where rejected rows were written, if any were.
    pub rejects_file: Option<String>,
    /// The operating points of `--sweep`, if one was asked for.
    pub sweep: Option<super::sweep::SweepReport>,
    /// off_pattern's configured `alert_p_value` (the report marks it on the score chart).
    pub alert_p_value: f64,
    /// `--reconfigure-at` changes applied: (rows before the change, configuration file).
    pub reconfigured: Vec<(u64, String)>,
    /// Vocabulary values the mapping did not know (CSV and mapped input).
    pub unknown: Unknowns,
}

impl Summary {
    pub fn total_rejects(&self) -> u64 {
        self.rejects.values().sum::<u64>()
    }

    pub fn total_alerts(&self) -> u64 {
        self.alerts.values().sum()
    }

    pub fn events_per_second(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Rows the reader refused (not JSON, bad values…), as opposed to events a stage refused.
    pub fn invalid(&self) -> u64 {
        self.rejects
            .iter()
            .filter(|(r, _)| !matches!(r, RejectReason::Late | RejectReason::Duplicate))
            .map(|(_, n)| n)
            .sum()
    }

    /// When a large share of the rows came out late, the input is most likely not in time order
    /// (an export sorted by card or by institution): say so and what to do.
    pub fn order_hint(&self) -> Option<String> {
        let first = self.stages.first().copied().unwrap_or(KeyKind::Card);
        let late = self.counts.stage(first).late;
        let share = late as f64 / self.rows.max(1) as f64;
        (share >= LATE_HINT_SHARE).then(|| {
            format!(
                "  note: {:.0}% of the rows came out late: the input is not in time order (sorted by card or institution?); replay it with --sort, or raise --allowed-lateness",
                share * 100.0
            )
        })
    }

    /// One line per vocabulary field whose values mostly became `other` because neither its
    /// map nor the vocabulary knew them: the share, the most frequent raw values, where to add
    /// them. Empty values (missing, or given a `default`) do not count.
    pub fn mapping_hints(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, t) in self.unknown.fields() {
            if t.seen == 0 || t.share() < UNKNOWN_HINT_SHARE {
                continue;
            }
            let (what, fix) = if t.mapped {
                ("were not in its map".to_string(), "add them to")
            } else {
                (
                    format!("are not {field} words ({})", words(field).join(", ")),
                    "map them to those words in",
                )
            };
            let top = t.top();
            let mut values: Vec<String> = top
                .iter()
                .take(HINT_VALUES)
                .map(|(v, n)| format!("{v:?} {}", thousands(*n)))
                .collect();
            let shown: u64 = top.iter().take(HINT_VALUES).map(|(_, n)| n).sum();
            if t.unknown > shown {
                values.push(format!("… {} more", thousands(t.unknown - shown)));
            }
            let values = if t.withheld {
                // Card hashing on: a mis-mapped column may be the card numbers (DESIGN §8).
                "not shown (card hashing is on and the column may hold card numbers)".to_string()
            } else {
                format!("most frequent: {}", values.join(", "))
            };
            out.push(format!(
                "  mapping: {:.0}% of {field} values {what} and became \"other\"; {values} — {fix} [fields.{field}.map]",
                t.share() * 100.0,
            ));
        }
        out
    }

    /// Keys tracked at the end by the stage of `kind`.
    pub fn tracked(&self, kind: KeyKind) -> usize {
        self.tracked
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

/// How a stage's keys are called in the summary.
fn keys_word(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Card => "cards",
        KeyKind::Terminal => "terminals",
        KeyKind::Account => "persons",
        KeyKind::TraceCode => "traceability codes",
    }
}

/// `1234567` → `1,234,567`
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "replayed {}: {} rows in {:.2} s ({} rows/s)",
            self.files.join(", "),
            thousands(self.rows),
            self.wall.as_secs_f64(),
            thousands(self.events_per_second() as u64)
        )?;
        for (position, name) in &self.reconfigured {
            writeln!(
                f,
                "  reconfigured after {} rows: {name}",
                thousands(*position)
            )?;
        }
        let first = self.stages.first().copied().unwrap_or(KeyKind::Card);
        let lead = c.stage(first);
        writeln!(
            f,
            "  events detected {}  late {}  duplicate {}  invalid {}",
            thousands(lead.released),
            thousands(lead.late),
            thousands(lead.duplicates),
            thousands(self.invalid())
        )?;
        if let Some(hint) = self.order_hint() {
            writeln!(f, "{hint}")?;
        }
        for hint in self.mapping_hints() {
            writeln!(f, "{hint}")?;
        }
        if self.stages.len() > 1 {
            let mut line = String::from("  stages:");
            for kind in &self.stages {
                let s = c.stage(*kind);
                let _ = write!(
                    line,
                    " {kind} {} events (late {}, duplicate {});",
                    thousands(s.released),
                    thousands(s.late),
                    thousands(s.duplicates)
                );
            }
            writeln!(f, "{}", line.trim_end_matches(';'))?;
        }
        if !self.rejects.is_empty() {
            let mut line = String::from("  rejects by reason:");
            for (r, n) in &self.rejects {
                let _ = write!(line, " {r} {}", thousands(*n));
            }
            writeln!(f, "{line}")?;
        }
        writeln!(f, "  alerts {}", thousands(self.total_alerts()))?;
        for d in DetectorName::all() {
            let by: Vec<String> = Severity::ALL
                .iter()
                .filter_map(|s| {
                    self.alerts
                        .get(&(d, *s))
                        .map(|n| format!("{s} {}", thousands(*n)))
                })
                .collect();
            let suppressed = c.suppressed[d.index()];
            let withheld = c.withheld[d.index()];
            if !by.is_empty() || suppressed > 0 || withheld > 0 {
                write!(
                    f,
                    "    {:<28} {:<32} suppressed {}",
                    d.as_str(),
                    by.join(", "),
                    thousands(suppressed)
                )?;
                if withheld > 0 {
                    write!(f, "  withheld by budget {}", thousands(withheld))?;
                }
                writeln!(f)?;
            }
        }
        let (idle, capacity) = c.stages.iter().fold((0, 0), |(i, k), s| {
            (i + s.evicted_idle, k + s.evicted_capacity)
        });
        let tracked: Vec<String> = self
            .stages
            .iter()
            .map(|k| format!("{} {}", keys_word(*k), thousands(self.tracked(*k) as u64)))
            .collect();
        writeln!(
            f,
            "  tracked at end: {} (about {:.1} MiB of state); evicted idle {}, at the ceiling {}",
            if tracked.is_empty() {
                "nothing".into()
            } else {
                tracked.join(", ")
            },
            self.state_bytes as f64 / 1_048_576.0,
            thousands(idle),
            thousands(capacity)
        )?;
        if let Some(l) = &self.labels {
            writeln!(
                f,
                "labels: {} fraud events, {} legitimate",
                thousands(l.fraud_events),
                thousands(l.legit_events)
            )?;
            writeln!(
                f,
                "  {:<28} {:>8} {:>10} {:>8}",
                "detector", "alerts", "precision", "recall"
            )?;
            for (d, q) in &l.per_detector {
                writeln!(
                    f,
                    "  {:<28} {:>8} {:>10} {:>8}",
                    d.as_str(),
                    thousands(q.alerts),
                    pct(q.precision()),
                    pct(q.recall())
                )?;
            }
            let o = &l.overall;
            writeln!(
                f,
                "  {:<28} {:>8} {:>10} {:>8}",
                "all detectors",
                thousands(o.alerts),
                pct(o.precision()),
                pct(o.recall())
            )?;
            writeln!(
                f,
                "  alert rate on legitimate events: {:.3} false alerts per 1,000; {:.3}% of them named in an alert",
                l.false_alerts_per_1000_legit,
                l.legit_events_in_alerts * 100.0
            )?;
            if !l.per_scenario.is_empty() {
                writeln!(
                    f,
                    "  recall by scenario (share of its events named by each detector's alerts):"
                )?;
                for (name, n, by, any) in &l.per_scenario {
                    let mut line = format!(
                        "    {:<22} {:>7} events  any {:>6}",
                        name,
                        thousands(*n),
                        pct(Some(*any as f64 / *n as f64))
                    );
                    for d in DetectorName::all() {
                        let k = by[d.index()];
                        if k > 0 {
                            let _ = write!(
                                line,
                                "  {} {}",
                                d.as_str(),
                                pct(Some(k as f64 / *n as f64))
                            );
                        }
                    }
                    writeln!(f, "{line}")?;
                }
            }
        }
        if let Some(sw) = &self.sweep {
            writeln!(
                f,
                "sweep of {} (that detector alone at each value):",
                sw.key
            )?;
            writeln!(
                f,
                "  {:>12} {:>8} {:>10} {:>8} {:>12} {:>16}",
                "value", "alerts", "precision", "recall", "card recall", "false per 1,000"
            )?;
            for p in &sw.points {
                writeln!(
                    f,
                    "  {:>12} {:>8} {:>10} {:>8} {:>12} {:>16}",
                    p.value,
                    thousands(p.alerts),
                    pct(p.precision),
                    pct(p.recall),
                    pct(p.card_recall),
                    p.false_per_1000
                        .map_or_else(|| "-".into(), |v| format!("{v:.2}"))
                )?;
            }
        }
        if let Some(path) = &self.rejects_file {
            writeln!(f, "rejected rows written to {path}")?;
        }
        Ok(())
    }
}
