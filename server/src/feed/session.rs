//! One WebSocket connection: reads the client's operations, writes what its
//! outbox holds, sends heartbeats, and closes it with a reason when the
//! client is silent too long, falls too far behind, or breaks the protocol.
//!
//! Writing bypasses per-message framing: the hub's frames are already
//! encoded, so a connection concatenates everything it drained into one
//! buffer and hands it to the socket's writer in one piece. Reading decodes
//! frames from the request payload with actix-http's codec.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame as WsFrame, Item, OpCode, Parser, ProtocolError};
use actix_web::web::{self, Bytes, BytesMut};
use alloy_primitives::B256;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use pat_engine::Code;

use super::FRAME_BYTES_HARD_MAX;
use super::hub::{Conn, Drained, Hub, reason, text_frame};
use super::protocol::{ClientOp, FeedError, challenge_text, now_us, parse_op, verify_auth};

/// Write buffers a connection may have waiting for its socket.
pub const WRITE_QUEUE: usize = 4;

/// The socket's side of a connection: encoded bytes for the response body.
pub struct Writer(pub mpsc::Sender<Bytes>);

/// The client's side: frames decoded from the request payload.
pub struct Reader {
    payload: web::Payload,
    buf: BytesMut,
    codec: Codec,
    /// A text message arriving in continuation frames.
    partial: Option<BytesMut>,
}

impl Reader {
    pub fn new(payload: web::Payload) -> Self {
        Self { payload, buf: BytesMut::new(), codec: Codec::new().max_size(FRAME_BYTES_HARD_MAX), partial: None }
    }

    /// The next complete message. Cancel-safe: bytes are kept between calls.
    ///
    /// A frame declaring more than [`FRAME_BYTES_HARD_MAX`] is refused from
    /// its header, before any of its payload is read, so what a connection
    /// buffers is at most one frame of that size (actix-http's decoder would
    /// wait for the whole frame first).
    async fn next(&mut self) -> Incoming {
        loop {
            if declared_length(&self.buf).is_some_and(|len| len > FRAME_BYTES_HARD_MAX as u64) {
                return Incoming::TooLarge;
            }
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if let Some(message) = self.message(frame) {
                        return message;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(ProtocolError::Overflow) => return Incoming::TooLarge,
                Err(e) => return Incoming::Invalid(e.to_string()),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => return Incoming::Closed,
            }
        }
    }

    fn message(&mut self, frame: WsFrame) -> Option<Incoming> {
        Some(match frame {
            WsFrame::Text(bytes) => Incoming::Text(bytes),
            WsFrame::Binary(_) => Incoming::Binary,
            WsFrame::Ping(bytes) => Incoming::Ping(bytes),
            WsFrame::Pong(_) => Incoming::Pong,
            WsFrame::Close(_) => Incoming::Closed,
            WsFrame::Continuation(item) => {
                let last = matches!(item, Item::Last(_));
                match item {
                    Item::FirstText(bytes) => self.partial = Some(BytesMut::from(&bytes[..])),
                    Item::FirstBinary(_) => return Some(Incoming::Binary),
                    Item::Continue(bytes) | Item::Last(bytes) if self.partial.is_some() => {
                        let partial = self.partial.as_mut().expect("a message in progress");
                        if partial.len() + bytes.len() > FRAME_BYTES_HARD_MAX {
                            return Some(Incoming::TooLarge);
                        }
                        partial.extend_from_slice(&bytes);
                        if last {
                            return self.partial.take().map(|b| Incoming::Text(b.freeze()));
                        }
                    }
                    // Continuations of a binary message, ignored with it.
                    Item::Continue(_) | Item::Last(_) => {}
                }
                return None;
            }
        })
    }
}

/// The payload length a frame's header declares (RFC 6455 section 5.2), once
/// `buf` holds enough of the header to say.
fn declared_length(buf: &[u8]) -> Option<u64> {
    match *buf.get(1)? & 0x7F {
        126 => Some(u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?))),
        127 => Some(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        len => Some(u64::from(len)),
    }
}

enum Incoming {
    Text(Bytes),
    Binary,
    Ping(Bytes),
    Pong,
    Closed,
    TooLarge,
    Invalid(String),
}

