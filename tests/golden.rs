//! Golden streams: each `tests/fixtures/<name>.events.jsonl` runs through the default engine and
//! must give exactly `tests/fixtures/<name>.alerts.jsonl`. To accept new output after a
//! deliberate change, run with `SWIPEGUARD_BLESS=1` and review the diff.
//!
//! The expected files of the card detectors were written by the release before alerts named
//! their subject, and stay as it wrote them: every alert must be byte for byte what that
//! release wrote, followed only by the `"subject"` member added since (naming the card). The
//! same holds for the bundled sample of that release (`tests/fixtures/v1/`), replayed through
//! the command line, and for a snapshot that release wrote (`tests/fixtures/v1/engine-v1.snapshot`,
//! made by snapshotting the first half of that sample): restored into this build, every card's
//! state is there and the second half gives the alerts that release gave.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use swipeguard::codec::{decode_event, DecodeLimits};
use swipeguard::encode::encode_alert;
use swipeguard_detectors::{
    Alert, DetectorName, DiscardReason, Engine, EngineConfig, KeyKind, Output,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn encode(alerts: &[Alert]) -> String {
    let mut bytes = Vec::new();
    for a in alerts {
        encode_alert(a, &mut bytes);
    }
    String::from_utf8(bytes).unwrap()
}

fn alerts_for(engine: &mut Engine, events: &str) -> Vec<Alert> {
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
    out.alerts
}

/// An alert line as the release before subjects wrote it: the line without its trailing
/// `"subject"` member, which must name the alert's card.
fn as_before_subjects(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let card = v["card_id"].as_str().unwrap();
    let suffix = format!(
        r#","subject":{{"kind":"card","id":{}}}}}"#,
        serde_json::json!(card)
    );
    let head = line
        .strip_suffix(&suffix)
        .unwrap_or_else(|| panic!("not a card alert ending in its subject: {line}"));
    format!("{head}}}")
}

/// The detectors of the release before subjects.
const V1_DETECTORS: [&str; 5] = [
    "failed_pin",
    "pin_success_after_failures",
    "rapid_fire",
    "impossible_travel",
    "off_pattern",
];

/// A detector of that release whose version has not moved on since.
fn unchanged_since_v1(d: DetectorName) -> bool {
    V1_DETECTORS.contains(&d.as_str()) && d.registration().version == 1
}

fn assert_same_as_before(actual: &str, expected: &str, what: &str) {
    let unchanged = |line: &&str| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        unchanged_since_v1(DetectorName::parse(v["detector"].as_str().unwrap()).unwrap())
    };
    let actual: Vec<String> = actual
        .lines()
        .filter(unchanged)
        .map(as_before_subjects)
        .collect();
    let expected: Vec<&str> = expected.lines().filter(unchanged).collect();
    assert_eq!(actual, expected, "{what} changed");
    assert!(
        !expected.is_empty(),
        "{what} expects no alert: it proves nothing"
    );
}

