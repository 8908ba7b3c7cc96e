//! # pat-server: the engine over HTTP
//!
//! Owns the REST API under `/v1` (JSON; errors are `{"code", "message"}` with
//! a fitting status), the operator's admin routes (bearer token), `/healthz`
//! and `/metrics` (Prometheus text), and config reload. Request bodies are
//! size-limited; malformed JSON, unknown fields and bad paths get a `400`
//! with a code, before the engine sees anything.
//!
//! ## Layout
//!
//! - [`access`]: the `PAT-Access` signature and the `Range` of a data request.
//! - [`api`]: routes and handlers.
//! - [`body`]: request bodies under a deadline and a shared byte budget.
//! - [`bundle`]: the delivery format a buyer downloads, reads and verifies.
//! - [`delivery`]: `GET /v1/fills/{id}/data`: a settled fill's data for its consumer.
//! - [`dto`]: request and response bodies.
//! - [`error`]: the error shape and the status of every engine error.
//! - [`feed`]: the WebSocket quote feed at `/v1/feed`.
//! - [`limits`]: per-consumer and per-provider rate limits (`429 rate_limited`).
//! - [`payloads`]: `GET /v1/segments/{id}/data`: a provider's own payload, read back.

pub mod access;
pub mod api;
pub mod body;
pub mod bundle;
pub mod delivery;
pub mod dto;
pub mod error;
pub mod feed;
pub mod limits;
pub mod payloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{App, HttpServer, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pat_actors::messages::Reconfigure;
use pat_actors::{Engine, EngineHandle};
use pat_config::{Config, ConfigErrors};
use pat_engine::Code;

use crate::api::AppState;
use crate::error::ApiError;
use crate::feed::FeedSettings;

/// How the HTTP side runs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub config_path: PathBuf,
    pub admin_token: Option<String>,
    pub http: HttpSettings,
    pub workers: usize,
    pub engine_timeout: Duration,
    pub feed: FeedSettings,
    /// Shared with whoever reloads the config ([`reload`]).
    pub limits: Arc<limits::RateLimits>,
}

impl ServerSettings {
    pub fn new(listen: SocketAddr, config_path: PathBuf) -> Self {
        Self {
            listen,
            config_path,
            admin_token: None,
            http: HttpSettings::default(),
            workers: 2,
            engine_timeout: Duration::from_secs(5),
            feed: FeedSettings::default(),
            limits: Arc::new(limits::RateLimits::new(pat_config::LimitParams::default())),
        }
    }
}

/// The HTTP server's limits and timers (config section `[http]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest request body, bytes.
    pub body_bytes_max: usize,
    /// A request's head must arrive within this, or the connection closes.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this of its head: `408` otherwise.
    pub body_read_timeout: Duration,
    /// Bytes all unfinished request bodies may hold together: `503` above it.
    pub bodies_held_bytes_max: usize,
}

impl From<&pat_config::HttpParams> for HttpSettings {
    fn from(p: &pat_config::HttpParams) -> Self {
        Self {
            body_bytes_max: p.body_bytes_max,
            header_read_timeout: Duration::from_millis(p.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(p.body_read_timeout_ms),
            bodies_held_bytes_max: p.bodies_held_bytes_max,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self::from(&pat_config::HttpParams::default())
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
            let handle = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("static buckets are valid")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            // Descriptions go to the installed recorder, so they come after it.
            pat_actors::describe_metrics();
            feed::describe_metrics();
            handle
        })
        .clone()
}

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid config:\n{0}")]
    /// The file is invalid: the running config stays.
    Invalid(ConfigErrors),
    #[error("the engine refused the config: {0}")]
    Engine(pat_actors::EngineError),
    #[error("the engine did not answer: {0}")]
    Mailbox(actix::MailboxError),
}

impl ReloadError {
    /// Whether the engine could not take the config just then (it, or a
    /// market, was restarting): the same file may apply a moment later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Invalid(_) => false,
            Self::Engine(e) => matches!(e.code(), Code::Unavailable | Code::Busy | Code::Degraded),
            Self::Mailbox(_) => true,
        }
    }
}

