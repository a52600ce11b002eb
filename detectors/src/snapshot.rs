//! Snapshot and restore of one partition's engine, stage by stage and detector by detector
//! (DESIGN §13).
//!
//! A snapshot is `SGSN` + a little-endian u16 format version + a postcard body: the position
//! it reflects (for the daemon, the next Kafka offset to read), a fingerprint of the whole
//! configuration, then per stage its key kind, watermark, last released event, clock, reorder
//! buffer (a shutdown keeps buffered events there instead of releasing them), its keys in
//! least-to-most-recently-seen order, and one **section per detector**: name, `VERSION`, a
//! fingerprint of the detector's configuration table, and its states as opaque bytes. After the
//! body (format 4) comes a second postcard value with the stages' alert budgets (DESIGN §14);
//! a snapshot without it (format 3) restores with every budget's hour empty.
//!
//! On restore a section whose name, version and fingerprint match a detector of the same stage
//! is loaded; any other section is skipped, its detector starts empty, and [`Restored::discarded`]
//! says which and why — so an upgrade that changes one detector keeps every other detector's
//! state. Format 1 (one positional blob for the five card detectors, written before sections
//! existed) is still read: its states are loaded as version 1 of those detectors.
//!
//! Promise: restoring a snapshot taken after event k and admitting events k+1… yields exactly
//! the alerts of an uninterrupted run, for every detector whose section was loaded.

use serde::{Deserialize, Serialize};

use crate::budget::BudgetState;
use crate::config::{ConfigError, EngineConfig};
use crate::engine::{config_fingerprint, detector_fingerprint, Engine};
use crate::keys::EMPTY;
use crate::model::{DetectorName, EventId, EventTime, KeyKind, Text, Transaction};
use crate::reorder::ReorderBuffer;
use crate::stage::Stage;
use crate::watermark::Watermark;

mod legacy_v1;

const MAGIC: &[u8; 4] = b"SGSN";
/// Bumped whenever the body's layout changes; older layouts are converted (see `legacy_v1`),
/// unknown ones refused, never misread. Format 4 appended the alert budgets after the body;
/// format 3 added the settlement fields (DESIGN §12) to the buffered events; format 2 differs
/// only there.
pub const FORMAT_VERSION: u16 = 4;

/// What format 4 appends after the body: per stage kind, its detectors' budget states.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Extras {
    budgets: Vec<(KeyKind, Vec<(String, BudgetState)>)>,
}

/// Why a snapshot could not be restored. The daemon then starts the partition afresh.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a swipeguard snapshot")]
    BadMagic,
    #[error(
        "snapshot format version {found} is not supported (this build reads 1 to {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u16 },
    #[error("snapshot body is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why a detector's section was not loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiscardReason {
    /// The section was written by another `VERSION` of the detector.
    Version,
    /// The detector's configuration table changed.
    Config,
    /// The detector is not enabled (or no longer exists) in this build's configuration.
    NotRunning,
    /// The section's bytes do not decode as the detector's states.
    Corrupt,
}

impl DiscardReason {
    pub const ALL: [DiscardReason; 4] = [
        DiscardReason::Version,
        DiscardReason::Config,
        DiscardReason::NotRunning,
        DiscardReason::Corrupt,
    ];

    /// The `reason` label of `swipeguard_state_discarded_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscardReason::Version => "version",
            DiscardReason::Config => "config",
            DiscardReason::NotRunning => "not_running",
            DiscardReason::Corrupt => "corrupt",
        }
    }
}

/// A section that was skipped: whose, why, and how many keys' states it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discarded {
    pub detector: String,
    pub reason: DiscardReason,
}

/// An engine rebuilt from a snapshot.
#[derive(Debug)]
pub struct Restored {
    pub engine: Engine,
    /// The position the snapshot reflects.
    pub position: u64,
    /// The snapshot was taken under a different configuration.
    pub config_changed: bool,
    /// Sections not loaded; their detectors start empty.
    pub discarded: Vec<Discarded>,
    /// The format the snapshot was written in.
    pub format: u16,
}

/// Bytes written and read as one length-prefixed block (not byte by byte).
#[derive(Debug)]
struct Block<'a>(std::borrow::Cow<'a, [u8]>);

impl Serialize for Block<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Block<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = <&'de [u8]>::deserialize(d)?;
        Ok(Block(std::borrow::Cow::Borrowed(bytes)))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Section<'a> {
    name: std::borrow::Cow<'a, str>,
    version: u32,
    fingerprint: u64,
    #[serde(borrow)]
    states: Block<'a>,
}

