use super::*;
use crate::replay::mapping::MappingFile;
use swipeguard_detectors::{CertType, VisitType};

fn mapper(toml: &str, header: &[&str]) -> Mapper {
    let m = MappingFile::parse(toml, "test").unwrap();
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    Mapper::compile(&m, &header, "f.csv", DecodeLimits::default()).unwrap()
}

#[test]
fn exact_decimals_round_half_away_from_zero() {
    assert_eq!(scaled_decimal("410.45000000000005", 2), Some(41045));
    assert_eq!(scaled_decimal("0.285", 2), Some(29));
    assert_eq!(scaled_decimal("-12.3", 2), Some(-1230));
    assert_eq!(scaled_decimal("¥1,234.50", 2), Some(123450));
    assert_eq!(scaled_decimal("4.1045e2", 2), Some(41045));
    assert_eq!(scaled_decimal("5800", 0), Some(5800));
    assert_eq!(scaled_decimal("1767583300.5", 3), Some(1_767_583_300_500));
    assert_eq!(scaled_decimal("ten", 2), None);
    assert_eq!(scaled_decimal("", 2), None);
    assert_eq!(scaled_decimal("1.2.3", 2), None);
}

#[test]
fn zones() {
    assert_eq!(parse_zone("+08:00"), FixedOffset::east_opt(8 * 3600));
    assert_eq!(parse_zone("Asia/Shanghai"), FixedOffset::east_opt(8 * 3600));
    assert_eq!(parse_zone("UTC"), FixedOffset::east_opt(0));
    assert_eq!(parse_zone("Mars/Olympus"), None);
}

#[test]
fn a_csv_with_the_design_names_needs_no_mapping() {
    let m = mapper(
        "",
        &[
            "event_id",
            "ts",
            "card_id",
            "amount_minor",
            "merchant_id",
            "outcome",
            "region",
        ],
    );
    let tx = m
        .convert(
            &[
                "e1",
                "2026-01-05T14:03:00+08:00",
                "c1",
                "4100",
                "m1",
                "approved",
                "310104",
            ],
            2,
        )
        .unwrap();
    assert_eq!(tx.amount, AmountMinor(4100));
    assert_eq!(tx.region.as_deref(), Some("310104"));
    assert_eq!(Some(tx.ts), parse_rfc3339("2026-01-05T14:03:00+08:00"));
}

#[test]
fn constants_maps_splits_rows_and_labels() {
    let m = mapper(
        r#"
[fields]
event_id = { row_number = true }
ts = { column = "t", format = "epoch_ms" }
card_id = { column = "card" }
amount_minor = { column = "yuan", decimals = 2 }
merchant_id = { constant = "m-1" }
outcome = { constant = "declined" }
decline_reason = { column = "why", split = ";", map = { "Bad PIN" = "bad_pin" } }
channel = { column = "mode", split = "/", map = { "CP" = "chip" } }
label = { column = "flag", map = { "1" = "fraud", "0" = "legit" } }
"#,
        &["t", "card", "yuan", "why", "mode", "flag"],
    );
    let tx = m
        .convert(
            &[
                "1767580200000",
                "c9",
                "410.45000000000005",
                "Retry;Bad PIN",
                "PIN/CP",
                "1",
            ],
            7,
        )
        .unwrap();
    assert_eq!(tx.event_id.as_str(), "f.csv#7");
    assert_eq!(tx.amount, AmountMinor(41045));
    assert!(tx.is_bad_pin());
    assert_eq!(tx.channel, Some(Channel::Chip));
    assert_eq!(tx.label.as_deref(), Some("fraud"));
    assert_eq!(tx.ts, EventTime(1_767_580_200_000));
}

