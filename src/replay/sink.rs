//! Where replay's output goes: alerts out (and noted for the labels, the report and a diff),
//! refusals to the rejects file, counts to the summary — in input order, job by job, whatever
//! the number of stage threads.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;
use swipeguard_detectors::{KeyKind, Output, RejectReason, Transaction};

use super::scoring::Scoring;
use super::summary::Summary;
use super::{diff, drill, io_err, stages, sweep, ReconfigureAt, ReplayError};
use crate::codec::Rejected;
use crate::encode::{encode_alert, encode_event};

#[derive(Serialize)]
struct RejectLine<'a> {
    file: &'a str,
    line: u64,
    reason: RejectReason,
    detail: &'a str,
    raw: std::borrow::Cow<'a, str>,
    /// The raw bytes in hex when they are not UTF-8 (so nothing is lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
}

/// The rejects file, opened on the first reject.
pub(super) struct Rejects {
    pub(super) path: PathBuf,
    pub(super) out: Option<BufWriter<File>>,
}

impl Rejects {
    pub(super) fn write(
        &mut self,
        file: &str,
        line: u64,
        rejected: &Rejected,
        raw: &[u8],
    ) -> Result<(), ReplayError> {
        let path = self.path.display().to_string();
        if self.out.is_none() {
            self.out = Some(BufWriter::new(
                File::create(&self.path).map_err(io_err(path.clone()))?,
            ));
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let utf8 = std::str::from_utf8(raw).is_ok();
        let rec = RejectLine {
            file,
            line,
            reason: rejected.reason,
            detail: &rejected.detail,
            raw: String::from_utf8_lossy(raw),
            raw_hex: (!utf8).then(|| raw.iter().map(|b| format!("{b:02x}")).collect()),
        };
        serde_json::to_writer(&mut *out, &rec).map_err(|e| io_err(path.clone())(e.into()))?;
        out.write_all(b"\n").map_err(io_err(path))
    }
}

/// Where the stages' outputs go: alerts out, refusals to the rejects file, counts and labels
/// to the summary.
pub(super) struct Sink<'a> {
    pub(super) summary: Summary,
    pub(super) scoring: Scoring,
    pub(super) rejects: Rejects,
    pub(super) alert_bytes: Vec<u8>,
    pub(super) alerts_out: &'a mut dyn Write,
    /// Stages of the replay's own engine; those after them are a sweep's points.
    pub(super) own_stages: usize,
    pub(super) points: Vec<sweep::Point>,
    /// The point of each sweep stage (by its position after the own stages).
    pub(super) point_of: Vec<usize>,
    /// Both sides' alerts when comparing; the compared engine's stages follow the own ones.
    pub(super) sides: Option<diff::Sides>,
    pub(super) compare_stages: usize,
    /// The alerts noted for the report's drill-down (with `--report` only).
    pub(super) drill: Option<drill::Recorder>,
}

