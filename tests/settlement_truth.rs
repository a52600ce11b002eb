//! Truth computed independently (issue 16): from a simulated file alone, a plain brute-force
//! reference written here — reading the JSON with serde_json, not the project's decoder, and
//! calling no detector — derives the exact set of (detector, subject, first evidence) that
//! `trace_code_resettled`, `card_lock`'s PIN lock, `early_refill` and `settle_during_stay` must
//! raise, and replay must raise exactly those. The references recompute from the whole history
//! before each event (quadratic per person) rather than keeping the detectors' running state. Each detector runs alone, so `card_lock` sees no other detector's alerts (its temporary
//! lock is covered by its unit tests).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

type Truth = BTreeSet<(String, String, String)>;

fn swipeguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swipeguard"))
}

/// A simulated month (fraud share 0.1), written to `dir/month.jsonl` and parsed here.
fn simulated(dir: &Path) -> Vec<serde_json::Value> {
    let lines = support::simulate(4_000, 45, 16);
    std::fs::write(dir.join("month.jsonl"), lines.join("\n") + "\n").unwrap();
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn replayed(dir: &Path, detector: &str) -> Truth {
    let out = swipeguard()
        .arg("replay")
        .arg(dir.join("month.jsonl"))
        .args([
            "--detectors",
            detector,
            "--no-progress",
            "--rejects",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["detector"].as_str().unwrap().to_string(),
                v["subject"]["id"].as_str().unwrap().to_string(),
                v["evidence"][0].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn text<'a>(e: &'a serde_json::Value, field: &str) -> &'a str {
    e[field].as_str().unwrap_or("")
}

fn ms(e: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text(e, "ts"))
        .unwrap()
        .timestamp_millis()
}

fn is_settlement(e: &serde_json::Value) -> bool {
    matches!(text(e, "event_type"), "" | "settlement")
}

/// Every code of the event's unsplit items, once, in order.
fn codes(e: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in e["items"].as_array().into_iter().flatten() {
        if item["split"].as_bool() == Some(true) {
            continue;
        }
        for c in item["trace_codes"].as_array().into_iter().flatten() {
            let c = c.as_str().unwrap().to_string();
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// DESIGN §12, `trace_code_resettled`, by brute force (the file spans far less than 400 days).
fn resettled_truth(events: &[serde_json::Value]) -> Truth {
    let mut held: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut truth = Truth::new();
    for e in events.iter().filter(|e| is_settlement(e)) {
        let id = text(e, "event_id");
        for code in codes(e) {
            match text(e, "outcome") {
                "refunded" => {
                    held.remove(&code);
                }
                "approved" if !held.insert(code.clone()) => {
                    truth.insert(("trace_code_resettled".into(), code, id.into()));
                }
                _ => {}
            }
        }
    }
    truth
}

#[derive(Default)]
struct Card {
    run: Vec<String>,
    /// (until ms, used, approved)
    lock: Option<(i64, bool, bool)>,
}

/// DESIGN §12, `card_lock` without other detectors: 3 consecutive wrong PINs lock for 24 h.
fn card_lock_truth(events: &[serde_json::Value]) -> Truth {
    let mut cards: HashMap<String, Card> = HashMap::new();
    let mut truth = Truth::new();
    for e in events {
        let with_card = is_settlement(e)
            && text(e, "outcome") != "refunded"
            && matches!(text(e, "cert_type"), "" | "card");
        if !with_card {
            continue;
        }
        let card_id = text(e, "card_id").to_string();
        let id = text(e, "event_id").to_string();
        let t = ms(e);
        let card = cards.entry(card_id.clone()).or_default();
        if card.lock.is_some_and(|(until, _, _)| t >= until) {
            card.lock = None;
            card.run.clear();
        }
        let approved = text(e, "outcome") == "approved";
        let bad_pin = text(e, "outcome") == "declined" && text(e, "decline_reason") == "bad_pin";
        if let Some((_, used, was_approved)) = card.lock.as_mut() {
            if approved && !*was_approved {
                *was_approved = true;
                *used = true;
                truth.insert(("card_lock".into(), card_id, id));
            } else if !*used {
                *used = true;
                truth.insert(("card_lock".into(), card_id, id));
            }
            continue;
        }
        if approved {
            card.run.clear();
        } else if bad_pin {
            card.run.push(id);
            if card.run.len() == 3 {
                truth.insert(("card_lock".into(), card_id, card.run[0].clone()));
                card.run.clear();
                card.lock = Some((t + DAY, false, false));
            }
        }
    }
    truth
}

const DAY: i64 = 86_400_000;

/// Days of supply per group on an event (group, else code; items without days skipped).
fn supplies(e: &serde_json::Value) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for item in e["items"].as_array().into_iter().flatten() {
        let Some(days) = item["days_supply"].as_i64() else {
            continue;
        };
        let group = item["group"]
            .as_str()
            .or(item["code"].as_str())
            .unwrap()
            .to_string();
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, d)) => *d += days,
            None => out.push((group, days)),
        }
    }
    out
}

/// The events of each person, in file order (the file is in (time, id) order).
fn by_person(events: &[serde_json::Value]) -> HashMap<String, Vec<&serde_json::Value>> {
    let mut out: HashMap<String, Vec<&serde_json::Value>> = HashMap::new();
    for e in events {
        if let Some(p) = e["account_id"].as_str() {
            out.entry(p.to_string()).or_default().push(e);
        }
    }
    out
}

