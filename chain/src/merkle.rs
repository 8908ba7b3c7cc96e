//! The Merkle tree a `settleBatch` commits (`BatchSettled.root`), rebuilt from the fills the
//! broker sent and their outcomes: what a provider needs to claim its credits
//! (`claimCredits`) and anyone to prove a consumer's access (`verifyAccess`).
//!
//! Leaves, in the batch's order of settled fills, with global indexes from
//! `BatchSettled.firstLeaf`: each settled fill's access leaf
//! `keccak256(abi.encode(index, fillId, consumer, market, qty))`, then one credit leaf
//! `keccak256(abi.encode(index, provider, units * bid))` per provider entry of its packed
//! record ([`crate::bindings::pack_fill`] order: the engine's `provider_credits`). Pairs hash with OpenZeppelin's commutative
//! keccak (sorted pair); an odd last node is carried up unchanged.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;
use pat_engine::Fill;
use thiserror::Error;

use crate::bindings::DataMarketplace;
use crate::outcome::{BatchCommitment, FillOutcome, FillResult};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    #[error("the fills' tree has {actual} leaves, the batch committed {committed}")]
    LeafCount { committed: U256, actual: usize },
    #[error("the fills' tree root {actual} differs from the committed root {committed}")]
    Root { committed: B256, actual: B256 },
    #[error("{results} outcomes for {fills} fills")]
    Outcomes { fills: usize, results: usize },
}

/// The access leaf of a settled fill at global index `index`.
pub fn access_leaf(index: U256, fill_id: B256, consumer: Address, market: B256, qty: U256) -> B256 {
    keccak256((index, fill_id, consumer, market, qty).abi_encode())
}

/// The credit leaf of `amount` to `provider` at global index `index`.
pub fn credit_leaf(index: U256, provider: Address, amount: U256) -> B256 {
    keccak256((index, provider, amount).abi_encode())
}

fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

fn up(level: &[B256]) -> Vec<B256> {
    level.chunks(2).map(|pair| if let [a, b] = pair { hash_pair(*a, *b) } else { pair[0] }).collect()
}

/// Root of `leaves` (at least one).
pub fn root(leaves: &[B256]) -> B256 {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = up(&level);
    }
    level[0]
}

/// Proof of leaf `position` (0-based within the batch) for OpenZeppelin's `MerkleProof`.
pub fn proof(leaves: &[B256], mut position: usize) -> Vec<B256> {
    let mut level = leaves.to_vec();
    let mut proof = Vec::new();
    while level.len() > 1 {
        if let Some(sibling) = level.get(position ^ 1) {
            proof.push(*sibling);
        }
        level = up(&level);
        position /= 2;
    }
    proof
}

/// One access right recorded by a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    pub leaf: U256,
    pub fill_id: B256,
    pub consumer: Address,
    pub market: B256,
    pub qty: U256,
    pub proof: Vec<B256>,
}

/// A settled batch's tree, checked against its on-chain commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTree {
    pub commitment: BatchCommitment,
    leaves: Vec<B256>,
    credits: Vec<(U256, Address, U256)>,
    access: Vec<(U256, B256, Address, B256, U256)>,
}

impl BatchTree {
    /// The tree of `fills` (as sent, in order) given their `results` (same order) and the
    /// batch's commitment; fails if it does not reproduce the committed root.
    pub fn build(commitment: BatchCommitment, fills: &[Fill], results: &[FillResult]) -> Result<Self, MerkleError> {
        if fills.len() != results.len() {
            return Err(MerkleError::Outcomes { fills: fills.len(), results: results.len() });
        }
        let (mut leaves, mut credits, mut access) = (Vec::new(), Vec::new(), Vec::new());
        let mut index = commitment.first_leaf;
        for (fill, _) in fills.iter().zip(results).filter(|(_, r)| r.outcome == FillOutcome::Settled) {
            let qty = U256::from(fill.qty);
            leaves.push(access_leaf(index, fill.fill_id, fill.consumer, fill.market_key_id, qty));
            access.push((index, fill.fill_id, fill.consumer, fill.market_key_id, qty));
            index += U256::from(1);
            for (provider, _, amount) in fill.provider_credits() {
                let amount = U256::from(amount);
                leaves.push(credit_leaf(index, provider, amount));
                credits.push((index, provider, amount));
                index += U256::from(1);
            }
        }
        if U256::from(leaves.len()) != commitment.leaf_count || leaves.is_empty() {
            return Err(MerkleError::LeafCount { committed: commitment.leaf_count, actual: leaves.len() });
        }
        let actual = root(&leaves);
        if actual != commitment.root {
            return Err(MerkleError::Root { committed: commitment.root, actual });
        }
        Ok(Self { commitment, leaves, credits, access })
    }

    fn position(&self, leaf: U256) -> usize {
        usize::try_from(leaf - self.commitment.first_leaf).expect("a leaf of this batch")
    }

    /// `claimCredits` arguments for every credit of the batch (anyone may send them; each pays
    /// its leaf's provider).
    pub fn claims(&self) -> Vec<DataMarketplace::Claim> {
        self.claims_where(|_| true)
    }

    /// `claimCredits` arguments for `provider`'s credits.
    pub fn claims_of(&self, provider: Address) -> Vec<DataMarketplace::Claim> {
        self.claims_where(|p| p == provider)
    }

    fn claims_where(&self, keep: impl Fn(Address) -> bool) -> Vec<DataMarketplace::Claim> {
        self.credits
            .iter()
            .filter(|(_, p, _)| keep(*p))
            .map(|&(leaf, provider, amount)| DataMarketplace::Claim {
                batchId: self.commitment.batch_id,
                leaf,
                provider,
                amount,
                proof: proof(&self.leaves, self.position(leaf)),
            })
            .collect()
    }

    /// The access rights the batch recorded, with their proofs (for `verifyAccess`).
    pub fn access(&self) -> Vec<AccessRecord> {
        self.access
            .iter()
            .map(|&(leaf, fill_id, consumer, market, qty)| AccessRecord {
                leaf,
                fill_id,
                consumer,
                market,
                qty,
                proof: proof(&self.leaves, self.position(leaf)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u8) -> Vec<B256> {
        (1..=n).map(|i| keccak256([i])).collect()
    }

    /// OpenZeppelin's `processProof`.
    fn verify(proof: &[B256], root: B256, leaf: B256) -> bool {
        proof.iter().fold(leaf, |acc, p| hash_pair(acc, *p)) == root
    }

    #[test]
    fn every_leaf_proves_against_the_root_whatever_the_count() {
        for n in 1..=17u8 {
            let l = leaves(n);
            let r = root(&l);
            for (i, leaf) in l.iter().enumerate() {
                assert!(verify(&proof(&l, i), r, *leaf), "n {n} leaf {i}");
                assert!(!verify(&proof(&l, i), r, keccak256([0xff, i as u8])), "a foreign leaf fails");
            }
        }
        assert_eq!(root(&leaves(1)), leaves(1)[0], "one leaf is its own root");
    }

    #[test]
    fn leaves_are_abi_encoded_like_the_contract() {
        let (i, p, a) = (U256::from(5), Address::repeat_byte(1), U256::from(7));
        let mut buf = [0u8; 96];
        buf[31] = 5;
        buf[44..64].copy_from_slice(p.as_slice());
        buf[95] = 7;
        assert_eq!(credit_leaf(i, p, a), keccak256(buf));
        assert_ne!(access_leaf(i, B256::ZERO, p, B256::ZERO, a), credit_leaf(i, p, a));
    }
}
