//! [`EscrowReader`]: consumers' escrow as the chain shows it to a confirmation
//! depth, read as [`EscrowSync`]s for the engine. A sync of blocks
//! `(after, through]` takes the marketplace's `Deposited`,
//! `WithdrawalRequested`, `WithdrawalCancelled`, `Withdrawn`, `FillSettled`
//! and `NoncesInvalidated` logs of those blocks, and reads `escrowOf` and
//! `pendingWithdrawalOf` of every consumer they name at block `through`.
//! State read at that block, rather than amounts summed from logs, is right
//! whatever settled the consumer's fills and however the reader started.

use std::time::Duration;

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use alloy::transports::RpcError;
use futures_util::{StreamExt, TryStreamExt};
use pat_engine::escrow::{EscrowAccount, EscrowSync, NonceCancel};

use crate::bindings::DataMarketplace::{
    self, DataMarketplaceInstance, Deposited, FillSettled, NoncesInvalidated, WithdrawalCancelled, WithdrawalRequested,
    Withdrawn,
};
use crate::client::{ChainConfig, ChainError, contract};
use crate::sender::rpc;

/// Most blocks one `eth_getLogs` asks for (public nodes cap ranges, often at 10,000).
pub const LOG_RANGE_MAX: u64 = 5_000;
/// Most logs one sync takes (nodes cap results, often at 10,000; a journal record of 10,000
/// settlements and their consumers is under a megabyte).
pub const LOGS_MAX: usize = 10_000;
/// Account reads in flight at once.
const READS_IN_FLIGHT: usize = 16;

/// Reads consumers' escrow from the marketplace, to a confirmation depth.
#[derive(Debug, Clone)]
pub struct EscrowReader {
    provider: DynProvider,
    marketplace: DataMarketplaceInstance<DynProvider>,
    confirmations: u64,
    timeout: Duration,
}

impl EscrowReader {
    /// A reader of `config`'s marketplace over a provider of its own (it sends nothing).
    pub fn connect(config: &ChainConfig) -> Self {
        let provider = ProviderBuilder::default().connect_http(config.rpc_url.clone()).erased();
        Self {
            marketplace: DataMarketplace::new(config.marketplace, provider.clone()),
            provider,
            confirmations: config.confirmations.max(1),
            timeout: config.rpc_timeout,
        }
    }

    /// The newest block at the confirmation depth: a block is confirmed when it and
    /// `confirmations - 1` blocks after it exist (as the sender counts a receipt).
    pub async fn confirmed_head(&self) -> Result<u64, ChainError> {
        let head = rpc(self.timeout, "eth_blockNumber", self.provider.get_block_number()).await?;
        Ok((head + 1).saturating_sub(self.confirmations))
    }

