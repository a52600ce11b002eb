//! scale-out ≡ one process: three daemons in one group over six partitions, one stopped
//! half-way (a rebalance); the alert id set equals that of one process.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

#[test]
fn three_daemons_with_a_rebalance_find_what_one_finds() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = DaemonSetup::new(&broker.bootstrap(), "scale");
    setup.topics(6);
    let lines = simulate(6_000, 30, 31);
    let (first, second) = lines.split_at(lines.len() / 2);
    produce_lines(&broker.bootstrap(), &setup.swipes, first);
    let expected: BTreeSet<String> = by_id(replay_lines(dir.path(), &lines, None))
        .into_keys()
        .collect();

    let mut daemons: Vec<Daemon> = (0..3)
        .map(|i| {
            let mut s = DaemonSetup::new(&broker.bootstrap(), "scale");
            s.http_port = free_port();
            let config = s.write(dir.path());
            Daemon::spawn(
                &config,
                s.http_port,
                &dir.path().join(format!("daemon-{i}.log")),
            )
        })
        .collect();
    for d in &daemons {
        d.assert_ready("yet");
    }
    let assigned = |d: &Daemon| d.metric("swipeguard_partitions_assigned").unwrap_or(0.0);
    assert!(
        wait_until(Duration::from_secs(30), || daemons
            .iter()
            .all(|d| assigned(d) == 2.0)),
        "partitions not spread 2/2/2"
    );
    // Every daemon has worked on its share before one of them leaves.
    let processed = |d: &Daemon| {
        d.metric(r#"swipeguard_events_total{result="processed"}"#)
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || daemons
            .iter()
            .all(|d| processed(d) > 0.0)),
        "a daemon processed nothing"
    );

    // One daemon leaves half-way; the others take over its partitions from its snapshots.
    let (code, _) = daemons[2].terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", daemons[2].log_text());
    daemons.pop();
    produce_lines(&broker.bootstrap(), &setup.swipes, second);
    assert!(wait_until(Duration::from_secs(60), || daemons
        .iter()
        .map(assigned)
        .sum::<f64>()
        == 6.0));
    assert!(
        wait_all_committed(
            &broker.bootstrap(),
            &setup.group,
            &setup.swipes,
            6,
            Duration::from_secs(180)
        ),
        "offsets never reached the end: {} / {}",
        daemons[0].log_text(),
        daemons[1].log_text()
    );
    for d in &daemons {
        assert!(
            d.wait_drained(Duration::from_secs(60)),
            "never drained: {}",
            d.log_text()
        );
    }
    let got: BTreeSet<String> = alert_ids(&broker.bootstrap(), &setup.alerts)
        .into_iter()
        .collect();
    assert_eq!(got, expected);
}
