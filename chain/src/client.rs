//! [`SettlementClient`]: the broker's connection to the `DataMarketplace`. It submits batches of
//! accepted fills with `settleBatch` (explicit nonce, EIP-1559 fees, signed locally), waits for the
//! receipt to the configured confirmation depth, turns the receipt's events into one outcome per
//! fill, and retries without ever settling a fill twice: a retry first asks `noncesUsed` which
//! fills already went through (a fill id is its order's digest, so its consumer's nonce is the
//! key), and replaces a stuck transaction by reusing its nonce.
//!
//! Every RPC call has a timeout; retries are bounded. The named limits are the `DEFAULT_*`
//! constants (overridable in [`ChainConfig`]) and the fixed `*_PERCENT` policies below.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use alloy::eips::BlockId;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, TxHash, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolInterface};
use alloy::transports::{RpcError, TransportErrorKind};
use pat_engine::Fill;
use thiserror::Error;
use tokio::sync::Mutex;

use crate::bindings::DataMarketplace::{self, DataMarketplaceErrors, DataMarketplaceInstance};
use crate::bindings::{PAT, settle_batch_call};
use crate::merkle::AccessRecord;
use crate::outcome::{
    BatchCommitment, FillOutcome, FillResult, OutcomeError, RejectReason, commitment_from_logs, outcomes_from_logs,
};

/// The contract's `MAX_BATCH`: a larger batch reverts whole.
pub const MAX_BATCH: usize = 1000;
/// Blocks on top of (and including) the receipt's block before a batch counts as final.
pub const DEFAULT_CONFIRMATIONS: u64 = 1;
/// Longest wait for one JSON-RPC answer.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, after broadcast, for the receipt at the confirmation depth.
pub const DEFAULT_RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Time between receipt polls (ZKsync Era makes a block about every second).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Attempts of [`SettlementClient::settle_with_retry`], the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Gas limit above the estimate: the state may change between estimate and inclusion.
pub const GAS_HEADROOM_PERCENT: u64 = 20;
/// Fee increase of a replacement transaction (nodes demand at least 10%).
pub const REPLACEMENT_FEE_BUMP_PERCENT: u128 = 15;

/// Where and how to settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    pub rpc_url: alloy::transports::http::reqwest::Url,
    /// The chain the marketplace lives on; a node serving another chain is refused.
    pub chain_id: u64,
    /// The `DataMarketplace` proxy.
    pub marketplace: Address,
    pub confirmations: u64,
    pub rpc_timeout: Duration,
    pub receipt_timeout: Duration,
    pub poll_interval: Duration,
    pub max_attempts: u32,
}

impl ChainConfig {
    /// A config with the default limits.
    pub fn new(rpc_url: alloy::transports::http::reqwest::Url, chain_id: u64, marketplace: Address) -> Self {
        Self {
            rpc_url,
            chain_id,
            marketplace,
            confirmations: DEFAULT_CONFIRMATIONS,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            receipt_timeout: DEFAULT_RECEIPT_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// Why a call reverted: the marketplace's custom error when the revert data decodes to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    Marketplace(DataMarketplaceErrors),
    /// The node's message and any revert data that did not decode.
    Other {
        message: String,
        data: Option<Bytes>,
    },
}

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Marketplace(e) => write!(f, "{e:?}"),
            Self::Other { message, data: Some(data) } => write!(f, "{message} (data {data})"),
            Self::Other { message, data: None } => f.write_str(message),
        }
    }
}

/// A `settleBatch` transaction as broadcast: what a retry needs to replace it or find its
/// receipt. Journal it before waiting, so a restart can resume with [`SettlementClient::resubmit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub tx_hash: TxHash,
    pub nonce: u64,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// The fills this transaction carries, in its order.
    pub fill_ids: Vec<B256>,
}

/// The final word on a batch: one result per fill, in the order the fills were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// The transaction that settled the batch; `None` when every fill had already settled.
    pub tx_hash: Option<TxHash>,
    pub block_number: Option<u64>,
    pub gas_used: u64,
    pub fills: Vec<FillResult>,
    /// The batch's Merkle commitment (`BatchSettled`), when a fill settled in this transaction:
    /// with the fills, [`crate::BatchTree::build`] gives the providers' claims.
    pub batch: Option<BatchCommitment>,
}

