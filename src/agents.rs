//! `devnet --simulate`: synthetic browser agents and consumers against the
//! running engine over HTTP, as real clients would be. Agents (providers with
//! keys of their own) list signed segments of observed intent signals in
//! random markets; the demo consumers buy a few units at the quoted ask in
//! markets with supply, and their escrow is topped up on chain when it runs
//! low. Nonces come from the clock, so a restarted devnet never replays one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{U256, keccak256};
use pat_chain::devnet::Devnet;
use pat_engine::signing::{LocalSigner, sign_listing, sign_order_for};
use pat_engine::{EngineConfig, MarketKey};
use pat_engine::{SignalRecord, encode_payload};
use pat_server::dto::{OrderRequest, SegmentRequest};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Synthetic browser agents (segment providers).
const AGENTS: u8 = 12;
/// A consumer's escrow is topped up below this, PAT.
const ESCROW_LOW: u128 = 1_000;
/// What a top-up deposits, PAT.
const TOP_UP: u128 = 5_000;
const ONE_PAT: u128 = 10u128.pow(18);

#[derive(Default)]
struct Tally {
    listed: u64,
    filled: u64,
    refused: BTreeMap<String, u64>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs until the task is dropped: about one listing a second and four orders.
pub async fn simulate(base: String, cfg: EngineConfig, consumers: Vec<LocalSigner>, devnet: Arc<Devnet>) {
    let http = reqwest::Client::new();
    let domain = cfg.domain();
    let keys = cfg.market_keys();
    let agents: Vec<LocalSigner> = (0..AGENTS)
        .map(|i| LocalSigner::from_bytes(&keccak256([b'a', b'g', i])).expect("a valid synthetic key"))
        .collect();
    let chain = devnet.client().await.ok();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut tally = Tally::default();
    let mut step = tokio::time::interval(Duration::from_millis(250));
    let mut counter = 0u64;
    loop {
        step.tick().await;
        counter += 1;
        if rng.random_bool(0.25) {
            let (agent, market) = (agents.choose(&mut rng).expect("agents"), keys.choose(&mut rng).expect("markets"));
            let units = rng.random_range(20..=200);
            match list(&http, &base, agent, market, units, &domain).await {
                Ok(()) => tally.listed += 1,
                Err(code) => *tally.refused.entry(code).or_default() += 1,
            }
        }
        let consumer = consumers.choose(&mut rng).expect("consumers");
        let nonce = now_ms() * 1_000 + counter % 1_000;
        match buy(&http, &base, consumer, nonce, &domain, &mut rng).await {
            Ok(true) => tally.filled += 1,
            Ok(false) => {}
            Err(code) => *tally.refused.entry(code).or_default() += 1,
        }
        if counter.is_multiple_of(80) {
            eprintln!(
                "simulate: {} segments listed, {} orders filled, refused {:?}",
                tally.listed, tally.filled, tally.refused
            );
            if let Some(chain) = &chain {
                top_up(&devnet, chain, &consumers).await;
            }
        }
    }
}

async fn list(
    http: &reqwest::Client,
    base: &str,
    agent: &LocalSigner,
    market: &MarketKey,
    units: u32,
    domain: &alloy::sol_types::Eip712Domain,
) -> Result<(), String> {
    let now = now_ms() / 1_000;
    let confidence = f64::from(market.band.lo() + market.band.hi()) / 20_000.0;
    let signals: Vec<SignalRecord> = (0..3)
        .map(|i| {
            let category = format!("agent-{}-{i}", agent.address());
            SignalRecord::new(now - 30 + i, market.segment_type.as_str(), confidence, category)
        })
        .collect();
    let signed = sign_listing(agent, market, units, now - 60, now, encode_payload(&signals), domain);
    let body = SegmentRequest::from_signed(&signed).map_err(|e| e.to_string())?;
    answer(http.post(format!("{base}/v1/segments")).json(&body).send().await).await.map(|_| ())
}

/// Buys 1 to 3 units in a random market with supply; `Ok(false)` when none has any.
async fn buy(
    http: &reqwest::Client,
    base: &str,
    consumer: &LocalSigner,
    nonce: u64,
    domain: &alloy::sol_types::Eip712Domain,
    rng: &mut impl Rng,
) -> Result<bool, String> {
    let markets = answer(http.get(format!("{base}/v1/markets")).send().await).await?;
    let open: Vec<&Value> = markets
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["quote"]["halted"].is_null() && m["supply_units"].as_u64().unwrap_or(0) >= 3)
        .collect();
    let Some(market) = open.choose(rng) else { return Ok(false) };
    let key: MarketKey = market["market"].as_str().and_then(|k| k.parse().ok()).ok_or("a market key")?;
    let ask: u128 = market["quote"]["ask"].as_str().and_then(|a| a.parse().ok()).ok_or("an ask")?;
    let deadline = now_ms() / 1_000 + 60;
    let signed = sign_order_for(consumer, &key, rng.random_range(1..=3), ask + ask / 20, nonce, deadline, domain);
    let body = OrderRequest::from_signed(&signed, &key);
    answer(http.post(format!("{base}/v1/orders")).json(&body).send().await).await.map(|_| true)
}

/// The JSON of a successful answer, or the error code of a refusal.
async fn answer(sent: reqwest::Result<reqwest::Response>) -> Result<Value, String> {
    let response = sent.map_err(|_| "unreachable".to_owned())?;
    let ok = response.status().is_success();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if ok { Ok(body) } else { Err(body["code"].as_str().unwrap_or("unknown").to_owned()) }
}

async fn top_up(devnet: &Devnet, client: &pat_chain::SettlementClient, consumers: &[LocalSigner]) {
    for c in consumers {
        let low = client.escrow_of(c.address()).await.is_ok_and(|e| e < U256::from(ESCROW_LOW * ONE_PAT));
        if low && let Err(e) = devnet.fund_consumer(c, U256::from(TOP_UP * ONE_PAT)).await {
            eprintln!("simulate: topping up {}: {e}", c.address());
        }
    }
}
