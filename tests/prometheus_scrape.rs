//! A real Prometheus scrapes a running daemon: the expected series exist with the expected
//! values through Prometheus's own HTTP API, and no label value is a card id.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: swipeguard\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus must be installed (scripts/ensure-deps.sh installs Debian's package)",
            );
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        assert!(
            wait_until(Duration::from_secs(30), || p
                .get("/-/ready")
                .is_some_and(|(s, _)| s == 200)),
            "prometheus did not start"
        );
        p
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(SocketAddr::from(([127, 0, 0, 1], self.port)), path)
    }

    /// An instant query; returns (labels, value) per series.
    fn query(&self, promql: &str) -> Vec<(serde_json::Map<String, serde_json::Value>, f64)> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", encode(promql)))
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].as_object().unwrap().clone(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    fn value(&self, promql: &str) -> Option<f64> {
        self.query(promql).first().map(|(_, v)| *v)
    }

    /// Waits until Prometheus has scraped the target after `after` (its `up` sample carries
    /// the scrape's start time): from then on every value it returns reflects a daemon state at
    /// least as new as `after`.
    fn wait_scrape_after(&self, after: SystemTime) {
        let after = after.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let mut last = None;
        let scraped = wait_until(Duration::from_secs(30), || {
            last = self.value(r#"timestamp(up{job="swipeguard"})"#);
            last.is_some_and(|t| t > after)
        });
        assert!(scraped, "no scrape after {after}: last scrape at {last:?}");
    }

    /// Asserts that `promql` reaches `expected`, querying until a deadline; the message names
    /// the last value Prometheus returned.
    fn assert_eventually(&self, promql: &str, expected: f64) {
        let mut last = None;
        let reached = wait_until(Duration::from_secs(30), || {
            last = self.value(promql);
            last == Some(expected)
        });
        assert!(
            reached,
            "{promql}: expected {expected}, Prometheus last said {last:?}"
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_expected_series_and_no_label_is_a_card() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = DaemonSetup::new(&broker.bootstrap(), "prom");
    setup.topics(2);
    let mut lines = simulate(800, 20, 61);
    let valid = lines.len();
    let cards: BTreeSet<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["card_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    lines.push("not json at all".into());
    lines.push("[]".into());
    lines.push(r#"{"event_id":"z","ts":1767580200000,"card_id":"c","amount_minor":-1,"merchant_id":"m","outcome":"approved"}"#.into());
    produce_lines(&broker.bootstrap(), &setup.swipes, &lines);

    let config = setup.write(dir.path());
    let daemon = Daemon::spawn(&config, setup.http_port, &dir.path().join("daemon.log"));
    let prometheus = Prometheus::start(setup.http_port);
    daemon.assert_ready("yet");
    // Every valid event released to the detectors (the idle advance releases the tail), then
    // nothing buffered and nothing unacknowledged, as the daemon itself reports it.
    let processed = r#"swipeguard_events_total{result="processed"}"#;
    assert!(
        wait_until(Duration::from_secs(120), || daemon.metric(processed)
            == Some(valid as f64)),
        "the daemon processed {:?} of {valid}: {}",
        daemon.metric(processed),
        daemon.log_text()
    );
    assert!(
        daemon.wait_drained(Duration::from_secs(90)),
        "{}",
        daemon.log_text()
    );
    // What Prometheus answers from here on was scraped from the drained daemon.
    prometheus.wait_scrape_after(SystemTime::now());
    prometheus.assert_eventually(processed, valid as f64);
    prometheus.assert_eventually("sum(swipeguard_buffered_events)", 0.0);
    prometheus.assert_eventually("sum(swipeguard_in_flight_records)", 0.0);

    assert_eq!(prometheus.value(r#"up{job="swipeguard"}"#), Some(1.0));
    assert_eq!(prometheus.value("swipeguard_ready"), Some(1.0));
    assert_eq!(
        prometheus.value(r#"swipeguard_events_total{result="invalid"}"#),
        Some(3.0)
    );
    for (reason, n) in [
        ("not_json", 1.0),
        ("not_object", 1.0),
        ("negative_amount", 1.0),
        ("missing_field", 0.0),
    ] {
        assert_eq!(
            prometheus.value(&format!(
                r#"swipeguard_invalid_events_total{{reason="{reason}"}}"#
            )),
            Some(n),
            "{reason}"
        );
    }
    assert_eq!(
        prometheus.value(r#"sum(swipeguard_dead_letters_total)"#),
        Some(3.0)
    );
    assert_eq!(
        prometheus.value("swipeguard_consumed_messages_total"),
        Some(lines.len() as f64)
    );
    let alerts = prometheus.value("sum(swipeguard_alerts_total)").unwrap();
    let on_topic = read_topic(&broker.bootstrap(), &setup.alerts).len() as f64;
    assert!(
        alerts > 0.0 && alerts == on_topic,
        "{alerts} counted, {on_topic} on the topic"
    );
    assert_eq!(
        prometheus.value("swipeguard_partitions_assigned"),
        Some(2.0)
    );
    let tracked = prometheus.value("sum(swipeguard_tracked_cards)").unwrap();
    assert!(tracked > 0.0 && tracked <= cards.len() as f64, "{tracked}");
    assert!(prometheus.value("sum(swipeguard_state_bytes)").unwrap() > tracked * 100.0);
    assert!(
        prometheus
            .value(r#"swipeguard_event_to_alert_seconds_count{from="release"}"#)
            .unwrap()
            > 0.0
    );
    assert!(
        prometheus
            .value("swipeguard_batch_duration_seconds_count")
            .unwrap()
            > 0.0
    );
    assert!(
        prometheus
            .value(r#"swipeguard_kafka_brokers_up{client="consumer"}"#)
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        prometheus.value("count(swipeguard_consumer_lag_messages)"),
        Some(2.0)
    );

    // Every label value of every swipeguard series, checked against the card ids of the stream.
    let (status, body) = prometheus
        .get(&format!(
            "/api/v1/series?match[]={}",
            encode(r#"{__name__=~"swipeguard_.*"}"#)
        ))
        .unwrap();
    assert_eq!(status, 200);
    let series: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = series["data"].as_array().unwrap();
    assert!(series.len() > 50, "{} series", series.len());
    for s in series {
        for (label, value) in s.as_object().unwrap() {
            let value = value.as_str().unwrap();
            assert!(
                !cards.contains(value),
                "label {label} carries a card id: {value}"
            );
            assert!(value.len() < 64, "label {label} looks unbounded: {value}");
        }
    }
}
