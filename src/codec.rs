//! The JSON codec: event bytes in (DESIGN §2), alert lines out (DESIGN §4).
//!
//! Decoding never fails with an error of its own: it yields a validated [`Transaction`] or a
//! [`Rejected`] carrying one of the core's [`RejectReason`]s and a short detail naming the field.
//! Unknown fields are ignored. Ids and codes that arrive as JSON integers (a numeric region code,
//! say) are taken as their decimal text; money must be an integer number of fen.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use swipeguard_detectors::{
    AmountMinor, CardId, CertType, Channel, DeclineReason, EventId, EventTime, EventType, GeoPoint,
    Item, MerchantKind, Outcome, RejectReason, Settlement, Text, Transaction, VisitType,
};

/// Bounds applied while decoding, and the card-number protection applied right after.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeLimits {
    /// Keyed hash of card numbers (`[ingest.card_hash]`), applied before anything sees the event.
    pub hasher: Option<std::sync::Arc<crate::ingest::CardHasher>>,
    /// Largest accepted message, bytes.
    pub max_bytes: usize,
    /// Largest accepted `amount_minor`.
    pub max_amount_minor: u64,
    /// Earliest and latest accepted event time.
    pub min_ts: EventTime,
    pub max_ts: EventTime,
    /// Most line items in one event, and most traceability codes over all its items: a hostile
    /// event cannot make the detectors remember without bound.
    pub max_items: usize,
    pub max_trace_codes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            hasher: None,
            max_bytes: 64 * 1024,
            // ¥100 million: no single swipe at a clinic comes near.
            max_amount_minor: 10_000_000_000,
            // 2000-01-01T00:00:00Z ..= 2099-12-31T23:59:59.999Z
            min_ts: EventTime(946_684_800_000),
            max_ts: EventTime(4_102_444_799_999),
            // A long inpatient bill has a few hundred lines; a pharmacy sale a handful of boxes.
            max_items: 500,
            max_trace_codes: 1_000,
        }
    }
}

/// An event that could not be decoded: the reason, and which field when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: RejectReason,
    pub detail: Cow<'static, str>,
}

impl Rejected {
    pub fn new(reason: RejectReason, detail: impl Into<Cow<'static, str>>) -> Self {
        Rejected {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// Any JSON value, kept only as far as validation needs it.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
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
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
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

/// The event as it arrives; null counts as absent.
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
    // DESIGN §12.
    #[serde(borrow)]
    event_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    visit_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    visit_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    cert_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    diagnosis: Option<Scalar<'a>>,
    /// Kept as text until validation, which then reports which part of an item is wrong.
    #[serde(borrow)]
    items: Option<&'a RawValue>,
}

/// A line item as it arrives.
#[derive(Deserialize)]
struct RawItem<'a> {
    #[serde(borrow)]
    code: Option<Scalar<'a>>,
    #[serde(borrow)]
    group: Option<Scalar<'a>>,
    #[serde(borrow)]
    quantity: Option<Scalar<'a>>,
    #[serde(borrow)]
    days_supply: Option<Scalar<'a>>,
    #[serde(borrow)]
    trace_codes: Option<Vec<Scalar<'a>>>,
    #[serde(borrow)]
    split: Option<Scalar<'a>>,
    #[serde(borrow)]
    amount_minor: Option<Scalar<'a>>,
}

fn missing(field: &'static str) -> Rejected {
    Rejected::new(RejectReason::MissingField, field)
}

fn wrong_type(field: &'static str) -> Rejected {
    Rejected::new(RejectReason::WrongType, field)
}

/// An id or code: a string, or an integer taken as its decimal text. Empty counts as absent.
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

/// A word from a fixed vocabulary: strings only.
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

/// RFC 3339 text to event time.
pub fn parse_rfc3339(s: &str) -> Option<EventTime> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| EventTime(t.timestamp_millis()))
}

/// Event time as RFC 3339 UTC with milliseconds: `2026-11-23T04:52:00.000Z`.
pub fn format_ts(t: EventTime) -> String {
    DateTime::from_timestamp_millis(t.0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| t.0.to_string())
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
    money("amount_minor", v, limits)?.ok_or_else(|| missing("amount_minor"))
}

