//! One WebSocket connection: reads the client's operations, writes what its
//! outbox holds, sends heartbeats, and closes it with a reason when the
//! client is silent too long, falls too far behind, or breaks the protocol.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use alloy_primitives::B256;
use bytestring::ByteString;

use super::hub::{Conn, Drained, Hub, reason};
use super::protocol::{ClientOp, FeedError, challenge_text, now_us, parse_op, verify_auth};

/// Runs a connection to its end and records why it ended.
pub async fn run(hub: Arc<Hub>, ip: IpAddr, mut session: Session, mut stream: AggregatedMessageStream) {
    let why = match hub.connect(ip) {
        Ok(conn) => {
            let mut link = Link { hub: &hub, conn: &conn, session: &mut session, sent: 0, bytes: 0 };
            let why = link.serve(&mut stream).await;
            hub.disconnect(&conn);
            why
        }
        Err(e) => {
            let _ = session.text(e.to_json()).await;
            reason::TOO_MANY_CONNECTIONS
        }
    };
    metrics::counter!("pat_feed_disconnects_total", "reason" => why).increment(1);
    let code = match why {
        reason::CLIENT_CLOSED | reason::CLIENT_TIMEOUT => CloseCode::Normal,
        reason::PROTOCOL_ERROR => CloseCode::Protocol,
        _ => CloseCode::Policy,
    };
    let close = session.close(Some(CloseReason { code, description: Some(why.to_owned()) }));
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
}

struct Link<'a> {
    hub: &'a Hub,
    conn: &'a Arc<Conn>,
    session: &'a mut Session,
    /// Messages and bytes written since the counters were last flushed.
    sent: u64,
    bytes: u64,
}

impl Link<'_> {
    async fn serve(&mut self, stream: &mut AggregatedMessageStream) -> &'static str {
        let settings = self.hub.settings.clone();
        let challenge = B256::from(rand::random::<[u8; 32]>());
        let welcome = serde_json::json!({
            "type": "welcome",
            "challenge": challenge,
            "sign": challenge_text(&challenge),
            "heartbeat_ms": settings.heartbeat.as_millis() as u64,
            "timeout_ms": settings.client_timeout.as_millis() as u64,
        });
        if let Err(why) = self.send(welcome.to_string().into()).await {
            return why;
        }
        let mut heartbeat = tokio::time::interval_at((Instant::now() + settings.heartbeat).into(), settings.heartbeat);
        let mut last_heard = Instant::now();
        let mut drained = Drained::default();
        let conn = Arc::clone(self.conn);
        let why = loop {
            let step = tokio::select! {
                message = stream.recv() => match message {
                    None => Err(reason::CLIENT_CLOSED),
                    Some(Err(e)) => {
                        let error = FeedError::new("frame_too_large", format!("closing: {e}"));
                        let _ = self.send(error.to_json().into()).await;
                        Err(reason::PROTOCOL_ERROR)
                    }
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        self.on_message(message, &challenge).await
                    }
                },
                () = conn.wake.notified() => self.flush(&mut drained).await,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > settings.client_timeout {
                        Err(reason::CLIENT_TIMEOUT)
                    } else {
                        let beat = serde_json::json!({"type": "heartbeat", "ts": now_us()});
                        match self.session.ping(b"").await {
                            Ok(()) => self.send(beat.to_string().into()).await,
                            Err(_) => Err(reason::CLIENT_CLOSED),
                        }
                    }
                }
            };
            if let Err(why) = step {
                break why;
            }
        };
        self.count();
        why
    }

    async fn on_message(&mut self, message: AggregatedMessage, challenge: &B256) -> Result<(), &'static str> {
        let settings = &self.hub.settings;
        let reply = match message {
            AggregatedMessage::Text(text) if text.len() > settings.max_message_bytes => Err(FeedError::new(
                "message_too_large",
                format!("{} bytes; messages are at most {}", text.len(), settings.max_message_bytes),
            )),
            AggregatedMessage::Text(text) => self.on_op(parse_op(&text), challenge),
            AggregatedMessage::Binary(_) => Err(FeedError::new("binary_not_supported", "send JSON in text frames")),
            AggregatedMessage::Ping(payload) => {
                return self.session.pong(&payload).await.map_err(|_| reason::CLIENT_CLOSED);
            }
            AggregatedMessage::Pong(_) => return Ok(()),
            AggregatedMessage::Close(_) => return Err(reason::CLIENT_CLOSED),
        };
        let text = match reply {
            Ok(value) => value.to_string(),
            Err(e) => {
                metrics::counter!("pat_feed_client_errors_total", "code" => e.code).increment(1);
                e.to_json()
            }
        };
        self.send(text.into()).await
    }

    fn on_op(&self, op: Result<ClientOp, FeedError>, challenge: &B256) -> Result<serde_json::Value, FeedError> {
        Ok(match op? {
            ClientOp::Ping => serde_json::json!({"type": "pong", "ts": now_us()}),
            ClientOp::Subscribe(entries) => {
                let markets = self.hub.subscribe(self.conn, &entries)?;
                serde_json::json!({"type": "subscribed", "markets": markets})
            }
            ClientOp::Unsubscribe(entries) => {
                let markets = self.hub.unsubscribe(self.conn, &entries)?;
                serde_json::json!({"type": "unsubscribed", "markets": markets})
            }
            ClientOp::Auth { address, signature } => {
                verify_auth(challenge, address, &signature)?;
                self.hub.authenticate(self.conn, address);
                serde_json::json!({"type": "authenticated", "address": address})
            }
        })
    }

    /// Writes everything the outbox holds, unless the hub closed the connection.
    async fn flush(&mut self, drained: &mut Drained) -> Result<(), &'static str> {
        drained.frames.clear();
        self.conn.drain(drained);
        if let Some(why) = drained.closing {
            return Err(why);
        }
        let Some(oldest) = drained.frames.first().map(|f| f.published) else { return Ok(()) };
        for frame in drained.frames.drain(..) {
            self.send(frame.text).await?;
        }
        metrics::histogram!("pat_feed_publish_to_write_seconds").record(oldest.elapsed().as_secs_f64());
        if self.sent >= 1024 {
            self.count();
        }
        Ok(())
    }

    /// Hands one text frame to the socket writer; a writer blocked past the
    /// lag limit means the client stopped reading.
    async fn send(&mut self, text: ByteString) -> Result<(), &'static str> {
        let len = text.len() as u64;
        match tokio::time::timeout(self.hub.settings.lag_limit, self.session.text(text)).await {
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
