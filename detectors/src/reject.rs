//! Why an event is refused: one closed set of reasons with stable names, used for the
//! dead-letter header, the rejects file and the `reason` metric label. Decoding lives in the
//! shell; the names live here so that every entry point says the same thing.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Larger than the configured message size limit.
    Oversized,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// Not parseable as JSON.
    NotJson,
    /// A CSV row the CSV reader cannot split (unbalanced quotes and the like).
    MalformedRow,
    /// JSON nested deeper than the decoder allows.
    TooDeep,
    /// Valid JSON, but not an object.
    NotObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type (a number where a string belongs, a fractional amount…).
    WrongType,
    /// A field has a value outside its vocabulary (an `outcome` other than approved/declined).
    BadValue,
    /// `amount_minor` below zero.
    NegativeAmount,
    /// `amount_minor` above the configured ceiling.
    AbsurdAmount,
    /// `ts` is neither RFC 3339 nor epoch milliseconds.
    BadTimestamp,
    /// `ts` parses but lies outside the accepted years.
    TimestampOutOfRange,
    /// Older than the watermark: arrived too late to be detected.
    Late,
    /// Same event time and id as an event already admitted.
    Duplicate,
}

impl RejectReason {
    pub const ALL: [RejectReason; 15] = [
        RejectReason::Oversized,
        RejectReason::NotUtf8,
        RejectReason::NotJson,
        RejectReason::MalformedRow,
        RejectReason::TooDeep,
        RejectReason::NotObject,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::BadValue,
        RejectReason::NegativeAmount,
        RejectReason::AbsurdAmount,
        RejectReason::BadTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::Late,
        RejectReason::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Oversized => "oversized",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::NotJson => "not_json",
            RejectReason::MalformedRow => "malformed_row",
            RejectReason::TooDeep => "too_deep",
            RejectReason::NotObject => "not_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::BadValue => "bad_value",
            RejectReason::NegativeAmount => "negative_amount",
            RejectReason::AbsurdAmount => "absurd_amount",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::Late => "late",
            RejectReason::Duplicate => "duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<RejectReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RejectReason::ALL.len());
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::parse(r.as_str()), Some(r));
        }
    }
}