    /// What changed after block `after`, read towards `head` (the confirmed head the caller
    /// catches up to). Logs come in ranges a node serves: at most [`LOG_RANGE_MAX`] blocks and
    /// [`LOGS_MAX`] logs, the range halved while the node refuses it or it holds more (down to
    /// one block), so a sync stays far below the journal's record limit. The sync's `block` is
    /// the end of the range read. Every consumer the logs name is read at `head`, a recent
    /// block any node keeps (not at the range's end, which an old catch-up would need an
    /// archive node for): a settlement after the range is then counted twice, in the lower
    /// escrow and in its fill's hold until a later range releases it, which only lowers free
    /// escrow.
    pub async fn read(&self, after: u64, head: u64) -> Result<EscrowSync, ChainError> {
        if head <= after {
            return Ok(EscrowSync { block: after, ..EscrowSync::default() });
        }
        let mut span = (head - after).min(LOG_RANGE_MAX);
        let (through, logs) = loop {
            let through = after + span;
            match rpc(self.timeout, "eth_getLogs", self.provider.get_logs(&self.filter(after + 1, through))).await {
                Ok(logs) if logs.len() <= LOGS_MAX || span == 1 => break (through, logs),
                Ok(_) => span = span.div_ceil(2),
                // The node answered with an error (a range or result cap): ask for less.
                Err(ChainError::Rpc { source: RpcError::ErrorResp(_), .. }) if span > 1 => span = span.div_ceil(2),
                Err(e) => return Err(e),
            }
        };
        let mut sync = EscrowSync { block: through, ..EscrowSync::default() };
        let mut touched = Vec::new();
        for log in &logs {
            match classify(log) {
                Some(Seen::Account(consumer)) => touched.push(consumer),
                Some(Seen::Settled { fill_id, consumer }) => {
                    sync.settled.push(fill_id);
                    touched.push(consumer);
                }
                Some(Seen::Cancelled(c)) => sync.cancelled.push(c),
                None => {}
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let at = BlockId::number(head);
        sync.accounts = futures_util::stream::iter(touched)
            .map(|consumer| async move { Ok::<_, ChainError>((consumer, self.account_at(consumer, at).await?)) })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(sync)
    }

    /// The marketplace's escrow logs of blocks `from..=to`.
    fn filter(&self, from: u64, to: u64) -> Filter {
        Filter::new().address(*self.marketplace.address()).from_block(from).to_block(to).event_signature(vec![
            Deposited::SIGNATURE_HASH,
            WithdrawalRequested::SIGNATURE_HASH,
            WithdrawalCancelled::SIGNATURE_HASH,
            Withdrawn::SIGNATURE_HASH,
            FillSettled::SIGNATURE_HASH,
            NoncesInvalidated::SIGNATURE_HASH,
        ])
    }

    /// `consumer`'s escrow and requested withdrawal at block `at`.
    async fn account_at(&self, consumer: Address, at: BlockId) -> Result<EscrowAccount, ChainError> {
        let escrow = self.marketplace.escrowOf(consumer).block(at);
        let escrow = contract(self.timeout, "escrowOf", escrow.call()).await?;
        let pending = self.marketplace.pendingWithdrawalOf(consumer).block(at);
        let pending = contract(self.timeout, "pendingWithdrawalOf", pending.call()).await?;
        // Escrow is below 2^127 (the contract's account word); a request is at most the escrow.
        let value = pending.amount;
        Ok(EscrowAccount {
            escrow: u128::try_from(escrow).map_err(|_| ChainError::OutOfRange { what: "escrowOf", value: escrow })?,
            withdrawing: u128::try_from(value)
                .map_err(|_| ChainError::OutOfRange { what: "pendingWithdrawalOf", value })?,
        })
    }
}

/// What one marketplace log says about escrow.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The consumer's escrow or withdrawal moved.
    Account(Address),
    Settled {
        fill_id: B256,
        consumer: Address,
    },
    Cancelled(NonceCancel),
}

fn classify(log: &Log) -> Option<Seen> {
    let topic = |i: usize| log.topics().get(i).copied();
    let address = |t: B256| Address::from_word(t);
    match log.topic0()? {
        &Deposited::SIGNATURE_HASH
        | &WithdrawalRequested::SIGNATURE_HASH
        | &WithdrawalCancelled::SIGNATURE_HASH
        | &Withdrawn::SIGNATURE_HASH => topic(1).map(|t| Seen::Account(address(t))),
        &FillSettled::SIGNATURE_HASH => Some(Seen::Settled { fill_id: topic(1)?, consumer: address(topic(2)?) }),
        &NoncesInvalidated::SIGNATURE_HASH => {
            let e = NoncesInvalidated::decode_log(&log.inner).ok()?;
            Some(Seen::Cancelled(NonceCancel { consumer: e.consumer, word: e.word, mask: e.mask }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{LogData, U256};

    use super::*;

    fn log(topics: Vec<B256>, data: Vec<u8>) -> Log {
        let inner = alloy::primitives::Log {
            address: Address::repeat_byte(9),
            data: LogData::new_unchecked(topics, data.into()),
        };
        Log { inner, ..Log::default() }
    }

    #[test]
    fn each_log_names_what_moved() {
        let consumer = Address::repeat_byte(0xc1);
        let word = consumer.into_word();
        let deposit = log(vec![Deposited::SIGNATURE_HASH, word], U256::from(5).to_be_bytes_vec());
        assert_eq!(classify(&deposit), Some(Seen::Account(consumer)));
        let cancel = log(vec![WithdrawalCancelled::SIGNATURE_HASH, word], Vec::new());
        assert_eq!(classify(&cancel), Some(Seen::Account(consumer)));
        let fill_id = B256::repeat_byte(0xf1);
        let settled = log(vec![FillSettled::SIGNATURE_HASH, fill_id, word], U256::from(3).to_be_bytes_vec());
        assert_eq!(classify(&settled), Some(Seen::Settled { fill_id, consumer }));
        let e = NoncesInvalidated { consumer, word: U256::from(7), mask: 0b1010, effectiveAt: 99 };
        let cancelled = log(e.encode_topics().into_iter().map(|t| t.0).collect(), e.encode_data());
        assert_eq!(
            classify(&cancelled),
            Some(Seen::Cancelled(NonceCancel { consumer, word: U256::from(7), mask: 0b1010 }))
        );
        assert_eq!(classify(&log(vec![B256::repeat_byte(1)], Vec::new())), None, "another event says nothing");
        assert_eq!(classify(&log(vec![Deposited::SIGNATURE_HASH], Vec::new())), None, "a malformed one neither");
    }
}
