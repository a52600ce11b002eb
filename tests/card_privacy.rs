//! Card-number protection: a stream carrying raw card numbers, replayed and run through the
//! daemon with `[ingest.card_hash]` on. Everything swipeguard emits — logs (text and JSON),
//! `/metrics`, alerts, dead letters, snapshots, the rejects file, the replay summary and report —
//! is scanned for the raw numbers: none may appear.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::*;

const KEY_VAR: &str = "SWIPEGUARD_TEST_CARD_KEY";
const KEY: &str = "a test key that is long enough";

/// Simulated events with each card id replaced by a raw 19-digit card number, plus bad messages
/// that carry raw numbers too. Returns the lines and the raw numbers.
fn stream() -> (Vec<String>, Vec<String>) {
    let mut pans: BTreeMap<String, String> = BTreeMap::new();
    let mut lines: Vec<String> = simulate(400, 20, 71)
        .into_iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(&l).unwrap();
            let card = v["card_id"].as_str().unwrap().to_string();
            let next = pans.len();
            let pan = pans
                .entry(card)
                .or_insert_with(|| format!("62220200{:011}", 31_337 * (next as u64 + 1)))
                .clone();
            v["card_id"] = serde_json::json!(pan);
            v["account_id"] = serde_json::json!(format!("3101041970{pan:.8}"));
            v.to_string()
        })
        .collect();
    let pans: Vec<String> = pans.into_values().collect();
    let p = &pans[0];
    lines.insert(50, format!("card {p} declined at the terminal"));
    lines.insert(60, format!(r#"{{"event_id":"bad-ts","ts":"noon","card_id":"{p}","amount_minor":100,"merchant_id":"m","outcome":"approved"}}"#));
    lines.insert(70, format!(r#"[{{"card_id":"{p}"}}]"#));
    // A late event of a known card (older than the watermark by hours).
    lines.push(format!(r#"{{"event_id":"late-1","ts":"2026-01-01T00:00:00Z","card_id":"{p}","amount_minor":100,"merchant_id":"m","outcome":"approved"}}"#));
    (lines, pans)
}

fn assert_clean(what: &str, text: &str, pans: &[String]) {
    for pan in pans {
        assert!(
            !text.contains(pan.as_str()),
            "{what} leaks the raw card number {pan}"
        );
        assert!(
            !text.contains(&pan[..16]),
            "{what} leaks a card number prefix {}",
            &pan[..16]
        );
    }
}

const HASHING: &str = "\n[ingest.card_hash]\nenabled = true\nkey_env = \"SWIPEGUARD_TEST_CARD_KEY\"\nfields = [\"card_id\", \"account_id\"]\n";

#[test]
fn replay_with_hashing_emits_no_raw_card_number() {
    let (lines, pans) = stream();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("raw.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let config = dir.path().join("replay.toml");
    std::fs::write(&config, HASHING).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .arg("replay")
        .arg(&file)
        .arg("--config")
        .arg(&config)
        .args([
            "--out",
            "alerts.jsonl",
            "--rejects",
            "rejects.jsonl",
            "--report",
            "report",
        ])
        .env(KEY_VAR, KEY)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    let rejects = std::fs::read_to_string(dir.path().join("rejects.jsonl")).unwrap();
    assert!(alerts.lines().count() > 5, "the stream raises alerts");
    assert_eq!(rejects.lines().count(), 4, "{rejects}");
    assert!(rejects.contains("withheld"), "{rejects}");
    assert_clean("the alerts", &alerts, &pans);
    assert_clean("the rejects file", &rejects, &pans);
    assert_clean("the summary", &String::from_utf8_lossy(&out.stderr), &pans);
    assert_clean("stdout", &String::from_utf8_lossy(&out.stdout), &pans);
    assert_clean(
        "the report",
        &std::fs::read_to_string(dir.path().join("report/index.html")).unwrap(),
        &pans,
    );

    // Without the key, hashing refuses to start and names the key.
    let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .arg("replay")
        .arg(&file)
        .arg("--config")
        .arg(&config)
        .env_remove(KEY_VAR)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingest.card_hash.key_env"));
}

#[test]
fn the_daemon_with_hashing_emits_no_raw_card_number() {
    let (lines, pans) = stream();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = DaemonSetup::new(&broker.bootstrap(), "privacy");
    setup.topics(2);
    let (first, second) = lines.split_at(lines.len() / 2);
    produce_lines(&broker.bootstrap(), &setup.swipes, first);

    let mut logs = Vec::new();
    for (round, format) in ["text", "json"].iter().enumerate() {
        setup.extra =
            format!("[engine]\nidle_watermark_after = \"2s\"\nsnapshot_every = \"2s\"\n{HASHING}");
        let mut config_text = setup.toml().replace(
            "level = \"info\"",
            &format!("level = \"debug\"\nformat = \"{format}\""),
        );
        config_text.push('\n');
        let config = dir.path().join(format!("daemon-{format}.toml"));
        std::fs::write(&config, config_text).unwrap();
        let log = dir.path().join(format!("daemon-{format}.log"));
        let mut daemon = {
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
                .args(["run", "--config"])
                .arg(&config)
                .env(KEY_VAR, KEY)
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            Daemon {
                child,
                log: log.clone(),
                http_port: setup.http_port,
            }
        };
        daemon.assert_ready("yet");
        if round == 1 {
            produce_lines(&broker.bootstrap(), &setup.swipes, second);
        }
        assert!(wait_all_committed(
            &broker.bootstrap(),
            &setup.group,
            &setup.swipes,
            2,
            Duration::from_secs(120)
        ));
        assert!(daemon.wait_drained(Duration::from_secs(60)));
        let (_, metrics) = daemon.http("/metrics").unwrap();
        assert_clean("/metrics", &metrics, &pans);
        let (code, _) = daemon.terminate(Duration::from_secs(30));
        assert_eq!(code, Some(0));
        logs.push(daemon.log_text());
    }
    assert!(
        logs[1].lines().any(|l| l.starts_with('{')),
        "the second run logs JSON"
    );
    for (i, log) in logs.iter().enumerate() {
        assert!(log.lines().count() > 5);
        assert_clean(&format!("log {i}"), log, &pans);
    }
    let alerts = read_topic(&broker.bootstrap(), &setup.alerts);
    assert!(alerts.len() > 5);
    for topic in [&setup.alerts, &setup.dead_letters, &setup.snapshots] {
        for r in read_topic(&broker.bootstrap(), topic) {
            let text = format!("{:?} {} {:?}", r.key, r.payload, r.headers);
            assert_clean(topic, &text, &pans);
        }
    }
    let dlq = read_topic(&broker.bootstrap(), &setup.dead_letters);
    assert_eq!(dlq.len(), 4, "three invalid and one late");
}
