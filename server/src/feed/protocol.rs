//! The feed's wire format: client operations parsed from JSON text frames,
//! server messages serialized to JSON, market patterns, and the challenge a
//! consumer signs to authenticate. Amounts are decimal strings of base units.

use alloy_primitives::{Address, B256};
use pat_engine::market_key::KeyParseError;
use pat_engine::{Code, ConfidenceBand, MarketKey, SegmentType, Window, text};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use crate::dto::QuoteBody;

/// Why a client message was refused; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedError {
    pub code: Code,
    pub message: String,
}

impl FeedError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// `{"type":"error","code":...,"message":...}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({"type": "error", "code": self.code.as_str(), "message": self.message}).to_string()
    }
}

/// A client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Ping,
    /// EIP-191 signature of [`challenge_text`] by `address`.
    Auth {
        address: Address,
        /// As sent; [`verify_auth`] holds it to the signature rule.
        signature: Vec<u8>,
    },
}

/// A client message as written: every field any op takes. Unknown fields
/// and duplicate keys are refused, as in the REST API's bodies.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    op: String,
    markets: Option<Vec<String>>,
    address: Option<String>,
    signature: Option<String>,
}

/// Parses one text frame.
pub fn parse_op(text: &str) -> Result<ClientOp, FeedError> {
    let message: Message = serde_json::from_str(text).map_err(|e| {
        let not_object = !text.trim_start().starts_with('{');
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                FeedError::new(Code::MalformedMessage, format!("invalid JSON: {e}"))
            }
            Category::Data if not_object => FeedError::new(Code::MalformedMessage, "a message is a JSON object"),
            Category::Data => FeedError::new(Code::InvalidRequest, e.to_string()),
        }
    })?;
    let Message { op, markets, address, signature } = message;
    let allowed: &[&str] = match op.as_str() {
        "subscribe" | "unsubscribe" => &["markets"],
        "ping" => &[],
        "auth" => &["address", "signature"],
        other => return Err(FeedError::new(Code::UnknownOp, format!("unknown op `{other}`"))),
    };
    let given = [("markets", markets.is_some()), ("address", address.is_some()), ("signature", signature.is_some())];
    if let Some((extra, _)) = given.iter().find(|(name, present)| *present && !allowed.contains(name)) {
        return Err(FeedError::new(Code::InvalidRequest, format!("unknown field `{extra}` for op `{op}`")));
    }
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| FeedError::new(Code::InvalidRequest, format!("missing field `{name}`")))
    };
    let invalid =
        |name: &str, e: pat_engine::text::TextError| FeedError::new(Code::InvalidRequest, format!("`{name}`: {e}"));
    match op.as_str() {
        "ping" => Ok(ClientOp::Ping),
        "auth" => {
            let address = text::address(&required(address, "address")?).map_err(|e| invalid("address", e))?;
            let signature = text::hex_bytes(&required(signature, "signature")?).map_err(|e| invalid("signature", e))?;
            Ok(ClientOp::Auth { address, signature })
        }
        _ => {
            let markets = match markets {
                Some(markets) if !markets.is_empty() => markets,
                Some(_) => return Err(FeedError::new(Code::InvalidRequest, "`markets` is a non-empty array")),
                None => return Err(FeedError::new(Code::InvalidRequest, "missing field `markets`")),
            };
            Ok(if op == "subscribe" { ClientOp::Subscribe(markets) } else { ClientOp::Unsubscribe(markets) })
        }
    }
}

