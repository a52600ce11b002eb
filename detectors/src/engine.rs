//! The engine of one partition: one [`Stage`] per key kind that has an enabled detector, in
//! key-kind order (card first), each fed every event that carries its key.
//!
//! Stages are independent: each has its own watermark, reorder buffer and key table, so an
//! event late for one stage may be on time for another, and each stage's alerts depend only on
//! the events it takes. Within one call the alerts leave stage by stage. Replay runs the same
//! stages on threads of their own ([`Engine::into_stages`]); the daemon runs them here.

use crate::budget::{BudgetState, Budgets};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, EngineConfig};
use crate::detector::Versions;
use crate::model::{Alert, DetectorName, EventTime, KeyKind, Millis, Transaction};
use crate::registry::{MAX_DETECTORS, REGISTRY};
use crate::reject::RejectReason;
use crate::stage::Stage;
use crate::store::Stored;

/// What happened to an event offered to a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Buffered or released; the detectors will see it.
    Accepted,
    /// Older than the watermark or than the last released event; not detected.
    Late,
    /// Same (time, id) as an event already admitted.
    Duplicate,
}

impl Admission {
    /// Why the event was refused, for the dead-letter header, rejects file and metrics.
    pub fn reject_reason(self) -> Option<RejectReason> {
        match self {
            Admission::Accepted => None,
            Admission::Late => Some(RejectReason::Late),
            Admission::Duplicate => Some(RejectReason::Duplicate),
        }
    }
}

/// One number per registered detector, by [`DetectorName::index`].
pub type PerDetector = [u64; MAX_DETECTORS];

/// Counts of one stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCounts {
    pub accepted: u64,
    pub released: u64,
    pub late: u64,
    /// Of `late`: late only because an idle advance moved the watermark (wall time's effect).
    pub late_after_idle: u64,
    pub duplicates: u64,
    pub evicted_idle: u64,
    pub evicted_capacity: u64,
}

impl StageCounts {
    pub fn add(&mut self, o: &StageCounts) {
        self.accepted += o.accepted;
        self.released += o.released;
        self.late += o.late;
        self.late_after_idle += o.late_after_idle;
        self.duplicates += o.duplicates;
        self.evicted_idle += o.evicted_idle;
        self.evicted_capacity += o.evicted_capacity;
    }
}

/// Counts for one batch of calls; the caller adds them to its metrics and resets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Per stage, by [`KeyKind::index`].
    pub stages: [StageCounts; KeyKind::COUNT],
    /// Alerts emitted, by [`DetectorName::index`].
    pub alerts: PerDetector,
    /// Alerts withheld by a cool-down, by [`DetectorName::index`].
    pub suppressed: PerDetector,
    /// Alerts withheld by the detector's alert budget, by [`DetectorName::index`].
    pub withheld: PerDetector,
}

impl Counts {
    pub fn stage(&self, kind: KeyKind) -> &StageCounts {
        &self.stages[kind.index()]
    }

    pub fn stage_mut(&mut self, kind: KeyKind) -> &mut StageCounts {
        &mut self.stages[kind.index()]
    }

    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.stages.iter_mut().zip(&other.stages) {
            a.add(b);
        }
        for i in 0..MAX_DETECTORS {
            self.alerts[i] += other.alerts[i];
            self.suppressed[i] += other.suppressed[i];
            self.withheld[i] += other.withheld[i];
        }
    }
}

/// An event a stage refused (late or duplicate), handed back so that it is never silently
/// dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub stage: KeyKind,
    pub reason: RejectReason,
    pub event: Transaction,
}

/// How surprising one event was to a detector that scores every event (off_pattern), alert or
/// not: what an analyst's score chart draws. Recorded only when asked for
/// ([`Engine::record_scores`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub detector: DetectorName,
    pub event: crate::model::EventId,
    pub value: f64,
}

/// Where a stage puts what a call produced.
#[derive(Debug, Default)]
pub struct Output {
    pub alerts: Vec<Alert>,
    pub counts: Counts,
    pub refusals: Vec<Refusal>,
    /// Per-event scores, when recorded.
    pub scores: Vec<Score>,
}