/// Reads and validates `path`, then applies it live: the engine's part, then
/// the rate limits. Counted in `pat_config_reloads_total{result}`.
pub async fn reload(engine: &EngineHandle, limits: &limits::RateLimits, path: &Path) -> Result<(), ReloadError> {
    let result = match Config::load(path) {
        Err(errors) => Err(ReloadError::Invalid(errors)),
        Ok(cfg) => match engine.send(Reconfigure(Arc::new(cfg.engine))).await {
            Ok(Ok(())) => {
                limits.set(cfg.limits);
                Ok(())
            }
            Ok(Err(e)) => Err(ReloadError::Engine(e)),
            Err(e) => Err(ReloadError::Mailbox(e)),
        },
    };
    let label = if result.is_ok() { "applied" } else { "rejected" };
    metrics::counter!("pat_config_reloads_total", "result" => label).increment(1);
    result
}

fn json_error(e: JsonPayloadError) -> ApiError {
    match e {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::new(Code::BodyTooLarge, format!("request body over {limit} bytes"))
        }
        JsonPayloadError::ContentType => ApiError::new(Code::UnsupportedMediaType, "send application/json"),
        JsonPayloadError::Payload(e) => match body::BodyCut::of(&e) {
            Some(cut) => cut.to_api(),
            None => ApiError::new(Code::MalformedJson, format!("reading the body: {e}")),
        },
        other => ApiError::new(Code::MalformedJson, other.to_string()),
    }
}

/// Starts the HTTP server and the feed for `engine`; returns the server and
/// the address it bound.
pub async fn start(
    settings: ServerSettings,
    engine: Engine,
    domain: alloy_sol_types::Eip712Domain,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let tables = engine.tables();
    let hub = feed::start_hub(&engine, tables.clone(), settings.feed.clone()).await?;
    let state = Arc::new(AppState {
        engine,
        tables,
        domain,
        config_path: settings.config_path.clone(),
        admin_token: settings.admin_token.clone(),
        metrics: metrics_handle(),
        engine_timeout: settings.engine_timeout,
        limits: settings.limits.clone(),
    });
    let http = settings.http.clone();
    let limit = http.body_bytes_max;
    let budget = body::Budget::new(http.bodies_held_bytes_max);
    let server = HttpServer::new(move || {
        let (budget, timeout) = (budget.clone(), http.body_read_timeout);
        App::new()
            .wrap_fn(move |mut req, srv| {
                let cut = body::limit(&mut req, timeout, &budget);
                let answer = actix_web::dev::Service::call(srv, req);
                async move { Ok(body::close_if_cut(answer.await?, cut)) }
            })
            .app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(hub.clone()))
            .app_data(web::JsonConfig::default().limit(limit).error_handler(|e, _| json_error(e).into()))
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e: QueryPayloadError, _| ApiError::new(Code::InvalidRequest, e.to_string()).into()),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e: PathError, _| ApiError::new(Code::InvalidRequest, e.to_string()).into()),
            )
            .configure(api::routes)
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(ApiError::new(Code::NotFound, "no such route"))
            }))
    })
    .workers(settings.workers)
    .client_request_timeout(settings.http.header_read_timeout)
    // The binary owns signals: it stops the server first, then snapshots the engine.
    .disable_signals()
    .bind(settings.listen)?;
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pat_actors::EngineError;

    /// Only what a moment could change is tried again: a restarting engine
    /// or market, not an invalid file or a config the engine cannot take.
    #[test]
    fn only_a_reload_the_engine_could_not_take_just_then_is_transient() {
        let transient = |e: ReloadError| e.is_transient();
        assert!(transient(ReloadError::Engine(EngineError::Unavailable("a market restarts".into()))));
        assert!(transient(ReloadError::Engine(EngineError::Busy)));
        assert!(transient(ReloadError::Mailbox(actix::MailboxError::Closed)));
        assert!(!transient(ReloadError::Invalid(ConfigErrors(Vec::new()))));
        let catalogue = pat_engine::state::ReconfigureError::CatalogueChanged;
        assert!(!transient(ReloadError::Engine(EngineError::Reconfigure(catalogue))));
    }
}
