//! `GET /v1/fills/{id}/data`: a settled fill's data for its consumer,
//! streamed from the payload store in the [`crate::bundle`] format, with
//! `Range` requests so that a broken download resumes.
//!
//! Each request carries the consumer's EIP-712 `Access{consumer, fillId,
//! expiresAt}` signature in its [`crate::access`] header. The checks
//! run in this order, each with its code: the header and its signature
//! (`401`), the fill (`404`), its consumer (`403`), its settlement (`409`),
//! its access period (`410`), the range (`416`), then the store (`503`,
//! `502`). Segments are read from the store one after another (the next
//! while the current one is sent), so a fill is never held in memory whole.
//! The first segment in range is opened before the status is sent; a later
//! one that fails to open ends the body short of its `Content-Length`, which
//! a client sees as a broken download, and its resumption gets the error.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::{StreamExt, TryStreamExt, stream};
use pat_actors::delivery::{Deliveries, DeliveryError, DeliveryPlan};
use pat_actors::messages::PlanDelivery;
use pat_engine::eip712::Access;
use pat_engine::text;

use crate::access::{self, Party};
use crate::api::AppState;
use crate::bundle::{self, Layout, Manifest, SegmentHeader};
use crate::dto::field;
use crate::error::ApiError;

/// Segments read from the store ahead of the one being sent.
const READ_AHEAD: usize = 1;

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
    let access = |consumer, expires_at| Access { consumer, fillId: fill_id, expiresAt: expires_at };
    let consumer = match access::authorize(&req, Party::Consumer, &state.domain, access) {
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
    let (first, end) = match access::byte_range(&req, layout.total, &etag) {
        Ok(range) => range,
        Err(unsatisfiable) => return unsatisfiable.respond(refusal),
    };
    let mut response = access::head(first, end, layout.total, etag, bundle::CONTENT_TYPE);
    response.insert_header(("x-pat-access-until-ms", plan.access_until_ms.to_string()));
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
        .map_ok(|pieces| stream::iter(pieces.into_iter().map(Ok)))
        .try_flatten()
        .map_err(|e: DeliveryError| actix_web::error::ErrorServiceUnavailable(e.to_string()));
    response.streaming(stream::iter(head.into_iter().map(Ok)).chain(rest))
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

    /// Part `i`'s pieces in range (the manifest, the segment's header, its
    /// payload), its segment read from the store. The payload is the
    /// store's decrypted buffer itself, not a copy.
    async fn part(&self, i: usize) -> Result<Vec<Bytes>, DeliveryError> {
        let b = &self.0;
        let mut pieces = Vec::with_capacity(3);
        if i == 0 {
            pieces.push((0, Bytes::copy_from_slice(&b.layout.manifest)));
        }
        if let Some((segment, units)) = b.plan.segments.get(i) {
            let listing = b.deliveries.open(segment).await?;
            let (signature, payload) = (listing.signature, listing.payload);
            let header = bundle::line(&SegmentHeader::new(segment, *units, signature));
            let (at, header_len) = b.layout.parts[i];
            if header.len() as u64 != header_len || payload.len() != segment.payload_bytes as usize {
                return Err(DeliveryError::Unreadable { segment: segment.id.0, reason: "listing_mismatch" });
            }
            pieces.push((at, Bytes::from(header)));
            pieces.push((at + header_len, payload));
        }
        Ok(pieces.into_iter().filter_map(|(at, bytes)| clip(at, bytes, b.first, b.end)).collect())
    }
}

/// What of `bytes`, lying at `at` in the body, falls in `first..end`.
fn clip(at: u64, bytes: Bytes, first: u64, end: u64) -> Option<Bytes> {
    let (from, to) = (first.max(at), end.min(at + bytes.len() as u64));
    (from < to).then(|| bytes.slice((from - at) as usize..(to - at) as usize))
}
