//! The code book decides exactly as the generic key table with `trace_code_resettled`'s store:
//! the same alerts, counts, tracked keys and snapshot bytes after every event, on random streams
//! with refunds, declines, repeated codes, codes and ids that do not pack, ties in time, gaps
//! beyond the horizon and beyond 49 days, and ceilings that bind; and a snapshot of either
//! restores into the other.

use std::time::Duration;

use super::*;
use crate::config::EngineConfig;
use crate::engine::{Engine, Output};
use crate::model::{DeclineReason, KeyKind};
use crate::testing::{tx, SplitMix};

const DAY: i64 = 86_400_000;

fn config(ceiling: usize, horizon_days: u64, lateness_ms: u64) -> EngineConfig {
    let mut cfg = EngineConfig {
        allowed_lateness: Duration::from_millis(lateness_ms),
        ..EngineConfig::default()
    };
    cfg.detectors = cfg
        .detectors
        .only(&[DetectorName::named("trace_code_resettled")]);
    cfg.detectors.trace_code_resettled.horizon = Duration::from_secs(horizon_days * 86_400);
    cfg.max_tracked_keys.trace_code = ceiling;
    cfg
}

fn stream(seed: u64, n: usize) -> Vec<Transaction> {
    let mut rng = SplitMix::new(seed);
    let mut ts = 1_767_225_600_000i64;
    (0..n)
        .map(|i| {
            ts += match rng.below(25) {
                0 => 60 * DAY,
                1 => 8 * DAY,
                2..=5 => 0,
                _ => rng.below(DAY as u64 / 3) as i64,
            };
            let codes: Vec<String> = (0..1 + rng.below(3))
                .map(|_| match rng.below(30) {
                    c if c % 7 == 0 => format!("box_{c}"),
                    c => format!("8{c:019}"),
                })
                .collect();
            let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
            let id = match i % 5 {
                0 => format!("settlement no. {i}"),
                _ => format!("s{i:06}"),
            };
            let b = tx(&id, ts)
                .card(&format!("c{}", rng.below(4)))
                .merchant(&format!("m{}", rng.below(3)))
                .item("drug", 30, &codes);
            match rng.below(12) {
                0 => b.refunded(),
                1 => b.declined(DeclineReason::InsufficientFunds),
                _ => b,
            }
            .build()
        })
        .collect()
}

fn pair(cfg: &EngineConfig) -> (Engine, Engine) {
    let book = Engine::build(cfg.clone(), true).unwrap();
    let table = Engine::build(cfg.clone(), false).unwrap();
    assert!(book.stages[0].codes.is_some(), "the book is used");
    assert!(table.stages[0].codes.is_none());
    (book, table)
}

#[test]
fn the_book_decides_counts_and_snapshots_exactly_as_the_key_table() {
    let mut alerts = 0;
    let mut evicted = [0u64; 2];
    for seed in 0..60 {
        for (ceiling, horizon_days) in [(10_000, 30), (6, 30), (3, 400), (1, 1)] {
            let cfg = config(ceiling, horizon_days, 0);
            let (mut book, mut table) = pair(&cfg);
            let (mut out_b, mut out_t) = (Output::default(), Output::default());
            for (i, e) in stream(seed, 240).into_iter().enumerate() {
                book.admit(e.clone(), &mut out_b);
                table.admit(e, &mut out_t);
                assert_eq!(out_b.alerts, out_t.alerts, "seed {seed} event {i}");
                assert_eq!(out_b.counts, out_t.counts, "seed {seed} event {i}");
                assert_eq!(
                    book.counts_held(),
                    table.counts_held(),
                    "seed {seed} event {i}"
                );
                if i % 40 == 0 {
                    assert_eq!(
                        book.snapshot(i as u64),
                        table.snapshot(i as u64),
                        "seed {seed} event {i}"
                    );
                }
            }
            book.advance_watermark(EventTime(i64::MAX / 4), &mut out_b);
            table.advance_watermark(EventTime(i64::MAX / 4), &mut out_t);
            assert_eq!(out_b.counts, out_t.counts);
            assert_eq!(book.counts_held(), (0, 0));
            alerts += out_b.alerts.len();
            let c = out_b.counts.stage(KeyKind::TraceCode);
            evicted[0] += c.evicted_idle;
            evicted[1] += c.evicted_capacity;
        }
    }
    assert!(alerts > 500, "{alerts} alerts: the streams re-settle codes");
    assert!(
        evicted[0] > 100 && evicted[1] > 100,
        "{evicted:?}: both evictions happen"
    );
}

