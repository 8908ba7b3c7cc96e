//! The quote feed's load client and its floor.
//!
//! `feed clients --url ws://127.0.0.1:8090/v1/feed --clients 10000 --seconds 20`
//! opens that many WebSocket connections, subscribes each to every market
//! (`*|*|*`), and over the measuring window counts the quotes delivered and
//! the latency from each quote's publication (`ts`, microseconds) to its
//! receipt. `feed floor --listen 127.0.0.1:8091 --per-tick 27 --tick-ms 100`
//! is the floor: a minimal server that, each tick, writes the same
//! pre-encoded quote frames to every connected socket with nothing behind it.
//! `bench/feed.sh` runs both and prints the ratio.

use pat_bench::arg;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match args.get(1).map(String::as_str) {
        Some("clients") => runtime.block_on(clients(
            arg(&args, "--url", "ws://127.0.0.1:8090/v1/feed".to_owned()),
            arg(&args, "--clients", 1_000),
            Duration::from_secs(arg(&args, "--warmup", 3)),
            Duration::from_secs(arg(&args, "--seconds", 10)),
        )),
        Some("floor") => runtime.block_on(floor(
            arg(&args, "--listen", "127.0.0.1:8091".parse().expect("an address")),
            arg(&args, "--per-tick", 54),
            Duration::from_millis(arg(&args, "--tick-ms", 100)),
        )),
        _ => {
            eprintln!("usage: feed clients --url URL --clients N [--warmup S] [--seconds S]");
            eprintln!("       feed floor --listen ADDR --per-tick K [--tick-ms MS]");
            std::process::exit(2);
        }
    }
}

/// The publication time a quote message carries, without parsing the JSON.
fn ts_of(text: &str) -> Option<u64> {
    let at = text.rfind("\"ts\":")? + 5;
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

async fn clients(url: String, count: usize, warmup: Duration, seconds: Duration) {
    let addr: SocketAddr =
        url.trim_start_matches("ws://").split('/').next().and_then(|a| a.parse().ok()).expect("--url ws://IP:PORT/...");
    let connected = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (url, connected, gate) = (url.clone(), connected.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("the gate stays open");
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("handshake");
            ws.send(Message::text(r#"{"op":"subscribe","markets":["*|*|*"]}"#)).await.expect("subscribe");
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            ws
        }));
    }
    let mut sockets = Vec::with_capacity(count);
    for t in tasks {
        sockets.push(t.await.expect("a client connects"));
    }
    eprintln!("{count} clients connected and subscribed in {:.1} s", started.elapsed().as_secs_f64());
    let from = Instant::now() + warmup;
    let until = from + seconds;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::new();
                while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until.into(), ws.next()).await {
                    let Message::Text(text) = message else { continue };
                    if !text.starts_with(r#"{"type":"quote""#) || Instant::now() < from {
                        continue;
                    }
                    if let Some(ts) = ts_of(&text) {
                        latencies.push(now_us().saturating_sub(ts).min(u64::from(u32::MAX)) as u32);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<u32> = Vec::new();
    for r in readers {
        all.extend(r.await.expect("a reader ends"));
    }
    all.sort_unstable();
    let pct =
        |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "clients {count}: delivered {} quotes in {:.1} s = {:.0}/s; publication to receipt p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms",
        all.len(),
        seconds.as_secs_f64(),
        all.len() as f64 / seconds.as_secs_f64(),
        f64::from(pct(0.5)) / 1e3,
        f64::from(pct(0.99)) / 1e3,
        f64::from(pct(0.999)) / 1e3,
        f64::from(all.last().copied().unwrap_or(0)) / 1e3,
    );
}

/// A text frame as a server sends it (unmasked).
fn text_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

async fn floor(listen: SocketAddr, per_tick: usize, tick: Duration) {
    let listener = TcpListener::bind(listen).await.expect("bind");
    let (frames, _) = broadcast::channel::<Arc<Vec<u8>>>(64);
    let publisher = frames.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        let mut seq = 0u64;
        loop {
            interval.tick().await;
            let ts = now_us();
            let mut batch = Vec::with_capacity(per_tick * 260);
            for i in 0..per_tick {
                seq += 1;
                let text = format!(
                    r#"{{"type":"quote","market":"PURCHASE_INTENT|7D|0.70-0.85","bid":"2369000000000000000","ask":"2631000000000000000","price":"2500000000000000000","spread_bps":525,"seq":{seq},"valid_until_ms":{},"halted":null,"i":{i},"ts":{ts}}}"#,
                    ts / 1000 + 1000
                );
                text_frame(text.as_bytes(), &mut batch);
            }
            let _ = publisher.send(Arc::new(batch));
        }
    });
    eprintln!("floor serving on {listen}: {per_tick} quotes every {tick:?}");
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { continue };
        let mut frames = frames.subscribe();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let Some(key) = text
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key")))
                .map(|(_, v)| v.trim().to_owned())
            else {
                return;
            };
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if socket.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            let _ = socket.set_nodelay(true);
            loop {
                match frames.recv().await {
                    Ok(batch) => {
                        if socket.write_all(&batch).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}
