//! The server against hostile clients, over raw sockets: oversized WebSocket
//! frames are refused from their header, stalled bodies are cut off by the
//! body read timeout and free their sockets, wrong methods get `405` with
//! `Allow`, HEAD is answered wherever GET is, and each thing a client names
//! has one accepted text: market keys, ids, addresses, hex, payloads.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Api, MARKET, now_secs};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY_TIMEOUT: Duration = Duration::from_millis(1_500);

async fn start() -> (Api, SocketAddr) {
    start_with(|_| {}).await
}

/// A server with the short body timeout, adjusted by `adjust`, and its address.
async fn start_with(adjust: impl FnOnce(&mut pat_server::ServerSettings)) -> (Api, SocketAddr) {
    let api = Api::start_with(|s| {
        s.http.body_read_timeout = BODY_TIMEOUT;
        adjust(s);
    })
    .await;
    let addr = api.base.trim_start_matches("http://").parse().unwrap();
    (api, addr)
}

/// Opens `/v1/feed` by hand and reads the upgrade's head.
async fn raw_feed(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = "GET /v1/feed HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    socket
}

/// The frames a server sent, as (opcode, payload), until it closed the socket.
fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while wire.len() >= 2 {
        let (op, len7) = (wire[0] & 0x0F, (wire[1] & 0x7F) as usize);
        let (len, at) = match len7 {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize, 10),
            n => (n, 2),
        };
        if wire.len() < at + len {
            break;
        }
        out.push((op, wire[at..at + len].to_vec()));
        wire = &wire[at + len..];
    }
    out
}

/// The 14 bytes of the issue: a masked text frame declaring 2^30 bytes.
const HUGE_FRAME_HEAD: [u8; 14] = [0x81, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0];

/// Sends the huge frame's head, then streams up to `more` bytes of its
/// payload while reading what the server sends; returns the server's frames
/// and whether it closed the socket within `within`.
async fn send_huge_frame(mut socket: TcpStream, more: usize, within: Duration) -> (Vec<(u8, Vec<u8>)>, bool) {
    socket.write_all(&HUGE_FRAME_HEAD).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5A_u8; 64 * 1024];
        let mut sent = 0;
        while sent < more {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        write
    });
    let mut wire = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => wire.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    writer.abort();
    (frames(&wire), closed)
}

#[actix_rt::test]
async fn a_frame_declaring_too_many_bytes_is_refused_from_its_header_and_closed() {
    let (_api, addr) = start().await;
    let (frames, closed) = send_huge_frame(raw_feed(addr).await, 8 << 20, Duration::from_secs(10)).await;
    assert!(closed, "the server keeps reading an oversized frame");
    let texts: Vec<Value> =
        frames.iter().filter(|(op, _)| *op == 1).map(|(_, p)| serde_json::from_slice(p).unwrap()).collect();
    assert_eq!(texts[0]["type"], "welcome");
    let error = texts.iter().find(|t| t["type"] == "error").expect("an error before the close");
    assert_eq!(error["code"], "frame_too_large", "{error}");
    let close = frames.iter().find(|(op, _)| *op == 8).expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1002, "closed as a protocol error");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The server's memory does not follow what oversized frames declare: one IP
/// at its connection limit (64), each connection streaming 4 MiB after a
/// header declaring 1 GiB, adds less than 32 MiB (it added all 256 MiB before
/// frames were refused from their header). The server runs in this test's
/// process, so the test's own buffers count too.
#[actix_rt::test]
async fn sixty_four_oversized_frames_leave_memory_bounded() {
    const LIMIT: u64 = 32 << 20;
    let (_api, addr) = start().await;
    let mut sockets = Vec::new();
    for _ in 0..64 {
        sockets.push(raw_feed(addr).await);
    }
    let before = rss_bytes();
    let sends = sockets.into_iter().map(|s| send_huge_frame(s, 4 << 20, Duration::from_secs(20)));
    let results = futures_util::future::join_all(sends).await;
    let grown = rss_bytes().saturating_sub(before);
    for (frames, closed) in &results {
        assert!(closed, "a connection stayed open");
        assert!(frames.iter().any(|(op, p)| *op == 1 && p.windows(15).any(|w| w == b"frame_too_large")));
    }
    assert!(grown < LIMIT, "RSS grew {} MiB, over the {} MiB limit", grown >> 20, LIMIT >> 20);
}

/// Sends `head` (and whatever body bytes it holds), then stops; returns the
/// answer and how long it took the server to close the socket.
async fn stall(addr: SocketAddr, head: String) -> (String, Duration) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BODY_TIMEOUT * 10, socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the socket is still open after {:?}", BODY_TIMEOUT * 10);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