/// Integer fen, not negative, not absurd.
fn money(
    field: &'static str,
    v: Option<Scalar<'_>>,
    limits: &DecodeLimits,
) -> Result<Option<AmountMinor>, Rejected> {
    let fen = match v {
        None => return Ok(None),
        Some(Scalar::UInt(u)) => u,
        Some(Scalar::Int(i)) if i < 0 => {
            return Err(Rejected::new(RejectReason::NegativeAmount, field))
        }
        Some(Scalar::Int(i)) => i.unsigned_abs(),
        Some(Scalar::Float(f)) if f < 0.0 => {
            return Err(Rejected::new(RejectReason::NegativeAmount, field))
        }
        Some(_) => return Err(wrong_type(field)),
    };
    if fen > limits.max_amount_minor {
        return Err(Rejected::new(RejectReason::AbsurdAmount, field));
    }
    Ok(Some(AmountMinor(fen)))
}

/// How deeply the JSON text nests arrays and objects (strings skipped). Error path only.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Nesting past this is refused as `too_deep`, even inside fields that are otherwise ignored
/// (serde_json itself stops at 128).
const MAX_DEPTH: usize = 64;

fn classify(bytes: &[u8], err: &serde_json::Error) -> Rejected {
    if std::str::from_utf8(bytes).is_err() {
        return Rejected::new(RejectReason::NotUtf8, "message");
    }
    if nesting_depth(bytes) > MAX_DEPTH {
        return Rejected::new(RejectReason::TooDeep, "message");
    }
    if err.is_syntax() || err.is_eof() {
        return Rejected::new(RejectReason::NotJson, "message");
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Rejected::new(RejectReason::NotObject, "message");
    }
    Rejected::new(RejectReason::WrongType, "message")
}

/// Decodes and validates one event.
pub fn decode_event(bytes: &[u8], limits: &DecodeLimits) -> Result<Transaction, Rejected> {
    if bytes.len() > limits.max_bytes {
        return Err(Rejected::new(RejectReason::Oversized, "message"));
    }
    // Nesting can only exceed the limit if there are more brackets than the limit: a cheap,
    // vectorised count that stops at the limit spares ordinary events the full scan.
    if memchr::memchr2_iter(b'[', b'{', bytes)
        .take(MAX_DEPTH + 1)
        .count()
        > MAX_DEPTH
        && nesting_depth(bytes) > MAX_DEPTH
    {
        return Err(Rejected::new(RejectReason::TooDeep, "message"));
    }
    // One check of the whole message is cheaper than serde_json's check of every string, and it
    // also refuses bad bytes inside fields that are otherwise ignored.
    let text =
        std::str::from_utf8(bytes).map_err(|_| Rejected::new(RejectReason::NotUtf8, "message"))?;
    let raw: RawEvent<'_> = serde_json::from_str(text).map_err(|e| classify(bytes, &e))?;
    let mut tx = validate(raw, limits)?;
    if let Some(h) = &limits.hasher {
        h.protect(&mut tx);
    }
    Ok(tx)
}

fn validate(mut raw: RawEvent<'_>, limits: &DecodeLimits) -> Result<Transaction, Rejected> {
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
    let fields = RawSettlement {
        event_type: raw.event_type.take(),
        visit_type: raw.visit_type.take(),
        visit_id: raw.visit_id.take(),
        cert_type: raw.cert_type.take(),
        diagnosis: raw.diagnosis.take(),
        items: raw.items,
        has_account: raw.account_id.is_some(),
    };
    let settlement = settlement(fields, outcome, limits)?;
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
        settlement,
        label: short_text(text("label", raw.label)?),
        meta: Default::default(),
    })
}

fn bad_value(field: &'static str) -> Rejected {
    Rejected::new(RejectReason::BadValue, field)
}

/// The §12 fields of a raw event, taken out of it for [`settlement`].
struct RawSettlement<'a> {
    event_type: Option<Scalar<'a>>,
    visit_type: Option<Scalar<'a>>,
    visit_id: Option<Scalar<'a>>,
    cert_type: Option<Scalar<'a>>,
    diagnosis: Option<Scalar<'a>>,
    items: Option<&'a RawValue>,
    has_account: bool,
}

