//! `GET /v1/fills/{id}/data`: a settled fill's data for its consumer,
//! streamed from the payload store in the [`crate::bundle`] format, with
//! `Range` requests so that a broken download resumes.
//!
//! Each request carries the consumer's EIP-712 `Access{consumer, fillId,
//! expiresAt}` signature in `Authorization: PAT-Access consumer=0x…,
//! expires_at=…, signature=0x…`; `expiresAt` lies at most [`ACCESS_TTL_MAX`]
//! ahead, so a leaked header opens one fill for an hour at most. The checks
//! run in this order, each with its code: the header and its signature
//! (`401`), the fill (`404`), its consumer (`403`), its settlement (`409`),
//! its access period (`410`), the range (`416`), then the store (`503`,
//! `502`). Segments are read from the store one after another (the next
//! while the current one is sent), so a fill is never held in memory whole.
//! The first segment in range is opened before the status is sent; a later
//! one that fails to open ends the body short of its `Content-Length`, which
//! a client sees as a broken download, and its resumption gets the error.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use alloy_primitives::{Address, B256};
use futures_util::{StreamExt, stream};
use pat_actors::delivery::{Deliveries, DeliveryError, DeliveryPlan};
use pat_actors::messages::PlanDelivery;
use pat_engine::eip712::{self, Access};
use pat_engine::{Code, SignedSegment, text};

use crate::api::AppState;
use crate::bundle::{self, Layout, Manifest, SegmentHeader};
use crate::dto::field;
use crate::error::ApiError;

/// The authorization scheme of a delivery request.
pub const SCHEME: &str = "PAT-Access";
/// How far ahead an access signature may expire.
pub const ACCESS_TTL_MAX: Duration = Duration::from_secs(3600);
/// Segments read from the store ahead of the one being sent.
const READ_AHEAD: usize = 1;

/// The `Authorization` value for `consumer`'s access signature.
pub fn authorization(consumer: Address, expires_at: u64, signature: &[u8]) -> String {
    format!(
        "{SCHEME} consumer={consumer}, expires_at={expires_at}, signature={}",
        alloy_primitives::hex::encode_prefixed(signature)
    )
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::BadSignature, message)
}

/// The access a request's `Authorization` header signs for fill `fill_id`,
/// checked at `now` (unix seconds): its consumer.
fn authorize(
    req: &HttpRequest,
    fill_id: B256,
    domain: &alloy_sol_types::Eip712Domain,
    now: u64,
) -> Result<Address, ApiError> {
    let usage = format!("{SCHEME} consumer=0x…, expires_at=<unix secs>, signature=0x… (EIP-712 Access)");
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized(format!("an Authorization header is required: {usage}")))?;
    let value = value.to_str().map_err(|_| unauthorized(format!("the Authorization header is not text: {usage}")))?;
    let params = value
        .strip_prefix(SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| unauthorized(format!("the Authorization scheme must be {usage}")))?;
    let (mut consumer, mut expires_at, mut signature) = (None, None, None);
    for pair in params.split(',') {
        let (key, v) =
            pair.trim().split_once('=').ok_or_else(|| unauthorized(format!("{pair:?} is not key=value: {usage}")))?;
        let bad = |what: &str, e: &dyn std::fmt::Display| unauthorized(format!("{what}: {e}"));
        match key {
            "consumer" => consumer = Some(text::address(v).map_err(|e| bad("consumer", &e))?),
            "expires_at" => expires_at = Some(text::decimal_u64(v).map_err(|e| bad("expires_at", &e))?),
            "signature" => signature = Some(text::hex_bytes(v).map_err(|e| bad("signature", &e))?),
            other => return Err(unauthorized(format!("unknown parameter {other:?}: {usage}"))),
        }
    }
    let (Some(consumer), Some(expires_at), Some(signature)) = (consumer, expires_at, signature) else {
        return Err(unauthorized(format!("consumer, expires_at and signature are all required: {usage}")));
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
                "the access expires at {expires_at}, more than {} s after now ({now}); sign one per download",
                ACCESS_TTL_MAX.as_secs()
            ),
        ));
    }
    let access = Access { consumer, fillId: fill_id, expiresAt: expires_at };
    eip712::verify_signer(&eip712::digest(&access, domain), &signature, consumer)
        .map_err(|e| unauthorized(format!("the access signature: {e}")))?;
    Ok(consumer)
}

/// The byte range a `Range` header asks of a body of `total` bytes: `None`
/// for the whole body. As RFC 9110 has it, a header that is not one byte range
/// (`bytes=a-b`, `a-`, `-n`; another unit, several ranges, bad syntax) is
/// ignored, and a range that starts past the body is `416`.
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

fn refusal(e: ApiError) -> HttpResponse {
    metrics::counter!("pat_deliveries_total", "result" => e.code.as_str()).increment(1);
    e.error_response()
}

fn delivery_error(e: DeliveryError) -> HttpResponse {
    let status = match &e {
        DeliveryError::NotSettled { status, .. } => Some(*status),
        _ => None,
    };
    let mut response = refusal(ApiError::new(e.code(), e.to_string()));
    if let Some(status) = status {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-pat-fill-status"), HeaderValue::from_static(status));
    }
    response
}

