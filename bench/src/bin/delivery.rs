//! The delivery benchmarks (issue 14), in one process on loopback: a real
//! engine (journal on disk), a real payload store (the local filesystem or
//! the s3s-fs server), the real HTTP server and a real HTTP client.
//!
//! - `delivery download [--store local|s3] [--payload-kib 64] [--rounds 20]`:
//!   fills of 1, 10 and 100 segments downloaded whole over
//!   `GET /v1/fills/{id}/data`: throughput (MB/s of body) and time to first
//!   byte, against the floor in the same run: the same objects read raw from
//!   the same store (`PayloadStore::sealed`), no decryption, no HTTP, no engine;
//!   with two diagnostics: the same objects opened (`PayloadStore::get`, no
//!   HTTP), and the same bodies served from memory by a bare HTTP server.
//! - `delivery listing [--store off|local|s3] [--count 2000] [--payload-kib 16] [--in-flight 32]`:
//!   listings per second over `POST /v1/segments`, pre-signed.

use pat_bench::arg;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{B256, keccak256};
use futures_util::{StreamExt, stream};
use pat_actors::clock::system_clock;
use pat_actors::messages::{RecordOutcomes, Settlement};
use pat_actors::{Engine, EngineActor, EngineSettings};
use pat_engine::signing::{LocalSigner, sign_access, sign_listing, sign_order_for};
use pat_engine::{EngineConfig, MarketKey, SignalRecord, SignedSegment, encode_payload};
use pat_server::dto::{OrderRequest, SegmentRequest};
use pat_storage::s3_server::S3Server;
use pat_storage::{Keyring, Location, MasterKey, PayloadStore};
use serde_json::Value;

const MARKET: &str = "PURCHASE_INTENT|7D|0.70-0.85";

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn signer(role: u8, i: u32) -> LocalSigner {
    let mut seed = vec![role];
    seed.extend(i.to_be_bytes());
    LocalSigner::from_bytes(&keccak256(seed)).expect("a key")
}

/// A canonical payload of about `kib` KiB, told apart by `salt`.
fn payload(kib: usize, salt: u64) -> Vec<u8> {
    let now = now_secs() - 10;
    let signals: Vec<SignalRecord> = (0..(kib * 1024 / 80).max(1))
        .map(|i| SignalRecord::new(now, "PURCHASE_INTENT", 0.8, format!("bench-{salt}-{i:06}")))
        .collect();
    encode_payload(&signals)
}

/// An engine, its store and its HTTP server, on loopback.
struct Bench {
    base: String,
    http: reqwest::Client,
    engine: Engine,
    cfg: EngineConfig,
    store: Option<Arc<PayloadStore>>,
    _s3: Option<S3Server>,
    _tmp: tempfile::TempDir,
}

impl Bench {
    async fn start(store: &str) -> Self {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml");
        let cfg = pat_config::Config::load(&config_path).expect("the default config").engine;
        let keyring = || Keyring::single(MasterKey::generate("bench").expect("a key"));
        let (store, s3) = match store {
            "off" => (None, None),
            "local" => (Some(PayloadStore::open(&Location::Local(tmp.path().join("store")), keyring())), None),
            "s3" => {
                let s3 = S3Server::start().expect("the s3s-fs server (scripts/toolchain.sh installs it)");
                (Some(PayloadStore::open(&s3.location("bench"), keyring())), Some(s3))
            }
            other => panic!("--store off|local|s3, not {other}"),
        };
        let store = store.map(|s| Arc::new(s.expect("the payload store opens")));
        let mut settings = EngineSettings::new(tmp.path().join("data"));
        settings.payload_store = store.clone();
        pat_server::metrics_handle();
        let (engine, _) = EngineActor::start(settings, Arc::new(cfg.clone()), system_clock()).expect("the engine");
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let server_settings = pat_server::ServerSettings::new(listen, config_path);
        let (server, addr) =
            pat_server::start(server_settings, engine.clone(), cfg.domain()).await.expect("the server");
        actix_rt::spawn(server);
        let http = reqwest::Client::new();
        Self { base: format!("http://{addr}"), http, engine, cfg, store, _s3: s3, _tmp: tmp }
    }

    fn listing(&self, provider: u32, units: u32, payload: Vec<u8>) -> SegmentRequest {
        let now = now_secs();
        let key: MarketKey = MARKET.parse().expect("a market");
        let signed: SignedSegment =
            sign_listing(&signer(1, provider), &key, units, now - 3600, now, payload, &self.cfg.domain());
        SegmentRequest::from_signed(&signed).expect("a listing body")
    }

    async fn list(&self, body: &SegmentRequest) -> Value {
        let resp = self.http.post(format!("{}/v1/segments", self.base)).json(body).send().await.expect("listed");
        assert_eq!(resp.status().as_u16(), 201, "a listing");
        resp.json().await.expect("a segment")
    }

