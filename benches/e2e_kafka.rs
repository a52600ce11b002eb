//! End-to-end benchmark driver: the daemon against a real broker on this machine.
//!
//! `cargo bench --bench e2e_kafka` (add `-- --events N --rate R --seconds S` to change sizes,
//! `--only throughput|latency` and `--lateness 0s|30s` to run a part)
//!
//! 1. **Sustained throughput.** N simulated events are produced into a 4-partition topic first;
//!    then the daemon starts and the clock runs from its first ready moment until it has
//!    processed all N. The broker uses its in-memory engine here (its high-watermark bug does not
//!    matter to this measurement; BROKER.md).
//! 2. **Event→alert latency at a fixed rate.** A fresh topic, the daemon running, events produced
//!    at R per second for S seconds with event time = send time (live traffic). The daemon
//!    observes, per alert, the time from the triggering event's release by the watermark, from its
//!    arrival, and from its produce timestamp, to the alert's broker acknowledgement
//!    (`swipeguard_event_to_alert_seconds{from=…}`); the percentiles are read from that histogram
//!    (linear interpolation inside buckets, as PromQL's histogram_quantile). Run at allowed
//!    lateness 0 and at the default 30 s. The run lasts well beyond the lateness (90 s by default)
//!    so that alerts are released by the watermark during the stream, not by the idle advance at
//!    its end (which releases a whole partition at once and measures that instead).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use support::*;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts a broker with the in-memory engine (faster; only for throughput).
fn memory_broker() -> (std::process::Child, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child =
        std::process::Command::new(std::env::var("NISSHI_BIN").unwrap_or_else(|_| "nisshi".into()))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://nisshi/",
            ])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nisshi on PATH");
    assert!(wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    (child, format!("127.0.0.1:{port}"), dir)
}

