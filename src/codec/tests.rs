use super::*;

fn decode(s: &str) -> Result<Transaction, Rejected> {
    decode_event(s.as_bytes(), &DecodeLimits::default())
}

fn reason(s: &str) -> RejectReason {
    match decode(s) {
        Ok(tx) => panic!("accepted {s}: {tx:?}"),
        Err(r) => r.reason,
    }
}

const GOOD: &str = r#"{"event_id":"e1","ts":"2026-11-23T10:00:00+08:00","card_id":"c1","amount_minor":4500,"merchant_id":"m1","merchant_kind":"pharmacy","region":310101,"lat":31.23,"lon":121.47,"channel":"chip","outcome":"declined","decline_reason":"bad_pin","label":"fraud","extra":{"nested":[1,2]}}"#;

#[test]
fn decodes_a_full_event_and_ignores_unknown_fields() {
    let tx = decode(GOOD).unwrap();
    assert_eq!(tx.event_id.as_str(), "e1");
    assert_eq!(tx.ts, EventTime(1_795_399_200_000));
    assert_eq!(tx.amount, AmountMinor(4500));
    assert_eq!(tx.region.as_deref(), Some("310101"));
    assert_eq!(tx.merchant_kind, Some(MerchantKind::Pharmacy));
    assert!(tx.is_bad_pin());
    assert_eq!(
        tx.geo,
        Some(GeoPoint {
            lat: 31.23,
            lon: 121.47
        })
    );
    assert_eq!(tx.label.as_deref(), Some("fraud"));
}

