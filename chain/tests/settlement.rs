//! End-to-end settlement against anvil: fills made and signed by the engine's own code, settled
//! through the client, checked to the base unit on chain. Every test starts its own anvil.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use pat_chain::bindings::DataMarketplace::{self, DataMarketplaceErrors};
use pat_chain::bindings::{contract_fill, settle_batch_call};
use pat_chain::devnet::{DEVNET_ETH, Devnet, confirm};
use pat_chain::{BatchTree, ChainConfig, ChainError, FillOutcome, RejectReason, Revert, SettlementClient};
use pat_engine::eip712::{Order, SegmentSubmission};
use pat_engine::testing::{self, key, signer};
use pat_engine::{Exchange, Fill, MarketKey, signing};

const PAT: u128 = 1_000_000_000_000_000_000;

fn market_key() -> MarketKey {
    "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap()
}

/// The engine, configured for the deployed marketplace, at the chain's clock.
struct Engine {
    exchange: Exchange,
    now_s: u64,
}

impl Engine {
    async fn new(devnet: &Devnet) -> Self {
        let mut cfg = testing::config();
        cfg.chain_id = devnet.node.chain_id();
        cfg.marketplace = devnet.deployment.marketplace;
        Self { exchange: Exchange::new(Arc::new(cfg)), now_s: devnet.timestamp().await.unwrap() }
    }

    fn now_ms(&self) -> u64 {
        self.now_s * 1000
    }

    /// Provider `key` lists `units` units in [`market_key`], signed with the engine's signing code.
    fn list(&mut self, provider: &[u8; 32], units: u32, salt: u64) {
        let payload = testing::payload_salted(3, salt);
        let submission = SegmentSubmission {
            provider: signer(provider).address(),
            segmentType: "PURCHASE_INTENT".into(),
            window: "7D".into(),
            confidenceBps: 8000,
            windowStart: self.now_s - 3_600,
            createdAt: self.now_s,
            units,
            payloadHash: keccak256(&payload),
        };
        let signed =
            signing::sign_segment(&signer(provider), submission, payload, self.exchange.state.catalogue().domain());
        let now = self.now_ms();
        self.exchange.state.submit_segment(&signed, now).unwrap();
        self.exchange.tick(self.now_ms(), &mut Vec::new());
    }

    /// Consumer `key` buys `qty` units at the current ask.
    fn buy(&mut self, consumer: &[u8; 32], qty: u64, nonce: u64) -> Fill {
        let id = self.exchange.state.catalogue().by_key(&market_key()).unwrap();
        let order = Order {
            consumer: signer(consumer).address(),
            market: market_key().id(),
            qty: U256::from(qty),
            maxPrice: U256::from(self.exchange.quote(id).ask),
            nonce: U256::from(nonce),
            deadline: U256::from(self.now_s + 600),
        };
        let signed = signing::sign_order(&signer(consumer), order, self.exchange.state.catalogue().domain());
        self.exchange.submit_order(signed, self.now_ms()).unwrap().0
    }
}

/// Every balance the tests look at, read from the chain.
#[derive(Debug, PartialEq, Eq)]
struct Balances {
    escrow: Vec<U256>,
    earnings: Vec<U256>,
    broker: U256,
    held_by_marketplace: U256,
}

async fn balances(client: &SettlementClient, consumers: &[Address], providers: &[Address]) -> Balances {
    let mut escrow = Vec::new();
    for c in consumers {
        escrow.push(client.escrow_of(*c).await.unwrap());
    }
    let mut earnings = Vec::new();
    for p in providers {
        earnings.push(client.earnings_of(*p).await.unwrap());
    }
    Balances {
        escrow,
        earnings,
        broker: client.broker_earnings().await.unwrap(),
        held_by_marketplace: client.pat_balance_of(client.marketplace()).await.unwrap(),
    }
}

fn outcomes(report: &pat_chain::BatchReport) -> Vec<FillOutcome> {
    report.fills.iter().map(|f| f.outcome).collect()
}

const PROVIDERS: [[u8; 32]; 3] = [key(10), key(11), key(12)];
const CONSUMERS: [[u8; 32]; 5] = [key(100), key(101), key(102), key(103), key(104)];

