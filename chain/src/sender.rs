//! [`BrokerSender`]: the one sender of the broker's transactions. Settlement,
//! and the payout and curation actors to come, send through one shared
//! instance, so the broker's account keeps one nonce sequence however many
//! callers it has. It owns nonce assignment (under one lock, from the node's
//! pending count, so a transaction sent elsewhere with the same key is
//! counted too), EIP-1559 fees, local signing, the broadcast, the wait for a
//! receipt to the configured confirmation depth, and the replacement of a
//! stuck transaction (its nonce again, fees at least
//! [`REPLACEMENT_FEE_BUMP_PERCENT`] higher, so at most one of the two is mined).
//!
//! [`Sender`] is the trait the callers hold (`Arc<dyn Sender>`), so that an
//! actor test that does not test the chain can give it an in-process sender.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use alloy::eips::BlockId;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, TxHash};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolInterface;
use alloy::transports::{RpcError, TransportErrorKind};
use tokio::sync::Mutex;

use crate::bindings::DataMarketplace::DataMarketplaceErrors;
use crate::client::{ChainConfig, ChainError, Revert};

/// Gas limit above the estimate: the state may change between estimate and inclusion.
pub const GAS_HEADROOM_PERCENT: u64 = 20;
/// Fee increase of a replacement transaction (nodes demand at least 10%).
pub const REPLACEMENT_FEE_BUMP_PERCENT: u128 = 15;

/// A contract call for the broker to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub to: Address,
    pub input: Bytes,
    /// The ids of what the call carries, in its order (a settlement's fills), kept with its
    /// [`Submission`] for the caller.
    pub carries: Vec<B256>,
}

/// A transaction as broadcast: what a retry needs to replace it or find its receipt. Journal it
/// before waiting, so that a restart can resume instead of sending again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub tx_hash: TxHash,
    pub nonce: u64,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// The ids the [`Call`] carried.
    pub carries: Vec<B256>,
}

/// An answer still to come from the chain.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, ChainError>> + Send + 'a>>;

/// What sends the broker's transactions. Every method is safe to call from many tasks at once:
/// nonces are assigned in the order broadcasts take the sender's lock.
pub trait Sender: Send + Sync + std::fmt::Debug {
    /// The broker's address: every transaction is from it.
    fn broker(&self) -> Address;

    /// Estimates, signs and broadcasts `call`. With `replace`, reuses its nonce with higher fees.
    /// A call that would revert is refused before broadcast ([`ChainError::Reverted`]); a
    /// broadcast whose answer is lost keeps the submission in [`ChainError::Broadcast`], so a
    /// retry checks or replaces it instead of doubling it.
    fn send<'a>(&'a self, call: &'a Call, replace: Option<&'a Submission>) -> Pending<'a, Submission>;

    /// Waits for `submission`'s receipt at the confirmation depth; a receipt that a
    /// reorganisation removes is waited for again. A mined transaction that failed is an error
    /// ([`ChainError::OutOfGas`], or [`ChainError::RevertedOnChain`] with the reason, found by
    /// replaying the call on its block).
    fn wait<'a>(&'a self, submission: &'a Submission) -> Pending<'a, TransactionReceipt>;

    /// The receipt of `tx_hash`, if it is mined.
    fn receipt(&self, tx_hash: TxHash) -> Pending<'_, Option<TransactionReceipt>>;

    /// The broker's transactions mined so far (the next nonce the chain will accept).
    fn mined_nonce(&self) -> Pending<'_, u64>;
}

/// The broker's [`Sender`] over JSON-RPC.
#[derive(Debug)]
pub struct BrokerSender {
    config: ChainConfig,
    provider: DynProvider,
    wallet: EthereumWallet,
    broker: Address,
    nonce_lock: Mutex<()>,
}

impl BrokerSender {
    /// Connects as `broker` and checks that the node serves the configured chain.
    pub async fn connect(config: ChainConfig, broker: PrivateKeySigner) -> Result<Arc<Self>, ChainError> {
        let provider =
            ProviderBuilder::new().disable_recommended_fillers().connect_http(config.rpc_url.clone()).erased();
        let actual = rpc(config.rpc_timeout, "eth_chainId", provider.get_chain_id()).await?;
        if actual != config.chain_id {
            return Err(ChainError::ChainIdMismatch { expected: config.chain_id, actual });
        }
        Ok(Arc::new(Self {
            broker: broker.address(),
            wallet: EthereumWallet::from(broker),
            provider,
            config,
            nonce_lock: Mutex::new(()),
        }))
    }

