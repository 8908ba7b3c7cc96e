//! What the chain decided for each fill of a batch: the typed rejection reasons (the contract's
//! codes 2..10; code 1, "fill id used", is retired since the consumer's nonce is the idempotency
//! key) and the decoding of a receipt's `FillSettled` / `FillRejected` / `BatchSettled` logs into
//! one outcome per submitted fill and the batch's Merkle commitment.

use std::collections::HashMap;
use std::fmt;

use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use thiserror::Error;

use crate::bindings::DataMarketplace::{BatchSettled, FillRejected, FillSettled};

/// Why the contract skipped a fill (`FillRejected(fillId, reason)`), in the contract's order of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The signature is malformed or does not recover to the order's consumer.
    BadSignature,
    /// The consumer's nonce is already used: this order (for a fill the engine submitted before:
    /// by an earlier attempt) or another with the same nonce settled.
    NonceUsed,
    /// Accepted after the order's deadline, or in the future of the block.
    Expired,
    /// The ask is above the order's `maxPrice`.
    AskAboveMax,
    /// Bid above ask, or `(ask - bid) / ask` above the on-chain broker margin cap.
    MarginExceeded,
    /// Zero qty, no providers, mismatched lengths, a zero provider, or units not summing to qty.
    BadUnits,
    /// The consumer's escrow is below `qty * ask`.
    InsufficientEscrow,
    /// The block is past the order's deadline plus the contract's `maxSettleLag`: a signed
    /// order expires on chain (V2), so the engine settles each fill within that lag.
    SettleLagPassed,
    /// The consumer invalidated the order's nonce (`invalidateNonces`), and the delay that
    /// keeps accepted fills settleable has run out (V2).
    NonceInvalidated,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        Self::BadSignature,
        Self::NonceUsed,
        Self::Expired,
        Self::AskAboveMax,
        Self::MarginExceeded,
        Self::BadUnits,
        Self::InsufficientEscrow,
        Self::SettleLagPassed,
        Self::NonceInvalidated,
    ];

    /// The contract's `REJECT_*` code.
    pub fn code(self) -> u8 {
        match self {
            Self::BadSignature => 2,
            Self::NonceUsed => 3,
            Self::Expired => 4,
            Self::AskAboveMax => 5,
            Self::MarginExceeded => 6,
            Self::BadUnits => 7,
            Self::InsufficientEscrow => 8,
            Self::SettleLagPassed => 9,
            Self::NonceInvalidated => 10,
        }
    }

    /// The reason of contract code `code`, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(2)?).copied()
    }

    /// A stable snake_case name, for journals, metrics and API errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::NonceUsed => "nonce_used",
            Self::Expired => "expired",
            Self::AskAboveMax => "ask_above_max",
            Self::MarginExceeded => "margin_exceeded",
            Self::BadUnits => "bad_units",
            Self::InsufficientEscrow => "insufficient_escrow",
            Self::SettleLagPassed => "settle_lag_passed",
            Self::NonceInvalidated => "nonce_invalidated",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The chain's decision on one fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FillOutcome {
    /// Settled by this transaction (`FillSettled`).
    Settled,
    /// Found settled (its nonce used, `noncesUsed`) before or by a retry, so left out of the retry's transaction.
    AlreadySettled,
    /// Skipped by the contract (`FillRejected`); nothing of it moved.
    Rejected(RejectReason),
}

impl FillOutcome {
    /// True when the fill's money has moved on chain, whichever attempt moved it.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Settled | Self::AlreadySettled)
    }
}

/// One fill of a batch and what the chain decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillResult {
    pub fill_id: B256,
    pub outcome: FillOutcome,
}

/// What a batch committed on chain (`BatchSettled`): the root of its leaves
/// `first_leaf .. first_leaf + leaf_count`, the providers' credits and the broker's spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchCommitment {
    pub batch_id: U256,
    pub root: B256,
    pub first_leaf: U256,
    pub leaf_count: U256,
    pub credited: U256,
    pub spread: U256,
}

/// The `BatchSettled` event among `logs` emitted by `marketplace`, if any fill settled.
pub fn commitment_from_logs(marketplace: Address, logs: &[Log]) -> Option<BatchCommitment> {
    logs.iter().filter(|l| l.address() == marketplace && l.topic0() == Some(&BatchSettled::SIGNATURE_HASH)).find_map(
        |l| {
            let e = BatchSettled::decode_log_data(l.data()).ok()?;
            Some(BatchCommitment {
                batch_id: e.batchId,
                root: e.root,
                first_leaf: e.firstLeaf,
                leaf_count: e.leafCount,
                credited: e.credited,
                spread: e.spread,
            })
        },
    )
}

/// The logs of a receipt do not account for the batch that was sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OutcomeError {
    #[error("the receipt has no FillSettled or FillRejected event for fill {0}")]
    Missing(B256),
    #[error("fill {fill_id} was rejected with unknown reason code {code}")]
    UnknownCode { fill_id: B256, code: u8 },
    #[error("fill {0} has more than one outcome event in the receipt")]
    Duplicate(B256),
}

