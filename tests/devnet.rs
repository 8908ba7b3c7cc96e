//! `pat-market devnet` as a user runs it: one command brings up chain,
//! contracts, demo accounts, engine, settlement and HTTP; a demo consumer's
//! purchase settles on chain; a restart continues on the same chain and data.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::keccak256;
use pat_engine::MarketKey;
use pat_engine::signing::{LocalSigner, sign_listing, sign_order_for};
use pat_engine::{SignalRecord, encode_payload};
use pat_server::dto::{OrderRequest, SegmentRequest};
use serde_json::Value;

/// Anvil's well-known dev account 3: the first demo consumer.
const DEMO_CONSUMER_KEY: &str = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";
const MARKET: &str = "PURCHASE_INTENT|7D|0.70-0.85";

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

struct Devnet {
    child: Child,
    base: String,
    http: reqwest::blocking::Client,
}

impl Devnet {
    fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    fn start_with(data: &Path, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_pat-market"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["devnet", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::blocking::Client::new() };
        // It comes up in about 8 s; once, with the whole suite on two cores, it
        // took over 60, so the bound is wide.
        let deadline = Instant::now() + Duration::from_secs(180);
        while d.http.get(format!("{}/healthz", d.base)).send().is_err() {
            assert!(Instant::now() < deadline, "devnet did not come up within 180 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn get(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.base)).send().unwrap().json().unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.http.post(format!("{}{path}", self.base)).json(body).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    }

    fn stop(mut self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success());
    }

    fn buy_and_settle(&self, domain: &alloy_sol_types::Eip712Domain, nonce: u64) -> Value {
        let key: MarketKey = MARKET.parse().unwrap();
        let mut ask = None;
        for _ in 0..100 {
            let m = self.get(&format!("/v1/markets/{}", MARKET.replace('|', "%7C")));
            if m["quote"]["halted"].is_null() && m["supply_units"].as_u64() > Some(0) {
                ask = m["quote"]["ask"].as_str().map(|a| a.parse::<u128>().unwrap());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let ask = ask.expect("a quote");
        let consumer: LocalSigner = DEMO_CONSUMER_KEY.parse().unwrap();
        let signed = sign_order_for(&consumer, &key, 1, ask, nonce, now_secs() + 120, domain);
        let body = serde_json::to_value(OrderRequest::from_signed(&signed, &key)).unwrap();
        let (status, fill) = self.post("/v1/orders", &body);
        assert_eq!(status, 201, "{fill}");
        let id = fill["fill_id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let f = self.get(&format!("/v1/fills/{id}"));
            if f["status"] != "accepted" && f["status"] != "submitted" {
                return f;
            }
            assert!(Instant::now() < deadline, "not settled: {f}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `pat-market` as a consumer runs it against `devnet`, with the demo key in the environment.
fn consumer_cli(devnet: &Devnet, data: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pat-market"))
        .args(args)
        .args(["--url", &devnet.base, "--config"])
        .arg(data.join("devnet.toml"))
        .env("PAT_CONSUMER_KEY", DEMO_CONSUMER_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn verify(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pat-market")).arg("verify").arg(dir).output().unwrap()
}

/// The whole purchase from a shell: buy, download, verify; a flipped byte fails verify.
fn buy_download_verify(devnet: &Devnet, data: &Path, listed: &[Vec<u8>]) {
    let out = consumer_cli(devnet, data, &["buy", "--market", MARKET, "--qty", "1"]);
    let fill: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fill["status"], "settled", "{fill}");
    let id = fill["fill_id"].as_str().unwrap();
    let dir = data.join("downloads");
    consumer_cli(devnet, data, &["download", id, "--out", dir.to_str().unwrap()]);
    let segment = fill["allocations"][0]["segment_id"].as_u64().unwrap();
    let payload_file = dir.join(format!("segment-{segment}.payload"));
    assert!(listed.contains(&std::fs::read(&payload_file).unwrap()), "the bytes are a listed payload");
    let ok = verify(&dir);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let mut flipped = std::fs::read(&payload_file).unwrap();
    flipped[3] ^= 1;
    std::fs::write(&payload_file, flipped).unwrap();
    let bad = verify(&dir);
    assert!(!bad.status.success(), "a flipped byte fails verify");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("FAIL"), "{}", String::from_utf8_lossy(&bad.stdout));
}

/// A test that fails midway still stops its devnet (and so its anvil): no
/// process outlives the test to slow the rest of the suite.
impl Drop for Devnet {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

fn list(devnet: &Devnet, domain: &alloy_sol_types::Eip712Domain, provider: u8) -> Vec<u8> {
    let signer = LocalSigner::from_bytes(&keccak256([provider, 1])).unwrap();
    let now = now_secs();
    let payload = encode_payload(&[SignalRecord::new(now, "PURCHASE_INTENT", 0.8, format!("d{provider}"))]);
    let key: MarketKey = MARKET.parse().unwrap();
    let signed = sign_listing(&signer, &key, 10, now - 60, now, payload.clone(), domain);
    let body = SegmentRequest::from_signed(&signed).unwrap();
    assert_eq!(devnet.post("/v1/segments", &serde_json::to_value(body).unwrap()).0, 201);
    payload
}

#[test]
fn devnet_runs_the_whole_market_and_continues_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let devnet = Devnet::start(&data);
    let domain = pat_config::Config::load(&data.join("devnet.toml")).unwrap().engine.domain();
    // Three segments: the demo consumer buys one here, one from the shell, one after the restart.
    let listed: Vec<Vec<u8>> = (1..=3).map(|p| list(&devnet, &domain, p)).collect();
    let first = devnet.buy_and_settle(&domain, 1);
    assert_eq!(first["status"], "settled", "{first}");
    buy_download_verify(&devnet, &data, &listed);
    devnet.stop();

    // Same chain (anvil state), same contracts, same journal.
    let devnet = Devnet::start(&data);
    let id = first["fill_id"].as_str().unwrap();
    assert_eq!(devnet.get(&format!("/v1/fills/{id}"))["status"], "settled");
    let replay = devnet.buy_and_settle(&domain, 2);
    assert_eq!(replay["status"], "settled", "the second purchase settles on the kept chain: {replay}");
    devnet.stop();
}

/// `devnet --simulate`: synthetic agents list segments and demo consumers buy,
/// over HTTP, and their fills settle on the local chain.
#[test]
fn devnet_simulate_lists_buys_and_settles_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::start_with(&tmp.path().join("data"), &["--simulate"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let segments = devnet.get("/v1/segments?limit=1000").as_array().unwrap().len();
        let metrics = devnet.http.get(format!("{}/metrics", devnet.base)).send().unwrap().text().unwrap();
        let settled = metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"pat_fills_total{status="settled"} "#))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if segments >= 3 && settled >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{segments} segments, {settled} settled fills");
        std::thread::sleep(Duration::from_millis(250));
    }
    devnet.stop();
}
