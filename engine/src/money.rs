//! PAT amounts: integers in base units (18 decimals), their decimal text form,
//! and exact integer helpers. No float ever holds money: pricing works in
//! integer ticks (see `pricing::quote_ticks` for the rounding rule).

use thiserror::Error;

/// An amount of PAT in base units (10^-18 PAT). `uint256` on chain.
pub type Amount = u128;

/// Decimals of the PAT token.
pub const PAT_DECIMALS: u32 = 18;

/// One whole PAT in base units.
pub const ONE_PAT: Amount = 10u128.pow(PAT_DECIMALS);

/// Basis points in one whole (100%).
pub const BPS: u128 = 10_000;

/// Why a decimal PAT string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountParseError {
    #[error("empty amount")]
    Empty,
    #[error("'{0}' is not a decimal number of PAT (digits, at most one '.')")]
    NotDecimal(String),
    #[error("'{0}' has more than 18 decimals")]
    TooManyDecimals(String),
    #[error("'{0}' does not fit in 128 bits of base units")]
    Overflow(String),
}

/// Parses a decimal PAT amount such as `"2.5"` into base units, exactly.
pub fn parse_pat(text: &str) -> Result<Amount, AmountParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AmountParseError::Empty);
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits_ok(whole) || !digits_ok(frac) {
        return Err(AmountParseError::NotDecimal(text.to_owned()));
    }
    if frac.len() > PAT_DECIMALS as usize {
        return Err(AmountParseError::TooManyDecimals(text.to_owned()));
    }
    let overflow = || AmountParseError::Overflow(text.to_owned());
    let whole: Amount = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| overflow())? };
    let frac_units: Amount = if frac.is_empty() {
        0
    } else {
        let scale = 10u128.pow(PAT_DECIMALS - frac.len() as u32);
        frac.parse::<Amount>().map_err(|_| overflow())? * scale
    };
    whole.checked_mul(ONE_PAT).and_then(|w| w.checked_add(frac_units)).ok_or_else(overflow)
}

/// Formats base units as a decimal PAT string without trailing zeros (`2.5`).
pub fn format_pat(amount: Amount) -> String {
    let whole = amount / ONE_PAT;
    let frac = amount % ONE_PAT;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:018}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// `a * b / d` rounded down, exact for any `a, b` whose product fits in 256 bits
/// and whose quotient fits in 128; saturates otherwise. `d` must be positive.
pub fn mul_div_floor(a: u128, b: u128, d: u128) -> u128 {
    match a.checked_mul(b) {
        Some(p) => p / d,
        None => {
            // Split a = q*d + r: a*b/d = q*b + r*b/d, where r < d keeps r*b smaller.
            let (q, r) = (a / d, a % d);
            let high = q.saturating_mul(b);
            let low = match r.checked_mul(b) {
                Some(p) => p / d,
                None => return u128::MAX,
            };
            high.saturating_add(low)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_exactly() {
        assert_eq!(parse_pat("2.5").unwrap(), 2_500_000_000_000_000_000);
        assert_eq!(parse_pat("0.000000000000000001").unwrap(), 1);
        assert_eq!(parse_pat("7").unwrap(), 7 * ONE_PAT);
        assert_eq!(parse_pat(".5").unwrap(), ONE_PAT / 2);
        assert_eq!(format_pat(2_500_000_000_000_000_000), "2.5");
        assert_eq!(format_pat(1), "0.000000000000000001");
        assert_eq!(format_pat(0), "0");
        for text in ["0.1", "123.456", "1000000"] {
            assert_eq!(format_pat(parse_pat(text).unwrap()), text);
        }
    }

    #[test]
    fn refuses_bad_amounts() {
        assert_eq!(parse_pat(""), Err(AmountParseError::Empty));
        assert!(matches!(parse_pat("1.2.3"), Err(AmountParseError::NotDecimal(_))));
        assert!(matches!(parse_pat("-1"), Err(AmountParseError::NotDecimal(_))));
        assert!(matches!(parse_pat("1e18"), Err(AmountParseError::NotDecimal(_))));
        assert!(matches!(parse_pat("."), Err(AmountParseError::NotDecimal(_))));
        assert!(matches!(parse_pat("0.0000000000000000001"), Err(AmountParseError::TooManyDecimals(_))));
        assert!(matches!(parse_pat("999999999999999999999999"), Err(AmountParseError::Overflow(_))));
    }

    #[test]
    fn mul_div_is_exact_past_128_bits() {
        assert_eq!(mul_div_floor(10, 1, 3), 3);
        assert_eq!(mul_div_floor(u128::MAX, 2, 4), u128::MAX / 2);
        assert_eq!(mul_div_floor(u128::MAX, u128::MAX, 1), u128::MAX);
    }
}
