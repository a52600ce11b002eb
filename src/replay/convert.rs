//! A mapping compiled against one file's header, and the conversion of a row into an event.
//!
//! Rows that do not fit become [`Rejected`] with the same reasons the JSON codec uses, so a
//! rejects file reads the same whatever the input format. The §12 fields and a row's line item
//! are read in [`items`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use swipeguard_detectors::{
    AmountMinor, CardId, Channel, DeclineReason, EventId, EventTime, GeoPoint, MerchantKind,
    Outcome, RejectReason, Text, Transaction,
};

use super::mapping::{FieldSpec, GroupAmount, MappingError, MappingFile};
use crate::codec::{parse_rfc3339, DecodeLimits, Rejected};

/// How a field's text is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Id,
    Text,
    Time,
    Amount,
    Number,
}

/// The event fields of DESIGN §2, then those of §12 and the members of a line item, in order.
pub const FIELDS: [(&str, FieldKind); 29] = [
    ("event_id", FieldKind::Id),
    ("ts", FieldKind::Time),
    ("card_id", FieldKind::Id),
    ("account_id", FieldKind::Text),
    ("amount_minor", FieldKind::Amount),
    ("currency", FieldKind::Text),
    ("merchant_id", FieldKind::Id),
    ("merchant_kind", FieldKind::Text),
    ("mcc", FieldKind::Text),
    ("terminal_id", FieldKind::Text),
    ("region", FieldKind::Text),
    ("lat", FieldKind::Number),
    ("lon", FieldKind::Number),
    ("channel", FieldKind::Text),
    ("outcome", FieldKind::Text),
    ("decline_reason", FieldKind::Text),
    ("label", FieldKind::Text),
    ("event_type", FieldKind::Text),
    ("visit_type", FieldKind::Text),
    ("visit_id", FieldKind::Text),
    ("cert_type", FieldKind::Text),
    ("diagnosis", FieldKind::Text),
    ("items.code", FieldKind::Id),
    ("items.group", FieldKind::Text),
    ("items.quantity", FieldKind::Number),
    ("items.days_supply", FieldKind::Number),
    ("items.trace_codes", FieldKind::Text),
    ("items.split", FieldKind::Text),
    ("items.amount_minor", FieldKind::Amount),
];

#[derive(Clone, Debug)]
enum Source {
    Column(usize),
    Columns(Vec<usize>, String),
    Constant(String),
    RowNumber,
    Absent,
}

#[derive(Clone, Debug)]
enum TimeFormat {
    /// RFC 3339 text or integer epoch milliseconds (the §2 rule).
    Native,
    EpochSeconds,
    EpochMillis,
    Pattern(String, FixedOffset),
}

#[derive(Clone, Debug)]
struct Compiled {
    name: &'static str,
    source: Source,
    map: Option<BTreeMap<String, String>>,
    split: Option<String>,
    default: Option<String>,
    decimals: u32,
    negative: Option<(usize, Vec<String>)>,
    time: TimeFormat,
}

/// A mapping bound to one file's columns.
#[derive(Clone, Debug)]
pub struct Mapper {
    fields: Vec<Compiled>,
    file_name: String,
    limits: DecodeLimits,
    /// Columns of `[source] group_by`; empty when rows are not grouped.
    group_by: Vec<usize>,
    /// Whether a folded event's amount is the sum of its rows' (`group_amount = "sum"`).
    group_sum: bool,
}

