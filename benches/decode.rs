//! JSON decoding of our event shape: the project's decoder (serde_json into a borrowed struct,
//! then validation: `swipeguard::codec::decode_event`) against sonic-rs and simd-json decoding
//! the same lines into the same borrowed struct with the same validation, and — to say which
//! stage bounds replay — the detection stage on the same simulated events.
//!
//! `cargo bench --bench decode` (criterion). Groups:
//!
//! - `decode/*`: 10 000 card swipes of `swipeguard simulate` output (2 % fraud cards; its
//!   settlement and admission lines left out, the copy below does not decode their fields), each
//!   line to a validated `Transaction`. `serde_json_codec` is the project's decoder as replay calls it;
//!   `serde_json`, `sonic_rs` and `simd_json` run the copy below of its raw struct and
//!   validation (kept in step with `src/codec.rs` by the check in `main`: every decoder must
//!   yield exactly `decode_event`'s `Transaction` for every line), so they differ only in the JSON
//!   parser. simd-json parses in place, so its figure includes copying each line into a scratch
//!   buffer (replay's line buffer is its own and mutable, so that copy would not be needed there).
//! - `detect/*`: the replay's engine stage on those events, already decoded (`Engine::admit`,
//!   default lateness 30 s as replay runs it, all detectors or only `rapid_fire` + `failed_pin`),
//!   over 100K events (17 000 cards, 30 days: the same events per card as the 1M-event replay
//!   benchmark file).
//!
//! Throughputs are elements (events) per second. See BENCHMARKS.md, "JSON decoding (issue 7)".

use std::borrow::Cow;
use std::fmt;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use swipeguard::codec::{decode_event, parse_rfc3339, DecodeLimits, Rejected};
use swipeguard::simulate::{simulate, SimOptions};
use swipeguard_detectors::{
    AmountMinor, CardId, Channel, DeclineReason, DetectorName, DetectorsConfig, Engine,
    EngineConfig, EventId, EventTime, GeoPoint, KeyKind, MerchantKind, Outcome, Output,
    RejectReason, Text, Transaction,
};

const DECODE_LINES: usize = 10_000;

/// Simulated JSONL lines: 17 000 cards over 30 days (about 104K events), seed 1.
fn lines() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let opts = SimOptions {
        cards: 17_000,
        days: 30,
        seed: 1,
        ..SimOptions::default()
    };
    simulate(&opts, &mut out).expect("simulate into memory");
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

// ---- A copy of src/codec.rs's raw event and validation, generic over the JSON parser. ----

#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool,
    Nested,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    ts: Option<Scalar<'a>>,
    #[serde(borrow)]
    card_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    account_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    amount_minor: Option<Scalar<'a>>,
    #[serde(borrow)]
    currency: Option<Scalar<'a>>,
    #[serde(borrow)]
    merchant_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    merchant_kind: Option<Scalar<'a>>,
    #[serde(borrow)]
    mcc: Option<Scalar<'a>>,
    #[serde(borrow)]
    terminal_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    region: Option<Scalar<'a>>,
    #[serde(borrow)]
    lat: Option<Scalar<'a>>,
    #[serde(borrow)]
    lon: Option<Scalar<'a>>,
    #[serde(borrow)]
    channel: Option<Scalar<'a>>,
    #[serde(borrow)]
    outcome: Option<Scalar<'a>>,
    #[serde(borrow)]
    decline_reason: Option<Scalar<'a>>,
    #[serde(borrow)]
    label: Option<Scalar<'a>>,
}

fn missing(field: &'static str) -> Rejected {
    Rejected::new(RejectReason::MissingField, field)
}

fn wrong_type(field: &'static str) -> Rejected {
    Rejected::new(RejectReason::WrongType, field)
}

fn text<'a>(field: &'static str, v: Option<Scalar<'a>>) -> Result<Option<Cow<'a, str>>, Rejected> {
    match v {
        None => Ok(None),
        Some(Scalar::Str(s)) if s.is_empty() => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(s)),
        Some(Scalar::Int(i)) => Ok(Some(Cow::Owned(i.to_string()))),
        Some(Scalar::UInt(u)) => Ok(Some(Cow::Owned(u.to_string()))),
        Some(_) => Err(wrong_type(field)),
    }
}

