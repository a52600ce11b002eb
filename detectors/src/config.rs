//! Configuration of the core: the `[detectors.*]` tables and the engine's own settings.
//!
//! Every table rejects unknown keys and every key has a default, so an empty file is a valid
//! configuration. Values are checked once, when the engine is built; an error names the key by
//! its full TOML path (`detectors.failed_pin.window`) and the engine refuses to start.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detectors::failed_pin::FailedPinConfig;
use crate::detectors::impossible_travel::ImpossibleTravelConfig;
use crate::detectors::off_pattern::OffPatternConfig;
use crate::detectors::pin_success::PinSuccessConfig;
use crate::detectors::rapid_fire::RapidFireConfig;
use crate::model::{DetectorName, Millis};

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

/// `[detectors]`: one table per detector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    pub failed_pin: FailedPinConfig,
    pub pin_success_after_failures: PinSuccessConfig,
    pub rapid_fire: RapidFireConfig,
    pub impossible_travel: ImpossibleTravelConfig,
    pub off_pattern: OffPatternConfig,
}

impl DetectorsConfig {
    pub fn is_enabled(&self, name: DetectorName) -> bool {
        match name {
            DetectorName::FailedPin => self.failed_pin.enabled,
            DetectorName::PinSuccessAfterFailures => self.pin_success_after_failures.enabled,
            DetectorName::RapidFire => self.rapid_fire.enabled,
            DetectorName::ImpossibleTravel => self.impossible_travel.enabled,
            DetectorName::OffPattern => self.off_pattern.enabled,
        }
    }

    pub fn set_enabled(&mut self, name: DetectorName, on: bool) {
        match name {
            DetectorName::FailedPin => self.failed_pin.enabled = on,
            DetectorName::PinSuccessAfterFailures => self.pin_success_after_failures.enabled = on,
            DetectorName::RapidFire => self.rapid_fire.enabled = on,
            DetectorName::ImpossibleTravel => self.impossible_travel.enabled = on,
            DetectorName::OffPattern => self.off_pattern.enabled = on,
        }
    }

    /// A copy with only `keep` enabled.
    pub fn only(&self, keep: &[DetectorName]) -> DetectorsConfig {
        let mut out = self.clone();
        for d in DetectorName::ALL {
            out.set_enabled(d, keep.contains(&d));
        }
        out
    }
}

/// What the engine of one partition needs: lateness, the card ceiling and the detectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// How far behind the newest event time an event may arrive and still be detected.
    pub allowed_lateness: Duration,
    /// Most cards tracked at once; past it the least recently seen card is forgotten.
    pub max_tracked_cards: usize,
    pub detectors: DetectorsConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: Duration::from_secs(30),
            max_tracked_cards: 1_000_000,
            detectors: DetectorsConfig::default(),
        }
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
