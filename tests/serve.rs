//! `pat-market serve` as a real process: it answers over HTTP, keeps every
//! acknowledged fill across a SIGKILL, refuses a bad config on SIGHUP while
//! going on with the old one, and exits cleanly on SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{U256, keccak256};
use pat_engine::signing::{LocalSigner, sign_listing, sign_order_for};
use pat_engine::{SignalRecord, encode_payload};
use pat_server::dto::{OrderRequest, SegmentRequest};
use serde_json::Value;

const MARKET: &str = "PURCHASE_INTENT|7D|0.70-0.85";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn signer(n: u8) -> LocalSigner {
    LocalSigner::from_bytes(&keccak256([n])).unwrap()
}

struct Engine {
    child: Child,
    base: String,
    http: reqwest::blocking::Client,
}

impl Engine {
    fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, &[])
    }

    fn start_with(dir: &Path, port: u16, env: &[(&str, String)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_pat-market"))
            .args(["serve", "--config"])
            .arg(dir.join("pat.toml"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("PAT_OPERATOR_TOKEN", "op")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let engine = Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::blocking::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine.http.get(format!("{}/healthz", engine.base)).send().is_err() {
            assert!(Instant::now() < deadline, "serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        engine
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.http.post(format!("{}{path}", self.base)).json(body).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    }

    fn ask(&self) -> u128 {
        for _ in 0..100 {
            let (_, m) = self.get(&format!("/v1/markets/{}", MARKET.replace('|', "%7C")));
            if m["quote"]["halted"].is_null() && m["supply_units"].as_u64() > Some(0) {
                return m["quote"]["ask"].as_str().unwrap().parse().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no quote");
    }

    /// Waits until the engine counts at least `free` of `consumer`'s escrow free: the
    /// follower synced its deposit from the chain.
    fn wait_free_escrow(&self, consumer: alloy_primitives::Address, free: U256) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, e) = self.get(&format!("/v1/consumers/{consumer}/escrow"));
            if e["free"].as_str().and_then(|f| f.parse::<U256>().ok()).is_some_and(|f| f >= free) {
                return;
            }
            assert!(Instant::now() < deadline, "escrow of {consumer} not synced: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: &str) {
        assert!(Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap().success());
    }
}

/// A test that fails midway still stops its engine: no process outlives it.
impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Segment `salt` of `provider`: 50 units.
fn segment(domain: &alloy_sol_types::Eip712Domain, provider: u8, salt: u32) -> Value {
    let now = now_secs();
    let payload = encode_payload(&[SignalRecord::new(now, "PURCHASE_INTENT", 0.8, format!("p{provider}-{salt}"))]);
    let key: pat_engine::MarketKey = MARKET.parse().unwrap();
    let signed = sign_listing(&signer(provider), &key, 50, now - 60, now, payload, domain);
    serde_json::to_value(SegmentRequest::from_signed(&signed).unwrap()).unwrap()
}

/// One unit, by a consumer of its own per nonce (a consumer never gets a segment twice).
fn order(domain: &alloy_sol_types::Eip712Domain, ask: u128, nonce: u64) -> Value {
    order_by(domain, 90 + (nonce % 100) as u8, ask * 2, nonce)
}

fn order_by(domain: &alloy_sol_types::Eip712Domain, consumer: u8, max_price: u128, nonce: u64) -> Value {
    let key: pat_engine::MarketKey = MARKET.parse().unwrap();
    let signed = sign_order_for(&signer(consumer), &key, 1, max_price, nonce, now_secs() + 300, domain);
    serde_json::to_value(OrderRequest::from_signed(&signed, &key)).unwrap()
}

#[test]
fn serve_keeps_acknowledged_fills_across_sigkill_and_survives_a_bad_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("pat.toml");
    write_offline_config(&config);
    let domain = pat_config::Config::load(&config).unwrap().engine.domain();
    let port = free_port();
    let engine = Engine::start(tmp.path(), port);
    for p in 0..3 {
        assert_eq!(engine.post("/v1/segments", &segment(&domain, p, 0)).0, 201);
    }
    let ask = engine.ask();
    let mut acked = Vec::new();
    for nonce in 1..=10 {
        let (status, fill) = engine.post("/v1/orders", &order(&domain, ask, nonce));
        assert_eq!(status, 201, "{fill}");
        acked.push(fill["fill_id"].as_str().unwrap().to_owned());
    }
    let mut engine = engine;
    engine.child.kill().unwrap();
    engine.child.wait().unwrap();
    let engine = Engine::start(tmp.path(), port);
    for id in &acked {
        let (status, fill) = engine.get(&format!("/v1/fills/{id}"));
        assert_eq!((status, fill["status"].as_str()), (200, Some("accepted")), "{id}");
    }
    let (_, m) = engine.get(&format!("/v1/markets/{}", MARKET.replace('|', "%7C")));
    assert_eq!((m["supply_units"].as_u64(), m["sold_units"].as_u64()), (Some(140), Some(10)));

    // A broken config on SIGHUP is refused; the engine keeps serving.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("max_bps = 1500", "max_bps = 9000")).unwrap();
    engine.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(engine.post("/v1/orders", &order(&domain, engine.ask(), 11)).0, 201);

    // SIGTERM: a clean stop with a final snapshot.
    engine.signal("-TERM");
    let mut engine = engine;
    let status = engine.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let data = tmp.path().join("data");
    // The first config, 3 listings and 11 fills; the refused reload journals nothing.
    let out = inspect_unchanged(&data);
    assert!(out.contains("snapshots at LSN: [15]"), "{out}");

    // A crash leaves the snapshot store open: an operator's inspection still
    // reads it (from a repaired copy), and changes nothing.
    std::fs::write(&config, &text).unwrap();
    let mut engine = Engine::start(tmp.path(), port);
    engine.child.kill().unwrap();
    engine.child.wait().unwrap();
    let out = inspect_unchanged(&data);
    assert!(out.contains("snapshots at LSN: [15] (the store was not closed cleanly"), "{out}");
}

/// Writes the default config with no chain to follow: orders are not held to escrow.
fn write_offline_config(config: &Path) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")).unwrap();
    std::fs::write(config, text.replace("required = true", "required = false")).unwrap();
}

/// `journal inspect` of `data`, checking that it changed no file; its output.
fn inspect_unchanged(data: &Path) -> String {
    let before = files_of(data);
    let inspect =
        Command::new(env!("CARGO_BIN_EXE_pat-market")).args(["journal", "inspect"]).arg(data).output().unwrap();
    assert!(inspect.status.success(), "{inspect:?}");
    assert!(before == files_of(data), "an inspection changed the data directory");
    String::from_utf8_lossy(&inspect.stdout).into_owned()
}

/// With the broker's key, `serve` settles on chain: anvil with the real
/// contracts, a funded consumer, and the fill reaches `settled` with its
/// money moved to the base unit.
/// Writes `dir/pat.toml` for `devnet`'s contracts; returns the EIP-712 domain
/// and the broker's key for `PAT_BROKER_KEY`.
fn devnet_config(dir: &Path, devnet: &pat_chain::devnet::Devnet) -> (alloy_sol_types::Eip712Domain, String) {
    let config = dir.join("pat.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")).unwrap();
    let text = text
        .replace("0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", &devnet.deployment.marketplace.to_string())
        .replace("http://127.0.0.1:8545", devnet.node.url().as_str());
    std::fs::write(&config, text).unwrap();
    let domain = pat_config::Config::load(&config).unwrap().engine.domain();
    (domain, format!("0x{}", alloy_primitives::hex::encode(devnet.owner.to_bytes())))
}

#[test]
fn serve_settles_fills_on_chain_with_the_brokers_key() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let devnet = rt.block_on(pat_chain::devnet::Devnet::start()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (domain, key) = devnet_config(tmp.path(), &devnet);
    // A view not current for 1.5 s stops order intake (the end of this test stops the chain).
    let config = tmp.path().join("pat.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("stale_after_ms = 10000", "stale_after_ms = 1500")).unwrap();
    let engine = Engine::start_with(tmp.path(), free_port(), &[("PAT_BROKER_KEY", key)]);
    for p in 0..2 {
        assert_eq!(engine.post("/v1/segments", &segment(&domain, p, 0)).0, 201);
    }
    // A fresh wallet (no escrow on chain) takes nothing: refused, with supply and exposure
    // as they were (and so the quote's inputs).
    let market = format!("/v1/markets/{}", MARKET.replace('|', "%7C"));
    let ask = engine.ask();
    let before = engine.get(&market).1;
    let (status, refused) = engine.post("/v1/orders", &order_by(&domain, 91, ask * 2, 1));
    assert_eq!((status, refused["code"].as_str()), (422, Some("insufficient_escrow")), "{refused}");
    let after = engine.get(&market).1;
    for field in ["supply_units", "exposure", "group_exposure", "sold_units"] {
        assert_eq!(after[field], before[field], "{field} unchanged by a refused order");
    }
    let fresh = engine.get(&format!("/v1/consumers/{}/escrow", signer(91).address())).1;
    assert_eq!(
        (fresh["free"].as_str(), fresh["held"].as_str(), fresh["required"].as_bool()),
        (Some("0"), Some("0"), Some(true))
    );

    let escrow = U256::from(50u128 * 10u128.pow(18));
    rt.block_on(devnet.fund_consumer(&signer(90), escrow)).unwrap();
    engine.wait_free_escrow(signer(90).address(), escrow);
    let (status, fill) = engine.post("/v1/orders", &order_by(&domain, 90, engine.ask() * 2, 1));
    assert_eq!(status, 201, "{fill}");
    let id = fill["fill_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let (_, f) = engine.get(&format!("/v1/fills/{id}"));
        if f["status"] == "settled" {
            break f;
        }
        assert!(f["status"] == "accepted" || f["status"] == "submitted", "{f}");
        assert!(Instant::now() < deadline, "the fill did not settle: {f}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(settled["tx_hash"].is_string());
    let paid: u128 = settled["ask_paid"].as_str().unwrap().parse().unwrap();
    let client = rt.block_on(devnet.client()).unwrap();
    let left = rt.block_on(client.escrow_of(signer(90).address())).unwrap();
    assert_eq!(left, escrow - U256::from(paid), "the consumer paid exactly the ask");

    // Once the follower reads the settlement, the escrow is lower by the ask and nothing is held.
    let consumer = signer(90).address();
    let view = |engine: &Engine| engine.get(&format!("/v1/consumers/{consumer}/escrow")).1;
    let wait_for = |engine: &Engine, what: &str, ok: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ok(&view(engine)) {
            assert!(Instant::now() < deadline, "{what}: {}", view(engine));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let left_text = left.to_string();
    wait_for(&engine, "settlement synced", &|v| v["escrow"] == left_text.as_str() && v["held"] == "0");

    // A requested withdrawal of all of it leaves nothing free: the next order is refused
    // (a pre-armed withdrawal cannot front-run fills accepted against it).
    let wallet = devnet.provider_for(&signer(90));
    let market = pat_chain::bindings::DataMarketplace::new(devnet.deployment.marketplace, &wallet);
    let sent = rt.block_on(async { market.requestWithdrawal(left).send().await }).unwrap();
    rt.block_on(pat_chain::devnet::confirm(&wallet, sent)).unwrap();
    wait_for(&engine, "withdrawal synced", &|v| v["withdrawing"] == left_text.as_str() && v["free"] == "0");
    let (status, refused) = engine.post("/v1/orders", &order_by(&domain, 90, engine.ask() * 2, 2));
    assert_eq!((status, refused["code"].as_str()), (422, Some("insufficient_escrow")), "{refused}");
    // A nonce cancelled on chain is refused by its own code; the withdrawal cancelled after
    // it (so a view with the withdrawal gone has read the cancellation too) frees the escrow.
    let sent = rt.block_on(async { market.invalidateNonces(U256::ZERO, 1 << 3).send().await }).unwrap();
    rt.block_on(pat_chain::devnet::confirm(&wallet, sent)).unwrap();
    let sent = rt.block_on(async { market.cancelWithdrawal().send().await }).unwrap();
    rt.block_on(pat_chain::devnet::confirm(&wallet, sent)).unwrap();
    wait_for(&engine, "cancellation synced", &|v| v["free"] == left_text.as_str());
    let (status, refused) = engine.post("/v1/orders", &order_by(&domain, 90, engine.ask() * 2, 3));
    assert_eq!((status, refused["code"].as_str()), (409, Some("nonce_invalidated")), "{refused}");

    // After a restart the engine has the same view (its syncs are journaled) and takes orders.
    let mut engine = engine;
    engine.child.kill().unwrap();
    engine.child.wait().unwrap();
    let journal = inspect_unchanged(&tmp.path().join("data"));
    assert!(journal.matches("escrow_synced").count() >= 4, "deposit, settlement, withdrawal, cancellations: {journal}");
    let engine = Engine::start_with(tmp.path(), free_port(), &[]);
    let again = view(&engine);
    assert_eq!(
        (again["escrow"].as_str(), again["free"].as_str()),
        (Some(left_text.as_str()), Some(left_text.as_str()))
    );
    let (status, fill) = engine.post("/v1/orders", &order_by(&domain, 90, engine.ask() * 2, 4));
    assert_eq!(status, 201, "{fill}");

    // The chain goes away: once the view is older than stale_after_ms, no order is taken
    // (a withdrawal made meanwhile would go unseen). A fresh wallet is refused for its
    // escrow until then, and for the stale view after.
    let ask = engine.ask();
    drop(devnet);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (status, body) = engine.post("/v1/orders", &order_by(&domain, 92, ask * 2, 1));
        if status == 503 {
            break body;
        }
        assert!(status == 422 && body["code"] == "insufficient_escrow" && Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused["code"], "escrow_unavailable", "{refused}");
    let (_, theirs) = engine.get(&format!("/v1/consumers/{}/fills", signer(92).address()));
    assert_eq!(theirs, serde_json::json!([]), "the refused orders took nothing");
}

/// The crash test: consumers send orders while the server is SIGKILLed at
/// random moments, ten times, and restarted on the same data directory.
/// Every fill a consumer saw acknowledged is still there, every fill settles,
/// and the chain moved each one's money exactly once: the consumers' escrow
/// fell by exactly the asks paid, the broker earned exactly the spreads, and
/// the providers' credits are exactly the bids.
#[test]
fn acknowledged_fills_survive_sigkill_under_load_and_settle_exactly_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let devnet = rt.block_on(pat_chain::devnet::Devnet::start()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (domain, key) = devnet_config(tmp.path(), &devnet);
    let env = [("PAT_BROKER_KEY", key)];
    let port = free_port();
    let mut engine = Engine::start_with(tmp.path(), port, &env);
    // 300 segments: each consumer can buy one unit of each, through all ten rounds.
    for p in 0..60 {
        for s in 0..5 {
            assert_eq!(engine.post("/v1/segments", &segment(&domain, p, s)).0, 201);
        }
    }
    let consumers: Vec<u8> = (90..94).collect();
    let escrow = U256::from(20_000u128 * 10u128.pow(18));
    for &c in &consumers {
        rt.block_on(devnet.fund_consumer(&signer(c), escrow)).unwrap();
    }
    for &c in &consumers {
        engine.wait_free_escrow(signer(c).address(), escrow);
    }
    let max_price = engine.ask() * 20;

    let load = Load::start(&engine.base, &domain, &consumers, max_price, 700);

    // A scrape taken under load passes promtool.
    std::thread::sleep(Duration::from_millis(300));
    let scrape = engine.http.get(format!("{}/metrics", engine.base)).send().unwrap().text().unwrap();
    assert!(scrape.contains("pat_fills_total{status=\"accepted\"}"), "{scrape}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) runs; scripts/test.sh installs it");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), scrape.as_bytes()).unwrap();
    let linted = promtool.wait_with_output().unwrap();
    assert!(linted.status.success(), "promtool: {}", String::from_utf8_lossy(&linted.stderr));

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut state = seed | 1;
    for _ in 0..10 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(150 + state % 450));
        engine.child.kill().unwrap();
        engine.child.wait().unwrap();
        engine = Engine::start_with(tmp.path(), port, &env);
    }
    std::thread::sleep(Duration::from_millis(500));
    let acked = load.stop();
    assert!(acked.len() >= 40, "the load got through between kills: {} fills", acked.len());
    let fills = settled_exactly_once(&rt, &devnet, &engine, &consumers, escrow, &acked);
    eprintln!("{} fills acknowledged, {} settled across 10 SIGKILLs", acked.len(), fills.len());
    engine.child.kill().unwrap();
    engine.child.wait().unwrap();
}

/// The listing crash test: providers list segments while the server is
/// SIGKILLed at random moments, 20 times, and restarted on the same data
/// directory; a kill can fall between a payload's store write and its
/// listing's journal append. Then every segment the engine lists (each
/// acknowledged one among them) reads back from the store with its payload,
/// through its provider's own signed route; and once the store's files are
/// older than the orphan grace, the sweep at start leaves exactly the listed
/// payloads, with no staging file of a cut-off put.
#[test]
fn listings_keep_their_payloads_across_sigkill_and_the_sweep_removes_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("pat.toml");
    write_offline_config(&config);
    let domain = pat_config::Config::load(&config).unwrap().engine.domain();
    let port = free_port();
    let mut engine = Engine::start(tmp.path(), port);
    let providers: Vec<u8> = (1..=3).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let posters: Vec<_> = providers
        .iter()
        .map(|&p| {
            let (base, stop, domain) = (engine.base.clone(), stop.clone(), domain.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                let mut acked = Vec::new();
                for salt in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    match http.post(format!("{base}/v1/segments")).json(&segment(&domain, p, salt)).send() {
                        Ok(r) if r.status().as_u16() == 201 => {
                            acked.push(r.json::<Value>().unwrap()["id"].as_u64().unwrap())
                        }
                        // Refused or cut off by a kill: not acknowledged.
                        _ => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                acked
            })
        })
        .collect();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut state = seed | 1;
    for _ in 0..20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(100 + state % 300));
        engine.child.kill().unwrap();
        engine.child.wait().unwrap();
        engine = Engine::start(tmp.path(), port);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<u64> = posters.into_iter().flat_map(|p| p.join().unwrap()).collect();
    assert!(acked.len() >= 100, "the listings got through between kills: {}", acked.len());

    // Every listed segment (ids are dense from 0) reads back with its payload.
    let by_address: std::collections::HashMap<alloy_primitives::Address, LocalSigner> =
        providers.iter().map(|&p| (signer(p).address(), signer(p))).collect();
    let mut listed = std::collections::BTreeSet::new();
    for id in 0.. {
        let (status, seg) = engine.get(&format!("/v1/segments/{id}"));
        if status == 404 {
            break;
        }
        let provider = &by_address[&seg["provider"].as_str().unwrap().parse::<alloy_primitives::Address>().unwrap()];
        let expires = now_secs() + 60;
        let (_, signature) = pat_engine::signing::sign_payload_access(provider, id, expires, &domain);
        let auth = pat_server::access::authorization(
            pat_server::access::Party::Provider,
            provider.address(),
            expires,
            &signature,
        );
        let resp = engine
            .http
            .get(format!("{}/v1/segments/{id}/data", engine.base))
            .header("authorization", auth)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "listed segment {id} has no payload");
        let hash = seg["payload_hash"].as_str().unwrap().to_owned();
        assert_eq!(format!("{}", keccak256(resp.bytes().unwrap())), hash, "segment {id}");
        listed.insert(hash.trim_start_matches("0x").to_owned());
    }
    for id in &acked {
        assert!((*id as usize) < listed.len(), "acknowledged segment {id} was lost");
    }

    // What else the store holds: orphans, and staging files of cut-off puts.
    engine.child.kill().unwrap();
    engine.child.wait().unwrap();
    let store = tmp.path().join("data/store");
    let names = |kind: &str| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(store.join(kind)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
    };
    let leftovers: Vec<String> =
        ["payloads", "keys"].iter().flat_map(|k| names(k)).filter(|n| !listed.contains(n)).collect();
    eprintln!(
        "{} listings acknowledged, {} listed, {} files of no listing ({} staging) across 20 SIGKILLs",
        acked.len(),
        listed.len(),
        leftovers.len(),
        leftovers.iter().filter(|n| n.contains('#')).count()
    );
    // An hour passes for the store: past the orphan grace (10 min).
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for kind in ["payloads", "keys"] {
        for name in names(kind) {
            std::fs::File::options()
                .write(true)
                .open(store.join(kind).join(name))
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
    }
    let engine = Engine::start(tmp.path(), port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while names("payloads") != listed || names("keys") != listed {
        assert!(Instant::now() < deadline, "the sweep at start did not leave exactly the listed payloads");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each orphan payload (its one or two objects) and each staging file, counted once.
    let staging = leftovers.iter().filter(|n| n.contains('#')).count();
    let orphans: std::collections::BTreeSet<&String> = leftovers.iter().filter(|n| !n.contains('#')).collect();
    // The files go before the sweep counts them: wait for the count too.
    let removed = format!("pat_storage_orphans_removed_total {}", orphans.len() + staging);
    loop {
        let scrape = engine.http.get(format!("{}/metrics", engine.base)).send().unwrap().text().unwrap();
        if scrape.lines().any(|l| l == removed) {
            break;
        }
        assert!(Instant::now() < deadline, "{removed} in {scrape}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !leftovers.is_empty(),
        "no kill fell between a store write and its journal append: the test tested nothing"
    );
}

/// Consumers sending orders from threads, about 50 a second each, until stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    senders: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    /// Each of `consumers` sends up to `orders` orders of one unit at `max_price` to `base`.
    fn start(
        base: &str,
        domain: &alloy_sol_types::Eip712Domain,
        consumers: &[u8],
        max_price: u128,
        orders: u64,
    ) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let senders = consumers
            .iter()
            .map(|&c| {
                let (base, stop) = (base.to_owned(), stop.clone());
                let orders: Vec<Value> = (1..=orders).map(|nonce| order_by(domain, c, max_price, nonce)).collect();
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                    let mut acked = Vec::new();
                    for body in orders {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        match http.post(format!("{base}/v1/orders")).json(&body).send() {
                            Ok(r) if r.status().as_u16() == 201 => {
                                acked.push(r.json::<Value>().unwrap()["fill_id"].as_str().unwrap().to_owned());
                            }
                            // A refused or lost order is simply not acknowledged.
                            _ => {}
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    acked
                })
            })
            .collect();
        Self { stop, senders }
    }

    /// Stops the senders: the fill ids each saw acknowledged.
    fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.senders.into_iter().flat_map(|s| s.join().unwrap()).collect()
    }
}