fn required<'a>(field: &'static str, v: Option<Scalar<'a>>) -> Result<Cow<'a, str>, Rejected> {
    text(field, v)?.ok_or_else(|| missing(field))
}

fn short_text(v: Option<Cow<'_, str>>) -> Option<Text> {
    v.map(|s| Text::from(s.as_ref()))
}

fn word<'a>(field: &'static str, v: Option<Scalar<'a>>) -> Result<Option<Cow<'a, str>>, Rejected> {
    match v {
        None => Ok(None),
        Some(Scalar::Str(s)) if s.is_empty() => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(field)),
    }
}

fn number(field: &'static str, v: Option<Scalar<'_>>) -> Result<Option<f64>, Rejected> {
    match v {
        None => Ok(None),
        Some(Scalar::Float(f)) => Ok(Some(f)),
        Some(Scalar::Int(i)) => Ok(Some(i as f64)),
        Some(Scalar::UInt(u)) => Ok(Some(u as f64)),
        Some(_) => Err(wrong_type(field)),
    }
}

fn timestamp(v: Option<Scalar<'_>>, limits: &DecodeLimits) -> Result<EventTime, Rejected> {
    let ts = match v {
        None => return Err(missing("ts")),
        Some(Scalar::Str(s)) => {
            parse_rfc3339(&s).ok_or_else(|| Rejected::new(RejectReason::BadTimestamp, "ts"))?
        }
        Some(Scalar::Int(i)) => EventTime(i),
        Some(Scalar::UInt(u)) => EventTime(i64::try_from(u).unwrap_or(i64::MAX)),
        Some(_) => return Err(Rejected::new(RejectReason::BadTimestamp, "ts")),
    };
    if ts < limits.min_ts || ts > limits.max_ts {
        return Err(Rejected::new(RejectReason::TimestampOutOfRange, "ts"));
    }
    Ok(ts)
}

fn amount(v: Option<Scalar<'_>>, limits: &DecodeLimits) -> Result<AmountMinor, Rejected> {
    let fen = match v {
        None => return Err(missing("amount_minor")),
        Some(Scalar::UInt(u)) => u,
        Some(Scalar::Int(i)) if i < 0 => {
            return Err(Rejected::new(RejectReason::NegativeAmount, "amount_minor"))
        }
        Some(Scalar::Int(i)) => i.unsigned_abs(),
        Some(Scalar::Float(f)) if f < 0.0 => {
            return Err(Rejected::new(RejectReason::NegativeAmount, "amount_minor"))
        }
        Some(_) => return Err(wrong_type("amount_minor")),
    };
    if fen > limits.max_amount_minor {
        return Err(Rejected::new(RejectReason::AbsurdAmount, "amount_minor"));
    }
    Ok(AmountMinor(fen))
}

fn validate(raw: RawEvent<'_>, limits: &DecodeLimits) -> Result<Transaction, Rejected> {
    let event_id = required("event_id", raw.event_id)?;
    let ts = timestamp(raw.ts, limits)?;
    let card_id = required("card_id", raw.card_id)?;
    let amount = amount(raw.amount_minor, limits)?;
    let merchant_id = required("merchant_id", raw.merchant_id)?;
    let outcome = word("outcome", raw.outcome)?.ok_or_else(|| missing("outcome"))?;
    let outcome =
        Outcome::parse(&outcome).ok_or_else(|| Rejected::new(RejectReason::BadValue, "outcome"))?;
    let geo = match (number("lat", raw.lat)?, number("lon", raw.lon)?) {
        (Some(lat), Some(lon)) => {
            if !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)) {
                return Err(Rejected::new(RejectReason::BadValue, "lat/lon"));
            }
            Some(GeoPoint { lat, lon })
        }
        _ => None,
    };
    Ok(Transaction {
        event_id: EventId::new(&event_id),
        ts,
        card_id: CardId::new(card_id),
        account_id: short_text(text("account_id", raw.account_id)?),
        amount,
        currency: short_text(word("currency", raw.currency)?),
        merchant_id: merchant_id.into(),
        merchant_kind: word("merchant_kind", raw.merchant_kind)?.map(|k| MerchantKind::parse(&k)),
        mcc: short_text(text("mcc", raw.mcc)?),
        terminal_id: short_text(text("terminal_id", raw.terminal_id)?),
        region: short_text(text("region", raw.region)?),
        geo,
        channel: word("channel", raw.channel)?.map(|c| Channel::parse(&c)),
        outcome,
        decline_reason: word("decline_reason", raw.decline_reason)?
            .map(|r| DeclineReason::parse(&r)),
        settlement: None,
        label: short_text(text("label", raw.label)?),
        meta: Default::default(),
    })
}

