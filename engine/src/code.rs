//! [`Code`]: every machine-readable error code a client can meet, over REST
//! or the WebSocket feed, each with its HTTP status, where it can come from,
//! and what it means. The engine's refusals, the actors' and the server's all
//! name a `Code`, so a code cannot be misspelt and its status cannot drift;
//! the OpenAPI document and `docs/protocol.md` are checked against this table.
//!
//! Adding a code is one line here, then the variant of the error that carries
//! it (whose `code()` match the compiler makes exhaustive).

use std::fmt;

/// Where a code can come from: the OpenAPI document lists, for each route,
/// the codes of the sources that route meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Reading a JSON request body.
    Body,
    /// Parsing a path, query or field value.
    Request,
    /// The server itself: no such route, the feed's upgrade.
    Route,
    /// The operator's bearer token.
    Operator,
    /// One admin route or another (each route names its own).
    Admin,
    /// A provider's segment submission.
    Submission,
    /// A consumer's order.
    Order,
    /// A lookup by id or key (each route names its own).
    Lookup,
    /// The engine's runtime, for any route that asks it.
    Engine,
    /// A change the engine journals.
    Write,
    /// The engine's start-up and recovery; no route answers with it (the
    /// binary reports it and exits, or the supervisor retries).
    Boot,
    /// A consumer's download of what a fill bought.
    Delivery,
    /// A provider's read of a payload it listed.
    PayloadRead,
    /// A WebSocket feed message (sent as `{"type":"error"}`, not as an HTTP response).
    Feed,
}

macro_rules! codes {
    ($($variant:ident = $name:literal, $status:literal, [$($source:ident),+], $desc:literal;)+) => {
        /// A machine-readable error code; see the module doc.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(#[doc = $desc] $variant,)+
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            /// The code as clients see it: `snake_case`, stable forever.
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)+ }
            }

            /// The HTTP status it is answered with (for a feed code, the
            /// status it would have over REST).
            pub const fn status(self) -> u16 {
                match self { $(Code::$variant => $status,)+ }
            }

            /// What it means, for the OpenAPI document and operators.
            pub const fn description(self) -> &'static str {
                match self { $(Code::$variant => $desc,)+ }
            }

            /// Where it can come from.
            pub const fn sources(self) -> &'static [Source] {
                match self { $(Code::$variant => &[$(Source::$source),+],)+ }
            }
        }
    };
}

