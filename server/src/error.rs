//! The API's error shape: `{"code": "...", "message": "..."}` with the HTTP
//! status its [`Code`] carries, for every failure a request can meet.

use crate::dto::ErrorBody;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use pat_actors::EngineError;
use pat_engine::Code;
use pat_engine::code::Source;

/// Seconds a client is told to wait before it retries a `503`.
pub const RETRY_AFTER_SECS: u64 = 2;

/// A request that failed, as the client sees it: the code gives the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// `Retry-After` seconds, where the error knows them (a `429`); every
    /// `503` carries [`RETRY_AFTER_SECS`] otherwise.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    /// The same error, telling the client to retry in `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).expect("every code's status is a valid HTTP status")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    /// A `503` or a `429` says when to retry (`Retry-After`, seconds).
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        let retry = self.retry_after.or((self.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS));
        if let Some(secs) = retry {
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs));
        }
        response.json(ErrorBody { code: self.code.as_str().to_owned(), message: self.message.clone() })
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        match e {
            actix::MailboxError::Timeout => Self::new(Code::Busy, "the engine did not answer in time"),
            // The actor is gone and its supervisor is starting the next one.
            actix::MailboxError::Closed => {
                Self::new(Code::Unavailable, "the engine is restarting from its journal; retry shortly")
            }
        }
    }
}

/// The codes a route can answer with: those of its sources, and the ones
/// it names itself. What the OpenAPI document lists under each route.
pub fn route_codes(method: &str, path: &str) -> Vec<Code> {
    use Code::*;
    use Source::*;
    const OPERATOR: &[Source] = &[Operator, Engine, Write];
    let (sources, named): (&[Source], &[Code]) = match (method, path) {
        ("post", "/v1/segments") => (&[Body, Request, Submission, Engine, Write], &[]),
        ("post", "/v1/orders") => (&[Body, Request, Order, Engine, Write], &[]),
        ("get", "/v1/segments") => (&[Request, Engine], &[]),
        ("get", "/v1/segments/{id}") => (&[Request, Engine], &[UnknownSegment]),
        ("get", "/v1/markets") => (&[Engine], &[]),
        ("get", "/v1/markets/{key}") => (&[Request, Engine], &[UnknownMarket]),
        ("get", "/v1/fills/{id}") => (&[Request, Engine], &[UnknownFill]),
        ("get", "/v1/fills/{id}/data") => (&[Request, Engine, Delivery], &[UnknownFill]),
        ("get", "/v1/segments/{id}/data") => (&[Request, Engine, PayloadRead], &[UnknownSegment]),
        (
            "get",
            "/v1/providers/{address}/earnings" | "/v1/consumers/{address}/fills" | "/v1/consumers/{address}/escrow",
        ) => (&[Request, Engine], &[]),
        ("post", "/v1/admin/pause" | "/v1/admin/resume") => (OPERATOR, &[]),
        ("post", "/v1/admin/reload") => (OPERATOR, &[InvalidConfig, ConfigNotApplicable]),
        ("post", "/v1/admin/phase") => (&[Body, Operator, Engine, Write], &[InvalidPhase]),
        ("get", "/v1/feed") => (&[], &[NotWebsocket, Internal]),
        _ => (&[], &[]),
    };
    let mut codes: Vec<Code> =
        sources.iter().flat_map(|s| Code::from_source(*s)).chain(named.iter().copied()).collect();
    codes.sort();
    codes.dedup();
    codes
}

/// Writes each route's error responses into the OpenAPI document: one per
/// status, whose description lists every code of that status the route can
/// answer with. The handlers declare only their successes; the table above
/// is the one place that says which errors each route meets.
pub struct ErrorCodes;

impl utoipa::Modify for ErrorCodes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [("get", &mut item.get), ("post", &mut item.post)];
            for (method, op) in operations {
                let Some(op) = op.as_mut() else { continue };
                let codes = route_codes(method, path);
                op.responses.responses.retain(|status, _| !status.starts_with(['4', '5']));
                let mut statuses: Vec<u16> = codes.iter().map(|c| c.status()).collect();
                statuses.sort();
                statuses.dedup();
                for status in statuses {
                    let lines: Vec<String> = codes
                        .iter()
                        .filter(|c| c.status() == status)
                        .map(|c| format!("`{c}`: {}", c.description()))
                        .collect();
                    let body = match (path.as_str(), status) {
                        ("/v1/admin/reload", 422) => "InvalidConfigBody",
                        _ => "ErrorBody",
                    };
                    let schema = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(body));
                    let response = ResponseBuilder::new()
                        .description(lines.join("\n\n"))
                        .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
                        .build();
                    op.responses.responses.insert(status.to_string(), RefOr::T(response));
                }
            }
        }
    }
}
