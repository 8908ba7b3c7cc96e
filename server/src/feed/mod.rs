//! # The WebSocket quote feed (`/v1/feed`)
//!
//! Owns the streaming side of the API: clients subscribe to markets (keys
//! or `*` patterns), get a snapshot of each, then every quote change in
//! `seq` order; a consumer that authenticates with a signed challenge also
//! gets its own fills' status changes. The wire format is in
//! `docs/protocol.md`.
//!
//! ## Layout
//!
//! - [`protocol`]: client operations, server messages, patterns, the challenge.
//! - [`hub`]: the serialized quote table and every connection's bounded,
//!   conflating outbox; fan-out.
//! - [`session`]: one connection's task: reads, writes, heartbeats, closes.
//!
//! A thread of its own (`pat-feed-hub`) listens to the engine's changed-quote
//! and fill-update broadcasts and publishes into the hub, so neither the
//! engine nor the HTTP workers wait on a slow socket.

pub mod hub;
pub mod protocol;
pub mod session;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use pat_actors::EngineHandle;
use pat_actors::messages::{FillUpdate, SubscribeFills, SubscribeQuotes};
use pat_actors::quoting::Tables;
use pat_engine::{Code, Quote};
use tokio::sync::broadcast::{self, error::RecvError};

use self::hub::Hub;
use crate::error::ApiError;

/// Frames above this are refused by the WebSocket codec and close the
/// connection; messages above `message_bytes_max` but below it get an error.
pub const FRAME_BYTES_HARD_MAX: usize = 64 * 1024;

/// The feed's limits and timers (config section `[feed]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSettings {
    /// Interval of the server's heartbeats (a `heartbeat` message and a ping frame).
    pub heartbeat: Duration,
    /// A client heard nothing from for this long is closed.
    pub client_timeout: Duration,
    /// Quotes a connection's outbox holds before it conflates.
    pub queue_capacity: usize,
    /// How long a client may stay behind (conflating, or its socket blocked).
    pub lag_limit: Duration,
    /// Markets one connection may subscribe to.
    pub subscriptions_max: usize,
    pub connections_per_ip_max: usize,
    /// Largest client message, bytes.
    pub message_bytes_max: usize,
}

impl From<&pat_config::FeedParams> for FeedSettings {
    fn from(p: &pat_config::FeedParams) -> Self {
        Self {
            heartbeat: Duration::from_millis(p.heartbeat_ms),
            client_timeout: Duration::from_millis(p.client_timeout_ms),
            queue_capacity: p.queue_capacity,
            lag_limit: Duration::from_millis(p.lag_limit_ms),
            subscriptions_max: p.subscriptions_max,
            connections_per_ip_max: p.connections_per_ip_max,
            message_bytes_max: p.message_bytes_max,
        }
    }
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self::from(&pat_config::FeedParams::default())
    }
}

/// Builds the hub from the quote table and starts the thread that publishes
/// the engine's broadcasts into it.
pub async fn start_hub(
    engine: &EngineHandle,
    tables: Arc<Tables>,
    settings: FeedSettings,
) -> std::io::Result<Arc<Hub>> {
    let ask = |e: actix::MailboxError| std::io::Error::other(format!("the engine did not answer: {e}"));
    // Subscribing first: a quote published meanwhile is newer than the table
    // or ignored by its `seq`.
    let quotes = engine.send(SubscribeQuotes).await.map_err(ask)?;
    let fills = engine.send(SubscribeFills).await.map_err(ask)?;
    let markets = tables.quoted().map(|(key, quote)| (key.clone(), quote)).collect();
    let validity = tables.clone();
    let hub = Arc::new(Hub::new(settings, markets, Arc::new(move || validity.quotes.valid_until_ms())));
    let publisher = hub.clone();
    std::thread::Builder::new().name("pat-feed-hub".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match runtime {
            Ok(runtime) => runtime.block_on(publish(publisher, tables, quotes, fills)),
            Err(e) => eprintln!("pat-feed-hub: no runtime, the feed publishes nothing: {e}"),
        }
    })?;
    Ok(hub)
}

/// Publishes the engine's broadcasts until the engine stops. A lagged quote
/// receiver resyncs from the quote table (clients see a `seq` gap).
async fn publish(
    hub: Arc<Hub>,
    tables: Arc<Tables>,
    mut quotes: broadcast::Receiver<Arc<Vec<Quote>>>,
    mut fills: broadcast::Receiver<FillUpdate>,
) {
    loop {
        tokio::select! {
            batch = quotes.recv() => match batch {
                Ok(batch) => hub.publish_quotes(&batch),
                Err(RecvError::Lagged(_)) => {
                    metrics::counter!("pat_feed_resyncs_total").increment(1);
                    hub.publish_quotes(&tables.quotes.all());
                }
                Err(RecvError::Closed) => return,
            },
            update = fills.recv() => match update {
                Ok(update) => hub.publish_fill(&update),
                Err(RecvError::Lagged(lost)) => metrics::counter!("pat_feed_fill_updates_lost_total").increment(lost),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// `GET /v1/feed`: upgrades to a WebSocket and runs the connection.
#[utoipa::path(get, path = "/v1/feed", tag = "feed",
    responses((status = 101, description = "WebSocket upgrade; the message protocol is in docs/protocol.md")))]
pub async fn feed(req: HttpRequest, body: web::Payload, hub: web::Data<Arc<Hub>>) -> Result<HttpResponse, ApiError> {
    let mut response =
        actix_http::ws::handshake(req.head()).map_err(|e| ApiError::new(Code::NotWebsocket, e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<web::Bytes>(session::WRITE_QUEUE);
    // The response body is whatever the connection's task hands over, as it comes.
    let body_stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    let ip = req.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    actix_web::rt::spawn(session::run(hub.get_ref().clone(), ip, session::Writer(tx), session::Reader::new(body)));
    let body = actix_http::body::BodyStream::new(body_stream);
    let response = response
        .message_body(actix_web::body::BoxBody::new(body))
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    Ok(response.into())
}

/// Registers the feed's metrics with the installed recorder.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("pat_feed_clients", "WebSocket feed connections open.");
    describe_counter!("pat_feed_messages_sent_total", Unit::Count, "Messages written to feed clients.");
    describe_counter!("pat_feed_bytes_sent_total", Unit::Bytes, "Bytes of messages written to feed clients.");
    describe_counter!("pat_feed_quotes_published_total", Unit::Count, "Quote changes the feed serialized.");
    describe_counter!("pat_feed_conflated_total", Unit::Count, "Quotes held back for a lagging client (conflated).");
    describe_counter!("pat_feed_disconnects_total", Unit::Count, "Feed connections closed, by reason.");
    describe_counter!("pat_feed_client_errors_total", Unit::Count, "Client messages refused, by error code.");
    describe_counter!("pat_feed_resyncs_total", Unit::Count, "Times the feed fell behind the engine and resynced.");
    describe_counter!(
        "pat_feed_fill_updates_lost_total",
        Unit::Count,
        "Fill updates the feed fell too far behind to send."
    );
    describe_histogram!(
        "pat_feed_publish_to_write_seconds",
        Unit::Seconds,
        "From a quote's publication to its handover to the client's socket (oldest of each write batch)."
    );
}