codes! {
    MalformedJson = "malformed_json", 400, [Body], "the body is not JSON, or has wrong types, unknown or missing fields";
    InvalidRequest = "invalid_request", 400, [Request, Feed], "a field, path or query value is malformed: bad hex, market key, amount string or encoding";
    BodyTooLarge = "body_too_large", 413, [Body], "the request body is over the server's limit";
    UnsupportedMediaType = "unsupported_media_type", 415, [Body], "the body is not application/json";
    RequestTimeout = "request_timeout", 408, [Body], "the request body did not arrive within http.body_read_timeout_ms of its head; the connection closes";
    Overloaded = "overloaded", 503, [Body], "unfinished request bodies hold http.bodies_held_bytes_max bytes already; the connection closes; retry";
    NotFound = "not_found", 404, [Route], "no such route";
    MethodNotAllowed = "method_not_allowed", 405, [Route], "the path exists but not with this method; the Allow header lists those it takes";
    NotWebsocket = "not_websocket", 400, [Route], "the feed route was asked without a WebSocket upgrade";
    Internal = "internal", 500, [Route], "the server could not complete a WebSocket handshake";
    Unauthorized = "unauthorized", 401, [Operator], "an operator bearer token is required";
    Forbidden = "forbidden", 403, [Operator], "the operator token is wrong";
    AdminDisabled = "admin_disabled", 403, [Operator], "the server was started without PAT_OPERATOR_TOKEN";
    InvalidConfig = "invalid_config", 422, [Admin], "the config file fails validation; the running config stays";
    ConfigNotApplicable = "config_not_applicable", 422, [Admin], "the new config changes what needs a restart (catalogue, chain id, marketplace)";
    InvalidPhase = "invalid_phase", 422, [Admin], "a phase goes forward only, from 1 to 4";
    BadSignature = "bad_signature", 401, [Submission, Order, Delivery, PayloadRead], "the order, submission or access is not signed by its consumer or provider, or its signature breaks the rule (65 bytes, low s, v 27 or 28)";
    UnknownSegmentType = "unknown_segment_type", 404, [Submission], "the segment type is not in the config";
    UnknownWindow = "unknown_window", 404, [Submission], "the window is not in the config";
    ConfidenceOutsideBands = "confidence_outside_bands", 422, [Submission], "the confidence is outside every configured band";
    WindowEnded = "window_ended", 422, [Submission], "the observation window has already ended";
    FutureTimestamp = "future_timestamp", 422, [Submission], "windowStart or createdAt is in the future, past the allowed clock skew";
    CreatedBeforeWindow = "created_before_window", 422, [Submission], "createdAt is before windowStart";
    EmptyPayload = "empty_payload", 422, [Submission], "the payload is empty";
    PayloadTooLarge = "payload_too_large", 413, [Submission], "the segment payload is over ingest.payload_bytes_max";
    PayloadHashMismatch = "payload_hash_mismatch", 422, [Submission], "the payload does not hash to the signed payloadHash";
    MalformedPayload = "malformed_payload", 422, [Submission], "the payload is not a batch of signals";
    NonCanonicalPayload = "non_canonical_payload", 422, [Submission], "the payload is JSON but not in its canonical form (RFC 8785), the only form listed";
    SignalCount = "signal_count", 422, [Submission], "the payload has no signals, or more than ingest.signals_max";
    UnitsOutOfRange = "units_out_of_range", 422, [Submission], "units is 0 or over ingest.units_max";
    RateLimited = "rate_limited", 429, [Submission, Order], "the consumer's orders or the provider's submissions are over their per-identity limit (config [limits]); nothing changed; retry after Retry-After seconds";
    DuplicatePayload = "duplicate_payload", 409, [Submission], "a segment with this payload is already listed, or is being listed right now";
    StorageUnavailable = "storage_unavailable", 503, [Submission, Delivery, PayloadRead], "the payload store did not answer; nothing was listed or served; retry after Retry-After seconds";
    TokenExpired = "token_expired", 401, [Delivery, PayloadRead], "the access signature's expiresAt has passed, or lies more than an hour ahead";
    NotYourFill = "not_your_fill", 403, [Delivery], "the fill was bought by another consumer";
    NotYourSegment = "not_your_segment", 403, [PayloadRead], "the segment was listed by another provider";
    NotSettled = "not_settled", 409, [Delivery], "the fill has not settled on chain (yet, or it failed); the message and X-PAT-Fill-Status say its status";
    AccessExpired = "access_expired", 410, [Delivery], "the fill's access period (its type's catalogue access_days from settlement) is over";
    RangeNotSatisfiable = "range_not_satisfiable", 416, [Delivery, PayloadRead], "the Range header is not one byte range inside the body; Content-Range gives its length";
    PayloadUnreadable = "payload_unreadable", 502, [Delivery, PayloadRead], "a payload (of the fill) failed its integrity check in the store and is not served; operators are alerted";
    Paused = "paused", 503, [Order], "the engine is paused: no order intake, no settlement";
    UnknownMarket = "unknown_market", 404, [Order, Lookup, Feed], "no market has this key or id";
    Expired = "expired", 422, [Order], "the order's deadline has passed";
    NonceUsed = "nonce_used", 409, [Order], "the consumer already used this nonce";
    InvalidQuantity = "invalid_quantity", 422, [Order], "qty is 0 or over orders.qty_max";
    MarketHalted = "market_halted", 422, [Order], "the market does not quote now (not yet quoted, exposure at a hard limit, no valid price)";
    QuoteStale = "quote_stale", 422, [Order], "the market's quote expired and no newer one exists";
    PriceAboveMax = "price_above_max", 422, [Order], "the ask is above the order's maxPrice";
    InsufficientSupply = "insufficient_supply", 422, [Order], "fewer units are available than the order asks for: a fill takes one unit from each of qty distinct segments the consumer does not hold yet";
    ExposureLimit = "exposure_limit", 422, [Order], "the fill would take the market's or group's exposure past its hard limit";
    InsufficientEscrow = "insufficient_escrow", 422, [Order], "the consumer's free escrow (escrow on chain at the synced block, less its requested withdrawal and its fills not yet settled) does not cover qty x ask; nothing was reserved";
    EscrowUnavailable = "escrow_unavailable", 503, [Order], "the engine has not read consumers' escrow from the chain up to its head lately (escrow.stale_after_ms): no order is taken until it has; retry";
    NonceInvalidated = "nonce_invalidated", 409, [Order], "the consumer cancelled this nonce on chain (invalidateNonces); an order with it could not settle";
    UnknownFill = "unknown_fill", 404, [Lookup], "no fill has this id";
    UnknownSegment = "unknown_segment", 404, [Lookup], "no segment has this id";
    Busy = "busy", 503, [Engine], "the journal queue is full or the engine did not answer in time; retry";
    Unavailable = "unavailable", 503, [Engine], "the engine, or the request's market, is restarting after a crash; retry";
    Degraded = "degraded", 503, [Write], "a journal write failed; the engine restarts from its journal";
    JournalFailed = "journal_failed", 503, [Write], "the journal refused the record";
    StartFailed = "start_failed", 503, [Boot], "the engine could not start; retry";
    RecoveryFailed = "recovery_failed", 500, [Boot], "the engine could not rebuild its state from disk";
    RoutingFailed = "routing_failed", 500, [Submission], "a request reached the wrong market's actor (a bug); nothing changed";
    MalformedMessage = "malformed_message", 400, [Feed], "a feed message is not JSON, or not an object";
    UnknownOp = "unknown_op", 400, [Feed], "the feed message's op is not one the feed knows";
    InvalidPattern = "invalid_pattern", 400, [Feed], "a market pattern is not three |-separated non-empty parts";
    TooManySubscriptions = "too_many_subscriptions", 400, [Feed], "the subscribe would pass feed.subscriptions_max markets";
    MessageTooLarge = "message_too_large", 413, [Feed], "a feed message is over feed.message_bytes_max; the connection stays";
    BinaryNotSupported = "binary_not_supported", 400, [Feed], "the feed takes text frames only";
    AuthFailed = "auth_failed", 401, [Feed], "the signature breaks the signature rule, or does not recover to the address for this connection's challenge";
    ProtocolError = "protocol_error", 400, [Feed], "the client broke the WebSocket protocol; the connection closes";
    FrameTooLarge = "frame_too_large", 413, [Feed], "a feed frame is over 64 KiB; the connection closes";
    TooManyConnections = "too_many_connections", 429, [Feed], "the IP is at its feed connection limit; the connection closes";
}

impl Code {
    /// The codes that can come from `source`, in table order.
    pub fn from_source(source: Source) -> impl Iterator<Item = Code> {
        Self::ALL.iter().copied().filter(move |c| c.sources().contains(&source))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_with_an_error_status() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len(), "no code twice");
        for c in Code::ALL {
            assert!(c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
            assert!((400..600).contains(&c.status()), "{c}");
            assert!(!c.description().is_empty() && !c.sources().is_empty(), "{c}");
        }
        assert_eq!(
            Code::from_source(Source::Lookup).collect::<Vec<_>>(),
            [Code::UnknownMarket, Code::UnknownFill, Code::UnknownSegment]
        );
    }
}