fn post(path: &str, headers: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\r\n{body}")
}

fn assert_timed_out(answer: &str, took: Duration) {
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "request_timeout", "{body}");
    assert!(took >= BODY_TIMEOUT && took < BODY_TIMEOUT * 4, "closed after {took:?}");
}

#[actix_rt::test]
async fn a_stalled_body_gets_408_and_its_socket_closed() {
    let (api, addr) = start().await;
    let before = api.state().await;
    let (answer, took) = stall(addr, post("/v1/orders", "Content-Length: 100\r\n", "{\"ord")).await;
    assert_timed_out(&answer, took);
    let chunked = post("/v1/segments", "Transfer-Encoding: chunked\r\n", "5\r\n{\"sub\r\n");
    let (answer, took) = stall(addr, chunked).await;
    assert_timed_out(&answer, took);
    assert_eq!(api.state().await, before, "a stalled body changed nothing");
}

/// 500 stalled bodies at once: every one is answered and its socket closed
/// by the timeout, so none holds a descriptor past it.
#[actix_rt::test]
async fn five_hundred_stalled_bodies_are_all_closed_by_the_timeout() {
    let (_api, addr) = start().await;
    let stalls = (0..500).map(|_| stall(addr, post("/v1/orders", "Content-Length: 100\r\n", "{\"ord")));
    let results = futures_util::future::join_all(stalls).await;
    for (answer, took) in &results {
        assert_timed_out(answer, *took);
    }
}

#[actix_rt::test]
async fn bodies_together_may_hold_only_their_budget() {
    let (_api, addr) = start_with(|s| s.http.bodies_held_bytes_max = 64 * 1024).await;
    // One body holds 40 KiB and stalls; a second's 40 KiB would pass the budget.
    let held = format!("{{\"order\":\"{}", "x".repeat(40 * 1024));
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(post("/v1/orders", "Content-Length: 50000\r\n", &held).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (answer, took) = stall(addr, post("/v1/orders", "Content-Length: 50000\r\n", &held)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"overloaded\""), "{answer}");
    assert!(took < BODY_TIMEOUT, "refused at once, not at the deadline: {took:?}");
    drop(first);
}

