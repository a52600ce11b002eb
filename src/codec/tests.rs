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