/// Outcomes of `fill_ids` (in that order) from the logs of their `settleBatch` receipt. Only
/// logs emitted by `marketplace` count. Every fill must have exactly one outcome event.
pub fn outcomes_from_logs(
    marketplace: Address,
    fill_ids: &[B256],
    logs: &[Log],
) -> Result<Vec<FillResult>, OutcomeError> {
    let mut seen: HashMap<B256, FillOutcome> = HashMap::with_capacity(fill_ids.len());
    for log in logs.iter().filter(|l| l.address() == marketplace) {
        let decided = match log.topic0() {
            Some(&FillSettled::SIGNATURE_HASH) => {
                FillSettled::decode_log_data(log.data()).ok().map(|e| (e.fillId, FillOutcome::Settled))
            }
            Some(&FillRejected::SIGNATURE_HASH) => match FillRejected::decode_log_data(log.data()) {
                Ok(e) => {
                    let reason = RejectReason::from_code(e.reason)
                        .ok_or(OutcomeError::UnknownCode { fill_id: e.fillId, code: e.reason })?;
                    Some((e.fillId, FillOutcome::Rejected(reason)))
                }
                Err(_) => None,
            },
            _ => None,
        };
        if let Some((id, outcome)) = decided
            && seen.insert(id, outcome).is_some()
        {
            return Err(OutcomeError::Duplicate(id));
        }
    }
    fill_ids
        .iter()
        .map(|id| seen.get(id).map(|&outcome| FillResult { fill_id: *id, outcome }).ok_or(OutcomeError::Missing(*id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::LogData;

    const MARKETPLACE: Address = Address::repeat_byte(0x42);

    fn log(address: Address, data: LogData) -> Log {
        Log { inner: alloy::primitives::Log { address, data }, ..Default::default() }
    }

    fn settled(id: B256) -> Log {
        let e = FillSettled { fillId: id, consumer: Address::repeat_byte(1), leaf: U256::from(7) };
        log(MARKETPLACE, e.encode_log_data())
    }

    fn rejected(id: B256, reason: u8) -> Log {
        log(MARKETPLACE, FillRejected { fillId: id, reason }.encode_log_data())
    }

    #[test]
    fn codes_round_trip_and_match_the_contract_table() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.code()), i + 2);
            assert_eq!(RejectReason::from_code(r.code()), Some(*r));
        }
        assert_eq!(RejectReason::from_code(0), None);
        assert_eq!(RejectReason::from_code(1), None, "retired: fill id used");
        assert_eq!(RejectReason::from_code(11), None);
        assert_eq!(RejectReason::InsufficientEscrow.to_string(), "insufficient_escrow");
    }

    #[test]
    fn logs_give_one_outcome_per_fill_in_batch_order() {
        let (a, b, c) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb), B256::repeat_byte(0xc));
        let foreign = log(Address::repeat_byte(0x99), FillRejected { fillId: a, reason: 2 }.encode_log_data());
        let logs = [rejected(c, 8), foreign, settled(a), rejected(b, 3)];
        let out = outcomes_from_logs(MARKETPLACE, &[a, b, c], &logs).unwrap();
        assert_eq!(
            out,
            vec![
                FillResult { fill_id: a, outcome: FillOutcome::Settled },
                FillResult { fill_id: b, outcome: FillOutcome::Rejected(RejectReason::NonceUsed) },
                FillResult { fill_id: c, outcome: FillOutcome::Rejected(RejectReason::InsufficientEscrow) },
            ]
        );
        assert!(out[0].outcome.is_settled() && !out[1].outcome.is_settled());
        assert_eq!(commitment_from_logs(MARKETPLACE, &logs), None, "no BatchSettled");
        let e = BatchSettled {
            batchId: U256::from(4),
            root: B256::repeat_byte(0x77),
            firstLeaf: U256::from(10),
            leafCount: U256::from(3),
            credited: U256::from(18),
            spread: U256::from(2),
        };
        let foreign = log(Address::repeat_byte(0x99), e.encode_log_data());
        let with_batch = [foreign, settled(a), log(MARKETPLACE, e.encode_log_data())];
        let c = commitment_from_logs(MARKETPLACE, &with_batch).unwrap();
        assert_eq!((c.batch_id, c.root, c.first_leaf, c.leaf_count), (e.batchId, e.root, e.firstLeaf, e.leafCount));
        assert_eq!((c.credited, c.spread), (e.credited, e.spread));
    }

    #[test]
    fn missing_duplicate_and_unknown_outcomes_are_errors() {
        let (a, b) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb));
        assert_eq!(outcomes_from_logs(MARKETPLACE, &[a, b], &[settled(a)]), Err(OutcomeError::Missing(b)));
        assert_eq!(
            outcomes_from_logs(MARKETPLACE, &[a], &[settled(a), rejected(a, 3)]),
            Err(OutcomeError::Duplicate(a))
        );
        assert_eq!(
            outcomes_from_logs(MARKETPLACE, &[a], &[rejected(a, 11)]),
            Err(OutcomeError::UnknownCode { fill_id: a, code: 11 })
        );
        assert_eq!(
            outcomes_from_logs(MARKETPLACE, &[a], &[rejected(a, 1)]),
            Err(OutcomeError::UnknownCode { fill_id: a, code: 1 })
        );
    }
}