/// How much the engine holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSize {
    pub tracked_cards: usize,
    pub buffered_events: usize,
    /// Estimated bytes of key tables, detector states and buffered events.
    pub bytes: usize,
}

/// `detector_version` = `<name>/v<VERSION>+<first 8 hex of SHA-256 of the detector's table>`,
/// so alerts made under different thresholds are told apart.
fn versions(cfg: &crate::config::DetectorsConfig) -> Versions {
    Versions(
        REGISTRY
            .iter()
            .map(|r| {
                let digest = (r.config_digest)(cfg);
                let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
                Arc::from(format!("{}/v{}+{hex}", r.name, r.version))
            })
            .collect(),
    )
}

/// The snapshot fingerprint of one detector's configuration: the first 8 bytes of its digest.
pub(crate) fn detector_fingerprint(
    cfg: &crate::config::DetectorsConfig,
    name: DetectorName,
) -> u64 {
    let digest = (name.registration().config_digest)(cfg);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The detector engine of one partition.
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) stages: Vec<Stage>,
}

impl Engine {
    /// Builds an engine, checking every configured value.
    pub fn new(config: EngineConfig) -> Result<Engine, ConfigError> {
        Engine::build(config, true)
    }

    /// `compact`: whether a traceability-code stage of `trace_code_resettled` alone keeps its
    /// codes in a code book (always, but for the test that compares it with the key table).
    pub(crate) fn build(config: EngineConfig, compact: bool) -> Result<Engine, ConfigError> {
        if config.max_tracked_cards == 0 {
            return Err(ConfigError::new(
                "engine.max_tracked_cards",
                "must be at least 1",
            ));
        }
        let versions = Arc::new(versions(&config.detectors));
        let lateness = Millis::from_duration(config.allowed_lateness);
        let mut by_kind: Vec<Vec<Box<dyn Stored>>> = vec![Vec::new(); KeyKind::COUNT];
        let mut budgets: Vec<Budgets> = vec![Budgets::default(); KeyKind::COUNT];
        for (i, r) in REGISTRY.iter().enumerate() {
            if (r.enabled)(&config.detectors) {
                let name = DetectorName::at(i);
                by_kind[r.key.index()].push((r.build)(&config.detectors, name)?);
                match (r.budget)(&config.detectors) {
                    Some(0) => {
                        return Err(ConfigError::new(
                            format!("detectors.{}.max_alerts_per_hour", r.name),
                            "must be at least 1 (leave it out for no budget)",
                        ))
                    }
                    Some(limit) => {
                        budgets[r.key.index()]
                            .entries
                            .push((name, limit, BudgetState::default()))
                    }
                    None => {}
                }
            }
        }
        let mut stages = Vec::new();
        for ((kind, stores), budgets) in KeyKind::ALL.iter().zip(by_kind).zip(budgets) {
            if stores.is_empty() {
                continue;
            }
            if stores.len() > crate::keys::MAX_SLOTS {
                return Err(ConfigError::new(
                    "detectors",
                    format!(
                        "at most {} detectors keyed by {kind} may run at once",
                        crate::keys::MAX_SLOTS
                    ),
                ));
            }
            let max = config.max_tracked(*kind)?;
            let book = match compact {
                true => code_book(*kind, &stores, &config.detectors, max)?,
                false => None,
            };
            let mut stage = Stage::new(*kind, lateness, max, stores, versions.clone());
            if let Some(book) = book {
                stage.use_code_book(book);
            }
            stage.budgets = budgets;
            stages.push(stage);
        }
        Ok(Engine { config, stages })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The stages, card first.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stages, to run apart (replay runs each on a thread of its own).
    pub fn into_stages(self) -> Vec<Stage> {
        self.stages
    }

    /// The watermark of the first stage (the card stage when any card detector is on).
    pub fn watermark(&self) -> EventTime {
        self.stages.first().map_or(EventTime::MIN, Stage::watermark)
    }

    /// The newest event time admitted.
    pub fn newest_event_time(&self) -> EventTime {
        self.stages
            .iter()
            .map(Stage::newest_event_time)
            .max()
            .unwrap_or(EventTime::MIN)
    }

    /// Offers one event to every stage that takes it. Returns what the first of them did with
    /// it (an event no stage takes is `Accepted`: there is nothing to detect); every refusal,
    /// with the event, is in `out.refusals`.
    pub fn admit(&mut self, tx: Transaction, out: &mut Output) -> Admission {
        if let [stage] = self.stages.as_mut_slice() {
            // One stage (the daemon's card stage, a single-key replay): no copy, no bookkeeping.
            if !stage.takes(&tx) {
                return Admission::Accepted;
            }
            return stage.admit(tx, out);
        }
        let mut takers = self.stages.iter().filter(|s| s.takes(&tx)).count();
        let mut first = None;
        let mut tx = Some(tx);
        for stage in &mut self.stages {
            let Some(event) = tx.as_ref() else { break };
            if !stage.takes(event) {
                continue;
            }
            takers -= 1;
            // The last stage takes the event itself; the others a copy.
            let event = if takers == 0 { tx.take() } else { tx.clone() };
            let Some(event) = event else { break };
            let admission = stage.admit(event, out);
            first.get_or_insert(admission);
        }
        first.unwrap_or(Admission::Accepted)
    }

    /// Records every scored event's score in [`Output::scores`] from now on (replay's report).
    pub fn record_scores(&mut self, on: bool) {
        for s in &mut self.stages {
            s.record_scores(on);
        }
    }

    /// Runs every stage as partition `partition` of `partitions` of a downstream stage (see
    /// [`Stage::run_downstream`]).
    pub fn run_downstream(&mut self, partition: u32, partitions: u32) {
        for s in &mut self.stages {
            s.run_downstream(partition, partitions);
        }
    }

    /// Idle advance (live mode only) of every stage.
    pub fn advance_idle(&mut self, out: &mut Output) {
        for s in &mut self.stages {
            s.advance_idle(out);
        }
    }

    /// Moves event time forward to `to` in every stage (see [`Stage::advance_watermark`]).
    pub fn advance_watermark(&mut self, to: EventTime, out: &mut Output) {
        for s in &mut self.stages {
            s.advance_watermark(to, out);
        }
    }

    /// End of input: every stage releases what it buffers.
    pub fn drain(&mut self, out: &mut Output) {
        for s in &mut self.stages {
            s.drain(out);
        }
    }

    /// Tracked keys (all stages) and buffered events, without estimating bytes.
    pub fn counts_held(&self) -> (usize, usize) {
        self.stages.iter().fold((0, 0), |(k, b), s| {
            let (sk, sb) = s.held();
            (k + sk, b + sb)
        })
    }

    pub fn state_size(&self) -> StateSize {
        let (tracked_cards, buffered_events) = self.counts_held();
        StateSize {
            tracked_cards,
            buffered_events,
            bytes: self.stages.iter().map(Stage::bytes).sum(),
        }
    }
}

/// The compact store of a traceability-code stage that runs `trace_code_resettled` alone.
fn code_book(
    kind: KeyKind,
    stores: &[Box<dyn Stored>],
    detectors: &crate::config::DetectorsConfig,
    max: usize,
) -> Result<Option<crate::codebook::CodeBook>, ConfigError> {
    use crate::detector::Detector;
    use crate::detectors::trace_code_resettled::TraceCodeResettled;
    match stores {
        [only]
            if kind == KeyKind::TraceCode && only.name().as_str() == TraceCodeResettled::NAME =>
        {
            let detector = detectors
                .trace_code_resettled
                .build("detectors.trace_code_resettled")?;
            Ok(Some(crate::codebook::CodeBook::new(
                detector,
                only.name(),
                max,
            )))
        }
        _ => Ok(None),
    }
}

/// A stable 64-bit fingerprint of an engine configuration.
pub fn config_fingerprint(config: &EngineConfig) -> u64 {
    let bytes = postcard::to_allocvec(config).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests;
