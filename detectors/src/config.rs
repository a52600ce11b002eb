//! Configuration of the core: the `[detectors.*]` tables and the engine's own settings.
//!
//! Every table rejects unknown keys and every key has a default, so an empty file is a valid
//! configuration. Values are checked once, when the engine is built; an error names the key by
//! its full TOML path (`detectors.failed_pin.window`) and the engine refuses to start.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detectors::card_lock::CardLockConfig;
use crate::detectors::early_refill::EarlyRefillConfig;
use crate::detectors::failed_pin::FailedPinConfig;
use crate::detectors::impossible_travel::ImpossibleTravelConfig;
use crate::detectors::off_pattern::OffPatternConfig;
use crate::detectors::pin_success::PinSuccessConfig;
use crate::detectors::rapid_fire::RapidFireConfig;
use crate::detectors::settle_during_stay::SettleDuringStayConfig;
use crate::detectors::terminal_pin_probe::TerminalPinProbeConfig;
use crate::detectors::trace_code_resettled::TraceCodeResettledConfig;
use crate::model::{DetectorName, KeyKind, Millis};

/// A configuration value the engine cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// Full TOML path of the offending key.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A duration that must be longer than zero.
pub(crate) fn positive(key: &str, d: Duration) -> Result<Millis, ConfigError> {
    let ms = Millis::from_duration(d);
    if ms.0 <= 0 {
        return Err(ConfigError::new(key, "must be at least 1ms"));
    }
    Ok(ms)
}

/// `[detectors]`: one table per detector (each registered in [`crate::registry`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    pub failed_pin: FailedPinConfig,
    pub pin_success_after_failures: PinSuccessConfig,
    pub rapid_fire: RapidFireConfig,
    pub impossible_travel: ImpossibleTravelConfig,
    pub off_pattern: OffPatternConfig,
    pub terminal_pin_probe: TerminalPinProbeConfig,
    pub card_lock: CardLockConfig,
    pub trace_code_resettled: TraceCodeResettledConfig,
    pub early_refill: EarlyRefillConfig,
    pub settle_during_stay: SettleDuringStayConfig,
}

impl DetectorsConfig {
    pub fn is_enabled(&self, name: DetectorName) -> bool {
        (name.registration().enabled)(self)
    }

    pub fn set_enabled(&mut self, name: DetectorName, on: bool) {
        (name.registration().set_enabled)(self, on)
    }

    /// A copy with only `keep` enabled.
    pub fn only(&self, keep: &[DetectorName]) -> DetectorsConfig {
        let mut out = self.clone();
        for d in DetectorName::all() {
            out.set_enabled(d, keep.contains(&d));
        }
        out
    }

    /// A copy with only the detectors keyed by `kinds` left as they are (the others off).
    pub fn only_keys(&self, kinds: &[KeyKind]) -> DetectorsConfig {
        let mut out = self.clone();
        for d in DetectorName::all() {
            if !kinds.contains(&d.key()) {
                out.set_enabled(d, false);
            }
        }
        out
    }

    /// The enabled detectors, in registry order.
    pub fn enabled(&self) -> Vec<DetectorName> {
        DetectorName::all()
            .filter(|d| self.is_enabled(*d))
            .collect()
    }
}

/// `[engine.max_tracked_keys]`: the ceiling on tracked keys of each stage other than the card
/// stage (which has `engine.max_tracked_cards`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaxTrackedKeys {
    /// Terminals (or merchants, for events without a terminal).
    pub terminal: usize,
    /// Insured persons.
    pub account: usize,
    /// Drug traceability codes.
    pub trace_code: usize,
}

impl Default for MaxTrackedKeys {
    fn default() -> Self {
        MaxTrackedKeys {
            terminal: 1_000_000,
            account: 1_000_000,
            trace_code: 20_000_000,
        }
    }
}

/// What the engine of one partition needs: lateness, the ceilings and the detectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// How far behind the newest event time an event may arrive and still be detected.
    pub allowed_lateness: Duration,
    /// Most cards tracked at once; past it the least recently seen card is forgotten.
    pub max_tracked_cards: usize,
    /// The same for the other key kinds.
    pub max_tracked_keys: MaxTrackedKeys,
    pub detectors: DetectorsConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: Duration::from_secs(30),
            max_tracked_cards: 1_000_000,
            max_tracked_keys: MaxTrackedKeys::default(),
            detectors: DetectorsConfig::default(),
        }
    }
}

impl EngineConfig {
    /// The ceiling on tracked keys of a stage, checked.
    pub fn max_tracked(&self, kind: KeyKind) -> Result<usize, ConfigError> {
        let (key, max) = match kind {
            KeyKind::Card => ("engine.max_tracked_cards", self.max_tracked_cards),
            KeyKind::Terminal => (
                "engine.max_tracked_keys.terminal",
                self.max_tracked_keys.terminal,
            ),
            KeyKind::Account => (
                "engine.max_tracked_keys.account",
                self.max_tracked_keys.account,
            ),
            KeyKind::TraceCode => (
                "engine.max_tracked_keys.trace_code",
                self.max_tracked_keys.trace_code,
            ),
        };
        if max == 0 {
            return Err(ConfigError::new(key, "must be at least 1"));
        }
        // Slots and entries are addressed by 32-bit numbers.
        Ok(max.min(u32::MAX as usize - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_is_all_defaults() {
        let cfg: DetectorsConfig = toml::from_str("").map_err(|e| e.to_string()).unwrap();
        assert_eq!(cfg, DetectorsConfig::default());
        assert_eq!(cfg.failed_pin.min_failures, 3);
        assert_eq!(cfg.failed_pin.window, Duration::from_secs(600));
        assert_eq!(cfg.failed_pin.lock_for, Duration::from_secs(86_400));
        assert_eq!(cfg.rapid_fire.min_swipes, 5);
        assert_eq!(cfg.impossible_travel.max_speed_kmh, 900.0);
        assert_eq!(cfg.off_pattern.min_history, 10);
    }

    #[test]
    fn durations_are_strings_and_unknown_keys_are_refused() {
        let cfg: DetectorsConfig =
            toml::from_str("[failed_pin]\nwindow = \"15m\"\nmin_failures = 4\n").unwrap();
        assert_eq!(cfg.failed_pin.window, Duration::from_secs(900));
        assert_eq!(cfg.failed_pin.min_failures, 4);
        let err = toml::from_str::<DetectorsConfig>("[failed_pin]\nwindw = \"15m\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `windw`"), "{err}");
    }
}
