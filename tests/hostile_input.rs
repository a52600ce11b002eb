//! Hostile input: a corpus of 50+ malformed messages (every reject reason) between good events,
//! through replay and through the daemon — no crash, each refused with its reason, every good
//! event processed; a CSV line of megabytes; a flood of a million new card ids.

mod support;

use std::time::Duration;

use support::hostile::{corpus, expected_reasons};
use support::*;
use swipeguard::config::Config;
use swipeguard::replay::{replay, ReplayOptions};
use swipeguard_detectors::{Engine, EngineConfig, KeyKind, Output};

/// Replays `file` (through `mapping`, if any) with default settings: events processed, and the
/// rejects file's records.
fn replay_file(
    file: &std::path::Path,
    mapping: Option<std::path::PathBuf>,
) -> (u64, Vec<serde_json::Value>) {
    let rejects = file.with_extension("rejects.jsonl");
    let opts = ReplayOptions {
        files: vec![file.to_path_buf()],
        mapping,
        rejects: Some(rejects.clone()),
        ..ReplayOptions::default()
    };
    let summary = replay(&Config::default(), &opts, &mut Vec::new()).unwrap();
    let lines = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary.counts.stage(KeyKind::Card).released, lines)
}

#[test]
fn the_corpus_through_replay() {
    let cases = corpus();
    assert!(cases.iter().filter(|c| c.reason.is_some()).count() >= 50);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corpus.jsonl");
    let mut bytes = Vec::new();
    for c in &cases {
        assert!(!c.bytes.contains(&b'\n'));
        bytes.extend_from_slice(&c.bytes);
        bytes.push(b'\n');
    }
    std::fs::write(&file, bytes).unwrap();
    let (released, lines) = replay_file(&file, None);

    let good = cases.iter().filter(|c| c.reason.is_none()).count() as u64;
    assert_eq!(released, good, "every good event processed");
    // Each refused line carries the reason expected for that line.
    for r in &lines {
        let line = r["line"].as_u64().unwrap() as usize;
        assert_eq!(
            r["reason"].as_str(),
            cases[line - 1].reason,
            "line {line}: {}",
            r["detail"]
        );
    }
    let mut got: Vec<String> = lines
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, expected_reasons(&cases));
}

#[test]
fn the_corpus_through_the_daemon() {
    let cases = corpus();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let setup = DaemonSetup::new(&broker.bootstrap(), "hostile");
    // One partition: arrival order is the corpus order, so "late" and "duplicate" are exact.
    setup.topics(1);
    let producer: rdkafka::producer::FutureProducer = client(&broker.bootstrap()).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for c in &cases {
        let record =
            rdkafka::producer::FutureRecord::<[u8], [u8]>::to(&setup.swipes).payload(&c.bytes);
        rt.block_on(producer.send(record, Duration::from_secs(10)))
            .unwrap();
    }
    let config = setup.write(dir.path());
    let daemon = Daemon::spawn(&config, setup.http_port, &dir.path().join("daemon.log"));
    assert!(
        wait_all_committed(
            &broker.bootstrap(),
            &setup.group,
            &setup.swipes,
            1,
            Duration::from_secs(120)
        ),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.wait_drained(Duration::from_secs(60)));

    let good = cases.iter().filter(|c| c.reason.is_none()).count() as f64;
    assert_eq!(
        daemon.metric(r#"swipeguard_events_total{result="processed"}"#),
        Some(good)
    );
    let dlq = read_topic(&broker.bootstrap(), &setup.dead_letters);
    let mut got: Vec<String> = dlq
        .iter()
        .map(|r| r.headers["swipeguard.reason"].clone())
        .collect();
    got.sort();
    assert_eq!(got, expected_reasons(&cases));
    // Forwarded unchanged (payloads compared as text; the non-UTF-8 ones lossily on both sides).
    for r in &dlq {
        assert!(
            cases
                .iter()
                .any(|c| String::from_utf8_lossy(&c.bytes) == r.payload),
            "not forwarded unchanged: {}",
            &r.payload[..r.payload.len().min(80)]
        );
    }
    assert!(
        daemon.http("/healthz").is_some_and(|(s, _)| s == 200),
        "alive after the corpus"
    );
}

#[test]
fn a_csv_line_of_megabytes_is_refused_and_the_rest_processed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let mut text = String::from("event_id,ts,card_id,amount_minor,merchant_id,outcome\n");
    text.push_str("a,1767580200000,c1,100,m1,approved\n");
    text.push_str(&format!(
        "b,1767580201000,c1,100,{},approved\n",
        "m".repeat(3 << 20)
    ));
    text.push_str("c,1767580202000,c1,100,m1,approved\n");
    std::fs::write(&file, text).unwrap();
    let (released, lines) = replay_file(&file, None);
    assert_eq!(released, 2);
    let r = &lines[0];
    assert_eq!(r["reason"], "oversized");
    assert_eq!(r["line"], 3);
    // Only the head of the row is kept, never the megabytes.
    assert!(r["raw"].as_str().unwrap().len() <= 64 * 1024 + 1);
}

