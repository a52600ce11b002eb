//! Test support for the end-to-end tests: a real Kafka-protocol broker (`nisshi`, on loopback,
//! SQLite storage in a temporary directory), topics, producing and reading, and the daemon as a
//! child process.
#![allow(dead_code)]

pub mod hostile;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn nisshi() -> String {
    std::env::var("NISSHI_BIN").unwrap_or_else(|_| "nisshi".into())
}

/// A broker process on loopback with durable SQLite storage.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra command-line arguments (e.g. `--authentication`), kept across restarts.
    pub args: Vec<String>,
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir,
            args: Vec::new(),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let child = Command::new(nisshi())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
            ])
            // The SQLite path is relative to the working directory.
            .arg("sqlite://nisshi.db")
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nisshi must be on PATH (scripts/ensure-deps.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.index_headers();
    }

    /// Adds the index nisshi's SQLite schema lacks: without it every fetched record scans every
    /// header in the database, and a consumer a few thousand forwarded records behind asks for
    /// more than librdkafka's 60 s request timeout, again and again (`../shared/BROKER.md`,
    /// "Records with headers"). The broker creates its tables before it listens.
    fn index_headers(&self) {
        let out = Command::new("sqlite3")
            .args(["-cmd", ".timeout 10000", "nisshi.db"])
            .arg(
                "create index if not exists header_topition_offset on header (topition, offset_id)",
            )
            .current_dir(self.dir.path())
            .output()
            .expect("sqlite3 must be on PATH (scripts/ensure-deps.sh installs it)");
        assert!(out.status.success(), "sqlite3 create index: {out:?}");
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its data stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Creates a SCRAM-SHA-512 user (stored with the broker's data).
    pub fn create_user(&self, name: &str, password: &str) {
        let out = Command::new(nisshi())
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args([name, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "nisshi user create: {out:?}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = rt
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap();
    for r in results {
        r.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(name), Timeout::After(Duration::from_secs(5)))
            .unwrap();
        if md
            .topics()
            .iter()
            .any(|t| t.name() == name && t.partitions().len() == partitions as usize)
        {
            return;
        }
        assert!(Instant::now() < deadline, "topic {name} did not appear");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces each line of a JSONL file, keyed by its card id; returns how many.
pub fn produce_lines(bootstrap: &str, topic: &str, lines: &[String]) -> usize {
    produce_to(bootstrap, topic, None, lines)
}

/// Produces each line keyed by its card id, into `partition` (else where the key hashes).
pub fn produce_to(bootstrap: &str, topic: &str, partition: Option<i32>, lines: &[String]) -> usize {
    let producer: FutureProducer = client(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut futures = Vec::with_capacity(lines.len());
    for line in lines {
        let key = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("card_id").and_then(|c| c.as_str()).map(String::from))
            .unwrap_or_default();
        loop {
            let mut record = FutureRecord::to(topic).key(&key).payload(line);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match producer.send_result(record) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err(_) => {
                    producer.poll(Timeout::After(Duration::from_millis(5)));
                }
            }
        }
    }
    for f in futures {
        rt.block_on(f).unwrap().unwrap();
    }
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .unwrap();
    lines.len()
}

/// A message read back: key, payload, headers.
#[derive(Clone, Debug)]
pub struct Record {
    pub key: Option<String>,
    pub payload: String,
    pub headers: BTreeMap<String, String>,
}

/// Reads a whole topic from the beginning to its current end.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", format!("reader-{}", free_port()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(10)))
        .unwrap();
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Timeout::After(Duration::from_secs(10)))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                .unwrap();
            open += 1;
        }
    }
    if open == 0 {
        return Vec::new();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while open > 0 && Instant::now() < deadline {
        match consumer.poll(Timeout::After(Duration::from_millis(500))) {
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for x in h.iter() {
                        headers.insert(
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Record {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    headers,
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
            _ => {}
        }
    }
    out
}

/// The committed offsets of a group on a topic, by partition.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = client(bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Timeout::After(Duration::from_secs(10)))
        .unwrap();
    got.elements()
        .iter()
        .filter_map(|e| e.offset().to_raw().map(|o| (e.partition(), o)))
        .collect()
}

/// The daemon's configuration for a test.
pub struct DaemonSetup {
    pub bootstrap: String,
    pub group: String,
    pub swipes: String,
    pub alerts: String,
    pub dead_letters: String,
    pub snapshots: String,
    pub http_port: u16,
    pub extra: String,
    /// Extra `[kafka.client]` properties.
    pub client: Vec<(String, String)>,
}

impl DaemonSetup {
    pub fn new(bootstrap: &str, name: &str) -> DaemonSetup {
        DaemonSetup {
            bootstrap: bootstrap.into(),
            group: format!("{name}-group"),
            swipes: format!("{name}-swipes"),
            alerts: format!("{name}-alerts"),
            dead_letters: format!("{name}-dlq"),
            snapshots: format!("{name}-snapshots"),
            http_port: free_port(),
            // Short idle and snapshot cadences keep the tests quick.
            client: Vec::new(),
            extra: "[engine]\nidle_watermark_after = \"2s\"\nsnapshot_every = \"2s\"\n".into(),
        }
    }

    pub fn toml(&self) -> String {
        format!(
            r#"[kafka]
brokers = "{}"
group_id = "{}"
swipes_topic = "{}"
alerts_topic = "{}"
dead_letter_topic = "{}"
snapshot_topic = "{}"

[kafka.client]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
{}

[http]
listen = "127.0.0.1:{}"

[log]
level = "info"
{}
"#,
            self.bootstrap,
            self.group,
            self.swipes,
            self.alerts,
            self.dead_letters,
            self.snapshots,
            self.client
                .iter()
                .map(|(k, v)| format!("{k:?} = {v:?}\n"))
                .collect::<String>(),
            self.http_port,
            self.extra
        )
    }

    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("daemon-{}.toml", self.http_port));
        std::fs::write(&path, self.toml()).unwrap();
        path
    }

    pub fn topics(&self, partitions: i32) {
        create_topic(&self.bootstrap, &self.swipes, partitions);
        create_topic(&self.bootstrap, &self.alerts, partitions);
        create_topic(&self.bootstrap, &self.dead_letters, 1);
    }
}

/// The daemon as a child process.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub http_port: u16,
}

