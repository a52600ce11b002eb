use super::*;

fn run(opts: &SimOptions) -> (Vec<u8>, SimStats) {
    let mut out = Vec::new();
    let stats = simulate(opts, &mut out).unwrap();
    (out, stats)
}

#[test]
fn the_same_seed_gives_byte_identical_output() {
    let opts = SimOptions {
        cards: 300,
        days: 10,
        seed: 42,
        ..SimOptions::default()
    };
    let (a, sa) = run(&opts);
    let (b, _) = run(&opts);
    assert_eq!(a, b);
    let (c, _) = run(&SimOptions {
        seed: 43,
        ..opts.clone()
    });
    assert_ne!(a, c);
    assert_eq!(
        sa.events as usize,
        a.iter().filter(|&&b| b == b'\n').count()
    );
}

#[test]
fn output_is_valid_sorted_events_with_labels() {
    let (out, stats) = run(&SimOptions {
        cards: 500,
        days: 15,
        seed: 3,
        fraud_share: 0.2,
        ..SimOptions::default()
    });
    let mut last = None;
    let mut ids = std::collections::HashSet::new();
    for line in std::str::from_utf8(&out).unwrap().lines() {
        let tx = crate::codec::decode_event(line.as_bytes(), &Default::default()).unwrap();
        let key = (tx.ts, tx.event_id.clone());
        assert!(last.as_ref().is_none_or(|l| *l <= key));
        assert!(
            ids.insert(tx.event_id.clone()),
            "duplicate id {}",
            tx.event_id
        );
        assert!(tx.label.is_some());
        last = Some(key);
    }
    assert_eq!(
        stats.scenarios.len(),
        Scenario::ALL.len(),
        "{:?}",
        stats.scenarios
    );
}

#[test]
fn no_scenarios_means_only_legitimate_labels() {
    let (out, stats) = run(&SimOptions {
        cards: 200,
        days: 10,
        scenarios: Vec::new(),
        ..SimOptions::default()
    });
    assert!(stats.scenarios.is_empty());
    assert!(std::str::from_utf8(&out)
        .unwrap()
        .lines()
        .all(|l| l.contains(r#""label":"legit""#)));
}
