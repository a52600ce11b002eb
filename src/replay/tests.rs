use std::io::Write as _;
use std::path::{Path, PathBuf};

use swipeguard_detectors::{Engine, KeyKind, Output, RejectReason};

use super::*;
use crate::codec::decode_event;
use crate::encode::encode_alert;
use crate::simulate::{simulate, SimOptions};
use std::fs::File;

fn sim_file(dir: &Path, cards: u64) -> PathBuf {
    let path = dir.join("sim.jsonl");
    let mut f = File::create(&path).unwrap();
    simulate(
        &SimOptions {
            cards,
            days: 20,
            seed: 5,
            fraud_share: 0.1,
            ..SimOptions::default()
        },
        &mut f,
    )
    .unwrap();
    path
}

fn run(opts: &ReplayOptions) -> (Vec<u8>, Summary) {
    let mut out = Vec::new();
    let summary = replay(&Config::default(), opts, &mut out).unwrap();
    (out, summary)
}

fn opts(files: Vec<PathBuf>, rejects: &Path) -> ReplayOptions {
    ReplayOptions {
        files,
        rejects: Some(rejects.to_path_buf()),
        ..ReplayOptions::default()
    }
}

#[test]
fn replay_gives_exactly_the_engines_alerts_and_is_byte_identical_run_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = sim_file(dir.path(), 400);
    let o = opts(vec![file.clone()], &dir.path().join("rejects.jsonl"));
    let (first, summary) = run(&o);
    let (second, _) = run(&o);
    assert_eq!(first, second);
    assert!(summary.total_alerts() > 0);

    let mut engine = Engine::new(Config::default().engine_config()).unwrap();
    let mut out = Output::default();
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        engine.admit(
            decode_event(line.as_bytes(), &Default::default()).unwrap(),
            &mut out,
        );
    }
    engine.drain(&mut out);
    // Replay writes each batch's alerts stage by stage, the engine event by event: the same
    // alerts, and within each stage the same order.
    for kind in KeyKind::ALL {
        let mut direct = Vec::new();
        for a in out.alerts.iter().filter(|a| a.subject.kind == *kind) {
            encode_alert(a, &mut direct);
        }
        let replayed: Vec<u8> = String::from_utf8(first.clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!(r#""subject":{{"kind":"{kind}""#)))
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect();
        assert_eq!(replayed, direct, "{kind} stage");
    }
    assert_eq!(first.len(), {
        let mut all = Vec::new();
        for a in &out.alerts {
            encode_alert(a, &mut all);
        }
        all.len()
    });
}

#[test]
fn gzip_is_detected_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let plain = sim_file(dir.path(), 200);
    let gz = dir.path().join("sim.data");
    let mut enc =
        flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();
    let rejects = dir.path().join("r.jsonl");
    assert_eq!(
        run(&opts(vec![plain], &rejects)).0,
        run(&opts(vec![gz], &rejects)).0
    );
}