#[test]
fn times_from_patterns_zones_and_several_columns() {
    let m = mapper(
        r#"
[source]
timezone = "+08:00"
[fields]
ts = { columns = ["y", "m", "d", "hm"], join = " ", format = "%Y %m %d %H:%M" }
event_id = { constant = "e" }
card_id = { constant = "c" }
amount_minor = { constant = "1" }
merchant_id = { constant = "m" }
outcome = { constant = "approved" }
"#,
        &["y", "m", "d", "hm"],
    );
    let tx = m.convert(&["2026", "1", "5", "09:30"], 1).unwrap();
    assert_eq!(tx.ts, parse_rfc3339("2026-01-05T09:30:00+08:00").unwrap());
    let epoch_s = mapper(
        "[fields]\nts = { column = \"s\", format = \"epoch_s\" }\nevent_id = { constant = \"e\" }\ncard_id = { constant = \"c\" }\namount_minor = { constant = \"1\" }\nmerchant_id = { constant = \"m\" }\noutcome = { constant = \"approved\" }\n",
        &["s"],
    );
    assert_eq!(
        epoch_s.convert(&["1767580200"], 1).unwrap().ts,
        EventTime(1_767_580_200_000)
    );
}

#[test]
fn rows_that_do_not_fit_are_rejected_with_a_reason() {
    let m = mapper(
        "[fields]\namount_minor = { column = \"amt\", decimals = 2, negative = { column = \"dc\", values = [\"C\"] } }\n",
        &["event_id", "ts", "card_id", "amt", "dc", "merchant_id", "outcome"],
    );
    let reason = |row: &[&str]| m.convert(row, 1).unwrap_err().reason;
    let ok = ["e", "1767580200000", "c", "1.00", "D", "m", "approved"];
    assert!(m.convert(&ok, 1).is_ok());
    assert_eq!(
        reason(&["e", "1767580200000", "c", "1.00", "C", "m", "approved"]),
        RejectReason::NegativeAmount
    );
    assert_eq!(
        reason(&["e", "1767580200000", "c", "one", "D", "m", "approved"]),
        RejectReason::WrongType
    );
    assert_eq!(
        reason(&["e", "yesterday", "c", "1.00", "D", "m", "approved"]),
        RejectReason::BadTimestamp
    );
    assert_eq!(
        reason(&["e", "86400000", "c", "1.00", "D", "m", "approved"]),
        RejectReason::TimestampOutOfRange
    );
    assert_eq!(
        reason(&["", "1767580200000", "c", "1.00", "D", "m", "approved"]),
        RejectReason::MissingField
    );
    assert_eq!(
        reason(&["e", "1767580200000", "c", "1.00", "D", "m", "maybe"]),
        RejectReason::BadValue
    );
    assert_eq!(
        reason(&[
            "e",
            "1767580200000",
            "c",
            "999999999999",
            "D",
            "m",
            "approved"
        ]),
        RejectReason::AbsurdAmount
    );
}