impl Sink<'_> {
    /// Carries the own stages over into `change`'s configuration and notes it in the summary.
    pub(super) fn reconfigure(
        &mut self,
        runner: &mut stages::StageRunner<'_>,
        own: usize,
        running: &mut swipeguard_detectors::EngineConfig,
        change: &ReconfigureAt,
    ) -> Result<(), ReplayError> {
        let outputs = runner.reconfigure(stages::Reconfigure {
            own,
            old: running.clone(),
            new: change.config.clone(),
        })?;
        *running = change.config.clone();
        self.summary
            .reconfigured
            .push((change.position, change.name.clone()));
        self.write(outputs)
    }

    /// Hands a batch to the stages and writes whatever output comes back.
    pub(super) fn send(
        &mut self,
        runner: &mut stages::StageRunner<'_>,
        batch: stages::StageBatch,
    ) -> Result<(), ReplayError> {
        let outputs = runner.send(batch)?;
        self.write(outputs)
    }

    /// Writes the outputs of whole jobs: each batch's (or the final drain's) stages, in stage
    /// order. A row refused by several stages for one reason is one line of the rejects file
    /// naming the stages, and one reject in the summary.
    pub(super) fn write(&mut self, outputs: Vec<stages::StageOutput>) -> Result<(), ReplayError> {
        let per_job = (self.own_stages + self.point_of.len() + self.compare_stages).max(1);
        let mut outputs = outputs.into_iter().peekable();
        while outputs.peek().is_some() {
            let job: Vec<stages::StageOutput> = outputs.by_ref().take(per_job).collect();
            self.write_job(job)?;
        }
        Ok(())
    }

    pub(super) fn write_job(&mut self, job: Vec<stages::StageOutput>) -> Result<(), ReplayError> {
        let file = job
            .iter()
            .find_map(|o| o.file.clone())
            .unwrap_or_else(|| std::sync::Arc::from("?"));
        let mut refused: Vec<(u64, RejectReason, KeyKind, Transaction)> = Vec::new();
        for mut out in job {
            if let (true, Some(sides)) = (out.stage >= self.own_stages, self.sides.as_mut()) {
                // The compared configuration: collected, never written.
                sides.b.append(&mut out.output.alerts);
                continue;
            }
            if out.stage >= self.own_stages {
                // A sweep point: scored, never written.
                let point = self.point_of[out.stage - self.own_stages];
                for alert in &out.output.alerts {
                    self.points[point].record(alert, &self.scoring);
                }
                continue;
            }
            for (at, r) in stages::refusals(&mut out) {
                refused.push((at, r.reason, r.stage, r.event));
            }
            self.summary.counts.add(&out.output.counts);
            for score in out.output.scores.drain(..) {
                self.scoring.record_score(&score);
            }
            if let Some(sides) = self.sides.as_mut() {
                sides.a.extend(out.output.alerts.iter().cloned());
            }
            flush_alerts(
                &mut out.output,
                &mut self.scoring,
                &mut self.summary,
                self.drill.as_mut(),
                &mut self.alert_bytes,
                self.alerts_out,
            )?;
        }
        refused.sort_by_key(|(at, reason, stage, _)| (*at, *reason, *stage));
        let mut i = 0;
        while i < refused.len() {
            let (at, reason, _, _) = &refused[i];
            let same = refused[i..]
                .iter()
                .take_while(|(a, r, _, _)| a == at && r == reason)
                .count();
            let stages: Vec<&str> = refused[i..i + same]
                .iter()
                .map(|(_, _, s, _)| s.as_str())
                .collect();
            let line = *at;
            *self.summary.rejects.entry(*reason).or_default() += 1;
            let mut raw = Vec::new();
            encode_event(&refused[i].3, &mut raw);
            raw.pop();
            let detail = format!("{} stage", stages.join(", "));
            self.rejects
                .write(&file, line, &Rejected::new(*reason, detail), &raw)?;
            i += same;
        }
        Ok(())
    }
}

/// Writes the alerts made so far and notes them for the summary and the labels.
pub(super) fn flush_alerts(
    out: &mut Output,
    scoring: &mut Scoring,
    summary: &mut Summary,
    mut drill: Option<&mut drill::Recorder>,
    buf: &mut Vec<u8>,
    sink: &mut dyn Write,
) -> Result<(), ReplayError> {
    if out.alerts.is_empty() {
        return Ok(());
    }
    buf.clear();
    for alert in out.alerts.drain(..) {
        encode_alert(&alert, buf);
        *summary
            .alerts
            .entry((alert.detector, alert.severity))
            .or_default() += 1;
        scoring.record(&alert);
        if let Some(d) = drill.as_mut() {
            let true_positive = scoring.alerts.last().and_then(|r| r.true_positive);
            d.record(drill::AlertNote::new(&alert, true_positive));
        }
    }
    sink.write_all(buf).map_err(io_err("alerts output"))
}