/// The markets (indices into `keys`) an entry names: a market key, or a
/// pattern with `*` for any whole part (`PURCHASE_INTENT|*|*`).
pub fn resolve(entry: &str, keys: &[(MarketKey, [String; 3])]) -> Result<Vec<u32>, FeedError> {
    let parts: Vec<&str> = entry.split('|').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(FeedError::new(
            Code::InvalidPattern,
            format!("`{entry}` is not TYPE|WINDOW|BAND (parts may be `*`)"),
        ));
    }
    // A key, or each named part of a pattern, in its one text, as REST takes it.
    let named = |e: KeyParseError| FeedError::new(Code::InvalidRequest, format!("`{entry}`: {e}"));
    if parts.contains(&"*") {
        part::<SegmentType>(parts[0])
            .and_then(|()| part::<Window>(parts[1]))
            .and_then(|()| part::<ConfidenceBand>(parts[2]))
            .map_err(named)?;
    } else {
        entry.parse::<MarketKey>().map_err(named)?;
    }
    let found: Vec<u32> = keys
        .iter()
        .enumerate()
        .filter(|(_, (_, text))| parts.iter().zip(text).all(|(p, t)| *p == "*" || p == t))
        .map(|(i, _)| i as u32)
        .collect();
    if found.is_empty() {
        return Err(FeedError::new(Code::UnknownMarket, format!("no market matches `{entry}`")));
    }
    Ok(found)
}

/// Checks one part of a pattern: `*`, or a name in its canonical text.
fn part<T: std::str::FromStr<Err = KeyParseError>>(part: &str) -> Result<(), KeyParseError> {
    if part == "*" { Ok(()) } else { part.parse::<T>().map(drop) }
}

/// The text a consumer signs (EIP-191 `personal_sign`) to authenticate.
pub fn challenge_text(challenge: &B256) -> String {
    format!("PAT feed authentication\nchallenge: {challenge}")
}

/// Checks that `signature` over the connection's challenge recovers to
/// `address`, under the one signature rule of every route
/// ([`pat_engine::eip712::parse_signature`]).
pub fn verify_auth(challenge: &B256, address: Address, signature: &[u8]) -> Result<(), FeedError> {
    let signature = pat_engine::eip712::parse_signature(signature)
        .map_err(|e| FeedError::new(Code::AuthFailed, format!("refused signature: {e}")))?;
    match signature.recover_address_from_msg(challenge_text(challenge)) {
        Ok(signer) if signer == address => Ok(()),
        Ok(signer) => Err(FeedError::new(Code::AuthFailed, format!("the signature is by {signer}, not {address}"))),
        Err(e) => Err(FeedError::new(Code::AuthFailed, format!("unrecoverable signature: {e}"))),
    }
}

