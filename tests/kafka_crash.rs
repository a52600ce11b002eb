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
    // Kill points chosen by a fixed seed: varied, reproducible.
    let mut seed = 0x9e37_79b9u64;
    let mut kills = 0;
    for round in 0..5 {
        let mut daemon = Daemon::spawn(&config, setup.http_port, &log);
        assert!(
            daemon.wait_ready(Duration::from_secs(60)),
            "round {round}: not ready: {}",
            daemon.log_text()
        );
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait_ms = 500 + (seed >> 33) % 3000;
        std::thread::sleep(Duration::from_millis(wait_ms));
        daemon.kill9();
        kills += 1;
    }
    assert_eq!(kills, 5);
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
    if !missing.is_empty() {
        let _ = std::fs::copy(&log, "/tmp/crash-daemon.log");
    }
    let extra: Vec<_> = distinct.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?} extra {extra:?} ({} alerts, {} distinct, {} expected)",
        ids.len(),
        distinct.len(),
        expected.len()
    );
    assert!(
        !daemon.log_text().contains("offset gap"),
        "an offset was skipped"
    );
}
