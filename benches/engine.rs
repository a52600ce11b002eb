//! Criterion benches of the pure core on decoded events: the card stage (the five card
//! detectors, the engine the releases before stages ran), every detector, and each detector
//! alone, over a skewed synthetic stream (`testing::synthetic_stream`).
//!
//! `cargo bench --bench engine` — results and the machine in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use swipeguard_detectors::testing::synthetic_stream;
use swipeguard_detectors::{DetectorName, Engine, EngineConfig, KeyKind, Output, Transaction};

const EVENTS: usize = 200_000;

fn run(cfg: &EngineConfig, events: Vec<Transaction>) -> (Engine, Output) {
    let mut engine = Engine::new(cfg.clone()).unwrap();
    let mut out = Output::default();
    for e in events {
        engine.admit(e, &mut out);
    }
    engine.drain(&mut out);
    (engine, out)
}

fn full_engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/full");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(EVENTS as u64));
    for cards in [10_000, 1_000_000] {
        // Lateness 0 gets an in-order stream; 30 s gets arrival jitter of up to 5 s.
        for (lateness, jitter_ms) in [(0u64, 0u64), (30, 5_000)] {
            let events = synthetic_stream(EVENTS, cards, jitter_ms, 7);
            let all = EngineConfig {
                allowed_lateness: Duration::from_secs(lateness),
                ..EngineConfig::default()
            };
            let card = EngineConfig {
                detectors: all.detectors.only_keys(&[KeyKind::Card]),
                ..all.clone()
            };
            for (stages, cfg) in [("card_stage", card), ("all_stages", all)] {
                let id = BenchmarkId::new(
                    format!("{stages}/lateness_{lateness}s"),
                    format!("{cards}_cards"),
                );
                group.bench_with_input(id, &events, |b, events| {
                    b.iter_batched(
                        || events.clone(),
                        |evs| black_box(run(&cfg, evs)),
                        BatchSize::LargeInput,
                    )
                });
            }
        }
    }
    group.finish();
}

fn each_detector(c: &mut Criterion) {
    let mut group = c.benchmark_group("detector");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(EVENTS as u64));
    let events = synthetic_stream(EVENTS, 10_000, 0, 7);
    let base = EngineConfig {
        allowed_lateness: Duration::ZERO,
        ..EngineConfig::default()
    };
    let none = EngineConfig {
        detectors: base.detectors.only(&[]),
        ..base.clone()
    };
    group.bench_with_input(
        BenchmarkId::new("none", "10000_cards"),
        &events,
        |b, events| {
            b.iter_batched(
                || events.clone(),
                |evs| black_box(run(&none, evs)),
                BatchSize::LargeInput,
            )
        },
    );
    for d in DetectorName::all() {
        let cfg = EngineConfig {
            detectors: base.detectors.only(&[d]),
            ..base.clone()
        };
        group.bench_with_input(
            BenchmarkId::new(d.as_str(), "10000_cards"),
            &events,
            |b, events| {
                b.iter_batched(
                    || events.clone(),
                    |evs| black_box(run(&cfg, evs)),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, full_engine, each_detector);
criterion_main!(benches);