#[test]
fn unknown_columns_are_listed_against_the_header() {
    let m = MappingFile::parse(
        "[fields]\ncard_id = { column = \"CardNumber\" }\nts = { columns = [\"Date\", \"Tme\"] }\n",
        "t",
    )
    .unwrap();
    let header: Vec<String> = ["Card", "Date", "Time"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let err = Mapper::compile(&m, &header, "f", DecodeLimits::default())
        .unwrap_err()
        .to_string();
    assert_eq!(err, "mapping refers to columns not in the header: CardNumber, Tme (the header has: Card, Date, Time)");
}

#[test]
fn bad_mappings_are_refused_whole() {
    for (text, expect) in [
        (
            "[fields]\nnot_a_field = { column = \"x\" }\n",
            "fields.not_a_field: not an event field",
        ),
        (
            "[fields]\ncard_id = { column = \"x\", constant = \"y\" }\n",
            "exactly one of",
        ),
        (
            "[fields]\ncard_id = { column = \"x\", decimals = 2 }\n",
            "decimals applies to amount_minor only",
        ),
        (
            "[fields]\ncard_id = { colum = \"x\" }\n",
            "unknown field `colum`",
        ),
    ] {
        let err = MappingFile::parse(text, "t").unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
    }
}

#[test]
fn a_row_with_item_fields_is_an_event_with_one_item_and_its_visit() {
    let m = mapper(
        r#"
[fields]
event_id = { column = "setl_id" }
ts = { column = "setl_time", format = "%Y-%m-%d %H:%M:%S" }
card_id = { column = "psn_no" }
merchant_id = { column = "fixmedins_code" }
amount_minor = { column = "fee", decimals = 2 }
outcome = { constant = "approved" }
visit_id = { column = "mdtrt_id" }
visit_type = { column = "med_type", map = { "11" = "outpatient", "41" = "pharmacy" } }
cert_type = { column = "cert", map = { "03" = "card" } }
"items.code" = { column = "code" }
items.days_supply = { column = "days" }
items.trace_codes = { column = "trace", split = "," }
items.split = { column = "trdn", map = { "1" = "true", "0" = "false" } }
items.amount_minor = { column = "fee", decimals = 2 }
"#,
        &[
            "setl_id",
            "setl_time",
            "psn_no",
            "fixmedins_code",
            "mdtrt_id",
            "med_type",
            "cert",
            "code",
            "days",
            "trace",
            "trdn",
            "fee",
        ],
    );
    let row = |med_type, cert, days, trace, trdn| {
        [
            "S1",
            "2026-03-01 09:00:00",
            "p1",
            "H1",
            "M1",
            med_type,
            cert,
            "XA10BAA001",
            days,
            trace,
            trdn,
            "31.60",
        ]
    };
    let tx = m
        .convert(&row("11", "03", "30", "8301, 8302,", "1"), 2)
        .unwrap();
    assert_eq!(tx.amount, AmountMinor(3160));
    assert_eq!(tx.visit_id(), Some("M1"));
    assert_eq!(tx.visit_type(), Some(VisitType::Outpatient));
    assert_eq!(tx.cert_type(), Some(CertType::Card));
    let item = &tx.items()[0];
    assert_eq!(tx.items().len(), 1);
    assert_eq!(&*item.code, "XA10BAA001");
    assert_eq!(item.days_supply, Some(30));
    assert_eq!(item.trace_codes, [Text::from("8301"), Text::from("8302")]);
    assert!(item.split);
    assert_eq!(item.amount, Some(AmountMinor(3160)));

    // Codes the maps do not know are `other`; an empty cell is no trace code and no split.
    let tx = m.convert(&row("99", "05", "", "", "0"), 2).unwrap();
    assert_eq!(tx.visit_type(), Some(VisitType::Other));
    assert_eq!(tx.cert_type(), Some(CertType::Other));
    assert!(tx.items()[0].trace_codes.is_empty() && !tx.items()[0].split);

    let reason = |r: [&str; 12]| m.convert(&r, 2).unwrap_err().to_string();
    assert_eq!(
        reason(row("11", "03", "-1", "", "0")),
        "bad_value: items.days_supply"
    );
    assert_eq!(
        reason(row("11", "03", "many", "", "0")),
        "wrong_type: items.days_supply"
    );
    assert_eq!(
        reason(row("11", "03", "30", "", "Y")),
        "bad_value: items.split"
    );
}

#[test]
fn item_fields_are_written_quoted_or_as_a_sub_table() {
    let quoted =
        MappingFile::parse("[fields]\n\"items.code\" = { column = \"c\" }\n", "t").unwrap();
    let dotted = MappingFile::parse("[fields]\nitems.code = { column = \"c\" }\n", "t").unwrap();
    let table = MappingFile::parse("[fields.items]\ncode = { column = \"c\" }\n", "t").unwrap();
    for m in [&quoted, &dotted, &table] {
        assert_eq!(m.fields.keys().collect::<Vec<_>>(), ["items.code"]);
    }
    let err = MappingFile::parse("[fields]\nitems.colour = { column = \"c\" }\n", "t")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fields.items.colour: not an event field"),
        "{err}"
    );
    let err = MappingFile::parse("[source]\ngroup_by = \"setl_id\"\n", "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("group_by"), "{err}");
}

#[test]
fn an_admission_must_name_its_stay() {
    let m = mapper(
        "[fields]\nevent_type = { constant = \"admission\" }\nvisit_id = { column = \"stay\" }\n",
        &[
            "event_id",
            "ts",
            "card_id",
            "account_id",
            "amount_minor",
            "merchant_id",
            "outcome",
            "stay",
        ],
    );
    let row = |stay| {
        [
            "e1",
            "1767580200000",
            "c1",
            "p1",
            "0",
            "H1",
            "approved",
            stay,
        ]
    };
    assert!(m.convert(&row("M1"), 2).is_ok());
    assert_eq!(
        m.convert(&row(""), 2).unwrap_err().to_string(),
        "missing_field: visit_id"
    );
}
