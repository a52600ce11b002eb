//! Agreement with Apache Flink, on every change (issue 7).
//!
//! Runs `benches/peers/flink/check.sh`: it installs PyFlink (`apache-flink==2.3.0` into a venv
//! under `$HOME/.cache/swipeguard/`, or `$FLINK_VENV`; a no-op once there — the first run on a
//! fresh machine downloads about 300 MB and needs Java 11+ and CPython 3.11), generates the
//! small deterministic sample of `gen_sample.py` (about 3 500 swipes: bursts, PIN guessing, near
//! misses, exact window boundaries, same-millisecond ties, invalid lines), runs the Flink job over
//! it, and cross-checks Flink's detections against `reference.py` and against this build's
//! `swipeguard replay --detectors rapid_fire,failed_pin` (`SWIPEGUARD_BIN`). `crosscheck.py`
//! applies swipeguard's 10-minute cool-down to Flink's per-swipe detections and fails on any
//! (detector, card, millisecond) missing or extra; a differing trigger id passes only when it is
//! a same-millisecond tie (see `benches/peers/flink/README.md`). This test asserts the script
//! succeeded and that the swipeguard comparison was made, not skipped, and agreed.
//!
//! Takes about 15–25 s once PyFlink is installed (two Flink start-ups dominate: the job and
//! nothing else); the full-size comparison is a benchmark, `benches/peers/run.sh`.

use std::path::Path;
use std::process::Command;

#[test]
fn flink_and_swipeguard_agree_on_the_generated_sample() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo.join("benches/peers/flink/check.sh"))
        .arg(work.path())
        .env("SWIPEGUARD_BIN", env!("CARGO_BIN_EXE_swipeguard"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        out.status.success(),
        "check.sh failed ({})\n{report}",
        out.status
    );

    // The sections check.sh prints, in order; the swipeguard one only when it ran.
    let section = |title: &str| {
        stdout
            .find(title)
            .unwrap_or_else(|| panic!("no '{title}' in the output\n{report}"))
    };
    assert!(
        !stdout.contains("swipeguard comparison skipped"),
        "the swipeguard comparison was skipped\n{report}"
    );
    let vs_reference = section("== crosscheck: flink vs reference.py");
    let replay = section(&format!(
        "== swipeguard replay ({})",
        env!("CARGO_BIN_EXE_swipeguard")
    ));
    let vs_swipeguard = section("== crosscheck: flink vs swipeguard");
    assert!(vs_reference < replay && replay < vs_swipeguard, "{report}");
    let verdicts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("crosscheck: "))
        .collect();
    assert_eq!(verdicts.len(), 2, "{report}");
    for v in &verdicts {
        assert!(
            v.starts_with("crosscheck: AGREE (") && v.contains(" 0 missing, 0 extra,"),
            "{v}\n{report}"
        );
    }
    // The swipeguard verdict follows its section, and the comparison found alerts to compare.
    let last = &stdout[vs_swipeguard..];
    let verdict = last
        .lines()
        .find(|l| l.starts_with("crosscheck: "))
        .unwrap();
    let matched: u64 = verdict
        .trim_start_matches("crosscheck: AGREE (")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(matched > 0, "nothing was compared: {verdict}\n{report}");
    assert!(stdout.contains("flink peer check: OK"), "{report}");
}