/// A parse error; only well-formed lines are benchmarked (the check in `main` makes sure).
fn not_json() -> Rejected {
    Rejected::new(RejectReason::NotJson, "message")
}

fn with_serde_json(line: &[u8], limits: &DecodeLimits) -> Result<Transaction, Rejected> {
    let raw: RawEvent<'_> = serde_json::from_slice(line).map_err(|_| not_json())?;
    validate(raw, limits)
}

fn with_sonic_rs(line: &[u8], limits: &DecodeLimits) -> Result<Transaction, Rejected> {
    let raw: RawEvent<'_> = sonic_rs::from_slice(line).map_err(|_| not_json())?;
    validate(raw, limits)
}

/// simd-json parses in place: `scratch` receives a copy of the line first.
fn with_simd_json(
    line: &[u8],
    scratch: &mut Vec<u8>,
    limits: &DecodeLimits,
) -> Result<Transaction, Rejected> {
    scratch.clear();
    scratch.extend_from_slice(line);
    let raw: RawEvent<'_> = simd_json::serde::from_slice(scratch).map_err(|_| not_json())?;
    validate(raw, limits)
}

// ---- Benches. ----

fn bench(c: &mut Criterion) {
    let all = lines();
    let limits = DecodeLimits::default();
    // The copy below decodes card swipes, not settlement line items or hospital stays (DESIGN
    // §12): the sample is the swipes among the simulated lines.
    let sample: Vec<Vec<u8>> = all
        .iter()
        .filter(|l| decode_event(l, &limits).is_ok_and(|tx| tx.settlement.is_none()))
        .take(DECODE_LINES)
        .cloned()
        .collect();
    let bytes: usize = sample.iter().map(Vec::len).sum();

    // The copy must decode exactly as the project does, with every parser.
    let mut scratch = Vec::with_capacity(1024);
    for line in &sample {
        let want = decode_event(line, &limits);
        assert!(want.is_ok(), "simulate wrote an invalid line");
        assert_eq!(with_serde_json(line, &limits), want);
        assert_eq!(with_sonic_rs(line, &limits), want);
        assert_eq!(with_simd_json(line, &mut scratch, &limits), want);
    }
    eprintln!(
        "decode: {} lines, {:.0} bytes per line on average",
        sample.len(),
        bytes as f64 / sample.len() as f64
    );

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(sample.len() as u64));
    g.sample_size(20);
    g.bench_function("serde_json_codec", |b| {
        b.iter(|| {
            for line in &sample {
                let _ = black_box(decode_event(black_box(line), &limits));
            }
        })
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| {
            for line in &sample {
                let _ = black_box(with_serde_json(black_box(line), &limits));
            }
        })
    });
    g.bench_function("sonic_rs", |b| {
        b.iter(|| {
            for line in &sample {
                let _ = black_box(with_sonic_rs(black_box(line), &limits));
            }
        })
    });
    g.bench_function("simd_json", |b| {
        b.iter(|| {
            for line in &sample {
                let _ = black_box(with_simd_json(black_box(line), &mut scratch, &limits));
            }
        })
    });
    g.finish();

    // The other stage of replay: the engine on already decoded events, as replay runs it.
    let events: Vec<Transaction> = all
        .iter()
        .map(|l| decode_event(l, &limits).expect("valid"))
        .collect();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    let two = DetectorsConfig::default().only(&[
        DetectorName::named("rapid_fire"),
        DetectorName::named("failed_pin"),
    ]);
    let card = DetectorsConfig::default().only_keys(&[KeyKind::Card]);
    for (name, detectors) in [
        ("all_detectors", DetectorsConfig::default()),
        ("card_detectors", card),
        ("rapid_fire_failed_pin", two),
    ] {
        let config = EngineConfig {
            detectors,
            ..EngineConfig::default()
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || (Engine::new(config.clone()).expect("config"), events.clone()),
                |(mut engine, events)| {
                    let mut out = Output::default();
                    for e in events {
                        engine.admit(e, &mut out);
                        out.alerts.clear();
                    }
                    engine.drain(&mut out);
                    black_box((engine, out))
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