#[utoipa::path(get, path = "/v1/fills/{id}/data", tag = "fills", params(("id" = String, Path),
    ("Authorization" = String, Header, description = "PAT-Access consumer=0x…, expires_at=<unix secs>, signature=0x… (EIP-712 Access)"),
    ("Range" = Option<String>, Header, description = "bytes=first-last, first- or -suffix")),
    responses((status = 200, description = "the fill's segments, in the pat-delivery/1 format", content_type = "application/vnd.pat.delivery"),
        (status = 206, description = "the requested byte range of it", content_type = "application/vnd.pat.delivery")))]
pub async fn fill_data(state: web::Data<Arc<AppState>>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    let fill_id = match field("fill id", text::b256(&id)) {
        Ok(id) => id,
        Err(e) => return refusal(e),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let consumer = match authorize(&req, fill_id, &state.domain, now) {
        Ok(consumer) => consumer,
        Err(e) => return refusal(e),
    };
    let plan = match state.engine.send(PlanDelivery { fill_id, consumer }).timeout(state.engine_timeout).await {
        Ok(Ok(plan)) => plan,
        Ok(Err(e)) => return delivery_error(e),
        Err(e) => return refusal(e.into()),
    };
    let Some(deliveries) = state.engine.deliveries().cloned() else {
        return delivery_error(DeliveryError::StorageUnavailable);
    };
    let manifest = Manifest {
        format: bundle::FORMAT.into(),
        fill_id,
        consumer,
        market: plan.market.to_string(),
        chain_id: state.domain.chain_id.map_or(0, |c| c.to::<u64>()),
        marketplace: state.domain.verifying_contract.unwrap_or_default(),
        settled_at_ms: plan.settled_at_ms,
        segments: plan.segments.len() as u32,
    };
    let layout = Layout::new(&manifest, &plan.segments);
    let etag = bundle::etag(fill_id);
    let (first, end) = match range(&req, layout.total, &etag) {
        Ok(Some(r)) => r,
        Ok(None) => (0, layout.total),
        Err(e) => {
            let mut response = refusal(e);
            let value = HeaderValue::from_str(&format!("bytes */{}", layout.total)).expect("a content range");
            response.headers_mut().insert(header::CONTENT_RANGE, value);
            return response;
        }
    };
    let total = layout.total;
    let mut response = if (first, end) == (0, total) {
        HttpResponse::Ok()
    } else {
        let mut partial = HttpResponse::PartialContent();
        partial.insert_header((header::CONTENT_RANGE, format!("bytes {first}-{}/{total}", end - 1)));
        partial
    };
    response
        .content_type(bundle::CONTENT_TYPE)
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, etag))
        .insert_header(("x-pat-access-until-ms", plan.access_until_ms.to_string()))
        .no_chunking(end - first);
    // HEAD: the headers a GET would get, and nothing read from the store.
    if req.method() == actix_web::http::Method::HEAD {
        return response.streaming(stream::empty::<Result<Bytes, actix_web::Error>>());
    }
    let parts = Parts(Arc::new(Body { deliveries, plan, layout, first, end }));
    let (from, to) = parts.in_range();
    // The first part in range opens before the status: a store that is down
    // or a payload that fails its check gets its code, not a broken body.
    let head = match parts.part(from).await {
        Ok(bytes) => bytes,
        Err(e) => return delivery_error(e),
    };
    metrics::counter!("pat_deliveries_total", "result" => "served").increment(1);
    let rest = stream::iter((from + 1..to).map(move |i| (i, parts.clone())))
        .map(|(i, parts)| async move { parts.part(i).await })
        .buffered(READ_AHEAD + 1)
        .map(|r| r.map_err(|e| actix_web::error::ErrorServiceUnavailable(e.to_string())));
    response.streaming(stream::once(async move { Ok(head) }).chain(rest))
}

/// One response's body: the bytes `first..end` of a fill's delivery.
struct Body {
    deliveries: Arc<Deliveries>,
    plan: DeliveryPlan,
    layout: Layout,
    first: u64,
    end: u64,
}

/// Part `i` of a body is segment `i`'s header and payload, the manifest
/// before the first.
#[derive(Clone)]
struct Parts(Arc<Body>);

impl Parts {
    /// The parts with a byte in range: `from..to`.
    fn in_range(&self) -> (usize, usize) {
        let b = &self.0;
        if b.layout.parts.is_empty() {
            return (0, 1);
        }
        (b.layout.segment_at(b.first), b.layout.segment_at(b.end - 1) + 1)
    }

    /// Part `i`'s bytes in range, its segment read from the store.
    async fn part(&self, i: usize) -> Result<Bytes, DeliveryError> {
        let b = &self.0;
        let start = if i == 0 { 0 } else { b.layout.parts[i].0 };
        let end = b.layout.parts.get(i + 1).map_or(b.layout.total, |p| p.0);
        let mut bytes = Vec::with_capacity((end - start) as usize);
        if i == 0 {
            bytes.extend_from_slice(&b.layout.manifest);
        }
        if let Some((segment, units)) = b.plan.segments.get(i) {
            let SignedSegment { signature, payload, .. } = b.deliveries.open(segment).await?;
            let header = bundle::line(&SegmentHeader::new(segment, *units, signature));
            if header.len() as u64 != b.layout.parts[i].1 || payload.len() != segment.payload_bytes as usize {
                return Err(DeliveryError::Unreadable { segment: segment.id.0, reason: "listing_mismatch" });
            }
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(&payload);
        }
        let (from, to) = (b.first.max(start) - start, b.end.min(end) - start);
        bytes.truncate(to as usize);
        bytes.drain(..from as usize);
        Ok(Bytes::from(bytes))
    }
}
