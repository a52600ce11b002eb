//! Golden streams: each `tests/fixtures/<name>.events.jsonl` runs through the default engine and
//! must give exactly `tests/fixtures/<name>.alerts.jsonl`. To accept new output after a
//! deliberate change, run with `SWIPEGUARD_BLESS=1` and review the diff.

use std::path::{Path, PathBuf};

use swipeguard::codec::{decode_event, DecodeLimits};
use swipeguard::encode::encode_alert;
use swipeguard_detectors::{Engine, EngineConfig, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn alerts_for(events: &str) -> String {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut out = Output::default();
    for (n, line) in events
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let tx = decode_event(line.as_bytes(), &DecodeLimits::default())
            .unwrap_or_else(|r| panic!("line {}: {r}", n + 1));
        engine.admit(tx, &mut out);
    }
    engine.drain(&mut out);
    let mut bytes = Vec::new();
    for a in &out.alerts {
        encode_alert(a, &mut bytes);
    }
    String::from_utf8(bytes).unwrap()
}

#[test]
fn golden_streams_give_their_expected_alerts() {
    let bless = std::env::var_os("SWIPEGUARD_BLESS").is_some();
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".events.jsonl"))
        else {
            continue;
        };
        let actual = alerts_for(&std::fs::read_to_string(&path).unwrap());
        let expected_path = fixtures().join(format!("{name}.alerts.jsonl"));
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with SWIPEGUARD_BLESS=1 to create it)",
                expected_path.display()
            )
        });
        assert_eq!(actual, expected, "golden stream {name} changed");
        assert!(
            !expected.is_empty(),
            "golden stream {name} expects no alert: it proves nothing"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} golden streams found");
}
