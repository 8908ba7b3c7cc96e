//! The REST routes under `/v1`, `/healthz` and `/metrics`. Handlers parse and
//! check what they can without the engine (JSON shape, hex, signatures), then
//! ask the engine actor or the market's actor; the answer becomes JSON or an [`ApiError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use alloy_sol_types::Eip712Domain;
use metrics_exporter_prometheus::PrometheusHandle;
use pat_actors::market::GetMarket;
use pat_actors::messages::{
    AdvancePhase, ConsumerEscrow, ConsumerFills, GetFill, GetSegment, ProviderCredits, SearchSegments, SetPaused,
};
use pat_actors::{Engine, EngineActor};
use pat_engine::order::{SignedOrder, verify_order};
use pat_engine::segment::verify_submission;
use pat_engine::{Code, MarketKey, SegmentId, SignedSegment, text};
use serde::Deserialize;

use crate::dto::*;
use crate::error::{ApiError, ErrorCodes};
use crate::limits::Limited;

/// What every handler shares.
pub struct AppState {
    pub engine: Engine,
    /// The quote table (and the catalogue): quotes are read there, not from the engine.
    pub tables: Arc<pat_actors::quoting::Tables>,
    pub domain: Eip712Domain,
    /// The config file `POST /v1/admin/reload` re-reads.
    pub config_path: PathBuf,
    /// The operator's bearer token; without one the admin routes refuse every call.
    pub admin_token: Option<String>,
    pub metrics: PrometheusHandle,
    /// How long a request may wait for the engine before it is told `busy`.
    pub engine_timeout: Duration,
    /// Per-consumer and per-provider admission limits.
    pub limits: Arc<crate::limits::RateLimits>,
}

type State = web::Data<Arc<AppState>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(path("/healthz", "GET, HEAD").route(read().to(healthz)))
        .service(path("/metrics", "GET, HEAD").route(read().to(metrics)))
        .service(path("/openapi.json", "GET, HEAD").route(read().to(openapi)))
        .service(
            web::scope("/v1")
                .service(
                    path("/segments", "GET, HEAD, POST")
                        .route(web::post().to(submit_segment))
                        .route(read().to(search_segments)),
                )
                .service(path("/segments/{id}", "GET, HEAD").route(read().to(get_segment)))
                .service(path("/segments/{id}/data", "GET, HEAD").route(read().to(crate::payloads::segment_data)))
                .service(path("/markets", "GET, HEAD").route(read().to(markets)))
                .service(path("/markets/{key}", "GET, HEAD").route(read().to(market)))
                .service(path("/quotes", "GET, HEAD").route(read().to(quotes)))
                .service(path("/feed", "GET").route(web::get().to(crate::feed::feed)))
                .service(path("/orders", "POST").route(web::post().to(place_order)))
                .service(path("/fills/{id}", "GET, HEAD").route(read().to(get_fill)))
                .service(path("/fills/{id}/data", "GET, HEAD").route(read().to(crate::delivery::fill_data)))
                .service(path("/providers/{address}/earnings", "GET, HEAD").route(read().to(provider_earnings)))
                .service(path("/consumers/{address}/fills", "GET, HEAD").route(read().to(consumer_fills)))
                .service(path("/consumers/{address}/escrow", "GET, HEAD").route(read().to(consumer_escrow)))
                .service(path("/admin/pause", "POST").route(web::post().to(pause)))
                .service(path("/admin/resume", "POST").route(web::post().to(resume)))
                .service(path("/admin/reload", "POST").route(web::post().to(reload)))
                .service(path("/admin/phase", "POST").route(web::post().to(phase))),
        );
}

/// GET, and HEAD wherever GET is served: actix-http answers a HEAD with the
/// GET's status and headers and no body, so a load balancer's HEAD check
/// sees what a GET would.
fn read() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A path whose other methods get `405 method_not_allowed`, with `allow` (the
/// methods its routes take) in the `Allow` header.
fn path(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        use actix_web::ResponseError;
        let mut response =
            ApiError::new(Code::MethodNotAllowed, format!("this path takes {allow} only")).error_response();
        let value = actix_web::http::header::HeaderValue::from_static(allow);
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
        response
    }))
}

async fn ask<M>(state: &State, msg: M) -> Result<M::Result, ApiError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    EngineActor: actix::Handler<M>,
{
    Ok(state.engine.send(msg).timeout(state.engine_timeout).await?)
}

/// Waits for a market actor's answer as long as for the engine's.
async fn routed<T>(state: &State, reply: pat_actors::market::Routed<T>) -> Result<T, ApiError> {
    match tokio::time::timeout(state.engine_timeout, reply).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(actix::MailboxError::Timeout.into()),
    }
}

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = HealthBody)))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody { status: "ok".into() })
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
async fn metrics(state: State) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

#[utoipa::path(post, path = "/v1/segments", tag = "segments", request_body = SegmentRequest,
    responses((status = 201, description = "listed, once durable", body = SegmentBody)))]