#[test]
fn epoch_millis_and_unknown_codes_are_accepted() {
    let tx = decode(r#"{"event_id":"e","ts":1795399200000,"card_id":"c","amount_minor":0,"merchant_id":"m","outcome":"approved","channel":"nfc","merchant_kind":"spa"}"#).unwrap();
    assert_eq!(tx.ts, EventTime(1_795_399_200_000));
    assert_eq!(tx.channel, Some(Channel::Other));
    assert_eq!(tx.merchant_kind, Some(MerchantKind::Other));
}

#[test]
fn every_reason_is_reachable() {
    let base =
        r#""event_id":"e","ts":1795399200000,"card_id":"c","merchant_id":"m","outcome":"approved""#;
    let with = |extra: &str| format!("{{{base},{extra}}}");
    assert_eq!(reason("not json"), RejectReason::NotJson);
    assert_eq!(reason("[1,2]"), RejectReason::NotObject);
    assert_eq!(reason("42"), RejectReason::NotObject);
    assert_eq!(reason(&format!("{{{base}}}")), RejectReason::MissingField);
    assert_eq!(
        reason(&with(r#""amount_minor":-1"#)),
        RejectReason::NegativeAmount
    );
    assert_eq!(
        reason(&with(r#""amount_minor":12.5"#)),
        RejectReason::WrongType
    );
    assert_eq!(
        reason(&with(r#""amount_minor":"12""#)),
        RejectReason::WrongType
    );
    assert_eq!(
        reason(&with(r#""amount_minor":99999999999999"#)),
        RejectReason::AbsurdAmount
    );
    let bad_ts = r#"{"event_id":"e","ts":"yesterday","card_id":"c","merchant_id":"m","outcome":"approved","amount_minor":1}"#;
    assert_eq!(reason(bad_ts), RejectReason::BadTimestamp);
    let old_ts = r#"{"event_id":"e","ts":"1970-01-02T00:00:00Z","card_id":"c","merchant_id":"m","outcome":"approved","amount_minor":1}"#;
    assert_eq!(reason(old_ts), RejectReason::TimestampOutOfRange);
    let bad_outcome = r#"{"event_id":"e","ts":1795399200000,"card_id":"c","merchant_id":"m","outcome":"maybe","amount_minor":1}"#;
    assert_eq!(reason(bad_outcome), RejectReason::BadValue);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(reason(&deep), RejectReason::TooDeep);
    assert_eq!(
        decode_event(&[b'{', 0xff, b'}'], &DecodeLimits::default())
            .unwrap_err()
            .reason,
        RejectReason::NotUtf8
    );
    let small = DecodeLimits {
        max_bytes: 10,
        ..DecodeLimits::default()
    };
    assert_eq!(
        decode_event(GOOD.as_bytes(), &small).unwrap_err().reason,
        RejectReason::Oversized
    );
}

#[test]
fn a_missing_field_is_named() {
    let r = decode(r#"{"event_id":"e","ts":1795399200000,"merchant_id":"m","outcome":"approved","amount_minor":1}"#)
        .unwrap_err();
    assert_eq!(r.to_string(), "missing_field: card_id");
}

#[test]
fn events_round_trip_through_the_encoder() {
    let tx = decode(GOOD).unwrap();
    let mut line = Vec::new();
    crate::encode::encode_event(&tx, &mut line);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(
        decode_event(&line[..line.len() - 1], &DecodeLimits::default()).unwrap(),
        tx
    );
}

/// A pharmacy settlement with every §12 field.
const SETTLEMENT: &str = r#"{"event_id":"s1","ts":"2026-11-23T04:52:00Z","card_id":"c1","account_id":"p1","amount_minor":12000,"merchant_id":"ph1","outcome":"approved","visit_type":"pharmacy","visit_id":"v1","cert_type":"e_voucher","diagnosis":"E11.9","items":[{"code":"XA10BAA","group":"metformin","quantity":2,"days_supply":30,"trace_codes":["81000001","81000002"],"split":false,"amount_minor":8000},{"code":"XN02BE","quantity":0.5,"split":"1"}]}"#;

#[test]
fn settlement_fields_and_items_are_decoded() {
    let tx = decode(SETTLEMENT).unwrap();
    let s = tx.settlement.as_deref().unwrap();
    assert_eq!(s.event_type, EventType::Settlement);
    assert_eq!(s.visit_type, Some(VisitType::Pharmacy));
    assert_eq!(s.visit_id.as_deref(), Some("v1"));
    assert_eq!(s.cert_type, Some(CertType::EVoucher));
    assert_eq!(s.diagnosis.as_deref(), Some("E11.9"));
    assert_eq!(s.items.len(), 2);
    let first = &s.items[0];
    assert_eq!(first.supply_key(), "metformin");
    assert_eq!(first.days_supply, Some(30));
    assert_eq!(first.trace_codes, ["81000001", "81000002"]);
    assert_eq!(first.amount, Some(AmountMinor(8000)));
    assert!(!first.split);
    assert_eq!(s.items[1].supply_key(), "XN02BE");
    assert_eq!(s.items[1].quantity, Some(0.5));
    assert!(s.items[1].split);
    // A plain swipe has no settlement part at all.
    assert!(decode(GOOD).unwrap().settlement.is_none());
}

#[test]
fn settlements_round_trip_through_the_encoder() {
    for line in [
        SETTLEMENT,
        r#"{"event_id":"a1","ts":1795399200000,"card_id":"c1","account_id":"p1","amount_minor":0,"merchant_id":"h1","outcome":"approved","event_type":"admission","visit_id":"stay-1"}"#,
        r#"{"event_id":"r1","ts":1795399200000,"card_id":"c1","amount_minor":500,"merchant_id":"ph1","outcome":"refunded","items":[{"code":"X","trace_codes":["8100"]}]}"#,
        // Found by the fuzzer: a decimal longer than a double holds must decode to the nearest
        // double, or its shortest re-encoding decodes to a neighbouring one.
        r#"{"event_id":"q1","ts":1795399200000,"card_id":"c1","amount_minor":500,"merchant_id":"ph1","outcome":"approved","items":[{"code":"XN02BE","quantity":1.5666666666666666666666666666666666666666}]}"#,
    ] {
        let tx = decode(line).unwrap();
        let mut out = Vec::new();
        crate::encode::encode_event(&tx, &mut out);
        assert_eq!(
            decode_event(&out[..out.len() - 1], &DecodeLimits::default()).unwrap(),
            tx,
            "{line}"
        );
    }
}

#[test]
fn malformed_settlements_are_refused_naming_the_field() {
    let with = |extra: &str| {
        let line = GOOD[..GOOD.len() - 1].to_string() + "," + extra + "}";
        decode(&line).map(|_| ()).map_err(|r| r.to_string())
    };
    let cases = [
        (r#""items":{"code":"x"}"#, "bad_value: items"),
        (r#""items":[{"group":"x"}]"#, "bad_value: items.code"),
        (r#""items":["x"]"#, "bad_value: items"),
        (
            r#""items":[{"code":"x","quantity":-1}]"#,
            "bad_value: items.quantity",
        ),
        (
            r#""items":[{"code":"x","days_supply":-3}]"#,
            "bad_value: items.days_supply",
        ),
        (
            r#""items":[{"code":"x","quantity":"two"}]"#,
            "wrong_type: items.quantity",
        ),
        (
            r#""items":[{"code":"x","amount_minor":-5}]"#,
            "negative_amount: items.amount_minor",
        ),
        (
            r#""items":[{"code":"x","split":"maybe"}]"#,
            "bad_value: items.split",
        ),
        (
            r#""items":[{"code":"x","trace_codes":[{"a":1}]}]"#,
            "wrong_type: items.trace_codes",
        ),
        (r#""event_type":"transfer""#, "bad_value: event_type"),
        (r#""event_type":7"#, "wrong_type: event_type"),
        (
            r#""event_type":"admission","account_id":"p""#,
            "missing_field: visit_id",
        ),
        (
            r#""event_type":"discharge","visit_id":"v""#,
            "missing_field: account_id",
        ),
        (r#""cert_type":["card"]"#, "wrong_type: cert_type"),
    ];
    for (extra, expected) in cases {
        assert_eq!(with(extra), Err(expected.to_string()), "{extra}");
    }
    // Values the feed adds later map to `other`; a null is absent.
    assert!(with(r#""visit_type":"home_care","cert_type":"face_scan","items":null"#).is_ok());
}

#[test]
fn item_and_trace_code_counts_are_bounded() {
    let limits = DecodeLimits {
        max_items: 3,
        max_trace_codes: 4,
        ..DecodeLimits::default()
    };
    let line = |items: &str| GOOD[..GOOD.len() - 1].to_string() + r#","items":"# + items + "}";
    let item = r#"{"code":"x","trace_codes":["1","2"]}"#;
    let two = format!("[{item},{item}]");
    assert!(decode_event(line(&two).as_bytes(), &limits).is_ok());
    let three = format!("[{item},{item},{item}]");
    assert_eq!(
        decode_event(line(&three).as_bytes(), &limits)
            .unwrap_err()
            .to_string(),
        "bad_value: items.trace_codes: too many"
    );
    let four = r#"[{"code":"a"},{"code":"b"},{"code":"c"},{"code":"d"}]"#;
    assert_eq!(
        decode_event(line(four).as_bytes(), &limits)
            .unwrap_err()
            .to_string(),
        "bad_value: items: too many"
    );
}