/// A quote as the feed sends it, `type` being `quote` or `snapshot`; `ts` is
/// the publication time in microseconds since the Unix epoch.
#[derive(Serialize)]
pub struct QuoteMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub quote: &'a QuoteBody,
    pub ts: u64,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<(MarketKey, [String; 3])> {
        ["PURCHASE_INTENT|1D|0.50-0.70", "PURCHASE_INTENT|7D|0.50-0.70", "JOB_SEARCH|1D|0.50-0.70"]
            .iter()
            .map(|t| {
                let key: MarketKey = t.parse().unwrap();
                let parts = [key.segment_type.to_string(), key.window.to_string(), key.band.to_string()];
                (key, parts)
            })
            .collect()
    }

    #[test]
    fn patterns_match_whole_parts() {
        let keys = keys();
        assert_eq!(resolve("PURCHASE_INTENT|*|*", &keys).unwrap(), vec![0, 1]);
        assert_eq!(resolve("*|1D|*", &keys).unwrap(), vec![0, 2]);
        assert_eq!(resolve("*|*|*", &keys).unwrap(), vec![0, 1, 2]);
        assert_eq!(resolve("JOB_SEARCH|1D|0.50-0.70", &keys).unwrap(), vec![2]);
        assert_eq!(resolve("PURCHASE*|*|*", &keys).unwrap_err().code, Code::InvalidRequest);
        // Names in their one text only, as REST takes them.
        let alias = resolve("PURCHASE_INTENT|24H|0.5-0.7", &keys).unwrap_err();
        assert_eq!(alias.code, Code::InvalidRequest);
        assert!(alias.message.contains("write 'PURCHASE_INTENT|1D|0.50-0.70'"), "{}", alias.message);
        let alias = resolve("*|24H|*", &keys).unwrap_err();
        assert!(alias.message.contains("write '1D'"), "{}", alias.message);
        assert_eq!(resolve("JOB_SEARCH|30D|0.50-0.70", &keys).unwrap_err().code, Code::UnknownMarket);
        assert_eq!(resolve("JOB_SEARCH|*", &keys).unwrap_err().code, Code::InvalidPattern);
        assert_eq!(resolve("a||b", &keys).unwrap_err().code, Code::InvalidPattern);
    }

    #[test]
    fn ops_parse_or_name_their_error() {
        assert_eq!(parse_op(r#"{"op":"ping"}"#).unwrap(), ClientOp::Ping);
        assert_eq!(
            parse_op(r#"{"op":"subscribe","markets":["*|*|*"]}"#).unwrap(),
            ClientOp::Subscribe(vec!["*|*|*".into()])
        );
        let code = |text: &str| parse_op(text).unwrap_err().code;
        assert_eq!(code("{"), Code::MalformedMessage);
        assert_eq!(code("[1]"), Code::MalformedMessage);
        assert_eq!(code(r#"{"markets":[]}"#), Code::InvalidRequest);
        assert_eq!(code(r#"{"op":"trade"}"#), Code::UnknownOp);
        assert_eq!(code(r#"{"op":"subscribe"}"#), Code::InvalidRequest);
        assert_eq!(code(r#"{"op":"subscribe","markets":[]}"#), Code::InvalidRequest);
        assert_eq!(code(r#"{"op":"subscribe","markets":[1]}"#), Code::InvalidRequest);
        assert_eq!(code(r#"{"op":"ping","extra":1}"#), Code::InvalidRequest);
        assert_eq!(code(r#"{"op":"auth","address":"0x1","signature":"0x"}"#), Code::InvalidRequest);
        // Duplicate keys are refused, as REST refuses them, not read as the last one.
        assert_eq!(code(r#"{"op":"ping","op":"subscribe"}"#), Code::InvalidRequest);
        assert_eq!(code(r#"{"op":"subscribe","markets":["*|*|*"],"markets":["x"]}"#), Code::InvalidRequest);
        // An address is lowercase or EIP-55, with 0x; a signature 0x hex.
        let checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let auth = |address: &str, signature: &str| {
            parse_op(&format!(r#"{{"op":"auth","address":"{address}","signature":"{signature}"}}"#))
        };
        assert!(auth(checksummed, "0x00").is_ok());
        assert!(auth(&checksummed.to_ascii_lowercase(), "0x00").is_ok());
        assert_eq!(auth(&checksummed.replace("5aA", "5AA"), "0x00").unwrap_err().code, Code::InvalidRequest);
        assert_eq!(auth(&checksummed[2..], "0x00").unwrap_err().code, Code::InvalidRequest);
        assert_eq!(auth(checksummed, "00").unwrap_err().code, Code::InvalidRequest);
    }

    #[test]
    fn auth_accepts_only_the_signer() {
        use alloy_signer::SignerSync;
        let signer = alloy_signer_local::PrivateKeySigner::random();
        let challenge = B256::repeat_byte(7);
        let signature = signer.sign_message_sync(challenge_text(&challenge).as_bytes()).unwrap().as_bytes();
        verify_auth(&challenge, signer.address(), &signature).unwrap();
        assert_eq!(verify_auth(&challenge, Address::repeat_byte(1), &signature).unwrap_err().code, Code::AuthFailed);
        let other = B256::repeat_byte(8);
        assert_eq!(verify_auth(&other, signer.address(), &signature).unwrap_err().code, Code::AuthFailed);
        // v = 0 or 1 recovers the same signer, but the contract's rule refuses it, so does the feed.
        let mut v0 = signature;
        v0[64] -= 27;
        let refused = verify_auth(&challenge, signer.address(), &v0).unwrap_err();
        assert_eq!(refused.code, Code::AuthFailed);
        assert!(refused.message.contains("only 27 or 28"), "{}", refused.message);
    }
}
