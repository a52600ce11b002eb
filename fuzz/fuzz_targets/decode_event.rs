//! Fuzzes the event decoder: any bytes either decode to an event or are refused with a reason,
//! never a panic; and a decoded event re-encodes to JSON that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swipeguard::codec::{decode_event, DecodeLimits};
use swipeguard::encode::encode_event;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(tx) = decode_event(data, &limits) {
        let mut line = Vec::new();
        encode_event(&tx, &mut line);
        line.pop();
        match decode_event(&line, &limits) {
            Ok(again) => assert_eq!(again, tx, "re-encoding changed the event: {}", String::from_utf8_lossy(&line)),
            Err(r) => panic!("a decoded event re-encodes to something refused ({r}): {}", String::from_utf8_lossy(&line)),
        }
    }
});
