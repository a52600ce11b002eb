//! Format 1: the snapshot every build before detector sections wrote — one positional blob with
//! the five card detectors' states side by side per card. Read by converting it into a format 2
//! body with one section per detector, tagged `VERSION` 1 (what those states were), so that a
//! detector whose version has moved on since discards its section like any other.
//!
//! The structures below are frozen copies of the format-1 layout: never change them. Format 1
//! carried no per-detector configuration, and the builds that wrote it restored under any
//! thresholds; its sections are therefore taken as written under the current configuration.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Block, Body, Section, StageBody};
use crate::config::EngineConfig;
use crate::detector::Detector;
use crate::detectors::{failed_pin, impossible_travel, off_pattern, pin_success, rapid_fire};
use crate::engine::detector_fingerprint;
use crate::model::{
    AmountMinor, CardId, Channel, DeclineReason, DetectorName, EventId, EventMeta, EventTime,
    GeoPoint, KeyKind, MerchantKind, Outcome, Text, Transaction,
};
use crate::watermark::Watermark;

/// A window of marks (`window::Recent` in format 1).
type Recent = Vec<MarkV1>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct MarkV1 {
    ts: EventTime,
    id: EventId,
    place: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct WindowState {
    marks: Recent,
    cooldown: Cooldown,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Cooldown(EventTime);

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown(EventTime::MIN)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Fix {
    ts: EventTime,
    id: EventId,
    lat: f32,
    lon: f32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TravelState {
    last: Option<Fix>,
    cooldown: Cooldown,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Profile {
    n: u32,
    last: EventTime,
    weight: f32,
    amount_mean: [f32; 4],
    amount_m2: [f32; 4],
    kinds: [u16; 4],
    hours: [u16; 24],
    regions: [(u32, u16); 4],
    novel: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct OffPatternState {
    profile: Profile,
    cooldown: Cooldown,
}

#[derive(Clone, Debug, Deserialize)]
struct CardState {
    last_seen: EventTime,
    failed_pin: WindowState,
    pin_success: WindowState,
    rapid_fire: WindowState,
    travel: TravelState,
    off_pattern: OffPatternState,
}

/// The event layout of formats 1 and 2 (format 3 added the settlement fields).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct TransactionV1 {
    event_id: EventId,
    ts: EventTime,
    card_id: CardId,
    account_id: Option<Text>,
    amount: AmountMinor,
    currency: Option<Text>,
    merchant_id: Text,
    merchant_kind: Option<MerchantKind>,
    mcc: Option<Text>,
    terminal_id: Option<Text>,
    region: Option<Text>,
    geo: Option<GeoPoint>,
    channel: Option<Channel>,
    outcome: Outcome,
    decline_reason: Option<DeclineReason>,
    label: Option<Text>,
    meta: EventMeta,
}

impl From<TransactionV1> for Transaction {
    fn from(t: TransactionV1) -> Transaction {
        Transaction {
            event_id: t.event_id,
            ts: t.ts,
            card_id: t.card_id,
            account_id: t.account_id,
            amount: t.amount,
            currency: t.currency,
            merchant_id: t.merchant_id,
            merchant_kind: t.merchant_kind,
            mcc: t.mcc,
            terminal_id: t.terminal_id,
            region: t.region,
            geo: t.geo,
            channel: t.channel,
            outcome: t.outcome,
            decline_reason: t.decline_reason,
            settlement: None,
            label: t.label,
            meta: t.meta,
        }
    }
}

#[derive(Deserialize)]
struct BodyV1 {
    position: u64,
    config_fingerprint: u64,
    watermark: Watermark,
    last_released: Option<(EventTime, EventId)>,
    clock: EventTime,
    pending: Vec<TransactionV1>,
    cards: Vec<(CardId, CardState)>,
}

/// The format-1 layout of the engine configuration, for its fingerprint.
#[derive(Serialize)]
struct EngineConfigV1<'a> {
    allowed_lateness: std::time::Duration,
    max_tracked_cards: usize,
    failed_pin: &'a failed_pin::FailedPinConfig,
    pin_success_after_failures: &'a pin_success::PinSuccessConfig,
    rapid_fire: &'a rapid_fire::RapidFireConfig,
    impossible_travel: &'a impossible_travel::ImpossibleTravelConfig,
    off_pattern: &'a off_pattern::OffPatternConfig,
}

/// What format 1 fingerprinted `config` as (to tell whether it changed since).
pub(super) fn fingerprint(config: &EngineConfig) -> u64 {
    let d = &config.detectors;
    let v1 = EngineConfigV1 {
        allowed_lateness: config.allowed_lateness,
        max_tracked_cards: config.max_tracked_cards,
        failed_pin: &d.failed_pin,
        pin_success_after_failures: &d.pin_success_after_failures,
        rapid_fire: &d.rapid_fire,
        impossible_travel: &d.impossible_travel,
        off_pattern: &d.off_pattern,
    };
    let bytes = postcard::to_allocvec(&v1).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// One format-1 detector's states as a version-1 section: (key position, state) for every card
/// whose state holds something.
fn section<S: Serialize + Default + PartialEq>(
    name: &'static str,
    config: &EngineConfig,
    states: impl Iterator<Item = S>,
) -> Section<'static> {
    let held: Vec<(u32, S)> = states
        .enumerate()
        .filter(|(_, s)| *s != S::default())
        .map(|(i, s)| (i as u32, s))
        .collect();
    let fingerprint =
        DetectorName::parse(name).map_or(0, |d| detector_fingerprint(&config.detectors, d));
    Section {
        name: std::borrow::Cow::Borrowed(name),
        version: 1,
        fingerprint,
        states: Block(std::borrow::Cow::Owned(
            postcard::to_allocvec(&held).unwrap_or_default(),
        )),
    }
}

/// Converts a format-1 body into a format-2 body.
pub(super) fn convert(body: &[u8], config: &EngineConfig) -> Result<Vec<u8>, postcard::Error> {
    let v1: BodyV1 = postcard::from_bytes(body)?;
    let cards = &v1.cards;
    let sections = vec![
        section(
            failed_pin::FailedPin::NAME,
            config,
            cards.iter().map(|(_, c)| c.failed_pin.clone()),
        ),
        section(
            pin_success::PinSuccess::NAME,
            config,
            cards.iter().map(|(_, c)| c.pin_success.clone()),
        ),
        section(
            rapid_fire::RapidFire::NAME,
            config,
            cards.iter().map(|(_, c)| c.rapid_fire.clone()),
        ),
        section(
            impossible_travel::ImpossibleTravel::NAME,
            config,
            cards.iter().map(|(_, c)| c.travel.clone()),
        ),
        section(
            off_pattern::OffPattern::NAME,
            config,
            cards.iter().map(|(_, c)| c.off_pattern.clone()),
        ),
    ];
    let stage = StageBody {
        kind: KeyKind::Card,
        watermark: v1.watermark,
        last_released: v1.last_released,
        clock: v1.clock,
        pending: v1.pending.into_iter().map(Transaction::from).collect(),
        keys: v1
            .cards
            .iter()
            .map(|(id, c)| (Text::new(id.as_str()), c.last_seen))
            .collect(),
        // Format 1 had no sweep: every key is still to be offered to it.
        sweep: (!v1.cards.is_empty()).then_some(0),
        sections,
    };
    let body = Body {
        position: v1.position,
        config_fingerprint: v1.config_fingerprint,
        stages: vec![stage],
    };
    postcard::to_allocvec(&body)
}
