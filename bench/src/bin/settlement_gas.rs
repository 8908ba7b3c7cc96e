//! Gas of on-chain settlement, on one anvil: `settleBatch` per fill for batches of 1, 10, 100 and
//! 500 fills (distinct consumers, two distinct providers per fill, fills made by the engine),
//! against the naive way measured in the same run: each purchase as its own plain ERC-20
//! transfers (consumer to each provider, consumer to the broker). Then the same with parties who
//! have traded before (steady state). Settlement commits provider credits in a batch Merkle root;
//! the providers' later claims (`claimCredits`) are not part of these numbers. Also settled fills per second through the client, per
//! batch and sustained over several batches.
//!
//! `cargo run --release -p pat-bench --bin settlement_gas`

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, TxHash, U256, keccak256};
use pat_chain::bindings::PAT;
use pat_chain::devnet::{DEVNET_ETH, Devnet};
use pat_chain::{ChainConfig, FillOutcome, SettlementClient};
use pat_engine::eip712::{Order, SegmentSubmission};
use pat_engine::money::ONE_PAT;
use pat_engine::signing::{self, LocalSigner};
use pat_engine::{Exchange, Fill, MarketKey, testing};

type Error = Box<dyn std::error::Error>;

const BATCHES: [usize; 4] = [1, 10, 100, 500];
/// Purchases paid the naive way, and fills per batch of the steady-state round.
const NAIVE: usize = 100;
/// Units per purchase: one from each of two providers.
const QTY: u64 = 2;
const ESCROW: u128 = 1_000 * ONE_PAT;
const SUSTAINED_BATCHES: usize = 5;
const BLOCK_GAS_LIMIT: &str = "200000000";

fn market_key() -> MarketKey {
    "PURCHASE_INTENT|7D|0.70-0.85".parse().expect("a catalogue market")
}

