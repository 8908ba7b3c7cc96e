//! The canonical form of a JSON text: RFC 8785 (JSON Canonicalization
//! Scheme). A segment's payload is listed only in this form, so one batch of
//! signals has one byte string, one `payloadHash`, and lists once: a
//! trailing space, reordered keys, `0.80` for `0.8` or a duplicate key would
//! otherwise make the same batch a new segment.
//!
//! The scheme: no whitespace; object members sorted by their keys' UTF-16
//! code units; strings with only `"`, `\` and control characters escaped
//! (`\b \t \n \f \r`, else `\u00xx`); numbers as ECMAScript writes an IEEE
//! double (shortest round-trip digits, exponent from 1e21 and below 1e-6).

use serde_json::Value;

/// `value` in canonical form.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

/// The canonical form of the JSON text `json`, or why it is not JSON. A text
/// is canonical when this gives back the same bytes.
pub fn canonicalize(json: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::from_slice::<Value>(json).map(|value| to_vec(&value))
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            // JSON numbers are IEEE doubles to this scheme, integers too.
            let n = n.as_f64().expect("a JSON number from serde_json is finite");
            out.extend_from_slice(number(n).as_bytes());
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut members: Vec<(&String, &Value)> = members.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key);
                out.push(b':');
                write(out, item);
            }
            out.push(b'}');
        }
    }
}

/// serde_json escapes exactly what the scheme escapes, the same way
/// (short escapes where they exist, else lowercase `\u00xx`).
fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
}

/// ECMAScript's `Number.prototype.toString` of a finite double.
fn number(n: f64) -> String {
    if n == 0.0 {
        return "0".into(); // -0 too
    }
    let (digits, exponent) = shortest_digits(n.abs());
    let (k, point) = (digits.len() as i32, exponent + 1);
    let sign = if n < 0.0 { "-" } else { "" };
    let body = if k <= point && point <= 21 {
        format!("{digits}{}", "0".repeat((point - k) as usize))
    } else if 0 < point && point <= 21 {
        format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
    } else if -6 < point && point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let e = point - 1;
        format!("{first}{fraction}e{}{}", if e < 0 { "-" } else { "+" }, e.abs())
    };
    format!("{sign}{body}")
}

/// The fewest significant digits that read back as `n` (positive), and the
/// decimal exponent of the first: `1424953923781206.2` is
/// `("14249539237812062", 15)`. Of two such digit strings equally close to
/// `n`, ECMAScript takes the even one, where Rust's `{:e}` rounds half up.
fn shortest_digits(n: f64) -> (String, i32) {
    let parts = |formatted: &str| -> (String, i32) {
        let (mantissa, exponent) = formatted.split_once('e').expect("LowerExp writes an exponent");
        let digits = mantissa.chars().filter(|c| *c != '.').collect();
        (digits, exponent.parse().expect("LowerExp writes a decimal exponent"))
    };
    let (mut digits, exponent) = parts(&format!("{n:e}"));
    // Every double has an exact decimal expansion of at most 767 significant digits.
    let (exact, exact_exponent) = parts(&format!("{n:.800e}"));
    let exact = exact.trim_end_matches('0');
    let k = digits.len();
    if exact_exponent == exponent && exact.len() == k + 1 && exact.ends_with('5') {
        // `n` lies halfway between `lower` and the next k-digit string up.
        let lower = &exact[..k];
        let last = lower.as_bytes()[k - 1];
        // (A 9 cannot be the odd one: rounding it up would carry into fewer
        // digits, which `{:e}` would have found.)
        digits = if last % 2 == 0 || last == b'9' {
            lower.to_owned()
        } else {
            format!("{}{}", &lower[..k - 1], char::from(last + 1))
        };
    }
    (digits, exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8785 appendix B: IEEE doubles (as bits) and their canonical text.
    #[test]
    fn numbers_are_written_as_ecmascript_writes_them() {
        let vectors: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, text) in vectors {
            assert_eq!(number(f64::from_bits(*bits)), *text, "{bits:#018x}");
        }
    }

    proptest::proptest! {
        /// Whatever the double, its text reads back as it.
        #[test]
        fn every_number_reads_back_as_itself(bits in proptest::prelude::any::<u64>()) {
            let n = f64::from_bits(bits);
            proptest::prop_assume!(n.is_finite());
            let text = number(n);
            proptest::prop_assert_eq!(text.parse::<f64>().unwrap(), if n == 0.0 { 0.0 } else { n }, "{}", text);
        }
    }

    /// RFC 8785 section 3.2.2's example.
    #[test]
    fn the_rfc_example_canonicalizes() {
        let input = br#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
                        \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(String::from_utf8(canonicalize(input).unwrap()).unwrap(), expected);
    }

    /// RFC 8785 section 3.2.3: keys sort by UTF-16 code units, so an emoji
    /// (a surrogate pair from U+D83D) sorts before U+FB33.
    #[test]
    fn keys_sort_by_utf16_code_units() {
        let input = r#"{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7}"#;
        let value: Value = serde_json::from_str(input).unwrap();
        let canonical: Value = serde_json::from_slice(&to_vec(&value)).unwrap();
        let text = String::from_utf8(to_vec(&value)).unwrap();
        let order: Vec<usize> = ["\\r", "\"1\"", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"]
            .iter()
            .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(canonical, value);
    }

    #[test]
    fn a_canonical_text_is_its_own_canonical_form_and_no_other_text_is() {
        let canonical =
            br#"{"signals":[{"category":"c","confidence":0.8,"intent":"PURCHASE_INTENT","ts":1700000000}]}"#;
        assert_eq!(canonicalize(canonical).unwrap(), canonical);
        for variant in [
            &br#"{"signals":[{"category":"c","confidence":0.8,"intent":"PURCHASE_INTENT","ts":1700000000}]} "#[..],
            br#"{"signals":[{"confidence":0.8,"category":"c","intent":"PURCHASE_INTENT","ts":1700000000}]}"#,
            br#"{"signals":[{"category":"c","confidence":0.80,"intent":"PURCHASE_INTENT","ts":1700000000}]}"#,
            br#"{"signals":[{"category":"c","confidence":0.8,"intent":"PURCHASE_INTENT","ts":1.7e9}]}"#,
            br#"{"signals":[{"category":"c","category":"c","confidence":0.8,"intent":"PURCHASE_INTENT","ts":1700000000}]}"#,
            br#"{"signals":[{"category":"\u0063","confidence":0.8,"intent":"PURCHASE_INTENT","ts":1700000000}]}"#,
        ] {
            let again = canonicalize(variant).unwrap();
            assert_ne!(again, variant, "{}", String::from_utf8_lossy(variant));
            assert_eq!(again, canonical, "{} has the same canonical form", String::from_utf8_lossy(variant));
        }
        assert!(canonicalize(b"{not json").is_err());
    }
}
