//! The daemon against a real Kafka-protocol broker: replay ≡ live, and dead letters.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn replay_equals_live_and_bad_messages_go_to_the_dead_letter_topic() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = DaemonSetup::new(&broker.bootstrap(), "live");
    setup.topics(4);
    let mut lines = simulate(600, 20, 11);
    let valid = lines.len();
    // A handful of malformed messages among the valid ones.
    let bad = [
        "not json",
        "[1,2,3]",
        r#"{"event_id":"x","ts":"noon","card_id":"c","amount_minor":1,"merchant_id":"m","outcome":"approved"}"#,
        r#"{"event_id":"y","ts":1767580200000,"card_id":"c","amount_minor":-3,"merchant_id":"m","outcome":"approved"}"#,
    ];
    for (i, b) in bad.iter().enumerate() {
        lines.insert(100 + i * 500, b.to_string());
    }
    // Pushed with `swipeguard produce`, which sends JSONL lines unchanged (the bad ones too).
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .args(["produce"])
        .arg(&file)
        .args(["--topic", &setup.swipes, "--brokers", &broker.bootstrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("produced {} messages", lines.len())));

    let config = setup.write(dir.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("daemon.log"));
    let processed = || {
        daemon
            .metric(r#"swipeguard_events_total{result="processed"}"#)
            .unwrap_or(0.0) as usize
    };
    assert!(
        wait_until(Duration::from_secs(120), || processed() >= valid),
        "processed {} of {valid}: {}",
        processed(),
        daemon.log_text()
    );
    // The idle watermark advance releases what the reorder buffer holds; every alert acked.
    assert!(
        daemon.wait_drained(Duration::from_secs(90)),
        "not drained: {}",
        daemon.log_text()
    );

    let expected = by_id(replay_lines(dir.path(), &lines, None));
    let live = by_id(
        read_topic(&broker.bootstrap(), &setup.alerts)
            .into_iter()
            .map(|r| r.payload),
    );
    assert!(!expected.is_empty());
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "alert id sets differ"
    );
    assert_eq!(live, expected, "alert bodies differ");

    let dlq = read_topic(&broker.bootstrap(), &setup.dead_letters);
    let mut reasons: Vec<String> = dlq
        .iter()
        .map(|r| {
            r.headers
                .get("swipeguard.reason")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["bad_timestamp", "negative_amount", "not_json", "not_object"]
    );
    for r in &dlq {
        assert!(
            bad.contains(&r.payload.as_str()),
            "forwarded unchanged: {}",
            r.payload
        );
    }
}

/// Alert budgets (DESIGN §14) are in event time and per partition: on a one-partition topic
/// the daemon withholds exactly what replay withholds, with the same `budget_exceeded` alerts.
#[test]
fn alert_budgets_withhold_the_same_live_as_in_replay() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = DaemonSetup::new(&broker.bootstrap(), "budget");
    setup.extra.push_str(
        "\n[detectors.off_pattern]\nmax_alerts_per_hour = 1\n\n[detectors.card_lock]\nmax_alerts_per_hour = 1\n",
    );
    setup.topics(1);
    let lines = simulate(800, 20, 12);
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines);
    let config = setup.write(dir.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("daemon.log"));
    daemon.wait_processed_and_drained(lines.len());
    let expected = by_id(replay_lines(dir.path(), &lines, Some(&config)));
    let notices = expected
        .values()
        .filter(|a| a.contains(r#""reason":"budget_exceeded""#))
        .count();
    assert!(notices >= 2, "the budgets never ran out: {notices} notices");
    let live = by_id(
        read_topic(&broker.bootstrap(), &setup.alerts)
            .into_iter()
            .map(|r| r.payload),
    );
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "alert id sets differ"
    );
    assert_eq!(live, expected, "alert bodies differ");
    let withheld = daemon
        .metric(r#"swipeguard_alerts_withheld_total{detector="off_pattern"}"#)
        .unwrap_or(0.0);
    assert!(withheld >= 1.0, "withheld {withheld}");
}
