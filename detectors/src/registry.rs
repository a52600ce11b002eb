//! Every detector the engine knows, in the order it runs them for an event.
//!
//! Adding a detector is its own file under `detectors/`, its `[detectors.<name>]` table in
//! [`DetectorsConfig`], and one line here. Everything that lists detectors — stages, counters,
//! versions, snapshots, the replay summary, report and scoring, the metrics — iterates over
//! this list; nothing else names them. The order is part of the output (alerts of one event
//! leave in this order), so new detectors go at the end.

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, DetectorsConfig};
use crate::detector::Detector;
use crate::detectors::card_lock::CardLock;
use crate::detectors::early_refill::EarlyRefill;
use crate::detectors::failed_pin::FailedPin;
use crate::detectors::impossible_travel::ImpossibleTravel;
use crate::detectors::off_pattern::OffPattern;
use crate::detectors::pin_success::PinSuccess;
use crate::detectors::rapid_fire::RapidFire;
use crate::detectors::settle_during_stay::SettleDuringStay;
use crate::detectors::terminal_pin_probe::TerminalPinProbe;
use crate::detectors::trace_code_resettled::TraceCodeResettled;
use crate::model::{DetectorName, KeyKind};
use crate::store::{DetectorStore, Stored};

/// Most detectors the registry may hold (per-detector counters are arrays of this size).
pub const MAX_DETECTORS: usize = 16;

/// One registered detector: its name, key and version, and how to reach its configuration.
pub struct Registration {
    pub name: &'static str,
    pub key: KeyKind,
    pub version: u32,
    /// Whether its table enables it.
    pub enabled: fn(&DetectorsConfig) -> bool,
    /// Switches it on or off in a configuration.
    pub set_enabled: fn(&mut DetectorsConfig, bool),
    /// SHA-256 of its table's canonical encoding: `detector_version` and the snapshot
    /// section's fingerprint. The alert budget and `shadow` are left out: they route output,
    /// they do not change what the detector decides.
    pub config_digest: fn(&DetectorsConfig) -> [u8; 32],
    /// Its `max_alerts_per_hour` (DESIGN §14), if any.
    pub budget: fn(&DetectorsConfig) -> Option<u32>,
    /// Sets its `max_alerts_per_hour` in a configuration.
    pub set_budget: fn(&mut DetectorsConfig, Option<u32>),
    /// Whether its alerts go to the shadow topic only.
    pub shadow: fn(&DetectorsConfig) -> bool,
    /// Builds it from its table (checking every value) with an empty store.
    pub(crate) build: Build,
}

/// How a registration builds its detector with an empty store.
pub(crate) type Build = fn(&DetectorsConfig, DetectorName) -> Result<Box<dyn Stored>, ConfigError>;

fn digest<T: serde::Serialize>(table: &T) -> [u8; 32] {
    let bytes = postcard::to_allocvec(table).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

fn store<D: Detector>(detector: D, name: DetectorName) -> Box<dyn Stored> {
    Box::new(DetectorStore::new(detector, name))
}

/// One registration: the detector type and its field in [`DetectorsConfig`] (named as the
/// detector is).
macro_rules! detector {
    ($ty:ty, $field:ident) => {
        Registration {
            name: <$ty as Detector>::NAME,
            key: <$ty as Detector>::KEY,
            version: <$ty as Detector>::VERSION,
            enabled: |c| c.$field.enabled,
            set_enabled: |c, on| c.$field.enabled = on,
            config_digest: |c| {
                let mut table = c.$field.clone();
                table.max_alerts_per_hour = None;
                table.shadow = false;
                digest(&table)
            },
            budget: |c| c.$field.max_alerts_per_hour,
            set_budget: |c, b| c.$field.max_alerts_per_hour = b,
            shadow: |c| c.$field.shadow,
            build: |c, name| {
                let key = concat!("detectors.", stringify!($field));
                Ok(store(c.$field.build(key)?, name))
            },
        }
    };
}

pub static REGISTRY: &[Registration] = &[
    detector!(FailedPin, failed_pin),
    detector!(PinSuccess, pin_success_after_failures),
    detector!(RapidFire, rapid_fire),
    detector!(ImpossibleTravel, impossible_travel),
    detector!(OffPattern, off_pattern),
    detector!(TerminalPinProbe, terminal_pin_probe),
    // After the other card detectors: it reacts to their alerts on the same event.
    detector!(CardLock, card_lock),
    detector!(TraceCodeResettled, trace_code_resettled),
    detector!(EarlyRefill, early_refill),
    detector!(SettleDuringStay, settle_during_stay),
];

const _: () = assert!(REGISTRY.len() <= MAX_DETECTORS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_match_their_config_tables() {
        let cfg = DetectorsConfig::default();
        let table = toml::Value::try_from(&cfg).unwrap();
        let tables = table.as_table().unwrap();
        let mut names: Vec<&str> = REGISTRY.iter().map(|r| r.name).collect();
        for name in &names {
            assert!(tables.contains_key(*name), "no [detectors.{name}] table");
        }
        assert_eq!(tables.len(), names.len(), "a table without a registration");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
    }

    #[test]
    fn enabling_goes_through_the_registration() {
        let mut cfg = DetectorsConfig::default();
        for r in REGISTRY {
            assert!((r.enabled)(&cfg), "{} is on by default", r.name);
            (r.set_enabled)(&mut cfg, false);
            assert!(!(r.enabled)(&cfg));
        }
    }
}
