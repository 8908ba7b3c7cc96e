//! `GET /v1/segments/{id}/data`: a provider reads back the payload it listed
//! as segment `id`, opened from the payload store and checked against the
//! listing exactly as a consumer's download is, for its own audits.
//!
//! Each request carries the provider's EIP-712 `PayloadAccess{provider,
//! segmentId, expiresAt}` signature in its [`crate::access`] header. The
//! checks run in this order, each with its code: the header and its
//! signature (`401`), the segment (`404`), its provider (`403`), the range
//! (`416`), then the store (`503`, `502`). The body is the payload's bytes as
//! listed (they hash to `X-PAT-Payload-Hash`); its ETag is that hash, and
//! `Range` requests are served. A segment stays readable by its provider
//! after it sold out or expired, until its payload is shredded.

use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::stream;
use pat_actors::messages::GetSegment;
use pat_engine::eip712::PayloadAccess;
use pat_engine::{Code, SegmentId, text};

use crate::access::{self, Party};
use crate::api::AppState;
use crate::dto::field;
use crate::error::ApiError;

/// The content type of a payload: the canonical JSON of its signals.
const CONTENT_TYPE: &str = "application/octet-stream";

fn refusal(e: ApiError) -> HttpResponse {
    metrics::counter!("pat_payload_reads_total", "result" => e.code.as_str()).increment(1);
    e.error_response()
}

#[utoipa::path(get, path = "/v1/segments/{id}/data", tag = "segments", params(("id" = u64, Path),
    ("Authorization" = String, Header, description = "PAT-Access provider=0x…, expires_at=<unix secs>, signature=0x… (EIP-712 PayloadAccess)"),
    ("Range" = Option<String>, Header, description = "bytes=first-last, first- or -suffix")),
    responses((status = 200, description = "the payload as listed; it hashes to X-PAT-Payload-Hash", content_type = "application/octet-stream"),
        (status = 206, description = "the requested byte range of it", content_type = "application/octet-stream")))]
pub async fn segment_data(state: web::Data<Arc<AppState>>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    let id = match field("segment id", text::decimal_u64(&id)) {
        Ok(id) => id,
        Err(e) => return refusal(e),
    };
    let access = |provider, expires_at| PayloadAccess { provider, segmentId: id, expiresAt: expires_at };
    let provider = match access::authorize(&req, Party::Provider, &state.domain, access) {
        Ok(provider) => provider,
        Err(e) => return refusal(e),
    };
    let segment = match state.engine.send(GetSegment(SegmentId(id))).timeout(state.engine_timeout).await {
        Ok(Some(segment)) => segment,
        Ok(None) => return refusal(ApiError::new(Code::UnknownSegment, format!("no segment {id}"))),
        Err(e) => return refusal(e.into()),
    };
    if segment.provider != provider {
        return refusal(ApiError::new(Code::NotYourSegment, format!("segment {id} was listed by another provider")));
    }
    let hash = format!("{:#x}", segment.payload_hash);
    let etag = format!("\"{hash}\"");
    let total = u64::from(segment.payload_bytes);
    let (first, end) = match access::byte_range(&req, total, &etag) {
        Ok(range) => range,
        Err(unsatisfiable) => return unsatisfiable.respond(refusal),
    };
    let mut response = access::head(first, end, total, etag, CONTENT_TYPE);
    response.insert_header(("x-pat-payload-hash", HeaderValue::from_str(&hash).expect("hex is a header value")));
    // HEAD: the headers a GET would get, and nothing read from the store.
    if req.method() == actix_web::http::Method::HEAD {
        return response.streaming(stream::empty::<Result<Bytes, actix_web::Error>>());
    }
    let Some(deliveries) = state.engine.deliveries() else {
        return refusal(ApiError::new(Code::StorageUnavailable, "this engine keeps no payloads"));
    };
    match deliveries.open(&segment).await {
        Ok(signed) => {
            metrics::counter!("pat_payload_reads_total", "result" => "served").increment(1);
            let payload = signed.payload.slice(first as usize..end as usize);
            response.streaming(stream::once(async move { Ok::<_, actix_web::Error>(payload) }))
        }
        Err(e) => refusal(ApiError::new(e.code(), e.to_string())),
    }
}