/// The §12 fields, when the event has any. Admissions and discharges must name the person and
/// the stay they open or close.
fn settlement(
    raw: RawSettlement<'_>,
    outcome: Outcome,
    limits: &DecodeLimits,
) -> Result<Option<std::sync::Arc<Settlement>>, Rejected> {
    let event_type = match word("event_type", raw.event_type)? {
        None => EventType::Settlement,
        Some(t) => EventType::parse(&t).ok_or_else(|| bad_value("event_type"))?,
    };
    let visit_type = word("visit_type", raw.visit_type)?.map(|v| VisitType::parse(&v));
    let visit_id = short_text(text("visit_id", raw.visit_id)?);
    let cert_type = word("cert_type", raw.cert_type)?.map(|c| CertType::parse(&c));
    let diagnosis = short_text(text("diagnosis", raw.diagnosis)?);
    let items = match raw.items {
        None => Vec::new(),
        Some(list) => items(list, limits)?,
    };
    if event_type != EventType::Settlement {
        if visit_id.is_none() {
            return Err(missing("visit_id"));
        }
        if !raw.has_account {
            return Err(missing("account_id"));
        }
        if outcome != Outcome::Approved {
            return Err(bad_value("outcome"));
        }
    }
    let settlement = Settlement {
        event_type,
        visit_type,
        visit_id,
        cert_type,
        diagnosis,
        items,
    };
    Ok((settlement != Settlement::default()).then(|| std::sync::Arc::new(settlement)))
}

/// The line items: an array of objects, each with a `code`.
fn items(list: &RawValue, limits: &DecodeLimits) -> Result<Vec<Item>, Rejected> {
    if list.get() == "null" {
        return Ok(Vec::new());
    }
    let raw: Vec<RawItem<'_>> = serde_json::from_str(list.get()).map_err(|_| bad_value("items"))?;
    if raw.len() > limits.max_items {
        return Err(bad_value("items: too many"));
    }
    let mut codes = 0usize;
    let mut out = Vec::with_capacity(raw.len());
    for it in raw {
        let code = text("items.code", it.code)?.ok_or_else(|| bad_value("items.code"))?;
        let quantity = match number("items.quantity", it.quantity)? {
            Some(q) if !q.is_finite() || q < 0.0 => return Err(bad_value("items.quantity")),
            q => q,
        };
        let days_supply = match number("items.days_supply", it.days_supply)? {
            None => None,
            Some(d) if d.is_finite() && (0.0..=36_500.0).contains(&d) => Some(d.round() as u32),
            Some(_) => return Err(bad_value("items.days_supply")),
        };
        let mut trace_codes = Vec::new();
        for c in it.trace_codes.into_iter().flatten() {
            codes += 1;
            if codes > limits.max_trace_codes {
                return Err(bad_value("items.trace_codes: too many"));
            }
            if let Some(c) = text("items.trace_codes", Some(c))? {
                trace_codes.push(Text::from(c.as_ref()));
            }
        }
        out.push(Item {
            code: Text::from(code.as_ref()),
            group: short_text(text("items.group", it.group)?),
            quantity,
            days_supply,
            trace_codes,
            split: flag("items.split", it.split)?,
            amount: money("items.amount_minor", it.amount_minor, limits)?,
        });
    }
    Ok(out)
}

/// A yes/no: JSON true/false, 1/0, or the text "1"/"0"/"true"/"false" of exports.
fn flag(field: &'static str, v: Option<Scalar<'_>>) -> Result<bool, Rejected> {
    match v {
        None => Ok(false),
        Some(Scalar::Bool(b)) => Ok(b),
        Some(Scalar::Int(0) | Scalar::UInt(0)) => Ok(false),
        Some(Scalar::Int(1) | Scalar::UInt(1)) => Ok(true),
        Some(Scalar::Str(s)) => match s.as_ref() {
            "" | "0" | "false" => Ok(false),
            "1" | "true" => Ok(true),
            _ => Err(bad_value(field)),
        },
        Some(_) => Err(wrong_type(field)),
    }
}

#[cfg(test)]
mod tests;