/// Waits until every fill of `consumers` settled (none failed: escrow covers them all), checks
/// each of `acked` is among them, and that the chain moved each one's money exactly once:
/// each consumer's escrow (funded with `escrow`) fell by exactly its asks, the broker earned
/// exactly the spreads, and the providers' credits are exactly the bids. The fills.
fn settled_exactly_once(
    rt: &tokio::runtime::Runtime,
    devnet: &pat_chain::devnet::Devnet,
    engine: &Engine,
    consumers: &[u8],
    escrow: U256,
    acked: &[String],
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let fills: Vec<Value> = loop {
        let fills: Vec<Value> = consumers
            .iter()
            .flat_map(|c| {
                engine.get(&format!("/v1/consumers/{}/fills", signer(*c).address())).1.as_array().unwrap().clone()
            })
            .collect();
        assert!(fills.iter().all(|f| f["status"] != "failed"), "escrow covers every fill");
        if fills.iter().all(|f| f["status"] == "settled") {
            break fills;
        }
        assert!(Instant::now() < deadline, "fills did not all settle");
        std::thread::sleep(Duration::from_millis(200));
    };
    let ids: std::collections::HashSet<&str> = fills.iter().map(|f| f["fill_id"].as_str().unwrap()).collect();
    for id in acked {
        assert!(ids.contains(id.as_str()), "acknowledged fill {id} was lost");
    }
    let sum = |fills: &[&Value], field: &str| -> U256 {
        fills.iter().map(|f| f[field].as_str().unwrap().parse::<U256>().unwrap()).fold(U256::ZERO, |a, b| a + b)
    };
    let all: Vec<&Value> = fills.iter().collect();
    let client = rt.block_on(devnet.client()).unwrap();
    for &c in consumers {
        let address = signer(c).address();
        let own: Vec<&Value> = fills
            .iter()
            .filter(|f| {
                f["consumer"].as_str().and_then(|a| a.parse::<alloy_primitives::Address>().ok()) == Some(address)
            })
            .collect();
        assert!(!own.is_empty());
        let left = rt.block_on(client.escrow_of(address)).unwrap();
        assert_eq!(left, escrow - sum(&own, "ask_paid"), "consumer {address} paid each fill once");
    }
    assert_eq!(sum(&all, "ask_paid"), sum(&all, "bid_credited") + sum(&all, "broker_spread"));
    assert_eq!(rt.block_on(client.broker_earnings()).unwrap(), sum(&all, "broker_spread"));
    assert_eq!(rt.block_on(client.unclaimed_credits()).unwrap(), sum(&all, "bid_credited"));
    fills
}