/// `+08:00`, `-05:30`, `UTC`/`Z`, or `Asia/Shanghai` (China has one zone and no daylight saving).
pub fn parse_zone(s: &str) -> Option<FixedOffset> {
    match s {
        "UTC" | "Z" | "utc" => return FixedOffset::east_opt(0),
        "Asia/Shanghai" | "Asia/Chongqing" | "Asia/Harbin" | "PRC" => {
            return FixedOffset::east_opt(8 * 3600)
        }
        _ => {}
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

impl Mapper {
    /// Binds `mapping` to `header`, refusing unknown columns (all listed at once).
    pub fn compile(
        mapping: &MappingFile,
        header: &[String],
        file_name: &str,
        limits: DecodeLimits,
    ) -> Result<Mapper, MappingError> {
        let unknown: Vec<&str> = mapping
            .columns()
            .into_iter()
            .filter(|c| !header.iter().any(|h| h == c))
            .collect();
        if !unknown.is_empty() {
            return Err(MappingError::UnknownColumns {
                unknown: unknown.join(", "),
                header: header.join(", "),
            });
        }
        let index = |name: &str| header.iter().position(|h| h == name);
        let default_zone = parse_zone(&mapping.source.timezone).ok_or_else(|| {
            MappingError::Invalid("source.timezone: must be +08:00, UTC or Asia/Shanghai".into())
        })?;
        let mut fields = Vec::with_capacity(FIELDS.len());
        for (name, kind) in FIELDS {
            let spec = mapping.fields.get(name).cloned().unwrap_or_default();
            let source = match (&spec.column, &spec.columns, &spec.constant, spec.row_number) {
                (Some(c), ..) => Source::Column(index(c).unwrap_or(usize::MAX)),
                (_, Some(cs), ..) => Source::Columns(
                    cs.iter().map(|c| index(c).unwrap_or(usize::MAX)).collect(),
                    spec.join.clone().unwrap_or_else(|| " ".into()),
                ),
                (_, _, Some(v), _) => Source::Constant(v.clone()),
                (.., true) => Source::RowNumber,
                _ => index(name).map_or(Source::Absent, Source::Column),
            };
            let time = if kind == FieldKind::Time {
                time_format(name, &spec, default_zone)?
            } else {
                TimeFormat::Native
            };
            fields.push(Compiled {
                name,
                source,
                map: spec.map.clone(),
                split: spec.split.clone(),
                default: spec.default.clone(),
                decimals: spec.decimals.unwrap_or(0),
                negative: spec
                    .negative
                    .as_ref()
                    .map(|n| (index(&n.column).unwrap_or(usize::MAX), n.values.clone())),
                time,
            });
        }
        let group_by = mapping
            .source
            .group_by
            .iter()
            .map(|c| index(c).unwrap_or(usize::MAX))
            .collect();
        Ok(Mapper {
            fields,
            file_name: file_name.to_string(),
            limits,
            group_by,
            group_sum: mapping.source.group_amount == GroupAmount::Sum,
        })
    }

    /// Whether rows fold into events by `[source] group_by`.
    pub fn grouped(&self) -> bool {
        !self.group_by.is_empty()
    }

    /// The values of the `group_by` columns in `row`: equal keys on consecutive rows, one event.
    pub fn group_key<S: AsRef<str>>(&self, row: &[S]) -> Vec<String> {
        self.group_by
            .iter()
            .map(|&c| row.get(c).map_or("", |v| v.as_ref().trim()).to_string())
            .collect()
    }

    /// The text of field `i` for `row` as the source gives it: before maps and defaults.
    fn source_text<'a>(&self, i: usize, row: &'a [&'a str], row_number: u64) -> Cow<'a, str> {
        let cell = |c: usize| row.get(c).copied().unwrap_or("").trim();
        match &self.fields[i].source {
            Source::Column(c) => Cow::Borrowed(cell(*c)),
            Source::Columns(cs, sep) => {
                Cow::Owned(cs.iter().map(|c| cell(*c)).collect::<Vec<_>>().join(sep))
            }
            Source::Constant(v) => Cow::Owned(v.clone()),
            Source::RowNumber => Cow::Owned(format!("{}#{row_number}", self.file_name)),
            Source::Absent => Cow::Borrowed(""),
        }
    }

    /// The text of field `i` for `row`, after constants, joins, maps and defaults.
    fn text<'a>(&self, i: usize, row: &'a [&'a str], row_number: u64) -> Option<Cow<'a, str>> {
        let f = &self.fields[i];
        let raw = self.source_text(i, row, row_number);
        let mapped = match &f.map {
            None => raw,
            Some(map) => match &f.split {
                Some(sep) => raw
                    .split(sep.as_str())
                    .find_map(|part| map.get(part.trim()))
                    .map_or(raw.clone(), |v| Cow::Owned(v.clone())),
                None => map
                    .get(raw.as_ref())
                    .map_or(raw.clone(), |v| Cow::Owned(v.clone())),
            },
        };
        if mapped.is_empty() {
            f.default.clone().map(Cow::Owned)
        } else {
            Some(mapped)
        }
    }

    /// Converts one row (cells in header order) into an event.
    pub fn convert(&self, row: &[&str], row_number: u64) -> Result<Transaction, Rejected> {
        let t = |i: usize| self.text(i, row, row_number);
        let required = |i: usize| {
            t(i).ok_or_else(|| Rejected::new(RejectReason::MissingField, self.fields[i].name))
        };
        let event_id = required(0)?;
        let ts = self.time(1, &required(1)?)?;
        let card_id = required(2)?;
        let amount = self.amount(4, &required(4)?, row)?;
        let merchant_id = required(6)?;
        let outcome = Outcome::parse(&required(14)?)
            .ok_or_else(|| Rejected::new(RejectReason::BadValue, "outcome"))?;
        let number = |i: usize| -> Result<Option<f64>, Rejected> {
            t(i).map(|v| {
                v.parse::<f64>()
                    .map_err(|_| Rejected::new(RejectReason::WrongType, self.fields[i].name))
            })
            .transpose()
        };
        let geo = match (number(11)?, number(12)?) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some(GeoPoint { lat, lon })
            }
            (Some(_), Some(_)) => return Err(Rejected::new(RejectReason::BadValue, "lat/lon")),
            _ => None,
        };
        let short_text = |i: usize| t(i).map(|v| Text::from(v.as_ref()));
        let mut tx = Transaction {
            event_id: EventId::new(&event_id),
            ts,
            card_id: CardId::new(card_id.as_ref()),
            account_id: short_text(3),
            amount,
            currency: short_text(5),
            merchant_id: merchant_id.as_ref().into(),
            merchant_kind: t(7).map(|k| MerchantKind::parse(&k)),
            mcc: short_text(8),
            terminal_id: short_text(9),
            region: short_text(10),
            geo,
            channel: t(13).map(|c| Channel::parse(&c)),
            outcome,
            decline_reason: t(15).map(|r| DeclineReason::parse(&r)),
            settlement: self.settlement(row, row_number, outcome, t(3).is_some())?,
            label: short_text(16),
            meta: Default::default(),
        };
        if let Some(h) = &self.limits.hasher {
            h.protect(&mut tx);
        }
        Ok(tx)
    }

    fn time(&self, i: usize, text: &str) -> Result<EventTime, Rejected> {
        let bad = || Rejected::new(RejectReason::BadTimestamp, "ts");
        let ts = match &self.fields[i].time {
            TimeFormat::Native => match text.parse::<i64>() {
                Ok(ms) => EventTime(ms),
                Err(_) => parse_rfc3339(text).ok_or_else(bad)?,
            },
            TimeFormat::EpochMillis => EventTime(text.parse::<i64>().map_err(|_| bad())?),
            TimeFormat::EpochSeconds => {
                let ms = scaled_decimal(text, 3).ok_or_else(bad)?;
                EventTime(i64::try_from(ms).map_err(|_| bad())?)
            }
            TimeFormat::Pattern(p, zone) => {
                if p.contains("%z") || p.contains("%:z") {
                    DateTime::parse_from_str(text, p)
                        .map(|d| EventTime(d.timestamp_millis()))
                        .map_err(|_| bad())?
                } else {
                    let naive = NaiveDateTime::parse_from_str(text, p)
                        .or_else(|_| {
                            NaiveDate::parse_from_str(text, p)
                                .map(|d| d.and_time(chrono::NaiveTime::MIN))
                        })
                        .map_err(|_| bad())?;
                    let local = zone.from_local_datetime(&naive).single().ok_or_else(bad)?;
                    EventTime(local.timestamp_millis())
                }
            }
        };
        if ts < self.limits.min_ts || ts > self.limits.max_ts {
            return Err(Rejected::new(RejectReason::TimestampOutOfRange, "ts"));
        }
        Ok(ts)
    }

    fn amount(&self, i: usize, text: &str, row: &[&str]) -> Result<AmountMinor, Rejected> {
        let f = &self.fields[i];
        let minor = scaled_decimal(text, f.decimals)
            .ok_or_else(|| Rejected::new(RejectReason::WrongType, f.name))?;
        let negated = f.negative.as_ref().is_some_and(|(c, values)| {
            let cell = row.get(*c).copied().unwrap_or("").trim();
            values.iter().any(|v| v == cell)
        });
        let minor = if negated { -minor } else { minor };
        if minor < 0 {
            return Err(Rejected::new(RejectReason::NegativeAmount, f.name));
        }
        let fen = u64::try_from(minor).unwrap_or(u64::MAX);
        if fen > self.limits.max_amount_minor {
            return Err(Rejected::new(RejectReason::AbsurdAmount, f.name));
        }
        Ok(AmountMinor(fen))
    }
}

fn time_format(
    name: &str,
    spec: &FieldSpec,
    default_zone: FixedOffset,
) -> Result<TimeFormat, MappingError> {
    let zone = match &spec.timezone {
        Some(z) => parse_zone(z).ok_or_else(|| {
            MappingError::Invalid(format!(
                "fields.{name}.timezone: must be +08:00, UTC or Asia/Shanghai"
            ))
        })?,
        None => default_zone,
    };
    Ok(match spec.format.as_deref() {
        None | Some("rfc3339") => TimeFormat::Native,
        Some("epoch_s") => TimeFormat::EpochSeconds,
        Some("epoch_ms") => TimeFormat::EpochMillis,
        Some(p) => TimeFormat::Pattern(p.to_string(), zone),
    })
}

/// Exact decimal text × 10^`decimals`, rounded half away from zero: `"410.45000000000005"` with
/// 2 decimals is 41045. Accepts a sign, a leading currency sign, thousands separators and an
/// exponent (`4.1045e2`). `None` when the text is not a number.
pub fn scaled_decimal(text: &str, decimals: u32) -> Option<i128> {
    let s = text
        .trim()
        .trim_start_matches(['¥', '￥', '$'])
        .replace([',', '_', ' '], "");
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, s.strip_prefix('+').unwrap_or(&s).to_string()),
    };
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((&mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // All digits, with the decimal point moved right by decimals + exponent places.
    let digits: String = format!("{int}{frac}");
    let point = int.len() as i64 + i64::from(decimals) + i64::from(exponent);
    let (whole, rest) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let whole = whole.trim_start_matches('0');
    if whole.len() > 30 {
        return None;
    }
    let mut value: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    if rest.as_bytes().first().is_some_and(|&b| b >= b'5') {
        value += 1;
    }
    Some(if negative { -value } else { value })
}

mod items;
pub use items::Line;
pub mod unknown;

#[cfg(test)]
mod tests;
