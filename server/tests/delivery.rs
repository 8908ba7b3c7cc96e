//! `GET /v1/fills/{id}/data` against a real engine, a real payload store
//! (the local filesystem, and the S3 server) and a real HTTP client: the
//! buyer gets exactly what was listed, verifiable, once the fill settled and
//! during its access period; every other request is refused with its code
//! and changes nothing; a tampered or moved ciphertext is never served.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::B256;
use common::{Api, MARKET, now_secs, signer};
use pat_actors::messages::{RecordOutcomes, Settlement};
use pat_engine::signing::{LocalSigner, sign_access, sign_payload_access};
use pat_engine::{SignalRecord, encode_payload};
use pat_server::access::{Party, authorization};
use pat_server::bundle::{self, Reader};
use pat_storage::s3_server::S3Server;
use pat_storage::{Keyring, Location, MasterKey, PayloadStore};
use serde_json::Value;

const CONSUMER: u8 = 77;
const DAY_MS: u64 = 86_400_000;

/// A payload of `n` signals, told apart by `salt`.
fn payload(salt: u64, n: usize) -> Vec<u8> {
    let signals: Vec<SignalRecord> = (0..n)
        .map(|i| SignalRecord::new(now_secs() - 10, "PURCHASE_INTENT", 0.8, format!("category-{salt}-{i}")))
        .collect();
    encode_payload(&signals)
}

/// A clock that runs with the system's, ahead by what a test adds.
fn skewed_clock() -> (pat_actors::clock::Clock, Arc<AtomicU64>) {
    let ahead = Arc::new(AtomicU64::new(0));
    let system = pat_actors::clock::system_clock();
    let by = ahead.clone();
    (Arc::new(move || system() + by.load(Ordering::Relaxed)), ahead)
}

struct Market {
    api: Api,
    ahead: Arc<AtomicU64>,
    /// The listed payloads, by payload hash.
    listed: Vec<(String, Vec<u8>)>,
    /// The listed segments' ids, in listing order.
    ids: Vec<u64>,
    _store_dir: Option<tempfile::TempDir>,
}

impl Market {
    /// A market whose payload store is at `location`, with `providers` listings.
    async fn start(location: Location, providers: u8) -> Self {
        let store_dir = matches!(location, Location::Local(_)).then(|| tempfile::tempdir().unwrap());
        let location = match &store_dir {
            Some(dir) => Location::Local(dir.path().join("store")),
            None => location,
        };
        let keyring = Keyring::single(MasterKey::generate("k1").unwrap());
        let store = Arc::new(PayloadStore::open(&location, keyring).unwrap());
        let (clock, ahead) = skewed_clock();
        let api = Api::start_custom(|e| e.payload_store = Some(store), clock, |_| {}).await;
        let (mut listed, mut ids) = (Vec::new(), Vec::new());
        for p in 0..providers {
            let body = payload(p as u64, 50 + 40 * p as usize);
            let (status, seg) = api.post("/v1/segments", api.segment_with(10 + p, 5, body.clone())).await;
            assert_eq!(status, 201, "{seg}");
            listed.push((seg["payload_hash"].as_str().unwrap().to_owned(), body));
            ids.push(seg["id"].as_u64().unwrap());
        }
        Self { api, ahead, listed, ids, _store_dir: store_dir }
    }

    /// Buys `qty` units for consumer `who`: the fill's id.
    async fn buy(&self, who: u8, qty: u64, nonce: u64) -> B256 {
        let order = self.api.order(who, qty, u128::MAX >> 8, nonce, now_secs() + 60);
        let (status, fill) = self.api.post("/v1/orders", order).await;
        assert_eq!(status, 201, "{fill}");
        fill["fill_id"].as_str().unwrap().parse().unwrap()
    }

    async fn settle(&self, fill: B256) {
        self.api.engine.send(RecordOutcomes(vec![(fill, Settlement::Settled)])).await.unwrap().unwrap();
    }

