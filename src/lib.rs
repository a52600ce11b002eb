//! swipeguard, the shell around the pure detection core (`swipeguard-detectors`): decoding,
//! encoding, and the commands that move events in and alerts out.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod codec;
pub mod encode;
