//! Settlement end to end on anvil: the engine accepts fills, the clearing
//! actor settles them with the real contracts, and the fills' statuses and
//! the chain's balances agree to the base unit; a consumer without escrow is
//! rejected by the chain and the engine gets its units back. A crashed
//! clearing actor is replaced and settlement goes on.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{U256, keccak256};
use pat_actors::clearing::ClearingSettings;
use pat_actors::clock::system_clock;
use pat_actors::messages::GetFill;
use pat_actors::services::{Services, Settlement};
use pat_actors::supervisor::Crash;
use pat_actors::{Engine, EngineSettings};
use pat_chain::devnet::Devnet;
use pat_engine::order::verify_order;
use pat_engine::segment::verify_submission;
use pat_engine::signing::{LocalSigner, sign_listing, sign_order_for};
use pat_engine::{EngineConfig, FillStatus, MarketKey, testing};
use pat_engine::{SignalRecord, encode_payload};

fn signer(n: u8) -> LocalSigner {
    LocalSigner::from_bytes(&keccak256([n, 7])).unwrap()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn market() -> MarketKey {
    "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap()
}

async fn list(engine: &Engine, cfg: &EngineConfig, provider: u8) {
    let now = now_secs();
    let payload = encode_payload(&[SignalRecord::new(now, "PURCHASE_INTENT", 0.8, format!("p{provider}"))]);
    let signed = sign_listing(&signer(provider), &market(), 5, now - 60, now, payload, &cfg.domain());
    engine.markets().submit_segment(verify_submission(signed, &cfg.domain()).unwrap()).await.unwrap().unwrap();
}

async fn ask(engine: &Engine) -> u128 {
    for _ in 0..100 {
        let markets = engine.markets().views().await.unwrap();
        let m = markets.iter().find(|m| m.key == market()).unwrap();
        if m.quote.halted.is_none() && m.supply_units > 0 {
            return m.quote.ask;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no quote");
}

async fn buy(engine: &Engine, cfg: &EngineConfig, consumer: &LocalSigner, ask: u128, nonce: u64) -> pat_engine::Fill {
    let signed = sign_order_for(consumer, &market(), 2, ask, nonce, now_secs() + 120, &cfg.domain());
    let verified = verify_order(signed, &cfg.domain()).unwrap();
    engine.markets().place_order(verified).await.unwrap().unwrap()
}

async fn status(engine: &Engine, fill: &pat_engine::Fill) -> FillStatus {
    for _ in 0..200 {
        let s = engine.send(GetFill(fill.fill_id)).await.unwrap().unwrap().status;
        if matches!(s, FillStatus::Settled { .. } | FillStatus::Failed { .. }) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fill {} never settled", fill.fill_id);
}

#[actix_rt::test]
async fn fills_settle_on_chain_and_rejections_return_units() {
    let devnet = Devnet::start().await.unwrap();
    let mut cfg = testing::config();
    cfg.chain_id = devnet.node.chain_id();
    cfg.marketplace = devnet.deployment.marketplace;
    cfg.broker_margin_cap_bps = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let settings = ClearingSettings { batch_every: Duration::from_millis(100), ..ClearingSettings::default() };
    let settlement = Settlement { client: devnet.client().await.unwrap(), settings };
    let services =
        Services::start(EngineSettings::new(tmp.path()), Arc::new(cfg.clone()), system_clock(), None, Some(settlement))
            .unwrap();
    let (engine, clearing) = (services.engine.clone(), services.clearing().unwrap().clone());
    // Four segments: the rich consumer buys two, then two others (never one it holds).
    for p in 0..4 {
        list(&engine, &cfg, p).await;
    }
    let a = ask(&engine).await;
    let (rich, poor) = (signer(50), signer(51));
    let escrow = U256::from(100u128 * 10u128.pow(18));
    devnet.fund_consumer(&rich, escrow).await.unwrap();
    let client = devnet.client().await.unwrap();
    let broker_before = client.broker_earnings().await.unwrap();
    let paid = buy(&engine, &cfg, &rich, a, 1).await;
    let unpaid = buy(&engine, &cfg, &poor, a, 1).await;

    assert!(matches!(status(&engine, &paid).await, FillStatus::Settled { tx_hash: Some(_), .. }));
    assert_eq!(status(&engine, &unpaid).await, FillStatus::Failed { reason: "insufficient_escrow".into() });
    // To the base unit: escrow debited by the ask paid, the broker credited the spread,
    // the providers' credits committed for claiming.
    assert_eq!(client.escrow_of(rich.address()).await.unwrap(), escrow - U256::from(paid.ask_paid));
    assert_eq!(client.broker_earnings().await.unwrap() - broker_before, U256::from(paid.broker_spread));
    assert_eq!(client.unclaimed_credits().await.unwrap(), U256::from(paid.bid_credited));
    // The rejected fill's units are for sale again.
    let markets = engine.markets().views().await.unwrap();
    let m = markets.iter().find(|m| m.key == market()).unwrap();
    assert_eq!((m.supply_units, m.counters.sold, m.exposure), (18, 2, 0));

    // A panic in the clearing actor: its successor settles the next fill.
    assert!(clearing.send(Crash).await.is_err(), "the panic drops the request");
    let next = buy(&engine, &cfg, &rich, a, 2).await;
    assert!(matches!(status(&engine, &next).await, FillStatus::Settled { tx_hash: Some(_), .. }));
    assert_eq!(client.escrow_of(rich.address()).await.unwrap(), escrow - U256::from(paid.ask_paid + next.ask_paid));
    services.stop(false).await.unwrap();
}
