//! Graceful shutdown: SIGTERM mid-stream exits 0 within the grace period with alerts flushed,
//! the committed offset at the last processed event and a snapshot written there; a restart then
//! continues exactly where it stopped: every alert exactly once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::*;

#[test]
fn sigterm_flushes_commits_and_snapshots_and_a_restart_continues_exactly() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = DaemonSetup::new(&broker.bootstrap(), "term");
    setup
        .extra
        .push_str("\n[daemon]\nshutdown_grace = \"15s\"\n");
    setup.topics(3);
    let lines = simulate(8_000, 30, 41);
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines);
    let expected: BTreeSet<String> = by_id(replay_lines(dir.path(), &lines, None))
        .into_keys()
        .collect();

    let config = setup.write(dir.path());
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon::spawn_ready(&config, setup.http_port, &log);
    let processed = |d: &Daemon| {
        d.metric(r#"swipeguard_events_total{result="processed"}"#)
            .unwrap_or(0.0)
    };
    assert!(wait_until(Duration::from_secs(60), || processed(&daemon) > 5_000.0));
    let (code, took) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", daemon.log_text());
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(daemon.log_text().contains("stopped cleanly"));

    // The newest snapshot of each partition sits exactly at the committed offset.
    // Partitions the daemon had not started on have nothing to commit.
    let committed: BTreeMap<i32, i64> =
        committed(&broker.bootstrap(), &setup.group, &setup.swipes, 3)
            .into_iter()
            .filter(|(_, o)| *o >= 0)
            .collect();
    assert!(!committed.is_empty());
    let mut snapshot_at: BTreeMap<i32, i64> = BTreeMap::new();
    for r in read_topic(&broker.bootstrap(), &setup.snapshots) {
        let p: i32 = r.headers["swipeguard.partition"].parse().unwrap();
        snapshot_at.insert(p, r.headers["swipeguard.position"].parse().unwrap());
    }
    assert_eq!(
        snapshot_at, committed,
        "snapshot positions vs committed offsets"
    );
    let end = end_offsets(&broker.bootstrap(), &setup.swipes, 3);
    assert!(
        committed.values().sum::<i64>() < end.values().sum::<i64>(),
        "stopped mid-stream"
    );

    let mut again = Daemon::spawn(&config, setup.http_port, &log);
    assert!(wait_all_committed(
        &broker.bootstrap(),
        &setup.group,
        &setup.swipes,
        3,
        Duration::from_secs(120)
    ));
    assert!(
        again.wait_drained(Duration::from_secs(60)),
        "never drained: {}",
        again.log_text()
    );
    let ids = alert_ids(&broker.bootstrap(), &setup.alerts);
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct, expected);
    assert_eq!(
        ids.len(),
        distinct.len(),
        "a graceful stop reprocesses nothing: no alert twice"
    );
    again.terminate(Duration::from_secs(30));
}
