//! SIGHUP on a real broker (DESIGN §14): a bad file is refused and the running configuration
//! kept; a good one is applied at a snapshot position the daemon logs, and `replay
//! --reconfigure-at` that position gives the same alerts; a detector in shadow mode sends to
//! `<alerts_topic>.shadow` only.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

fn hup(daemon: &Daemon) {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The `position` of the daemon's "configuration applied" line, once there is one.
fn applied_at(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("configuration applied at this snapshot position"))?;
    let at = line.find("position=")? + "position=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn replay_reconfigured(dir: &Path, lines: &[String], a: &Path, at: u64, b: &Path) -> Vec<String> {
    let file = dir.join("replay-input.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .arg("replay")
        .arg(&file)
        .arg("--config")
        .arg(a)
        .arg("--reconfigure-at")
        .arg(format!("{at}={}", b.display()))
        .args(["--no-progress", "--rejects"])
        .arg(dir.join("replay-rejects.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The daemon runs the card stage.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""subject":{"kind":"card""#))
        .map(String::from)
        .collect()
}

#[test]
fn sighup_applies_a_good_file_at_a_logged_position_and_refuses_a_bad_one() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = DaemonSetup::new(&broker.bootstrap(), "reload");
    // Lateness 0: an event is released on arrival, so what a position covers does not depend
    // on when the idle advance ran.
    setup.extra = setup
        .extra
        .replace("[engine]\n", "[engine]\nallowed_lateness = \"0s\"\n");
    setup.topics(1);
    let shadow = format!("{}.shadow", setup.alerts);
    create_topic(&broker.bootstrap(), &shadow, 1);
    let lines = simulate(1500, 20, 21);
    let half = lines.len() / 2;
    let config = setup.write(dir.path());
    let a = dir.path().join("a.toml");
    std::fs::copy(&config, &a).unwrap();
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &dir.path().join("daemon.log"));
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines[..half]);
    daemon.wait_processed_and_drained(half);

    // A bad value: refused, named, counted; the daemon goes on.
    std::fs::write(
        &config,
        format!(
            "{}\n[detectors.failed_pin]\nmin_failures = 0\n",
            setup.toml()
        ),
    )
    .unwrap();
    hup(&daemon);
    let refused = || {
        daemon
            .metric(r#"swipeguard_config_reloads_total{result="refused"}"#)
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || refused() >= 1.0),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon
            .log_text()
            .contains("detectors.failed_pin.min_failures"),
        "{}",
        daemon.log_text()
    );

    // A good one: off_pattern retuned, rapid_fire in shadow.
    let b = dir.path().join("b.toml");
    std::fs::write(
        &b,
        format!(
            "{}\n[detectors.off_pattern]\nalert_p_value = 0.0005\n\n[detectors.rapid_fire]\nshadow = true\n",
            setup.toml()
        ),
    )
    .unwrap();
    // Applied while the daemon is busy: the second third arrives as the signal does, so the
    // change lands mid-stream with alerts in flight and snapshots pending.
    let two_thirds = 2 * lines.len() / 3;
    std::fs::copy(&b, &config).unwrap();
    let chunk = dir.path().join("second-third.jsonl");
    std::fs::write(&chunk, lines[half..two_thirds].join("\n")).unwrap();
    // Sent at 500 a second, the signal given once a few hundred have been read.
    let mut producer = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .arg("produce")
        .arg(&chunk)
        .args([
            "--topic",
            &setup.swipes,
            "--brokers",
            &broker.bootstrap(),
            "--rate",
            "500",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || daemon.processed() >= half + 300),
        "{}",
        daemon.log_text()
    );
    hup(&daemon);
    assert!(producer.wait().unwrap().success());
    assert!(
        wait_until(Duration::from_secs(60), || applied_at(&daemon.log_text())
            .is_some()),
        "{}",
        daemon.log_text()
    );
    let at = applied_at(&daemon.log_text()).unwrap();
    eprintln!("applied at {at}, between {half} and {two_thirds}");
    assert!(
        at as usize > half + 300 && (at as usize) < two_thirds,
        "applied at {at}, outside [{half}, {two_thirds}]: {}",
        daemon.log_text()
    );
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines[two_thirds..]);
    daemon.wait_processed_and_drained(lines.len());

    let expected = by_id(replay_reconfigured(dir.path(), &lines, &a, at, &b));
    let main_topic = read_topic(&broker.bootstrap(), &setup.alerts);
    let shadowed = read_topic(&broker.bootstrap(), &shadow);
    assert!(!shadowed.is_empty(), "no rapid_fire alert after the change");
    for r in &shadowed {
        assert!(
            r.payload.contains(r#""detector":"rapid_fire""#),
            "{}",
            r.payload
        );
    }
    let live = by_id(main_topic.into_iter().chain(shadowed).map(|r| r.payload));
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "alert id sets differ"
    );
    assert_eq!(live, expected, "alert bodies differ");
}
