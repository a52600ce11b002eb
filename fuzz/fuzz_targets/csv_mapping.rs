//! Fuzzes CSV reading through a mapping: any file content, read with the bank-export mapping,
//! the settlement mapping that folds rows (`group_by`), or none (§2 column names), yields rows or
//! rejects, never a panic or an endless loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swipeguard::codec::DecodeLimits;
use swipeguard::replay::input::{detect, open_reader, Rows};
use swipeguard::replay::mapping::MappingFile;

const BANK: &str = include_str!("../../deploy/mappings/bank_export.toml");
const NHSA: &str = include_str!("../../deploy/mappings/nhsa_settlement.toml");

fuzz_target!(|data: &[u8]| {
    let Some((&choice, content)) = data.split_first() else { return };
    // Seeds of the first byte 0 and 1 keep their meaning: bank and none.
    let mapping = match choice % 3 {
        0 => MappingFile::parse(BANK, "bank_export.toml").ok(),
        2 => MappingFile::parse(NHSA, "nhsa_settlement.toml").ok(),
        _ => None,
    };
    let Ok(mut input) = open_reader("fuzz.csv", Box::new(std::io::Cursor::new(content.to_vec())), content.len() as u64) else {
        return;
    };
    let Ok(format) = detect(&mut *input.reader) else { return };
    let limits = DecodeLimits { max_bytes: 4096, ..DecodeLimits::default() };
    let Ok(mut rows) = Rows::new(input, format, mapping.as_ref(), limits) else { return };
    let mut seen = 0usize;
    while let Ok(Some(_)) = rows.next_row() {
        seen += 1;
        assert!(seen <= content.len() + 1, "more rows than bytes");
    }
});
