use super::*;
use crate::replay::convert::Mapper;
use crate::replay::mapping::MappingFile;

const MAPPING: &str = r#"
[source]
group_by = ["setl"]

[fields]
event_id = { column = "setl" }
ts = { column = "time", format = "%Y-%m-%d %H:%M:%S" }
card_id = { column = "person" }
merchant_id = { column = "site" }
outcome = { constant = "approved" }
amount_minor = { column = "fee", decimals = 2 }
items.code = { column = "code" }
items.quantity = { column = "cnt" }
items.trace_codes = { column = "trace", split = "," }
items.split = { column = "open_box", map = { "1" = "true", "0" = "false" } }
items.amount_minor = { column = "fee", decimals = 2 }
"#;

const HEADER: [&str; 9] = [
    "setl", "time", "person", "site", "code", "cnt", "trace", "open_box", "fee",
];

fn mapper_of(text: &str, limits: DecodeLimits) -> Mapper {
    let m = MappingFile::parse(text, "t").unwrap();
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    Mapper::compile(&m, &header, "f.csv", limits).unwrap()
}

fn row<'a>(
    setl: &'a str,
    code: &'a str,
    cnt: &'a str,
    trace: &'a str,
    fee: &'a str,
) -> [&'a str; 9] {
    [
        setl,
        "2026-03-01 10:00:00",
        "p1",
        "H1",
        code,
        cnt,
        trace,
        "0",
        fee,
    ]
}

/// Folds `rows` (line numbers from 2, as under a header) and closes the last group.
fn fold(m: &Mapper, limits: DecodeLimits, rows: &[[&str; 9]]) -> Vec<Folded> {
    let mut g = Grouper::new(limits);
    let mut out = VecDeque::new();
    for (i, r) in rows.iter().enumerate() {
        let line = i as u64 + 2;
        g.push(
            m.group_key(r),
            line,
            r.join(",").as_bytes(),
            || m.convert(r, line),
            || m.line(r, line),
            &mut out,
        );
    }
    g.finish(&mut out);
    out.into()
}