/// Quantile `q` of a Prometheus histogram in text format, for the series whose labels contain
/// `selector` (linear interpolation within the bucket, like `histogram_quantile`).
fn quantile(metrics: &str, name: &str, selector: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")) && l.contains(selector))
    {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        buckets.push((le, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let frac = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                0.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    None
}

fn histogram_count(metrics: &str, name: &str, selector: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            (l.starts_with(&format!("{name}_count{{")) || l.starts_with(&format!("{name}_count ")))
                && l.contains(selector)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) a process has used, from /proc (Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// `SWIPEGUARD_BENCH_CLIENT="k=v k=v"`: extra `[kafka.client]` properties for the daemon.
fn bench_client_properties(setup: &mut DaemonSetup) {
    for kv in std::env::var("SWIPEGUARD_BENCH_CLIENT")
        .unwrap_or_default()
        .split_whitespace()
    {
        if let Some((k, v)) = kv.split_once('=') {
            setup.client.push((k.into(), v.into()));
        }
    }
}

fn throughput(events: u64) {
    let (mut broker, bootstrap, _dir) = memory_broker();
    let work = tempfile::tempdir().unwrap();
    let mut setup = DaemonSetup::new(&bootstrap, "bench-throughput");
    // Production cadences (the tests' short ones would snapshot every 2 s).
    setup.extra = std::env::var("SWIPEGUARD_BENCH_EXTRA")
        .unwrap_or_default()
        .replace("\\n", "\n");
    bench_client_properties(&mut setup);
    setup.topics(4);
    let cards = (events / 6).max(1000);
    let lines = simulate(cards, 30, 7);
    let n = lines.len();
    let t = Instant::now();
    produce_lines(&bootstrap, &setup.swipes, &lines);
    let produce_secs = t.elapsed().as_secs_f64();
    // The ceiling: a bare librdkafka consumer reading the same topic from the same broker.
    let bare = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/release/examples/consume_rate"
    ))
    .args([bootstrap.as_str(), setup.swipes.as_str(), &n.to_string()])
    .args(
        std::env::var("SWIPEGUARD_BENCH_BARE")
            .unwrap_or_default()
            .split_whitespace(),
    )
    .output();
    match bare {
        Ok(out) => print!("e2e/throughput bare consumer: {}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => println!("e2e/throughput bare consumer: not run ({e}); cargo build --release --example consume_rate"),
    }
    let config = setup.write(work.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &work.path().join("daemon.log"));
    let started = Instant::now();
    let cpu_before = cpu_seconds(daemon.child.id());
    let broker_id = broker.id();
    // CPU of the daemon and the broker together, to split the sustained window's share.
    let both_cpu = || (cpu_seconds(daemon.child.id()), cpu_seconds(broker_id));
    // With live stages (SWIPEGUARD_BENCH_EXTRA turning on daemon.live_stages), done is when the
    // terminal stage, fed through its internal topic, has processed every event:
    // SWIPEGUARD_BENCH_DONE='swipeguard_stage_events_total{result="processed",stage="terminal"}'.
    let done = std::env::var("SWIPEGUARD_BENCH_DONE")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "swipeguard_consumed_messages_total".into());
    let processed = || daemon.metric(&done).unwrap_or(0.0) as usize;
    let mut last = 0;
    // Sustained rate: between 10 % and 90 % of the events, so that neither the start-up nor the
    // end of the input (where a downstream stage waits for the idle advance, DESIGN §3) counts.
    let (mut at_10, mut at_90) = (None, None);
    let (mut cpu_10, mut cpu_90) = ((0.0, 0.0), (0.0, 0.0));
    while processed() < n {
        std::thread::sleep(Duration::from_millis(20));
        let p = processed();
        if at_10.is_none() && p >= n / 10 {
            at_10 = Some((started.elapsed().as_secs_f64(), p));
            cpu_10 = both_cpu();
        }
        if at_90.is_none() && p >= n * 9 / 10 {
            at_90 = Some((started.elapsed().as_secs_f64(), p));
            cpu_90 = both_cpu();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stuck at {p} of {n}"
        );
        last = p;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(daemon.child.id()) - cpu_before;
    println!(
        "e2e/throughput daemon cpu: {cpu:.2} s over {secs:.2} s wall = {:.2} cores",
        cpu / secs
    );
    println!(
        "e2e/throughput: {n} events, produced in {produce_secs:.1} s; daemon processed all in {secs:.2} s = {:.0} events/s (last sample {last})",
        n as f64 / secs
    );
    if let (Some((a, pa)), Some((b, pb))) = (at_10, at_90) {
        if b > a && pb > pa {
            let events = (pb - pa) as f64;
            println!(
                "e2e/throughput sustained (10 % to 90 % of the events): {:.0} events/s",
                events / (b - a)
            );
            // The same window's CPU per event; two cores can give at most 2 s of CPU a second.
            let (daemon_us, broker_us) = (
                (cpu_90.0 - cpu_10.0) / events * 1e6,
                (cpu_90.1 - cpu_10.1) / events * 1e6,
            );
            println!(
                "e2e/throughput sustained cpu per event: daemon {daemon_us:.1} µs, broker {broker_us:.1} µs; two cores allow at most {:.0} events/s",
                2e6 / (daemon_us + broker_us)
            );
        }
    }
    drop(daemon);
    let _ = broker.kill();
}

fn latency(rate: f64, seconds: f64, lateness: &str) {
    // The in-memory engine: the SQLite one answers fetches in about 250 ms under this load
    // (BENCHMARKS.md), which would measure the broker, not the daemon.
    let (mut broker, bootstrap, _dir) = memory_broker();
    let work = tempfile::tempdir().unwrap();
    let mut setup = DaemonSetup::new(
        &bootstrap,
        &format!("bench-latency-{}", lateness.replace(' ', "")),
    );
    // SWIPEGUARD_BENCH_EXTRA appends other sections (say `[daemon]`) for side-by-side runs.
    setup.extra = format!(
        "[engine]\nallowed_lateness = \"{lateness}\"\nidle_watermark_after = \"5s\"\n{}",
        std::env::var("SWIPEGUARD_BENCH_EXTRA")
            .unwrap_or_default()
            .replace("\\n", "\n")
    );
    bench_client_properties(&mut setup);
    setup.topics(4);
    let config = setup.write(work.path());
    let daemon = Daemon::spawn_ready(&config, setup.http_port, &work.path().join("daemon.log"));

    // Live traffic: event time = send time, cards drawn from two million (a card rarely swipes
    // twice within the run), and every 500th event opens a burst of five swipes on one card
    // (a rapid_fire alert on the fifth), so alerts come at a steady rate.
    let total = (rate * seconds) as usize;
    let producer: FutureProducer = client(&bootstrap).set("linger.ms", "1").create().unwrap();
    let started = Instant::now();
    let mut sent = 0usize;
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let burst = i / 500 % 5 == 0 && i % 500 < 5;
        let card = if burst {
            format!("burst-{}", i / 2500)
        } else {
            format!("card-{}", (i as u64 * 7_919) % 2_000_000)
        };
        let payload = format!(
            r#"{{"event_id":"bench-{i:09}","ts":{now_ms},"card_id":"{card}","amount_minor":{},"merchant_id":"m-{}","merchant_kind":"pharmacy","region":"310104","lat":31.19,"lon":121.44,"channel":"chip","outcome":"approved"}}"#,
            1_000 + i % 9_000,
            i % 500
        );
        loop {
            match producer.send_result(FutureRecord::to(&setup.swipes).key(&card).payload(&payload))
            {
                Ok(_) => break,
                Err(_) => producer.poll(Timeout::After(Duration::from_millis(1))),
            }
        }
        sent += 1;
    }
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .unwrap();
    let achieved = sent as f64 / started.elapsed().as_secs_f64();
    let processed = || {
        daemon
            .metric(r#"swipeguard_events_total{result="processed"}"#)
            .unwrap_or(0.0) as usize
    };
    let consumed = || {
        daemon
            .metric("swipeguard_consumed_messages_total")
            .unwrap_or(0.0) as usize
    };
    let caught_up = wait_until(Duration::from_secs(120), || consumed() >= sent);
    println!(
        "e2e/latency lateness={lateness}: consumed {} of {sent} {}",
        consumed(),
        if caught_up {
            "(caught up)"
        } else {
            "(the broker stopped serving fetches promptly: the figures below cover what arrived)"
        }
    );
    println!(
        "e2e/latency lateness={lateness}: processed {} of {sent} consumed",
        processed()
    );
    let _ = daemon.wait_drained(Duration::from_secs(60));
    let (_, metrics) = daemon.http("/metrics").unwrap();
    let name = "swipeguard_event_to_alert_seconds";
    let mut row = BTreeMap::new();
    let rtt: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("swipeguard_kafka_rtt_seconds{"))
        .collect();
    println!("e2e/latency broker round trips seen by the daemon's clients: {rtt:?}");
    let _ = broker.kill();
    for from in ["release", "arrival", "produce"] {
        let sel = format!("from=\"{from}\"");
        let q = |p| {
            quantile(&metrics, name, &sel, p)
                .map_or("-".into(), |s| format!("{:.2} ms", s * 1000.0))
        };
        row.insert(
            from,
            format!(
                "p50 {} p99 {} (n={})",
                q(0.5),
                q(0.99),
                histogram_count(&metrics, name, &sel)
            ),
        );
    }
    let handoff = "swipeguard_alert_handoff_seconds";
    let h = |p| {
        quantile(&metrics, handoff, "", p).map_or("-".into(), |s| format!("{:.3} ms", s * 1000.0))
    };
    println!("e2e/latency lateness={lateness} rate={achieved:.0}/s over {seconds} s:");
    for (from, r) in row {
        println!("  from {from:<8} {r}");
    }
    let within_1ms = metrics
        .lines()
        .find(|l| l.starts_with(&format!("{handoff}_bucket{{le=\"0.001\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let n = histogram_count(&metrics, handoff, "");
    println!(
        "  inside the daemon, arrival to hand-off: p50 {} p99 {} (n={n}, {} over 1 ms)",
        h(0.5),
        h(0.99),
        n - within_1ms
    );
}

/// The broker alone under the latency load: a bare consumer reads while events are produced at
/// `rate`; how far behind does it fall? (The ceiling for the daemon's end-to-end latency.)
fn broker_only(rate: f64, seconds: f64) {
    let memory = std::env::args().any(|a| a == "--memory");
    let (_sqlite, _memory, bootstrap) = if memory {
        let (child, bootstrap, dir) = memory_broker();
        (None, Some((child, dir)), bootstrap)
    } else {
        let b = Broker::start();
        let bootstrap = b.bootstrap();
        (Some(b), None, bootstrap)
    };
    create_topic(&bootstrap, "bare", 4);
    let total = (rate * seconds) as usize;
    let reader = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/release/examples/consume_rate"
    ))
    .args([bootstrap.as_str(), "bare", &total.to_string()])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let producer: FutureProducer = client(&bootstrap).set("linger.ms", "1").create().unwrap();
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let key = format!("card-{}", i % 100_000);
        let payload = format!(
            r#"{{"event_id":"e{i}","card_id":"{key}","pad":"{}"}}"#,
            "x".repeat(200)
        );
        while producer
            .send_result(FutureRecord::to("bare").key(&key).payload(&payload))
            .is_err()
        {
            producer.poll(Timeout::After(Duration::from_millis(1)));
        }
    }
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .unwrap();
    println!(
        "e2e/broker-only: produced {total} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out = reader.wait_with_output().unwrap();
    println!(
        "e2e/broker-only: bare consumer {} (finished {:.1} s after the start)",
        String::from_utf8_lossy(&out.stdout).trim(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let events = arg("--events", 1_000_000.0) as u64;
    let rate = arg("--rate", 20_000.0);
    let seconds = arg("--seconds", 90.0);
    if std::env::args().any(|a| a == "--broker-only") {
        broker_only(rate, seconds);
        return;
    }
    let only = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .unwrap_or_default();
    if only.is_empty() || only == "throughput" {
        throughput(events);
    }
    if only.is_empty() || only == "latency" {
        // `--lateness 0s` runs one of the two.
        let lateness = std::env::args().skip_while(|a| a != "--lateness").nth(1);
        for l in ["0s", "30s"] {
            if lateness.as_deref().is_none_or(|x| x == l) {
                latency(rate, seconds, l);
            }
        }
    }
}
