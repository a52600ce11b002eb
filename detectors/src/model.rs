//! The event and alert model (DESIGN §2, §4).
//!
//! Money is integer minor units (fen), never a float. Event time is milliseconds since the Unix
//! epoch, UTC, as stamped by the terminal; nothing in this crate ever reads a clock. Categorical
//! fields (`outcome`, `decline_reason`, `channel`, `merchant_kind`) are closed enums: a value the
//! fund's feed adds later maps to `Other` rather than failing the event.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A card token as it travels on the bus (already tokenised or hashed; never a raw card number).
/// Kept inline up to 24 bytes (every usual token and the keyed hash's form), so that copying a
/// card id into a stage or an alert does not allocate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CardId(Text);

impl CardId {
    pub fn new(id: impl AsRef<str>) -> Self {
        CardId(Text::new(id.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A swipe's unique id. Shared because the same id sits in several detectors' windows; a thin
/// pointer (one word) to one block holding count, length and text.
/// (Its `Deserialize` is in `crate::intern`, which keeps that sharing through a restore.)
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EventId(arcstr::ArcStr);

impl EventId {
    pub fn new(id: impl AsRef<str>) -> Self {
        EventId(arcstr::ArcStr::from(id.as_ref()))
    }

    pub(crate) fn from_shared(text: arcstr::ArcStr) -> Self {
        EventId(text)
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> arcstr::ArcStr {
        self.0.clone()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This handle's share of the heap block holding the string: the block is shared by every
    /// window that remembers the event, so each holder counts 1/holders of it.
    pub fn heap_share(&self) -> usize {
        let holders = arcstr::ArcStr::strong_count(&self.0).unwrap_or(1).max(1);
        crate::detector::heap_block(16 + self.0.len()) / holders
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Event time: milliseconds since the Unix epoch (UTC), as stamped at the terminal.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
pub struct EventTime(pub i64);

impl EventTime {
    pub const MIN: EventTime = EventTime(i64::MIN);

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, d: Millis) -> EventTime {
        EventTime(self.0.saturating_add(d.0))
    }

    pub fn saturating_sub(self, d: Millis) -> EventTime {
        EventTime(self.0.saturating_sub(d.0))
    }

    /// `self - earlier`, saturating; negative when `earlier` is later.
    pub fn since(self, earlier: EventTime) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

/// A span of event time in milliseconds. Configuration durations are converted to this once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
pub struct Millis(pub i64);

impl Millis {
    pub fn from_duration(d: std::time::Duration) -> Millis {
        Millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn hours_f64(self) -> f64 {
        self.0 as f64 / 3_600_000.0
    }
}

impl fmt::Display for Millis {
    /// Compact human form for explanations: `4m12s`, `2h5m`, `850ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.max(0);
        if ms < 1000 {
            return write!(f, "{ms}ms");
        }
        let s = ms / 1000;
        let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        let mut out = String::new();
        for (v, unit) in [(d, "d"), (h, "h"), (m, "m"), (sec, "s")] {
            if v > 0 {
                out.push_str(&format!("{v}{unit}"));
            }
        }
        f.write_str(&out)
    }
}

/// Amount in minor units (fen). Refunds are rejected at decoding; amounts here are never negative.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
pub struct AmountMinor(pub u64);

impl fmt::Display for AmountMinor {
    /// `¥1,234.56`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yuan = self.0 / 100;
        let fen = self.0 % 100;
        let digits = yuan.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        write!(f, "¥{grouped}.{fen:02}")
    }
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name on the wire, in alerts and in metric labels.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// Whether the swipe went through; `refunded` is a return or reversal of an earlier
    /// settlement (DESIGN §12). New variants go last: snapshots store the variant's place.
    Outcome { Approved = "approved", Declined = "declined", Refunded = "refunded" }
);

wire_enum!(
    /// Why a swipe was declined; unknown codes map to `Other`.
    DeclineReason {
        BadPin = "bad_pin",
        InsufficientFunds = "insufficient_funds",
        CardLocked = "card_locked",
        CardLost = "card_lost",
        Expired = "expired",
        Other = "other",
    }
);

wire_enum!(
    /// How the card met the terminal; unknown values map to `Other` (treated as card-present).
    Channel {
        Chip = "chip",
        Swipe = "swipe",
        Contactless = "contactless",
        Qr = "qr",
        Online = "online",
        Other = "other",
    }
);

wire_enum!(
    /// What sort of merchant took the swipe; unknown kinds map to `Other`.
    MerchantKind { Hospital = "hospital", Clinic = "clinic", Pharmacy = "pharmacy", Other = "other" }
);

impl Outcome {
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "approved" => Some(Outcome::Approved),
            "declined" => Some(Outcome::Declined),
            "refunded" => Some(Outcome::Refunded),
            _ => None,
        }
    }
}

impl DeclineReason {
    pub fn parse(s: &str) -> DeclineReason {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .unwrap_or(DeclineReason::Other)
    }
}

impl Channel {
    pub fn parse(s: &str) -> Channel {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .unwrap_or(Channel::Other)
    }
}

impl MerchantKind {
    pub fn parse(s: &str) -> MerchantKind {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .unwrap_or(MerchantKind::Other)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A merchant location in degrees (WGS 84).
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

/// A short text field of an event (merchant, region, codes): up to 24 bytes are kept inline, so
/// decoding an ordinary swipe allocates for its ids only, not for every code it carries.
pub type Text = compact_str::CompactString;

/// One swipe, decoded and validated (DESIGN §2).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Transaction {
    pub event_id: EventId,
    pub ts: EventTime,
    pub card_id: CardId,
    pub account_id: Option<Text>,
    pub amount: AmountMinor,
    pub currency: Option<Text>,
    pub merchant_id: Text,
    pub merchant_kind: Option<MerchantKind>,
    pub mcc: Option<Text>,
    pub terminal_id: Option<Text>,
    pub region: Option<Text>,
    pub geo: Option<GeoPoint>,
    pub channel: Option<Channel>,
    pub outcome: Outcome,
    pub decline_reason: Option<DeclineReason>,
    /// The 医保 settlement fields (DESIGN §12); `None` for a plain swipe, which then costs one
    /// pointer. Shared, not owned: every stage that buffers the event holds the same fields.
    pub settlement: Option<std::sync::Arc<crate::settlement::Settlement>>,
    /// Ground truth for scoring a replay. Detectors never read it.
    pub label: Option<Text>,
    /// Where and when the shell got the event (wall clock, for latency metrics). Detectors
    /// never read it and it never reaches an alert's content; it rides along so that the alert
    /// an event triggers can say when that event arrived.
    #[serde(default)]
    pub meta: EventMeta,
}

/// Shell bookkeeping carried by an event, opaque to the core.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct EventMeta {
    /// When the event was produced to the bus (Kafka message timestamp), ms since the epoch.
    pub produced_at_ms: i64,
    /// When the daemon received it, ms since the epoch.
    pub arrived_at_ms: i64,
}

impl Transaction {
    pub fn is_bad_pin(&self) -> bool {
        self.outcome == Outcome::Declined && self.decline_reason == Some(DeclineReason::BadPin)
    }

    /// Card-present means a physical terminal: anything but `online` (an absent channel counts).
    pub fn is_card_present(&self) -> bool {
        self.channel != Some(Channel::Online)
    }
}

/// A registered detector, named by its place in [`crate::registry::REGISTRY`] (the order the
/// engine runs them for each event). On the wire it is the detector's name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DetectorName(u8);

impl DetectorName {
    /// Every registered detector, in registry order.
    pub fn all() -> impl Iterator<Item = DetectorName> + Clone {
        (0..crate::registry::REGISTRY.len()).map(|i| DetectorName(i as u8))
    }

    pub(crate) fn at(index: usize) -> DetectorName {
        debug_assert!(index < crate::registry::REGISTRY.len());
        DetectorName(index as u8)
    }

    pub fn as_str(self) -> &'static str {
        self.registration().name
    }

    pub fn parse(s: &str) -> Option<DetectorName> {
        Self::all().find(|d| d.as_str() == s)
    }

    /// The registered detector called `name`; for tests and tools that name a detector in code.
    #[cfg(any(test, feature = "testing"))]
    #[allow(clippy::panic)]
    pub fn named(name: &str) -> DetectorName {
        Self::parse(name).unwrap_or_else(|| panic!("no detector is registered as {name}"))
    }

    /// Position in the registry, for per-detector counters ([`crate::PerDetector`]).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The key the detector keeps its state under.
    pub fn key(self) -> KeyKind {
        self.registration().key
    }

    pub fn registration(self) -> &'static crate::registry::Registration {
        &crate::registry::REGISTRY[self.index()]
    }
}

impl fmt::Debug for DetectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DetectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DetectorName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DetectorName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DetectorName::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown detector {name}")))
    }
}

wire_enum!(
    /// What a detector keeps its state under (DESIGN §11). Each kind is a stage.
    KeyKind { Card = "card", Terminal = "terminal", Account = "account", TraceCode = "trace_code" }
);

impl KeyKind {
    pub const COUNT: usize = 4;

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whom an alert is about: a card, a terminal, an insured person or a traceability code.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Subject {
    pub kind: KeyKind,
    pub id: Text,
}

wire_enum!(
    /// How urgently an analyst should look.
    Severity { Low = "low", Medium = "medium", High = "high" }
);

wire_enum!(
    /// What the detector recommends the fund does.
    Action {
        LockCard = "lock_card",
        VerifyCardholder = "verify_cardholder",
        Review = "review",
        InspectTerminal = "inspect_terminal",
        InvestigateResale = "investigate_resale",
        InvestigateStay = "investigate_stay",
    }
);

/// The stable id of an alert: a hash of detector, subject and first evidence event id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct AlertId(pub String);

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How surprising one feature of a swipe was under the card's own profile (off_pattern).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct FeatureSurprise {
    /// `amount`, `merchant_kind`, `hour` or `region`.
    pub feature: String,
    /// The swipe's value, as a person would read it.
    pub observed: String,
    /// What the card usually does, as a person would read it.
    pub usual: String,
    /// Probability of a value at least this unusual under the profile.
    pub p_value: f64,
}

/// One alert (DESIGN §4). The shell encodes it as JSON; times stay [`EventTime`] here.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: AlertId,
    pub detector: DetectorName,
    pub severity: Severity,
    pub card_id: CardId,
    /// Event time of the triggering swipe.
    pub ts: EventTime,
    pub window_start: EventTime,
    pub window_end: EventTime,
    /// Event ids that make the case, oldest first; the first one names the alert.
    pub evidence: Vec<EventId>,
    pub score: f64,
    pub action: Action,
    /// How long the recommended action should hold (the card lock), if it is time-bound.
    pub action_for: Option<Millis>,
    pub explanation: String,
    /// Per-feature surprise, for detectors that score features (off_pattern); else empty.
    pub features: Vec<FeatureSurprise>,
    pub detector_version: Arc<str>,
    /// Whom the alert is about; for the card detectors, the card.
    pub subject: Subject,
    /// Which of a detector's findings this is, for detectors with several (DESIGN §12).
    pub reason: Option<std::borrow::Cow<'static, str>>,
    /// The triggering event's shell bookkeeping (not part of the alert's content).
    pub trigger_meta: EventMeta,
}
