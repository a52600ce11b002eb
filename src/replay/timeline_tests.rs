use swipeguard_detectors::testing::tx;
use swipeguard_detectors::{DetectorName, EventId, FeatureSurprise, KeyKind, Severity, Subject};

use super::*;
use crate::replay::drill::{Collector, Plan, Recorder, AT_OR_BEFORE};

const HOSTILE: &str = r#"</script><script>alert(1)</script><img src=x onerror=alert(2)>"#;

fn note(id: &str, subject: &str, ts: i64, evidence: &[&str]) -> AlertNote {
    AlertNote {
        alert_id: id.into(),
        ts: EventTime(ts),
        detector: DetectorName::parse("off_pattern").unwrap(),
        severity: Severity::High,
        score: 7.5,
        subject: Subject {
            kind: KeyKind::Card,
            id: subject.into(),
        },
        reason: None,
        explanation: format!("odd amount {HOSTILE}"),
        evidence: evidence.iter().map(EventId::new).collect(),
        features: vec![
            FeatureSurprise {
                feature: "hour".into(),
                observed: "03:00".into(),
                usual: "09:00–18:00".into(),
                p_value: 0.01,
            },
            FeatureSurprise {
                feature: "amount".into(),
                observed: "¥9,000.00".into(),
                usual: "¥80.00".into(),
                p_value: 1e-7,
            },
        ],
        true_positive: Some(true),
    }
}

/// A drill-down over one card with hostile ids: an alert at t=100 naming events `e1` and `old`.
fn drill(card: &str) -> DrillDown {
    let mut r = Recorder::default();
    r.record(note("al-1", card, 100, &["old", "e1"]));
    let plan: Plan = r.plan();
    let mut c = Collector::new(&plan);
    c.offer(&tx("old", -1_000_000).card(card).build());
    // Enough between them for `old` to fall out of the alert's window.
    for i in 0..AT_OR_BEFORE {
        c.offer(
            &tx(&format!("f{i:02}"), -500_000 + i as i64)
                .card(card)
                .build(),
        );
    }
    for i in 0..5 {
        c.offer(
            &tx(&format!("e{i}"), 100 - i)
                .card(card)
                .label(HOSTILE)
                .build(),
        );
    }
    DrillDown {
        plan,
        timelines: Ok(c.finish()),
    }
}

/// The embedded data, parsed as the page's script parses it.
fn data(section: &str) -> serde_json::Value {
    let start = section.find(r#"id="drill-data">"#).unwrap() + r#"id="drill-data">"#.len();
    let end = start + section[start..].find("</script>").unwrap();
    serde_json::from_str(&section[start..end]).unwrap()
}

#[test]
fn hostile_ids_and_texts_never_become_markup() {
    let s = section(&drill(HOSTILE), true);
    assert_eq!(
        s.matches("<script").count(),
        2,
        "only the data and the code"
    );
    assert_eq!(s.matches("</script>").count(), 2);
    assert!(!s.contains("<img"), "{s}");
    let d = data(&s);
    let key = format!("card:{HOSTILE}");
    let subject = &d["subjects"][key.as_str()];
    assert_eq!(subject["id"], HOSTILE, "the id survives, as text");
    assert_eq!(subject["events"][7]["l"], HOSTILE);
}

#[test]
fn table_rows_link_to_their_subjects_timelines() {
    let s = section(&drill("c 1&2"), true);
    assert!(
        s.contains(r##"href="#subject=card:c%201%262&amp;alert=al-1""##),
        "{s}"
    );
    assert_eq!(
        subject_link("trace_code", "8/é", None),
        "#subject=trace_code:8%2F%C3%A9"
    );
}

#[test]
fn the_data_holds_the_timeline_with_its_evidence_and_features() {
    let d = data(&section(&drill("c1"), true));
    let s = &d["subjects"]["card:c1"];
    let events: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["old", "f05", "f06", "f07", "f08", "f09", "f10", "e4", "e3", "e2", "e1", "e0"]
    );
    // `old` is evidence only: events of the card may be missing after it.
    assert_eq!(s["events"][1]["g"], true);
    assert_eq!(s["events"][2].get("g"), None);
    let alert = &s["shown"][0];
    assert_eq!(alert["ev"], serde_json::json!(["old", "e1"]));
    // Most surprising first.
    assert_eq!(alert["f"][0]["n"], "amount");
    assert_eq!(alert["f"][0]["s"], "7.0");
    assert_eq!(alert["t"], "1970-01-01 08:00:00");
    assert_eq!(d["left_out"], 0);
}

#[test]
fn without_timelines_the_page_says_why() {
    let mut d = drill("c1");
    d.timelines = Err("- is not a regular file".into());
    let s = section(&d, false);
    assert!(s.contains(
        r#"<p id="timelines-unavailable">Timelines are unavailable: - is not a regular file.</p>"#
    ));
    assert_eq!(data(&s)["unavailable"], "- is not a regular file");
    assert!(
        s.contains(r#"<table id="alerts">"#),
        "the alerts are still listed"
    );
}

#[test]
fn times_are_china_standard_time() {
    assert_eq!(cst(EventTime(0)), "1970-01-01 08:00:00");
    assert_eq!(cst(EventTime(16 * 3_600_000 + 1)), "1970-01-02 00:00:00");
}
