use super::*;
use crate::codec::DecodeLimits;
use crate::replay::convert::FIELDS;
use crate::replay::mapping::MappingFile;

const HEADER: [&str; 9] = [
    "id", "ts", "card", "fen", "shop", "kind", "result", "why", "med",
];

fn mapper(fields: &str) -> Mapper {
    let toml = format!(
        r#"[fields]
event_id = {{ column = "id" }}
ts = {{ column = "ts" }}
card_id = {{ column = "card" }}
amount_minor = {{ column = "fen" }}
merchant_id = {{ column = "shop" }}
outcome = {{ column = "result" }}
{fields}"#
    );
    let m = MappingFile::parse(&toml, "test").unwrap();
    let header: Vec<String> = HEADER.iter().map(|s| s.to_string()).collect();
    Mapper::compile(&m, &header, "f.csv", DecodeLimits::default()).unwrap()
}

/// Converts and tallies `rows` of (kind, result, why, med) cells.
fn tally(m: &Mapper, rows: &[[&str; 4]]) -> Unknowns {
    let mut out = Unknowns::default();
    for (n, [kind, result, why, med]) in rows.iter().enumerate() {
        let id = format!("e{n}");
        let row = [
            id.as_str(),
            "2026-01-05T14:03:00+08:00",
            "c1",
            "100",
            "m1",
            kind,
            result,
            why,
            med,
        ];
        let tx = m.convert(&row, n as u64 + 2).unwrap();
        m.tally(&row, n as u64 + 2, &tx, &mut out);
    }
    out
}

fn field<'a>(u: &'a Unknowns, name: &str) -> &'a FieldTally {
    u.fields().find(|(n, _)| *n == name).unwrap().1
}

#[test]
fn the_counted_fields_are_where_fields_says() {
    for (i, name) in COUNTED {
        assert_eq!(FIELDS[i].0, name);
    }
}

#[test]
fn values_the_map_and_the_vocabulary_do_not_know_are_counted_with_their_raw_text() {
    let m = mapper(
        r#"merchant_kind = { column = "kind", map = { "医院" = "hospital", "超市" = "other" }, default = "other" }"#,
    );
    let u = tally(
        &m,
        &[
            ["药店", "approved", "", ""],
            ["药店", "approved", "", ""],
            ["诊所", "approved", "", ""],
            ["医院", "approved", "", ""],
            // Sent to `other` by the map on purpose: known.
            ["超市", "approved", "", ""],
            // A vocabulary word the map does not list: known.
            ["pharmacy", "approved", "", ""],
            ["other", "approved", "", ""],
            // Empty: takes the default, a missing value, not counted at all.
            ["", "approved", "", ""],
        ],
    );
    let k = field(&u, "merchant_kind");
    assert_eq!((k.seen, k.unknown, k.rest, k.mapped), (7, 3, 0, true));
    assert_eq!(k.top(), vec![("药店", 2), ("诊所", 1)]);
}

#[test]
fn decline_reasons_count_on_declined_events_only_and_split_cells_by_their_parts() {
    let m = mapper(
        r#"decline_reason = { column = "why", split = ";", map = { "PIN" = "bad_pin" } }
visit_type = { column = "med" }"#,
    );
    let u = tally(
        &m,
        &[
            // The result word in the reason column of approved rows: not a reason.
            ["", "approved", "成功", "11"],
            ["", "approved", "成功", "outpatient"],
            ["", "declined", "x;PIN", "11"],
            ["", "declined", "余额不足", ""],
        ],
    );
    let r = field(&u, "decline_reason");
    assert_eq!((r.seen, r.unknown), (2, 1));
    assert_eq!(r.top(), vec![("余额不足", 1)]);
    // No map: the vocabulary alone decides.
    let v = field(&u, "visit_type");
    assert_eq!((v.seen, v.unknown, v.mapped), (3, 2, false));
    assert_eq!(v.top(), vec![("11", 2)]);
    assert_eq!(field(&u, "merchant_kind").seen, 0);
}

#[test]
fn memory_is_bounded_and_values_are_cut() {
    let mut t = FieldTally::default();
    for i in 0..KEPT_VALUES + 10 {
        t.record(&format!("v{i:03}"), true);
    }
    t.record("v000", true);
    t.record(&"长".repeat(500), true);
    assert_eq!(t.values.len(), KEPT_VALUES);
    assert_eq!(t.rest, 11);
    assert_eq!(t.unknown, KEPT_VALUES as u64 + 12);
    assert_eq!(t.top()[0], ("v000", 2));
    let mut long = FieldTally::default();
    long.record(&"长".repeat(500), true);
    let (kept, _) = long.top()[0];
    assert_eq!(kept.chars().count(), KEPT_CHARS + 1);
    assert!(kept.ends_with('…'));
}

fn tally_of(values: &[(&str, u64)]) -> FieldTally {
    let mut t = FieldTally::default();
    for (v, n) in values {
        for _ in 0..*n {
            t.record(v, true);
        }
        t.record("known", false);
    }
    t
}

#[test]
fn merging_sums_and_does_not_depend_on_the_order() {
    let a = tally_of(&[("药店", 5), ("诊所", 1)]);
    let b = tally_of(&[("诊所", 3), ("卫生院", 3)]);
    let mut ab = a.clone();
    ab.merge(b.clone());
    let mut ba = b;
    ba.merge(a);
    assert_eq!(ab, ba);
    assert_eq!((ab.seen, ab.unknown), (16, 12));
    assert_eq!(ab.top(), vec![("药店", 5), ("诊所", 4), ("卫生院", 3)]);
}