fn control(op: OpCode, payload: &[u8]) -> Bytes {
    let mut wire = BytesMut::with_capacity(payload.len() + 2);
    Parser::write_message(&mut wire, payload, op, true, false);
    wire.freeze()
}

/// Runs a connection to its end and records why it ended.
pub async fn run(hub: Arc<Hub>, ip: IpAddr, writer: Writer, mut reader: Reader) {
    let mut link = Link { hub: &hub, writer, sent: 0, bytes: 0 };
    let why = match hub.connect(ip) {
        Ok(conn) => {
            let why = link.serve(&conn, &mut reader).await;
            hub.disconnect(&conn);
            why
        }
        Err(e) => {
            let _ = link.send_text(&e.to_json()).await;
            reason::TOO_MANY_CONNECTIONS
        }
    };
    metrics::counter!("pat_feed_disconnects_total", "reason" => why).increment(1);
    let code = match why {
        reason::CLIENT_CLOSED | reason::CLIENT_TIMEOUT => CloseCode::Normal,
        reason::PROTOCOL_ERROR => CloseCode::Protocol,
        _ => CloseCode::Policy,
    };
    let mut close = BytesMut::new();
    Parser::write_close(&mut close, Some(CloseReason { code, description: Some(why.to_owned()) }), false);
    // The close frame waits behind what is queued for at most the lag limit;
    // dropping the writer then ends the response and the connection.
    let _ = link.send(close.freeze()).await;
    link.count();
}

struct Link<'a> {
    hub: &'a Hub,
    writer: Writer,
    /// Messages and bytes written since the counters were last flushed.
    sent: u64,
    bytes: u64,
}