/// (name, events) of every golden stream.
fn streams() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".events.jsonl"))
        {
            out.push((name.to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn golden_streams_give_their_expected_alerts() {
    let bless = std::env::var_os("SWIPEGUARD_BLESS").is_some();
    let mut checked = 0;
    for (name, events) in streams() {
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let actual = encode(&alerts_for(&mut engine, &events));
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
            "golden stream {name} expects no alert"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} golden streams found");
}

#[test]
fn golden_streams_give_the_alerts_of_the_release_before_subjects() {
    let mut checked = 0;
    for (name, events) in streams() {
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        let actual = encode(&alerts_for(&mut engine, &events));
        let v1 = fixtures().join(format!("v1/{name}.alerts.jsonl"));
        let expected = std::fs::read_to_string(&v1).unwrap();
        if expected
            .lines()
            .all(|l| l.contains(r#""detector":"off_pattern""#))
        {
            // Only a detector whose version has moved on: nothing to hold it to.
            continue;
        }
        assert_same_as_before(&actual, &expected, &format!("golden stream {name}"));
        checked += 1;
    }
    assert!(
        checked >= 3,
        "only {checked} golden streams compared with v1"
    );
}

#[test]
fn the_previous_bundled_sample_replays_to_the_same_card_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .arg("replay")
        .arg(fixtures().join("v1/sample.jsonl.gz"))
        .arg("--out")
        .arg(&out)
        .args(["--rejects", "/dev/null", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let actual = std::fs::read_to_string(&out).unwrap();
    let expected = std::fs::read_to_string(fixtures().join("v1/sample.alerts.jsonl")).unwrap();
    // Alerts of detectors the release did not have are not part of the comparison.
    let card: String = actual
        .lines()
        .filter(|l| l.ends_with(r#""}}"#) && l.contains(r#","subject":{"kind":"card","#))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        card.lines().count(),
        actual.lines().count(),
        "the sample has no case for the newer detectors"
    );
    assert_same_as_before(&card, &expected, "the bundled sample of the release before");
}

fn sample_lines() -> Vec<String> {
    let gz = std::fs::read(fixtures().join("v1/sample.jsonl.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn a_snapshot_of_the_release_before_restores_every_card_and_continues_the_same() {
    let bytes = std::fs::read(fixtures().join("v1/engine-v1.snapshot")).unwrap();
    let lines = sample_lines();
    let restored = Engine::restore(EngineConfig::default(), &bytes).unwrap();
    assert_eq!(restored.format, 1);
    assert_eq!(restored.position as usize, lines.len() / 2);
    // Only the section of the detector whose version moved on is discarded.
    let discarded: Vec<(&str, DiscardReason)> = restored
        .discarded
        .iter()
        .map(|d| (d.detector.as_str(), d.reason))
        .collect();
    assert_eq!(discarded, [("off_pattern", DiscardReason::Version)]);
    // Every card state the release held is here. Rebuilding the first half from scratch gives
    // the same cards with the same states — except what this build has already swept as no
    // longer able to matter (closed PIN and rapid-fire windows, finished cool-downs): the
    // restored engine holds those until its own sweep gets to them, so it holds at least as
    // much, and exactly the same for detectors that never expire anything.
    let mut rebuilt = Engine::new(EngineConfig::default()).unwrap();
    alerts_for_prefix(&mut rebuilt, &lines[..lines.len() / 2]);
    let card_stage = |e: &Engine| -> (usize, Vec<(String, usize)>) {
        let s = e
            .stages()
            .iter()
            .find(|s| s.kind() == KeyKind::Card)
            .unwrap();
        let unchanged = s
            .detectors()
            .filter(|(d, _)| unchanged_since_v1(*d))
            .map(|(d, n)| (d.to_string(), n))
            .collect();
        (s.held().1, unchanged)
    };
    let (restored_buffer, restored_live) = card_stage(&restored.engine);
    let (rebuilt_buffer, rebuilt_live) = card_stage(&rebuilt);
    assert_eq!(restored_buffer, rebuilt_buffer, "the reorder buffer");
    for ((name, restored), (_, rebuilt)) in restored_live.iter().zip(&rebuilt_live) {
        if name == "impossible_travel" {
            assert_eq!(restored, rebuilt, "{name}");
        } else {
            assert!(restored >= rebuilt, "{name}: {restored} < {rebuilt}");
        }
    }
    assert_eq!(
        travel_snapshot(&restored.engine),
        travel_snapshot(&rebuilt),
        "the restored travel states encode exactly as the rebuilt ones"
    );

    let mut engine = restored.engine;
    let after = alerts_for(&mut engine, &lines[lines.len() / 2..].join("\n"));
    let card: Vec<Alert> = after
        .into_iter()
        .filter(|a| a.subject.kind == KeyKind::Card)
        .collect();
    let expected =
        std::fs::read_to_string(fixtures().join("v1/engine-v1.after.alerts.jsonl")).unwrap();
    assert_same_as_before(&encode(&card), &expected, "alerts after restoring");
}

fn alerts_for_prefix(engine: &mut Engine, lines: &[String]) {
    let mut out = Output::default();
    for l in lines {
        if let Ok(tx) = decode_event(l.as_bytes(), &DecodeLimits::default()) {
            engine.admit(tx, &mut out);
        }
    }
}

/// A snapshot of `engine` as if only `impossible_travel` ran (a v1 detector that never
/// expires state): what both engines must hold identically.
fn travel_snapshot(engine: &Engine) -> Vec<u8> {
    let bytes = engine.snapshot(0);
    let mut cfg = EngineConfig::default();
    cfg.detectors = cfg
        .detectors
        .only(&[DetectorName::parse("impossible_travel").unwrap()]);
    let restored = Engine::restore(cfg, &bytes).unwrap();
    restored.engine.snapshot(0)
}

/// A snapshot written by the build before the settlement fields (format 2, made like
/// `tests/fixtures/v1/engine-v1.snapshot` from the first half of the sample bundled then, which
/// has a case for every detector of that build): it restores with no section discarded, and
/// the second half gives byte for byte the alerts that build gave — all six detectors.
#[test]
fn a_format_2_snapshot_restores_whole_and_continues_the_same() {
    let bytes = std::fs::read(fixtures().join("v2/engine-v2.snapshot")).unwrap();
    let gz = std::fs::read(fixtures().join("v2/sample.jsonl.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let restored = Engine::restore(EngineConfig::default(), &bytes).unwrap();
    assert_eq!(restored.format, 2);
    assert_eq!(restored.position as usize, lines.len() / 2);
    assert!(restored.discarded.is_empty(), "{:?}", restored.discarded);
    let mut engine = restored.engine;
    let after = alerts_for(&mut engine, &lines[lines.len() / 2..].join("\n"));
    let expected =
        std::fs::read_to_string(fixtures().join("v2/engine-v2.after.alerts.jsonl")).unwrap();
    let detector = |line: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["detector"].as_str().unwrap().to_string()
    };
    let then: std::collections::BTreeSet<String> = expected.lines().map(detector).collect();
    assert_eq!(then.len(), 6, "{then:?}");
    let actual: Vec<String> = encode(&after)
        .lines()
        .filter(|l| then.contains(&detector(l)))
        .map(String::from)
        .collect();
    assert_eq!(actual, expected.lines().collect::<Vec<_>>());
}

/// A snapshot written by the build before alert budgets (format 3, from the first half of the
/// sample bundled then, which has a case for every one of its ten detectors): it restores with
/// no section discarded, and the second half gives byte for byte the alerts that build gave.
#[test]
fn a_format_3_snapshot_restores_whole_and_continues_the_same() {
    let bytes = std::fs::read(fixtures().join("v3/engine-v3.snapshot")).unwrap();
    let gz = std::fs::read(fixtures().join("v3/sample.jsonl.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let restored = Engine::restore(EngineConfig::default(), &bytes).unwrap();
    assert_eq!(restored.format, 3);
    assert_eq!(restored.position as usize, lines.len() / 2);
    assert!(restored.discarded.is_empty(), "{:?}", restored.discarded);
    assert!(!restored.config_changed);
    let mut engine = restored.engine;
    let after = encode(&alerts_for(
        &mut engine,
        &lines[lines.len() / 2..].join("\n"),
    ));
    let expected =
        std::fs::read_to_string(fixtures().join("v3/engine-v3.after.alerts.jsonl")).unwrap();
    let detectors: std::collections::BTreeSet<&str> = expected
        .lines()
        .map(|l| {
            l.split(r#""detector":""#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(detectors.len(), 10, "{detectors:?}");
    assert_eq!(
        after.lines().collect::<Vec<_>>(),
        expected.lines().collect::<Vec<_>>()
    );
}
