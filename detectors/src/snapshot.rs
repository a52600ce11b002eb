//! Snapshot and restore of one partition's whole engine state.
//!
//! A snapshot is `SGSN` + a little-endian u16 format version + a postcard body holding: the
//! position it reflects (for the daemon, the next Kafka offset to read), a fingerprint of the
//! configuration, the watermark, the last released event, the engine clock, the reorder buffer
//! (a shutdown keeps buffered events there instead of releasing them) and every tracked card in
//! least-to-most-recently-seen order.
//!
//! Promise: restoring a snapshot taken after event k and admitting events k+1… yields exactly
//! the alerts of an uninterrupted run. Restoring under a different configuration is allowed
//! (thresholds are tuned between runs); [`Restored::config_changed`] tells the caller.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cards::{CardState, CardTable};
use crate::config::{ConfigError, EngineConfig};
use crate::engine::Engine;
use crate::model::{CardId, EventId, EventTime, Transaction};
use crate::reorder::ReorderBuffer;
use crate::watermark::Watermark;

const MAGIC: &[u8; 4] = b"SGSN";
/// Bumped whenever the body's layout changes; older snapshots are then refused, not misread.
pub const FORMAT_VERSION: u16 = 1;

/// Why a snapshot could not be restored. The daemon then starts the partition afresh.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a swipeguard snapshot")]
    BadMagic,
    #[error(
        "snapshot format version {found} is not supported (this build reads {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u16 },
    #[error("snapshot body is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[derive(Serialize)]
struct BodyRef<'a> {
    position: u64,
    config_fingerprint: u64,
    watermark: &'a Watermark,
    last_released: &'a Option<(EventTime, EventId)>,
    clock: EventTime,
    #[serde(serialize_with = "as_seq")]
    pending: Vec<&'a Transaction>,
    #[serde(serialize_with = "as_seq")]
    cards: Vec<(&'a CardId, &'a CardState)>,
}

fn as_seq<T: Serialize, S: serde::Serializer>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items)
}

/// The decoded body; `cards` is read straight into the table (see `restore`).
struct Body {
    position: u64,
    config_fingerprint: u64,
    watermark: Watermark,
    last_released: Option<(EventTime, EventId)>,
    clock: EventTime,
    pending: Vec<Transaction>,
    cards: CardTable,
}

/// Decodes [`BodyRef`]'s layout (postcard: the fields in order, as a tuple).
struct BodySeed {
    max_cards: usize,
}

/// `CardTable::deserialize_ordered` as a seed, for use inside the body's sequence.
struct CardsSeed(usize);

