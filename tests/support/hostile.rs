//! The malformed-input corpus: every way an event can be wrong, with the reason it must be
//! refused for, between good events that must all be processed.

/// One message of the corpus and the reason it must be refused for (`None`: a good event).
pub struct Case {
    pub bytes: Vec<u8>,
    pub reason: Option<&'static str>,
}

const T0: i64 = 1_767_580_200_000; // 2026-01-05T02:30:00Z

fn good(n: i64) -> String {
    format!(
        r#"{{"event_id":"g{n:03}","ts":{},"card_id":"card-{}","amount_minor":{},"merchant_id":"m1","outcome":"approved"}}"#,
        T0 + n * 1000,
        n % 7,
        1000 + n
    )
}

/// A good event's fields with one change: `field` set to the raw JSON `value` (or removed).
fn with(n: i64, field: &str, value: Option<&str>) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&good(n)).unwrap();
    match value {
        Some(raw) => {
            // Keep `raw` verbatim (it may not be valid JSON on its own): splice it in as text.
            v.insert(
                field.to_string(),
                serde_json::Value::String("\u{0}SPLICE\u{0}".into()),
            );
            let text = serde_json::to_string(&v).unwrap();
            return text.replace("\"\\u0000SPLICE\\u0000\"", raw);
        }
        None => {
            v.remove(field);
        }
    }
    serde_json::to_string(&v).unwrap()
}

