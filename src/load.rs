//! `pat-market load`: synthetic traffic against a running engine over HTTP at
//! a target rate, reporting accepted orders per second and latency
//! percentiles. It lists its own segments first (providers it makes up), then
//! pre-signs every order so that signing does not throttle the sender, and
//! keeps at most `--in-flight` requests open. The benchmarks' load generator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::keccak256;
use anyhow::Context;
use clap::Args as ClapArgs;
use pat_engine::MarketKey;
use pat_engine::signing::{LocalSigner, sign_listing, sign_order_for};
use pat_engine::{SignalRecord, encode_payload};
use pat_server::dto::{OrderRequest, SegmentRequest};
use serde_json::Value;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The engine's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The engine's config (for the EIP-712 domain and the catalogue).
    #[arg(long, default_value = "data/devnet.toml")]
    config: PathBuf,
    /// Orders per second to send.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// How long to send, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Most requests open at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Synthetic consumers signing the orders.
    #[arg(long, default_value_t = 16)]
    consumers: u8,
    /// Seed of the synthetic keys (runs with different seeds do not collide).
    #[arg(long, default_value_t = 1)]
    seed: u8,
    /// Deposit this much PAT (decimal) into each synthetic consumer's escrow first, on the
    /// config's chain, and wait until the engine counts it: for an engine that holds orders
    /// to escrow (`pat-market devnet`). Needs `--owner-key`.
    #[arg(long)]
    fund_escrow: Option<String>,
    /// The devnet's token holder (hex key of anvil's dev account 0), for `--fund-escrow`.
    #[arg(long, requires = "fund_escrow")]
    owner_key: Option<String>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn key(seed: u8, role: u8, i: u8) -> anyhow::Result<LocalSigner> {
    LocalSigner::from_bytes(&keccak256([seed, role, i])).context("derive a synthetic key")
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cfg = pat_config::Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(load(args, cfg))
}

/// Deposits `amount` into each consumer's escrow on `cfg`'s chain from the devnet's token
/// holder, then waits until the engine at `url` counts it free.
async fn fund_escrow(
    cfg: &pat_config::Config,
    url: &str,
    owner_key: &str,
    consumers: &[LocalSigner],
    amount: u128,
) -> anyhow::Result<()> {
    let owner: LocalSigner = owner_key.trim().parse().map_err(|_| anyhow::anyhow!("--owner-key is not a hex key"))?;
    let rpc = cfg.chain.rpc_url.parse().context("chain.rpc_url")?;
    let funder = pat_chain::devnet::DevnetFunder::attach(rpc, owner, cfg.engine.marketplace).await?;
    eprintln!("depositing {} PAT into {} consumers' escrow...", pat_engine::money::format_pat(amount), consumers.len());
    for c in consumers {
        funder.fund_consumer(c, alloy_primitives::U256::from(amount)).await?;
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in consumers {
        loop {
            let view: Value =
                http.get(format!("{url}/v1/consumers/{}/escrow", c.address())).send().await?.json().await?;
            if view["free"].as_str().and_then(|f| f.parse::<u128>().ok()).is_some_and(|f| f >= amount) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the engine did not count {}'s deposit: {view}", c.address());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn load(args: &Args, full: pat_config::Config) -> anyhow::Result<ExitCode> {
    let cfg = &full.engine;
    let http = reqwest::Client::new();
    let domain = cfg.domain();
    let keys: Vec<MarketKey> = cfg.market_keys();
    let total = (args.rate * args.seconds) as usize;
    anyhow::ensure!(args.consumers > 0, "--consumers must be at least 1");
    // Supply: a consumer buys a segment once (one unit of it), so every market
    // gets enough segments for each consumer's share of its orders, each with
    // a unit for every consumer, from synthetic providers.
    let per_consumer = (total / keys.len()).div_ceil(usize::from(args.consumers)) + 1;
    let units = u32::from(args.consumers);
    eprintln!("listing {per_consumer} segments in each of {} markets...", keys.len());
    for (i, market) in keys.iter().enumerate() {
        for s in 0..per_consumer {
            let provider = key(args.seed, 1, ((i + s) % 250) as u8)?;
            let now = now_secs();
            let category = format!("load-{}-{i}-{s}", args.seed);
            let payload = encode_payload(&[SignalRecord::new(now, market.segment_type.as_str(), 0.9, category)]);
            let signed = sign_listing(&provider, market, units, now - 60, now, payload, &domain);
            let body = SegmentRequest::from_signed(&signed)?;
            let resp = http.post(format!("{}/v1/segments", args.url)).json(&body).send().await?;
            anyhow::ensure!(resp.status().is_success(), "listing in {market}: {}", resp.text().await?);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quotes: Vec<Value> = http.get(format!("{}/v1/quotes", args.url)).send().await?.json().await?;
    let ask_of = |k: &MarketKey| -> u128 {
        quotes
            .iter()
            .find(|q| q["market"] == k.to_string())
            .and_then(|q| q["ask"].as_str()?.parse().ok())
            .unwrap_or(u128::MAX / 4)
    };
    let consumers: Vec<LocalSigner> =
        (0..args.consumers).map(|i| key(args.seed, 2, i)).collect::<anyhow::Result<_>>()?;
    if let Some(amount) = &args.fund_escrow {
        let amount = pat_engine::money::parse_pat(amount).map_err(|e| anyhow::anyhow!("--fund-escrow: {e}"))?;
        let owner = args.owner_key.as_deref().context("--fund-escrow needs --owner-key")?;
        fund_escrow(&full, &args.url, owner, &consumers, amount).await?;
    }
    eprintln!("signing {total} orders...");
    let deadline = now_secs() + args.seconds + 600;
    let bodies: Vec<Value> = (0..total)
        .map(|n| {
            // Every consumer meets every market alike (16 consumers and 54 markets share a
            // factor: n % 16 with n % 54 would leave each consumer half the markets).
            let market = &keys[n % keys.len()];
            let consumer = &consumers[(n / keys.len()) % consumers.len()];
            let max_price = ask_of(market).saturating_mul(4);
            let nonce = (u64::from(args.seed) << 40) + n as u64;
            let signed = sign_order_for(consumer, market, 1, max_price, nonce, deadline, &domain);
            serde_json::to_value(OrderRequest::from_signed(&signed, market)).expect("an order body serialises")
        })
        .collect();
    eprintln!("sending {} orders/s for {} s", args.rate, args.seconds);
    let gate = Arc::new(tokio::sync::Semaphore::new(args.in_flight));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for (n, body) in bodies.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(n as f64 / args.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = gate.clone().acquire_owned().await?;
        let (http, url) = (http.clone(), format!("{}/v1/orders", args.url));
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = http.post(url).json(&body).send().await;
            let code = match result {
                Ok(r) if r.status().as_u16() == 201 => None,
                Ok(r) => Some(
                    r.json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["code"].as_str().map(str::to_owned))
                        .unwrap_or_default(),
                ),
                Err(e) => Some(format!("transport: {e}")),
            };
            drop(permit);
            (sent.elapsed(), code)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut refused: std::collections::BTreeMap<String, u64> = Default::default();
    for t in tasks {
        let (latency, code) = t.await?;
        match code {
            None => latencies.push(latency),
            Some(c) => *refused.entry(c).or_default() += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "accepted {} of {} orders in {:.2} s: {:.0} accepted/s; latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms; refused {:?}",
        latencies.len(),
        total,
        elapsed,
        latencies.len() as f64 / elapsed,
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(0.999)),
        refused
    );
    Ok(ExitCode::SUCCESS)
}