impl BatchReport {
    pub fn settled(&self) -> usize {
        self.fills.iter().filter(|f| f.outcome.is_settled()).count()
    }
}

#[derive(Debug, Error)]
pub enum ChainError {
    #[error("the node serves chain {actual}, but the configured chain is {expected}")]
    ChainIdMismatch { expected: u64, actual: u64 },
    #[error("no contract at the configured marketplace address {0}")]
    NoContract(Address),
    #[error("a batch needs 1 to {MAX_BATCH} fills, got {0}")]
    BatchSize(usize),
    #[error("{what}: {source}")]
    Rpc {
        what: &'static str,
        #[source]
        source: RpcError<TransportErrorKind>,
    },
    #[error("{what}: {source}")]
    Contract {
        what: &'static str,
        #[source]
        source: alloy::contract::Error,
    },
    #[error("{what}: no answer within {after:?}")]
    RpcTimeout { what: &'static str, after: Duration },
    #[error("settleBatch reverts: {0}")]
    Reverted(Revert),
    #[error("settleBatch transaction {tx_hash} reverted on chain: {reason}")]
    RevertedOnChain { tx_hash: TxHash, reason: Revert },
    #[error("settleBatch transaction {tx_hash} ran out of gas (limit {gas_limit})")]
    OutOfGas { tx_hash: TxHash, gas_limit: u64 },
    #[error("transaction {} (nonce {}) not confirmed to depth {confirmations} within {waited:?}", submission.tx_hash, submission.nonce)]
    NotConfirmed { submission: Submission, confirmations: u64, waited: Duration },
    #[error("broadcast of transaction {} (nonce {}): {source}", submission.tx_hash, submission.nonce)]
    Broadcast {
        submission: Submission,
        #[source]
        source: Box<ChainError>,
    },
    #[error("signing the transaction: {0}")]
    Signing(String),
    #[error(transparent)]
    Outcome(#[from] OutcomeError),
}

impl ChainError {
    /// True when trying again (with [`SettlementClient::resubmit`]) may succeed: the node was
    /// unreachable or slow, the transaction did not confirm in time, or it ran out of gas
    /// (state changed after the estimate; a retry estimates again).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Rpc { .. }
                | Self::RpcTimeout { .. }
                | Self::NotConfirmed { .. }
                | Self::Broadcast { .. }
                | Self::OutOfGas { .. }
        )
    }

    /// The transaction a retry should check or replace, when this error left one in flight.
    pub fn submission(&self) -> Option<&Submission> {
        match self {
            Self::NotConfirmed { submission, .. } | Self::Broadcast { submission, .. } => Some(submission),
            _ => None,
        }
    }
}

/// A provider that signs with `signer` and fills nonce, gas, fees and chain id itself: for
/// deployment, governance and tests. It asks the node for the nonce of every transaction (no
/// cache), so it stays right when the same key also sends elsewhere, e.g. through a
/// [`SettlementClient`]. Settlement builds its transactions explicitly instead.
pub fn wallet_provider(rpc_url: alloy::transports::http::reqwest::Url, signer: PrivateKeySigner) -> DynProvider {
    ProviderBuilder::default()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_http(rpc_url)
        .erased()
}

/// The broker's settlement connection. One batch is broadcast at a time per client (the nonce
/// lock); waiting for receipts runs concurrently.
#[derive(Debug)]
pub struct SettlementClient {
    config: ChainConfig,
    provider: DynProvider,
    wallet: EthereumWallet,
    broker: Address,
    marketplace: DataMarketplaceInstance<DynProvider>,
    pat: Address,
    nonce_lock: Mutex<()>,
}

