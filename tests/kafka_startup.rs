//! Start-up under faults, on the real broker: a broker that comes up a minute after the daemon
//! (a power cut, both restarted together) is waited for and nothing is lost; a wrong address is
//! named in `/readyz` and the log until SIGTERM, which ends the wait at once; faults that no retry
//! fixes stop the daemon with the resource named and an exit code of their own.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::*;
use swipeguard::exit;

/// The `attempts=N` field of a log line.
fn attempts(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("attempts="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_broker_that_comes_up_a_minute_after_the_daemon_loses_nothing() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = DaemonSetup::new(&broker.bootstrap(), "late");
    setup.topics(3);
    let lines = simulate(3_000, 30, 61);
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines);
    let expected: BTreeSet<String> = by_id(replay_lines(dir.path(), &lines, None))
        .into_keys()
        .collect();
    assert!(!expected.is_empty());

    // The power cut: the broker is down when the daemon starts, and comes back a minute later.
    broker.stop();
    let config = setup.write(dir.path());
    let mut daemon = Daemon::spawn(&config, setup.http_port, &dir.path().join("daemon.log"));
    let naming = format!("waiting for kafka.brokers {}", broker.bootstrap());
    assert!(
        wait_until(Duration::from_secs(30), || daemon
            .http("/readyz")
            .is_some_and(|(s, body)| s == 503 && body.contains(&naming))),
        "{}",
        daemon.log_text()
    );
    assert_eq!(daemon.http("/healthz").map(|(s, _)| s), Some(200));
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(60) {
        assert_eq!(daemon.wait_exit(Duration::from_secs(1)), None, "gave up");
    }
    let log = daemon.log_text();
    let waits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("waiting for the kafka brokers"))
        .collect();
    // One line per 30 s, not one per attempt.
    assert!((2..=3).contains(&waits.len()), "{log}");
    assert!(attempts(waits[waits.len() - 1]) >= 5, "{log}");
    assert!(waits[0].contains("Connection refused"), "{log}");

    broker.restart();
    assert!(
        daemon.wait_ready(Duration::from_secs(120)),
        "{}",
        daemon.log_text()
    );
    let got = alert_ids_once_drained(&daemon, &setup, 3);
    assert_eq!(got, expected);
    assert!(daemon.log_text().contains("the kafka brokers answered"));
    assert_eq!(daemon.terminate(Duration::from_secs(40)).0, Some(0));
}

#[test]
fn a_wrong_broker_address_is_named_until_sigterm_ends_the_wait_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let setup = DaemonSetup::new(&address, "nowhere");
    let config = setup.write(dir.path());
    let mut daemon = Daemon::spawn(&config, setup.http_port, &dir.path().join("daemon.log"));
    assert!(
        wait_until(Duration::from_secs(30), || {
            let log = daemon.log_text();
            daemon.http("/readyz").is_some_and(|(s, body)| {
                s == 503 && body.contains(&format!("waiting for kafka.brokers {address}"))
            }) && log.contains("waiting for the kafka brokers")
                && log.contains(&format!("brokers={address}"))
                && log.contains("Connection refused")
        }),
        "{}",
        daemon.log_text()
    );
    assert_eq!(daemon.http("/healthz").map(|(s, _)| s), Some(200));
    let (code, took) = daemon.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", daemon.log_text());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(daemon
        .log_text()
        .contains("stopped while waiting for the kafka brokers"));
}

/// Starts a daemon and waits for it to give up; its exit code and log.
fn exits(setup: &DaemonSetup, dir: &std::path::Path) -> (Option<i32>, String) {
    let config = setup.write(dir);
    let log = dir.join(format!("{}.log", setup.group));
    let mut daemon = Daemon::spawn(&config, setup.http_port, &log);
    let code = daemon.wait_exit(Duration::from_secs(60));
    (code, daemon.log_text())
}