async fn raw(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

/// Every documented path: any method it does not take gets `405` naming the
/// ones it does (from the OpenAPI document, HEAD beside every GET but the
/// feed's), and HEAD answers as GET does, without a body.
#[actix_rt::test]
async fn wrong_methods_get_405_with_allow_and_head_is_served_wherever_get_is() {
    let (api, addr) = start().await;
    let (_, doc) = api.get("/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 17);
    for (template, item) in paths {
        let path = template
            .replace("{id}", "1")
            .replace("{key}", "PURCHASE_INTENT%7C7D%7C0.70-0.85")
            .replace("{address}", "0x0000000000000000000000000000000000000001");
        let mut allow: Vec<&str> = ["get", "post"].into_iter().filter(|m| item.get(*m).is_some()).collect();
        if allow.contains(&"get") && template != "/v1/feed" {
            allow.push("head");
        }
        allow.sort();
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
            if allow.contains(&method.to_ascii_lowercase().as_str()) {
                continue;
            }
            let (head, body) = raw(addr, method, &path).await;
            assert!(head.starts_with("http/1.1 405"), "{method} {path}: {head}");
            let listed = head.lines().find_map(|l| l.strip_prefix("allow: ")).expect("an Allow header");
            let mut listed: Vec<&str> = listed.split(", ").collect();
            listed.sort();
            assert_eq!(listed, allow, "{method} {path}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["code"], "method_not_allowed", "{method} {path}: {body}");
        }
    }
    for path in ["/healthz", "/metrics", "/v1/markets", "/v1/quotes"] {
        let (get, _) = raw(addr, "GET", path).await;
        let (head, body) = raw(addr, "HEAD", path).await;
        assert!(head.starts_with("http/1.1 200"), "HEAD {path}: {head}");
        assert!(body.is_empty(), "HEAD {path} sent a body");
        let content_type = |h: &str| h.lines().find(|l| l.starts_with("content-type:")).map(str::to_owned);
        assert_eq!(content_type(&head), content_type(&get), "HEAD {path}");
    }
    let (head, body) = raw(addr, "GET", "/v1/nowhere").await;
    assert!(head.starts_with("http/1.1 404") && body.contains("not_found"), "{head}");
}

/// One text for each thing: every other spelling is refused with what to
/// write, and changes nothing. The payload rule is the one that matters for
/// money: the same signals plus a trailing space used to list, and sell, again.
#[actix_rt::test]
async fn each_thing_has_one_text_and_every_other_is_refused() {
    let (api, _) = start().await;
    assert_eq!(api.post("/v1/segments", api.segment(5, 10, 1)).await.0, 201);
    let ask = api.ask().await;
    let before = api.state().await;
    let deadline = now_secs() + 60;
    let alias = "PURCHASE_INTENT|168H|0.7-0.85";
    let canonical_named = |err: &Value| err["message"].as_str().unwrap().contains(&format!("write '{MARKET}'"));

    // A market key: one text in bodies and paths (the feed's test checks subscriptions).
    let mut order = api.order(50, 1, ask, 1, deadline);
    order["order"]["market"] = json!(alias);
    let (status, err) = api.post("/v1/orders", order).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_request")), "{err}");
    assert!(canonical_named(&err), "{err}");
    let (status, err) = api.get("/v1/markets/PURCHASE_INTENT%7C07D%7C0.70-0.85").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_request")), "{err}");
    assert!(canonical_named(&err), "{err}");

    // Decimal ids and amounts: digits, no sign, no leading zeros.
    for id in ["%2B0", "00", "01"] {
        let (status, err) = api.get(&format!("/v1/segments/{id}")).await;
        assert_eq!((status, err["code"].as_str()), (400, Some("invalid_request")), "{id}: {err}");
    }
    assert_eq!(api.get("/v1/segments/0").await.0, 200);
    let mut order = api.order(50, 1, ask, 1, deadline);
    order["order"]["nonce"] = json!("01");
    assert_eq!(api.post("/v1/orders", order).await.1["code"], "invalid_request");

    // Addresses: 0x, lowercase or a valid EIP-55 checksum; the same rule in paths and bodies.
    let consumer = common::signer(50).address().to_checksum(None);
    // One lowercase letter made uppercase: still mixed case, so a checksum, and a wrong one.
    let at = 2 + consumer[2..].find(|c: char| c.is_ascii_lowercase()).expect("a lowercase hex letter");
    let mut flipped = consumer.clone();
    flipped.replace_range(at..=at, &consumer[at..=at].to_ascii_uppercase());
    for bad in [flipped, consumer[2..].to_owned()] {
        for route in ["fills", "escrow"] {
            let (status, err) = api.get(&format!("/v1/consumers/{bad}/{route}")).await;
            assert_eq!((status, err["code"].as_str()), (400, Some("invalid_request")), "{bad} {route}: {err}");
        }
        let mut order = api.order(50, 1, ask, 1, deadline);
        order["order"]["consumer"] = json!(bad);
        let (status, err) = api.post("/v1/orders", order).await;
        assert_eq!((status, err["code"].as_str()), (400, Some("invalid_request")), "{bad}: {err}");
    }
    assert_eq!(api.get(&format!("/v1/consumers/{}/fills", consumer.to_ascii_lowercase())).await.0, 200);

    // Bad hex is invalid_request wherever it is; duplicate keys are refused.
    let mut segment = api.segment(6, 10, 2);
    segment["submission"]["payload_hash"] = json!("0xzz");
    assert_eq!(api.post("/v1/segments", segment).await.1["code"], "invalid_request");
    let mut order = api.order(50, 1, ask, 1, deadline);
    order["signature"] = json!("0xzz");
    assert_eq!(api.post("/v1/orders", order).await.1["code"], "invalid_request");
    let order = api.order(50, 1, ask, 1, deadline).to_string();
    let twice = format!(r#"{{"signature":"0x00",{}"#, &order[1..]);
    let (status, err) = api.raw_post("/v1/orders", twice).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("malformed_json")), "{err}");
    assert!(err["message"].as_str().unwrap().contains("duplicate field"), "{err}");

    // A payload: only its canonical form lists, so the same signals list once.
    let payload = Api::payload(3);
    let mut spaced = payload.clone();
    spaced.push(b' ');
    let (status, err) = api.post("/v1/segments", api.segment_with(7, 10, spaced)).await;
    assert_eq!((status, err["code"].as_str()), (422, Some("non_canonical_payload")), "{err}");
    assert_eq!(api.state().await, before, "nothing above changed the market");
    assert_eq!(api.post("/v1/segments", api.segment_with(7, 10, payload.clone())).await.0, 201);
    let (status, err) = api.post("/v1/segments", api.segment_with(8, 10, payload)).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("duplicate_payload")), "{err}");
}
