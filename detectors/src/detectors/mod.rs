//! The detectors, one file each; [`crate::registry`] lists them.

pub mod card_lock;
pub mod early_refill;
pub mod failed_pin;
pub mod impossible_travel;
pub mod off_pattern;
pub mod pin_success;
pub mod rapid_fire;
pub mod settle_during_stay;
pub mod terminal_pin_probe;
pub mod trace_code_resettled;
