use super::*;
use crate::engine::Output;
use crate::model::DetectorName;
use crate::testing::tx;

#[test]
fn round_trips_and_refuses_foreign_bytes() {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut out = Output::default();
    for i in 0..20 {
        engine.admit(
            tx(&format!("e{i}"), i * 1000)
                .card(&format!("c{}", i % 3))
                .build(),
            &mut out,
        );
    }
    let bytes = engine.snapshot(42);
    let restored = Engine::restore(EngineConfig::default(), &bytes).unwrap();
    assert_eq!(restored.position, 42);
    assert!(!restored.config_changed);
    assert!(restored.discarded.is_empty());
    assert_eq!(restored.engine.snapshot(42), bytes);
    assert!(matches!(
        Engine::restore(EngineConfig::default(), b"nope"),
        Err(SnapshotError::BadMagic)
    ));
    let mut future = bytes.clone();
    future[4] = 9;
    assert!(matches!(
        Engine::restore(EngineConfig::default(), &future),
        Err(SnapshotError::UnsupportedVersion { found: 9 })
    ));
    assert!(matches!(
        Engine::restore(EngineConfig::default(), &bytes[..bytes.len() - 3]),
        Err(SnapshotError::Corrupt(_))
    ));
}

#[test]
fn a_changed_detector_table_discards_only_that_section() {
    let mut engine = Engine::new(prompt()).unwrap();
    let mut out = Output::default();
    for i in 0..30 {
        engine.admit(
            tx(&format!("e{i}"), i * 1000)
                .card(&format!("c{}", i % 3))
                .geo(31.2, 121.4)
                .build(),
            &mut out,
        );
    }
    let bytes = engine.snapshot(0);
    let mut cfg = prompt();
    cfg.detectors.rapid_fire.min_swipes = 6;
    let restored = Engine::restore(cfg, &bytes).unwrap();
    assert!(restored.config_changed);
    assert_eq!(
        restored.discarded,
        [Discarded {
            detector: "rapid_fire".into(),
            reason: DiscardReason::Config
        }]
    );
    let live = |e: &Engine| -> Vec<(String, usize)> {
        e.stages[0]
            .stores
            .iter()
            .map(|s| (s.name().to_string(), s.live()))
            .collect()
    };
    let before = live(&engine);
    assert!(
        before.iter().filter(|(_, n)| *n > 0).count() >= 3,
        "{before:?}"
    );
    let after = live(&restored.engine);
    for (b, a) in before.iter().zip(&after) {
        if a.0 == "rapid_fire" {
            assert_eq!(a.1, 0);
        } else {
            assert_eq!(a, b, "{} kept its states", a.0);
        }
    }
}

/// A snapshot of `engine` with one detector's section rewritten as another version wrote it.
fn with_section_version(engine: &Engine, detector: &str, version: u32) -> Vec<u8> {
    let bytes = engine.snapshot(7);
    let mut body: Body<'_> = postcard::from_bytes(&bytes[6..]).unwrap();
    let mut found = false;
    for stage in &mut body.stages {
        for section in &mut stage.sections {
            if section.name == detector {
                section.version = version;
                found = true;
            }
        }
    }
    assert!(found, "no section for {detector}");
    let mut out = bytes[..6].to_vec();
    out.extend(postcard::to_allocvec(&body).unwrap());
    out.extend(postcard::to_allocvec(&super::Extras::default()).unwrap());
    out
}

#[test]
fn a_bumped_detector_version_discards_only_its_section() {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut out = Output::default();
    for i in 0..40 {
        let b = tx(&format!("e{i}"), i * 20_000)
            .card(&format!("c{}", i % 4))
            .terminal("t1")
            .geo(31.2, 121.4);
        let b = if i % 3 == 0 { b.bad_pin() } else { b };
        // Every fourth a pharmacy sale with a box's traceability code, by one of two people,
        // one of whom is in hospital.
        let b = if i % 4 == 1 {
            b.item("drug", 30, &[&format!("81{i}")])
                .person(&format!("p{}", i % 2))
                .visit(crate::settlement::VisitType::Pharmacy)
        } else if i == 2 {
            b.stay(crate::settlement::EventType::Admission, "p1", "v1")
        } else {
            b
        };
        engine.admit(b.build(), &mut out);
    }
    let live = |e: &Engine| -> Vec<(String, usize)> {
        e.stages
            .iter()
            .flat_map(|s| s.detectors().map(|(d, n)| (d.to_string(), n)))
            .collect()
    };
    let before = live(&engine);
    assert!(before.iter().all(|(_, n)| *n > 0), "{before:?}");
    for detector in [
        "off_pattern",
        "terminal_pin_probe",
        "trace_code_resettled",
        "early_refill",
        "settle_during_stay",
    ] {
        let bytes = with_section_version(&engine, detector, 99);
        let restored = Engine::restore(EngineConfig::default(), &bytes).unwrap();
        assert_eq!(
            restored.discarded,
            [Discarded {
                detector: detector.into(),
                reason: DiscardReason::Version
            }]
        );
        for ((name, n), (_, was)) in live(&restored.engine).iter().zip(&before) {
            if name == detector {
                assert_eq!(*n, 0, "{name} starts empty");
            } else {
                assert_eq!(n, was, "{name} kept its states");
            }
        }
        // The same version as this build's is loaded as written.
        let version = DetectorName::named(detector).registration().version;
        let same = with_section_version(&engine, detector, version);
        assert_eq!(
            Engine::restore(EngineConfig::default(), &same)
                .unwrap()
                .engine
                .snapshot(7),
            engine.snapshot(7)
        );
    }
}