/// The live upgrade: a chain deployed on V1, orders flowing and settling, and the owner
/// upgrades the marketplace to V2 in the middle. No acknowledged fill is lost, every fill
/// settles exactly once (escrow, earnings and credits to the base unit), and the proxy runs V2.
#[test]
fn a_live_upgrade_from_v1_under_load_loses_no_fill_and_settles_none_twice() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let devnet = rt.block_on(pat_chain::devnet::Devnet::start_v1()).unwrap();
    let market = pat_chain::bindings::DataMarketplace::new(devnet.deployment.marketplace, &devnet.owner_provider);
    assert!(rt.block_on(async { market.version().call().await }).is_err(), "V1 has no version()");
    let tmp = tempfile::tempdir().unwrap();
    let (domain, _) = devnet_config(tmp.path(), &devnet);
    // A broker of its own: the owner's upgrade transactions and the broker's settlements
    // would otherwise race for one account's nonces.
    let broker = signer(200);
    rt.block_on(devnet.set_eth(broker.address(), U256::from(10u128.pow(20)))).unwrap();
    let set = rt.block_on(async { market.setBroker(broker.address()).send().await }).unwrap();
    rt.block_on(pat_chain::devnet::confirm(&devnet.owner_provider, set)).unwrap();
    let key = format!("0x{}", alloy_primitives::hex::encode(broker.to_bytes()));
    let engine = Engine::start_with(tmp.path(), free_port(), &[("PAT_BROKER_KEY", key)]);
    // 120 segments: each consumer can buy one unit of each.
    for p in 0..40 {
        for s in 0..3 {
            assert_eq!(engine.post("/v1/segments", &segment(&domain, p, s)).0, 201);
        }
    }
    let consumers: Vec<u8> = (90..92).collect();
    let escrow = U256::from(20_000u128 * 10u128.pow(18));
    for &c in &consumers {
        rt.block_on(devnet.fund_consumer(&signer(c), escrow)).unwrap();
    }
    for &c in &consumers {
        engine.wait_free_escrow(signer(c).address(), escrow);
    }
    let load = Load::start(&engine.base, &domain, &consumers, engine.ask() * 20, 110);
    std::thread::sleep(Duration::from_millis(1_000));
    let implementation = rt.block_on(devnet.upgrade_to_v2(pat_chain::deploy::V2Params::default())).unwrap();
    std::thread::sleep(Duration::from_millis(1_000));
    let acked = load.stop();
    assert_eq!(rt.block_on(async { market.version().call().await }).unwrap(), 2, "the proxy runs V2");
    assert_ne!(implementation, devnet.deployment.implementation);
    assert!(acked.len() >= 40, "orders went through around the upgrade: {}", acked.len());
    let fills = settled_exactly_once(&rt, &devnet, &engine, &consumers, escrow, &acked);
    eprintln!("{} fills acknowledged, {} settled across the upgrade", acked.len(), fills.len());
}

/// Every file under `dir` with its bytes, to check that a read changes none.
fn files_of(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_of(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}
