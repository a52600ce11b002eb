//! What the report's drill-down holds: which alerts its table lists, whose timelines it carries,
//! and which events each timeline shows. The page itself is drawn by [`super::timeline`].
//!
//! **Alerts.** During the replay every alert the configuration raises is noted (sweep points'
//! alerts are not). The table keeps the [`TABLE_ALERTS`] first by rank — most severe first, then
//! newest, then alert id — and says how many it left out.
//!
//! **Subjects.** Timelines are kept for at most [`SUBJECTS`] subjects (cards, terminals,
//! persons, traceability codes), most-alerted first (ties: the better-ranked alert, then kind and
//! id). Each timeline is drawn around at most [`WINDOWS_PER_SUBJECT`] of the subject's alerts,
//! its best-ranked ones; the page says how many alerts the subject has in all.
//!
//! **Events.** A subject's events are the input's events carrying its key, as the stages key
//! them (`for_each_key`: the card; the terminal, else the merchant; the account; any traceability
//! code of an item not sold in parts), in (event time, event id) order — the order the stages
//! release them in, whatever the file order. Around each alert the timeline holds the
//! [`AT_OR_BEFORE`] latest events at or before the alert's time (the triggering event and the
//! ones before it) and the [`AFTER`] earliest after it, plus every evidence event of the
//! subject's shown alerts however far away (a resold code's first sale may be a year earlier).
//! Events are taken as the input has them: rows the stages refused as late or duplicate are
//! shown, invalid rows are not; an event id seen twice at the same time is shown once.
//!
//! **Memory.** Events are never all kept. During the replay the drill-down holds one tally per
//! alerted subject with its best-ranked alerts (at most twice [`WINDOWS_PER_SUBJECT`]: they are
//! trimmed in bulk) and the best-ranked table rows (at most twice [`TABLE_ALERTS`]). After
//! detection, a second pass reads the inputs again (through the same reader, so mappings and
//! card hashing apply alike) and keeps, per window, only its nearest events: memory is bounded
//! by subjects × windows × (before + after) plus the evidence, whatever the input's size. The
//! pass costs about one more read of the input, outside the summary's time. An input that is
//! not a regular file (standard input, a pipe) cannot be read twice: the report then lists the
//! alerts and says that timelines are unavailable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use swipeguard_detectors::stage::for_each_key;
use swipeguard_detectors::{
    Alert, AmountMinor, CardId, DeclineReason, DetectorName, EventId, EventTime, EventType,
    FeatureSurprise, KeyKind, Outcome, Severity, Subject, Text, Transaction,
};

use super::mapping::MappingFile;
use super::{read, ReplayError, ReplayOptions};
use crate::config::Config;

/// Rows of the alerts table at most.
pub const TABLE_ALERTS: usize = 2_000;
/// Subjects with a timeline at most.
pub const SUBJECTS: usize = 500;
/// Alerts a timeline is drawn around at most.
pub const WINDOWS_PER_SUBJECT: usize = 10;
/// Events at or before an alert's time kept around it (the trigger and ten before it).
pub const AT_OR_BEFORE: usize = 11;
/// Events after an alert's time kept around it.
pub const AFTER: usize = 10;

// An event's windows are bits of a u16 (`EventRow::windows`).
const _: () = assert!(WINDOWS_PER_SUBJECT <= u16::BITS as usize);

/// One alert as the drill-down shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertNote {
    pub alert_id: String,
    pub ts: EventTime,
    pub detector: DetectorName,
    pub severity: Severity,
    pub score: f64,
    pub subject: Subject,
    pub reason: Option<String>,
    pub explanation: String,
    pub evidence: Vec<EventId>,
    pub features: Vec<FeatureSurprise>,
    /// Some evidence is labelled fraud (`None` when the input has no labels).
    pub true_positive: Option<bool>,
}

impl AlertNote {
    pub fn new(alert: &Alert, true_positive: Option<bool>) -> AlertNote {
        AlertNote {
            alert_id: alert.alert_id.0.clone(),
            ts: alert.ts,
            detector: alert.detector,
            severity: alert.severity,
            score: alert.score,
            subject: alert.subject.clone(),
            reason: alert.reason.as_deref().map(String::from),
            explanation: alert.explanation.clone(),
            evidence: alert.evidence.clone(),
            features: alert.features.clone(),
            true_positive,
        }
    }

    /// Greater is shown first: most severe, then newest, then by id (for a fixed order).
    fn rank(&self) -> (Severity, EventTime, &str) {
        (self.severity, self.ts, &self.alert_id)
    }
}

/// Sorts best-ranked first and keeps `n`.
fn keep_best(notes: &mut Vec<AlertNote>, n: usize) {
    notes.sort_by(|a, b| b.rank().cmp(&a.rank()));
    notes.truncate(n);
}

#[derive(Debug, Default)]
struct Tally {
    alerts: u64,
    /// Best-ranked first once [`Recorder::plan`] has sorted them; at most
    /// [`WINDOWS_PER_SUBJECT`] after every trim.
    kept: Vec<AlertNote>,
}

