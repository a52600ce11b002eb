use swipeguard_detectors::testing::{run, tx};

use super::*;

fn note(id: &str, kind: KeyKind, subject: &str, ts: i64, severity: Severity) -> AlertNote {
    AlertNote {
        alert_id: id.into(),
        ts: EventTime(ts),
        detector: DetectorName::all().next().unwrap(),
        severity,
        score: 1.0,
        subject: Subject {
            kind,
            id: subject.into(),
        },
        reason: None,
        explanation: String::new(),
        evidence: Vec::new(),
        features: Vec::new(),
        true_positive: None,
    }
}

fn ids(rows: &[EventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn a_window_keeps_the_nearest_events_whatever_the_order_they_come_in() {
    let mut w = Window::new(EventTime(100));
    // Times 0..=200 in a scrambled order, each offered twice.
    let times: Vec<i64> = (0..=200).map(|i| (i * 73) % 201).collect();
    for t in times.iter().chain(&times) {
        let e = tx(&format!("e{t:03}"), *t).build();
        w.offer((e.ts, &e.event_id), || EventRow::new(&e));
    }
    let got: Vec<i64> = w.events().map(|r| r.ts.0).collect();
    let want: Vec<i64> = (90..=110).collect();
    assert_eq!(got, want, "{AT_OR_BEFORE} at or before 100, {AFTER} after");
}

#[test]
fn ties_in_time_are_ordered_by_event_id() {
    let mut w = Window::new(EventTime(10));
    for id in ["z", "a", "m"] {
        let e = tx(id, 10).build();
        w.offer((e.ts, &e.event_id), || EventRow::new(&e));
    }
    let got: Vec<&str> = w.events().map(|r| r.id.as_str()).collect();
    assert_eq!(got, ["a", "m", "z"]);
}

#[test]
fn the_plan_lists_the_most_severe_newest_alerts_and_the_most_alerted_subjects() {
    let mut r = Recorder::default();
    r.record(note("a1", KeyKind::Card, "c1", 10, Severity::Low));
    r.record(note("a2", KeyKind::Card, "c2", 5, Severity::High));
    r.record(note("a3", KeyKind::Card, "c2", 20, Severity::Medium));
    r.record(note("a4", KeyKind::Terminal, "t1", 30, Severity::High));
    let p = r.plan();
    let table: Vec<&str> = p.table.iter().map(|a| a.alert_id.as_str()).collect();
    assert_eq!(table, ["a4", "a2", "a3", "a1"]);
    assert_eq!((p.total_alerts, p.table_left_out), (4, 0));
    let subjects: Vec<&str> = p.subjects.iter().map(|s| s.subject.id.as_str()).collect();
    // c2 has two alerts; t1 and c1 one each, t1's the more severe.
    assert_eq!(subjects, ["c2", "t1", "c1"]);
    let shown: Vec<&str> = p.subjects[0]
        .shown
        .iter()
        .map(|a| a.alert_id.as_str())
        .collect();
    assert_eq!(shown, ["a2", "a3"]);
}

#[test]
fn the_plan_is_capped_and_says_how_much_it_left_out() {
    let mut r = Recorder::default();
    let n = TABLE_ALERTS + 7;
    for i in 0..n {
        // Subject i % 600: the first 100 of them get one alert more.
        let subject = format!("c{:04}", i % 600);
        r.record(note(
            &format!("a{i}"),
            KeyKind::Card,
            &subject,
            i as i64,
            Severity::Low,
        ));
    }
    for i in 0..3 * WINDOWS_PER_SUBJECT {
        r.record(note(
            &format!("b{i}"),
            KeyKind::Card,
            "busy",
            i as i64,
            Severity::Low,
        ));
    }
    let total = (n + 3 * WINDOWS_PER_SUBJECT) as u64;
    let p = r.plan();
    assert_eq!(p.table.len(), TABLE_ALERTS);
    assert_eq!(p.table_left_out, total - TABLE_ALERTS as u64);
    assert!(
        p.table.windows(2).all(|w| w[0].ts >= w[1].ts),
        "newest first"
    );
    assert_eq!(p.subjects.len(), SUBJECTS);
    assert_eq!(p.subjects_left_out, 601 - SUBJECTS);
    assert_eq!(p.subjects[0].subject.id, "busy");
    assert_eq!(p.subjects[0].alerts, 3 * WINDOWS_PER_SUBJECT as u64);
    assert_eq!(p.subjects[0].shown.len(), WINDOWS_PER_SUBJECT);
    assert!(p.subjects[0].shown[0].ts.0 == 3 * WINDOWS_PER_SUBJECT as i64 - 1);
}

fn plan_for(notes: Vec<AlertNote>) -> Plan {
    let mut r = Recorder::default();
    for n in notes {
        r.record(n);
    }
    r.plan()
}

#[test]
fn the_collector_gathers_each_subjects_events_by_its_key() {
    let mut card = note("a1", KeyKind::Card, "c1", 1_000, Severity::High);
    // Evidence far before the window, and one of another card (not the subject's: not shown).
    card.evidence = vec![EventId::new("old"), EventId::new("other")];
    let mut code = note("a2", KeyKind::TraceCode, "T9", 50, Severity::High);
    code.evidence = vec![EventId::new("s1"), EventId::new("s2")];
    let term = note("a3", KeyKind::Terminal, "m7", 50, Severity::High);
    let mut c = Collector::new(&plan_for(vec![card, code, term]));
    let mut events = vec![
        tx("old", 0).card("c1").build(),
        tx("other", 990).card("c2").build(),
        tx("s1", 10).card("c3").item("x", 30, &["T9"]).build(),
        tx("s2", 50).card("c4").item("x", 30, &["T8", "T9"]).build(),
        // A split item's code is not the subject's key.
        tx("s3", 60)
            .card("c4")
            .item("x", 30, &["T9"])
            .split_items()
            .build(),
        // Terminal: the merchant when the event has no terminal.
        tx("m", 40).card("c5").merchant("m7").build(),
        tx("t", 41).card("c5").merchant("m7").terminal("tt").build(),
    ];
    for i in 0..40 {
        events.push(tx(&format!("n{i:02}"), 900 + i * 5).card("c1").build());
    }
    for e in &events {
        c.offer(e);
    }
    let got = c.finish();
    // Plan order: equal counts and severity, newest first (a1), then by kind.
    let card = &got[0];
    assert_eq!(card.first().map(|r| r.id.as_str()), Some("old"));
    assert_eq!(card[0].windows, 0, "evidence only");
    // Events at or before t=1000 are n00..n20, the eleven latest n10..n20, then ten after.
    let want: Vec<String> = std::iter::once("old".to_string())
        .chain((10..31).map(|i| format!("n{i:02}")))
        .collect();
    assert_eq!(ids(card), want);
    assert!(card[1..].iter().all(|r| r.windows == 1));
    let sides: Vec<Vec<&str>> = got[1..].iter().map(|s| ids(s)).collect();
    assert!(sides.contains(&vec!["s1", "s2"]), "{sides:?}");
    assert!(sides.contains(&vec!["m"]), "{sides:?}");
}

#[test]
fn a_note_is_made_from_an_alert() {
    let alerts = run(
        "failed_pin",
        (0..4)
            .map(|i| tx(&format!("p{i}"), i * 1_000).bad_pin())
            .collect(),
    );
    let alert = alerts.first().expect("failed_pin fires on four bad PINs");
    let n = AlertNote::new(alert, Some(true));
    assert_eq!(n.subject, alert.subject);
    assert_eq!(n.evidence, alert.evidence);
    assert_eq!(n.alert_id, alert.alert_id.0);
}

#[test]
fn inputs_that_are_not_files_cannot_be_read_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.jsonl");
    std::fs::write(&file, "").unwrap();
    assert_eq!(not_rereadable(&[]), None, "the bundled sample");
    assert_eq!(not_rereadable(std::slice::from_ref(&file)), None);
    let why = not_rereadable(&[file, dir.path().to_path_buf()]).unwrap();
    assert!(why.contains("not a regular file"), "{why}");
}