impl Daemon {
    pub fn spawn(config: &Path, http_port: u16, log: &Path) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Daemon {
            child,
            log: log.to_path_buf(),
            http_port,
        }
    }

    /// Events processed so far (0 until `/metrics` answers).
    pub fn processed(&self) -> usize {
        self.metric(r#"swipeguard_events_total{result="processed"}"#)
            .unwrap_or(0.0) as usize
    }

    /// Waits until at least `n` events are processed, then until nothing is buffered or in
    /// flight; fails with the log otherwise.
    pub fn wait_processed_and_drained(&self, n: usize) {
        assert!(
            wait_until(Duration::from_secs(120), || self.processed() >= n),
            "processed {} of {n}: {}",
            self.processed(),
            self.log_text()
        );
        assert!(
            self.wait_drained(Duration::from_secs(90)),
            "not drained: {}",
            self.log_text()
        );
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout`; returns the exit code and how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code(), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        (None, started.elapsed())
    }

    pub fn http(&self, path: &str) -> Option<(u16, String)> {
        http_get(SocketAddr::from(([127, 0, 0, 1], self.http_port)), path)
    }

    /// Waits until `/readyz` answers 200.
    /// Starts a daemon and waits up to a minute for it to report ready (panics with its log
    /// if it does not).
    pub fn spawn_ready(config: &Path, http_port: u16, log: &Path) -> Daemon {
        let daemon = Daemon::spawn(config, http_port, log);
        daemon.assert_ready("at start");
        daemon
    }

    /// Waits up to a minute for readiness; panics naming `when`, with the daemon's log, if it
    /// does not come.
    pub fn assert_ready(&self, when: &str) {
        assert!(
            self.wait_ready(Duration::from_secs(60)),
            "not ready {when}: {}",
            self.log_text()
        );
    }

    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.http("/readyz").is_some_and(|(s, _)| s == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let (_, body) = self.http("/metrics")?;
        body.lines()
            .find(|l| l.starts_with(name_and_labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Values of every series of a metric (`name{...} value` or `name value` lines), from one
    /// scrape.
    pub fn series(body: &str, name: &str) -> Vec<f64> {
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    }

    /// Whether one scrape shows this daemon drained: it owns partitions, and for every one of
    /// them the series exist and say nothing is buffered and nothing is unacknowledged. The
    /// daemon refreshes both gauges on every 50 ms tick (in-flight first), so a reading is
    /// never older than a tick; an absent series is never taken for "drained".
    pub fn drained_now(&self) -> Result<(), String> {
        let (_, body) = self.http("/metrics").ok_or("no /metrics answer")?;
        let assigned = body
            .lines()
            .find(|l| l.starts_with("swipeguard_partitions_assigned "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize;
        if assigned == 0 {
            return Err("no partition assigned".into());
        }
        for name in ["swipeguard_buffered_events", "swipeguard_in_flight_records"] {
            let values = Self::series(&body, name);
            if values.len() != assigned {
                return Err(format!(
                    "{name}: {} series for {assigned} partitions",
                    values.len()
                ));
            }
            let held: f64 = values.iter().sum();
            if held != 0.0 {
                return Err(format!("{name}: {held}"));
            }
        }
        Ok(())
    }

    /// Waits until [`Daemon::drained_now`] holds. Call it once the events asserted on have
    /// reached the daemon (processed count or committed offsets), or it may see a daemon that
    /// has not fetched them yet.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let mut last = String::new();
        let ok = wait_until(timeout, || match self.drained_now() {
            Ok(()) => true,
            Err(why) => {
                last = why;
                false
            }
        });
        if !ok {
            eprintln!("not drained after {timeout:?}: {last}");
        }
        ok
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.0 GET.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Waits until `f` holds or `timeout` passes.
pub fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    wait_every(timeout, Duration::from_millis(200), f)
}

/// Waits until `f` holds or `timeout` passes, looking every `every` (when looking is work for
/// the broker, such as reading a whole topic); `f` is asked once more at the deadline.
pub fn wait_every(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Simulated events as JSONL lines.
pub fn simulate(cards: u64, days: u32, seed: u64) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_swipeguard"))
        .args([
            "simulate",
            "--cards",
            &cards.to_string(),
            "--days",
            &days.to_string(),
            "--seed",
            &seed.to_string(),
            "--fraud-share",
            "0.1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Replays lines offline; returns the alert JSON lines.
pub fn replay_lines(dir: &Path, lines: &[String], config: Option<&Path>) -> Vec<String> {
    // The daemon runs the card stage only unless `daemon.live_stages` is on (DESIGN §11): what
    // it must equal is replay's card alerts.
    replay_subjects(dir, lines, config, &["card"])
}

/// Replay's alerts on subjects of the given kinds.
pub fn replay_subjects(
    dir: &Path,
    lines: &[String],
    config: Option<&Path>,
    kinds: &[&str],
) -> Vec<String> {
    let file = dir.join(format!("replay-{}.jsonl", free_port()));
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swipeguard"));
    cmd.arg("replay")
        .arg(&file)
        .arg("--rejects")
        .arg(dir.join("replay-rejects.jsonl"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            let v = serde_json::from_str::<serde_json::Value>(l).unwrap();
            kinds.contains(&v["subject"]["kind"].as_str().unwrap_or_default())
        })
        .map(String::from)
        .collect()
}

/// alert_id → alert JSON.
pub fn by_id(lines: impl IntoIterator<Item = String>) -> BTreeMap<String, String> {
    lines
        .into_iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            (v["alert_id"].as_str().unwrap().to_string(), l)
        })
        .collect()
}

/// Offsets one past the last message of each partition.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "end-offsets")
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            (
                p,
                consumer
                    .fetch_watermarks(topic, p, Timeout::After(Duration::from_secs(10)))
                    .unwrap()
                    .1,
            )
        })
        .collect()
}

/// Waits until the group has committed the end of every partition.
pub fn wait_all_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> bool {
    let end = end_offsets(bootstrap, topic, partitions);
    wait_until(timeout, || {
        committed(bootstrap, group, topic, partitions) == end
    })
}

/// Alert ids on the alerts topic (with duplicates).
pub fn alert_ids(bootstrap: &str, topic: &str) -> Vec<String> {
    read_topic(bootstrap, topic)
        .into_iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.payload).unwrap()["alert_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Waits until the group has committed every swipe and `daemon` has drained, then returns the
/// distinct alert ids on the alerts topic; panics with the daemon's log if either never happens.
pub fn alert_ids_once_drained(
    daemon: &Daemon,
    setup: &DaemonSetup,
    partitions: i32,
) -> std::collections::BTreeSet<String> {
    assert!(
        wait_all_committed(
            &setup.bootstrap,
            &setup.group,
            &setup.swipes,
            partitions,
            Duration::from_secs(180)
        ),
        "offsets never reached the end: {}",
        daemon.log_text()
    );
    assert!(
        daemon.wait_drained(Duration::from_secs(60)),
        "never drained: {}",
        daemon.log_text()
    );
    alert_ids(&setup.bootstrap, &setup.alerts)
        .into_iter()
        .collect()
}
