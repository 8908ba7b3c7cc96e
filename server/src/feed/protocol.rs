//! The feed's wire format: client operations parsed from JSON text frames,
//! server messages serialized to JSON, market patterns, and the challenge a
//! consumer signs to authenticate. Amounts are decimal strings of base units.

use alloy_primitives::{Address, B256};
use pat_engine::{Code, MarketKey};
use serde::Serialize;
use serde_json::Value;

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

/// Parses one text frame. Unknown fields are refused, as in the REST API.
pub fn parse_op(text: &str) -> Result<ClientOp, FeedError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FeedError::new(Code::MalformedMessage, format!("invalid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(FeedError::new(Code::MalformedMessage, "a message is a JSON object"));
    };
    let op = match fields.remove("op") {
        Some(Value::String(op)) => op,
        Some(_) => return Err(FeedError::new(Code::InvalidRequest, "`op` must be a string")),
        None => return Err(FeedError::new(Code::InvalidRequest, "missing field `op`")),
    };
    let allowed: &[&str] = match op.as_str() {
        "subscribe" | "unsubscribe" => &["markets"],
        "ping" => &[],
        "auth" => &["address", "signature"],
        other => return Err(FeedError::new(Code::UnknownOp, format!("unknown op `{other}`"))),
    };
    if let Some(extra) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(FeedError::new(Code::InvalidRequest, format!("unknown field `{extra}` for op `{op}`")));
    }
    let string = |fields: &serde_json::Map<String, Value>, name: &str| -> Result<String, FeedError> {
        match fields.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(FeedError::new(Code::InvalidRequest, format!("`{name}` must be a string"))),
            None => Err(FeedError::new(Code::InvalidRequest, format!("missing field `{name}`"))),
        }
    };
    match op.as_str() {
        "ping" => Ok(ClientOp::Ping),
        "auth" => {
            let address = string(&fields, "address")?
                .parse::<Address>()
                .map_err(|e| FeedError::new(Code::InvalidRequest, format!("`address`: {e}")))?;
            let signature = alloy_primitives::hex::decode(string(&fields, "signature")?)
                .map_err(|e| FeedError::new(Code::InvalidRequest, format!("`signature` is not hex: {e}")))?;
            Ok(ClientOp::Auth { address, signature })
        }
        _ => {
            let markets = match fields.remove("markets") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(FeedError::new(Code::InvalidRequest, "`markets` holds strings")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
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
        assert_eq!(resolve("PURCHASE*|*|*", &keys).unwrap_err().code, Code::UnknownMarket);
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
