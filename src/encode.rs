//! JSON encoding of alerts (DESIGN §4) and of events (DESIGN §2, for `simulate` and `produce`).
//! One object per line; field order is fixed so that byte-identical input gives byte-identical
//! output. The alert members added since the first release (`reason`, `subject`) come last, so
//! that what every alert carried before is byte for byte what it carries now.

use serde::Serialize;
use swipeguard_detectors::{Alert, EventType, FeatureSurprise, Item, Millis, Transaction};

use crate::codec::format_ts;

#[derive(Serialize)]
struct Window {
    start: String,
    end: String,
}

#[derive(Serialize)]
struct AlertJson<'a> {
    alert_id: &'a str,
    detector: &'static str,
    severity: &'static str,
    card_id: &'a str,
    ts: String,
    window: Window,
    evidence: Vec<&'a str>,
    score: f64,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_for: Option<String>,
    explanation: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    features: &'a [FeatureSurprise],
    detector_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    subject: SubjectJson<'a>,
}

#[derive(Serialize)]
struct SubjectJson<'a> {
    kind: &'static str,
    id: &'a str,
}

/// `24h`, `90m`, `45s`, `250ms`: the largest whole unit, as config durations are written.
pub fn format_duration(d: Millis) -> String {
    let ms = d.0;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Appends one alert as a JSON line (with the trailing newline).
pub fn encode_alert(alert: &Alert, out: &mut Vec<u8>) {
    let json = AlertJson {
        alert_id: &alert.alert_id.0,
        detector: alert.detector.as_str(),
        severity: alert.severity.as_str(),
        card_id: alert.card_id.as_str(),
        ts: format_ts(alert.ts),
        window: Window {
            start: format_ts(alert.window_start),
            end: format_ts(alert.window_end),
        },
        evidence: alert.evidence.iter().map(|e| e.as_str()).collect(),
        score: alert.score,
        action: alert.action.as_str(),
        action_for: alert.action_for.map(format_duration),
        explanation: &alert.explanation,
        features: &alert.features,
        detector_version: &alert.detector_version,
        reason: alert.reason.as_deref(),
        subject: SubjectJson {
            kind: alert.subject.kind.as_str(),
            id: &alert.subject.id,
        },
    };
    // Writing plain strings and finite numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &json).is_ok() {
        out.push(b'\n');
    }
}

#[derive(Serialize)]
struct EventJson<'a> {
    event_id: &'a str,
    ts: String,
    card_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    amount_minor: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    merchant_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    merchant_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mcc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    terminal_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'static str>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    decline_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    visit_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    visit_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnosis: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    items: Vec<ItemJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
}

#[derive(Serialize)]
struct ItemJson<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    days_supply: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    trace_codes: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    split: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_minor: Option<u64>,
}

impl<'a> From<&'a Item> for ItemJson<'a> {
    fn from(it: &'a Item) -> Self {
        ItemJson {
            code: &it.code,
            group: it.group.as_deref(),
            quantity: it.quantity,
            days_supply: it.days_supply,
            trace_codes: it.trace_codes.iter().map(|c| c.as_str()).collect(),
            split: it.split,
            amount_minor: it.amount.map(|a| a.0),
        }
    }
}

/// Appends one event as a JSON line in the §2 format (with the trailing newline); the §12 fields
/// only when the event has them, so a plain swipe encodes as it always did.
pub fn encode_event(tx: &Transaction, out: &mut Vec<u8>) {
    let s = tx.settlement.as_deref();
    let json = EventJson {
        event_id: tx.event_id.as_str(),
        ts: format_ts(tx.ts),
        card_id: tx.card_id.as_str(),
        account_id: tx.account_id.as_deref(),
        amount_minor: tx.amount.0,
        currency: tx.currency.as_deref(),
        merchant_id: &tx.merchant_id,
        merchant_kind: tx.merchant_kind.map(|k| k.as_str()),
        mcc: tx.mcc.as_deref(),
        terminal_id: tx.terminal_id.as_deref(),
        region: tx.region.as_deref(),
        lat: tx.geo.map(|g| g.lat),
        lon: tx.geo.map(|g| g.lon),
        channel: tx.channel.map(|c| c.as_str()),
        outcome: tx.outcome.as_str(),
        decline_reason: tx.decline_reason.map(|r| r.as_str()),
        event_type: s
            .map(|s| s.event_type)
            .filter(|t| *t != EventType::Settlement)
            .map(|t| t.as_str()),
        visit_type: s.and_then(|s| s.visit_type).map(|v| v.as_str()),
        visit_id: s.and_then(|s| s.visit_id.as_deref()),
        cert_type: s.and_then(|s| s.cert_type).map(|c| c.as_str()),
        diagnosis: s.and_then(|s| s.diagnosis.as_deref()),
        items: tx.items().iter().map(ItemJson::from).collect(),
        label: tx.label.as_deref(),
    };
    if serde_json::to_writer(&mut *out, &json).is_ok() {
        out.push(b'\n');
    }
}