/// Notes the alerts of a replay as they are made.
#[derive(Debug, Default)]
pub struct Recorder {
    table: Vec<AlertNote>,
    subjects: HashMap<Subject, Tally>,
    total: u64,
}

impl Recorder {
    pub fn record(&mut self, note: AlertNote) {
        self.total += 1;
        let tally = self.subjects.entry(note.subject.clone()).or_default();
        tally.alerts += 1;
        tally.kept.push(note.clone());
        // Trimmed in bulk, so that noting an alert costs O(1) amortised.
        if tally.kept.len() >= 2 * WINDOWS_PER_SUBJECT {
            keep_best(&mut tally.kept, WINDOWS_PER_SUBJECT);
        }
        self.table.push(note);
        if self.table.len() >= 2 * TABLE_ALERTS {
            keep_best(&mut self.table, TABLE_ALERTS);
        }
    }

    /// The table and the subjects to draw, by the rules of the module doc.
    pub fn plan(self) -> Plan {
        let Recorder {
            mut table,
            subjects,
            total,
        } = self;
        keep_best(&mut table, TABLE_ALERTS);
        let alerted_subjects = subjects.len();
        let mut chosen: Vec<SubjectPlan> = subjects
            .into_iter()
            .map(|(subject, mut t)| {
                keep_best(&mut t.kept, WINDOWS_PER_SUBJECT);
                SubjectPlan {
                    subject,
                    alerts: t.alerts,
                    shown: t.kept,
                }
            })
            .collect();
        chosen.sort_by(|a, b| {
            b.alerts
                .cmp(&a.alerts)
                .then_with(|| best(b).cmp(&best(a)))
                .then_with(|| a.subject.cmp(&b.subject))
        });
        chosen.truncate(SUBJECTS);
        Plan {
            table_left_out: total.saturating_sub(table.len() as u64),
            table,
            total_alerts: total,
            subjects_left_out: alerted_subjects - chosen.len(),
            subjects: chosen,
        }
    }
}

fn best(s: &SubjectPlan) -> Option<(Severity, EventTime, &str)> {
    s.shown.first().map(AlertNote::rank)
}

/// A subject whose timeline the report carries.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectPlan {
    pub subject: Subject,
    /// All its alerts, shown or not.
    pub alerts: u64,
    /// The alerts its timeline is drawn around, best-ranked first.
    pub shown: Vec<AlertNote>,
}

/// What the drill-down shows, before its events are read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Best-ranked first.
    pub table: Vec<AlertNote>,
    pub table_left_out: u64,
    pub total_alerts: u64,
    /// Most-alerted first.
    pub subjects: Vec<SubjectPlan>,
    pub subjects_left_out: usize,
}

/// One event as a timeline shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub id: EventId,
    pub ts: EventTime,
    pub card: CardId,
    pub amount: AmountMinor,
    pub merchant: Text,
    pub outcome: Outcome,
    pub decline_reason: Option<DeclineReason>,
    pub event_type: EventType,
    pub label: Option<Text>,
    /// Bit `i`: the event is in the window of the subject's `i`-th shown alert (0: it is there
    /// as evidence only).
    pub windows: u16,
}

impl EventRow {
    pub fn new(tx: &Transaction) -> EventRow {
        EventRow {
            id: tx.event_id.clone(),
            ts: tx.ts,
            card: tx.card_id.clone(),
            amount: tx.amount,
            merchant: tx.merchant_id.clone(),
            outcome: tx.outcome,
            decline_reason: tx.decline_reason,
            event_type: tx.event_type(),
            label: tx.label.clone(),
            windows: 0,
        }
    }

    fn key(&self) -> (EventTime, &EventId) {
        (self.ts, &self.id)
    }
}

/// The events nearest one alert's time among a subject's, offered in any order.
#[derive(Clone, Debug)]
pub struct Window {
    at: EventTime,
    /// Ascending; the latest [`AT_OR_BEFORE`] at or before `at`.
    before: Vec<EventRow>,
    /// Ascending; the earliest [`AFTER`] after `at`.
    after: Vec<EventRow>,
}