/// One stage; `T` is the layout of its buffered events (older formats' layouts convert into
/// today's [`Transaction`]).
#[derive(Debug, Serialize, Deserialize)]
struct StageBody<'a, T = Transaction> {
    kind: KeyKind,
    watermark: Watermark,
    last_released: Option<(EventTime, EventId)>,
    clock: EventTime,
    pending: Vec<T>,
    keys: Vec<(Text, EventTime)>,
    /// Where the expiry sweep is, as a place in `keys`.
    sweep: Option<u32>,
    #[serde(borrow)]
    sections: Vec<Section<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Body<'a, T = Transaction> {
    position: u64,
    config_fingerprint: u64,
    #[serde(borrow)]
    stages: Vec<StageBody<'a, T>>,
}

impl<'a, T: Into<Transaction>> Body<'a, T> {
    /// The same body with its buffered events in today's layout.
    fn into_current(self) -> Body<'a> {
        Body {
            position: self.position,
            config_fingerprint: self.config_fingerprint,
            stages: self
                .stages
                .into_iter()
                .map(|s| StageBody {
                    kind: s.kind,
                    watermark: s.watermark,
                    last_released: s.last_released,
                    clock: s.clock,
                    pending: s.pending.into_iter().map(Into::into).collect(),
                    keys: s.keys,
                    sweep: s.sweep,
                    sections: s.sections,
                })
                .collect(),
        }
    }
}

/// The snapshot of `stages`, run under `config`.
fn encode<'s>(
    stages: impl Iterator<Item = &'s Stage> + Clone,
    config: &EngineConfig,
    position: u64,
    capacity: usize,
) -> Vec<u8> {
    let body = Body {
        position,
        config_fingerprint: config_fingerprint(config),
        stages: stages.clone().map(|s| stage_body(s, config)).collect(),
    };
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let extras = Extras {
        budgets: stages
            .filter(|s| !s.budgets.is_empty())
            .map(|s| (s.kind, s.budgets.states()))
            .collect(),
    };
    // Encoding plain data into a Vec cannot fail; an empty body would be refused on restore.
    match postcard::to_extend(&body, out).and_then(|out| postcard::to_extend(&extras, out)) {
        Ok(v) => v,
        Err(_) => MAGIC.to_vec(),
    }
}

fn stage_body(stage: &Stage, config: &EngineConfig) -> StageBody<'static> {
    if let Some(book) = &stage.codes {
        // The generic layout: the stage's keys, then the detector's section over them.
        let name = book.name();
        return StageBody {
            kind: stage.kind,
            watermark: stage.watermark.clone(),
            last_released: stage.last_released.clone(),
            clock: stage.clock,
            pending: stage.pending.iter().cloned().collect(),
            keys: book.keys().map(|(k, t)| (Text::new(k), t)).collect(),
            sweep: None,
            sections: vec![Section {
                name: std::borrow::Cow::Borrowed(name.as_str()),
                version: name.registration().version,
                fingerprint: detector_fingerprint(&config.detectors, name),
                states: Block(std::borrow::Cow::Owned(book.encode())),
            }],
        };
    }
    let keys: Vec<(Text, EventTime)> = stage
        .keys
        .iter()
        .map(|(_, k, seen)| (Text::new(k), seen))
        .collect();
    let sections = stage
        .stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let name = store.name();
            let mut slots = stage.keys.iter().map(|(at, _, _)| stage.keys.slots(at)[i]);
            Section {
                name: std::borrow::Cow::Borrowed(name.as_str()),
                version: name.registration().version,
                fingerprint: detector_fingerprint(&config.detectors, name),
                states: Block(std::borrow::Cow::Owned(store.encode(&mut slots))),
            }
        })
        .collect();
    StageBody {
        kind: stage.kind,
        watermark: stage.watermark.clone(),
        last_released: stage.last_released.clone(),
        clock: stage.clock,
        pending: stage.pending.iter().cloned().collect(),
        keys,
        // A stage whose detectors expire nothing never sweeps: no position to keep.
        sweep: if stage.sweeps() {
            stage.keys.sweep_position()
        } else {
            None
        },
        sections,
    }
}

impl Engine {
    /// Encodes the whole state, tagged with `position` (what the state reflects).
    pub fn snapshot(&self, position: u64) -> Vec<u8> {
        encode(
            self.stages.iter(),
            &self.config,
            position,
            64 + self.state_size().bytes / 2,
        )
    }