impl SettlementClient {
    /// Connects as `broker` and checks the node's chain id and the marketplace's code.
    pub async fn connect(config: ChainConfig, broker: PrivateKeySigner) -> Result<Self, ChainError> {
        let provider =
            ProviderBuilder::new().disable_recommended_fillers().connect_http(config.rpc_url.clone()).erased();
        let t = config.rpc_timeout;
        let actual = rpc(t, "eth_chainId", provider.get_chain_id()).await?;
        if actual != config.chain_id {
            return Err(ChainError::ChainIdMismatch { expected: config.chain_id, actual });
        }
        let code = rpc(t, "eth_getCode", provider.get_code_at(config.marketplace)).await?;
        if code.is_empty() {
            return Err(ChainError::NoContract(config.marketplace));
        }
        let marketplace = DataMarketplace::new(config.marketplace, provider.clone());
        let pat = contract(t, "pat()", marketplace.pat().call()).await?;
        Ok(Self {
            broker: broker.address(),
            wallet: EthereumWallet::from(broker),
            marketplace,
            pat,
            provider,
            config,
            nonce_lock: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    pub fn broker(&self) -> Address {
        self.broker
    }

    pub fn marketplace(&self) -> Address {
        self.config.marketplace
    }

    /// The PAT token the marketplace holds.
    pub fn pat(&self) -> Address {
        self.pat
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Submits `fills` and waits for the outcome of each.
    pub async fn settle_batch(&self, fills: &[Fill]) -> Result<BatchReport, ChainError> {
        let submission = self.submit(fills, None).await?;
        self.wait(&submission).await
    }

    /// [`Self::settle_batch`], then on a retryable error [`Self::resubmit`], up to
    /// `max_attempts` attempts in all.
    pub async fn settle_with_retry(&self, fills: &[Fill]) -> Result<BatchReport, ChainError> {
        let mut previous: Option<Submission> = None;
        let mut attempt = 1;
        loop {
            let result = match attempt {
                1 => self.settle_batch(fills).await,
                _ => self.resubmit(fills, previous.as_ref()).await,
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.config.max_attempts => {
                    if let Some(s) = e.submission() {
                        previous = Some(s.clone());
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Settles what is left of `fills` after an error, never twice. If `previous` (the last
    /// transaction sent for them) has been mined, its receipt is the answer. Otherwise the fills
    /// whose nonce `noncesUsed` reports used are left out ([`FillOutcome::AlreadySettled`]) and
    /// the rest is sent, replacing `previous` (same nonce, higher fees) while it is still unmined.
    /// A fill the retry finds `NonceUsed` was settled by an earlier attempt that raced the retry
    /// (the engine never accepts two orders with one nonce), and is reported `AlreadySettled` too.
    pub async fn resubmit(&self, fills: &[Fill], previous: Option<&Submission>) -> Result<BatchReport, ChainError> {
        let mined = match previous {
            Some(prev) => self.receipt(prev.tx_hash).await?.is_some_and(|r| r.status()),
            None => false,
        };
        let report = match (previous, mined) {
            (Some(prev), true) => self.wait(prev).await?,
            _ => {
                let settled = self.settled_fills(fills).await?;
                let remaining: Vec<Fill> =
                    fills.iter().zip(&settled).filter(|(_, done)| !**done).map(|(f, _)| f.clone()).collect();
                if remaining.is_empty() {
                    BatchReport { tx_hash: None, block_number: None, gas_used: 0, fills: Vec::new(), batch: None }
                } else {
                    let replace = match previous {
                        Some(prev) if self.mined_nonce().await? <= prev.nonce => Some(prev),
                        _ => None,
                    };
                    let submission = self.submit(&remaining, replace).await?;
                    self.wait(&submission).await?
                }
            }
        };
        self.confirm_outcomes(fills, report).await
    }

    /// Orders `report`'s outcomes as `fills` and resolves every fill the
    /// transaction rejected as `NonceUsed`, or did not carry, by asking the
    /// chain: a used nonce means an earlier transaction settled that very fill
    /// (the engine never accepts two orders with one nonce, and only
    /// `settleBatch` uses nonces), so it is [`FillOutcome::AlreadySettled`],
    /// never a rejection to refund. Any transaction that may repeat fills sent
    /// before (a retry, or fills handed over again after a restart) needs it.
    pub async fn confirm_outcomes(&self, fills: &[Fill], mut report: BatchReport) -> Result<BatchReport, ChainError> {
        let decided: HashMap<B256, FillOutcome> = report.fills.iter().map(|r| (r.fill_id, r.outcome)).collect();
        let mut results = Vec::with_capacity(fills.len());
        for fill in fills {
            let outcome = match decided.get(&fill.fill_id) {
                Some(FillOutcome::Rejected(RejectReason::NonceUsed)) | None => {
                    let call = self.marketplace.isNonceUsed(fill.consumer, fill.nonce);
                    let used = contract(self.config.rpc_timeout, "isNonceUsed", call.call()).await?;
                    match (used, decided.get(&fill.fill_id)) {
                        (true, _) => FillOutcome::AlreadySettled,
                        (false, Some(outcome)) => *outcome,
                        (false, None) => return Err(OutcomeError::Missing(fill.fill_id).into()),
                    }
                }
                Some(outcome) => *outcome,
            };
            results.push(FillResult { fill_id: fill.fill_id, outcome });
        }
        report.fills = results;
        Ok(report)
    }

    /// Signs and broadcasts `settleBatch(fills)`. With `replace`, reuses its nonce with fees at
    /// least [`REPLACEMENT_FEE_BUMP_PERCENT`] higher, so at most one of the two can be mined.
    /// A batch that would revert (paused, not the broker) is refused before broadcast.
    pub async fn submit(&self, fills: &[Fill], replace: Option<&Submission>) -> Result<Submission, ChainError> {
        if fills.is_empty() || fills.len() > MAX_BATCH {
            return Err(ChainError::BatchSize(fills.len()));
        }
        let t = self.config.rpc_timeout;
        let input = Bytes::from(settle_batch_call(fills).abi_encode());
        let request = TransactionRequest::default()
            .with_from(self.broker)
            .with_to(self.config.marketplace)
            .with_input(input)
            .with_chain_id(self.config.chain_id);
        // Estimated on the latest block, not the pending one: a transaction this one replaces
        // must not count (it would make every fill look settled, and the estimate too low).
        let estimate = self.provider.estimate_gas(request.clone()).block(BlockId::latest());
        let estimate = rpc(t, "eth_estimateGas", estimate).await.map_err(revert_of)?;
        let gas_limit = estimate + estimate * GAS_HEADROOM_PERCENT / 100;
        let fees = rpc(t, "eth_feeHistory", self.provider.estimate_eip1559_fees()).await?;
        let (mut max_fee, mut priority_fee) = (fees.max_fee_per_gas, fees.max_priority_fee_per_gas);
        if let Some(prev) = replace {
            let bump = |fee: u128| fee + fee * REPLACEMENT_FEE_BUMP_PERCENT / 100 + 1;
            max_fee = max_fee.max(bump(prev.max_fee_per_gas));
            priority_fee = priority_fee.max(bump(prev.max_priority_fee_per_gas));
        }
        let _guard = self.nonce_lock.lock().await;
        let nonce = match replace {
            Some(prev) => prev.nonce,
            None => {
                rpc(t, "eth_getTransactionCount", self.provider.get_transaction_count(self.broker).pending()).await?
            }
        };
        let envelope = request
            .with_nonce(nonce)
            .with_gas_limit(gas_limit)
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(priority_fee)
            .build(&self.wallet)
            .await
            .map_err(|e| ChainError::Signing(e.to_string()))?;
        let tx_hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        let submission = Submission {
            tx_hash,
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority_fee,
            fill_ids: fills.iter().map(|f| f.fill_id).collect(),
        };
        // The node may have taken the transaction even if its answer is lost: the error keeps
        // the submission so that a retry checks or replaces it instead of doubling it.
        match rpc(t, "eth_sendRawTransaction", self.provider.send_raw_transaction(&raw)).await {
            Ok(_) => Ok(submission),
            Err(e) => Err(ChainError::Broadcast { submission, source: Box::new(e) }),
        }
    }

    /// Waits for `submission`'s receipt at the configured depth and decodes its outcomes. A
    /// receipt that a reorganisation removes is waited for again.
    pub async fn wait(&self, submission: &Submission) -> Result<BatchReport, ChainError> {
        let depth = self.config.confirmations.max(1);
        let waited = self.config.receipt_timeout;
        let deadline = tokio::time::Instant::now() + waited;
        // A node that fails to answer a poll is polled again until the deadline: the
        // transaction is out, and only the chain can say what became of it.
        let receipt = loop {
            if let Ok(Some(r)) = self.receipt(submission.tx_hash).await
                && let Some(block) = r.block_number
                && let Ok(head) =
                    rpc(self.config.rpc_timeout, "eth_blockNumber", self.provider.get_block_number()).await
                && head + 1 >= block + depth
            {
                break r;
            }
            if tokio::time::Instant::now() + self.config.poll_interval > deadline {
                return Err(ChainError::NotConfirmed { submission: submission.clone(), confirmations: depth, waited });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        };
        if !receipt.status() && receipt.gas_used >= submission.gas_limit {
            return Err(ChainError::OutOfGas { tx_hash: submission.tx_hash, gas_limit: submission.gas_limit });
        }
        if !receipt.status() {
            let reason = self.replay_revert(submission, receipt.block_number).await;
            return Err(ChainError::RevertedOnChain { tx_hash: submission.tx_hash, reason });
        }
        let fills = outcomes_from_logs(self.config.marketplace, &submission.fill_ids, receipt.logs())?;
        Ok(BatchReport {
            tx_hash: Some(submission.tx_hash),
            block_number: receipt.block_number,
            gas_used: receipt.gas_used,
            fills,
            batch: commitment_from_logs(self.config.marketplace, receipt.logs()),
        })
    }

    /// Why a mined batch reverted: the same call replayed on the state of its block.
    async fn replay_revert(&self, submission: &Submission, block: Option<u64>) -> Revert {
        let Ok(Some(tx)) = self.provider.get_transaction_by_hash(submission.tx_hash).await else {
            return Revert::Other { message: "transaction not found".into(), data: None };
        };
        let request = TransactionRequest::default()
            .with_from(self.broker)
            .with_to(self.config.marketplace)
            .with_input(alloy::consensus::Transaction::input(&tx).clone());
        let call = self.provider.call(request).block(block.map_or(Default::default(), Into::into));
        match rpc(self.config.rpc_timeout, "eth_call", call).await.map_err(revert_of) {
            Err(ChainError::Reverted(reason)) => reason,
            Err(e) => Revert::Other { message: e.to_string(), data: None },
            Ok(_) => Revert::Other { message: "the call does not revert when replayed".into(), data: None },
        }
    }

    async fn receipt(&self, tx_hash: TxHash) -> Result<Option<TransactionReceipt>, ChainError> {
        rpc(self.config.rpc_timeout, "eth_getTransactionReceipt", self.provider.get_transaction_receipt(tx_hash)).await
    }

    /// The broker's transactions mined so far (the next nonce the chain will accept).
    async fn mined_nonce(&self) -> Result<u64, ChainError> {
        let count = self.provider.get_transaction_count(self.broker).latest();
        rpc(self.config.rpc_timeout, "eth_getTransactionCount", count).await
    }

    /// Which of `fills` have settled: whether each one's (consumer, nonce) is used on chain
    /// (`noncesUsed`, in chunks of [`MAX_BATCH`]).
    pub async fn settled_fills(&self, fills: &[Fill]) -> Result<Vec<bool>, ChainError> {
        let mut settled = Vec::with_capacity(fills.len());
        for chunk in fills.chunks(MAX_BATCH) {
            let consumers = chunk.iter().map(|f| f.consumer).collect();
            let nonces = chunk.iter().map(|f| f.nonce).collect();
            let call = self.marketplace.noncesUsed(consumers, nonces);
            settled.extend(contract(self.config.rpc_timeout, "noncesUsed", call.call()).await?);
        }
        Ok(settled)
    }

    pub async fn escrow_of(&self, consumer: Address) -> Result<U256, ChainError> {
        contract(self.config.rpc_timeout, "escrowOf", self.marketplace.escrowOf(consumer).call()).await
    }

    /// A consumer's requested escrow withdrawal: amount and the unix second it is ready at.
    pub async fn pending_withdrawal_of(&self, consumer: Address) -> Result<(U256, u64), ChainError> {
        let call = self.marketplace.pendingWithdrawalOf(consumer);
        let r = contract(self.config.rpc_timeout, "pendingWithdrawalOf", call.call()).await?;
        Ok((r.amount, r.readyAt))
    }

    /// `provider`'s claimed, withdrawable earnings (unclaimed credits are in batch roots).
    pub async fn earnings_of(&self, provider: Address) -> Result<U256, ChainError> {
        contract(self.config.rpc_timeout, "earningsOf", self.marketplace.earningsOf(provider).call()).await
    }

    pub async fn broker_earnings(&self) -> Result<U256, ChainError> {
        contract(self.config.rpc_timeout, "brokerEarnings", self.marketplace.brokerEarnings().call()).await
    }

    /// Provider credits committed by batch roots and not claimed yet.
    pub async fn unclaimed_credits(&self) -> Result<U256, ChainError> {
        contract(self.config.rpc_timeout, "unclaimedCredits", self.marketplace.unclaimedCredits().call()).await
    }

    /// Whether batch `batch_id` proves `record`'s access right (`verifyAccess`).
    pub async fn verify_access(&self, batch_id: U256, record: &AccessRecord) -> Result<bool, ChainError> {
        let call = self.marketplace.verifyAccess(
            batch_id,
            record.leaf,
            record.fill_id,
            record.consumer,
            record.market,
            record.qty,
            record.proof.clone(),
        );
        contract(self.config.rpc_timeout, "verifyAccess", call.call()).await
    }

    pub async fn paused(&self) -> Result<bool, ChainError> {
        contract(self.config.rpc_timeout, "paused", self.marketplace.paused().call()).await
    }

    /// The on-chain cap on `(ask - bid) / ask`, in basis points.
    pub async fn broker_margin_bps(&self) -> Result<u16, ChainError> {
        contract(self.config.rpc_timeout, "brokerMarginBps", self.marketplace.brokerMarginBps().call()).await
    }

    /// PAT held by `account` (not in the marketplace).
    pub async fn pat_balance_of(&self, account: Address) -> Result<U256, ChainError> {
        let token = PAT::new(self.pat, &self.provider);
        contract(self.config.rpc_timeout, "balanceOf", token.balanceOf(account).call()).await
    }
}

/// Runs an RPC future with a timeout.
async fn rpc<T>(
    after: Duration,
    what: &'static str,
    fut: impl IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
) -> Result<T, ChainError> {
    match tokio::time::timeout(after, fut.into_future()).await {
        Ok(result) => result.map_err(|source| ChainError::Rpc { what, source }),
        Err(_) => Err(ChainError::RpcTimeout { what, after }),
    }
}

/// Runs a contract read with a timeout.
async fn contract<T>(
    after: Duration,
    what: &'static str,
    fut: impl IntoFuture<Output = Result<T, alloy::contract::Error>>,
) -> Result<T, ChainError> {
    match tokio::time::timeout(after, fut.into_future()).await {
        Ok(result) => result.map_err(|source| ChainError::Contract { what, source }),
        Err(_) => Err(ChainError::RpcTimeout { what, after }),
    }
}

/// Turns an RPC error that is an execution revert into [`ChainError::Reverted`], decoding the
/// marketplace's custom error; any other error is returned as it was.
fn revert_of(e: ChainError) -> ChainError {
    let ChainError::Rpc { source, what } = e else { return e };
    match source.as_error_resp() {
        Some(payload) if payload.message.contains("revert") => {
            let data = payload.as_revert_data();
            ChainError::Reverted(match data.as_deref().map(|d| DataMarketplaceErrors::abi_decode(d)) {
                Some(Ok(decoded)) => Revert::Marketplace(decoded),
                _ => Revert::Other { message: payload.message.to_string(), data },
            })
        }
        _ => ChainError::Rpc { what, source },
    }
}