async fn submit_segment(state: State, body: web::Json<SegmentRequest>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let signed = SignedSegment {
        submission: body.submission()?,
        signature: signature_bytes(&body.signature)?,
        payload: body.payload.into_bytes(),
    };
    // As for orders: signature recovery runs here, on the HTTP worker.
    let verified = verify_submission(signed, &state.domain).map_err(pat_actors::EngineError::from)?;
    state.limits.admit(Limited::Submissions, verified.signed().submission.provider)?;
    let segment = routed(&state, state.engine.list_segment(verified)).await??;
    Ok(HttpResponse::Created().json(SegmentBody::from(&segment)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SegmentQuery {
    /// Segment type, such as `PURCHASE_INTENT`.
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

#[utoipa::path(get, path = "/v1/segments", tag = "segments", params(SegmentQuery),
    responses((status = 200, description = "newest first", body = [SegmentBody])))]
async fn search_segments(state: State, q: web::Query<SegmentQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let min_quality_bps = match q.min_quality {
        Some(m) if (0.0..=1.0).contains(&m) => Some((m * 10_000.0).round() as u16),
        Some(m) => return Err(ApiError::new(Code::InvalidRequest, format!("min_quality {m} is not in [0, 1]"))),
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

#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments", params(("id" = u64, Path)),
    responses((status = 200, body = SegmentBody)))]
async fn get_segment(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = field("segment id", text::decimal_u64(&id))?;
    match ask(&state, GetSegment(SegmentId(id))).await? {
        Some(s) => Ok(HttpResponse::Ok().json(SegmentBody::from(&s))),
        None => Err(ApiError::new(Code::UnknownSegment, format!("no segment {id}"))),
    }
}

#[utoipa::path(get, path = "/v1/markets", tag = "markets", responses((status = 200, body = [MarketBody])))]
async fn markets(state: State) -> Result<HttpResponse, ApiError> {
    let engine = state.engine.clone();
    let markets = routed(&state, Box::pin(async move { engine.markets().views().await })).await?;
    Ok(HttpResponse::Ok().json(markets.iter().map(MarketBody::from).collect::<Vec<_>>()))
}

#[utoipa::path(get, path = "/v1/markets/{key}", tag = "markets",
    params(("key" = String, Path, description = "market key, URL-encoded: PURCHASE_INTENT%7C7D%7C0.70-0.85")),
    responses((status = 200, body = MarketBody)))]
async fn market(state: State, key: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let key: MarketKey = key.parse().map_err(|e| ApiError::new(Code::InvalidRequest, format!("{e}")))?;
    let Some(id) = state.engine.markets().by_key(&key) else {
        return Err(ApiError::new(Code::UnknownMarket, format!("no market {key}")));
    };
    let m = routed(&state, Box::pin(state.engine.markets().actor(id).send(GetMarket))).await?;
    Ok(HttpResponse::Ok().json(MarketBody::from(&m)))
}

#[utoipa::path(get, path = "/v1/quotes", tag = "markets", responses((status = 200, body = [QuoteBody])))]
async fn quotes(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.tables.quoted().map(|(key, quote)| QuoteBody::new(key, &quote)).collect::<Vec<_>>())
}

#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = OrderRequest,
    responses((status = 201, description = "filled, once durable", body = FillBody)))]
async fn place_order(state: State, body: web::Json<OrderRequest>) -> Result<HttpResponse, ApiError> {
    let signed = SignedOrder { order: body.order()?, signature: signature_bytes(&body.signature)? };
    // Signature recovery is the costly part of an order: it runs here, on the
    // HTTP worker, never on the engine's thread.
    let verified = verify_order(signed, &state.domain).map_err(pat_actors::EngineError::from)?;
    state.limits.admit(Limited::Orders, verified.order().consumer)?;
    let fill = routed(&state, state.engine.markets().place_order(verified)).await??;
    let record = pat_engine::FillRecord { fill, status: pat_engine::FillStatus::Accepted };
    Ok(HttpResponse::Created().json(FillBody::from(&record)))
}

#[utoipa::path(get, path = "/v1/fills/{id}", tag = "orders", params(("id" = String, Path, description = "0x fill id")),
    responses((status = 200, body = FillBody)))]
async fn get_fill(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = field("fill id", text::b256(&id))?;
    match ask(&state, GetFill(id)).await? {
        Some(r) => Ok(HttpResponse::Ok().json(FillBody::from(&r))),
        None => Err(ApiError::new(Code::UnknownFill, format!("no fill {id}"))),
    }
}

#[utoipa::path(get, path = "/v1/providers/{address}/earnings", tag = "accounts", params(("address" = String, Path)),
    responses((status = 200, body = EarningsBody)))]