/// The corpus, in order. Good events are numbered by their position so that event time only
/// moves forward and none of them is late.
pub fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut n = 0i64;
    fn next_good(cases: &mut Vec<Case>, n: &mut i64) -> i64 {
        *n += 1;
        cases.push(Case {
            bytes: good(*n).into_bytes(),
            reason: None,
        });
        *n
    }
    let bad: Vec<(Vec<u8>, &'static str)> = {
        let mut b: Vec<(Vec<u8>, &'static str)> = Vec::new();
        let s = |t: &str| t.as_bytes().to_vec();
        // Bytes that are not UTF-8.
        b.push((vec![0xff, 0xfe, 0xfd], "not_utf8"));
        b.push((b"{\"event_id\":\"\xc3\x28\",\"ts\":1}".to_vec(), "not_utf8"));
        b.push((
            [b"{\"card_id\":\"".as_slice(), &[0xe2, 0x82], b"\"}"].concat(),
            "not_utf8",
        ));
        // Bad bytes hidden in a field swipeguard otherwise ignores still refuse the message:
        // what goes on to the alerts topic and the dead letters is always valid text.
        b.push((
            [
                b"{\"event_id\":\"u1\",\"ts\":\"2026-01-01T00:00:00Z\",\"card_id\":\"c\","
                    .as_slice(),
                b"\"amount_minor\":1,\"merchant_id\":\"m\",\"outcome\":\"approved\",\"note\":\"",
                &[0xc0, 0xaf],
                b"\"}",
            ]
            .concat(),
            "not_utf8",
        ));
        // Not JSON.
        for t in [
            "not json",
            "{",
            "{\"a\":}",
            "{'single':'quotes'}",
            "{\"event_id\":\"a\",}",
            "NaN",
            "{\"ts\": 1 2}",
        ] {
            b.push((s(t), "not_json"));
        }
        // JSON, but not an object.
        for t in ["[]", "[1,2,3]", "42", "\"a string\"", "null", "true"] {
            b.push((s(t), "not_object"));
        }
        // Required fields missing, null or empty.
        for f in [
            "event_id",
            "ts",
            "card_id",
            "amount_minor",
            "merchant_id",
            "outcome",
        ] {
            b.push((with(0, f, None).into_bytes(), "missing_field"));
        }
        b.push((
            with(0, "card_id", Some("null")).into_bytes(),
            "missing_field",
        ));
        b.push((
            with(0, "merchant_id", Some("\"\"")).into_bytes(),
            "missing_field",
        ));
        // Wrong JSON types.
        for (f, v) in [
            ("amount_minor", "\"100\""),
            ("amount_minor", "1.5"),
            ("card_id", "{\"x\":1}"),
            ("outcome", "1"),
            ("merchant_kind", "5"),
            ("lat", "\"north\""),
            ("channel", "true"),
            ("region", "[1]"),
        ] {
            b.push((with(0, f, Some(v)).into_bytes(), "wrong_type"));
        }
        // Values outside their vocabulary or range.
        b.push((
            with(0, "outcome", Some("\"maybe\"")).into_bytes(),
            "bad_value",
        ));
        b.push((
            with(0, "geo", None)
                .replace("\"outcome\"", "\"lat\":91,\"lon\":0,\"outcome\"")
                .into_bytes(),
            "bad_value",
        ));
        b.push((
            with(0, "geo", None)
                .replace("\"outcome\"", "\"lat\":30,\"lon\":181,\"outcome\"")
                .into_bytes(),
            "bad_value",
        ));
        // Amounts.
        b.push((
            with(0, "amount_minor", Some("-1")).into_bytes(),
            "negative_amount",
        ));
        b.push((
            with(0, "amount_minor", Some("-100000")).into_bytes(),
            "negative_amount",
        ));
        b.push((
            with(0, "amount_minor", Some("100000000000")).into_bytes(),
            "absurd_amount",
        ));
        b.push((
            with(0, "amount_minor", Some("18446744073709551615")).into_bytes(),
            "absurd_amount",
        ));
        // Timestamps that do not parse, or lie decades away.
        for v in [
            "\"yesterday\"",
            "\"2026-13-45T00:00:00Z\"",
            "true",
            "{}",
            "\"2026-01-05\"",
        ] {
            b.push((with(0, "ts", Some(v)).into_bytes(), "bad_timestamp"));
        }
        for v in [
            "0",
            "1767580200",
            "\"1900-01-01T00:00:00Z\"",
            "\"2200-01-01T00:00:00Z\"",
            "-5",
        ] {
            b.push((
                with(0, "ts", Some(v)).into_bytes(),
                "timestamp_out_of_range",
            ));
        }
        // Too big, too deep.
        b.push((
            with(0, "padding", Some(&format!("\"{}\"", "x".repeat(100_000)))).into_bytes(),
            "oversized",
        ));
        b.push((
            with(
                0,
                "nested",
                Some(&format!("{}{}", "[".repeat(200), "]".repeat(200))),
            )
            .into_bytes(),
            "too_deep",
        ));
        b.push((
            with(
                0,
                "nested",
                Some(&format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100))),
            )
            .into_bytes(),
            "too_deep",
        ));
        // Settlement fields (DESIGN §12) that are malformed, and items past the limits.
        for (f, v, reason) in [
            ("items", "{\"code\":\"x\"}", "bad_value"),
            ("items", "[{\"group\":\"no code\"}]", "bad_value"),
            ("items", "[{\"code\":\"x\",\"quantity\":-2}]", "bad_value"),
            (
                "items",
                "[{\"code\":\"x\",\"days_supply\":-30}]",
                "bad_value",
            ),
            (
                "items",
                "[{\"code\":\"x\",\"days_supply\":\"a month\"}]",
                "wrong_type",
            ),
            (
                "items",
                "[{\"code\":\"x\",\"amount_minor\":-1}]",
                "negative_amount",
            ),
            (
                "items",
                "[{\"code\":\"x\",\"trace_codes\":\"8100\"}]",
                "bad_value",
            ),
            ("event_type", "\"transfer\"", "bad_value"),
            ("event_type", "\"admission\"", "missing_field"),
            ("cert_type", "42", "wrong_type"),
            ("outcome", "\"refund\"", "bad_value"),
        ] {
            b.push((with(0, f, Some(v)).into_bytes(), reason));
        }
        let many_items = format!("[{}]", vec!["{\"code\":\"x\"}"; 501].join(","));
        b.push((
            with(0, "items", Some(&many_items)).into_bytes(),
            "bad_value",
        ));
        let many_codes = format!(
            "[{{\"code\":\"x\",\"trace_codes\":[{}]}}]",
            vec!["\"81\""; 1001].join(",")
        );
        b.push((
            with(0, "items", Some(&many_codes)).into_bytes(),
            "bad_value",
        ));
        b
    };
    for (bytes, reason) in bad {
        next_good(&mut cases, &mut n);
        cases.push(Case {
            bytes,
            reason: Some(reason),
        });
    }
    // A duplicate: the same event twice in a row.
    let last = next_good(&mut cases, &mut n);
    cases.push(Case {
        bytes: good(last).into_bytes(),
        reason: Some("duplicate"),
    });
    // A late one: two hours older than everything so far.
    let mut late: serde_json::Value = serde_json::from_str(&good(0)).unwrap();
    late["event_id"] = serde_json::json!("late-1");
    late["ts"] = serde_json::json!(T0 - 7_200_000);
    cases.push(Case {
        bytes: late.to_string().into_bytes(),
        reason: Some("late"),
    });
    // Good events that look odd: unknown fields, numeric codes, an offset time, unknown kinds.
    for (f, v) in [
        ("unknown_field", "{\"deep\":[1,2]}"),
        ("region", "310104"),
        ("merchant_kind", "\"spa\""),
        ("visit_type", "\"home_care\""),
        (
            "items",
            "[{\"code\":\"XA10\",\"days_supply\":30,\"trace_codes\":[\"8100\"],\"split\":\"1\"}]",
        ),
    ] {
        n += 1;
        cases.push(Case {
            bytes: with(n, f, Some(v)).into_bytes(),
            reason: None,
        });
    }
    next_good(&mut cases, &mut n);
    cases
}

pub fn expected_reasons(cases: &[Case]) -> Vec<&'static str> {
    let mut r: Vec<&'static str> = cases.iter().filter_map(|c| c.reason).collect();
    r.sort_unstable();
    r
}
