//! The bundled sample replayed when no file is given: a small labelled month made by
//! `swipeguard simulate --cards 1500 --days 30 --seed 7 --fraud-share 0.04`, gzip'd, built into
//! the binary so that `swipeguard replay` works from any directory.

use std::io;

use super::input::{open_bytes, Input};

pub const NAME: &str = "bundled sample (data/sample.jsonl.gz)";

const BYTES: &[u8] = include_bytes!("../../data/sample.jsonl.gz");

pub fn open() -> io::Result<Input> {
    open_bytes(NAME, BYTES)
}
