//! The WebSocket feed against a real engine and server, with real WebSocket
//! clients: snapshots then quotes in `seq` order, patterns, unsubscribe; every
//! bad message an error with the connection alive; a client that stops
//! reading conflated, then dropped, while the others keep their latency;
//! fill updates only for their authenticated owner; silent clients closed.

mod common;

use std::time::{Duration, Instant};

use alloy_primitives::B256;
use alloy_signer::SignerSync;
use common::{Api, MARKET, now_secs, signer};
use futures_util::{SinkExt, StreamExt};
use pat_actors::messages::{RecordOutcomes, RecordSubmission, Settlement};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

struct Client {
    ws: WebSocketStream<TcpStream>,
    /// The text the server asked this connection to sign.
    sign: String,
}

impl Client {
    async fn connect(api: &Api) -> Self {
        Self::connect_with(api, None).await.expect("welcome")
    }

    /// Connects (with a receive buffer of `rcvbuf` bytes if given) and reads
    /// the first message: the welcome, or the error that refused the client.
    async fn connect_with(api: &Api, rcvbuf: Option<u32>) -> Result<Self, Value> {
        let addr = api.base.trim_start_matches("http://").parse().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(bytes) = rcvbuf {
            socket.set_recv_buffer_size(bytes).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap();
        let url = format!("ws://{}/v1/feed", api.base.trim_start_matches("http://"));
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        let mut client = Self { ws, sign: String::new() };
        let first = client.next().await;
        if first["type"] != "welcome" {
            return Err(first);
        }
        assert!(first["heartbeat_ms"].as_u64().is_some_and(|ms| ms > 0), "{first}");
        client.sign = first["sign"].as_str().unwrap().to_owned();
        Ok(client)
    }

    async fn send(&mut self, message: Value) {
        self.ws.send(Message::text(message.to_string())).await.unwrap();
    }

    /// The next JSON message, skipping heartbeats; panics after 5 s.
    async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(5)).await.expect("a message within 5 s")
    }

    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] != "heartbeat" {
                        return Some(value);
                    }
                }
                Message::Close(frame) => {
                    return Some(json!({"type": "closed", "reason": frame.map(|f| f.reason.to_string())}));
                }
                _ => {}
            }
        }
    }

    /// The next message of type `kind`, skipping others.
    async fn until(&mut self, kind: &str) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] == kind {
                return m;
            }
        }
    }

    /// Every message that arrives within `wait`.
    async fn collect(&mut self, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(v) = self.next_within(deadline.saturating_duration_since(Instant::now())).await {
            out.push(v);
        }
        out
    }

    async fn subscribe(&mut self, markets: &[&str]) -> Vec<Value> {
        self.send(json!({"op": "subscribe", "markets": markets})).await;
        let ack = self.next().await;
        assert_eq!(ack["type"], "subscribed", "{ack}");
        let count = ack["markets"].as_array().unwrap().len();
        let mut snapshots = Vec::with_capacity(count);
        while snapshots.len() < count {
            snapshots.push(self.until("snapshot").await);
        }
        snapshots
    }

    async fn expect_error(&mut self, message: Message, code: &str) {
        self.ws.send(message).await.unwrap();
        let reply = self.next().await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some(code)), "{reply}");
    }
}

/// Five segments of 20 units from each of `providers` providers.
async fn list_segments(api: &Api, providers: u8) {
    for p in 0..providers {
        for s in 0..5 {
            let (status, body) = api.post("/v1/segments", api.segment(p, 20, u64::from(p) * 10 + s)).await;
            assert_eq!(status, 201, "{body}");
        }
    }
}

async fn buy(api: &Api, consumer: u8, nonce: u64) -> Value {
    let (status, fill) = api.post("/v1/orders", api.order(consumer, 1, u128::MAX >> 8, nonce, now_secs() + 60)).await;
    assert_eq!(status, 201, "{fill}");
    fill
}

fn quotes_for<'a>(messages: &'a [Value], market: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == "quote" && m["market"] == market).collect()
}