#[test]
fn a_jsonl_line_of_megabytes_is_cut_while_read_refused_and_the_rest_processed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl");
    let event = |id: &str, ms: u64, merchant: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"ts\":{ms},\"card_id\":\"c1\",\"amount_minor\":100,\
             \"merchant_id\":\"{merchant}\",\"outcome\":\"approved\"}}\n"
        )
    };
    let mut text = event("a", 1_767_580_200_000, "m1");
    text.push_str(&event("b", 1_767_580_201_000, &"m".repeat(24 << 20)));
    text.push_str(&event("c", 1_767_580_202_000, "m1"));
    std::fs::write(&file, text).unwrap();
    // Both the parallel decode lanes (plain JSONL) and the reader's own decoding (a mapping).
    let mapping = dir.path().join("identity.toml");
    std::fs::write(&mapping, "[source]\nformat = \"jsonl\"\n").unwrap();
    for mapping in [None, Some(mapping)] {
        let (released, lines) = replay_file(&file, mapping.clone());
        assert_eq!(released, 2, "mapping {mapping:?}");
        assert_eq!(lines.len(), 1);
        let r = &lines[0];
        assert_eq!(r["reason"], "oversized");
        assert_eq!(r["line"], 2);
        assert_eq!(r["raw"].as_str().unwrap().len(), 64 * 1024 + 1);
    }
}

#[test]
fn a_flood_of_a_million_new_cards_stays_under_the_ceiling() {
    let ceiling = 10_000;
    let config = EngineConfig {
        max_tracked_cards: ceiling,
        allowed_lateness: Duration::ZERO,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    let mut out = Output::default();
    let mut peak_bytes = 0;
    for i in 0..1_000_000u64 {
        let tx =
            swipeguard_detectors::testing::tx(&format!("e{i:07}"), 1_767_580_200_000 + i as i64)
                .card(&format!("flood-{i:07}"))
                .region("310104")
                .geo(31.2, 121.4)
                .build();
        engine.admit(tx, &mut out);
        if i % 100_000 == 0 {
            assert!(cards(&engine) <= ceiling);
            peak_bytes = peak_bytes.max(engine.state_size().bytes);
        }
    }
    let size = engine.state_size();
    assert_eq!(cards(&engine), ceiling);
    assert!(
        peak_bytes.max(size.bytes) <= ceiling * 512,
        "{} bytes for {ceiling} cards",
        peak_bytes.max(size.bytes)
    );
    assert_eq!(
        out.counts.stage(KeyKind::Card).evicted_capacity,
        1_000_000 - ceiling as u64
    );
}

/// Cards the card stage tracks.
fn cards(engine: &Engine) -> usize {
    engine
        .stages()
        .iter()
        .find(|s| s.kind() == KeyKind::Card)
        .map_or(0, |s| s.held().0)
}