/// DESIGN §12, `early_refill`: for each approved settlement, each group's supply end recomputed
/// from every earlier event of the person; a cool-down of 24 h per person and group.
fn early_refill_truth(events: &[serde_json::Value]) -> Truth {
    let mut truth = Truth::new();
    for (person, mine) in by_person(events) {
        let mut last_alert: HashMap<String, i64> = HashMap::new();
        for (n, e) in mine.iter().enumerate() {
            if !is_settlement(e) || text(e, "outcome") != "approved" {
                continue;
            }
            let t = ms(e);
            let tolerance = if text(e, "visit_type") == "chronic" {
                7
            } else {
                3
            } * DAY;
            let mut fires = false;
            for (group, _) in supplies(e) {
                let mut end = i64::MIN;
                for x in mine[..n].iter().filter(|x| is_settlement(x)) {
                    let days: i64 = supplies(x)
                        .iter()
                        .filter(|(g, _)| *g == group)
                        .map(|(_, d)| d * DAY)
                        .sum();
                    if days == 0 {
                        continue;
                    }
                    let tx = ms(x);
                    match text(x, "outcome") {
                        "approved" => end = end.max(tx) + days,
                        "refunded" if end > tx => end = (end - days).max(tx),
                        _ => {}
                    }
                }
                if end == i64::MIN || end - t <= tolerance {
                    continue;
                }
                if last_alert.get(&group).is_some_and(|&a| t < a + DAY) {
                    continue;
                }
                last_alert.insert(group, t);
                fires = true;
            }
            if fires {
                truth.insert((
                    "early_refill".into(),
                    person.clone(),
                    text(e, "event_id").into(),
                ));
            }
        }
    }
    truth
}

/// DESIGN §12, `settle_during_stay`: for each outpatient or pharmacy settlement and each
/// admission, the stays open just before it, recomputed from every earlier event of the
/// person; one alert per stay.
fn settle_during_stay_truth(events: &[serde_json::Value]) -> Truth {
    let mut truth = Truth::new();
    for (person, mine) in by_person(events) {
        let mut alerted: std::collections::HashSet<String> = Default::default();
        for (n, e) in mine.iter().enumerate() {
            let t = ms(e);
            let kind = text(e, "event_type");
            let counted = is_settlement(e)
                && text(e, "outcome") == "approved"
                && matches!(text(e, "visit_type"), "outpatient" | "pharmacy");
            if !counted && kind != "admission" {
                continue;
            }
            // Admissions before `e` not discharged before it, not older than 180 days.
            let open: Vec<&serde_json::Value> = mine[..n]
                .iter()
                .enumerate()
                .filter(|(i, a)| {
                    text(a, "event_type") == "admission"
                        && !mine[i + 1..n].iter().any(|d| {
                            text(d, "event_type") == "discharge"
                                && text(d, "visit_id") == text(a, "visit_id")
                        })
                        && t - ms(a) <= 180 * DAY
                })
                .map(|(_, a)| *a)
                .collect();
            let inside: Vec<&serde_json::Value> = if counted {
                open.into_iter().filter(|a| ms(a) < t).collect()
            } else {
                // Reopening a stay that is open changes nothing; one elsewhere overlaps.
                if open
                    .iter()
                    .any(|a| text(a, "visit_id") == text(e, "visit_id"))
                {
                    continue;
                }
                open.into_iter()
                    .filter(|a| ms(a) < t && text(a, "merchant_id") != text(e, "merchant_id"))
                    .collect()
            };
            let mut fires = false;
            for a in inside {
                // A stay is named by its (first) admission's id.
                fires |= alerted.insert(text(a, "event_id").to_string());
            }
            if fires {
                truth.insert((
                    "settle_during_stay".into(),
                    person.clone(),
                    text(e, "event_id").into(),
                ));
            }
        }
    }
    truth
}

#[test]
fn early_refill_and_settle_during_stay_raise_exactly_what_brute_force_says() {
    let dir = tempfile::tempdir().unwrap();
    let events = simulated(dir.path());

    let expected = early_refill_truth(&events);
    assert!(
        expected.len() >= 40,
        "too few early refills to judge: {}",
        expected.len()
    );
    assert_eq!(replayed(dir.path(), "early_refill"), expected);

    let expected = settle_during_stay_truth(&events);
    assert!(
        expected.len() >= 20,
        "too few stays to judge: {}",
        expected.len()
    );
    assert_eq!(replayed(dir.path(), "settle_during_stay"), expected);
}

#[test]
fn trace_code_resettled_and_card_lock_raise_exactly_what_brute_force_says() {
    let dir = tempfile::tempdir().unwrap();
    let events = simulated(dir.path());

    let expected = resettled_truth(&events);
    assert!(
        expected.len() >= 20,
        "too few resales to judge: {}",
        expected.len()
    );
    assert_eq!(replayed(dir.path(), "trace_code_resettled"), expected);

    let expected = card_lock_truth(&events);
    assert!(
        expected.len() >= 50,
        "too few locks to judge: {}",
        expected.len()
    );
    assert_eq!(replayed(dir.path(), "card_lock"), expected);
}
