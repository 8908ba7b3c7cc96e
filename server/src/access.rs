//! What a data route reads from its request headers: the `PAT-Access`
//! signature of the party the data belongs to, and the byte range asked.
//!
//! `Authorization: PAT-Access consumer=0x…, expires_at=…, signature=0x…`
//! (a consumer's download, EIP-712 `Access`) or `provider=0x…` in place of
//! `consumer` (a provider's read of its own payload, EIP-712
//! `PayloadAccess`). Each signature covers one fill or one segment and
//! expires at most [`ACCESS_TTL_MAX`] ahead, so a leaked header opens one
//! thing for an hour at most. [`authorize`] parses the header, checks its
//! expiry and the signature over the typed data its route names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderValue};
use alloy_primitives::Address;
use alloy_sol_types::{Eip712Domain, SolStruct};
use pat_engine::{Code, eip712, text};

use crate::error::ApiError;

/// The authorization scheme of a data request.
pub const SCHEME: &str = "PAT-Access";
/// How far ahead an access signature may expire.
pub const ACCESS_TTL_MAX: Duration = Duration::from_secs(3600);

/// Whose data a request reads, named in its `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// A fill's consumer: EIP-712 `Access`.
    Consumer,
    /// A segment's provider: EIP-712 `PayloadAccess`.
    Provider,
}

impl Party {
    fn as_str(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Provider => "provider",
        }
    }

    fn typed_data(self) -> &'static str {
        match self {
            Self::Consumer => "Access",
            Self::Provider => "PayloadAccess",
        }
    }
}

/// The `Authorization` value for `party`'s access signature by `signer`.
pub fn authorization(party: Party, signer: Address, expires_at: u64, signature: &[u8]) -> String {
    format!(
        "{SCHEME} {}={signer}, expires_at={expires_at}, signature={}",
        party.as_str(),
        alloy_primitives::hex::encode_prefixed(signature)
    )
}

/// A request's access header, parsed and unexpired; its signature is not
/// checked yet.
struct Signed {
    signer: Address,
    expires_at: u64,
    signature: Vec<u8>,
}

/// Unix seconds now.
fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The signer of `req`'s access header for `party`, now: the header parsed
/// and unexpired (see [`signed`]), and its signature over the typed data
/// `typed(signer, expires_at)` under `domain` recovering to that signer
/// (`401 bad_signature` otherwise).
pub fn authorize<T: SolStruct>(
    req: &HttpRequest,
    party: Party,
    domain: &Eip712Domain,
    typed: impl FnOnce(Address, u64) -> T,
) -> Result<Address, ApiError> {
    let Signed { signer, expires_at, signature } = signed(req, party, now_secs())?;
    eip712::verify_signer(&eip712::digest(&typed(signer, expires_at), domain), &signature, signer)
        .map_err(|e| unauthorized(format!("the access signature: {e}")))?;
    Ok(signer)
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::BadSignature, message)
}

/// The access header of `req` for `party`, at `now` (unix seconds):
/// `401 bad_signature` if it is missing or malformed, `401 token_expired`
/// if it expired or lies more than [`ACCESS_TTL_MAX`] ahead.
fn signed(req: &HttpRequest, party: Party, now: u64) -> Result<Signed, ApiError> {
    let usage = format!(
        "{SCHEME} {}=0x…, expires_at=<unix secs>, signature=0x… (EIP-712 {})",
        party.as_str(),
        party.typed_data()
    );
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized(format!("an Authorization header is required: {usage}")))?;
    let value = value.to_str().map_err(|_| unauthorized(format!("the Authorization header is not text: {usage}")))?;
    let params = value
        .strip_prefix(SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| unauthorized(format!("the Authorization scheme must be {usage}")))?;
    let (mut signer, mut expires_at, mut signature) = (None, None, None);
    for pair in params.split(',') {
        let (key, v) =
            pair.trim().split_once('=').ok_or_else(|| unauthorized(format!("{pair:?} is not key=value: {usage}")))?;
        let bad = |what: &str, e: &dyn std::fmt::Display| unauthorized(format!("{what}: {e}"));
        match key {
            k if k == party.as_str() => signer = Some(text::address(v).map_err(|e| bad(k, &e))?),
            "expires_at" => expires_at = Some(text::decimal_u64(v).map_err(|e| bad("expires_at", &e))?),
            "signature" => signature = Some(text::hex_bytes(v).map_err(|e| bad("signature", &e))?),
            other => return Err(unauthorized(format!("unknown parameter {other:?}: {usage}"))),
        }
    }
    let (Some(signer), Some(expires_at), Some(signature)) = (signer, expires_at, signature) else {
        return Err(unauthorized(format!("{}, expires_at and signature are all required: {usage}", party.as_str())));
    };
    if expires_at <= now {
        return Err(ApiError::new(
            Code::TokenExpired,
            format!("the access expired at {expires_at}; it is {now} (unix secs)"),
        ));
    }
    if expires_at > now + ACCESS_TTL_MAX.as_secs() {
        return Err(ApiError::new(
            Code::TokenExpired,
            format!(
                "the access expires at {expires_at}, more than {} s after now ({now}); sign one per request",
                ACCESS_TTL_MAX.as_secs()
            ),
        ));
    }
    Ok(Signed { signer, expires_at, signature })
}