#[test]
fn every_bad_row_is_in_the_rejects_file_with_its_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = |id: &str, ts: i64| {
        format!(
            r#"{{"event_id":"{id}","ts":{ts},"card_id":"c","amount_minor":100,"merchant_id":"m","outcome":"approved"}}"#
        )
    };
    let t0 = 1_767_580_200_000i64;
    let lines = [
        good("a", t0),
        "not json".to_string(),
        "[1]".to_string(),
        r#"{"event_id":"x","ts":1767580200000,"card_id":"c","merchant_id":"m","outcome":"approved"}"#.to_string(),
        r#"{"event_id":"x","ts":1767580200000,"card_id":"c","amount_minor":-5,"merchant_id":"m","outcome":"approved"}"#.to_string(),
        r#"{"event_id":"x","ts":"noon","card_id":"c","amount_minor":5,"merchant_id":"m","outcome":"approved"}"#.to_string(),
        good("b", t0 + 120_000),
        good("late", t0),
        good("b", t0 + 120_000),
        String::new(),
        good("c", t0 + 130_000),
    ];
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let (_, summary) = run(&opts(vec![file], &rejects));
    let got: Vec<(u64, String)> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = [
        (2, "not_json"),
        (3, "not_object"),
        (4, "missing_field"),
        (5, "negative_amount"),
        (6, "bad_timestamp"),
        (8, "late"),
        (9, "duplicate"),
    ]
    .iter()
    .map(|(l, r)| (*l, r.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(summary.rows, 10);
    assert_eq!(summary.counts.stage(KeyKind::Card).released, 3);
    assert_eq!(summary.total_rejects(), 7);
    assert_eq!(summary.rejects.get(&RejectReason::Late), Some(&1));
    assert_eq!(
        summary.rejects_file.as_deref(),
        Some(rejects.display().to_string().as_str())
    );
}

#[test]
fn sort_puts_a_shuffled_file_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = sim_file(dir.path(), 300);
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    // Reverse blocks of 50 lines: hours out of order, far beyond the allowed lateness.
    for chunk in lines.chunks_mut(50) {
        chunk.reverse();
    }
    lines.reverse();
    let shuffled = dir.path().join("shuffled.jsonl");
    std::fs::write(&shuffled, lines.join("\n")).unwrap();
    let rejects = dir.path().join("r.jsonl");
    let (ordered, _) = run(&opts(vec![file], &rejects));
    let (unsorted, s1) = run(&opts(vec![shuffled.clone()], &rejects));
    assert!(
        s1.counts.stage(KeyKind::Card).late > 0,
        "a shuffled file without --sort has late rows"
    );
    // The summary says why and what to do.
    let said = s1.to_string();
    assert!(
        said.contains("not in time order") && said.contains("--sort"),
        "{said}"
    );
    assert_ne!(ordered, unsorted);
    let (sorted, s2) = run(&ReplayOptions {
        sort: true,
        ..opts(vec![shuffled], &rejects)
    });
    assert_eq!(s2.counts.stage(KeyKind::Card).late, 0);
    assert!(s2.order_hint().is_none() && !s2.to_string().contains("--sort"));
    // Ties in event time keep file order under a stable sort; release order is (time, id), so
    // the alerts are the same.
    assert_eq!(ordered, sorted);
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exports")
        .join(name)
}

fn mapping(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/mappings")
        .join(name)
}