    /// A download of `fill` signed by `by`, claiming to be `claimed` (by's address if `None`),
    /// expiring `ttl` seconds from now, with more headers.
    async fn download_as(
        &self,
        fill: &str,
        by: &LocalSigner,
        claimed: Option<alloy_primitives::Address>,
        ttl: i64,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let expires = (now_secs() as i64 + ttl) as u64;
        let id: B256 = fill.parse().unwrap_or(B256::ZERO);
        let (access, signature) = sign_access(by, id, expires, &self.api.cfg.domain());
        let auth = authorization(Party::Consumer, claimed.unwrap_or(access.consumer), expires, &signature);
        let mut req =
            self.api.http.get(format!("{}/v1/fills/{fill}/data", self.api.base)).header("authorization", auth);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.unwrap()
    }

    /// A read of segment `id`'s payload signed by provider `by` for segment
    /// `signed_for`, expiring `ttl` seconds from now, with more headers.
    async fn read_payload(
        &self,
        id: &str,
        by: &LocalSigner,
        signed_for: u64,
        ttl: i64,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let expires = (now_secs() as i64 + ttl) as u64;
        let (access, signature) = sign_payload_access(by, signed_for, expires, &self.api.cfg.domain());
        let auth = authorization(Party::Provider, access.provider, expires, &signature);
        let mut req =
            self.api.http.get(format!("{}/v1/segments/{id}/data", self.api.base)).header("authorization", auth);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.unwrap()
    }

    async fn download(&self, fill: B256, headers: &[(&str, String)]) -> reqwest::Response {
        self.download_as(&fill.to_string(), &signer(CONSUMER), None, 300, headers).await
    }

    /// What a request that is refused leaves: the market and the fill as they were.
    async fn state(&self, fill: B256) -> Value {
        let (_, f) = self.api.get(&format!("/v1/fills/{fill}")).await;
        serde_json::json!([self.api.state().await, f])
    }
}

async fn refused(resp: reqwest::Response) -> (u16, String, reqwest::header::HeaderMap) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned(), headers)
}

/// The segments of a body, each checked, with their payloads.
fn verified_payloads(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let (manifest, mut reader) = Reader::new(body).unwrap();
    assert_eq!(manifest.market, MARKET);
    let mut out = Vec::new();
    while let Some((header, payload)) = reader.next_segment().unwrap() {
        bundle::verify_segment(&manifest, &header, &payload).unwrap();
        out.push((header.submission.payloadHash.to_string(), payload));
    }
    assert_eq!(out.len(), manifest.segments as usize);
    out
}