/// A `416`: the error, and the body's length its `Content-Range` states.
pub struct Unsatisfiable {
    error: ApiError,
    total: u64,
}

impl Unsatisfiable {
    /// The answer: `refuse`'s response to the error (which counts it), with
    /// `Content-Range: bytes */total`.
    pub fn respond(self, refuse: impl FnOnce(ApiError) -> actix_web::HttpResponse) -> actix_web::HttpResponse {
        let mut response = refuse(self.error);
        let value = HeaderValue::from_str(&format!("bytes */{}", self.total)).expect("a content range");
        response.headers_mut().insert(header::CONTENT_RANGE, value);
        response
    }
}

/// The bytes `first..end` a request asks of a body of `total` bytes whose
/// ETag is `etag`: the whole body without a `Range`. As RFC 9110 has it, a
/// header that is not one byte range (`bytes=a-b`, `a-`, `-n`; another
/// unit, several ranges, bad syntax) is ignored, and a range that starts
/// past the body is `416`.
pub fn byte_range(req: &HttpRequest, total: u64, etag: &str) -> Result<(u64, u64), Unsatisfiable> {
    range(req, total, etag).map(|r| r.unwrap_or((0, total))).map_err(|error| Unsatisfiable { error, total })
}

/// The range of [`byte_range`], `None` for the whole body.
fn range(req: &HttpRequest, total: u64, etag: &str) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = req.headers().get(header::RANGE) else { return Ok(None) };
    // A resumption of another body (If-Range names another ETag) gets the whole body.
    if req.headers().get(header::IF_RANGE).is_some_and(|v| v.as_bytes() != etag.as_bytes()) {
        return Ok(None);
    }
    let unit_and_spec = value.to_str().ok().and_then(|v| v.split_once('='));
    let Some((_, spec)) = unit_and_spec.filter(|(unit, _)| unit.trim().eq_ignore_ascii_case("bytes")) else {
        return Ok(None);
    };
    let Some((a, b)) = spec.trim().split_once('-').filter(|_| !spec.contains(',')) else { return Ok(None) };
    // An empty bound is absent; anything else must be a number.
    let bound = |s: &str| if s.is_empty() { Some(None) } else { s.parse::<u64>().ok().map(Some) };
    let (Some(a), Some(b)) = (bound(a), bound(b)) else { return Ok(None) };
    let (first, last) = match (a, b) {
        (None, None) => return Ok(None),
        (None, Some(0)) => return Err(unsatisfiable(value, total, "an empty suffix")),
        (None, Some(n)) => (total.saturating_sub(n), total - 1),
        (Some(a), None) => (a, total - 1),
        (Some(a), Some(b)) if b < a => return Ok(None),
        (Some(a), Some(b)) => (a, b.min(total - 1)),
    };
    if first >= total {
        return Err(unsatisfiable(value, total, "it starts past the end"));
    }
    Ok(Some((first, last + 1)))
}

fn unsatisfiable(value: &HeaderValue, total: u64, why: &str) -> ApiError {
    ApiError::new(Code::RangeNotSatisfiable, format!("Range {value:?}: {why}; the body is {total} bytes"))
}

/// The response head for the bytes `first..end` of a body of `total` bytes
/// tagged `etag`: `200`, or `206` with its `Content-Range`; its length set,
/// ranges advertised.
pub fn head(first: u64, end: u64, total: u64, etag: String, content_type: &str) -> actix_web::HttpResponseBuilder {
    let mut response = if (first, end) == (0, total) {
        actix_web::HttpResponse::Ok()
    } else {
        let mut partial = actix_web::HttpResponse::PartialContent();
        partial.insert_header((header::CONTENT_RANGE, format!("bytes {first}-{}/{total}", end - 1)));
        partial
    };
    response
        .content_type(content_type)
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, etag))
        .no_chunking(end - first);
    response
}
