//! swipeguard, the shell around the pure detection core (`swipeguard-detectors`): decoding and
//! encoding, configuration, the command line, replay and simulation.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cli;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod encode;
pub mod exit;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod produce;
pub mod replay;
pub mod shutdown;
pub mod simulate;
pub mod telemetry;