#[tokio::test]
async fn a_mixed_batch_settles_to_the_base_unit_and_its_replay_changes_nothing() {
    let devnet = Devnet::start().await.unwrap();
    let client = devnet.client().await.unwrap();
    let mut engine = Engine::new(&devnet).await;
    // Two segments of 5 units per provider: a fill takes one unit of each segment it draws.
    for (i, p) in PROVIDERS.iter().enumerate() {
        engine.list(p, 5, 10 * i as u64);
        engine.list(p, 5, 10 * i as u64 + 1);
    }
    let deposit = U256::from(100 * PAT);
    // Consumers 0..3 deposit with a permit; consumer 3 has no escrow at all.
    for c in [&CONSUMERS[0], &CONSUMERS[1], &CONSUMERS[2], &CONSUMERS[4]] {
        devnet.fund_consumer(&signer(c), deposit).await.unwrap();
    }
    let consumers: Vec<Address> = CONSUMERS.iter().map(|c| signer(c).address()).collect();
    let providers: Vec<Address> = PROVIDERS.iter().map(|p| signer(p).address()).collect();
    assert_eq!(client.escrow_of(consumers[0]).await.unwrap(), deposit, "the permit deposit credited escrow");
    let before = balances(&client, &consumers, &providers).await;

    let good_a = engine.buy(&CONSUMERS[0], 3, 1);
    let good_b = engine.buy(&CONSUMERS[1], 2, 1);
    let mut tampered = engine.buy(&CONSUMERS[2], 4, 1);
    tampered.signature[5] ^= 0x01;
    let unfunded = engine.buy(&CONSUMERS[3], 1, 1);
    let mut late = engine.buy(&CONSUMERS[4], 1, 1);
    late.accepted_at_ms = (engine.now_s + 601) * 1000;
    let batch = vec![good_a.clone(), good_b.clone(), tampered, unfunded, late];

    // The client packs exactly as the contract's own encoder does.
    let reader = DataMarketplace::new(devnet.deployment.marketplace, client.provider());
    let signatures = batch.iter().map(|f| Bytes::copy_from_slice(&f.signature)).collect();
    let encoded = reader.encodeBatch(batch.iter().map(contract_fill).collect(), signatures).call().await.unwrap();
    assert_eq!(encoded, settle_batch_call(&batch).batch);

    let report = client.settle_batch(&batch).await.unwrap();
    assert_eq!(
        outcomes(&report),
        vec![
            FillOutcome::Settled,
            FillOutcome::Settled,
            FillOutcome::Rejected(RejectReason::BadSignature),
            FillOutcome::Rejected(RejectReason::InsufficientEscrow),
            FillOutcome::Rejected(RejectReason::Expired),
        ]
    );
    assert_eq!(
        report.fills.iter().map(|f| f.fill_id).collect::<Vec<_>>(),
        batch.iter().map(|f| f.fill_id).collect::<Vec<_>>()
    );

    // The providers' credits are committed in the batch's root: rebuilt from the fills sent,
    // the tree reproduces it; anyone may claim them (here the owner, for everyone).
    let commitment = report.batch.expect("two fills settled");
    let tree = BatchTree::build(commitment, &batch, &report.fills).unwrap();
    assert_eq!(client.unclaimed_credits().await.unwrap(), commitment.credited);
    assert_eq!(balances(&client, &consumers, &providers).await.earnings, before.earnings, "nothing claimed yet");
    let access = tree.access();
    assert_eq!(access.len(), 2, "one access right per settled fill");
    assert_eq!((access[0].consumer, access[0].market, access[0].qty), (consumers[0], market_key().id(), U256::from(3)));
    assert!(client.verify_access(commitment.batch_id, &access[0]).await.unwrap(), "access proved on chain");
    let owner_market = DataMarketplace::new(devnet.deployment.marketplace, &devnet.owner_provider);
    confirm(&devnet.owner_provider, owner_market.claimCredits(tree.claims()).send().await.unwrap()).await.unwrap();
    assert_eq!(client.unclaimed_credits().await.unwrap(), U256::ZERO);

    // Every balance, to the base unit, from the engine's own numbers.
    let after = balances(&client, &consumers, &providers).await;
    let debit = |f: &Fill| U256::from(f.ask_paid);
    assert_eq!(after.escrow[0], deposit - debit(&good_a));
    assert_eq!(after.escrow[1], deposit - debit(&good_b));
    assert_eq!(after.escrow[2..], before.escrow[2..], "rejected fills debit nothing");
    for (i, p) in providers.iter().enumerate() {
        let credit: u128 = [&good_a, &good_b]
            .iter()
            .flat_map(|f| f.provider_credits().into_iter().map(move |c| (c.0, u128::from(c.1) * f.bid)))
            .filter(|(who, _)| who == p)
            .map(|(_, amount)| amount)
            .sum();
        assert_eq!(after.earnings[i], U256::from(credit), "provider {i} earns its units times the bid");
    }
    let spread = U256::from(good_a.broker_spread + good_b.broker_spread);
    assert_eq!(after.broker, spread);
    let debits: U256 = before.escrow.iter().zip(&after.escrow).map(|(b, a)| b - a).sum();
    let credits: U256 = after.earnings.iter().sum();
    assert_eq!(debits, credits + after.broker, "consumer debits = provider credits + broker spread");
    assert_eq!(after.held_by_marketplace, before.held_by_marketplace, "settlement moves no token");
    assert_eq!(after.held_by_marketplace, after.escrow.iter().sum::<U256>() + credits + after.broker);
    assert_eq!(client.settled_fills(&batch).await.unwrap(), [true, true, false, false, false]);

    // The engine books the chain's decisions and keeps its invariants.
    for (fill, result) in batch.iter().zip(&report.fills) {
        let booked = match result.outcome {
            FillOutcome::Settled => {
                let now = engine.now_ms();
                engine.exchange.state.settle(&fill.fill_id, now)
            }
            FillOutcome::Rejected(reason) => {
                let now = engine.now_ms();
                engine.exchange.state.fail(&fill.fill_id, reason.name(), now)
            }
            FillOutcome::AlreadySettled => unreachable!("a first submission"),
        };
        booked.unwrap();
    }
    engine.exchange.state.check_invariants();
    assert_eq!(U256::from(engine.exchange.state.registry().ledger().broker_revenue), after.broker);

    // The same batch again: the settled fills' nonces are used, the others fail as before;
    // nothing moves, and no batch is recorded.
    let replay = client.settle_batch(&batch).await.unwrap();
    assert_eq!(replay.batch, None);
    assert_eq!(
        outcomes(&replay),
        vec![
            FillOutcome::Rejected(RejectReason::NonceUsed),
            FillOutcome::Rejected(RejectReason::NonceUsed),
            FillOutcome::Rejected(RejectReason::BadSignature),
            FillOutcome::Rejected(RejectReason::InsufficientEscrow),
            FillOutcome::Rejected(RejectReason::Expired),
        ]
    );
    assert_eq!(balances(&client, &consumers, &providers).await, after);

    // A retry asks noncesUsed first: the settled fills stay out of its transaction.
    let retry = client.resubmit(&batch, None).await.unwrap();
    assert_eq!(outcomes(&retry)[..2], [FillOutcome::AlreadySettled, FillOutcome::AlreadySettled]);
    assert_eq!(outcomes(&retry)[2..], outcomes(&replay)[2..]);
    assert_eq!(balances(&client, &consumers, &providers).await, after);

    // Providers and the broker withdraw: the PAT arrives, the balances go to zero.
    // The draw is seeded by the fill ids, which depend on the chain's clock: take a seller.
    let seller = (0..PROVIDERS.len()).max_by_key(|&i| after.earnings[i]).unwrap();
    let provider_signer = signer(&PROVIDERS[seller]);
    let earned = after.earnings[seller];
    assert!(earned > U256::ZERO, "5 units sold among 3 providers");
    devnet.set_eth(provider_signer.address(), U256::from(DEVNET_ETH)).await.unwrap();
    let as_provider = devnet.provider_for(&provider_signer);
    let market = DataMarketplace::new(devnet.deployment.marketplace, &as_provider);
    confirm(&as_provider, market.withdrawEarnings().send().await.unwrap()).await.unwrap();
    assert_eq!(client.pat_balance_of(provider_signer.address()).await.unwrap(), earned);
    assert_eq!(client.earnings_of(provider_signer.address()).await.unwrap(), U256::ZERO);
    let market = DataMarketplace::new(devnet.deployment.marketplace, &devnet.owner_provider);
    confirm(&devnet.owner_provider, market.withdrawBrokerEarnings().send().await.unwrap()).await.unwrap();
    assert_eq!(client.pat_balance_of(devnet.broker_wallet).await.unwrap(), spread);
    assert_eq!(client.broker_earnings().await.unwrap(), U256::ZERO);
    assert_eq!(client.pat_balance_of(client.marketplace()).await.unwrap(), after.held_by_marketplace - earned - spread);
}