impl Window {
    pub fn new(at: EventTime) -> Window {
        Window {
            at,
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    /// Keeps the event if it is among the nearest so far; `row` is built only then.
    pub fn offer(&mut self, key: (EventTime, &EventId), row: impl FnOnce() -> EventRow) {
        let (side, cap, keep_high) = if key.0 <= self.at {
            (&mut self.before, AT_OR_BEFORE, true)
        } else {
            (&mut self.after, AFTER, false)
        };
        let Err(pos) = side.binary_search_by(|r| r.key().cmp(&key)) else {
            return; // the same event again
        };
        if side.len() == cap {
            // Full: an event beyond the far end changes nothing.
            if (keep_high && pos == 0) || (!keep_high && pos == cap) {
                return;
            }
            side.insert(pos, row());
            if keep_high {
                side.remove(0);
            } else {
                side.pop();
            }
        } else {
            side.insert(pos, row());
        }
    }

    /// Its events, ascending.
    pub fn events(&self) -> impl Iterator<Item = &EventRow> {
        self.before.iter().chain(&self.after)
    }
}

/// One subject's events being gathered.
#[derive(Debug)]
struct Gathering {
    windows: Vec<Window>,
    evidence: HashSet<EventId>,
    evidence_rows: BTreeMap<(EventTime, EventId), EventRow>,
}

impl Gathering {
    fn offer(&mut self, tx: &Transaction) {
        let key = (tx.ts, &tx.event_id);
        for w in &mut self.windows {
            w.offer(key, || EventRow::new(tx));
        }
        if self.evidence.contains(&tx.event_id) {
            self.evidence_rows
                .entry((tx.ts, tx.event_id.clone()))
                .or_insert_with(|| EventRow::new(tx));
        }
    }

    /// The windows merged with the evidence, ascending, each event once.
    fn finish(self) -> Vec<EventRow> {
        let mut all: BTreeMap<(EventTime, EventId), EventRow> = self.evidence_rows;
        for (i, w) in self.windows.iter().enumerate() {
            for e in w.events() {
                all.entry((e.ts, e.id.clone()))
                    .or_insert_with(|| e.clone())
                    .windows |= 1 << i;
            }
        }
        all.into_values().collect()
    }
}

/// Gathers the planned subjects' events from a stream of events.
#[derive(Debug)]
pub struct Collector {
    /// Per key kind (by index): key → position in `subjects`.
    wanted: [HashMap<Text, usize>; KeyKind::COUNT],
    subjects: Vec<Gathering>,
}

impl Collector {
    pub fn new(plan: &Plan) -> Collector {
        let mut wanted: [HashMap<Text, usize>; KeyKind::COUNT] = Default::default();
        let subjects = plan
            .subjects
            .iter()
            .enumerate()
            .map(|(i, s)| {
                wanted[s.subject.kind.index()].insert(s.subject.id.clone(), i);
                Gathering {
                    windows: s.shown.iter().map(|a| Window::new(a.ts)).collect(),
                    evidence: s.shown.iter().flat_map(|a| a.evidence.clone()).collect(),
                    evidence_rows: BTreeMap::new(),
                }
            })
            .collect();
        Collector { wanted, subjects }
    }

    pub fn offer(&mut self, tx: &Transaction) {
        for kind in KeyKind::ALL {
            let wanted = &self.wanted[kind.index()];
            if wanted.is_empty() {
                continue;
            }
            let subjects = &mut self.subjects;
            for_each_key(*kind, tx, |key| {
                if let Some(&i) = wanted.get(key) {
                    subjects[i].offer(tx);
                }
            });
        }
    }

    /// Each planned subject's events, ascending, in the plan's order.
    pub fn finish(self) -> Vec<Vec<EventRow>> {
        self.subjects.into_iter().map(Gathering::finish).collect()
    }
}

/// The drill-down as the page draws it.
#[derive(Debug)]
pub struct DrillDown {
    pub plan: Plan,
    /// Per planned subject its events; or why there are none (the input cannot be re-read).
    pub timelines: Result<Vec<Vec<EventRow>>, String>,
}

/// Why the inputs cannot be read a second time, if they cannot.
pub fn not_rereadable(files: &[PathBuf]) -> Option<String> {
    // No file: the bundled sample, which is in memory.
    files.iter().find_map(|p| {
        let regular = std::fs::metadata(p).is_ok_and(|m| m.is_file());
        (!regular).then(|| {
            format!(
                "{} is not a regular file (standard input or a pipe) and cannot be read a second time",
                p.display()
            )
        })
    })
}

/// The second pass: reads the inputs again and gathers the planned subjects' events.
pub fn collect(
    opts: &ReplayOptions,
    mapping: Option<&MappingFile>,
    config: &Config,
    plan: Plan,
) -> Result<DrillDown, ReplayError> {
    if let Some(why) = not_rereadable(&opts.files) {
        return Ok(DrillDown {
            plan,
            timelines: Err(why),
        });
    }
    let mut collector = Collector::new(&plan);
    if !plan.subjects.is_empty() {
        let bar = indicatif::ProgressBar::hidden();
        std::thread::scope(|scope| -> Result<(), ReplayError> {
            let lanes = read::lanes(opts.decode_threads);
            let mut batches = read::start(scope, opts, mapping, config, &bar, lanes);
            for batch in &mut batches {
                for (_, row) in &batch.rows {
                    if let Ok(tx) = row {
                        collector.offer(tx);
                    }
                }
            }
            batches.finish().map(drop)
        })?;
    }
    Ok(DrillDown {
        plan,
        timelines: Ok(collector.finish()),
    })
}

#[cfg(test)]
#[path = "drill_tests.rs"]
mod tests;