#[actix_rt::test]
async fn a_settled_fill_downloads_whole_and_in_ranges_and_verifies() {
    let m = Market::start(Location::Local(Default::default()), 4).await;
    m.api.ask().await;
    let fill = m.buy(CONSUMER, 4, 1).await;

    // Not yet settled: 409 with the status, and nothing changed.
    let before = m.state(fill).await;
    let (status, code, headers) = refused(m.download(fill, &[]).await).await;
    assert_eq!((status, code.as_str()), (409, "not_settled"));
    assert_eq!(headers["x-pat-fill-status"], "accepted");
    assert_eq!(m.state(fill).await, before);

    m.settle(fill).await;
    let resp = m.download(fill, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], bundle::CONTENT_TYPE);
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let until: u64 = resp.headers()["x-pat-access-until-ms"].to_str().unwrap().parse().unwrap();
    assert!(until > (now_secs() + 29 * 86_400) * 1000, "30 days of access by default");
    let whole = resp.bytes().await.unwrap().to_vec();
    let got = verified_payloads(&whole);
    for (hash, payload) in &got {
        let listed = m.listed.iter().find(|(h, _)| h == hash).expect("a listed payload");
        assert_eq!(&listed.1, payload, "the bytes are the listed payload");
    }
    assert_eq!(m.download(fill, &[]).await.bytes().await.unwrap().to_vec(), whole, "every download is the same bytes");

    // Any split of the body into ranges gives it back; a resumption from any byte too.
    let n = whole.len() as u64;
    for cut in [1, 7, n / 3, n / 2, n - 1] {
        let head = m.download(fill, &[("range", format!("bytes=0-{}", cut - 1))]).await;
        assert_eq!(head.status(), 206);
        assert_eq!(head.headers()["content-range"], format!("bytes 0-{}/{n}", cut - 1).as_str());
        let mut joined = head.bytes().await.unwrap().to_vec();
        let tail = m.download(fill, &[("range", format!("bytes={cut}-")), ("if-range", etag.clone())]).await;
        assert_eq!(tail.status(), 206);
        joined.extend(tail.bytes().await.unwrap());
        assert_eq!(joined, whole, "split at {cut}");
    }
    let suffix = m.download(fill, &[("range", "bytes=-10".into())]).await.bytes().await.unwrap();
    assert_eq!(&suffix[..], &whole[whole.len() - 10..]);
    assert_eq!(etag, bundle::etag(fill));
    let other = m.download(fill, &[("range", "bytes=5-".into()), ("if-range", "\"other\"".into())]).await;
    assert_eq!(other.status(), 200, "If-Range naming another body: the whole body");
    for past in [format!("bytes={n}-"), "bytes=-0".into()] {
        let (status, code, headers) = refused(m.download(fill, &[("range", past.clone())]).await).await;
        assert_eq!((status, code.as_str()), (416, "range_not_satisfiable"), "{past}");
        assert_eq!(headers["content-range"], format!("bytes */{n}").as_str());
    }
    // Not one byte range: ignored (RFC 9110), the whole body.
    for ignored in ["bytes=9-3", "bytes=0-1,4-5", "lines=1-2", "bytes=x-"] {
        let resp = m.download(fill, &[("range", ignored.into())]).await;
        assert_eq!(resp.status(), 200, "{ignored}");
        assert_eq!(resp.bytes().await.unwrap().len(), whole.len());
    }
    // HEAD: the headers of the GET, no body.
    let (access, signature) = sign_access(&signer(CONSUMER), fill, now_secs() + 60, &m.api.cfg.domain());
    let auth = authorization(Party::Consumer, access.consumer, access.expiresAt, &signature);
    let url = format!("{}/v1/fills/{fill}/data", m.api.base);
    let head = m.api.http.head(url).header("authorization", auth).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], n.to_string().as_str());
    assert_eq!(head.headers()["etag"], etag.as_str());
    assert!(head.bytes().await.unwrap().is_empty());

    // The store holds no plaintext: no listed payload's text is in any of its files.
    let root = m._store_dir.as_ref().unwrap().path().join("store");
    let mut files = 0;
    for dir in ["payloads", "keys"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            files += 1;
            // Every listed payload's text has "category-" in each signal.
            assert!(!bytes.windows(9).any(|w| w == b"category-"), "plaintext in the store");
        }
    }
    assert!(files >= 8, "every listing's payload and key objects were looked at");
}

#[actix_rt::test]
async fn every_refusal_has_its_code_and_changes_nothing() {
    let m = Market::start(Location::Local(Default::default()), 2).await;
    m.api.ask().await;
    let fill = m.buy(CONSUMER, 1, 1).await;
    m.settle(fill).await;
    let before = m.state(fill).await;
    let id = fill.to_string();
    let buyer = signer(CONSUMER);
    let url = format!("{}/v1/fills/{id}/data", m.api.base);

    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (m.api.http.get(&url).send().await.unwrap(), 401, "bad_signature"),
        (m.api.http.get(&url).header("authorization", "Bearer x").send().await.unwrap(), 401, "bad_signature"),
        // Signed by someone else in the buyer's name.
        (m.download_as(&id, &signer(5), Some(buyer.address()), 300, &[]).await, 401, "bad_signature"),
        (m.download_as(&id, &buyer, None, -1, &[]).await, 401, "token_expired"),
        (m.download_as(&id, &buyer, None, 7200, &[]).await, 401, "token_expired"),
        // Another consumer, validly signed.
        (m.download_as(&id, &signer(CONSUMER + 1), None, 300, &[]).await, 403, "not_your_fill"),
        (m.download_as(&B256::repeat_byte(1).to_string(), &buyer, None, 300, &[]).await, 404, "unknown_fill"),
        (m.download_as("0x12", &buyer, None, 300, &[]).await, 400, "invalid_request"),
    ];
    for (i, (resp, status, code)) in cases.into_iter().enumerate() {
        let (got, got_code, _) = refused(resp).await;
        assert_eq!((got, got_code.as_str()), (status, code), "case {i}");
    }
    // A signature for another fill does not open this one.
    let (access, signature) = sign_access(&buyer, B256::repeat_byte(2), now_secs() + 300, &m.api.cfg.domain());
    let auth = authorization(Party::Consumer, access.consumer, access.expiresAt, &signature);
    let resp = m.api.http.get(&url).header("authorization", auth).send().await.unwrap();
    assert_eq!(refused(resp).await.1, "bad_signature");

    // After the access period: 410.
    m.ahead.store(31 * DAY_MS, Ordering::Relaxed);
    let (status, code, _) = refused(m.download(fill, &[]).await).await;
    assert_eq!((status, code.as_str()), (410, "access_expired"));
    m.ahead.store(0, Ordering::Relaxed);
    assert_eq!(m.state(fill).await, before, "no refusal changed anything");
    assert_eq!(m.download(fill, &[]).await.status(), 200, "and the buyer still downloads");
}