async fn provider_earnings(state: State, who: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let provider = field("address", text::address(&who))?;
    let credits = ask(&state, ProviderCredits(provider)).await?;
    Ok(HttpResponse::Ok().json(EarningsBody {
        provider,
        settled: credits.settled.to_string(),
        pending: credits.pending.to_string(),
    }))
}

#[utoipa::path(get, path = "/v1/consumers/{address}/fills", tag = "accounts", params(("address" = String, Path)),
    responses((status = 200, description = "oldest first", body = [FillBody])))]
async fn consumer_fills(state: State, who: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let fills = ask(&state, ConsumerFills(field("address", text::address(&who))?)).await?;
    Ok(HttpResponse::Ok().json(fills.iter().map(FillBody::from).collect::<Vec<_>>()))
}

#[utoipa::path(get, path = "/v1/consumers/{address}/escrow", tag = "accounts", params(("address" = String, Path)),
    responses((status = 200, body = EscrowBody)))]
async fn consumer_escrow(state: State, who: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let consumer = field("address", text::address(&who))?;
    let s = ask(&state, ConsumerEscrow(consumer)).await?;
    Ok(HttpResponse::Ok().json(EscrowBody {
        consumer,
        escrow: s.view.escrow.to_string(),
        withdrawing: s.view.withdrawing.to_string(),
        held: s.view.held.to_string(),
        free: s.view.free.to_string(),
        synced_block: s.synced_block,
        required: s.required,
        current_at_ms: s.current_at_ms,
    }))
}

/// Checks the operator's bearer token, in time independent of where it differs.
fn operator(state: &State, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(token) = state.admin_token.as_deref() else {
        return Err(ApiError::new(Code::AdminDisabled, "the server runs without an operator token"));
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(Code::Unauthorized, "an operator bearer token is required"))?;
    let same = given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    if same { Ok(()) } else { Err(ApiError::new(Code::Forbidden, "wrong operator token")) }
}

#[utoipa::path(post, path = "/v1/admin/pause", tag = "admin", security(("operator" = [])),
    responses((status = 200, body = PausedBody)))]
async fn pause(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    set_paused(state, req, true).await
}

#[utoipa::path(post, path = "/v1/admin/resume", tag = "admin", security(("operator" = [])),
    responses((status = 200, body = PausedBody)))]
async fn resume(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    set_paused(state, req, false).await
}

async fn set_paused(state: State, req: HttpRequest, paused: bool) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    ask(&state, SetPaused(paused)).await??;
    Ok(HttpResponse::Ok().json(PausedBody { paused }))
}

/// Re-reads and validates the config file; a bad file changes nothing.
#[utoipa::path(post, path = "/v1/admin/reload", tag = "admin", security(("operator" = [])),
    responses((status = 200, body = ReloadedBody)))]
async fn reload(state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    let result = crate::reload(&state.engine, &state.limits, &state.config_path).await;
    match result {
        Ok(()) => Ok(HttpResponse::Ok().json(ReloadedBody { reloaded: true })),
        Err(crate::ReloadError::Invalid(errors)) => Ok(HttpResponse::UnprocessableEntity().json(InvalidConfigBody {
            code: Code::InvalidConfig.as_str().into(),
            message: "the config file is invalid; the running config stays".into(),
            errors: errors.0.iter().map(|e| ConfigErrorBody { key: e.key.clone(), reason: e.reason.clone() }).collect(),
        })),
        Err(crate::ReloadError::Engine(e)) => Err(e.into()),
        Err(crate::ReloadError::Mailbox(e)) => Err(e.into()),
    }
}

#[utoipa::path(post, path = "/v1/admin/phase", tag = "admin", security(("operator" = [])), request_body = PhaseBody,
    responses((status = 200, body = PhaseBody)))]
async fn phase(state: State, req: HttpRequest, body: web::Json<PhaseBody>) -> Result<HttpResponse, ApiError> {
    operator(&state, &req)?;
    ask(&state, AdvancePhase(body.phase)).await??;
    Ok(HttpResponse::Ok().json(body.into_inner()))
}

/// The OpenAPI 3 document of this API, generated from the handlers and bodies.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "PAT segment market", description = "Quotes, orders and fills of intent-signal segment markets."),
    paths(healthz, metrics, submit_segment, search_segments, get_segment, markets, market, quotes, place_order,
        get_fill, crate::delivery::fill_data, crate::payloads::segment_data, provider_earnings, consumer_fills, consumer_escrow, pause, resume, reload, phase, crate::feed::feed, openapi),
    components(schemas(ErrorBody, InvalidConfigBody)),
    modifiers(&OperatorToken, &ErrorCodes)
)]
pub struct ApiDoc;

struct OperatorToken;

impl utoipa::Modify for OperatorToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        doc.components.get_or_insert_with(Default::default).add_security_scheme("operator", scheme);
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "this document")))]
async fn openapi() -> HttpResponse {
    use utoipa::OpenApi;
    HttpResponse::Ok().json(ApiDoc::openapi())
}
