//! The REST routes under `/v1`, `/healthz` and `/metrics`. Handlers parse and
//! check what they can without the engine (JSON shape, hex, signatures), then
//! ask the engine actor; its answer becomes JSON or an [`ApiError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use alloy_primitives::{Address, B256};
use alloy_sol_types::Eip712Domain;
use metrics_exporter_prometheus::PrometheusHandle;
use pat_actors::EngineActor;
use pat_actors::engine::{
    AdvancePhase, ConsumerFills, GetFill, GetMarket, GetMarkets, GetSegment, PlaceOrder, ProviderCredits,
    SearchSegments, SetPaused, SubmitSegment,
};
use pat_engine::order::{SignedOrder, verify_order};
use pat_engine::{MarketKey, SegmentId, SignedSegment};
use serde::Deserialize;

use crate::dto::*;
use crate::error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub engine: Addr<EngineActor>,
    pub domain: Eip712Domain,
    /// The config file `POST /v1/admin/reload` re-reads.
    pub config_path: PathBuf,
    /// The operator's bearer token; without one the admin routes refuse every call.
    pub admin_token: Option<String>,
    pub metrics: PrometheusHandle,
    /// How long a request may wait for the engine before it is told `busy`.
    pub engine_timeout: Duration,
}

type State = web::Data<Arc<AppState>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/metrics", web::get().to(metrics)).service(
        web::scope("/v1")
            .route("/segments", web::post().to(submit_segment))
            .route("/segments", web::get().to(search_segments))
            .route("/segments/{id}", web::get().to(get_segment))
            .route("/markets", web::get().to(markets))
            .route("/markets/{key}", web::get().to(market))
            .route("/quotes", web::get().to(quotes))
            .route("/feed", web::get().to(crate::feed::feed))
            .route("/orders", web::post().to(place_order))
            .route("/fills/{id}", web::get().to(get_fill))
            .route("/providers/{address}/earnings", web::get().to(provider_earnings))
            .route("/consumers/{address}/fills", web::get().to(consumer_fills))
            .route("/admin/pause", web::post().to(pause))
            .route("/admin/resume", web::post().to(resume))
            .route("/admin/reload", web::post().to(reload))
            .route("/admin/phase", web::post().to(phase)),
    );
}