/// A distinct key per (role, index).
fn signer(role: u8, i: usize) -> LocalSigner {
    let mut k = [0u8; 32];
    k[0] = role;
    k[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    LocalSigner::from_bytes(&B256::from(k)).expect("a valid key")
}

const PROVIDER: u8 = 1;
const CONSUMER: u8 = 2;
const NAIVE_PROVIDER: u8 = 3;
const NAIVE_CONSUMER: u8 = 4;

struct Engine {
    exchange: Exchange,
    now_s: u64,
    listed: u64,
}

impl Engine {
    fn new(devnet: &Devnet, now_s: u64) -> Self {
        let mut cfg = testing::config();
        cfg.chain_id = devnet.node.chain_id();
        cfg.marketplace = devnet.deployment.marketplace;
        // Risk limits out of the way: this measures settlement, not exposure control.
        cfg.risk.market_soft = u128::MAX / 8;
        cfg.risk.market_hard = u128::MAX / 4;
        cfg.risk.group_soft = u128::MAX / 8;
        cfg.risk.group_hard = u128::MAX / 4;
        Self { exchange: Exchange::new(Arc::new(cfg)), now_s, listed: 0 }
    }

    /// `provider` lists one unit, so that every qty-2 order draws two distinct providers.
    fn list_one(&mut self, provider: &LocalSigner) {
        self.listed += 1;
        let payload = testing::payload_salted(1, self.listed);
        let submission = SegmentSubmission {
            provider: provider.address(),
            segmentType: "PURCHASE_INTENT".into(),
            window: "7D".into(),
            confidenceBps: 8000,
            windowStart: self.now_s - 3_600,
            createdAt: self.now_s,
            units: 1,
            payloadHash: keccak256(&payload),
        };
        let signed = signing::sign_segment(provider, submission, payload, self.exchange.state.catalogue().domain());
        self.exchange.state.submit_segment(&signed, self.now_s * 1000).expect("a valid submission");
    }

    fn buy(&mut self, consumer: &LocalSigner, nonce: u64) -> Fill {
        let now_ms = self.now_s * 1000;
        self.exchange.tick(now_ms, &mut Vec::new());
        let id = self.exchange.state.catalogue().by_key(&market_key()).expect("listed market");
        let order = Order {
            consumer: consumer.address(),
            market: market_key().id(),
            qty: U256::from(QTY),
            maxPrice: U256::from(self.exchange.quote(id).ask),
            nonce: U256::from(nonce),
            deadline: U256::from(self.now_s + 3_600),
        };
        let signed = signing::sign_order(consumer, order, self.exchange.state.catalogue().domain());
        let (fill, _) = self.exchange.submit_order(signed, now_ms).expect("an executable order");
        assert_eq!(fill.provider_credits().len(), 2, "two providers per fill");
        fill
    }
}

/// Settles `fills` as one batch; returns (gas per fill, fills per second through the client).
async fn settle(client: &SettlementClient, fills: &[Fill]) -> Result<(f64, f64), Error> {
    let started = Instant::now();
    let report = client.settle_batch(fills).await?;
    let secs = started.elapsed().as_secs_f64();
    assert!(report.fills.iter().all(|f| f.outcome == FillOutcome::Settled), "every fill settles: {report:?}");
    Ok((report.gas_used as f64 / fills.len() as f64, fills.len() as f64 / secs))
}

/// Pays each purchase of `fills`' shape the naive way: `payer[i]` transfers to the two
/// providers `payee[2i]`, `payee[2i+1]` and to the broker wallet. Returns gas per purchase.
async fn naive(devnet: &Devnet, fills: &[Fill], payers: &[LocalSigner], payees: &[Address]) -> Result<f64, Error> {
    let mut gas = 0u64;
    for (i, (fill, payer)) in fills.iter().zip(payers).enumerate() {
        let provider = devnet.provider_for(payer);
        let token = PAT::new(devnet.deployment.pat, &provider);
        let credits = fill.provider_credits();
        let legs = [
            (payees[2 * i], credits[0].2),
            (payees[2 * i + 1], credits[1].2),
            (devnet.broker_wallet, fill.broker_spread),
        ];
        for (to, amount) in legs {
            let pending = token.transfer(to, U256::from(amount)).send().await?;
            gas += receipt_gas(&provider, *pending.tx_hash()).await?;
        }
    }
    Ok(gas as f64 / fills.len() as f64)
}

async fn receipt_gas(provider: &alloy::providers::DynProvider, hash: TxHash) -> Result<u64, Error> {
    use alloy::providers::Provider;
    loop {
        if let Some(r) = provider.get_transaction_receipt(hash).await? {
            assert!(r.status(), "transfer {hash} reverted");
            return Ok(r.gas_used);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

struct Row {
    label: String,
    fills: usize,
    gas_per_fill: f64,
    fills_per_sec: f64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // A 500-fill batch needs about 9M gas, within anvil's default 30M block gas limit; the
    // higher limit leaves room for bigger batches of more providers.
    let devnet = Devnet::start_with_args(["--gas-limit", BLOCK_GAS_LIMIT]).await?;
    // Anvil mines on arrival: poll receipts often, so the client's rate is the chain's, not the
    // default poll interval's (which suits ZKsync's one-second blocks).
    let config = ChainConfig { poll_interval: Duration::from_millis(5), ..devnet.chain_config() };
    let client = SettlementClient::connect(config, devnet.owner.clone()).await?;
    let mut engine = Engine::new(&devnet, devnet.timestamp().await?);
    let total: usize = BATCHES.iter().sum();
    eprintln!("funding {} consumers and listing {} units ...", total + NAIVE, 2 * (total + NAIVE));

    // Fresh parties: each batch has its own consumers and providers, who have never traded.
    let mut rows = Vec::new();
    let mut settled: Vec<Vec<Fill>> = Vec::new();
    let mut start = 0;
    for &n in &BATCHES {
        let consumers: Vec<LocalSigner> = (start..start + n).map(|i| signer(CONSUMER, i)).collect();
        for i in start..start + n {
            engine.list_one(&signer(PROVIDER, 2 * i));
            engine.list_one(&signer(PROVIDER, 2 * i + 1));
        }
        for c in &consumers {
            devnet.fund_consumer(c, U256::from(ESCROW)).await?;
        }
        let fills: Vec<Fill> = consumers.iter().map(|c| engine.buy(c, 1)).collect();
        let (gas_per_fill, fills_per_sec) = settle(&client, &fills).await?;
        rows.push(Row { label: format!("batch of {n}, first trade"), fills: n, gas_per_fill, fills_per_sec });
        settled.push(fills);
        start += n;
    }

    // The naive way for NAIVE purchases of the same shape, to fresh providers.
    let naive_payers: Vec<LocalSigner> = (0..NAIVE).map(|i| signer(NAIVE_CONSUMER, i)).collect();
    let naive_payees: Vec<Address> = (0..2 * NAIVE).map(|i| signer(NAIVE_PROVIDER, i).address()).collect();
    for p in &naive_payers {
        devnet.set_eth(p.address(), U256::from(DEVNET_ETH)).await?;
        devnet.give_pat(p.address(), U256::from(ESCROW)).await?;
    }
    // The same amounts per leg as the engine's fills of the 100-batch.
    let shapes = &settled[2];
    let naive_first = naive(&devnet, shapes, &naive_payers, &naive_payees).await?;

    // Steady state: the 100-batch's consumers buy again from the same providers, and the naive
    // payers pay the same payees again (every balance slot already written once).
    let batch_100_start = BATCHES[..2].iter().sum::<usize>();
    for i in batch_100_start..batch_100_start + NAIVE {
        engine.list_one(&signer(PROVIDER, 2 * i));
        engine.list_one(&signer(PROVIDER, 2 * i + 1));
    }
    let again: Vec<Fill> =
        (batch_100_start..batch_100_start + NAIVE).map(|i| engine.buy(&signer(CONSUMER, i), 2)).collect();
    let (gas_per_fill, fills_per_sec) = settle(&client, &again).await?;
    rows.push(Row { label: format!("batch of {NAIVE}, repeat trade"), fills: NAIVE, gas_per_fill, fills_per_sec });
    let naive_again = naive(&devnet, shapes, &naive_payers, &naive_payees).await?;

    // Sustained rate: SUSTAINED_BATCHES batches of NAIVE fresh fills, back to back.
    let first = start;
    let mut batches = Vec::new();
    for b in 0..SUSTAINED_BATCHES {
        let mut fills = Vec::new();
        for i in first + b * NAIVE..first + (b + 1) * NAIVE {
            engine.list_one(&signer(PROVIDER, 2 * i));
            engine.list_one(&signer(PROVIDER, 2 * i + 1));
            let consumer = signer(CONSUMER, i);
            devnet.fund_consumer(&consumer, U256::from(ESCROW)).await?;
            fills.push(engine.buy(&consumer, 1));
        }
        batches.push(fills);
    }
    let started = Instant::now();
    for fills in &batches {
        settle(&client, fills).await?;
    }
    let sustained = (SUSTAINED_BATCHES * NAIVE) as f64 / started.elapsed().as_secs_f64();

    println!("| settlement | fills | gas per purchase | fills/s through the client |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!("| {} | {} | {:.0} | {:.0} |", r.label, r.fills, r.gas_per_fill, r.fills_per_sec);
    }
    println!("| naive ERC-20 transfers (3 per purchase), first trade | {NAIVE} | {naive_first:.0} | |");
    println!("| naive ERC-20 transfers (3 per purchase), repeat trade | {NAIVE} | {naive_again:.0} | |");
    let batch_100 = rows.iter().find(|r| r.fills == 100).expect("a 100-batch row").gas_per_fill;
    let batch_100_again = rows.last().expect("the repeat row").gas_per_fill;
    println!();
    println!("sustained: {sustained:.0} fills/s ({SUSTAINED_BATCHES} batches of {NAIVE}, back to back)");
    println!("ratio batch/naive at batch 100, first trade: {:.3}", batch_100 / naive_first);
    println!("ratio batch/naive at batch 100, repeat trade: {:.3}", batch_100_again / naive_again);
    Ok(())
}