/// A fill of one unit for each of `n` funded consumers.
async fn funded_fills(devnet: &Devnet, n: usize) -> Vec<Fill> {
    let mut engine = Engine::new(devnet).await;
    engine.list(&PROVIDERS[0], 100, 0);
    let mut fills = Vec::new();
    for c in &CONSUMERS[..n] {
        devnet.fund_consumer(&signer(c), U256::from(10 * PAT)).await.unwrap();
        fills.push(engine.buy(c, 1, 7));
    }
    fills
}

#[tokio::test]
async fn a_paused_marketplace_or_a_caller_not_the_broker_makes_the_batch_revert() {
    let devnet = Devnet::start().await.unwrap();
    let client = devnet.client().await.unwrap();
    let fills = funded_fills(&devnet, 2).await;
    let market = DataMarketplace::new(devnet.deployment.marketplace, &devnet.owner_provider);
    confirm(&devnet.owner_provider, market.setPaused(true).send().await.unwrap()).await.unwrap();
    assert!(client.paused().await.unwrap());
    let nonce = devnet.owner_provider.get_transaction_count(client.broker()).await.unwrap();
    match client.settle_batch(&fills).await {
        Err(ChainError::Reverted(Revert::Marketplace(DataMarketplaceErrors::MarketPaused(_)))) => {}
        other => panic!("expected the MarketPaused revert, got {other:?}"),
    }
    let err = client.settle_batch(&fills).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("MarketPaused"), "{err}");
    assert_eq!(devnet.owner_provider.get_transaction_count(client.broker()).await.unwrap(), nonce, "nothing was sent");
    assert_eq!(client.settled_fills(&fills[..1]).await.unwrap(), [false]);

    confirm(&devnet.owner_provider, market.setPaused(false).send().await.unwrap()).await.unwrap();
    let stranger = devnet.node.signer(3);
    let impostor = SettlementClient::connect(devnet.chain_config(), stranger.clone()).await.unwrap();
    match impostor.settle_batch(&fills).await {
        Err(ChainError::Reverted(Revert::Marketplace(DataMarketplaceErrors::NotBroker(e)))) => {
            assert_eq!(e.caller, stranger.address())
        }
        other => panic!("expected the NotBroker revert, got {other:?}"),
    }
    assert!(matches!(client.settle_batch(&[]).await, Err(ChainError::BatchSize(0))));
    let report = client.settle_batch(&fills).await.unwrap();
    assert_eq!(report.settled(), 2);
    assert_eq!(client.broker_margin_bps().await.unwrap(), pat_chain::devnet::DEVNET_MARGIN_BPS);
    assert_eq!(client.pending_withdrawal_of(fills[0].consumer).await.unwrap(), (U256::ZERO, 0));
}

