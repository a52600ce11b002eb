//! `swipeguard diff`, run as an analyst runs it: its verdict is checked against two separate
//! replays of the same file, compared here by alert id.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn swipeguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swipeguard"))
}

fn ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn ids(jsonl: &str, side: Option<&str>) -> BTreeSet<String> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| side.is_none_or(|s| v["side"] == s))
        .map(|v| v["alert_id"].as_str().unwrap().to_string())
        .collect()
}

fn replay(dir: &Path, file: &Path, config: &Path) -> String {
    ok(swipeguard()
        .arg("replay")
        .arg(file)
        .arg("--config")
        .arg(config)
        .args(["--no-progress", "--rejects", "/dev/null"])
        .current_dir(dir))
    .0
}

#[test]
fn diff_reports_what_two_separate_replays_differ_in() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("month.jsonl");
    ok(swipeguard()
        .args(["simulate", "--cards", "3000", "--days", "30", "--seed", "5"])
        .args(["--fraud-share", "0.08", "--out"])
        .arg(&file));
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "").unwrap();
    // A stricter off_pattern, and rapid_fire off: card_lock's temporary locks follow too.
    std::fs::write(
        &b,
        "[detectors.off_pattern]\nalert_p_value = 0.0005\n\n[detectors.rapid_fire]\nenabled = false\n",
    )
    .unwrap();
    let out = dir.path().join("differing.jsonl");
    let (table, _) = ok(swipeguard()
        .arg("diff")
        .arg(&file)
        .arg("--config")
        .arg(&a)
        .arg("--config")
        .arg(&b)
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(dir.path().join("report"))
        .args(["--no-progress", "--rejects", "/dev/null"]));

    let (alone_a, alone_b) = (
        ids(&replay(dir.path(), &file, &a), None),
        ids(&replay(dir.path(), &file, &b), None),
    );
    let only_a: BTreeSet<String> = alone_a.difference(&alone_b).cloned().collect();
    let only_b: BTreeSet<String> = alone_b.difference(&alone_a).cloned().collect();
    let both = alone_a.intersection(&alone_b).count();
    assert!(only_a.len() > 10, "the change removes alerts: {table}");
    let differing = std::fs::read_to_string(&out).unwrap();
    assert_eq!(ids(&differing, Some("a")), only_a);
    assert_eq!(ids(&differing, Some("b")), only_b);
    assert_eq!(differing.lines().count(), only_a.len() + only_b.len());

    let all = table
        .lines()
        .find(|l| l.trim_start().starts_with("all detectors") && !l.contains('%'))
        .unwrap();
    let numbers: Vec<usize> = all
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers, [only_a.len(), only_b.len(), both], "{table}");
    // rapid_fire is gone from B: every one of its alerts is A's alone.
    let rapid = table
        .lines()
        .find(|l| l.trim_start().starts_with("rapid_fire") && !l.contains('%'))
        .unwrap();
    let r: Vec<usize> = rapid
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(r[0] > 0 && r[1] == 0 && r[2] == 0, "{rapid}");
    assert!(
        table.contains("precision A"),
        "labels give precision: {table}"
    );
    let page = std::fs::read_to_string(dir.path().join("report/index.html")).unwrap();
    assert!(page.contains("<table id=\"diff\">") && page.contains("rapid_fire"));
}

#[test]
fn diff_refuses_configurations_that_read_the_input_differently() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "").unwrap();
    std::fs::write(&b, "[ingest]\nmax_event_bytes = 4096\n").unwrap();
    let out = swipeguard()
        .arg("diff")
        .arg("--config")
        .arg(&a)
        .arg("--config")
        .arg(&b)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ingest.max_event_bytes"), "{stderr}");
    let one = swipeguard()
        .arg("diff")
        .arg("--config")
        .arg(&a)
        .output()
        .unwrap();
    assert!(!one.status.success());
    assert!(String::from_utf8_lossy(&one.stderr).contains("exactly two"));
}

/// `replay --reconfigure-at`: a change at row 0 is the new configuration from the start; one in
/// the middle gives the same output whatever the stage threads; it refuses `--sort`.
#[test]
fn replay_reconfigures_at_a_row_position_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("month.jsonl");
    ok(swipeguard()
        .args(["simulate", "--cards", "1500", "--days", "20", "--seed", "9"])
        .args(["--fraud-share", "0.08", "--out"])
        .arg(&file));
    let b = dir.path().join("b.toml");
    std::fs::write(
        &b,
        "[detectors.off_pattern]\nalert_p_value = 0.0005\n\n[detectors.rapid_fire]\nenabled = false\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        ok(swipeguard()
            .arg("replay")
            .arg(&file)
            .args(["--no-progress", "--rejects", "/dev/null"])
            .args(extra)
            .current_dir(dir.path()))
    };
    let at = |p: &str| format!("{p}={}", b.display());
    let under_b = replay(dir.path(), &file, &b);
    assert_eq!(run(&["--reconfigure-at", &at("0")]).0, under_b);
    let (one, summary) = run(&["--reconfigure-at", &at("6000"), "--stage-threads", "1"]);
    let (four, _) = run(&["--reconfigure-at", &at("6000"), "--stage-threads", "4"]);
    assert_eq!(one, four);
    assert!(
        summary.contains("reconfigured after 6,000 rows"),
        "{summary}"
    );
    let plain = run(&[]).0;
    assert_ne!(one, plain);
    assert_ne!(one, under_b);
    // Before the change the alerts are A's: rapid_fire still fires early on.
    let rapid = |s: &str| {
        s.lines()
            .filter(|l| l.contains(r#""detector":"rapid_fire""#))
            .count()
    };
    assert!(
        rapid(&one) > 0 && rapid(&one) < rapid(&plain),
        "{} {}",
        rapid(&one),
        rapid(&plain)
    );
    // With nothing buffered (lateness 0), a change after the last record changes nothing, and
    // one after the last but one changes at most the last record's alerts: the cut is exact.
    let records = std::fs::read_to_string(&file).unwrap().lines().count();
    let zero = ["--allowed-lateness", "0s"];
    let unchanged = run(&zero).0;
    let end = at(&records.to_string());
    assert_eq!(
        run(&[zero[0], zero[1], "--reconfigure-at", &end]).0,
        unchanged
    );
    let past = swipeguard()
        .arg("replay")
        .arg(&file)
        .args(["--reconfigure-at", &at(&(records + 1).to_string())])
        .output()
        .unwrap();
    assert!(!past.status.success());
    assert!(String::from_utf8_lossy(&past.stderr).contains(&format!("only {records} records")));
    let refused = swipeguard()
        .arg("replay")
        .arg(&file)
        .args(["--sort", "--reconfigure-at", &at("10")])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--sort"));
}