/// A provider reads back what it listed, whole or in ranges, with its own
/// signature; no one else does, and a shredded payload opens for no one.
#[actix_rt::test]
async fn a_provider_reads_back_its_own_payload_and_no_one_else_does() {
    let m = Market::start(Location::Local(Default::default()), 2).await;
    let (id, (hash, listed)) = (m.ids[0], &m.listed[0]);
    let provider = signer(10);
    let resp = m.read_payload(&id.to_string(), &provider, id, 300, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-pat-payload-hash"], hash.as_str());
    assert_eq!(resp.headers()["etag"], format!("\"{hash}\"").as_str());
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let body = resp.bytes().await.unwrap().to_vec();
    assert_eq!(&body, listed, "the payload as listed");
    assert_eq!(format!("{}", alloy_primitives::keccak256(&body)), *hash);
    let part = m.read_payload(&id.to_string(), &provider, id, 300, &[("range", "bytes=3-9".into())]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 3-9/{}", listed.len()).as_str());
    assert_eq!(part.bytes().await.unwrap().to_vec(), listed[3..10]);

    let url = format!("{}/v1/segments/{id}/data", m.api.base);
    let (access, signature) = sign_payload_access(&provider, id, now_secs() + 60, &m.api.cfg.domain());
    let auth = authorization(Party::Provider, access.provider, access.expiresAt, &signature);
    let head = m.api.http.head(&url).header("authorization", auth).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], listed.len().to_string().as_str());
    assert!(head.bytes().await.unwrap().is_empty());

    let before = m.api.state().await;
    let (expires, consumer_signature) =
        (now_secs() + 300, sign_access(&provider, B256::ZERO, now_secs() + 300, &m.api.cfg.domain()).1);
    let as_consumer = authorization(Party::Consumer, provider.address(), expires, &consumer_signature);
    let past = format!("bytes={}-", listed.len());
    let other = m.ids[1];
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (m.api.http.get(&url).send().await.unwrap(), 401, "bad_signature"),
        (m.api.http.get(&url).header("authorization", as_consumer).send().await.unwrap(), 401, "bad_signature"),
        // Signed for another segment of the same provider's.
        (m.read_payload(&id.to_string(), &provider, other, 300, &[]).await, 401, "bad_signature"),
        (m.read_payload(&id.to_string(), &provider, id, -1, &[]).await, 401, "token_expired"),
        (m.read_payload(&id.to_string(), &provider, id, 7200, &[]).await, 401, "token_expired"),
        // Another provider, validly signed.
        (m.read_payload(&other.to_string(), &provider, other, 300, &[]).await, 403, "not_your_segment"),
        (m.read_payload("999", &provider, 999, 300, &[]).await, 404, "unknown_segment"),
        (m.read_payload("x", &provider, 0, 300, &[]).await, 400, "invalid_request"),
        (m.read_payload(&id.to_string(), &provider, id, 300, &[("range", past)]).await, 416, "range_not_satisfiable"),
    ];
    for (i, (resp, status, code)) in cases.into_iter().enumerate() {
        let (got, got_code, _) = refused(resp).await;
        assert_eq!((got, got_code.as_str()), (status, code), "case {i}");
    }
    assert_eq!(m.api.state().await, before, "no refusal changed anything");

    // Shredded (its data key deleted): opens for no one, its provider included.
    let keys = m._store_dir.as_ref().unwrap().path().join("store/keys");
    std::fs::remove_file(keys.join(hash.trim_start_matches("0x"))).unwrap();
    let (status, code, _) = refused(m.read_payload(&id.to_string(), &provider, id, 300, &[]).await).await;
    assert_eq!((status, code.as_str()), (502, "payload_unreadable"));
    let metrics = m.api.get("/metrics").await.1;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("pat_payload_reads_total{result=\"served\"} 2"), "{text}");
    assert!(text.contains("pat_delivery_failures_total{reason=\"shredded\"} 1"), "{text}");
}