#[tokio::test]
async fn a_node_of_another_chain_or_without_the_contract_is_refused() {
    let node = pat_chain::anvil::AnvilNode::start_with_args(["--chain-id", "324"]).unwrap();
    let config = ChainConfig::new(node.url(), 31_337, Address::repeat_byte(0x42));
    match SettlementClient::connect(config.clone(), node.signer(0)).await {
        Err(ChainError::ChainIdMismatch { expected: 31_337, actual: 324 }) => {}
        other => panic!("expected a chain id mismatch, got {other:?}"),
    }
    let config = ChainConfig { chain_id: 324, ..config };
    assert!(matches!(
        SettlementClient::connect(config, node.signer(0)).await,
        Err(ChainError::NoContract(a)) if a == Address::repeat_byte(0x42)
    ));
}

#[tokio::test]
async fn a_batch_short_of_its_confirmations_is_resumed_from_its_receipt_not_resent() {
    let devnet = Devnet::start().await.unwrap();
    let config = ChainConfig {
        confirmations: 2,
        receipt_timeout: Duration::from_millis(600),
        poll_interval: Duration::from_millis(20),
        ..devnet.chain_config()
    };
    let client = SettlementClient::connect(config, devnet.owner.clone()).await.unwrap();
    let fills = funded_fills(&devnet, 2).await;
    let err = client.settle_batch(&fills).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let submission = err.submission().expect("the transaction is out").clone();
    assert!(matches!(err, ChainError::NotConfirmed { confirmations: 2, .. }));
    let nonce = devnet.owner_provider.get_transaction_count(client.broker()).await.unwrap();
    assert_eq!(nonce, submission.nonce + 1, "mined at depth 1");

    devnet.mine().await.unwrap();
    let report = client.resubmit(&fills, Some(&submission)).await.unwrap();
    assert_eq!(report.tx_hash, Some(submission.tx_hash), "the mined transaction is the answer");
    assert_eq!(outcomes(&report), [FillOutcome::Settled, FillOutcome::Settled]);
    assert_eq!(devnet.owner_provider.get_transaction_count(client.broker()).await.unwrap(), nonce, "nothing resent");

    let again = client.resubmit(&fills, None).await.unwrap();
    assert_eq!((again.tx_hash, outcomes(&again)), (None, vec![FillOutcome::AlreadySettled; 2]));
}

