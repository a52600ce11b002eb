//! The pure detection core of swipeguard: card swipes and settlements in, explainable alerts
//! out.
//!
//! The determinism contract, on which replay ≡ live, crash ≡ no crash and scale-out ≡ one
//! process stand:
//! 1. every decision depends only on the events of one partition and the configuration;
//! 2. time is the events' own time: nothing here reads a clock or draws a random number;
//! 3. detectors see each partition in (event time, event id) order, whatever the arrival order
//!    within the allowed lateness (each [`Stage`] buffers and releases on its watermark);
//! 4. the whole state of a partition snapshots and restores exactly, detector by detector
//!    ([`Engine::snapshot`]);
//! 5. an alert's id is a hash of detector, subject and first evidence event.
//!
//! A detector declares the key its state lives under (card, terminal, account, traceability
//! code); the detectors of one key kind form a stage ([`stage`]). Adding a detector is one file
//! under [`detectors`] and one line in [`registry`].
//!
//! No tokio, no Kafka, no I/O: the shell (`swipeguard`) decodes events and delivers alerts.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod budget;
mod chunked;
mod codebook;
pub mod config;
pub mod detector;
pub mod detectors;
pub mod engine;
mod intern;
mod key_index;
mod keys;
pub mod model;
mod packed;
pub mod registry;
pub mod reject;
pub mod reorder;
pub mod settlement;
pub mod snapshot;
pub mod stage;
mod store;
pub mod watermark;
pub mod window;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::{ConfigError, DetectorsConfig, EngineConfig, MaxTrackedKeys};
pub use detector::Detector;
pub use engine::{
    Admission, Counts, Engine, Output, PerDetector, Refusal, Score, StageCounts, StateSize,
};
pub use model::{
    Action, Alert, AlertId, AmountMinor, CardId, Channel, DeclineReason, DetectorName, EventId,
    EventMeta, EventTime, FeatureSurprise, GeoPoint, KeyKind, MerchantKind, Millis, Outcome,
    Severity, Subject, Text, Transaction,
};
pub use reject::RejectReason;
pub use settlement::{CertType, EventType, Item, Settlement, VisitType};
pub use snapshot::{DiscardReason, Discarded, ReconfigureError, Restored, SnapshotError};
pub use stage::Stage;