#[test]
fn topic_faults_that_no_retry_fixes_stop_the_daemon_naming_the_topic() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let resource = Some(exit::KAFKA_RESOURCE as i32);

    // A snapshot topic the broker will not create (an invalid name).
    let mut setup = DaemonSetup::new(&broker.bootstrap(), "badname");
    setup.topics(3);
    setup.snapshots = "bad topic!".into();
    let (code, log) = exits(&setup, dir.path());
    assert_eq!(code, resource, "{log}");
    assert!(
        log.contains("the snapshot topic bad topic! (kafka.snapshot_topic)")
            && log.contains("cannot be created with 3 partitions")
            && log.contains("InvalidTopic"),
        "{log}"
    );

    // A snapshot topic whose partitions disagree with the swipes topic's.
    let setup = DaemonSetup::new(&broker.bootstrap(), "mismatch");
    setup.topics(3);
    create_topic(&broker.bootstrap(), &setup.snapshots, 2);
    let (code, log) = exits(&setup, dir.path());
    assert_eq!(code, resource, "{log}");
    assert!(
        log.contains(&format!(
            "the snapshot topic {} has 2 partitions but the swipes topic {} has 3",
            setup.snapshots, setup.swipes
        )),
        "{log}"
    );

    // A swipes topic that does not exist (the daemon does not create what it reads).
    let setup = DaemonSetup::new(&broker.bootstrap(), "missing");
    let (code, log) = exits(&setup, dir.path());
    assert_eq!(code, resource, "{log}");
    assert!(
        log.contains(&format!(
            "the swipes topic {} (kafka.swipes_topic) cannot be read",
            setup.swipes
        )) && log.contains("no such topic"),
        "{log}"
    );
}

#[test]
fn refused_credentials_stop_with_their_own_exit_code_and_good_ones_connect() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = DaemonSetup::new(&broker.bootstrap(), "sasl");
    setup.topics(3);
    broker.create_user("swipeguard", "right");
    broker.args = vec!["--authentication".into()];
    broker.restart();

    let sasl = |password: &str| {
        [
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "swipeguard"),
            ("sasl.password", password),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    };
    setup.client = sasl("wrong");
    let (code, log) = exits(&setup, dir.path());
    assert_eq!(code, Some(exit::KAFKA_REFUSED as i32), "{log}");
    assert!(
        log.contains("kafka refused") && log.contains("SASL") && log.contains("[kafka.client]"),
        "{log}"
    );

    setup.client = sasl("right");
    setup.http_port = free_port();
    let config = setup.write(dir.path());
    let mut daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("good.log"));
    assert_eq!(daemon.terminate(Duration::from_secs(40)).0, Some(0));
}

/// The scheduling class of each thread of `pid` (Linux).
fn thread_policies(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<i32>().ok())
                // SAFETY: the call only reads; a thread gone since the listing gives -1.
                .map(|tid| unsafe { libc::sched_getscheduler(tid) })
                .filter(|&p| p >= 0)
                .collect()
        })
        .unwrap_or_default()
}

/// `THP_enabled` of /proc/PID/status: 0 once the process turned huge pages off.
fn huge_pages_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
    Some(line.split_whitespace().nth(1)? == "1")
}

#[test]
fn only_the_pipeline_thread_runs_ordinary_and_the_settings_turn_it_off() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (batch, other) = (libc::SCHED_BATCH, libc::SCHED_OTHER);

    // Defaults: every thread SCHED_BATCH but one, the pipeline's; no huge pages.
    let setup = DaemonSetup::new(&broker.bootstrap(), "sched-default");
    setup.topics(2);
    let config = setup.write(dir.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("default.log"));
    let pid = daemon.child.id();
    // Waited on: a snapshot reader made by the pipeline thread runs ordinary while it lives.
    let one_ordinary = || {
        let p = thread_policies(pid);
        p.len() > 4
            && p.iter().filter(|&&c| c == other).count() == 1
            && p.iter().filter(|&&c| c == batch).count() == p.len() - 1
    };
    assert!(
        wait_until(Duration::from_secs(20), one_ordinary),
        "{:?}\n{}",
        thread_policies(pid),
        daemon.log_text()
    );
    assert_eq!(huge_pages_enabled(pid), Some(false));
    drop(daemon);

    // Both off: every thread ordinary, huge pages as the system has them.
    let mut setup = DaemonSetup::new(&broker.bootstrap(), "sched-off");
    setup.topics(2);
    setup.extra = "[daemon]\nbatch_other_threads = false\ntransparent_huge_pages = true\n".into();
    let config = setup.write(dir.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("off.log"));
    let pid = daemon.child.id();
    let policies = thread_policies(pid);
    assert!(
        policies.len() > 4 && policies.iter().all(|&c| c == other),
        "{policies:?}"
    );
    assert_eq!(huge_pages_enabled(pid), Some(true));
}