#[test]
fn merging_past_the_cap_keeps_the_most_frequent_whichever_comes_first() {
    // Two files of 64 distinct values each, 32 of them shared: 96 in all, 32 twice as frequent.
    let distinct = |values: std::ops::Range<usize>| {
        let mut t = FieldTally::default();
        for i in values {
            t.record(&format!("a{i:02}"), true);
        }
        t
    };
    let (a, b) = (distinct(0..64), distinct(32..96));
    let mut ab = a.clone();
    ab.merge(b.clone());
    let mut ba = b;
    ba.merge(a);
    assert_eq!(ab, ba);
    assert_eq!(ab.values.len(), KEPT_VALUES);
    assert_eq!(ab.values.values().sum::<u64>() + ab.rest, ab.unknown);
    // The shared values (count 2) first, then the smallest of the rest by value.
    let top = ab.top();
    assert_eq!(top[0], ("a32", 2));
    assert_eq!(top[31], ("a63", 2));
    assert_eq!(top[32], ("a00", 1));
    assert_eq!(ab.rest, 32);
}

#[test]
fn unknowns_merge_field_by_field() {
    let m = mapper(r#"merchant_kind = { column = "kind", map = { "医院" = "hospital" } }"#);
    let mut total = tally(&m, &[["药店", "approved", "", ""]]);
    total.merge(tally(
        &m,
        &[["药店", "approved", "", ""], ["医院", "approved", "", ""]],
    ));
    let k = field(&total, "merchant_kind");
    assert_eq!((k.seen, k.unknown, k.mapped), (3, 2, true));
    assert_eq!(k.top(), vec![("药店", 2)]);
}

#[test]
fn with_card_hashing_on_values_are_counted_but_not_kept() {
    let cfg = crate::config::CardHashConfig {
        enabled: true,
        key_env: Some("KEY".into()),
        ..Default::default()
    };
    let hasher =
        crate::ingest::CardHasher::from_config(&cfg, &|_| Some("0123456789abcdef0123".into()))
            .unwrap();
    let limits = DecodeLimits {
        hasher: hasher.map(std::sync::Arc::new),
        ..DecodeLimits::default()
    };
    // The card number column read as the merchant kind by mistake.
    let m = MappingFile::parse(
        r#"[fields]
event_id = { column = "id" }
card_id = { column = "card" }
amount_minor = { column = "fen" }
merchant_id = { column = "shop" }
merchant_kind = { column = "card" }
outcome = { constant = "approved" }"#,
        "test",
    )
    .unwrap();
    let header: Vec<String> = HEADER.iter().map(|s| s.to_string()).collect();
    let m = Mapper::compile(&m, &header, "f.csv", limits).unwrap();
    let row = [
        "e1",
        "2026-01-05T14:03:00+08:00",
        "6222021234567890",
        "100",
        "m1",
        "",
        "",
        "",
        "",
    ];
    let mut u = Unknowns::default();
    let tx = m.convert_tallied(&row, 2, &mut u).unwrap();
    assert_ne!(tx.card_id.as_str(), "6222021234567890", "hashed");
    let k = field(&u, "merchant_kind");
    assert_eq!((k.seen, k.unknown, k.rest, k.withheld), (1, 1, 1, true));
    assert!(k.values.is_empty());
}

#[test]
fn the_summary_hints_from_half_on_and_names_the_words_when_there_is_no_map() {
    use crate::replay::summary::Summary;
    let mut summary = Summary::default();
    let visit = summary.unknown.field_mut("visit_type").unwrap();
    for v in ["11", "11", "outpatient", "chronic"] {
        visit.record(v, v == "11");
    }
    let channel = summary.unknown.field_mut("channel").unwrap();
    channel.mapped = true;
    for i in 0..100 {
        channel.record(&format!("c{}", i % 7), i < 49);
    }
    let cert = summary.unknown.field_mut("cert_type").unwrap();
    for i in 0..8 {
        cert.record_withheld(i < 6);
    }
    let kind = summary.unknown.field_mut("merchant_kind").unwrap();
    kind.mapped = true;
    for (v, n) in [
        ("a", 9),
        ("b", 8),
        ("c", 7),
        ("d", 6),
        ("e", 5),
        ("f", 4),
        ("g", 1),
    ] {
        for _ in 0..n {
            kind.record(v, true);
        }
    }
    assert_eq!(
        summary.mapping_hints(),
        [
            r#"  mapping: 100% of merchant_kind values were not in its map and became "other"; most frequent: "a" 9, "b" 8, "c" 7, "d" 6, "e" 5, … 5 more — add them to [fields.merchant_kind.map]"#,
            r#"  mapping: 50% of visit_type values are not visit_type words (outpatient, emergency, chronic, inpatient, pharmacy, other) and became "other"; most frequent: "11" 2 — map them to those words in [fields.visit_type.map]"#,
            r#"  mapping: 75% of cert_type values are not cert_type words (card, e_voucher, id_card, other) and became "other"; not shown (card hashing is on and the column may hold card numbers) — map them to those words in [fields.cert_type.map]"#,
        ]
    );
    assert!(summary.to_string().contains(&summary.mapping_hints()[1]));
}