#[actix_rt::test]
async fn a_tampered_or_moved_ciphertext_is_never_served() {
    let m = Market::start(Location::Local(Default::default()), 2).await;
    m.api.ask().await;
    let fill = m.buy(CONSUMER, 2, 1).await;
    m.settle(fill).await;
    let whole = m.download(fill, &[]).await.bytes().await.unwrap().to_vec();
    let root = m._store_dir.as_ref().unwrap().path().join("store/payloads");
    // A segment of the fill, and another listed one.
    let sold = verified_payloads(&whole)[0].0.clone();
    let other = m.listed.iter().map(|(h, _)| h).find(|h| **h != sold).unwrap();
    let hashes = [sold.trim_start_matches("0x").to_owned(), other.trim_start_matches("0x").to_owned()];
    let original = std::fs::read(root.join(&hashes[0])).unwrap();

    // One flipped bit of a ciphertext: not served.
    let mut flipped = original.clone();
    let at = flipped.len() - 20;
    flipped[at] ^= 1;
    std::fs::write(root.join(&hashes[0]), &flipped).unwrap();
    let (status, code, _) = refused(m.download(fill, &[]).await).await;
    assert_eq!((status, code.as_str()), (502, "payload_unreadable"));

    // Another segment's ciphertext under this one's name: not served either.
    std::fs::write(root.join(&hashes[0]), std::fs::read(root.join(&hashes[1])).unwrap()).unwrap();
    let (status, code, _) = refused(m.download(fill, &[]).await).await;
    assert_eq!((status, code.as_str()), (502, "payload_unreadable"));
    let metrics = m.api.get("/metrics").await.1;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("pat_delivery_failures_total{reason=\"corrupt\"}"), "counted by reason");

    std::fs::write(root.join(&hashes[0]), &original).unwrap();
    assert_eq!(m.download(fill, &[]).await.status(), 200, "the restored object serves again");
}

#[actix_rt::test]
async fn a_stopped_s3_server_answers_storage_unavailable_then_serves_again() {
    let mut s3 = S3Server::start().unwrap();
    let m = Market::start(s3.location("delivery"), 2).await;
    m.api.ask().await;
    let fill = m.buy(CONSUMER, 2, 1).await;
    m.settle(fill).await;
    let whole = m.download(fill, &[]).await.bytes().await.unwrap().to_vec();
    assert!(!verified_payloads(&whole).is_empty());

    s3.stop();
    let (status, code, headers) = refused(m.download(fill, &[]).await).await;
    assert_eq!((status, code.as_str()), (503, "storage_unavailable"));
    assert_eq!(headers["retry-after"], "2");
    let (status, listed) = m.api.post("/v1/segments", m.api.segment_with(30, 5, payload(99, 5))).await;
    assert_eq!((status, listed["code"].as_str()), (503, Some("storage_unavailable")));

    s3.resume().unwrap();
    assert_eq!(m.download(fill, &[]).await.bytes().await.unwrap().to_vec(), whole, "nothing lost");
}
