//! The one text form the API takes for each value a client writes: an
//! address, a 32-byte hash, hex bytes, a decimal integer. Anything else is
//! refused, with a message saying what was expected, rather than read as the
//! same value: two spellings of one thing would be two things to whoever
//! compares text (a cache, a log search, a signature over the text).
//!
//! Market keys have their canonical text in [`crate::market_key`], and
//! segment payloads theirs in [`crate::canonical`].

use alloy_primitives::{Address, B256, U256};
use thiserror::Error;

/// Why a value's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    #[error("'{0}' must start with 0x")]
    NoPrefix(String),
    #[error("'{text}' must be 0x and {digits} hex digits")]
    Hex { text: String, digits: usize },
    #[error("'{0}' must be 0x and an even number of hex digits")]
    HexBytes(String),
    #[error("'{text}' has a wrong EIP-55 checksum: write {checksummed} or all lowercase")]
    Checksum { text: String, checksummed: String },
    #[error("'{0}' must be a decimal integer: digits only, no sign, no leading zeros")]
    Decimal(String),
    #[error("'{0}' is over the largest value this field holds")]
    TooLarge(String),
}

fn hex_digits(text: &str) -> Result<&str, TextError> {
    text.strip_prefix("0x").ok_or_else(|| TextError::NoPrefix(text.to_owned()))
}

fn fixed_hex<const N: usize>(text: &str) -> Result<[u8; N], TextError> {
    let digits = hex_digits(text)?;
    let bad = || TextError::Hex { text: text.to_owned(), digits: 2 * N };
    if digits.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    alloy_primitives::hex::decode_to_slice(digits, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// An address: `0x` and 40 hex digits, all lowercase or with a valid EIP-55
/// checksum (a mixed-case address whose checksum is wrong is a typo).
pub fn address(text: &str) -> Result<Address, TextError> {
    let address = Address::from(fixed_hex::<20>(text)?);
    let digits = &text[2..];
    let lowercase = !digits.bytes().any(|b| b.is_ascii_uppercase());
    let checksummed = address.to_checksum(None);
    if lowercase || checksummed == text {
        Ok(address)
    } else {
        Err(TextError::Checksum { text: text.to_owned(), checksummed })
    }
}

/// A 32-byte hash or id: `0x` and 64 hex digits (either case: a hash has no checksum).
pub fn b256(text: &str) -> Result<B256, TextError> {
    fixed_hex::<32>(text).map(B256::from)
}

/// Bytes as `0x` and an even number of hex digits.
pub fn hex_bytes(text: &str) -> Result<Vec<u8>, TextError> {
    alloy_primitives::hex::decode(hex_digits(text)?).map_err(|_| TextError::HexBytes(text.to_owned()))
}

fn decimal_digits(text: &str) -> Result<&str, TextError> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if canonical { Ok(text) } else { Err(TextError::Decimal(text.to_owned())) }
}

/// A decimal `u64`, such as a segment id.
pub fn decimal_u64(text: &str) -> Result<u64, TextError> {
    decimal_digits(text)?.parse().map_err(|_| TextError::TooLarge(text.to_owned()))
}

/// A decimal `uint256`, such as an amount of base units or a nonce.
pub fn decimal_u256(text: &str) -> Result<U256, TextError> {
    U256::from_str_radix(decimal_digits(text)?, 10).map_err(|_| TextError::TooLarge(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_lowercase_or_checksummed_and_prefixed() {
        let checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let a = address(checksummed).unwrap();
        assert_eq!(address(&checksummed.to_ascii_lowercase()), Ok(a));
        let wrong = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert!(matches!(address(wrong), Err(TextError::Checksum { checksummed: c, .. }) if c == checksummed));
        assert!(address(&checksummed.to_ascii_uppercase().replace("0X", "0x")).is_err(), "all caps is no checksum");
        assert_eq!(address(&checksummed[2..]), Err(TextError::NoPrefix(checksummed[2..].to_owned())));
        assert!(matches!(address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae"), Err(TextError::Hex { .. })));
        assert!(matches!(address("0xzaaeb6053f3e94c9b9a09f33669435e7ef1beaed"), Err(TextError::Hex { .. })));
    }

    #[test]
    fn hashes_and_bytes_are_prefixed_hex() {
        let one = format!("0x{}1", "0".repeat(63));
        assert_eq!(b256(&one).unwrap(), B256::with_last_byte(1));
        assert!(b256(&one[2..]).is_err() && b256("0x12").is_err());
        assert_eq!(hex_bytes("0x0aFF").unwrap(), vec![0x0a, 0xff]);
        assert!(hex_bytes("0aff").is_err() && hex_bytes("0xabc").is_err() && hex_bytes("0xnothex").is_err());
    }

    #[test]
    fn a_decimal_has_one_spelling() {
        assert_eq!(decimal_u64("0"), Ok(0));
        assert_eq!(decimal_u64("1234"), Ok(1234));
        for bad in ["", "+0", "00", "-1", "01", " 1", "1 ", "1e3", "0x10", "1_000"] {
            assert_eq!(decimal_u64(bad), Err(TextError::Decimal(bad.to_owned())), "{bad}");
        }
        assert_eq!(decimal_u64("18446744073709551616"), Err(TextError::TooLarge("18446744073709551616".into())));
        assert_eq!(decimal_u256("2500000000000000000"), Ok(U256::from(2_500_000_000_000_000_000u128)));
        assert!(decimal_u256("007").is_err());
    }
}
