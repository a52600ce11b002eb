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
    /// One daemon killed (`kill -9`) five times mid-stream, started again each time.
    Crash,
    /// Three daemons in one group, one of them stopped mid-stream (a rebalance).
    Scale,
}

#[test]
fn every_stage_live_over_internal_topics_equals_replay() {
    live_equals_replay(Run::Plain);
}

/// crash ≡ no crash for every stage: the month produced in seven parts, and five `kill -9`s,
/// each once the card stage has forwarded part of a new one (mostly before it committed it; the
/// stage partitions are cut between their snapshots every time), each followed by a restart: the card
/// partitions re-forward what followed their snapshots, the stage partitions drop what they had
/// taken (redelivered) and continue from theirs; the distinct alerts equal replay's.
#[test]
fn five_kill_9s_mid_stream_lose_and_repeat_nothing_in_any_stage() {
    live_equals_replay(Run::Crash);
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

/// What moves while the daemons work towards the end of the month: events every stage took
/// (processed, late or duplicate), alerts raised, partitions restored and assigned. After the
/// last event is taken only idleness releases the month's end (`engine.idle_watermark_after`),
/// and a rebalance first restores every partition, so events alone would look stalled.
fn progress(daemons: &[&Daemon]) -> Vec<f64> {
    let sums = [
        "swipeguard_stage_events_total",
        "swipeguard_alerts_total",
        "swipeguard_snapshot_restores_total",
        "swipeguard_partitions_assigned",
    ];
    let bodies: Vec<String> = daemons
        .iter()
        .map(|d| d.http("/metrics").map(|(_, b)| b).unwrap_or_default())
        .collect();
    sums.iter()
        .map(|name| {
            bodies
                .iter()
                .map(|b| Daemon::series(b, name).iter().sum::<f64>())
                .sum()
        })
        .collect()
}

/// Waits until `done` holds (asked every 3 s: it reads a topic), for as long as the daemons
/// make [`progress`]: this broker sometimes holds every fetch for a minute, so a fixed deadline
/// would fail a slow run that is still moving. Gives up after four minutes without progress
/// (longer than the 75 s idle release plus a held fetch plus a rebalance's restores), or 15
/// minutes in all, with what each daemon holds and logged last. Prints the progress as it goes
/// (shown for a failing test).
fn wait_while_moving(daemons: &[&Daemon], mut done: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    let mut last = (progress(daemons), std::time::Instant::now());
    let moving = wait_every(Duration::from_secs(900), Duration::from_secs(3), || {
        if done() {
            return true;
        }
        let now = progress(daemons);
        if now != last.0 {
            eprintln!(
                "{:>4} s: stage events, alerts, restores, assigned {now:?}",
                started.elapsed().as_secs()
            );
            last = (now, std::time::Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(240),
            "nothing moved for four minutes ({:?} in all)\n{}",
            started.elapsed(),
            stall_report(daemons)
        );
        false
    });
    if !moving {
        eprintln!("{}", stall_report(daemons));
    }
    moving
}

/// What each daemon holds and logged last, for a run that stopped moving.
fn stall_report(daemons: &[&Daemon]) -> String {
    let wanted = [
        "swipeguard_stage_events_total",
        "swipeguard_consumer_lag_messages",
        "swipeguard_buffered_events",
        "swipeguard_in_flight_records",
        "swipeguard_partitions_assigned",
        "swipeguard_snapshot_restores_total",
        "swipeguard_ready",
    ];
    daemons
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let metrics = d
                .http("/metrics")
                .map(|(_, body)| {
                    body.lines()
                        .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_else(|| "no metrics (not running?)".into());
            let log = d.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            format!(
                "--- daemon {i}\n{metrics}\n--- its log's last lines\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The log lines that tell how partitions were restored and what was refused, for a failure.
fn recovery_log(log: &str) -> String {
    log.lines()
        .filter(|l| {
            [
                "snapshot", "afresh", "restored", "late", "revoked", "assigned",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn live_equals_replay(run: Run) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = std::time::Instant::now();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = stage_setup(&broker.bootstrap());
    setup.topics(2);
    let lines = simulate(1_200, 30, 1);
    // The crash run produces the month in parts, so that every kill comes mid-stream.
    let parts: Vec<&[String]> = match run {
        Run::Crash => lines.chunks(lines.len().div_ceil(7)).collect(),
        _ => vec![&lines[..]],
    };
    produce_lines(&broker.bootstrap(), &setup.swipes, parts[0]);
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
    let mut daemon = Daemon::spawn_ready(&config, setup.http_port, &log);
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
            let other = Daemon::spawn_ready(
                &s.write(dir.path()),
                s.http_port,
                &dir.path().join(format!("daemon-{i}.log")),
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
        eprintln!(
            "{:>4} s: half forwarded; one daemon leaves",
            t0.elapsed().as_secs()
        );
        let mut leaving = others.pop().unwrap();
        let (code, _) = leaving.terminate(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{}", leaving.log_text());
        eprintln!("{:>4} s: it left", t0.elapsed().as_secs());
    }
    if run == Run::Crash {
        for (round, part) in parts.iter().enumerate().skip(1).take(5) {
            // Kill once the card stage has forwarded at least half of the new part (to the
            // account stage): its commit is due only at the next snapshot (every 2 s), so the
            // kill mostly falls between forwarding and committing.
            produce_lines(&broker.bootstrap(), &setup.swipes, part);
            let accounts = part.iter().filter(|l| l.contains("\"account_id\"")).count();
            assert!(
                wait_until(Duration::from_secs(240), || forwarded(&daemon)
                    >= (accounts / 2) as f64),
                "round {round}: forwarded {}: {}",
                forwarded(&daemon),
                daemon.log_text()
            );
            daemon.kill9();
            daemon = Daemon::spawn(&config, setup.http_port, &log);
            daemon.assert_ready(&format!("after restart {round}"));
        }
        for part in parts.iter().skip(6) {
            produce_lines(&broker.bootstrap(), &setup.swipes, part);
        }
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
    eprintln!("{:>4} s: every swipe committed", t0.elapsed().as_secs());
    // The downstream stages release once every upstream partition's marker passes an event
    // (or says it is idle): wait for the alerts replay raised, then for nothing in flight.
    let daemons: Vec<&Daemon> = std::iter::once(&daemon).chain(&others).collect();
    let arrived = wait_while_moving(&daemons, || live_alerts(&setup).len() >= expected.len());
    // The last events of a month are released once every swipes partition has been idle for
    // `engine.idle_watermark_after` (75 s here).
    for d in std::iter::once(&daemon).chain(&others) {
        assert!(
            d.wait_drained(Duration::from_secs(180)),
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
        "missing {:?}, extra {:?}; {:?} live, {:?} in replay; recovery: {}\nmetrics: {}",
        missing.iter().map(|k| &expected[*k]).collect::<Vec<_>>(),
        extra.iter().map(|k| &live[*k]).collect::<Vec<_>>(),
        kinds(&live),
        per_kind,
        recovery_log(&daemon.log_text()),
        daemon
            .http("/metrics")
            .map(|(_, b)| b
                .lines()
                .filter(|l| l.starts_with("swipeguard_stage_events_total")
                    || l.starts_with("swipeguard_redelivered"))
                .collect::<Vec<_>>()
                .join("\n"))
            .unwrap_or_default()
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

/// A stalled upstream partition holds the stages back instead of making its events late
/// (DESIGN §11): swipes partition 1 stops after a quarter of its month while partition 0 runs
/// on for half a month of event time (far beyond the allowed lateness), then partition 1
/// resumes. No stage refuses an event as late, and every stage's alerts equal replay's. A
/// downstream watermark that ran ahead with partition 0 would refuse partition 1's resumed
/// events and lose their alerts.
#[test]
fn a_stalled_swipes_partition_makes_no_stage_event_late() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = stage_setup(&broker.bootstrap());
    // No idle advance during the test (this broker can stall every partition for a minute):
    // the month ends with one swipe per partition a year later, which moves both watermarks
    // past every event, in replay as live.
    setup.extra = setup.extra.replace("\"75s\"", "\"1h\"");
    setup.topics(2);
    let mut lines = simulate(1_200, 30, 1);
    // Cards split between the two partitions by a stable function of the card id.
    let (mut p0, mut p1) = (Vec::new(), Vec::new());
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let card = v["card_id"].as_str().unwrap_or_default();
        let h = card
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        if h % 2 == 0 {
            p0.push(line.clone())
        } else {
            p1.push(line.clone())
        }
    }
    assert!(
        p0.len() > 100 && p1.len() > 100,
        "{} / {}",
        p0.len(),
        p1.len()
    );
    for (i, p) in [&mut p0, &mut p1].into_iter().enumerate() {
        let end = format!(
            r#"{{"event_id":"end-{i}","ts":"2027-03-01T00:00:0{i}.000Z","card_id":"cend{i}","amount_minor":100,"currency":"CNY","merchant_id":"END","terminal_id":"END-T{i}","outcome":"approved"}}"#
        );
        p.push(end.clone());
        lines.push(end);
    }
    let expected = by_id(replay_subjects(dir.path(), &lines, None, &KINDS));
    let bootstrap = broker.bootstrap();
    let committed_at_least = |want: [usize; 2]| {
        wait_every(Duration::from_secs(240), Duration::from_millis(500), || {
            let c = committed(&bootstrap, &setup.group, &setup.swipes, 2);
            (0..2).all(|p| c.get(&(p as i32)).is_some_and(|o| *o >= want[p] as i64))
        })
    };

    let config = setup.write(dir.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("daemon.log"));
    // Both partitions run together for a while...
    let (a0, a1) = (p0.len() / 2, p1.len() / 4);
    produce_to(&bootstrap, &setup.swipes, Some(0), &p0[..a0]);
    produce_to(&bootstrap, &setup.swipes, Some(1), &p1[..a1]);
    assert!(committed_at_least([a0, a1]), "{}", daemon.log_text());
    // ...then partition 1 stalls while partition 0 runs to the end of the month...
    produce_to(&bootstrap, &setup.swipes, Some(0), &p0[a0..]);
    assert!(committed_at_least([p0.len(), a1]), "{}", daemon.log_text());
    // ...and partition 1 resumes.
    produce_to(&bootstrap, &setup.swipes, Some(1), &p1[a1..]);
    assert!(
        committed_at_least([p0.len(), p1.len()]),
        "{}",
        daemon.log_text()
    );
    let arrived = wait_while_moving(&[&daemon], || live_alerts(&setup).len() >= expected.len());
    // Everything is released but the two end swipes, in the card stage and the terminal stage
    // (nothing comes after them and nothing goes idle); nothing is left unacknowledged.
    let held = || {
        let (_, body) = daemon.http("/metrics").unwrap_or_default();
        let sum = |name| Daemon::series(&body, name).iter().sum::<f64>();
        (
            sum("swipeguard_buffered_events"),
            sum("swipeguard_in_flight_records"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(180), || held() == (4.0, 0.0)),
        "buffered and in flight: {:?}",
        held()
    );
    for stage in KINDS {
        let late = daemon
            .metric(&format!(
                r#"swipeguard_stage_events_total{{result="late",stage="{stage}"}}"#
            ))
            .unwrap_or(-1.0);
        assert_eq!(late, 0.0, "the {stage} stage refused events as late");
    }
    let live = live_alerts(&setup);
    assert!(
        arrived,
        "{:?} live, {:?} in replay",
        kinds(&live),
        kinds(&expected)
    );
    assert_eq!(live, expected, "alerts differ from replay's");
}