    /// Rebuilds an engine from `bytes` under `config`.
    pub fn restore(config: EngineConfig, bytes: &[u8]) -> Result<Restored, SnapshotError> {
        Engine::restore_built(config, bytes, true)
    }

    /// [`Engine::restore`] into an engine built with or without a code book ([`Engine::build`]).
    pub(crate) fn restore_built(
        config: EngineConfig,
        bytes: &[u8],
        compact: bool,
    ) -> Result<Restored, SnapshotError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(SnapshotError::BadMagic)?;
        let (version, body) = rest.split_at_checked(2).ok_or(SnapshotError::BadMagic)?;
        let format = u16::from_le_bytes([version[0], version[1]]);
        let _sharing = crate::intern::Interning::begin();
        let converted;
        let mut extras = Extras::default();
        let body: Body<'_> = match format {
            FORMAT_VERSION => {
                let (body, rest) = postcard::take_from_bytes(body)?;
                extras = postcard::from_bytes(rest)?;
                body
            }
            3 => postcard::from_bytes(body)?,
            2 => postcard::from_bytes::<Body<'_, legacy_v1::TransactionV1>>(body)?.into_current(),
            1 => {
                converted = legacy_v1::convert(body, &config)?;
                postcard::from_bytes(&converted)?
            }
            found => return Err(SnapshotError::UnsupportedVersion { found }),
        };
        let config_changed = format != 1 && body.config_fingerprint != config_fingerprint(&config)
            || format == 1 && body.config_fingerprint != legacy_v1::fingerprint(&config);
        let mut engine = Engine::build(config, compact)?;
        let mut discarded = Vec::new();
        for snap in body.stages {
            match engine.stages.iter_mut().find(|s| s.kind == snap.kind) {
                Some(stage) => {
                    restore_stage(stage, snap, &engine.config, &mut discarded);
                }
                None => discarded.extend(snap.sections.iter().map(|s| Discarded {
                    detector: s.name.to_string(),
                    reason: DiscardReason::NotRunning,
                })),
            }
        }
        for (kind, states) in extras.budgets {
            if let Some(stage) = engine.stages.iter_mut().find(|s| s.kind == kind) {
                stage.budgets.restore(states);
            }
        }
        Ok(Restored {
            engine,
            position: body.position,
            config_changed,
            discarded,
            format,
        })
    }
}

fn restore_stage(
    stage: &mut Stage,
    snap: StageBody<'_>,
    config: &EngineConfig,
    discarded: &mut Vec<Discarded>,
) {
    if snap.watermark.lateness() != stage.watermark.lateness() {
        // Keep the restored progress, under the newly configured lateness.
        let mut w = Watermark::new(stage.watermark.lateness());
        w.observe(snap.watermark.newest());
        w.advance_to(snap.watermark.value());
        stage.watermark = w;
    } else {
        stage.watermark = snap.watermark;
    }
    stage.last_released = snap.last_released;
    stage.clock = snap.clock;
    let mut pending = ReorderBuffer::default();
    for tx in snap.pending {
        pending.insert(tx);
    }
    stage.pending = pending;

    if stage.codes.is_some() {
        return restore_codes(stage, snap.keys, snap.sections, config, discarded);
    }
    // Under a lower ceiling, the most recently seen keys are kept.
    let skip = snap.keys.len().saturating_sub(stage.keys.max());
    stage.keys.reserve(snap.keys.len() - skip);
    let mut entry_of = vec![u32::MAX; snap.keys.len()];
    for (position, (key, seen)) in snap.keys.iter().enumerate().skip(skip) {
        if stage.keys.find(key).is_none() {
            entry_of[position] = stage.keys.push_back(key, *seen);
        }
    }
    for section in snap.sections {
        let running = stage
            .stores
            .iter()
            .position(|s| s.name().as_str() == section.name);
        let Some(index) = running else {
            discarded.push(Discarded {
                detector: section.name.to_string(),
                reason: DiscardReason::NotRunning,
            });
            continue;
        };
        let name: DetectorName = stage.stores[index].name();
        if let Some(reason) = mismatch(&section, name, config) {
            discarded.push(Discarded {
                detector: section.name.to_string(),
                reason,
            });
            continue;
        }
        let keys = &mut stage.keys;
        let mut placed = Vec::new();
        let decoded =
            stage.stores[index].decode(&section.states.0, entry_of.len(), &mut |position, slot| {
                let entry = entry_of[position as usize];
                if entry == u32::MAX {
                    placed.push(slot);
                } else {
                    keys.slots_mut(entry)[index] = slot;
                }
            });
        // States of keys cut by a lower ceiling are freed at once.
        for slot in placed {
            stage.stores[index].free(slot);
        }
        if decoded.is_err() {
            // Whatever was placed is dropped with the section.
            let store = &mut stage.stores[index];
            for slot in stage.keys.column_mut(index) {
                if *slot != EMPTY {
                    store.free(*slot);
                    *slot = EMPTY;
                }
            }
            discarded.push(Discarded {
                detector: section.name.to_string(),
                reason: DiscardReason::Corrupt,
            });
        }
    }
    // A key left without any state (its sections discarded) is not tracked.
    let empty: Vec<u32> = stage
        .keys
        .iter()
        .filter(|(at, _, _)| stage.keys.slots(*at).iter().all(|s| *s == EMPTY))
        .map(|(at, _, _)| at)
        .collect();
    for at in empty {
        stage.keys.remove(at);
    }
    // The sweep continues at the same key, or where the next kept key stands.
    let kept_before = snap.sweep.map(|p| {
        (0..p as usize)
            .filter(|i| {
                entry_of.get(*i).is_some_and(|e| {
                    *e != u32::MAX && stage.keys.slots(*e).iter().any(|s| *s != EMPTY)
                })
            })
            .count() as u32
    });
    stage.keys.set_sweep_position(kept_before);
}