    async fn ask(&self) -> u128 {
        for _ in 0..100 {
            let m: Value = self
                .http
                .get(format!("{}/v1/markets/{}", self.base, MARKET.replace('|', "%7C")))
                .send()
                .await
                .expect("a market")
                .json()
                .await
                .expect("JSON");
            if let (true, Some(ask)) = (m["quote"]["halted"].is_null(), m["quote"]["ask"].as_str()) {
                return ask.parse().expect("an ask");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the market never quoted");
    }

    /// A settled fill of `qty` units for consumer `who`.
    async fn settled_fill(&self, who: u32, qty: u64) -> Value {
        let key: MarketKey = MARKET.parse().expect("a market");
        let signed =
            sign_order_for(&signer(2, who), &key, qty, self.ask().await * 2, 1, now_secs() + 60, &self.cfg.domain());
        let body = OrderRequest::from_signed(&signed, &key);
        let resp = self.http.post(format!("{}/v1/orders", self.base)).json(&body).send().await.expect("an order");
        assert_eq!(resp.status().as_u16(), 201);
        let fill: Value = resp.json().await.expect("a fill");
        let id: B256 = fill["fill_id"].as_str().expect("an id").parse().expect("hex");
        self.engine.send(RecordOutcomes(vec![(id, Settlement::Settled)])).await.expect("sent").expect("settled");
        fill
    }

    /// Consumer `who`'s signed access to `fill`, as its `Authorization` header.
    fn access(&self, fill: B256, who: u32) -> String {
        let expires = now_secs() + 600;
        let (access, signature) = sign_access(&signer(2, who), fill, expires, &self.cfg.domain());
        pat_server::access::authorization(pat_server::access::Party::Consumer, access.consumer, expires, &signature)
    }

    /// One whole download: (time to first byte, total time, bytes).
    async fn download(&self, fill: B256, who: u32) -> (Duration, Duration, u64) {
        let auth = self.access(fill, who);
        let began = Instant::now();
        let mut resp = self
            .http
            .get(format!("{}/v1/fills/{fill}/data", self.base))
            .header("authorization", auth)
            .send()
            .await
            .expect("a download");
        assert_eq!(resp.status().as_u16(), 200);
        let (mut first, mut bytes) = (None, 0u64);
        while let Some(chunk) = resp.chunk().await.expect("a chunk") {
            first.get_or_insert_with(|| began.elapsed());
            bytes += chunk.len() as u64;
        }
        (first.unwrap_or_default(), began.elapsed(), bytes)
    }
}

/// Fill `fill`'s whole body.
async fn whole_body(b: &Bench, fill: B256, who: u32) -> Vec<u8> {
    let url = format!("{}/v1/fills/{fill}/data", b.base);
    let resp = b.http.get(url).header("authorization", b.access(fill, who)).send().await.expect("a download");
    resp.bytes().await.expect("the body").to_vec()
}

/// MB/s of `rounds` downloads of each of `bodies`, served from memory.
async fn http_ceiling(bodies: Vec<Vec<u8>>, rounds: usize) -> String {
    let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
    let bodies: Arc<Vec<actix_web::web::Bytes>> = Arc::new(bodies.into_iter().map(Into::into).collect());
    let served = bodies.clone();
    let server = actix_web::HttpServer::new(move || {
        let bodies = served.clone();
        actix_web::App::new().route(
            "/{i}",
            actix_web::web::get().to(move |i: actix_web::web::Path<usize>| {
                let body = bodies[*i].clone();
                async move { actix_web::HttpResponse::Ok().body(body) }
            }),
        )
    })
    .workers(2)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("a port");
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let began = Instant::now();
        for _ in 0..rounds {
            let mut resp = http.get(format!("http://{addr}/{i}")).send().await.expect("a body");
            while resp.chunk().await.expect("a chunk").is_some() {}
        }
        out.push(format!("{:.1}", mb_per_s((size * rounds) as u64, began.elapsed())));
    }
    out.join(" / ")
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn download_bench(store: &str, kib: usize, rounds: usize) {
    let b = Bench::start(store).await;
    // 100 segments, enough units for each fill's consumer.
    for s in 0..100u32 {
        b.list(&b.listing(s, 10, payload(kib, u64::from(s)))).await;
    }
    println!("store {store}, payloads of {} bytes, {rounds} downloads per fill", payload(kib, 0).len());
    println!("segments | delivery MB/s | TTFB p50 | opened MB/s | floor MB/s | floor first object p50 | ratio");
    let (mut bodies, mut opening) = (Vec::new(), Vec::new());
    for (who, segments) in [(1u32, 1u64), (2, 10), (3, 100)] {
        let fill = b.settled_fill(who, segments).await;
        let id: B256 = fill["fill_id"].as_str().expect("an id").parse().expect("hex");
        let mut hashes = Vec::new();
        for a in fill["allocations"].as_array().expect("allocations") {
            let seg: Value = b
                .http
                .get(format!("{}/v1/segments/{}", b.base, a["segment_id"]))
                .send()
                .await
                .expect("a segment")
                .json()
                .await
                .expect("JSON");
            hashes.push(seg["payload_hash"].as_str().expect("a hash").parse::<B256>().expect("hex"));
        }
        b.download(id, who).await; // warm-up
        let (mut ttfb, mut total, mut bytes) = (Vec::new(), Duration::ZERO, 0);
        for _ in 0..rounds {
            let (first, time, n) = b.download(id, who).await;
            ttfb.push(first);
            total += time;
            bytes += n;
        }
        let store = b.store.as_ref().expect("a store");
        let (mut floor_first, mut floor_total, mut floor_bytes) = (Vec::new(), Duration::ZERO, 0u64);
        for _ in 0..rounds {
            let began = Instant::now();
            for (i, h) in hashes.iter().enumerate() {
                let (payload, key) = store.sealed(h).await.expect("the objects");
                if i == 0 {
                    floor_first.push(began.elapsed());
                }
                floor_bytes += (payload.len() + key.len()) as u64;
            }
            floor_total += began.elapsed();
        }
        // The same objects opened (read, unwrapped, decrypted, checked: what
        // `PayloadStore::get` does), no HTTP, no engine, timed by part.
        let (mut read, mut unwrap, mut open) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            for h in &hashes {
                let t = Instant::now();
                let (payload, key) = store.sealed(h).await.expect("the objects");
                read += t.elapsed();
                let t = Instant::now();
                let key = pat_storage::envelope::unwrap_key(store.keyring(), h, &key).expect("the data key");
                unwrap += t.elapsed();
                let t = Instant::now();
                pat_storage::envelope::open(&key, h, payload).expect("the payload");
                open += t.elapsed();
            }
        }
        let opened = mb_per_s(floor_bytes, read + unwrap + open);
        let n = (rounds * hashes.len()) as u32;
        opening.push(format!("{segments}: read {:.1?}, unwrap {:.1?}, open {:.1?}", read / n, unwrap / n, open / n));
        let (ours, floor) = (mb_per_s(bytes, total), mb_per_s(floor_bytes, floor_total));
        println!(
            "{segments:>8} | {ours:>13.1} | {:>8.2?} | {opened:>9.1} | {floor:>10.1} | {:>22.2?} | {:.2}x",
            median(ttfb),
            median(floor_first),
            ours / floor
        );
        bodies.push(whole_body(&b, id, who).await);
    }
    // The ceiling of HTTP alone on this machine: the same bodies served from
    // memory by a bare actix-web server (two workers, as the engine's) to the
    // same client. Not the floor; it says how much of the gap is HTTP.
    println!("opening per segment, by fill size: {}", opening.join("; "));
    let http = http_ceiling(bodies, rounds).await;
    println!("HTTP alone (the same bodies from memory, no store, no engine), MB/s by segments: {http}");
    // Where a download's time goes: the store reads with their opening, per segment.
    let text = b.http.get(format!("{}/metrics", b.base)).send().await.expect("metrics").text().await.expect("text");
    let value = |name: &str| -> f64 {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    };
    let (sum, count) = (
        value("pat_storage_operation_seconds_sum{op=\"get\"}"),
        value("pat_storage_operation_seconds_count{op=\"get\"}"),
    );
    println!("store get (read, unwrap, open, check) per segment: {:.0} µs over {count} reads", sum / count * 1e6);
}

async fn listing_bench(store: &str, count: u32, kib: usize, in_flight: usize) {
    let b = Bench::start(store).await;
    let bodies: Vec<SegmentRequest> = (0..count).map(|s| b.listing(s % 500, 5, payload(kib, u64::from(s)))).collect();
    let began = Instant::now();
    let done = stream::iter(bodies.iter())
        .map(|body| async {
            let resp = b.http.post(format!("{}/v1/segments", b.base)).json(body).send().await.expect("a listing");
            resp.status().as_u16() == 201
        })
        .buffer_unordered(in_flight)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let time = began.elapsed();
    assert_eq!(done, count as usize, "every listing was taken");
    println!(
        "store {store}: {count} listings of {} bytes in {time:.2?}: {:.0} listings/s ({in_flight} in flight)",
        payload(kib, 0).len(),
        f64::from(count) / time.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let system = actix_rt::System::new();
    match args.get(1).map(String::as_str) {
        Some("download") => system.block_on(download_bench(
            &arg(&args, "--store", "local".to_owned()),
            arg(&args, "--payload-kib", 64),
            arg(&args, "--rounds", 20),
        )),
        Some("listing") => system.block_on(listing_bench(
            &arg(&args, "--store", "local".to_owned()),
            arg(&args, "--count", 2_000),
            arg(&args, "--payload-kib", 16),
            arg(&args, "--in-flight", 32),
        )),
        _ => {
            eprintln!("usage: delivery download [--store local|s3] [--payload-kib K] [--rounds N]");
            eprintln!("       delivery listing [--store off|local|s3] [--count N] [--payload-kib K] [--in-flight N]");
            std::process::exit(2);
        }
    }
}