fn summary(out: &[Folded]) -> Vec<String> {
    out.iter()
        .map(|f| match f {
            Folded::Event { line, event } => format!(
                "event@{line} {} {} [{}]",
                event.event_id.as_str(),
                event.amount.0,
                event
                    .items()
                    .iter()
                    .map(|i| format!(
                        "{}x{}:{}",
                        i.code,
                        i.trace_codes.len(),
                        i.amount.map_or(0, |a| a.0)
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Folded::Reject { line, rejected, .. } => format!("reject@{line} {rejected}"),
        })
        .collect()
}

#[test]
fn consecutive_rows_of_a_key_fold_into_one_event_with_the_amounts_summed() {
    let m = mapper_of(MAPPING, DecodeLimits::default());
    let out = fold(
        &m,
        DecodeLimits::default(),
        &[
            row("S1", "XA10BAA001", "1", "83001,83002", "12.30"),
            row("S1", "001102000010000", "1", "", "5.00"),
            row("S2", "XC09AAA001", "2", "83003", "0.07"),
        ],
    );
    assert_eq!(
        summary(&out),
        [
            "event@2 S1 1730 [XA10BAA001x2:1230 001102000010000x0:500]",
            "event@4 S2 7 [XC09AAA001x1:7]",
        ]
    );
}

#[test]
fn group_amount_first_keeps_the_first_rows_amount() {
    let m = mapper_of(MAPPING, DecodeLimits::default());
    let text = MAPPING.replace(
        "group_by = [\"setl\"]",
        "group_by = [\"setl\"]\ngroup_amount = \"first\"",
    );
    let m_first = mapper_of(&text, DecodeLimits::default());
    let rows = [
        row("S1", "A", "1", "", "10.00"),
        row("S1", "B", "1", "", "10.00"),
    ];
    assert_eq!(
        summary(&fold(&m, DecodeLimits::default(), &rows))[0],
        "event@2 S1 2000 [Ax0:1000 Bx0:1000]"
    );
    assert_eq!(
        summary(&fold(&m_first, DecodeLimits::default(), &rows))[0],
        "event@2 S1 1000 [Ax0:1000 Bx0:1000]"
    );
}

#[test]
fn a_key_seen_again_later_begins_a_new_event() {
    let m = mapper_of(MAPPING, DecodeLimits::default());
    let out = fold(
        &m,
        DecodeLimits::default(),
        &[
            row("S1", "A", "1", "", "1.00"),
            row("S2", "B", "1", "", "1.00"),
            row("S1", "C", "1", "", "1.00"),
        ],
    );
    assert_eq!(
        summary(&out),
        [
            "event@2 S1 100 [Ax0:100]",
            "event@3 S2 100 [Bx0:100]",
            "event@4 S1 100 [Cx0:100]"
        ]
    );
}

#[test]
fn one_bad_line_refuses_the_group_and_every_row_of_it_is_a_reject() {
    let m = mapper_of(MAPPING, DecodeLimits::default());
    let out = fold(
        &m,
        DecodeLimits::default(),
        &[
            row("S1", "A", "1", "", "1.00"),
            row("S1", "B", "-2", "", "1.00"),
            row("S1", "C", "1", "", "1.00"),
            row("S2", "D", "1", "", "1.00"),
        ],
    );
    assert_eq!(
        summary(&out),
        [
            "reject@2 bad_value: items.quantity (at line 3, same group)",
            "reject@3 bad_value: items.quantity",
            "reject@4 bad_value: items.quantity (at line 3, same group)",
            "event@5 S2 100 [Dx0:100]",
        ]
    );
    // Every raw row is kept for the rejects file.
    let raws: Vec<&[u8]> = out
        .iter()
        .filter_map(|f| match f {
            Folded::Reject { raw, .. } => Some(raw.as_slice()),
            Folded::Event { .. } => None,
        })
        .collect();
    assert!(raws[0].starts_with(b"S1,") && raws[0].ends_with(b",A,1,,0,1.00"));
    assert!(raws[2].ends_with(b",C,1,,0,1.00"));
}

#[test]
fn a_bad_first_row_refuses_the_group() {
    let m = mapper_of(MAPPING, DecodeLimits::default());
    let mut bad = row("S1", "A", "1", "", "1.00");
    bad[1] = "yesterday";
    let out = fold(
        &m,
        DecodeLimits::default(),
        &[bad, row("S1", "B", "1", "", "1.00")],
    );
    assert_eq!(
        summary(&out),
        [
            "reject@2 bad_timestamp: ts",
            "reject@3 bad_timestamp: ts (at line 2, same group)"
        ]
    );
}

#[test]
fn a_group_longer_than_max_items_is_refused_like_a_long_items_array() {
    let limits = DecodeLimits {
        max_items: 2,
        ..DecodeLimits::default()
    };
    let m = mapper_of(MAPPING, limits.clone());
    let out = fold(
        &m,
        limits,
        &[
            row("S1", "A", "1", "", "1.00"),
            row("S1", "B", "1", "", "1.00"),
            row("S1", "C", "1", "", "1.00"),
            row("S1", "D", "1", "", "1.00"),
            row("S2", "E", "1", "", "1.00"),
        ],
    );
    assert_eq!(
        summary(&out),
        [
            "reject@2 bad_value: items: too many (at line 4, same group)",
            "reject@3 bad_value: items: too many (at line 4, same group)",
            "reject@4 bad_value: items: too many",
            "reject@5 bad_value: items: too many (at line 4, same group)",
            "event@6 S2 100 [Ex0:100]",
        ]
    );
}

#[test]
fn too_many_trace_codes_or_too_large_a_sum_refuse_the_group() {
    let limits = DecodeLimits {
        max_trace_codes: 3,
        max_amount_minor: 1_500,
        ..DecodeLimits::default()
    };
    let m = mapper_of(MAPPING, limits.clone());
    let codes = fold(
        &m,
        limits.clone(),
        &[
            row("S1", "A", "1", "1,2", "1.00"),
            row("S1", "B", "1", "3,4", "1.00"),
        ],
    );
    assert_eq!(
        summary(&codes)[1],
        "reject@3 bad_value: items.trace_codes: too many"
    );
    let sum = fold(
        &m,
        limits,
        &[
            row("S1", "A", "1", "", "10.00"),
            row("S1", "B", "1", "", "10.00"),
        ],
    );
    assert_eq!(summary(&sum)[1], "reject@3 absurd_amount: amount_minor");
}

/// Rows of three settlements, S2's second row not UTF-8, read through `mapping`.
fn three_settlements(mapping: &str) -> crate::replay::input::Rows {
    use crate::replay::input::{open_reader, Format, Rows};
    let mut csv = HEADER.join(",").into_bytes();
    csv.extend_from_slice(
        b"\nS1,2026-03-01 10:00:00,p1,H1,A,1,,0,1.00\
          \nS1,2026-03-01 10:00:00,p1,H1,B,1,,0,2.00\
          \nS2,2026-03-01 11:00:00,p2,H1,C,1,,0,1.00\
          \nS2,2026-03-01 11:00:00,p2,H1,\xff,1,,0,1.00\
          \nS3,2026-03-01 12:00:00,p3,H1,D,1,,0,1.00\n",
    );
    let size = csv.len() as u64;
    let input = open_reader("f.csv", Box::new(std::io::Cursor::new(csv)), size).unwrap();
    let mapping = MappingFile::parse(mapping, "t").unwrap();
    Rows::new(
        input,
        Format::Csv { delimiter: b',' },
        Some(&mapping),
        DecodeLimits::default(),
    )
    .unwrap()
}

#[test]
fn rows_read_from_a_file_fold_and_an_unreadable_row_spoils_its_group() {
    let mut rows = three_settlements(MAPPING);
    let mut seen = Vec::new();
    let mut folded = 0;
    while let Some((line, result)) = rows.next_row().unwrap() {
        folded += rows.take_folded();
        seen.push(match result {
            Ok(tx) => format!("{line} {} {}", tx.event_id.as_str(), tx.items().len()),
            Err(r) => format!("{line} {r} {}", String::from_utf8_lossy(rows.raw())),
        });
    }
    assert_eq!(
        seen,
        [
            "2 S1 2",
            "4 not_utf8: row (at line 5, same group) S2,2026-03-01 11:00:00,p2,H1,C,1,,0,1.00",
            "5 not_utf8: row S2,2026-03-01 11:00:00,p2,H1,\u{fffd},1,,0,1.00",
            "6 S3 1",
        ]
    );
    assert_eq!(folded, 1, "row 3 went into S1's event");
}

#[test]
fn unknown_values_are_tallied_once_per_settlement_from_its_first_row() {
    // The site code read as a merchant kind: a code no vocabulary knows.
    let mut rows = three_settlements(&format!(
        "{MAPPING}merchant_kind = {{ column = \"site\" }}\n"
    ));
    while rows.next_row().unwrap().is_some() {}
    let unknown = rows.take_unknown();
    let (_, kind) = unknown
        .fields()
        .find(|(f, _)| *f == "merchant_kind")
        .unwrap();
    // S1, S2 (its first row converted before its second spoiled it) and S3.
    assert_eq!((kind.seen, kind.unknown), (3, 3));
    assert_eq!(kind.top(), vec![("H1", 3)]);
}