#[actix_rt::test]
async fn subscribers_get_a_snapshot_then_every_change_in_seq_order() {
    let api = Api::start().await;
    list_segments(&api, 3).await;
    api.ask().await;
    let mut all = Client::connect(&api).await;
    let snapshots = all.subscribe(&["PURCHASE_INTENT|*|*"]).await;
    assert_eq!(snapshots.len(), 9, "three windows by three bands");
    let snapshot = snapshots.iter().find(|s| s["market"] == MARKET).unwrap().clone();
    assert!(snapshot["halted"].is_null(), "{snapshot}");
    assert!(snapshot["ask"].as_str().unwrap().parse::<u128>().unwrap() > 0);
    let mut other = Client::connect(&api).await;
    assert_eq!(other.subscribe(&["JOB_SEARCH|*|*"]).await.len(), 9);

    for nonce in 1..=8 {
        buy(&api, 50, nonce).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let seen = all.collect(Duration::from_millis(600)).await;
    let quotes = quotes_for(&seen, MARKET);
    assert!(!quotes.is_empty(), "buying moved the price: {seen:?}");
    let mut seq = snapshot["seq"].as_u64().unwrap();
    for q in &quotes {
        seq += 1;
        assert_eq!(q["seq"].as_u64(), Some(seq), "no gap and no repeat: {q}");
        let (bid, ask): (u128, u128) =
            (q["bid"].as_str().unwrap().parse().unwrap(), q["ask"].as_str().unwrap().parse().unwrap());
        assert!(bid < ask && q["ts"].as_u64().unwrap() > 0, "{q}");
    }
    let (_, rest) = api.get(&format!("/v1/markets/{}", MARKET.replace('|', "%7C"))).await;
    let last = quotes.last().unwrap();
    if rest["quote"]["seq"] == last["seq"] {
        assert_eq!((&rest["quote"]["bid"], &rest["quote"]["ask"]), (&last["bid"], &last["ask"]));
    }
    let elsewhere = other.collect(Duration::from_millis(200)).await;
    assert!(elsewhere.iter().all(|m| m["type"] != "quote" || m["market"].as_str().unwrap().starts_with("JOB_SEARCH|")));

    all.send(json!({"op": "unsubscribe", "markets": [MARKET]})).await;
    let ack = all.until("unsubscribed").await;
    assert_eq!(ack["markets"], json!([MARKET]));
    for nonce in 9..=12 {
        buy(&api, 50, nonce).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let after = all.collect(Duration::from_millis(400)).await;
    assert!(quotes_for(&after, MARKET).is_empty(), "no quotes after unsubscribing: {after:?}");

    // Seconds later, a quiet market's snapshot states the table's validity
    // now and the time it is sent, not those of its last change.
    let mut late = Client::connect(&api).await;
    let quiet = late.subscribe(&["JOB_SEARCH|1D|0.50-0.70"]).await.remove(0);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let (valid_until_ms, ts_ms) = (quiet["valid_until_ms"].as_u64().unwrap(), quiet["ts"].as_u64().unwrap() / 1000);
    assert!(valid_until_ms + 200 >= now_ms, "valid {} ms ago: {quiet}", now_ms.saturating_sub(valid_until_ms));
    assert!(now_ms.abs_diff(ts_ms) < 1_000, "sent at {ts_ms}, now {now_ms}: {quiet}");
}

#[actix_rt::test]
async fn bad_messages_get_an_error_and_the_connection_lives_on() {
    let api = Api::start_with(|s| {
        s.feed.subscriptions_max = 10;
        s.feed.connections_per_ip_max = 3;
    })
    .await;
    let mut c = Client::connect(&api).await;
    c.expect_error(Message::text("{"), "malformed_message").await;
    c.expect_error(Message::text("[1,2]"), "malformed_message").await;
    c.expect_error(Message::text(r#"{"op":"trade"}"#), "unknown_op").await;
    c.expect_error(Message::text(r#"{"op":"subscribe"}"#), "invalid_request").await;
    c.expect_error(Message::text(r#"{"op":"subscribe","markets":["NOPE|*|*"]}"#), "unknown_market").await;
    c.expect_error(Message::text(r#"{"op":"subscribe","markets":["a|b"]}"#), "invalid_pattern").await;
    // One text per market, as REST takes it: an alias is refused, naming the canonical key.
    let alias = json!({"op": "subscribe", "markets": ["PURCHASE_INTENT|168H|0.7-0.85"]});
    c.ws.send(Message::text(alias.to_string())).await.unwrap();
    let reply = c.next().await;
    assert_eq!(reply["code"], "invalid_request", "{reply}");
    assert!(reply["message"].as_str().unwrap().contains(&format!("write '{MARKET}'")), "{reply}");
    // Duplicate keys are refused, as REST refuses them (the last one used to win and subscribe).
    let twice = format!(r#"{{"op":"subscribe","markets":["*|*|*"],"markets":["{MARKET}"]}}"#);
    c.expect_error(Message::text(twice), "invalid_request").await;
    c.expect_error(Message::text(r#"{"op":"subscribe","markets":["*|*|*"]}"#), "too_many_subscriptions").await;
    let big = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(5000));
    c.expect_error(Message::text(big), "message_too_large").await;
    c.expect_error(Message::binary(vec![1, 2, 3]), "binary_not_supported").await;
    let forged = signer(51).sign_message_sync(c.sign.as_bytes()).unwrap();
    let auth = json!({"op": "auth", "address": signer(50).address(), "signature": forged.to_string()});
    c.expect_error(Message::text(auth.to_string()), "auth_failed").await;
    // The right signer, but v = 0: the one signature rule (v 27 or 28, low s) holds on the feed too.
    let mut v0 = signer(50).sign_message_sync(c.sign.as_bytes()).unwrap().as_bytes();
    v0[64] -= 27;
    let auth =
        json!({"op": "auth", "address": signer(50).address(), "signature": alloy_primitives::hex::encode_prefixed(v0)});
    c.expect_error(Message::text(auth.to_string()), "auth_failed").await;
    // Nothing above changed the subscriptions: one market now is exactly one snapshot.
    let snapshots = c.subscribe(&[MARKET]).await;
    assert_eq!(snapshots.len(), 1);
    c.send(json!({"op": "ping"})).await;
    assert_eq!(c.next().await["type"], "pong");

    // Per-IP limit: three connections, the fourth is told why and closed.
    let _second = Client::connect(&api).await;
    let mut third = Client::connect(&api).await;
    let refused = Client::connect_with(&api, None).await.err().expect("the fourth connection is refused");
    assert_eq!(refused["code"], "too_many_connections");
    // A frame past the codec's hard limit closes that connection, not the server.
    third.ws.send(Message::text("x".repeat(70_000))).await.unwrap();
    let reply = third.next().await;
    assert_eq!(reply["code"], "frame_too_large", "{reply}");
    assert_eq!(third.next().await["reason"], "protocol_error");
    drop(third);
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send(json!({"op": "ping"})).await;
    assert_eq!(c.next().await["type"], "pong");
    Client::connect(&api).await; // the closed connection's slot is free again
}

#[actix_rt::test]
async fn a_client_that_stops_reading_is_conflated_then_dropped_without_slowing_others() {
    let api = Api::start_with(|s| {
        s.feed.queue_capacity = 2;
        s.feed.lag_limit = Duration::from_secs(3);
    })
    .await;
    list_segments(&api, 8).await;
    api.ask().await;
    let mut fast = Client::connect(&api).await;
    fast.subscribe(&["*|*|*"]).await;
    // Watches until told to stop: prices keep drifting with time, so waiting
    // for a quiet feed could take minutes.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = actix_rt::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut quotes = 0;
        loop {
            let m = tokio::select! {
                _ = &mut stopped => break,
                m = fast.next_within(Duration::from_secs(2)) => m,
            };
            let Some(m) = m else { break };
            if m["type"] == "quote" {
                let sent = m["ts"].as_u64().unwrap();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
                worst = worst.max(Duration::from_micros((now as u64).saturating_sub(sent)));
                quotes += 1;
            }
        }
        (quotes, worst)
    });

    // A small receive buffer fills fast, but not smaller than a few segments:
    // at 2 KiB the window stays under the sender's segment size once the
    // client reads again, and the backlog trickles out on persist probes
    // (about 5 KB/s), too slowly to reach the close frame.
    let mut slow = Client::connect_with(&api, Some(16 * 1024)).await.unwrap();
    let metric = async |name: &str| -> u64 {
        let (_, text) = api.get("/metrics").await;
        let text = text.as_str().unwrap().to_owned();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let flood = async |slow: &mut Client| {
        // Snapshots fill the socket (megabytes), as a client that reads nothing would.
        let subscribe = json!({"op": "subscribe", "markets": [MARKET]}).to_string();
        let send_all = async {
            for _ in 0..20_000 {
                slow.ws.feed(Message::text(subscribe.clone())).await.unwrap();
            }
            slow.ws.flush().await.unwrap();
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), send_all).await;
    };
    // Orders move prices, one every 40 ms, until the metric counts something.
    let mut nonce = 0;
    let mut buy_until = async |name: &str, within: Duration, why: &str| {
        let started = Instant::now();
        while metric(name).await == 0 {
            assert!(started.elapsed() < within, "{why}");
            nonce += 1;
            // A consumer per order: one never gets a segment twice.
            buy(&api, (nonce % 250) as u8, nonce).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    };
    flood(&mut slow).await;
    buy_until("pat_feed_conflated_total", Duration::from_secs(20), "the slow client was never conflated").await;
    // Reading again before the lag limit: the backlog, then the notice.
    let notice = slow.until("conflated").await;
    assert!(notice["markets"].as_u64().unwrap() >= 1, "{notice}");

    // Stop reading for good: dropped once behind past the lag limit.
    flood(&mut slow).await;
    let dropped = "pat_feed_disconnects_total{reason=\"slow_consumer\"}";
    buy_until(dropped, Duration::from_secs(30), "the slow client was never dropped").await;
    let closed = slow.until("closed").await;
    assert_eq!(closed["reason"], "slow_consumer");
    let _ = stop.send(()); // the watcher may have ended on a quiet feed already
    let (quotes, worst) = watcher.await.unwrap();
    assert!(quotes > 0);
    assert!(worst < Duration::from_secs(1), "the fast client waited {worst:?} for a quote");
}

#[actix_rt::test]
async fn fill_updates_reach_only_their_authenticated_owner() {
    let api = Api::start().await;
    list_segments(&api, 2).await;
    api.ask().await;
    let auth = async |client: &mut Client, who: u8| {
        let signature = signer(who).sign_message_sync(client.sign.as_bytes()).unwrap();
        client.send(json!({"op": "auth", "address": signer(who).address(), "signature": signature.to_string()})).await;
        let reply = client.next().await;
        assert_eq!(reply["type"], "authenticated", "{reply}");
    };
    let (mut owner, mut neighbour, mut anonymous) =
        (Client::connect(&api).await, Client::connect(&api).await, Client::connect(&api).await);
    auth(&mut owner, 50).await;
    auth(&mut neighbour, 51).await;

    let fill_id = buy(&api, 50, 1).await["fill_id"].as_str().unwrap().parse::<B256>().unwrap();
    let accepted = owner.next().await;
    assert_eq!((accepted["type"].as_str(), accepted["status"].as_str()), (Some("fill"), Some("accepted")));
    assert_eq!(accepted["fill_id"], fill_id.to_string());
    assert_eq!(accepted["market"], MARKET);

    let tx_hash = B256::repeat_byte(0xab);
    api.engine.send(RecordSubmission { fill_ids: vec![fill_id], tx_hash }).await.unwrap().unwrap();
    let submitted = owner.next().await;
    assert_eq!((submitted["status"].as_str(), &submitted["tx_hash"]), (Some("submitted"), &json!(tx_hash)));
    api.engine.send(RecordOutcomes(vec![(fill_id, Settlement::Settled)])).await.unwrap().unwrap();
    let settled = owner.next().await;
    assert_eq!((settled["status"].as_str(), &settled["tx_hash"]), (Some("settled"), &json!(tx_hash)));

    let failing = buy(&api, 50, 2).await["fill_id"].as_str().unwrap().parse::<B256>().unwrap();
    assert_eq!(owner.next().await["status"], "accepted");
    let reason = "insufficient_escrow".to_owned();
    api.engine.send(RecordOutcomes(vec![(failing, Settlement::Rejected(reason.clone()))])).await.unwrap().unwrap();
    let failed = owner.next().await;
    assert_eq!((failed["status"].as_str(), failed["reason"].as_str()), (Some("failed"), Some(reason.as_str())));
    let (_, scrape) = api.get("/metrics").await;
    assert!(scrape.as_str().unwrap().contains(r#"pat_fills_failed_total{reason="insufficient_escrow"} 1"#));

    for other in [&mut neighbour, &mut anonymous] {
        let seen = other.collect(Duration::from_millis(300)).await;
        assert!(seen.iter().all(|m| m["type"] != "fill"), "{seen:?}");
    }
}

#[actix_rt::test]
async fn a_silent_client_is_closed_and_a_live_one_is_not() {
    let api = Api::start_with(|s| {
        s.feed.heartbeat = Duration::from_millis(100);
        s.feed.client_timeout = Duration::from_millis(1_000);
    })
    .await;
    let mut silent = Client::connect(&api).await;
    let mut live = Client::connect(&api).await;
    // The live client reads, so its WebSocket library answers every ping with a pong.
    let heard = live.collect(Duration::from_millis(2_000)).await;
    assert!(heard.iter().all(|m| m["type"] != "closed"), "{heard:?}");
    live.send(json!({"op": "ping"})).await;
    assert_eq!(live.next().await["type"], "pong");
    // The silent one read nothing (so answered nothing) for longer than the
    // timeout. Its bytes are read raw: the WebSocket library would answer the
    // queued pings on a socket the server has closed.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let close = [&[0x88u8, 2 + 14, 0x03, 0xe8][..], b"client_timeout"].concat(); // close 1000, reason
    while !raw.windows(close.len()).any(|w| w == close.as_slice()) {
        let read = tokio::time::timeout(Duration::from_secs(5), silent.ws.get_mut().read(&mut buf)).await;
        match read.expect("the server closes the silent client within 5 s").unwrap() {
            0 => panic!("the connection ended without a client_timeout close frame"),
            n => raw.extend_from_slice(&buf[..n]),
        }
    }
}
