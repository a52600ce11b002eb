//! The five detectors of DESIGN §3, one file each.

pub mod failed_pin;
pub mod impossible_travel;
pub mod off_pattern;
pub mod pin_success;
pub mod profile;
pub mod rapid_fire;