#[tokio::test]
async fn a_stuck_batch_is_replaced_on_its_nonce_and_settles_once() {
    let devnet = Devnet::start().await.unwrap();
    let config = ChainConfig {
        receipt_timeout: Duration::from_millis(400),
        poll_interval: Duration::from_millis(20),
        ..devnet.chain_config()
    };
    let client = SettlementClient::connect(config, devnet.owner.clone()).await.unwrap();
    let fills = funded_fills(&devnet, 3).await;
    let escrow_before = client.escrow_of(fills[0].consumer).await.unwrap();
    devnet.set_automine(false).await.unwrap();
    let stuck = client.settle_batch(&fills).await.unwrap_err().submission().unwrap().clone();

    // Mine once the retry's replacement is in the pool: only one transaction of a nonce can land.
    let miner = mine_after_replacement(&devnet, stuck.nonce, Some(stuck.tx_hash));
    let (report, ()) = tokio::join!(client.resubmit(&fills, Some(&stuck)), miner);
    let report = report.unwrap();
    assert_ne!(report.tx_hash, Some(stuck.tx_hash), "replaced");
    assert_eq!(outcomes(&report), [FillOutcome::Settled; 3]);
    let provider = client.provider();
    assert!(provider.get_transaction_receipt(stuck.tx_hash).await.unwrap().is_none(), "the stuck one never mined");
    let replacement = provider.get_transaction_by_hash(report.tx_hash.unwrap()).await.unwrap().unwrap();
    assert_eq!(alloy::consensus::Transaction::nonce(&replacement), stuck.nonce);
    assert_eq!(
        client.escrow_of(fills[0].consumer).await.unwrap(),
        escrow_before - U256::from(fills[0].ask_paid),
        "debited once"
    );
    assert_eq!(client.settled_fills(&fills).await.unwrap(), [true; 3]);
}

#[tokio::test]
async fn settle_with_retry_is_bounded_and_lands_each_fill_once() {
    let devnet = Devnet::start().await.unwrap();
    let config = ChainConfig {
        receipt_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(20),
        max_attempts: 1,
        ..devnet.chain_config()
    };
    let fills = funded_fills(&devnet, 2).await;
    let nonce = devnet.owner_provider.get_transaction_count(devnet.owner.address()).await.unwrap();
    devnet.set_automine(false).await.unwrap();

    // One attempt allowed: the unmined batch is reported, with the transaction to retry.
    let once = SettlementClient::connect(config.clone(), devnet.owner.clone()).await.unwrap();
    let err = once.settle_with_retry(&fills).await.unwrap_err();
    assert!(matches!(err, ChainError::NotConfirmed { .. }), "{err}");

    // Three attempts, with a block mined once the second has replaced the first. The first
    // client's transaction is
    // still pending, so the block settles the fills with it, and this client's replacement finds
    // them used: an earlier attempt won, and they are reported settled, not rejected.
    let client =
        SettlementClient::connect(ChainConfig { max_attempts: 3, ..config }, devnet.owner.clone()).await.unwrap();
    let escrow = client.escrow_of(fills[0].consumer).await.unwrap();
    let miner = mine_after_replacement(&devnet, nonce + 1, None);
    let (report, ()) = tokio::join!(client.settle_with_retry(&fills), miner);
    let report = report.unwrap();
    assert_eq!(outcomes(&report), [FillOutcome::AlreadySettled; 2]);
    assert_eq!(
        client.escrow_of(fills[0].consumer).await.unwrap(),
        escrow - U256::from(fills[0].ask_paid),
        "debited once"
    );
    let mined = devnet.owner_provider.get_transaction_count(devnet.owner.address()).await.unwrap();
    assert_eq!(mined, nonce + 2, "the first client's transaction and one replacement, nothing more");
}

