//! The harness the server's tests share: a real engine (actor, journal on
//! disk) behind a real server on a loopback port, and signed requests.
#![allow(dead_code)] // each test binary uses its own part of the harness

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use alloy_primitives::keccak256;
use pat_actors::clock::system_clock;
use pat_actors::{Engine, EngineActor, EngineSettings};
use pat_config::Config;
use pat_engine::EngineConfig;
use pat_engine::signing::{LocalSigner, sign_listing, sign_order_for};
use pat_engine::{SignalRecord, encode_payload};
use pat_server::ServerSettings;
use pat_server::dto::{OrderRequest, SegmentRequest};
use serde_json::{Value, json};

pub const TOKEN: &str = "operator-secret";
pub const MARKET: &str = "PURCHASE_INTENT|7D|0.70-0.85";

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub cfg: EngineConfig,
    pub config_path: PathBuf,
    pub engine: Engine,
    _tmp: tempfile::TempDir,
}

pub fn signer(n: u8) -> LocalSigner {
    LocalSigner::from_bytes(&keccak256([n])).unwrap()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

impl Api {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the server's settings adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerSettings)) -> Self {
        Self::start_custom(|_| {}, system_clock(), adjust).await
    }

    /// Starts with the engine's settings adjusted by `engine` (its data
    /// directory given), its clock, and the server's settings adjusted by `server`.
    pub async fn start_custom(
        engine: impl FnOnce(&mut EngineSettings),
        clock: pat_actors::clock::Clock,
        server: impl FnOnce(&mut ServerSettings),
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let config_path = tmp.path().join("pat.toml");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/default.toml"), &config_path).unwrap();
        let cfg = Config::load(&config_path).unwrap().engine;
        // As the binary does: the recorder first, so the engine's first metrics are kept.
        pat_server::metrics_handle();
        let mut engine_settings = EngineSettings::new(tmp.path().join("data"));
        engine(&mut engine_settings);
        let (engine, _) = EngineActor::start(engine_settings, Arc::new(cfg.clone()), clock).unwrap();
        let mut settings = ServerSettings::new("127.0.0.1:0".parse::<SocketAddr>().unwrap(), config_path.clone());
        settings.admin_token = Some(TOKEN.into());
        settings.http.body_bytes_max = 64 * 1024;
        server(&mut settings);
        let (server, addr) = pat_server::start(settings, engine.clone(), cfg.domain()).await.unwrap();
        actix_rt::spawn(server);
        Self { base: format!("http://{addr}"), http: reqwest::Client::new(), cfg, config_path, engine, _tmp: tmp }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body), None).await
    }

    pub async fn raw_post(&self, path: &str, body: impl Into<String>) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub fn segment(&self, provider: u8, units: u32, salt: u64) -> Value {
        self.segment_with(provider, units, Self::payload(salt))
    }

    /// A one-signal payload in canonical form, told apart by `salt`.
    pub fn payload(salt: u64) -> Vec<u8> {
        encode_payload(&[SignalRecord::new(now_secs() - 10, "PURCHASE_INTENT", 0.8, format!("c{salt}"))])
    }

    /// A submission of `payload`, signed by `provider`.
    pub fn segment_with(&self, provider: u8, units: u32, payload: Vec<u8>) -> Value {
        let now = now_secs();
        let key: pat_engine::MarketKey = MARKET.parse().unwrap();
        let domain = self.cfg.domain();
        let signed = sign_listing(&signer(provider), &key, units, now - 3600, now, payload, &domain);
        serde_json::to_value(SegmentRequest::from_signed(&signed).unwrap()).unwrap()
    }

    pub fn order(&self, consumer: u8, qty: u64, max_price: u128, nonce: u64, deadline: u64) -> Value {
        self.order_in(MARKET, consumer, qty, max_price, nonce, deadline)
    }

    pub fn order_in(&self, market: &str, consumer: u8, qty: u64, max_price: u128, nonce: u64, deadline: u64) -> Value {
        let key: pat_engine::MarketKey = market.parse().unwrap();
        let signed = sign_order_for(&signer(consumer), &key, qty, max_price, nonce, deadline, &self.cfg.domain());
        serde_json::to_value(OrderRequest::from_signed(&signed, &key)).unwrap()
    }

    /// The market's state as the API shows it, minus what time alone moves.
    pub async fn state(&self) -> Value {
        let (_, m) = self.get(&format!("/v1/markets/{}", MARKET.replace('|', "%7C"))).await;
        json!([m["supply_units"], m["exposure"], m["sold_units"], m["listed_units"]])
    }

    /// The market's ask once it holds still over two ticks: the quoting actor
    /// ticks apart from the engine and may have priced only some listings.
    pub async fn ask(&self) -> u128 {
        let mut last = None;
        for _ in 0..40 {
            let (_, m) = self.get(&format!("/v1/markets/{}", MARKET.replace('|', "%7C"))).await;
            if m["quote"]["halted"].is_null() && m["supply_units"].as_u64() > Some(0) {
                let ask: u128 = m["quote"]["ask"].as_str().unwrap().parse().unwrap();
                if last == Some(ask) {
                    return ask;
                }
                last = Some(ask);
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        panic!("the market never quoted steadily");
    }
}
