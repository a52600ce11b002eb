//! Short identifiers in 16 bytes, for stores that remember millions of them (traceability codes
//! and the ids of the settlements that registered them).
//!
//! A string of at most [`INLINE_MAX`] characters from `0-9 A-Z a-z -` — every traceability code
//! (20 digits) and most settlement ids — is kept inline, six bits a character; any other string
//! goes to a [`LongTexts`] side table and the 16 bytes name its place there. A string has exactly
//! one form (inline whenever it can be), so two inline values are equal exactly when their
//! strings are. The layout is internal: snapshots carry the strings, never these bits.

use crate::model::Text;

/// Longest string kept inline.
pub(crate) const INLINE_MAX: usize = 21;
const BITS: u32 = 6;
const TAG_SHIFT: u32 = 126;
const TAG_INLINE: u128 = 0;
const TAG_LONG: u128 = 1;
const TAG_VACANT: u128 = 3;

/// 16 bytes, 4-byte aligned (so that a record of several packs has no padding).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Packed([u32; 4]);

fn symbol(b: u8) -> Option<u128> {
    let s = match b {
        b'0'..=b'9' => b - b'0' + 1,
        b'A'..=b'Z' => b - b'A' + 11,
        b'a'..=b'z' => b - b'a' + 37,
        b'-' => 63,
        _ => return None,
    };
    Some(u128::from(s))
}

fn character(s: u8) -> char {
    char::from(match s {
        1..=10 => b'0' + s - 1,
        11..=36 => b'A' + s - 11,
        37..=62 => b'a' + s - 37,
        _ => b'-',
    })
}

impl Packed {
    /// The mark of a vacated record.
    pub const VACANT: Packed = Packed::from_value(TAG_VACANT << TAG_SHIFT);

    const fn from_value(v: u128) -> Packed {
        Packed([
            v as u32,
            (v >> 32) as u32,
            (v >> 64) as u32,
            (v >> 96) as u32,
        ])
    }

    fn value(self) -> u128 {
        let [a, b, c, d] = self.0.map(u128::from);
        a | b << 32 | c << 64 | d << 96
    }

    fn tag(self) -> u128 {
        self.value() >> TAG_SHIFT
    }

    /// `s` inline, if it fits.
    pub fn inline(s: &str) -> Option<Packed> {
        if s.len() > INLINE_MAX {
            return None;
        }
        let mut v = 0u128;
        for (i, b) in s.bytes().enumerate() {
            v |= symbol(b)? << (BITS * i as u32);
        }
        Some(Packed::from_value(v))
    }

    fn long(index: u32) -> Packed {
        Packed::from_value(TAG_LONG << TAG_SHIFT | u128::from(index))
    }

    /// The side-table place of a string that did not fit.
    pub fn long_index(self) -> Option<u32> {
        (self.tag() == TAG_LONG).then_some(self.value() as u32)
    }

    pub fn is_vacant(self) -> bool {
        self.tag() == TAG_VACANT
    }

    /// A value that spreads well for hashing an inline string (its own bits).
    pub fn bits(self) -> u128 {
        self.value()
    }

    /// Appends an inline string's characters (nothing for any other form).
    fn write_inline(self, out: &mut String) {
        if self.tag() != TAG_INLINE {
            return;
        }
        let mut v = self.value();
        while v != 0 {
            out.push(character((v & 0x3f) as u8));
            v >>= BITS;
        }
    }
}

/// The strings that do not fit inline, each in a slot until freed.
#[derive(Clone, Debug, Default)]
pub(crate) struct LongTexts {
    texts: Vec<Text>,
    vacant: Vec<u32>,
}

impl LongTexts {
    /// Packs `s`, taking a slot when it does not fit inline.
    pub fn pack(&mut self, s: &str) -> Packed {
        if let Some(p) = Packed::inline(s) {
            return p;
        }
        let text = Text::new(s);
        let index = match self.vacant.pop() {
            Some(i) => {
                self.texts[i as usize] = text;
                i
            }
            None => {
                self.texts.push(text);
                (self.texts.len() - 1) as u32
            }
        };
        Packed::long(index)
    }

    /// Gives back the slot of a long string (inline ones hold none).
    pub fn free(&mut self, p: Packed) {
        if let Some(i) = p.long_index() {
            if let Some(t) = self.texts.get_mut(i as usize) {
                *t = Text::default();
                self.vacant.push(i);
            }
        }
    }

    /// The long string `p` names (`None` for an inline one).
    pub fn long(&self, p: Packed) -> Option<&str> {
        p.long_index()
            .and_then(|i| self.texts.get(i as usize))
            .map(|t| t.as_str())
    }

    /// Whether `p` is the string `s`, whose inline form (if any) is `inline`.
    pub fn is(&self, p: Packed, s: &str, inline: Option<Packed>) -> bool {
        match inline {
            Some(q) => p == q,
            None => self.long(p) == Some(s),
        }
    }

    /// The string `p` stands for.
    pub fn string(&self, p: Packed) -> String {
        match self.long(p) {
            Some(s) => s.to_string(),
            None => {
                let mut out = String::with_capacity(INLINE_MAX);
                p.write_inline(&mut out);
                out
            }
        }
    }

    /// Bytes held: the slots and the long strings' heap blocks.
    pub fn bytes(&self) -> usize {
        let slots = self.texts.capacity() * std::mem::size_of::<Text>()
            + self.vacant.capacity() * std::mem::size_of::<u32>();
        let heap: usize = self
            .texts
            .iter()
            .filter(|t| t.is_heap_allocated())
            .map(|t| crate::detector::heap_block(t.len()))
            .sum();
        slots + heap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_ids_round_trip_inline_or_long() {
        let mut t = LongTexts::default();
        for s in [
            "",
            "88567779561581140451",
            "e0000655-0000",
            "s0000000000000000001",
            "zZ-09azAZ-123456789012",
            "123456789012345678901",
            "an id with spaces",
            "结算-0001",
            "1234567890123456789012",
        ] {
            let p = t.pack(s);
            assert_eq!(t.string(p), s);
            assert!(t.is(p, s, Packed::inline(s)));
            assert!(!p.is_vacant());
            assert_eq!(
                p.long_index().is_some(),
                s.len() > INLINE_MAX || !s.bytes().all(|b| symbol(b).is_some()),
                "{s}"
            );
        }
        assert!(t.bytes() > 0);
    }

    #[test]
    fn distinct_strings_pack_distinctly_and_freed_slots_are_reused() {
        let mut t = LongTexts::default();
        assert_ne!(Packed::inline("0"), Packed::inline("00"));
        assert_ne!(Packed::inline("a"), Packed::inline("A"));
        assert_eq!(Packed::inline("a_b"), None);
        let a = t.pack("a_b");
        let b = t.pack("a_c");
        assert!(!t.is(a, "a_c", None));
        t.free(a);
        let c = t.pack("a_d");
        assert_eq!(c.long_index(), a.long_index());
        assert_eq!(t.string(b), "a_c");
        assert_eq!(t.string(c), "a_d");
        assert!(Packed::VACANT.is_vacant());
        assert_eq!(std::mem::size_of::<Packed>(), 16);
        assert_eq!(std::mem::align_of::<Packed>(), 4);
    }
}