/// Why a section of detector `name` cannot be loaded under `config`, if it cannot: another
/// version of the detector wrote it, or the detector was configured otherwise.
fn mismatch(
    section: &Section<'_>,
    name: DetectorName,
    config: &EngineConfig,
) -> Option<DiscardReason> {
    if section.version != name.registration().version {
        Some(DiscardReason::Version)
    } else if section.fingerprint != detector_fingerprint(&config.detectors, name) {
        Some(DiscardReason::Config)
    } else {
        None
    }
}

/// The keys and sections of a traceability-code stage into its code book: the section of
/// `trace_code_resettled` is loaded under the same rules as any other, the rest discarded.
fn restore_codes(
    stage: &mut Stage,
    keys: Vec<(Text, EventTime)>,
    sections: Vec<Section<'_>>,
    config: &EngineConfig,
    discarded: &mut Vec<Discarded>,
) {
    let Some(book) = stage.codes.as_mut() else {
        return;
    };
    let name = book.name();
    let skip = keys.len().saturating_sub(book.max());
    for section in sections {
        let reason = if section.name != name.as_str() {
            Some(DiscardReason::NotRunning)
        } else if let Some(reason) = mismatch(&section, name, config) {
            Some(reason)
        } else if book.decode(&section.states.0, &keys, skip).is_err() {
            Some(DiscardReason::Corrupt)
        } else {
            None
        };
        if let Some(reason) = reason {
            discarded.push(Discarded {
                detector: section.name.to_string(),
                reason,
            });
        }
    }
}

#[cfg(test)]
mod tests;

/// Why a stage cannot take a new configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigureError {
    #[error("the new configuration runs no detector keyed by {0}: a running stage cannot be switched off, only its detectors retuned")]
    StageGone(KeyKind),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl Engine {
    /// This engine's state carried over into `config` exactly as a snapshot restored under it
    /// would be (DESIGN §14: a configuration change takes effect at a snapshot position):
    /// sections of detectors whose version or table changed start empty, the rest continue.
    pub fn reconfigured(&self, config: EngineConfig) -> Result<Restored, SnapshotError> {
        Engine::restore(config, &self.snapshot(0))
    }
}

impl Stage {
    /// One stage carried over into `new` (see [`Engine::reconfigured`]); `old` is the
    /// configuration it runs under. Replay's stages run apart, so each is carried over alone.
    pub fn reconfigured(
        &self,
        old: &EngineConfig,
        new: &EngineConfig,
    ) -> Result<(Stage, Vec<Discarded>), ReconfigureError> {
        let kind = self.kind;
        let bytes = encode(std::iter::once(self), old, 0, 64 + self.bytes() / 2);
        let mut restored = Engine::restore(new.clone(), &bytes)?;
        let at = restored
            .engine
            .stages
            .iter()
            .position(|s| s.kind == kind)
            .ok_or(ReconfigureError::StageGone(kind))?;
        let mut stage = restored.engine.stages.swap_remove(at);
        stage.record_scores(self.record_scores);
        Ok((stage, restored.discarded))
    }
}