impl Link<'_> {
    async fn serve(&mut self, conn: &Arc<Conn>, reader: &mut Reader) -> &'static str {
        let settings = self.hub.settings.clone();
        let challenge = B256::from(rand::random::<[u8; 32]>());
        let welcome = serde_json::json!({
            "type": "welcome",
            "challenge": challenge,
            "sign": challenge_text(&challenge),
            "heartbeat_ms": settings.heartbeat.as_millis() as u64,
            "timeout_ms": settings.client_timeout.as_millis() as u64,
        });
        if let Err(why) = self.send_text(&welcome.to_string()).await {
            return why;
        }
        let mut heartbeat = tokio::time::interval_at((Instant::now() + settings.heartbeat).into(), settings.heartbeat);
        let mut last_heard = Instant::now();
        let mut drained = Drained::default();
        loop {
            let step = tokio::select! {
                incoming = reader.next() => {
                    last_heard = Instant::now();
                    self.on_message(incoming, conn, &challenge).await
                }
                () = conn.wake.notified() => self.flush(conn, &mut drained).await,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > settings.client_timeout {
                        Err(reason::CLIENT_TIMEOUT)
                    } else {
                        let beat = serde_json::json!({"type": "heartbeat", "ts": now_us()}).to_string();
                        let mut wire = BytesMut::with_capacity(beat.len() + 12);
                        Parser::write_message(&mut wire, b"", OpCode::Ping, true, false);
                        Parser::write_message(&mut wire, beat, OpCode::Text, true, false);
                        self.send(wire.freeze()).await
                    }
                }
            };
            if let Err(why) = step {
                return why;
            }
        }
    }

    async fn on_message(&mut self, incoming: Incoming, conn: &Arc<Conn>, challenge: &B256) -> Result<(), &'static str> {
        let settings = &self.hub.settings;
        let reply = match incoming {
            Incoming::Closed => return Err(reason::CLIENT_CLOSED),
            Incoming::Pong => return Ok(()),
            Incoming::Ping(payload) => return self.send(control(OpCode::Pong, &payload)).await,
            Incoming::TooLarge | Incoming::Invalid(_) => {
                let detail = match incoming {
                    Incoming::Invalid(e) => FeedError::new(Code::ProtocolError, format!("closing: {e}")),
                    _ => FeedError::new(
                        Code::FrameTooLarge,
                        format!("closing: frames are at most {FRAME_BYTES_HARD_MAX} bytes"),
                    ),
                };
                let _ = self.send_text(&detail.to_json()).await;
                return Err(reason::PROTOCOL_ERROR);
            }
            Incoming::Binary => Err(FeedError::new(Code::BinaryNotSupported, "send JSON in text frames")),
            Incoming::Text(text) if text.len() > settings.message_bytes_max => Err(FeedError::new(
                Code::MessageTooLarge,
                format!("{} bytes; messages are at most {}", text.len(), settings.message_bytes_max),
            )),
            Incoming::Text(text) => match std::str::from_utf8(&text) {
                Ok(text) => self.on_op(parse_op(text), conn, challenge),
                Err(_) => Err(FeedError::new(Code::MalformedMessage, "text frames carry UTF-8")),
            },
        };
        let text = match reply {
            Ok(value) => value.to_string(),
            Err(e) => {
                metrics::counter!("pat_feed_client_errors_total", "code" => e.code.as_str()).increment(1);
                e.to_json()
            }
        };
        self.send_text(&text).await
    }

    fn on_op(
        &self,
        op: Result<ClientOp, FeedError>,
        conn: &Arc<Conn>,
        challenge: &B256,
    ) -> Result<serde_json::Value, FeedError> {
        Ok(match op? {
            ClientOp::Ping => serde_json::json!({"type": "pong", "ts": now_us()}),
            ClientOp::Subscribe(entries) => {
                let markets = self.hub.subscribe(conn, &entries)?;
                serde_json::json!({"type": "subscribed", "markets": markets})
            }
            ClientOp::Unsubscribe(entries) => {
                let markets = self.hub.unsubscribe(conn, &entries)?;
                serde_json::json!({"type": "unsubscribed", "markets": markets})
            }
            ClientOp::Auth { address, signature } => {
                verify_auth(challenge, address, &signature)?;
                self.hub.authenticate(conn, address);
                serde_json::json!({"type": "authenticated", "address": address})
            }
        })
    }

    /// Writes everything the outbox holds in one buffer, unless the hub
    /// closed the connection.
    async fn flush(&mut self, conn: &Conn, drained: &mut Drained) -> Result<(), &'static str> {
        drained.frames.clear();
        conn.drain(drained);
        if let Some(why) = drained.closing {
            return Err(why);
        }
        let Some(oldest) = drained.frames.first().map(|f| f.published) else { return Ok(()) };
        let wire = if drained.frames.len() == 1 {
            drained.frames[0].wire.clone()
        } else {
            let mut wire = BytesMut::with_capacity(drained.frames.iter().map(|f| f.wire.len()).sum());
            drained.frames.iter().for_each(|f| wire.extend_from_slice(&f.wire));
            wire.freeze()
        };
        self.sent += drained.frames.len() as u64 - 1;
        self.send(wire).await?;
        metrics::histogram!("pat_feed_publish_to_write_seconds").record(oldest.elapsed().as_secs_f64());
        if self.sent >= 1024 {
            self.count();
        }
        Ok(())
    }

    async fn send_text(&mut self, text: &str) -> Result<(), &'static str> {
        self.send(text_frame(text)).await
    }

    /// Hands encoded frames to the socket's writer; a writer blocked past the
    /// lag limit means the client stopped reading.
    async fn send(&mut self, wire: Bytes) -> Result<(), &'static str> {
        let len = wire.len() as u64;
        match tokio::time::timeout(self.hub.settings.lag_limit, self.writer.0.send(wire)).await {
            Ok(Ok(())) => {
                self.sent += 1;
                self.bytes += len;
                Ok(())
            }
            Ok(Err(_)) => Err(reason::CLIENT_CLOSED),
            Err(_) => Err(reason::SLOW_CONSUMER),
        }
    }

    fn count(&mut self) {
        metrics::counter!("pat_feed_messages_sent_total").increment(std::mem::take(&mut self.sent));
        metrics::counter!("pat_feed_bytes_sent_total").increment(std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::declared_length;

    #[test]
    fn a_frame_length_is_read_from_its_header_alone() {
        assert_eq!(declared_length(&[0x81]), None);
        assert_eq!(declared_length(&[0x81, 0x85]), Some(5));
        assert_eq!(declared_length(&[0x81, 0xFE, 0x01]), None);
        assert_eq!(declared_length(&[0x81, 0xFE, 0x01, 0x00]), Some(256));
        assert_eq!(declared_length(&[0x81, 0xFF, 0, 0, 0, 0, 0x40, 0, 0]), None);
        // The frame: masked text declaring 2^30 bytes.
        assert_eq!(declared_length(&[0x81, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0]), Some(1 << 30));
    }
}