/// The hash of the broker's transaction of `nonce` waiting in anvil's pool.
async fn pooled(devnet: &Devnet, nonce: u64) -> Option<B256> {
    let pool: serde_json::Value = devnet.owner_provider.raw_request("txpool_content".into(), ()).await.unwrap();
    let (_, txs) = pool["pending"]
        .as_object()?
        .iter()
        .find(|(sender, _)| sender.parse::<Address>().ok() == Some(devnet.owner.address()))?;
    txs.get(nonce.to_string())?["hash"].as_str()?.parse().ok()
}

/// Mines one block as soon as the pooled transaction of `nonce` has been replaced (it differs
/// from `first`, or from the first one seen), or after two seconds, when the test will fail.
async fn mine_after_replacement(devnet: &Devnet, nonce: u64, mut first: Option<B256>) {
    for _ in 0..200 {
        match (first, pooled(devnet, nonce).await) {
            (None, Some(seen)) => first = Some(seen),
            (Some(old), Some(now)) if now != old => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    devnet.mine().await.unwrap();
}

/// Settlement and another sender of the broker's transactions share one
/// [`BrokerSender`]: sent at the same moment, every transaction gets its own
/// nonce, in a row, and all are mined.
#[tokio::test]
async fn settlement_and_other_broker_transactions_share_one_nonce_sequence() {
    use alloy::sol_types::SolCall;
    use pat_chain::bindings::PAT as Token;
    use pat_chain::{BrokerSender, Call, Sender};
    let devnet = Devnet::start().await.unwrap();
    let fills = funded_fills(&devnet, 2).await;
    let sender = BrokerSender::connect(devnet.chain_config(), devnet.owner.clone()).await.unwrap();
    let shared: Arc<dyn Sender> = sender.clone();
    let client =
        SettlementClient::over(devnet.chain_config(), sender.provider().clone(), shared.clone()).await.unwrap();
    let first = devnet.owner_provider.get_transaction_count(client.broker()).await.unwrap();
    // Stand-ins for payouts: approvals of the token, from the broker.
    let approvals: Vec<Call> = (1..=4u8)
        .map(|i| {
            let input = Token::approveCall { spender: Address::repeat_byte(i), value: U256::from(i) }.abi_encode();
            Call { to: client.pat(), input: Bytes::from(input), carries: Vec::new() }
        })
        .collect();
    let settle = client.settle_batch(&fills);
    let others = futures_util::future::join_all(approvals.iter().map(|call| async {
        let submission = shared.send(call, None).await.unwrap();
        shared.wait(&submission).await.unwrap();
        submission.nonce
    }));
    let (report, mut nonces) = tokio::join!(settle, others);
    assert_eq!(report.unwrap().settled(), 2, "the batch settled beside the others");
    let settled_in = devnet.owner_provider.get_transaction_count(client.broker()).await.unwrap();
    assert_eq!(settled_in, first + 5, "five transactions, none lost or replaced");
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "each approval had its own nonce");
    assert!(nonces.iter().all(|n| (first..first + 5).contains(n)), "{nonces:?} within {first}..{}", first + 5);
    for i in 1..=4u8 {
        let token = Token::new(client.pat(), client.provider());
        let allowance = token.allowance(client.broker(), Address::repeat_byte(i)).call().await.unwrap();
        assert_eq!(allowance, U256::from(i));
    }
}