#[test]
fn a_snapshot_of_either_restores_into_the_other_and_continues_the_same() {
    for seed in 100..130 {
        for (ceiling, lateness) in [(10_000, 0), (5, 0), (10_000, 2 * DAY as u64)] {
            let cfg = config(ceiling, 30, lateness);
            let events = stream(seed, 200);
            let (mut reference, _) = pair(&cfg);
            let mut expected = Output::default();
            for e in &events {
                reference.admit(e.clone(), &mut expected);
            }
            reference.drain(&mut expected);
            let cut = (seed as usize * 7) % events.len();
            let (mut book, mut table) = pair(&cfg);
            let mut out = Output::default();
            for e in &events[..cut] {
                book.admit(e.clone(), &mut out);
                table.admit(e.clone(), &mut Output::default());
            }
            for (from, compact) in [(&table, true), (&book, false)] {
                let bytes = from.snapshot(cut as u64);
                let restored = Engine::restore_built(cfg.clone(), &bytes, compact).unwrap();
                assert!(restored.discarded.is_empty());
                assert_eq!(restored.engine.stages[0].codes.is_some(), compact);
                let mut next = restored.engine;
                let mut out = Output {
                    alerts: out.alerts.clone(),
                    ..Output::default()
                };
                for e in &events[cut..] {
                    next.admit(e.clone(), &mut out);
                }
                next.drain(&mut out);
                assert_eq!(
                    out.alerts, expected.alerts,
                    "seed {seed} cut {cut} compact {compact}"
                );
            }
        }
    }
}

#[test]
fn the_index_grows_a_little_at_a_time_while_the_front_moves_on() {
    // Thousands of codes under a ceiling: the front is popped at almost every new code, a code
    // seen again moves to the back, and every 200 events time jumps 5 days, so that the codes
    // of six jumps ago (past the 30-day horizon) go at once — while the index sets full tables
    // aside and moves their keys a few at a time. Every held code stays findable and the book
    // keeps deciding as the key table does. (The walk overtaken by the front, and sequence
    // numbers wrapping, are `key_index`'s own tests.)
    let cfg = config(1_500, 30, 0);
    let (mut book, mut table) = pair(&cfg);
    let (mut out_b, mut out_t) = (Output::default(), Output::default());
    let mut rng = SplitMix::new(7);
    let t0 = 1_767_225_600_000i64;
    let mut moving = 0;
    for i in 0..20_000u32 {
        let code = format!("8{:019}", rng.below(4_000));
        let ts = t0 + i64::from(i) * 1_000 + i64::from(i / 200) * 5 * DAY;
        let e = tx(&format!("s{i:06}"), ts)
            .item("d", 30, &[code.as_str()])
            .build();
        book.admit(e.clone(), &mut out_b);
        table.admit(e, &mut out_t);
        assert_eq!(out_b.alerts, out_t.alerts, "event {i}");
        assert_eq!(book.counts_held(), table.counts_held(), "event {i}");
        let codes = book.stages[0].codes.as_ref().unwrap();
        moving += usize::from(codes.index.is_moving());
        if i % 250 == 0 {
            for (code, _) in codes.keys() {
                assert!(codes.find(&code, Packed::inline(&code)).is_some(), "{code}");
            }
        }
    }
    assert_eq!(out_b.counts, out_t.counts);
    assert!(moving > 100, "{moving} events during a move");
    assert!(out_b.alerts.len() > 1_000, "{} alerts", out_b.alerts.len());
}

#[test]
fn a_record_is_52_bytes_and_long_gaps_keep_their_time() {
    assert_eq!(std::mem::size_of::<Record>(), 52);
    let cfg = config(10, 400, 0);
    let (mut book, _) = pair(&cfg);
    let mut out = Output::default();
    let t0 = 1_767_225_600_000i64;
    book.admit(tx("s1", t0).item("d", 30, &["81"]).build(), &mut out);
    book.admit(
        tx("s2", t0 + 100 * DAY).item("d", 30, &["82"]).build(),
        &mut out,
    );
    book.admit(
        tx("s3", t0 + 101 * DAY).item("d", 30, &["81"]).build(),
        &mut out,
    );
    assert_eq!(out.alerts.len(), 1);
    let codes: Vec<(String, EventTime)> = book.stages[0].codes.as_ref().unwrap().keys().collect();
    assert_eq!(
        codes,
        [
            ("82".to_string(), EventTime(t0 + 100 * DAY)),
            ("81".to_string(), EventTime(t0 + 101 * DAY))
        ]
    );
}
