//! Broker outage: the broker is down for ~20 s mid-stream; the daemon reports not ready meanwhile,
//! keeps retrying, and afterwards nothing is lost or skipped.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

#[test]
fn a_twenty_second_broker_outage_loses_nothing_and_shows_not_ready() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = DaemonSetup::new(&broker.bootstrap(), "outage");
    setup.topics(3);
    let lines = simulate(6_000, 30, 51);
    let (first, second) = lines.split_at(lines.len() / 2);
    produce_lines(&broker.bootstrap(), &setup.swipes, first);
    let expected: BTreeSet<String> = by_id(replay_lines(dir.path(), &lines, None))
        .into_keys()
        .collect();

    let config = setup.write(dir.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("daemon.log"));
    // The outage falls mid-stream: the daemon has processed part of the first half.
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .metric(r#"swipeguard_events_total{result="processed"}"#)
            .unwrap_or(0.0)
            > 0.0),
        "{}",
        daemon.log_text()
    );

    broker.stop();
    let not_ready = wait_until(Duration::from_secs(15), || {
        daemon.http("/readyz").is_some_and(|(s, _)| s == 503)
    });
    assert!(not_ready, "still ready with the broker down");
    let (_, body) = daemon.http("/readyz").unwrap();
    assert!(body.contains("broker unreachable"), "{body}");
    assert_eq!(
        daemon.http("/healthz").map(|(s, _)| s),
        Some(200),
        "alive meanwhile"
    );
    std::thread::sleep(Duration::from_secs(20));
    broker.restart();

    daemon.assert_ready("again after the outage");
    produce_lines(&broker.bootstrap(), &setup.swipes, second);
    let got = alert_ids_once_drained(&daemon, &setup, 3);
    assert_eq!(got, expected);
    assert!(!daemon.log_text().contains("offset gap"));
}
