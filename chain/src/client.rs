//! [`SettlementClient`]: the broker's connection to the `DataMarketplace`. It submits batches of
//! accepted fills with `settleBatch` through the broker's one [`Sender`] (which owns nonces,
//! fees, signing, receipts and replacement), turns the receipt's events into one outcome per
//! fill, and retries without ever settling a fill twice: a retry first asks `noncesUsed` which
//! fills already went through (a fill id is its order's digest, so its consumer's nonce is the
//! key), and replaces a stuck transaction by reusing its nonce.
//!
//! Every RPC call has a timeout; retries are bounded. The named limits are the `DEFAULT_*`
//! constants (overridable in [`ChainConfig`]) and the fixed `*_PERCENT` policies below.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, TxHash, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::{RpcError, TransportErrorKind};
use pat_engine::Fill;
use thiserror::Error;

use crate::bindings::DataMarketplace::{self, DataMarketplaceErrors, DataMarketplaceInstance};
use crate::bindings::{PAT, settle_batch_call};
use crate::merkle::AccessRecord;
use crate::outcome::{
    BatchCommitment, FillOutcome, FillResult, OutcomeError, RejectReason, commitment_from_logs, outcomes_from_logs,
};
use crate::sender::{BrokerSender, Call, Sender, Submission, rpc};

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
    #[error("{what} returned {value}, out of the range the contract keeps")]
    OutOfRange { what: &'static str, value: U256 },
    #[error("the transaction would revert: {0}")]
    Reverted(Revert),
    #[error("transaction {tx_hash} reverted on chain: {reason}")]
    RevertedOnChain { tx_hash: TxHash, reason: Revert },
    #[error("transaction {tx_hash} ran out of gas (limit {gas_limit})")]
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

/// The broker's settlement connection. Its transactions go through the broker's one
/// [`Sender`], shared with every other sender of the broker's transactions; reads go to the
/// node directly.
#[derive(Debug)]
pub struct SettlementClient {
    config: ChainConfig,
    provider: DynProvider,
    sender: Arc<dyn Sender>,
    marketplace: DataMarketplaceInstance<DynProvider>,
    pat: Address,
}

impl SettlementClient {
    /// Connects as `broker` with a sender of its own, and checks the node's chain id and the
    /// marketplace's code.
    pub async fn connect(config: ChainConfig, broker: PrivateKeySigner) -> Result<Self, ChainError> {
        let sender = BrokerSender::connect(config.clone(), broker).await?;
        let provider = sender.provider().clone();
        Self::over(config, provider, sender).await
    }

    /// Settles through `sender` (the broker's, shared with its other transactions) and reads
    /// through `provider`; checks the marketplace's code.
    pub async fn over(config: ChainConfig, provider: DynProvider, sender: Arc<dyn Sender>) -> Result<Self, ChainError> {
        let t = config.rpc_timeout;
        let code = rpc(t, "eth_getCode", provider.get_code_at(config.marketplace)).await?;
        if code.is_empty() {
            return Err(ChainError::NoContract(config.marketplace));
        }
        let marketplace = DataMarketplace::new(config.marketplace, provider.clone());
        let pat = contract(t, "pat()", marketplace.pat().call()).await?;
        Ok(Self { marketplace, pat, provider, sender, config })
    }

    /// The broker's transaction sender, for the broker's other transactions.
    pub fn sender(&self) -> &Arc<dyn Sender> {
        &self.sender
    }

    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    pub fn broker(&self) -> Address {
        self.sender.broker()
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
            Some(prev) => self.sender.receipt(prev.tx_hash).await?.is_some_and(|r| r.status()),
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
                        Some(prev) if self.sender.mined_nonce().await? <= prev.nonce => Some(prev),
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

    /// Signs and broadcasts `settleBatch(fills)`. With `replace`, reuses its nonce with higher
    /// fees, so at most one of the two can be mined. A batch that would revert (paused, not the
    /// broker) is refused before broadcast.
    pub async fn submit(&self, fills: &[Fill], replace: Option<&Submission>) -> Result<Submission, ChainError> {
        if fills.is_empty() || fills.len() > MAX_BATCH {
            return Err(ChainError::BatchSize(fills.len()));
        }
        let call = Call {
            to: self.config.marketplace,
            input: Bytes::from(settle_batch_call(fills).abi_encode()),
            carries: fills.iter().map(|f| f.fill_id).collect(),
        };
        self.sender.send(&call, replace).await
    }

    /// Waits for `submission`'s receipt at the configured depth and decodes the outcome of each
    /// fill it carries.
    pub async fn wait(&self, submission: &Submission) -> Result<BatchReport, ChainError> {
        let receipt = self.sender.wait(submission).await?;
        let fills = outcomes_from_logs(self.config.marketplace, &submission.carries, receipt.logs())?;
        Ok(BatchReport {
            tx_hash: Some(submission.tx_hash),
            block_number: receipt.block_number,
            gas_used: receipt.gas_used,
            fills,
            batch: commitment_from_logs(self.config.marketplace, receipt.logs()),
        })
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

/// Runs a contract read with a timeout.
pub(crate) async fn contract<T>(
    after: Duration,
    what: &'static str,
    fut: impl IntoFuture<Output = Result<T, alloy::contract::Error>>,
) -> Result<T, ChainError> {
    match tokio::time::timeout(after, fut.into_future()).await {
        Ok(result) => result.map_err(|source| ChainError::Contract { what, source }),
        Err(_) => Err(ChainError::RpcTimeout { what, after }),
    }
}