fn reasons(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_bank_export_mapping_reads_its_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("r.jsonl");
    let o = ReplayOptions {
        mapping: Some(mapping("bank_export.toml")),
        ..opts(vec![fixture("bank_export.txt")], &rejects)
    };
    let (alerts, summary) = run(&o);
    // Three wrong PINs then an approval on tok-7f3a; a refund row, a bad date, a bad amount and
    // a row without a card are rejected.
    assert_eq!(
        reasons(&rejects),
        [
            "negative_amount",
            "bad_timestamp",
            "wrong_type",
            "missing_field"
        ]
    );
    assert_eq!(summary.counts.stage(KeyKind::Card).released, 5);
    let text = String::from_utf8(alerts).unwrap();
    assert!(text.contains(r#""detector":"failed_pin""#), "{text}");
    assert!(
        text.contains(r#""detector":"pin_success_after_failures""#),
        "{text}"
    );
    assert!(
        text.contains(r#""evidence":["B0001","B0002","B0003","B0004"]"#),
        "{text}"
    );
}

#[test]
fn the_his_extract_mapping_reads_its_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("r.jsonl");
    let o = ReplayOptions {
        mapping: Some(mapping("his_extract.toml")),
        ..opts(vec![fixture("his_extract.csv")], &rejects)
    };
    let (alerts, summary) = run(&o);
    assert!(reasons(&rejects).is_empty());
    assert_eq!(summary.counts.stage(KeyKind::Card).released, 6);
    let text = String::from_utf8(alerts).unwrap();
    // Beijing then Shanghai half an hour later on k-19; three wrong PINs on k-20.
    assert!(
        text.contains(r#""evidence":["his_extract.csv#2","his_extract.csv#3"]"#),
        "{text}"
    );
    assert!(text.contains(r#""detector":"failed_pin""#), "{text}");
    let labels = summary.labels.unwrap();
    assert_eq!(labels.fraud_events, 4);
    assert_eq!(labels.overall.recall(), Some(1.0));
}

#[test]
fn the_pharmacy_pos_mapping_reads_its_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("r.jsonl");
    let o = ReplayOptions {
        mapping: Some(mapping("pharmacy_pos.toml")),
        ..opts(vec![fixture("pharmacy_pos.tsv")], &rejects)
    };
    let (_, summary) = run(&o);
    // Two rows of tok-3 in the same minute get the same assembled id: the second is a duplicate.
    assert_eq!(reasons(&rejects), ["duplicate"]);
    assert_eq!(summary.counts.stage(KeyKind::Card).released, 4);
}

#[test]
fn delimiters_are_detected() {
    assert_eq!(input::detect_delimiter(b"a;b;c"), b';');
    assert_eq!(input::detect_delimiter(b"a\tb\tc"), b'\t');
    assert_eq!(input::detect_delimiter(b"a|b|\"c,d,e\""), b'|');
    assert_eq!(input::detect_delimiter(b"a,b"), b',');
}

#[test]
fn a_bad_mapping_stops_the_replay_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.toml");
    std::fs::write(&m, "[fields]\ncard_id = { column = \"Kartennummer\" }\n").unwrap();
    let o = ReplayOptions {
        mapping: Some(m),
        ..opts(vec![fixture("his_extract.csv")], &dir.path().join("r"))
    };
    let err = replay(&Config::default(), &o, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("mapping refers to columns not in the header: Kartennummer (the header has: card_token,"), "{err}");
}

#[test]
fn the_decode_thread_count_changes_nothing_in_the_output() {
    // Several files (batches cross file ends), bad lines among the good ones (rejects in order),
    // and more batches than lanes: every thread count must give the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(sim_file(dir.path(), 1500)).unwrap();
    let mut files = Vec::new();
    let lines: Vec<&str> = good.lines().collect();
    assert!(
        lines.len() > 3 * 2048,
        "more batches than lanes in each of three files"
    );
    for (i, chunk) in lines.chunks(lines.len() / 3 + 1).enumerate() {
        let path = dir.path().join(format!("part-{i}.jsonl"));
        let mut f = File::create(&path).unwrap();
        for (j, line) in chunk.iter().enumerate() {
            writeln!(f, "{line}").unwrap();
            if j % 997 == 0 {
                writeln!(f, "not json {i}/{j}").unwrap();
            }
        }
        files.push(path);
    }
    let outputs: Vec<(Vec<u8>, String, u64)> = [1, 2, 3, 7]
        .into_iter()
        .map(|threads| {
            let rejects = dir.path().join(format!("rejects-{threads}.jsonl"));
            let o = ReplayOptions {
                decode_threads: threads,
                ..opts(files.clone(), &rejects)
            };
            let (alerts, summary) = run(&o);
            assert!(summary.total_alerts() > 0);
            let rejected = std::fs::read_to_string(&rejects).unwrap();
            (alerts, rejected, summary.rows)
        })
        .collect();
    assert!(outputs[0].1.lines().count() >= 2, "bad lines are rejected");
    for other in &outputs[1..] {
        assert!(other == &outputs[0], "output differs with the thread count");
    }
}

#[test]
fn the_stage_thread_count_changes_nothing_in_the_output() {
    // Two stages (card and terminal) with alerts in both, rows late and duplicate for both
    // stages, more batches than the workers hold in flight: every thread count must give the
    // same alerts in the same order and the same rejects.
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(sim_file(dir.path(), 5000)).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert!(
        lines.len() > 5 * super::stages::STAGE_BATCH,
        "{}",
        lines.len()
    );
    let path = dir.path().join("with-stragglers.jsonl");
    let mut f = File::create(&path).unwrap();
    for (i, line) in lines.iter().enumerate() {
        writeln!(f, "{line}").unwrap();
        if i % 1500 == 1499 {
            // A duplicate now, and an hour-old straggler: refused by every stage.
            writeln!(f, "{line}").unwrap();
            writeln!(f, "{}", lines[i - 1400]).unwrap();
        }
    }
    drop(f);
    let outputs: Vec<(Vec<u8>, String, Summary)> = [1, 2, 3, 7]
        .into_iter()
        .map(|threads| {
            let rejects = dir.path().join(format!("rejects-{threads}.jsonl"));
            let o = ReplayOptions {
                stage_threads: threads,
                ..opts(vec![path.clone()], &rejects)
            };
            let (alerts, summary) = run(&o);
            (alerts, std::fs::read_to_string(&rejects).unwrap(), summary)
        })
        .collect();
    let (alerts, rejected, summary) = &outputs[0];
    let subjects: std::collections::BTreeSet<String> = String::from_utf8_lossy(alerts)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["subject"]["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        subjects.into_iter().collect::<Vec<_>>(),
        ["account", "card", "terminal", "trace_code"],
        "every stage alerts"
    );
    assert_eq!(
        summary.stages,
        [
            KeyKind::Card,
            KeyKind::Terminal,
            KeyKind::Account,
            KeyKind::TraceCode
        ]
    );
    // Every event has a card and a terminal; only pharmacy purchases have a code.
    for kind in [KeyKind::Card, KeyKind::Terminal] {
        let c = summary.counts.stage(kind);
        assert!(c.late > 0 && c.duplicates > 0, "{kind}: {c:?}");
    }
    // A row several stages refuse is one line naming them all.
    assert!(
        rejected
            .lines()
            .any(|l| l.contains(r#""detail":"card, terminal, account stage""#)),
        "{rejected}"
    );
    for (other_alerts, other_rejected, other) in &outputs[1..] {
        assert!(
            other_alerts == alerts,
            "alerts differ with the thread count"
        );
        assert_eq!(other_rejected, rejected);
        assert_eq!(other.counts, summary.counts);
    }
}

#[test]
fn a_sweep_scores_every_point_in_the_same_pass_and_leaves_the_output_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = sim_file(dir.path(), 1500);
    let plain = opts(vec![file.clone()], &dir.path().join("r1.jsonl"));
    let (alerts, _) = run(&plain);
    let swept = ReplayOptions {
        sweep: Some(
            sweep::Sweep::parse("detectors.off_pattern.alert_p_value=1e-6,1e-3,5e-2").unwrap(),
        ),
        ..opts(vec![file], &dir.path().join("r2.jsonl"))
    };
    let (swept_alerts, summary) = run(&swept);
    assert_eq!(
        alerts, swept_alerts,
        "the sweep changes nothing in the output"
    );
    let sw = summary.sweep.unwrap();
    assert_eq!(sw.key, "detectors.off_pattern.alert_p_value");
    let counts: Vec<u64> = sw.points.iter().map(|p| p.alerts).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]) && counts[0] < counts[2],
        "a looser threshold never raises fewer alerts: {counts:?}"
    );
    let recall: Vec<f64> = sw.points.iter().map(|p| p.card_recall.unwrap()).collect();
    assert!(recall[0] <= recall[2], "{recall:?}");
    // The point at the configured value is that detector's own figures in the replay.
    let own = summary
        .alerts
        .iter()
        .filter(|((d, _), _)| d.as_str() == "off_pattern")
        .map(|(_, n)| *n)
        .sum::<u64>();
    let configured = Config::default().detectors.off_pattern.alert_p_value;
    assert!(configured > 1e-6 && configured < 5e-2);
    assert!(
        counts[0] <= own && own <= counts[2],
        "{own} within {counts:?}"
    );
}