impl<'de> serde::de::DeserializeSeed<'de> for CardsSeed {
    type Value = CardTable;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<CardTable, D::Error> {
        CardTable::deserialize_ordered(self.0, d)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for BodySeed {
    type Value = Body;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Body, D::Error> {
        d.deserialize_tuple(7, self)
    }
}

impl<'de> serde::de::Visitor<'de> for BodySeed {
    type Value = Body;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a snapshot body")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        use serde::de::Error;
        let missing = |what: &str| A::Error::custom(format!("snapshot body: no {what}"));
        Ok(Body {
            position: seq.next_element()?.ok_or_else(|| missing("position"))?,
            config_fingerprint: seq.next_element()?.ok_or_else(|| missing("fingerprint"))?,
            watermark: seq.next_element()?.ok_or_else(|| missing("watermark"))?,
            last_released: seq
                .next_element()?
                .ok_or_else(|| missing("last released"))?,
            clock: seq.next_element()?.ok_or_else(|| missing("clock"))?,
            pending: seq
                .next_element()?
                .ok_or_else(|| missing("pending events"))?,
            cards: seq
                .next_element_seed(CardsSeed(self.max_cards))?
                .ok_or_else(|| missing("cards"))?,
        })
    }
}

/// An engine rebuilt from a snapshot.
#[derive(Debug)]
pub struct Restored {
    pub engine: Engine,
    /// The position the snapshot reflects.
    pub position: u64,
    /// The snapshot was taken under a different configuration.
    pub config_changed: bool,
}

/// A stable 64-bit fingerprint of an engine configuration.
pub fn config_fingerprint(config: &EngineConfig) -> u64 {
    let bytes = postcard::to_allocvec(config).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

impl Engine {
    /// Encodes the whole state, tagged with `position` (what the state reflects).
    pub fn snapshot(&self, position: u64) -> Vec<u8> {
        let body = BodyRef {
            position,
            config_fingerprint: config_fingerprint(&self.config),
            watermark: &self.watermark,
            last_released: &self.last_released,
            clock: self.clock,
            pending: self.pending.iter().collect(),
            cards: self.cards.iter().collect(),
        };
        let mut out = Vec::with_capacity(64 + self.cards.len() * 256);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Encoding plain data into a Vec cannot fail; an empty body would be refused on restore.
        match postcard::to_extend(&body, out) {
            Ok(v) => v,
            Err(_) => MAGIC.to_vec(),
        }
    }

    /// Rebuilds an engine from `bytes` under `config`.
    pub fn restore(config: EngineConfig, bytes: &[u8]) -> Result<Restored, SnapshotError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(SnapshotError::BadMagic)?;
        let (version, body) = rest.split_at_checked(2).ok_or(SnapshotError::BadMagic)?;
        let found = u16::from_le_bytes([version[0], version[1]]);
        if found != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found });
        }
        let body: Body = {
            let _sharing = crate::intern::Interning::begin();
            let mut decoder = postcard::Deserializer::from_bytes(body);
            serde::de::DeserializeSeed::deserialize(
                BodySeed {
                    max_cards: config.max_tracked_cards,
                },
                &mut decoder,
            )?
        };
        let config_changed = body.config_fingerprint != config_fingerprint(&config);
        let mut engine = Engine::new(config)?;
        if body.watermark.lateness() != engine.watermark.lateness() {
            // Keep the restored progress, under the newly configured lateness.
            let mut w = Watermark::new(engine.watermark.lateness());
            w.observe(body.watermark.newest());
            w.advance_to(body.watermark.value());
            engine.watermark = w;
        } else {
            engine.watermark = body.watermark;
        }
        engine.last_released = body.last_released;
        engine.clock = body.clock;
        let mut pending = ReorderBuffer::default();
        for tx in body.pending {
            pending.insert(tx);
        }
        engine.pending = pending;
        engine.cards = body.cards;
        Ok(Restored {
            engine,
            position: body.position,
            config_changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Output;
    use crate::testing::tx;

    #[test]
    fn round_trips_and_refuses_foreign_bytes() {
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let mut out = Output::default();
        for i in 0..20 {
            engine.admit(
                tx(&format!("e{i}"), i * 1000)
                    .card(&format!("c{}", i % 3))
                    .build(),
                &mut out,
            );
        }
        let bytes = engine.snapshot(42);
        let restored = Engine::restore(EngineConfig::default(), &bytes).unwrap();
        assert_eq!(restored.position, 42);
        assert!(!restored.config_changed);
        assert_eq!(restored.engine.snapshot(42), bytes);
        assert!(matches!(
            Engine::restore(EngineConfig::default(), b"nope"),
            Err(SnapshotError::BadMagic)
        ));
        let mut future = bytes.clone();
        future[4] = 9;
        assert!(matches!(
            Engine::restore(EngineConfig::default(), &future),
            Err(SnapshotError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(
            Engine::restore(EngineConfig::default(), &bytes[..bytes.len() - 3]),
            Err(SnapshotError::Corrupt(_))
        ));
    }

    #[test]
    fn a_changed_configuration_is_reported() {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let bytes = engine.snapshot(0);
        let mut cfg = EngineConfig::default();
        cfg.detectors.rapid_fire.min_swipes = 6;
        assert!(Engine::restore(cfg, &bytes).unwrap().config_changed);
    }
}
