//! crash ≡ no crash: kill -9 the daemon at several random points while it consumes 100K+ events,
//! restart it each time; the distinct alert ids equal those of an uninterrupted run, and every
//! event was processed (the group's committed offsets reach the end of every partition).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

#[test]
fn kill_9_at_random_points_loses_no_alert_and_skips_no_event() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = DaemonSetup::new(&broker.bootstrap(), "crash");
    setup.topics(4);
    let lines = simulate(17_000, 30, 21);
    assert!(lines.len() >= 100_000, "{} events", lines.len());
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines);
    let expected_alerts = by_id(replay_lines(dir.path(), &lines, None));
    let expected: BTreeSet<String> = expected_alerts.keys().cloned().collect();

    let config = setup.write(dir.path());
    let log = dir.path().join("daemon.log");
    let total = lines.len() as f64;
    let processed = |d: &Daemon| {
        d.metric(r#"swipeguard_events_total{result="processed"}"#)
            .unwrap_or(0.0)
    };
    // Kill points chosen by a fixed seed and taken on observed progress, not on time: each
    // round's daemon is killed once it has processed a varied number of events, so every kill
    // lands mid-stream whatever the machine's speed.
    let mut seed = 0x9e37_79b9u64;
    let mut committed_before = 0i64;
    for round in 0..5 {
        let mut daemon = Daemon::spawn(&config, setup.http_port, &log);
        daemon.assert_ready(&format!("in round {round}"));
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let target = 1_000.0 + ((seed >> 33) % 12_000) as f64;
        assert!(
            wait_until(Duration::from_secs(120), || processed(&daemon) >= target),
            "round {round}: processed {} of {target} before the kill: {}",
            processed(&daemon),
            daemon.log_text()
        );
        daemon.kill9();
        let committed: i64 = committed(&broker.bootstrap(), &setup.group, &setup.swipes, 4)
            .values()
            .filter(|o| **o > 0)
            .sum();
        // The group moves forward across crashes, and no kill came after the end.
        assert!(
            committed >= committed_before && (committed as f64) < total,
            "round {round}: committed {committed} (before {committed_before}) of {total}"
        );
        committed_before = committed;
    }
    let daemon = Daemon::spawn(&config, setup.http_port, &log);
    assert!(
        wait_all_committed(
            &broker.bootstrap(),
            &setup.group,
            &setup.swipes,
            4,
            Duration::from_secs(300)
        ),
        "offsets never reached the end: {}",
        daemon.log_text()
    );
    assert!(
        daemon.wait_drained(Duration::from_secs(60)),
        "never drained: {}",
        daemon.log_text()
    );
    let ids = alert_ids(&broker.bootstrap(), &setup.alerts);
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    let missing: Vec<_> = expected
        .difference(&distinct)
        .take(5)
        .map(|id| &expected_alerts[id])
        .collect();
    let extra: Vec<_> = distinct.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?} extra {extra:?} ({} alerts, {} distinct, {} expected): {}",
        ids.len(),
        distinct.len(),
        expected.len(),
        daemon.log_text()
    );
    assert!(
        ids.len() > distinct.len() || committed_before > 0,
        "five kills mid-stream left no trace: no redelivered alert and nothing committed"
    );
    assert!(
        !daemon.log_text().contains("offset gap"),
        "an offset was skipped"
    );
}