async fn ask<M>(state: &State, msg: M) -> Result<M::Result, ApiError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    EngineActor: actix::Handler<M>,
{
    Ok(state.engine.send(msg).timeout(state.engine_timeout).await?)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn metrics(state: State) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

async fn submit_segment(state: State, body: web::Json<SegmentRequest>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let signed = SignedSegment {
        submission: body.submission(),
        signature: signature_bytes(&body.signature)?,
        payload: body.payload.into_bytes(),
    };
    let segment = ask(&state, SubmitSegment(signed)).await??;
    Ok(HttpResponse::Created().json(SegmentBody::from(&segment)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentQuery {
    #[serde(rename = "type")]
    segment_type: Option<String>,
    window: Option<String>,
    band: Option<String>,
    /// Minimum quality score, 0..=1.
    min_quality: Option<f64>,
    limit: Option<usize>,
}

/// Most segments one search returns.
const SEARCH_LIMIT_MAX: usize = 1_000;

async fn search_segments(state: State, q: web::Query<SegmentQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let min_quality_bps = match q.min_quality {
        Some(m) if (0.0..=1.0).contains(&m) => Some((m * 10_000.0).round() as u16),
        Some(m) => return Err(ApiError::bad_request("invalid_request", format!("min_quality {m} is not in [0, 1]"))),
        None => None,
    };
    let search = SearchSegments {
        segment_type: q.segment_type,
        window: q.window,
        band: q.band,
        min_quality_bps,
        limit: q.limit.unwrap_or(100).min(SEARCH_LIMIT_MAX),
    };
    let found = ask(&state, search).await?;
    Ok(HttpResponse::Ok().json(found.iter().map(SegmentBody::from).collect::<Vec<_>>()))
}

async fn get_segment(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::bad_request("invalid_request", "segment id is a number"))?;
    match ask(&state, GetSegment(SegmentId(id))).await? {
        Some(s) => Ok(HttpResponse::Ok().json(SegmentBody::from(&s))),
        None => Err(ApiError::not_found("unknown_segment", format!("no segment {id}"))),
    }
}

async fn markets(state: State) -> Result<HttpResponse, ApiError> {
    let markets = ask(&state, GetMarkets).await?;
    Ok(HttpResponse::Ok().json(markets.iter().map(MarketBody::from).collect::<Vec<_>>()))
}

async fn market(state: State, key: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let key: MarketKey = key.parse().map_err(|e| ApiError::bad_request("invalid_request", format!("{e}")))?;
    match ask(&state, GetMarket(key.clone())).await? {
        Some(m) => Ok(HttpResponse::Ok().json(MarketBody::from(&m))),
        None => Err(ApiError::not_found("unknown_market", format!("no market {key}"))),
    }
}

async fn quotes(state: State) -> Result<HttpResponse, ApiError> {
    let markets = ask(&state, GetMarkets).await?;
    Ok(HttpResponse::Ok().json(markets.iter().map(|m| QuoteBody::new(&m.key, &m.quote)).collect::<Vec<_>>()))
}

async fn place_order(state: State, body: web::Json<OrderRequest>) -> Result<HttpResponse, ApiError> {
    let signed = SignedOrder { order: body.order()?, signature: signature_bytes(&body.signature)? };
    // Signature recovery is the costly part of an order: it runs here, on the
    // HTTP worker, never on the engine's thread.
    let verified = verify_order(signed, &state.domain).map_err(pat_actors::EngineError::from)?;
    let fill = ask(&state, PlaceOrder(verified)).await??;
    let record = pat_engine::FillRecord { fill, status: pat_engine::FillStatus::Accepted };
    Ok(HttpResponse::Created().json(FillBody::from(&record)))
}

fn b256(text: &str, what: &str) -> Result<B256, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request("invalid_request", format!("{what} must be 32 bytes of hex")))
}

fn address(text: &str) -> Result<Address, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request("invalid_request", "address must be 20 bytes of hex"))
}

async fn get_fill(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = b256(&id, "fill id")?;
    match ask(&state, GetFill(id)).await? {
        Some(r) => Ok(HttpResponse::Ok().json(FillBody::from(&r))),
        None => Err(ApiError::not_found("unknown_fill", format!("no fill {id}"))),
    }
}

async fn provider_earnings(state: State, who: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let provider = address(&who)?;
    let credited = ask(&state, ProviderCredits(provider)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"provider": provider, "credited": credited.to_string()})))
}

async fn consumer_fills(state: State, who: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let fills = ask(&state, ConsumerFills(address(&who)?)).await?;
    Ok(HttpResponse::Ok().json(fills.iter().map(FillBody::from).collect::<Vec<_>>()))
}

/// Checks the operator's bearer token, in time independent of where it differs.
fn operator(state: &State, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(token) = state.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the server runs without an operator token",
        ));
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "an operator bearer token is required")
        })?;
    let same = given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    if same { Ok(()) } else { Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "wrong operator token")) }
}

async fn pause(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    ask(&state, SetPaused(true)).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({"paused": true})))
}

async fn resume(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    ask(&state, SetPaused(false)).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({"paused": false})))
}

/// Re-reads and validates the config file; a bad file changes nothing.
async fn reload(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let result = crate::reload(&state.engine, &state.config_path).await;
    match result {
        Ok(()) => Ok(HttpResponse::Ok().json(serde_json::json!({"reloaded": true}))),
        Err(crate::ReloadError::Invalid(errors)) => {
            let errors: Vec<_> =
                errors.0.iter().map(|e| serde_json::json!({"key": e.key, "reason": e.reason})).collect();
            Ok(HttpResponse::UnprocessableEntity().json(serde_json::json!({
                "code": "invalid_config",
                "message": "the config file is invalid; the running config stays",
                "errors": errors,
            })))
        }
        Err(crate::ReloadError::Engine(e)) => Err(e.into()),
        Err(crate::ReloadError::Mailbox(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseBody {
    phase: u8,
}

async fn phase(state: State, req: HttpRequest, body: web::Json<PhaseBody>) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    ask(&state, AdvancePhase(body.phase)).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({"phase": body.phase})))
}