    /// The node connection, for reads.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    async fn send_call(&self, call: &Call, replace: Option<&Submission>) -> Result<Submission, ChainError> {
        let t = self.config.rpc_timeout;
        let request = TransactionRequest::default()
            .with_from(self.broker)
            .with_to(call.to)
            .with_input(call.input.clone())
            .with_chain_id(self.config.chain_id);
        // Estimated on the latest block, not the pending one: a transaction this one replaces
        // must not count (it would make its effects look done, and the estimate too low).
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
        // Held from the nonce to the broadcast: two callers never take one nonce.
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
        let submission = Submission {
            tx_hash: *envelope.tx_hash(),
            nonce,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority_fee,
            carries: call.carries.clone(),
        };
        let raw = envelope.encoded_2718();
        match rpc(t, "eth_sendRawTransaction", self.provider.send_raw_transaction(&raw)).await {
            Ok(_) => Ok(submission),
            Err(e) => Err(ChainError::Broadcast { submission, source: Box::new(e) }),
        }
    }

    async fn wait_for(&self, submission: &Submission) -> Result<TransactionReceipt, ChainError> {
        let depth = self.config.confirmations.max(1);
        let waited = self.config.receipt_timeout;
        let deadline = tokio::time::Instant::now() + waited;
        // A node that fails to answer a poll is polled again until the deadline: the
        // transaction is out, and only the chain can say what became of it.
        let receipt = loop {
            if let Ok(Some(r)) = self.receipt_of(submission.tx_hash).await
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
        Ok(receipt)
    }

    /// Why a mined transaction reverted: the same call replayed on the state of its block.
    async fn replay_revert(&self, submission: &Submission, block: Option<u64>) -> Revert {
        let Ok(Some(tx)) = self.provider.get_transaction_by_hash(submission.tx_hash).await else {
            return Revert::Other { message: "transaction not found".into(), data: None };
        };
        let mut request = TransactionRequest::default()
            .with_from(self.broker)
            .with_input(alloy::consensus::Transaction::input(&tx).clone());
        if let Some(to) = alloy::consensus::Transaction::to(&tx) {
            request = request.with_to(to);
        }
        let call = self.provider.call(request).block(block.map_or(Default::default(), Into::into));
        match rpc(self.config.rpc_timeout, "eth_call", call).await.map_err(revert_of) {
            Err(ChainError::Reverted(reason)) => reason,
            Err(e) => Revert::Other { message: e.to_string(), data: None },
            Ok(_) => Revert::Other { message: "the call does not revert when replayed".into(), data: None },
        }
    }

    async fn receipt_of(&self, tx_hash: TxHash) -> Result<Option<TransactionReceipt>, ChainError> {
        rpc(self.config.rpc_timeout, "eth_getTransactionReceipt", self.provider.get_transaction_receipt(tx_hash)).await
    }
}

impl Sender for BrokerSender {
    fn broker(&self) -> Address {
        self.broker
    }

    fn send<'a>(&'a self, call: &'a Call, replace: Option<&'a Submission>) -> Pending<'a, Submission> {
        Box::pin(self.send_call(call, replace))
    }

    fn wait<'a>(&'a self, submission: &'a Submission) -> Pending<'a, TransactionReceipt> {
        Box::pin(self.wait_for(submission))
    }

    fn receipt(&self, tx_hash: TxHash) -> Pending<'_, Option<TransactionReceipt>> {
        Box::pin(self.receipt_of(tx_hash))
    }

    fn mined_nonce(&self) -> Pending<'_, u64> {
        let count = self.provider.get_transaction_count(self.broker).latest();
        Box::pin(rpc(self.config.rpc_timeout, "eth_getTransactionCount", count))
    }
}

/// Runs an RPC future with a timeout.
pub(crate) async fn rpc<T>(
    after: Duration,
    what: &'static str,
    fut: impl IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
) -> Result<T, ChainError> {
    match tokio::time::timeout(after, fut.into_future()).await {
        Ok(result) => result.map_err(|source| ChainError::Rpc { what, source }),
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
