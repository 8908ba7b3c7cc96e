//! Names of markets: [`SegmentType`], [`Window`], [`ConfidenceBand`] and the
//! [`MarketKey`] they form, with the text form `PURCHASE_INTENT|7D|0.70-0.85`
//! (parse and display round-trip) and the 32-byte id used on chain.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Confidence scores and band edges are basis points: 0..=10_000 is [0, 1].
pub type ConfidenceBps = u16;

/// The top of the confidence scale (1.0).
pub const CONFIDENCE_MAX: ConfidenceBps = 10_000;

/// Why a market name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyParseError {
    #[error("segment type '{0}' must be 1-48 characters of A-Z, 0-9 and '_', starting with a letter")]
    SegmentType(String),
    #[error("window '{0}' must be a positive whole number of hours or days, such as 12H or 7D")]
    Window(String),
    #[error("confidence band '{0}' must be 'LO-HI' with 0 <= LO < HI <= 1 and at most 4 decimals")]
    Band(String),
    #[error("market key '{0}' must be TYPE|WINDOW|BAND, such as PURCHASE_INTENT|7D|0.70-0.85")]
    Key(String),
    #[error("'{given}' is not canonical: write '{canonical}'")]
    NotCanonical { given: String, canonical: String },
}

/// `value` if `given` is its canonical text (what `Display` writes), else
/// the error naming that text: each name has one spelling (`7D`, not `168H`
/// or `07D`; `0.70-0.85`, not `0.7-0.85`), which is also the text a market id
/// hashes and an order signs.
fn canonical<T: fmt::Display>(given: &str, value: T) -> Result<T, KeyParseError> {
    let canonical = value.to_string();
    if canonical == given { Ok(value) } else { Err(KeyParseError::NotCanonical { given: given.to_owned(), canonical }) }
}

/// The kind of intent a segment records, such as `PURCHASE_INTENT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentType(Arc<str>);

impl SegmentType {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SegmentType {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=48).contains(&s.len())
            && s.as_bytes()[0].is_ascii_uppercase()
            && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if ok { Ok(Self(s.into())) } else { Err(KeyParseError::SegmentType(s.to_owned())) }
    }
}

impl fmt::Display for SegmentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An observation window: how long a segment's signals stay sellable after the
/// window starts. Text form `12H` or `7D` (days whenever the length is whole days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    secs: u64,
}

const HOUR_SECS: u64 = 3_600;
const DAY_SECS: u64 = 86_400;

impl Window {
    /// A window of `secs` seconds; `None` unless it is a positive whole number of hours.
    pub fn from_secs(secs: u64) -> Option<Self> {
        (secs > 0 && secs.is_multiple_of(HOUR_SECS)).then_some(Self { secs })
    }

    pub fn secs(self) -> u64 {
        self.secs
    }
}

impl FromStr for Window {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        canonical(s, Self::read(s)?)
    }
}

impl Window {
    /// Any spelling of a window (`168H` for `7D`).
    fn read(s: &str) -> Result<Self, KeyParseError> {
        let bad = || KeyParseError::Window(s.to_owned());
        let unit = match s.as_bytes().last() {
            Some(b'H') => HOUR_SECS,
            Some(b'D') => DAY_SECS,
            _ => return Err(bad()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        Self::from_secs(n * unit).ok_or_else(bad)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secs.is_multiple_of(DAY_SECS) {
            write!(f, "{}D", self.secs / DAY_SECS)
        } else {
            write!(f, "{}H", self.secs / HOUR_SECS)
        }
    }
}

/// A half-open range of confidence `[lo, hi)`, closed at the top when `hi` is 1.0.
/// Text form `0.70-0.85`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfidenceBand {
    lo: ConfidenceBps,
    hi: ConfidenceBps,
}

impl ConfidenceBand {
    /// `None` unless `lo < hi <= 10_000`.
    pub fn new(lo: ConfidenceBps, hi: ConfidenceBps) -> Option<Self> {
        (lo < hi && hi <= CONFIDENCE_MAX).then_some(Self { lo, hi })
    }

    pub fn lo(self) -> ConfidenceBps {
        self.lo
    }

    pub fn hi(self) -> ConfidenceBps {
        self.hi
    }

    /// Whether a confidence score falls in this band.
    pub fn contains(self, confidence: ConfidenceBps) -> bool {
        self.lo <= confidence && (confidence < self.hi || confidence == CONFIDENCE_MAX && self.hi == CONFIDENCE_MAX)
    }

    /// Whether the two bands share any score.
    pub fn overlaps(self, other: Self) -> bool {
        self.lo < other.hi && other.lo < self.hi
    }
}

fn parse_unit_decimal(s: &str) -> Option<ConfidenceBps> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.len() != 1 || frac.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let whole: u16 = whole.parse().ok()?;
    let frac: u16 = if frac.is_empty() { 0 } else { frac.parse::<u16>().ok()? * 10u16.pow(4 - frac.len() as u32) };
    let bps = whole.checked_mul(CONFIDENCE_MAX)?.checked_add(frac)?;
    (bps <= CONFIDENCE_MAX).then_some(bps)
}

fn write_unit_decimal(f: &mut fmt::Formatter<'_>, bps: ConfidenceBps) -> fmt::Result {
    let (whole, frac) = (bps / CONFIDENCE_MAX, bps % CONFIDENCE_MAX);
    if frac % 100 == 0 { write!(f, "{whole}.{:02}", frac / 100) } else { write!(f, "{whole}.{frac:04}") }
}

