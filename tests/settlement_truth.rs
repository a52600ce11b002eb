//! Truth computed independently (issue 16): from a simulated file alone, a plain brute-force
//! reference written here — reading the JSON with serde_json, not the project's decoder, and
//! calling no detector — derives the exact set of (detector, subject, first evidence) that
//! `trace_code_resettled` and `card_lock`'s PIN lock must raise, and replay must raise exactly
//! those. Each detector runs alone, so `card_lock` sees no other detector's alerts (its temporary
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
    const DAY: i64 = 86_400_000;
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
