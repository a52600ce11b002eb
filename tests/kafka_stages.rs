//! Live stages (DESIGN §11) against a real broker: with `daemon.live_stages`, the card stage
//! forwards each admitted event through `swipeguard.by-<key>` topics to the terminal, account and
//! traceability-code stages, whose watermarks are their upstream partitions' minimum; every
//! stage's alerts, ids and bodies, equal replay's.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

const KINDS: [&str; 4] = ["card", "terminal", "account", "trace_code"];

fn live_alerts(setup: &DaemonSetup) -> BTreeMap<String, String> {
    by_id(
        read_topic(&setup.bootstrap, &setup.alerts)
            .into_iter()
            .map(|r| r.payload),
    )
}

fn kinds(alerts: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for body in alerts.values() {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        *n.entry(v["subject"]["kind"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    n
}

#[derive(Clone, Copy, PartialEq)]
enum Run {
    /// One daemon, start to end.
    Plain,
    /// Three daemons in one group, one of them stopped mid-stream (a rebalance).
    Scale,
}

#[test]
fn every_stage_live_over_internal_topics_equals_replay() {
    live_equals_replay(Run::Plain);
}

/// N daemons ≡ one for every stage: three daemons share the swipes partitions and the stages'
/// partitions; one leaves mid-stream (SIGTERM: it snapshots and commits every partition it
/// held, the stage partitions with their upstream watermarks and offsets) and the others take
/// over; the alerts equal replay's.
#[test]
fn three_daemons_with_a_rebalance_find_what_replay_finds_in_every_stage() {
    live_equals_replay(Run::Scale);
}

fn stage_setup(bootstrap: &str) -> DaemonSetup {
    let mut setup = DaemonSetup::new(bootstrap, "stages");
    // Idle advances only at the end of the month, not while this broker stalls (it can hold a
    // request for up to a minute): when every swipes partition has been idle that long, the
    // stages release everything forwarded (see `daemon::stages`).
    setup.extra = "[engine]\nidle_watermark_after = \"75s\"\nsnapshot_every = \"2s\"\n\n[daemon]\nlive_stages = true\n".into();
    // Many partitions polled every 10 ms (the daemon's default, for latency) keep this
    // SQLite-backed broker busy scanning its tables: poll idle ones less often.
    setup
        .client
        .push(("fetch.wait.max.ms".into(), "250".into()));
    // Spread every topic's partitions over the members (range would give each topic's two
    // partitions to the same two of three daemons).
    setup
        .client
        .push(("partition.assignment.strategy".into(), "roundrobin".into()));
    setup
}

/// One broker at a time: each of these keeps a SQLite-backed broker busy, and two at once on a
/// small machine starve each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until `f` holds or `timeout` passes, looking every `every` (reading a whole topic is
/// work for the broker).
fn wait_every(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

fn live_equals_replay(run: Run) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = stage_setup(&broker.bootstrap());
    setup.topics(2);
    let lines = simulate(1_200, 30, 1);
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines);
    let expected = by_id(replay_subjects(dir.path(), &lines, None, &KINDS));
    let per_kind = kinds(&expected);
    assert!(
        KINDS
            .iter()
            .all(|k| per_kind.get(*k).is_some_and(|n| *n > 0)),
        "the month must exercise every stage: {per_kind:?}"
    );

    let config = setup.write(dir.path());
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::spawn(&config, setup.http_port, &log);
    assert!(
        daemon.wait_ready(Duration::from_secs(60)),
        "not ready: {}",
        daemon.log_text()
    );
    let forwarded = |d: &Daemon| {
        d.metric(r#"swipeguard_forwarded_records_total{stage="account"}"#)
            .unwrap_or(0.0)
    };
    let half = lines.len() as f64 / 2.0;
    let mut others = Vec::new();
    if run == Run::Scale {
        for i in 0..2 {
            let mut s = stage_setup(&broker.bootstrap());
            s.http_port = free_port();
            let other = Daemon::spawn(
                &s.write(dir.path()),
                s.http_port,
                &dir.path().join(format!("daemon-{i}.log")),
            );
            assert!(
                other.wait_ready(Duration::from_secs(60)),
                "{}",
                other.log_text()
            );
            others.push(other);
        }
        // Two swipes partitions and three stages of two: eight partitions over three daemons.
        let assigned = |d: &Daemon| d.metric("swipeguard_partitions_assigned").unwrap_or(0.0);
        assert!(
            wait_until(Duration::from_secs(120), || {
                let all = [&daemon, &others[0], &others[1]];
                all.iter().all(|d| assigned(d) >= 2.0)
                    && all.iter().map(|d| assigned(d)).sum::<f64>() == 8.0
            }),
            "partitions not spread: {}",
            daemon.log_text()
        );
        let total = |ds: &[&Daemon]| ds.iter().map(|d| forwarded(d)).sum::<f64>();
        assert!(
            wait_until(Duration::from_secs(240), || total(&[
                &daemon, &others[0], &others[1]
            ]) >= half),
            "the card stage forwarded too little: {}",
            daemon.log_text()
        );
        let mut leaving = others.pop().unwrap();
        let (code, _) = leaving.terminate(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{}", leaving.log_text());
    }
    assert!(
        wait_all_committed(
            &broker.bootstrap(),
            &setup.group,
            &setup.swipes,
            2,
            Duration::from_secs(300)
        ),
        "the card stage never committed every swipe: {}",
        daemon.log_text()
    );
    // The downstream stages release once every upstream partition's marker passes an event
    // (or says it is idle): wait for the alerts replay raised, then for nothing in flight.
    let arrived = wait_every(Duration::from_secs(300), Duration::from_secs(3), || {
        live_alerts(&setup).len() >= expected.len()
    });
    for d in std::iter::once(&daemon).chain(&others) {
        assert!(
            d.wait_drained(Duration::from_secs(60)),
            "never drained: {}",
            d.log_text()
        );
    }
    let live = live_alerts(&setup);
    assert!(
        arrived,
        "{} of {} alerts ({:?} live, {:?} in replay): {}",
        live.len(),
        expected.len(),
        kinds(&live),
        per_kind,
        daemon.log_text()
    );
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !live.contains_key(*k))
        .take(3)
        .collect();
    let extra: Vec<&String> = live
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {:?}, extra {:?}",
        missing.iter().map(|k| &expected[*k]).collect::<Vec<_>>(),
        extra.iter().map(|k| &live[*k]).collect::<Vec<_>>()
    );
    assert_eq!(live, expected, "alert bodies differ");
    if run == Run::Plain {
        let forwarded = daemon
            .metric(r#"swipeguard_forwarded_records_total{stage="trace_code"}"#)
            .unwrap_or(0.0);
        assert!(forwarded > 0.0, "nothing forwarded to the trace-code stage");
        for stage in KINDS {
            let processed = daemon
                .metric(&format!(
                    r#"swipeguard_stage_events_total{{result="processed",stage="{stage}"}}"#
                ))
                .unwrap_or(0.0);
            assert!(processed > 0.0, "the {stage} stage processed nothing");
        }
    }
    assert!(!daemon.log_text().contains("offset gap"));
}