/// Lateness 0: every event is released on arrival, so the states are there to snapshot.
fn prompt() -> EngineConfig {
    EngineConfig {
        allowed_lateness: std::time::Duration::ZERO,
        ..EngineConfig::default()
    }
}

#[test]
fn a_stage_or_detector_not_running_now_is_reported_and_skipped() {
    let mut engine = Engine::new(prompt()).unwrap();
    let mut out = Output::default();
    for i in 0..10 {
        engine.admit(tx(&format!("e{i}"), i * 1000).bad_pin().build(), &mut out);
    }
    let bytes = engine.snapshot(0);
    let mut cfg = prompt();
    cfg.detectors = cfg.detectors.only(&[
        DetectorName::named("failed_pin"),
        DetectorName::named("rapid_fire"),
    ]);
    let restored = Engine::restore(cfg, &bytes).unwrap();
    let mut skipped: Vec<(String, DiscardReason)> = restored
        .discarded
        .iter()
        .map(|d| (d.detector.clone(), d.reason))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            ("card_lock".into(), DiscardReason::NotRunning),
            ("early_refill".into(), DiscardReason::NotRunning),
            ("impossible_travel".into(), DiscardReason::NotRunning),
            ("off_pattern".into(), DiscardReason::NotRunning),
            (
                "pin_success_after_failures".into(),
                DiscardReason::NotRunning
            ),
            ("settle_during_stay".into(), DiscardReason::NotRunning),
            ("terminal_pin_probe".into(), DiscardReason::NotRunning),
            ("trace_code_resettled".into(), DiscardReason::NotRunning),
        ]
    );
    let kept: Vec<(String, usize)> = restored.engine.stages[0]
        .detectors()
        .map(|(d, n)| (d.to_string(), n))
        .collect();
    assert_eq!(kept, [("failed_pin".into(), 1), ("rapid_fire".into(), 1)]);
}

#[test]
fn a_corrupt_section_is_discarded_alone() {
    let mut engine = Engine::new(prompt()).unwrap();
    let mut out = Output::default();
    for i in 0..10 {
        engine.admit(tx(&format!("e{i}"), i * 1000).build(), &mut out);
    }
    let bytes = engine.snapshot(0);
    let mut body: Body<'_> = postcard::from_bytes(&bytes[6..]).unwrap();
    let section = body.stages[0]
        .sections
        .iter_mut()
        .find(|s| s.name == "rapid_fire")
        .unwrap();
    section.states = Block(std::borrow::Cow::Owned(vec![0xff, 0xff, 0xff]));
    let mut bad = bytes[..6].to_vec();
    bad.extend(postcard::to_allocvec(&body).unwrap());
    bad.extend(postcard::to_allocvec(&super::Extras::default()).unwrap());
    let restored = Engine::restore(prompt(), &bad).unwrap();
    assert_eq!(
        restored.discarded,
        [Discarded {
            detector: "rapid_fire".into(),
            reason: DiscardReason::Corrupt
        }]
    );
    let off_pattern = restored.engine.stages[0]
        .detectors()
        .find(|(d, _)| d.as_str() == "off_pattern")
        .unwrap();
    assert_eq!(off_pattern.1, 1);
}

/// A change carried over at a position gives, afterwards, exactly the alerts of an engine
/// restored under the new configuration from a snapshot taken there; an untouched detector
/// keeps its state, a retuned one starts empty.
#[test]
fn a_stage_reconfigured_alone_equals_the_engine_restored_under_the_new_configuration() {
    let events: Vec<Transaction> = (0..60)
        .map(|i| {
            let b = tx(&format!("e{i:03}"), i * 15_000).card(&format!("c{}", i % 3));
            if i % 2 == 0 { b.bad_pin() } else { b }.build()
        })
        .collect();
    let old = EngineConfig::default();
    let mut new = EngineConfig::default();
    new.detectors.failed_pin.min_failures = 4;
    let mut engine = Engine::new(old.clone()).unwrap();
    let mut out = Output::default();
    for e in &events[..30] {
        engine.admit(e.clone(), &mut out);
    }
    let mut whole = Engine::restore(new.clone(), &engine.snapshot(0)).unwrap();
    let (mut stage, discarded) = engine.stages[0].reconfigured(&old, &new).unwrap();
    assert_eq!(
        discarded,
        [Discarded {
            detector: "failed_pin".into(),
            reason: DiscardReason::Config
        }]
    );
    let (mut a, mut b) = (Output::default(), Output::default());
    for e in &events[30..] {
        whole.engine.admit(e.clone(), &mut a);
        stage.admit(e.clone(), &mut b);
    }
    whole.engine.drain(&mut a);
    stage.drain(&mut b);
    let card_alerts: Vec<_> = a
        .alerts
        .into_iter()
        .filter(|x| x.subject.kind == KeyKind::Card)
        .collect();
    assert!(!card_alerts.is_empty());
    assert_eq!(card_alerts, b.alerts);
    let mut off = EngineConfig::default();
    off.detectors = off.detectors.only_keys(&[KeyKind::Terminal]);
    let again = Engine::new(old.clone()).unwrap().stages.remove(0);
    assert!(matches!(
        again.reconfigured(&old, &off),
        Err(crate::snapshot::ReconfigureError::StageGone(KeyKind::Card))
    ));
}
