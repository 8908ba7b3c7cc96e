//! The API's error shape: `{"code": "...", "message": "..."}` with the HTTP
//! status that fits, for every failure a request can meet.

use crate::dto::ErrorBody;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use pat_actors::EngineError;

/// A request that failed, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody { code: self.code.to_owned(), message: self.message.clone() })
    }
}

/// The status of each engine error code.
fn status_of(code: &str) -> StatusCode {
    match code {
        "bad_signature" => StatusCode::UNAUTHORIZED,
        "unknown_market" | "unknown_segment_type" | "unknown_window" => StatusCode::NOT_FOUND,
        "nonce_used" | "duplicate_payload" => StatusCode::CONFLICT,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "paused" | "busy" | "degraded" | "journal_failed" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "recovery_failed" | "routing_failed" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let code = e.code();
        Self::new(status_of(code), code, e.to_string())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        match e {
            actix::MailboxError::Timeout => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the engine did not answer in time")
            }
            // The actor is gone and its supervisor is starting the next one.
            actix::MailboxError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the engine is restarting from its journal; retry shortly",
            ),
        }
    }
}