impl FromStr for ConfidenceBand {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        canonical(s, Self::read(s)?)
    }
}

impl ConfidenceBand {
    /// Any spelling of a band (`0.7-0.85` for `0.70-0.85`).
    fn read(s: &str) -> Result<Self, KeyParseError> {
        let bad = || KeyParseError::Band(s.to_owned());
        let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
        let (lo, hi) = (parse_unit_decimal(lo).ok_or_else(bad)?, parse_unit_decimal(hi).ok_or_else(bad)?);
        Self::new(lo, hi).ok_or_else(bad)
    }
}

impl fmt::Display for ConfidenceBand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_unit_decimal(f, self.lo)?;
        f.write_str("-")?;
        write_unit_decimal(f, self.hi)
    }
}

/// One segment market: `(segment_type, window, confidence_band)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MarketKey {
    pub segment_type: SegmentType,
    pub window: Window,
    pub band: ConfidenceBand,
}

impl MarketKey {
    pub fn new(segment_type: SegmentType, window: Window, band: ConfidenceBand) -> Self {
        Self { segment_type, window, band }
    }

    /// The 32-byte id used on chain: `keccak256` of the text form.
    pub fn id(&self) -> B256 {
        keccak256(self.to_string().as_bytes())
    }
}

impl FromStr for MarketKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('|');
        let (Some(t), Some(w), Some(b), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(KeyParseError::Key(s.to_owned()));
        };
        canonical(s, Self::new(t.parse()?, Window::read(w)?, ConfidenceBand::read(b)?))
    }
}

impl fmt::Display for MarketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}|{}", self.segment_type, self.window, self.band)
    }
}

macro_rules! serde_via_text {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_text!(SegmentType, Window, ConfidenceBand, MarketKey);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_text_round_trips() {
        let key: MarketKey = "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap();
        assert_eq!(key.window.secs(), 7 * DAY_SECS);
        assert_eq!((key.band.lo(), key.band.hi()), (7000, 8500));
        assert_eq!(key.to_string(), "PURCHASE_INTENT|7D|0.70-0.85");
        assert_eq!(key.id(), keccak256(b"PURCHASE_INTENT|7D|0.70-0.85"));
        assert_eq!("12H".parse::<Window>().unwrap().to_string(), "12H");
        assert_eq!("0.7125-1.00".parse::<ConfidenceBand>().unwrap().to_string(), "0.7125-1.00");
    }

    /// Each name has one text; any other spelling is refused with the one to write.
    #[test]
    fn only_the_canonical_text_is_taken() {
        let not_canonical = |given: &str, canonical: &str| KeyParseError::NotCanonical {
            given: given.to_owned(),
            canonical: canonical.to_owned(),
        };
        assert_eq!("24H".parse::<Window>(), Err(not_canonical("24H", "1D")));
        assert_eq!("07D".parse::<Window>(), Err(not_canonical("07D", "7D")));
        assert_eq!("0.7125-1.0".parse::<ConfidenceBand>(), Err(not_canonical("0.7125-1.0", "0.7125-1.00")));
        for alias in ["PURCHASE_INTENT|168H|0.7-0.85", "PURCHASE_INTENT|07D|0.70-0.85", "PURCHASE_INTENT|7D|0.700-0.85"]
        {
            let err = alias.parse::<MarketKey>().unwrap_err();
            assert_eq!(err, not_canonical(alias, "PURCHASE_INTENT|7D|0.70-0.85"));
            assert!(err.to_string().contains("write 'PURCHASE_INTENT|7D|0.70-0.85'"), "{err}");
        }
    }

    #[test]
    fn refuses_malformed_names() {
        for bad in ["", "purchase", "1ABC", "A-B"] {
            assert!(bad.parse::<SegmentType>().is_err(), "{bad}");
        }
        for bad in ["", "D", "0D", "7W", "7", "-1D", "1.5D"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
        for bad in ["0.85-0.70", "0.7-0.7", "0.5", "0.5-1.1", "0.12345-0.5", "1.5-2"] {
            assert!(bad.parse::<ConfidenceBand>().is_err(), "{bad}");
        }
        for bad in ["A|7D", "A|7D|0.1-0.2|x", "a|7D|0.1-0.2"] {
            assert!(bad.parse::<MarketKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bands_are_half_open_but_close_at_one() {
        let low: ConfidenceBand = "0.50-0.70".parse().unwrap();
        let top: ConfidenceBand = "0.85-1.00".parse().unwrap();
        assert!(low.contains(5000) && low.contains(6999) && !low.contains(7000));
        assert!(top.contains(10_000) && top.contains(8500) && !top.contains(8499));
        assert!(!low.overlaps(top) && low.overlaps("0.60-0.90".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn any_valid_key_round_trips(
            t in "[A-Z][A-Z0-9_]{0,20}",
            hours in 1u64..10_000,
            lo in 0u16..10_000,
            width in 1u16..10_000,
        ) {
            let hi = lo.saturating_add(width).min(CONFIDENCE_MAX);
            prop_assume!(lo < hi);
            let key = MarketKey::new(
                t.parse().unwrap(),
                Window::from_secs(hours * HOUR_SECS).unwrap(),
                ConfidenceBand::new(lo, hi).unwrap(),
            );
            let text = key.to_string();
            prop_assert_eq!(text.parse::<MarketKey>().unwrap(), key);
        }
    }
}
